"""Long prompts: a generated continuation is trained on after exactly the prompt it was
generated from. The prompt is cut (from the left, BOS kept) before sampling, to leave room
for max_new_tokens, so `join_ids` never cuts it again afterwards."""
from __future__ import annotations

import random

import pytest

from arkd_bench.data.base import Example
from arkd_bench.data.collate import (
    IGNORE_INDEX,
    TrainingDataset,
    collate_for_training,
    join_ids,
    prompt_for_continuation,
    prompt_ids_of,
)
from arkd_bench.data_policy import OnPolicy, Replay, TeacherGenerated
from arkd_bench.data_policy.session import DataSession, SequenceSource
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2, tiny_tokenizer

MAX_LENGTH = 64


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


@pytest.fixture(scope="module", params=[False, True], ids=["no-bos", "bos"])
def tok(request):
    return tiny_tokenizer(add_bos=request.param)


def long_prompt_items(tokenizer, n=4):
    """Prompts far longer than max_length, short references: the dataset's items keep most of
    max_length for the prompt, so a sampled continuation does not fit after it."""
    examples = [Example(prompt=" ".join(SAMPLE_TEXTS[(i + j) % len(SAMPLE_TEXTS)] for j in range(6)),
                        references=("ok",)) for i in range(n)]
    items = TrainingDataset(examples, tokenizer, MAX_LENGTH).items
    assert all(len(p) > MAX_LENGTH - 24 for p in prompt_ids_of(items))  # the case this is about
    return items


class Conditioning:
    """Wraps a model's `generate`, recording the tokens each row was conditioned on."""

    def __init__(self, model) -> None:
        self.seen: list[list[int]] = []
        generate = model.generate

        def recording(*args, input_ids, attention_mask, **kwargs):
            for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
                self.seen.append([t for t, m in zip(ids, mask) if m])
            return generate(*args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        model.generate = recording


def trained_prompts(batch) -> list[list[int]]:
    rows = [{"input_ids": [t for t, m in zip(ids, mask) if m], "labels": labels}
            for ids, mask, labels in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(),
                                         batch["labels"].tolist())]
    return prompt_ids_of(rows)


POLICIES = {"gkd": lambda: OnPolicy(lmbda=1.0, max_new_tokens=24),
            "replay": lambda: Replay(init_threshold=1.0, max_new_tokens=24)}


@pytest.mark.parametrize("name", POLICIES)
def test_on_policy_samples_train_on_the_prompt_they_were_sampled_from(tok, name):
    policy = POLICIES[name]()
    items = long_prompt_items(tok)
    student = tiny_gpt2(tok, seed=1)
    conditioning = Conditioning(student)
    session = DataSession(policy=policy, student=lambda: student, tokenizer=tok, max_length=MAX_LENGTH,
                          device="cpu", seed=0, total_steps=10, probe_items=items)
    batch = collate_for_training(items, tok.pad_token_id)
    out = policy.batch(batch, session)
    assert len(conditioning.seen) == len(items)
    responses = [sum(label != IGNORE_INDEX for label in row) for row in out["labels"].tolist()]
    assert max(responses) > 4  # continuations long enough that the full prompt would not fit
    assert sorted(trained_prompts(out)) == sorted(conditioning.seen)
    for prompt, full in zip(trained_prompts(out), prompt_ids_of(items)):
        bos = tok.bos_token_id if full[0] == tok.bos_token_id and tok.bos_token_id is not None else None
        if bos is not None:
            assert prompt[0] == bos
        skip = int(bos is not None)
        assert full[len(full) - len(prompt) + skip:] == prompt[skip:]  # its end: cut on the left
        assert len(prompt) == MAX_LENGTH - 24


def test_teacher_generations_train_on_the_prompt_they_were_generated_from(tok):
    items = long_prompt_items(tok)
    teacher = tiny_gpt2(tok, n_layer=2, seed=2)
    conditioning = Conditioning(teacher)
    source = SequenceSource(teacher=teacher, tokenizer=tok, items=items, max_length=MAX_LENGTH)
    built = TeacherGenerated(max_new_tokens=24).build_sequences(source)
    assert sorted(prompt_ids_of(built)) == sorted(conditioning.seen)
    assert TeacherGenerated().sequence_settings()["prompts"] == "fit_continuation"  # a new cache key


def test_join_ids_keeps_the_fitted_prompt_whole():
    """For any prompt, continuation of at most max_new_tokens and max_length that join_ids
    accepts: the joined sequence's prompt is the fitted prompt, which is the prompt's end
    (BOS kept in front), as long as join_ids would keep and no shorter."""
    rng = random.Random(0)
    bos = 0
    for _ in range(2000):
        max_length = rng.randint(8, 80)
        max_new = rng.randint(1, 2 * max_length)
        with_bos = rng.random() < 0.5
        body = [rng.randint(1, 9) for _ in range(rng.randint(0 if with_bos else 1, 150))]
        prompt = ([bos] if with_bos else []) + body
        fitted = prompt_for_continuation(prompt, max_length, max_new, bos_token_id=bos)
        continuation = [rng.randint(1, 9) for _ in range(rng.randint(1, max_new))]
        if with_bos:
            assert fitted[0] == bos and prompt[len(prompt) - len(fitted) + 1:] == fitted[1:]
        else:
            assert prompt[len(prompt) - len(fitted):] == fitted
        try:
            joined = join_ids(fitted, continuation, max_length, bos_token_id=bos)
        except ValueError:
            continue  # a max_length too small for BOS + min_prompt + 1
        assert joined["input_ids"][: len(fitted)] == fitted
        assert joined["labels"][: len(fitted)] == [IGNORE_INDEX] * len(fitted)
        assert joined["labels"][len(fitted)] != IGNORE_INDEX
        # nothing is cut that needed cutting: the fitted prompt is as long as join_ids allows
        full = join_ids(prompt, [1] * max_new, max_length, bos_token_id=bos)
        assert len(fitted) == min(len(prompt), sum(label == IGNORE_INDEX for label in full["labels"]))


def test_fitted_prompts():
    assert prompt_for_continuation([5, 6, 7], 64, 24) == [5, 6, 7]  # short: left alone
    assert prompt_for_continuation(list(range(1, 20)), 16, 6, bos_token_id=0) == list(range(10, 20))
    assert prompt_for_continuation([0, *range(1, 20)], 16, 6, bos_token_id=0) == [0, *range(11, 20)]
    # no room left by max_new_tokens: join_ids' minimum prompt (max_length // 4 after BOS) is kept
    assert prompt_for_continuation([0, 5, 6, 7, 8], 8, 24, bos_token_id=0) == [0, 7, 8]
    assert prompt_for_continuation([0, 5], 8, 24, bos_token_id=0) == [0, 5]
