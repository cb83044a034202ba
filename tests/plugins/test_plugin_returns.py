"""What plugins return is checked: a weighting's weights, a divergence's values, a metric's
scores, a data policy's sequences. A plugin that breaks its contract fails its cell (others go
on) with a PluginOutputError naming the plugin, its file, the method and what was wrong; the
run records it as the cell's error, with the plugin that registered it."""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pytest
import torch

from arkd_bench import DataPolicy, Divergence, Metric, hookimpl
from arkd_bench.plugins.output import PluginOutputError

BAD_PLUGINS = '''
import math

import torch

from arkd_bench import DataPolicy, Divergence, WeightingStrategy, hookimpl


class Mixer(WeightingStrategy):
    """1.7 x FKL - 0.7 x RKL: maximises RKL."""
    name = "mixer"

    def weights(self, features):
        return torch.tensor([1.7, -0.7])


class NanWeights(WeightingStrategy):
    name = "nan_weights"

    def weights(self, features):
        return torch.tensor([0.5, math.nan])


class ThreeWeights(WeightingStrategy):
    name = "three_weights"

    def weights(self, features):
        return torch.tensor([0.2, 0.3, 0.5])


class Mean(Divergence):
    """FKL averaged over the chunk: one number, not one per token."""
    name = "mean_fkl"

    def per_token(self, t_logp, s_logp):
        return (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()


class Nan(Divergence):
    name = "nan_div"

    def per_token(self, t_logp, s_logp):
        return (t_logp.exp() * (t_logp - s_logp)).sum(-1) * math.nan


class OutOfVocabulary(DataPolicy):
    """Replaces the first token of every batch by an id past the vocabulary."""
    name = "out_of_vocab"
    online = True

    def batch(self, batch, session):
        out = {k: v.clone() for k, v in batch.items() if k != "index"}
        out["input_ids"][0, 0] = len(session.tokenizer) + 5
        return out


@hookimpl
def arkd_register_weightings(register):
    register(Mixer)
    register(NanWeights)
    register(ThreeWeights)


@hookimpl
def arkd_register_divergences(register):
    register(Mean)
    register(Nan)


@hookimpl
def arkd_register_data_policies(register):
    register(OutOfVocabulary)
'''


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_plugins_bad_return_value_fails_its_cell_naming_plugin_file_method_and_step(tmp_path):
    from arkd_bench.testing import run_tiny

    plugin = tmp_path / "bad_plugins.py"
    plugin.write_text(BAD_PLUGINS)
    methods = [
        {"name": "fkl", "objective": ["fkl"]},
        {"name": "negative", "objective": ["fkl", "rkl"], "weighting": "mixer"},
        {"name": "nan_w", "objective": ["fkl", "rkl"], "weighting": "nan_weights"},
        {"name": "three", "objective": ["fkl", "rkl"], "weighting": "three_weights"},
        {"name": "mean", "objective": ["fkl", "mean_fkl"]},
        {"name": "nan_d", "objective": ["fkl", "nan_div"]},
        {"name": "oov", "objective": ["fkl"], "data": "out_of_vocab"},
    ]
    with pytest.raises(RuntimeError, match="cells failed"):
        run_tiny(tmp_path, methods=methods, plugins=["bad_plugins.py"])
    out = tmp_path / "out"
    cells = {json.loads((d / "cell.json").read_text())["method"]: json.loads((d / "status.json").read_text())
             for d in (out / "cells").iterdir() if (d / "cell.json").is_file()}
    assert cells["fkl"]["status"] == "done"  # the grid went on
    failed = {method: cell["error"] for method, cell in cells.items() if method != "fkl"}
    assert {cells[m]["status"] for m in failed} == {"failed"}

    def at(text: str) -> str:
        return f"{plugin}:{line_of(plugin, text)}"

    assert failed["negative"] == (
        f"PluginOutputError: weighting plugin 'mixer' (Mixer.weights in {at('def weights(self, features):')}) "
        "returned a bad value from weights() at step 0: weight of term 'rkl' is negative: -0.7 (weights [1.7, -0.7] "
        "for terms ['fkl', 'rkl']); weights must be finite and >= 0 (a negative weight makes the update maximise "
        "its divergence); see docs/plugins/weighting.md (registered by plugin 'bad_plugins.py')")
    assert failed["nan_w"].startswith("PluginOutputError: weighting plugin 'nan_weights' (NanWeights.weights in ")
    assert "weights() at step 0: weight of term 'rkl' is nan" in failed["nan_w"]
    assert ("weighting plugin 'three_weights'" in failed["three"]
            and "expected shape (2,) (one weight per term) or" in failed["three"] and "got (3,)" in failed["three"])
    assert failed["mean"].startswith(f"PluginOutputError: divergence plugin 'mean_fkl' (Mean.per_token in "
                                     f"{at('def per_token(self, t_logp, s_logp):')}) ")
    assert "returned a bad value from per_token(): expected shape (" in failed["mean"]
    assert "got () (a scalar: return each row's value, not their sum or mean)" in failed["mean"]
    assert failed["nan_d"].startswith("PluginOutputError: divergence plugin 'nan_div' (Nan.per_token in ")
    assert "from per_token() at step 0: non-finite values on " in failed["nan_d"]
    assert failed["oov"].startswith("PluginOutputError: data_policy plugin 'out_of_vocab' (OutOfVocabulary.batch in ")
    assert "from batch() at step 0: input_ids outside the vocabulary [0, 320): min 0, max 325" in failed["oov"]
    assert all(f"{plugin}:" in error and "(registered by plugin 'bad_plugins.py')" in error for error in failed.values())


