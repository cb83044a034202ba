"""Prompt formats: the chat template is applied to the examples themselves, once."""
import pytest

from arkd_bench.data.base import DatasetSplits, DataError, Example
from arkd_bench.data.prompt_format import apply_prompt_format, chat_prompt, raw_prompt
from arkd_bench.run.cell import trivial_predictions
from arkd_bench.testing import tiny_tokenizer

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def tokenizer():
    tok = tiny_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


def splits():
    part = lambda tag: [Example(f"{tag} question {i}?", (f"answer {i}",), {"k": i}) for i in range(3)]  # noqa: E731
    return DatasetSplits.build(part("train"), part("valid"), part("test"), "toy")


def test_chat_format_wraps_every_prompt_and_keeps_the_raw_one(tokenizer):
    raw = splits()
    chat = apply_prompt_format(raw, tokenizer, "chat", system_prompt="Be brief.")
    first = chat.train[0]
    assert first.prompt == "<system>Be brief.</s><user>train question 0?</s><assistant>"
    assert raw_prompt(first) == "train question 0?" and first.meta["k"] == 0
    assert first.references == raw.train[0].references
    assert chat.content_hash != raw.content_hash  # caches keyed by data never mix formats
    assert apply_prompt_format(raw, tokenizer, "raw") is raw
    # the echo baseline answers with the dataset's prompt, not the template around it
    assert trivial_predictions("echo", chat.test, chat.train) == [e.prompt for e in raw.test]


def test_chat_format_needs_a_template():
    with pytest.raises(DataError, match="has no chat template"):
        chat_prompt(tiny_tokenizer(), "hi")
