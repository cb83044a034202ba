"""Training encodings: response-only loss mask, eos, truncation, padding, prompt ids as at generation."""
import pytest
import torch

from arkd_bench.data import Example
from arkd_bench.data.collate import (
    IGNORE_INDEX,
    TrainingDataset,
    collate_for_training,
    encode_for_training,
    encode_prompt,
    join_ids,
)
from arkd_bench.testing import tiny_tokenizer

PROMPT = "Summarize what `os.path.join(a, *p)` does."
RESPONSE = "Join two or more pathname components."


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_labels_mask_exactly_the_prompt_and_response_ends_with_eos(tok):
    enc = encode_for_training(tok, PROMPT, RESPONSE, max_length=128)
    prompt_ids = encode_prompt(tok, PROMPT)
    response_ids = tok(RESPONSE, add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert enc["input_ids"] == prompt_ids + response_ids + [tok.eos_token_id]
    assert enc["labels"] == [IGNORE_INDEX] * n + response_ids + [tok.eos_token_id]
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    assert tok.decode(enc["input_ids"][n:-1]) == RESPONSE


def test_prompt_ids_match_generation(tok):
    # The prompt's ids at train time are those generation starts from, even where
    # encoding the joined text would merge tokens across the boundary.
    enc = encode_for_training(tok, "Return the", " absolute path.", max_length=64)
    n = enc["labels"].count(IGNORE_INDEX)
    assert enc["input_ids"][:n] == tok("Return the")["input_ids"]


def test_truncation_keeps_the_response(tok):
    full = encode_for_training(tok, PROMPT, RESPONSE, max_length=128)
    n_prompt = full["labels"].count(IGNORE_INDEX)
    n_target = len(full["input_ids"]) - n_prompt
    cut = encode_for_training(tok, PROMPT, RESPONSE, max_length=n_target + 3)
    assert len(cut["input_ids"]) == n_target + 3
    assert cut["input_ids"][:3] == full["input_ids"][n_prompt - 3:n_prompt]  # the prompt's end survives
    assert cut["labels"][3:] == full["labels"][n_prompt:]  # the whole response and eos survive
    tiny = encode_for_training(tok, PROMPT, RESPONSE, max_length=4)
    assert tiny["input_ids"] == full["input_ids"][n_prompt - 1:n_prompt + 3]  # one prompt token left
    assert tiny["labels"][0] == IGNORE_INDEX and tok.eos_token_id not in tiny["labels"]


def test_join_ids_edge_cases():
    assert join_ids([1, 2, 3], [7, 8, 0], max_length=4) == {
        "input_ids": [3, 7, 8, 0], "labels": [IGNORE_INDEX, 7, 8, 0], "attention_mask": [1, 1, 1, 1]}
    with pytest.raises(ValueError, match="max_length"):
        join_ids([1], [2], max_length=1)
    with pytest.raises(ValueError, match="empty prompt"):
        join_ids([], [2], max_length=8)


def test_collate_right_pads_with_ignored_labels(tok):
    short = encode_for_training(tok, "Test whether", " a path exists.", max_length=64)
    long = encode_for_training(tok, PROMPT, RESPONSE, max_length=64)
    batch = collate_for_training([short, long], pad_token_id=tok.pad_token_id)
    width = len(long["input_ids"])
    assert all(t.shape == (2, width) and t.dtype == torch.long for t in batch.values())
    pad = width - len(short["input_ids"])
    assert batch["input_ids"][0, -pad:].tolist() == [tok.pad_token_id] * pad
    assert batch["labels"][0, -pad:].tolist() == [IGNORE_INDEX] * pad
    assert batch["attention_mask"][0].tolist() == [1] * len(short["input_ids"]) + [0] * pad
    assert batch["labels"][1].tolist() == long["labels"]


def test_training_dataset_matches_single_encoding(tok):
    examples = [Example(PROMPT, (RESPONSE, "another reference")), Example("Sort the list", (" in place.",))]
    ds = TrainingDataset(examples, tok, max_length=20)
    assert len(ds) == 2
    for item, ex in zip(ds, examples):
        assert item == encode_for_training(tok, ex.prompt, ex.response, max_length=20)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ds.collate)
    batch = next(iter(loader))
    assert batch["input_ids"].shape[0] == 2
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == sum(
        sum(label != IGNORE_INDEX for label in item["labels"]) for item in ds
    )


def test_a_model_loss_ignores_the_prompt(tok):
    from arkd_bench.testing import tiny_gpt2

    model = tiny_gpt2(tok)
    ds = TrainingDataset([Example(PROMPT, (RESPONSE,))], tok, max_length=64)
    batch = ds.collate([ds[0]])
    loss = model(**batch).loss
    logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
    targets = batch["labels"][0, 1:]
    keep = targets != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(loss, expected, atol=1e-5)
