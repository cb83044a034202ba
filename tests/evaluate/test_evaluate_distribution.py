"""Teacher-forced distribution metrics against a plain one-example-at-a-time computation."""
import copy

import pytest
import torch

from arkd_bench.data.base import Example
from arkd_bench.data.collate import IGNORE_INDEX, encode_for_training
from arkd_bench.evaluate import teacher_forced
from arkd_bench.evaluate.distribution import DISTRIBUTION_METRICS, TFHeadMass, TFTailCoverage
from arkd_bench.evaluate.evaluate_model import evaluate_model, score_models
from arkd_bench.evaluate.generate import GenerationSettings
from arkd_bench.evaluate.metrics import BUILTIN_METRICS
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2

NAMES = ("tf_fkl", "tf_rkl", "tf_tvd", "tf_head_mass", "tf_tail_coverage")
EXAMPLES = [Example(t.split(" ")[0] + " " + t.split(" ")[1], (" ".join(t.split(" ")[2:]),)) for t in SAMPLE_TEXTS]


@pytest.fixture(scope="module")
def teacher(tokenizer):
    return tiny_gpt2(tokenizer, n_layer=2, seed=1)


@pytest.fixture(scope="module")
def student(tokenizer):
    return tiny_gpt2(tokenizer, n_layer=1, n_embd=16, seed=2)


def reference(student, teacher, tokenizer, example, mu=0.5):
    """Every metric of one example from full log-softmaxes and a full sort (no batching, no padding)."""
    item = encode_for_training(tokenizer, example.prompt, example.response, 256)
    ids = torch.tensor([item["input_ids"]])
    scored = torch.tensor(item["labels"][1:]) != IGNORE_INDEX
    with torch.no_grad():
        lp = torch.log_softmax(teacher(ids).logits[0, :-1][scored].double(), -1)
        lq = torch.log_softmax(student(ids).logits[0, :-1][scored].double(), -1)
    p, q = lp.exp(), lq.exp()
    order = p.argsort(-1, descending=True)
    before = torch.cumsum(p.gather(-1, order), -1) - p.gather(-1, order)  # mass ahead of each entry
    head = torch.zeros_like(p, dtype=torch.bool).scatter(-1, order, before < mu)
    tail_p = (p * ~head).sum()
    return {
        "tf_fkl": (p * (lp - lq)).sum(-1).mean().item(),
        "tf_rkl": (q * (lq - lp)).sum(-1).mean().item(),
        "tf_tvd": 100 * 0.5 * (p - q).abs().sum(-1).mean().item(),
        "tf_head_mass": 100 * (q * head).sum(-1).mean().item(),
        "tf_tail_coverage": 100 * (torch.minimum(p, q) * ~head).sum().item() / tail_p.item(),
    }


def test_registered_with_directions():
    for name in NAMES:
        cls = BUILTIN_METRICS[name]
        assert cls.needs_models and cls.higher_is_better == (name in ("tf_head_mass", "tf_tail_coverage"))
    assert {cls.name for cls in DISTRIBUTION_METRICS} == set(NAMES)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_values_equal_the_plain_computation(student, teacher, tokenizer, batch_size):
    got = {name: BUILTIN_METRICS[name](batch_size=batch_size).score_models(student, teacher, tokenizer, EXAMPLES)
           for name in NAMES}
    for i, example in enumerate(EXAMPLES):
        expected = reference(student, teacher, tokenizer, example)
        for name in NAMES:
            assert got[name][i] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), (name, i)


def test_mu_changes_the_head(student, teacher, tokenizer):
    for mu in (0.2, 0.9):
        got = TFHeadMass(mu=mu).score_models(student, teacher, tokenizer, EXAMPLES[:2])
        cov = TFTailCoverage(mu=mu).score_models(student, teacher, tokenizer, EXAMPLES[:2])
        for i, example in enumerate(EXAMPLES[:2]):
            expected = reference(student, teacher, tokenizer, example, mu=mu)
            assert got[i] == pytest.approx(expected["tf_head_mass"], rel=1e-4)
            assert cov[i] == pytest.approx(expected["tf_tail_coverage"], rel=1e-4)


def test_the_teacher_against_itself(teacher, tokenizer):
    scores = score_models(teacher, teacher, tokenizer, EXAMPLES, [BUILTIN_METRICS[n]() for n in NAMES])
    assert scores["tf_fkl"] == scores["tf_rkl"] == scores["tf_tvd"] == [0.0] * len(EXAMPLES)
    assert scores["tf_tail_coverage"] == pytest.approx([100.0] * len(EXAMPLES))
    assert all(50.0 <= v <= 100.0 for v in scores["tf_head_mass"])  # the head holds at least mu