# -- divergences: through the public call and the fused pass -------------------------------------


class Rows(Divergence):
    """FKL, with whatever `shape` and `damage` subclasses give."""

    name = "rows"

    def per_token(self, t_logp, s_logp):
        return self.damage((t_logp.exp() * (t_logp - s_logp)).sum(-1))

    @staticmethod
    def damage(values):
        return values


def divergence(damage, name="bad_div"):
    return type(f"Div_{name}", (Rows,), {"name": name, "damage": staticmethod(damage)})()


def logits(seed=0, shape=(2, 3, 11)):
    g = torch.Generator().manual_seed(seed)
    return {"student_logits": torch.randn(*shape, generator=g), "teacher_logits": 2 * torch.randn(*shape, generator=g)}


@pytest.mark.parametrize("damage, says", [
    (lambda v: v.sum(), "expected shape (6,) (one value per row of the (6, 11) log-probs), got () (a scalar"),
    (lambda v: v.unsqueeze(1), "got (6, 1)"),
    (lambda v: v * math.nan, "non-finite values on 6 of 6 scored tokens (6 NaN; first at token (0, 0))"),
    (lambda v: v - 1.0, "negative values on"),
])
def test_a_divergence_with_a_bad_value_is_named(damage, says):
    with pytest.raises(PluginOutputError, match=r"^divergence plugin 'bad_div' \(Div_bad_div.per_token in ") as info:
        divergence(damage)(**logits())
    assert says in str(info.value) and str(info.value).endswith("see docs/plugins/divergence.md")


def test_chunk_methods_are_checked_in_the_fused_pass():
    from arkd_bench.divergences import FKL, divergence_pass

    class Wide(FKL):
        name = "wide"

        def chunk_value(self, chunk):
            return chunk.fkl.unsqueeze(1).expand(-1, 2)

    with pytest.raises(PluginOutputError, match=r"'wide' \(.*Wide.chunk_value in .*\) returned a bad value from "
                                                r"chunk_value\(\): expected shape \(4,\) .*got \(4, 2\)"):
        divergence_pass(terms={"w": Wide()}, chunk_size=4, **logits(shape=(2, 5, 11)))


def test_rounding_and_exact_infinities_are_not_errors():
    from arkd_bench.divergences import BUILTIN_DIVERGENCES

    same = logits()
    same["teacher_logits"] = same["student_logits"] + 1e-7  # divergences ~0, rounding either way
    for name, cls in BUILTIN_DIVERGENCES.items():
        assert torch.isfinite(cls()(**same)).all(), name
    assert (divergence(lambda v: v * 0 - 1e-6)(**logits()) < 0).all()  # within the rounding tolerance
    zero_mass = logits()
    zero_mass["student_logits"][0, 0, 3] = -math.inf  # the student gives token 3 no mass: FKL is +inf there
    values = BUILTIN_DIVERGENCES["fkl"]()(**zero_mass)
    assert values[0, 0] == math.inf and torch.isfinite(values.flatten()[1:]).all()
    broken = logits()
    broken["student_logits"][1, 2, 0] = math.nan  # the model's fault, not the divergence's
    assert BUILTIN_DIVERGENCES["rkl"]()(**broken)[1, 2].isnan()


# -- metrics --------------------------------------------------------------------------------


def evaluate_with(metric):
    from arkd_bench.data.base import Example
    from arkd_bench.evaluate.evaluate_model import evaluate_model
    from arkd_bench.evaluate.generate import GenerationSettings
    from arkd_bench.evaluate.metrics import RougeL

    examples = [Example(prompt=f"p{i}", references=(f"the answer {i}",)) for i in range(4)]
    return evaluate_model(None, None, examples, [RougeL(), metric], GenerationSettings(),
                          fixed_predictions=[f"the answer {i % 2}" for i in range(4)])


class Scores(Metric):
    name = "scores"

    def score(self, predictions, references):
        return self.values(predictions)


