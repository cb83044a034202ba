"""Long-tail answer-set metrics: candidate probabilities as training encodes them, and each
metric's arithmetic on known distributions."""
import math

import pytest
import torch

from arkd_bench.data import LongtailSource
from arkd_bench.data.base import Example
from arkd_bench.data.collate import IGNORE_INDEX, encode_for_training
from arkd_bench.evaluate.evaluate_model import score_models
from arkd_bench.evaluate.longtail import LONGTAIL_METRICS, candidate_distributions
from arkd_bench.evaluate.metrics import BUILTIN_METRICS
from arkd_bench.testing import tiny_gpt2, tiny_tokenizer

NAMES = ("lt_head_mass", "lt_mode_mass", "lt_tail_coverage", "lt_entropy", "lt_tv")


@pytest.fixture(scope="module")
def data():
    return LongtailSource(num_prompts=4, num_answers=5, samples_per_prompt=4, valid_prompts=1).load()


@pytest.fixture(scope="module")
def tokenizer(data):
    return tiny_tokenizer([f"{e.prompt} {a}" for e in data.test for a in e.meta["answers"]])


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gpt2(tokenizer, n_layer=2, seed=3)


def test_registered_with_directions():
    assert {cls.name for cls in LONGTAIL_METRICS} == set(NAMES)
    for name in NAMES:
        cls = BUILTIN_METRICS[name]
        assert cls.needs_models and cls.higher_is_better == (name != "lt_tv")


@pytest.mark.parametrize("batch_size", [1, 7])
def test_candidate_probabilities_are_the_training_encoding_normalized(model, tokenizer, data, batch_size):
    got = candidate_distributions(model, tokenizer, data.test, batch_size=batch_size)
    for example, dist in zip(data.test, got):
        logps = []
        for answer in example.meta["answers"]:
            item = encode_for_training(tokenizer, example.prompt, answer, 256)  # answer tokens + eos
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([item["input_ids"]])).logits[0, :-1].double(), -1)
            labels = torch.tensor(item["labels"][1:])
            scored = labels != IGNORE_INDEX
            logps.append(logp[scored].gather(1, labels[scored].unsqueeze(1)).sum().item())
        expected = torch.softmax(torch.tensor(logps, dtype=torch.float64), 0).tolist()
        assert dist == pytest.approx(expected, abs=1e-6)
        assert math.isclose(sum(dist), 1.0)


def test_metric_arithmetic_on_a_known_distribution():
    truth = [0.1, 0.5, 0.2, 0.2]  # the head is the largest true prob, not the first answer
    P = [0.03, 0.6, 0.01, 0.36]
    metric = {name: BUILTIN_METRICS[name]() for name in NAMES}
    assert metric["lt_head_mass"].of(P, truth) == pytest.approx(60.0)
    assert metric["lt_mode_mass"].of(P, truth) == pytest.approx(60.0)
    assert metric["lt_tail_coverage"].of(P, truth) == pytest.approx(100 * 2 / 3)  # 0.03 and 0.36 reach 0.02
    assert BUILTIN_METRICS["lt_tail_coverage"](threshold=0.05).of(P, truth) == pytest.approx(100 / 3)
    assert metric["lt_entropy"].of(P, truth) == pytest.approx(-sum(x * math.log(x) for x in P))
    assert metric["lt_tv"].of(P, truth) == pytest.approx(100 * 0.5 * (0.07 + 0.1 + 0.19 + 0.16))
    assert metric["lt_tv"].of(truth, truth) == 0.0
    assert metric["lt_entropy"].of([1.0, 0.0], [0.6, 0.4]) == 0.0


def test_scores_per_example_and_the_teacher_is_not_needed(model, tokenizer, data):
    scores = score_models(model, None, tokenizer, data.test, [BUILTIN_METRICS[n]() for n in NAMES])
    dists = candidate_distributions(model, tokenizer, data.test)
    for i, dist in enumerate(dists):
        assert scores["lt_head_mass"][i] == pytest.approx(100 * dist[0])  # the source's head is answer 0
        assert scores["lt_mode_mass"][i] == pytest.approx(100 * max(dist))
        assert 0 <= scores["lt_tail_coverage"][i] <= 100
        assert 0 <= scores["lt_entropy"][i] <= math.log(5) + 1e-9


def test_examples_without_an_answer_distribution_are_a_clear_error(model, tokenizer):
    plain = [Example("Name the word for case 0.", ("tiso",), {"case": 0})]
    needs = (r"lt_entropy needs a dataset whose test examples carry their answer distribution "
             r".* `longtail` source .* test example 0 .*meta has keys \['case'\]")
    with pytest.raises(ValueError, match=needs):
        BUILTIN_METRICS["lt_entropy"]().score_models(model, None, tokenizer, plain)
    bad = [Example("p", ("a", "b"), {"answers": ["a", "b"], "probs": [1.0]})]
    with pytest.raises(ValueError, match="2 answers and 1 probs"):
        BUILTIN_METRICS["lt_tv"]().score_models(model, None, tokenizer, bad)