def test_one_forward_pass_per_model_is_shared_by_all_five(student, teacher, tokenizer):
    calls = []
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: calls.append(name))
             for name, m in (("s", student), ("t", teacher))]
    try:
        score_models(student, teacher, tokenizer, EXAMPLES, [BUILTIN_METRICS[n](batch_size=8) for n in NAMES])
        assert sorted(calls) == ["s", "t"]
        calls.clear()
        for name in NAMES:  # outside shared_passes nothing is kept: each call runs its own pass
            BUILTIN_METRICS[name](batch_size=8).score_models(student, teacher, tokenizer, EXAMPLES)
        assert sorted(calls) == sorted(["s", "t"] * len(NAMES))
    finally:
        for h in hooks:
            h.remove()
    assert not teacher_forced._memo


def test_clear_errors(student, tokenizer):
    metric = BUILTIN_METRICS["tf_fkl"]()
    with pytest.raises(ValueError, match="tf_fkl compares the student with the teacher, but no teacher"):
        metric.score_models(student, None, tokenizer, EXAMPLES)
    with pytest.raises(TypeError, match="tf_fkl is a model metric"):
        metric.score(["a"], [["a"]])


def test_evaluate_model_copies_model_scores_into_every_generation_record(student, teacher, tokenizer):
    metrics = [BUILTIN_METRICS["rougeL"](), BUILTIN_METRICS["tf_fkl"](), BUILTIN_METRICS["tf_head_mass"]()]
    settings = GenerationSettings(do_sample=True, seeds=[1, 2], max_new_tokens=4)
    evaluation = evaluate_model(student, tokenizer, EXAMPLES, metrics, settings, teacher=teacher)
    direct = BUILTIN_METRICS["tf_fkl"]().score_models(student, teacher, tokenizer, EXAMPLES)
    assert len(evaluation.records) == 2 * len(EXAMPLES)
    for record in evaluation.records:
        assert set(record["scores"]) == {"rougeL", "tf_fkl", "tf_head_mass"}
        assert record["scores"]["tf_fkl"] == pytest.approx(direct[record["example"]])
    assert set(evaluation.per_seed["rougeL"]) == {"1", "2"}
    assert evaluation.per_seed["tf_fkl"] == {"teacher_forced": pytest.approx(sum(direct) / len(direct))}
    assert evaluation.metrics["tf_fkl"] == pytest.approx(sum(direct) / len(direct))
    assert evaluation.settings["metrics"]["tf_fkl"]["unit"] == "nats"


def test_generation_seeds_are_recorded_only_when_sampling(student, tokenizer):
    rouge = [BUILTIN_METRICS["rougeL"]()]
    greedy = evaluate_model(student, tokenizer, EXAMPLES, rouge, GenerationSettings(max_new_tokens=2)).settings
    assert "seeds" not in greedy["generation"] and greedy["seeds_used"] == [None]
    assert greedy["generation"]["do_sample"] is False
    sampled = evaluate_model(student, tokenizer, EXAMPLES, rouge,
                             GenerationSettings(do_sample=True, seeds=[3, 4], max_new_tokens=2)).settings
    assert sampled["generation"]["seeds"] == [3, 4] and sampled["seeds_used"] == [3, 4]


def test_a_frozen_teacher_is_passed_once_for_every_student(student, teacher, tokenizer):
    """Within `frozen_models()` (a run's scope) the teacher's rows are computed once and reused
    for any student, with the same scores as without; a budget too small to keep them, or
    different pairs, means a fresh pass."""
    other = copy.deepcopy(student)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    metrics = [BUILTIN_METRICS[n](batch_size=8) for n in NAMES]
    expected = [score_models(m, teacher, tokenizer, EXAMPLES, metrics) for m in (student, other)]
    calls = []
    hook = teacher.register_forward_hook(lambda *args: calls.append("t"))
    try:
        with teacher_forced.frozen_models():
            got = [score_models(m, teacher, tokenizer, list(EXAMPLES), metrics) for m in (student, other)]
            assert len(calls) == 1  # one batch of 8, once for both students (and a fresh list of examples)
            score_models(student, teacher, tokenizer, EXAMPLES[:2], metrics)
            assert len(calls) == 2  # other pairs: their own pass
        with teacher_forced.frozen_models(budget=0):
            for m in (student, other):
                score_models(m, teacher, tokenizer, EXAMPLES, metrics)
            assert len(calls) == 4
    finally:
        hook.remove()
    assert got == expected
    assert expected[0] != expected[1]
    assert not teacher_forced._frozen