def metric(values, name="bad_metric"):
    return type(f"Metric_{name}", (Scores,), {"name": name, "values": staticmethod(values)})()


@pytest.mark.parametrize("values, says", [
    (lambda p: [1.0, math.nan, 2.0, 3.0], "score of example 1 is nan (1 of 4 scores are not finite); a score "
                                         "must be a finite number; raise an error saying why"),
    (lambda p: [1.0] * 3, "3 scores for 4 examples"),
    (lambda p: ["1.0"] * 4, "score of example 0 is str '1.0', not a number"),
    (lambda p: 2.0, "expected a list of 4 numbers (one per example), got float"),
])
def test_a_metric_with_a_bad_score_is_named(values, says):
    with pytest.raises(PluginOutputError, match=r"^metric plugin 'bad_metric' \(Metric_bad_metric.score in ") as info:
        evaluate_with(metric(values))
    assert "returned a bad value from score(): " + says in str(info.value)


def test_a_metrics_numbers_of_any_kind_are_kept_as_floats():
    import numpy as np

    result = evaluate_with(metric(lambda p: np.array([1, 2, 3, 4], dtype=np.int64), "counts"))
    assert result.metrics["counts"] == 2.5 and {type(r["scores"]["counts"]) for r in result.records} == {float}


# -- data policies ------------------------------------------------------------------------------


def test_built_sequences_outside_the_vocabulary_are_named(tokenizer):
    from arkd_bench.data_policy.session import SequenceSource
    from arkd_bench.testing import tiny_gpt2

    class Shifted(DataPolicy):
        name = "shifted"
        builds_sequences = True

        def build_sequences(self, source):
            return [{"input_ids": [1, 2, 400], "labels": [-100, 2, 400]}]

    source = SequenceSource(teacher=tiny_gpt2(tokenizer), tokenizer=tokenizer, items=[], max_length=64)
    with pytest.raises(PluginOutputError, match=r"^data_policy plugin 'shifted' \(.*Shifted.build_sequences in .*\) "
                                                r"returned a bad value from build_sequences\(\): item 0 has token ids "
                                                r"outside the vocabulary \[0, 320\): min 1, max 400"):
        Shifted().build_sequences(source)


@pytest.mark.parametrize("change, says", [
    (lambda b: b.update(labels=b["labels"][:, :-1]), "must share one shape [batch, length]"),
    (lambda b: b["labels"].__setitem__((0, -1), -5), "labels must be -100 (not scored) or token ids in [0, 320)"),
    (lambda b: b.pop("attention_mask"), "'attention_mask' missing or not a tensor"),
    (lambda b: b.update(input_ids=b["input_ids"].float()), "input_ids must hold integers"),
    (lambda b: b["input_ids"].__setitem__((0, 1), 7), "keeps the dataset batch's 'index' but holds other sequences"),
])
def test_online_batches_are_checked(tokenizer, change, says):
    from arkd_bench.data.collate import collate_for_training
    from arkd_bench.data_policy.checks import batch_problem
    from arkd_bench.data_policy.session import DataSession
    from arkd_bench.testing import tiny_gpt2

    given = collate_for_training([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "attention_mask": [1, 1, 1]},
                                  {"input_ids": [5, 6], "labels": [-100, 6], "attention_mask": [1, 1]}], 0)
    given["index"] = torch.tensor([3, 4])
    assert batch_problem(given, given, 320) is None and batch_problem(dict(given), given, 320) is None
    returned = {k: v.clone() for k, v in given.items()}
    change(returned)
    assert says in batch_problem(returned, given, 320)

    class Changes(DataPolicy):
        name = "changes"
        online = True

        def batch(self, batch, session):
            return returned

    model = tiny_gpt2(tokenizer)
    session = DataSession(policy=Changes(), student=lambda: model, tokenizer=tokenizer, max_length=64,
                          device="cpu", seed=0, total_steps=3)
    with pytest.raises(PluginOutputError, match=r"^data_policy plugin 'changes' .* from batch\(\) at step 2: "):
        session.next_batch(given, 2)


def test_the_failure_names_the_plugin_that_registered_it():
    from arkd_bench.faults import describe_failure
    from arkd_bench.testing import registered_plugin

    bad = divergence(lambda v: v * math.nan, "nan_again")
    module = types.ModuleType("nan_plugin")
    module.arkd_register_divergences = hookimpl(lambda register: register(type(bad)))
    with registered_plugin(module, name="nan-plugin") as plugins:
        with pytest.raises(PluginOutputError) as info:
            bad(**logits())
        message = describe_failure(info.value, plugins)
    assert message.startswith("PluginOutputError: divergence plugin 'nan_again' (")
    assert message.endswith("(registered by plugin 'nan-plugin')")
