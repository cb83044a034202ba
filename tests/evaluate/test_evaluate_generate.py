import pytest
import torch
from pydantic import ValidationError

from arkd_bench.evaluate.generate import GenerationSettings, _decode_until_eos, _left_pad, generate
from arkd_bench.testing import tiny_gpt2, tiny_tokenizer

PROMPTS = [
    "Return the",
    "Split a pathname into a pair of head and tail. Join two or more",
    "Sort",
    "Test whether a path exists. Return the number of",
    "Return a copy of the string with leading",
]


class IdsTokenizer:
    """Wraps a tokenizer so that `generate` returns token ids (as text) instead of
    decoded text: comparisons are then token for token."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def decode(self, tokens, skip_special_tokens=False):
        return " ".join(str(t) for t in tokens)


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gpt2(tokenizer, n_layer=2, n_embd=32, seed=0)


def test_greedy_batched_equals_one_at_a_time_token_for_token(model, tokenizer):
    ids_tok = IdsTokenizer(tokenizer)
    settings = GenerationSettings(max_new_tokens=12, batch_size=4)
    batched = generate(model, ids_tok, PROMPTS, settings)
    single = [generate(model, ids_tok, [p], settings)[0] for p in PROMPTS]
    assert batched == single
    assert all(len(out.split()) == 12 for out in batched)  # random model: no early EOS


def test_left_padding_is_exercised(model, tokenizer):
    """Negative control: the prompts above are sensitive to position ids, so the
    test above would catch positions that ignore the padding."""
    ids, mask = _left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    common = dict(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    right = model.generate(**common)
    wrong = model.generate(**common, position_ids=torch.arange(ids.shape[1]).expand_as(ids))
    assert not torch.equal(right, wrong)


def test_sampling_is_reproducible_and_independent_of_batching(model, tokenizer):
    settings = GenerationSettings(do_sample=True, max_new_tokens=10, batch_size=4)
    first = generate(model, tokenizer, PROMPTS, settings, seed=10)
    assert generate(model, tokenizer, PROMPTS, settings, seed=10) == first
    one_by_one = settings.model_copy(update={"batch_size": 1})
    assert generate(model, tokenizer, PROMPTS, one_by_one, seed=10) == first
    assert generate(model, tokenizer, PROMPTS, settings, seed=20) != first


def test_sampling_with_top_k_one_is_greedy(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=8))
    top1 = GenerationSettings(do_sample=True, top_k=1, temperature=0.7, max_new_tokens=8)
    assert generate(model, tokenizer, PROMPTS, top1, seed=10) == greedy


def test_seed_none_follows_torch_manual_seed(model, tokenizer):
    settings = GenerationSettings(do_sample=True, max_new_tokens=6)
    torch.manual_seed(3)
    a = generate(model, tokenizer, PROMPTS[:2], settings)
    torch.manual_seed(3)
    assert generate(model, tokenizer, PROMPTS[:2], settings) == a


def test_prompts_are_truncated_from_the_left(model, tokenizer):
    ids_tok = IdsTokenizer(tokenizer)
    long_prompt = " ".join(PROMPTS)
    ids = tokenizer(long_prompt)["input_ids"]
    tail = tokenizer.decode(ids[-5:])
    assert tokenizer(tail)["input_ids"] == ids[-5:]
    settings = GenerationSettings(max_new_tokens=6, max_prompt_length=5)
    assert generate(model, ids_tok, [long_prompt], settings) == generate(
        model, ids_tok, [tail], settings.model_copy(update={"max_prompt_length": 100})
    )


def test_truncation_keeps_a_leading_bos(tokenizer):
    from arkd_bench.evaluate.generate import _truncate_left, generate_ids

    bos_tok = tiny_tokenizer(add_bos=True)
    bos = bos_tok.bos_token_id
    ids = bos_tok(" ".join(PROMPTS))["input_ids"]
    assert ids[0] == bos and len(ids) > 5
    assert _truncate_left(ids, 5, bos_tok) == [bos] + ids[-4:]
    # Without BOS in front (GPT-2 style, where bos is eos and not added) the last tokens are kept.
    plain = tokenizer(" ".join(PROMPTS))["input_ids"]
    assert _truncate_left(plain, 5, tokenizer) == plain[-5:]
    with pytest.raises(ValueError, match="cannot hold BOS and one prompt token"):
        _truncate_left(ids, 1, bos_tok)
    model = tiny_gpt2(bos_tok, seed=1)
    settings = GenerationSettings(max_new_tokens=6, max_prompt_length=5)
    assert generate_ids(model, bos_tok, [ids], settings) == generate_ids(
        model, bos_tok, [[bos] + ids[-4:]], settings.model_copy(update={"max_prompt_length": 100}))


def test_prompt_is_shortened_to_fit_the_model_positions(model, tokenizer):
    long_prompt = " ".join(PROMPTS * 10)  # far more than the 128 positions of tiny_gpt2
    assert len(tokenizer(long_prompt)["input_ids"]) > 128
    settings = GenerationSettings(max_new_tokens=8, max_prompt_length=256)
    out = generate(model, IdsTokenizer(tokenizer), [long_prompt], settings)
    assert len(out[0].split()) == 8
    with pytest.raises(ValueError, match="no room"):
        generate(model, tokenizer, ["x"], GenerationSettings(max_new_tokens=128))


def test_tokenizer_and_model_state_are_left_as_found(model, tokenizer):
    side = tokenizer.padding_side
    model.train()
    try:
        generate(model, tokenizer, PROMPTS[:2], GenerationSettings(max_new_tokens=3))
        assert model.training
    finally:
        model.eval()
    assert tokenizer.padding_side == side


def test_progress_counts_every_prompt_and_empty_input(model, tokenizer):
    seen = []
    out = generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=2, batch_size=2),
                   progress=seen.append)
    assert len(out) == len(PROMPTS) and sum(seen) == len(PROMPTS) and len(seen) == 3
    assert generate(model, tokenizer, [], GenerationSettings()) == []
    assert len(generate(model, tokenizer, [""], GenerationSettings(max_new_tokens=2))) == 1


def test_decoding_stops_at_eos(tokenizer):
    eos = tokenizer.eos_token_id
    hello = tokenizer("hello")["input_ids"]
    tokens = hello + [eos] + tokenizer(" tail")["input_ids"]
    assert _decode_until_eos(tokenizer, tokens, [eos]) == "hello"
    assert _decode_until_eos(tokenizer, [eos] + hello, [eos]) == ""


def test_generation_settings_validate():
    settings = GenerationSettings()
    assert settings.effective_seeds() == [None]
    assert GenerationSettings(do_sample=True).effective_seeds() == [10, 20, 30, 40, 50]
    assert settings.model_dump()["no_repeat_ngram_size"] == 0
    for bad in ({"top_p": 0.0}, {"temperature": 0}, {"seeds": []}, {"seeds": [1, 1]},
                {"max_new_tokens": 0}, {"topp": 0.9}):
        with pytest.raises(ValidationError):
            GenerationSettings(**bad)


def test_no_repeat_ngram_size_is_applied(model, tokenizer):
    ids_tok = IdsTokenizer(tokenizer)
    plain = generate(model, ids_tok, PROMPTS[:2], GenerationSettings(max_new_tokens=10))
    assert any(len(set(out.split())) < 10 for out in plain)  # the random model repeats itself
    settings = GenerationSettings(max_new_tokens=10, no_repeat_ngram_size=1)
    for prompt, out in zip(PROMPTS[:2], generate(model, ids_tok, PROMPTS[:2], settings)):
        new = out.split()
        prompt_ids = {str(t) for t in tokenizer(prompt)["input_ids"]}
        assert len(set(new)) == len(new) and not prompt_ids & set(new)
