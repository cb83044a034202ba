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
    encode_response,
    join_ids,
    min_prompt_tokens,
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


@pytest.fixture(scope="module")
def bos_tok():
    return tiny_tokenizer(add_bos=True)


@pytest.fixture(params=["no_bos", "bos"])
def any_tok(request, tok, bos_tok):
    return bos_tok if request.param == "bos" else tok


def test_bos_fixture_adds_its_own_bos(tok, bos_tok):
    assert encode_prompt(bos_tok, PROMPT) == [bos_tok.bos_token_id] + encode_prompt(tok, PROMPT)
    assert encode_prompt(tok, PROMPT)[0] != tok.bos_token_id  # GPT-2 style: BOS exists, is not added


def _parts(tokenizer):
    prompt = encode_prompt(tokenizer, PROMPT)
    head = prompt[:1] if prompt[0] == tokenizer.bos_token_id else []
    return head, prompt[len(head):], encode_response(tokenizer, RESPONSE)


def test_truncation_keeps_bos_and_the_whole_response_when_it_fits(any_tok):
    head, body, target = _parts(any_tok)
    max_length = len(target) + 12  # room for 12 prompt tokens, more than the minimum of max_length // 4
    assert len(head) + len(body) > 12 >= min_prompt_tokens(max_length) + len(head)
    cut = encode_for_training(any_tok, PROMPT, RESPONSE, max_length=max_length)
    kept = 12 - len(head)
    assert cut["input_ids"] == head + body[-kept:] + target  # BOS, then the prompt's end
    assert cut["labels"] == [IGNORE_INDEX] * 12 + target  # the whole response and its eos


def test_a_long_response_cannot_push_out_the_minimum_prompt(any_tok):
    head, body, target = _parts(any_tok)
    max_length = 24
    keep = min_prompt_tokens(max_length)
    assert keep == 6 and len(body) > keep and len(head) + keep + len(target) > max_length
    cut = encode_for_training(any_tok, PROMPT, RESPONSE, max_length=max_length)
    room = max_length - len(head) - keep
    assert cut["input_ids"] == head + body[-keep:] + target[:room]
    assert cut["labels"] == [IGNORE_INDEX] * (len(head) + keep) + target[:room]
    assert any_tok.eos_token_id not in cut["labels"]  # cut on the right: not taught to stop mid-answer


def test_max_length_that_cannot_hold_bos_minimum_prompt_and_a_response_token_is_an_error(tok, bos_tok):
    with pytest.raises(ValueError, match=r"max_length 2 is too small.*1 BOS \+ 1 prompt \+ 1 response"):
        encode_for_training(bos_tok, PROMPT, RESPONSE, max_length=2)
    smallest = encode_for_training(bos_tok, PROMPT, RESPONSE, max_length=3)
    head, body, target = _parts(bos_tok)
    assert smallest["input_ids"] == head + body[-1:] + target[:1]
    assert encode_for_training(tok, PROMPT, RESPONSE, max_length=2)["input_ids"] == _parts(tok)[1][-1:] + target[:1]
    with pytest.raises(ValueError, match="too small"):
        join_ids([1, 2, 3], [7], max_length=4, min_prompt=4)


def test_join_ids_edge_cases():
    assert join_ids([1, 2, 3], [7, 8, 0], max_length=4) == {
        "input_ids": [3, 7, 8, 0], "labels": [IGNORE_INDEX, 7, 8, 0], "attention_mask": [1, 1, 1, 1]}
    # BOS (9) stays in front; the prompt is cut after it.
    assert join_ids([9, 1, 2, 3], [7, 8, 0], max_length=5, bos_token_id=9)["input_ids"] == [9, 3, 7, 8, 0]
    # A token equal to BOS anywhere but first is ordinary prompt text.
    assert join_ids([1, 9, 2, 3], [7, 8, 0], max_length=4, bos_token_id=9)["input_ids"] == [3, 7, 8, 0]
    # An explicit minimum prompt; the response loses its tail.
    assert join_ids([9, 1, 2, 3], list(range(20, 30)), max_length=8, bos_token_id=9, min_prompt=2)["input_ids"] == [
        9, 2, 3, 20, 21, 22, 23, 24]
    # A prompt shorter than the minimum is kept whole and the response gets the rest.
    assert join_ids([9, 1], list(range(20, 30)), max_length=8, bos_token_id=9, min_prompt=4)["input_ids"] == [
        9, 1, 20, 21, 22, 23, 24, 25]
    assert join_ids([9], [7, 8, 0], max_length=3, bos_token_id=9)["labels"] == [IGNORE_INDEX, 7, 8]
    with pytest.raises(ValueError, match="max_length"):
        join_ids([1], [2], max_length=1)
    with pytest.raises(ValueError, match="min_prompt"):
        join_ids([1], [2], max_length=8, min_prompt=0)
    with pytest.raises(ValueError, match="empty prompt"):
        join_ids([], [2], max_length=8)


def test_every_encoder_of_training_prompts_keeps_bos(bos_tok):
    """Training items, teacher caches (built from TrainingDataset items), teacher-forced
    evaluation and generated sequences of data policies share one truncation."""
    from arkd_bench.data_policy.session import generated_items
    from arkd_bench.evaluate.teacher_forced import encode_pairs

    bos = bos_tok.bos_token_id
    single = encode_for_training(bos_tok, PROMPT, RESPONSE, max_length=24)
    assert single["input_ids"][0] == bos
    assert TrainingDataset([Example(PROMPT, (RESPONSE,))], bos_tok, max_length=24)[0] == single
    assert encode_pairs(bos_tok, [(PROMPT, RESPONSE)], max_length=24) == [single]
    prompt = encode_prompt(bos_tok, PROMPT)
    long_continuation = list(range(30, 60))
    item = generated_items([prompt], [long_continuation], max_length=24, bos_token_id=bos)[0]
    assert item["input_ids"] == [bos] + prompt[-6:] + long_continuation[:17]


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


def test_scored_tokens_are_exactly_each_response_and_its_eos(any_tok):
    """In a padded batch each row scores its response and eos (labels unshifted: the model
    shifts them), nothing of the prompt, BOS or padding, and attends to no padding."""
    examples = [Example(PROMPT, (RESPONSE,)), Example("Sort", (" the list in place.",)),
                Example("Return the", (" base name of a pathname, and nothing else at all.",))]
    ds = TrainingDataset(examples, any_tok, max_length=64)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    width = batch["input_ids"].shape[1]
    for row, ex in enumerate(examples):
        ids, labels, mask = (batch[k][row].tolist() for k in ("input_ids", "labels", "attention_mask"))
        prompt, target = encode_prompt(any_tok, ex.prompt), encode_response(any_tok, ex.response)
        n = len(prompt) + len(target)  # max_length 64: every example fits
        assert ids[:n] == prompt + target
        assert labels == [IGNORE_INDEX] * len(prompt) + target + [IGNORE_INDEX] * (width - n)
        assert mask == [1] * n + [0] * (width - n)
        assert ids[n:] == [ds.pad_token_id] * (width - n)
    assert width == max(len(item["input_ids"]) for item in ds)
    assert int(batch["attention_mask"].sum()) == sum(len(item["input_ids"]) for item in ds)
