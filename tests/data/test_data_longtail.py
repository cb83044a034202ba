"""The synthetic long-tail task: a known head + Zipf-tail answer distribution per prompt."""
import math
from collections import Counter

import pytest
from pydantic import ValidationError

from arkd_bench.data import LongtailSource
from arkd_bench.data.longtail import answer_distribution


@pytest.mark.parametrize("k, head, s", [(8, 0.5, 1.0), (4, 0.7, 2.0), (12, 0.3, 1.2), (5, 0.4, 0.0)])
def test_distribution_sums_to_one_with_the_configured_head(k, head, s):
    probs = answer_distribution(k, head, s)
    assert len(probs) == k and math.isclose(sum(probs), 1.0)
    assert probs[0] == head
    assert all(a >= b for a, b in zip(probs[1:], probs[2:]))  # a decreasing tail
    tail = probs[1:]
    assert math.isclose(tail[0] / tail[-1], (k - 1) ** s)  # Zipf: p_r proportional to r^-s


def test_splits_and_meta():
    splits = LongtailSource(num_prompts=20, num_answers=6, samples_per_prompt=10, valid_prompts=4).load()
    assert splits.sizes() == {"train": 200, "valid": 4, "test": 20}
    for ex in splits.test:
        answers, probs = ex.meta["answers"], ex.meta["probs"]
        assert list(ex.references) == answers and len(set(answers)) == 6
        assert math.isclose(sum(probs), 1.0) and probs[0] == 0.5 and probs[0] == max(probs)
    assert {ex.prompt for ex in splits.valid} <= {ex.prompt for ex in splits.test}
    assert len({ex.prompt for ex in splits.test}) == 20
    candidates = {ex.prompt: set(ex.meta["answers"]) for ex in splits.test}
    assert all(ex.response in candidates[ex.prompt] for ex in splits.train)
    assert all(Counter(ex.prompt for ex in splits.train)[p] == 10 for p in candidates)


def test_sampled_answers_follow_the_distribution():
    splits = LongtailSource(num_prompts=10, samples_per_prompt=2000, seed=3).load()
    test = {ex.prompt: ex for ex in splits.test}
    counts = Counter((ex.prompt, ex.response) for ex in splits.train)
    for prompt, ex in test.items():
        for answer, p in zip(ex.meta["answers"], ex.meta["probs"]):
            freq = counts[(prompt, answer)] / 2000
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 2000) + 1e-9, (answer, freq, p)
    head_freq = sum(counts[(p, ex.meta["answers"][0])] for p, ex in test.items()) / len(splits.train)
    assert abs(head_freq - 0.5) < 0.02


def test_deterministic_and_seeded():
    a, b = LongtailSource().load(), LongtailSource().load()
    assert a.content_hash == b.content_hash
    assert LongtailSource(seed=1).load().content_hash != a.content_hash
    assert LongtailSource(head_mass=0.6).load().content_hash != a.content_hash


@pytest.mark.parametrize(
    "options, message",
    [
        ({"head_mass": 0.2}, "not above the largest tail probability"),
        ({"head_mass": 1.0}, "head_mass"),
        ({"num_answers": 1}, "num_answers"),
        ({"num_answers": 10, "pool_size": 8}, "exceeds pool_size"),
        ({"valid_prompts": 60}, "exceeds num_prompts"),
    ],
)
def test_option_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        LongtailSource(**options)
