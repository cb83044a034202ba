"""Teacher and student whose embeddings are padded to different sizes past one tokenizer: the
padding columns are sliced off, so training and the teacher-forced metrics equal those of the
same models with the padding rows removed; a vocabulary smaller than the tokenizer is refused."""
from __future__ import annotations

import pytest
import torch

from arkd_bench.data.collate import TrainingDataset
from arkd_bench.models.build import ModelError, vocab_size
from arkd_bench.models.vocabulary import check_vocabularies, shared_vocabulary
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.teacher.memory import TeacherOutputs
from arkd_bench.testing import tiny_gpt2
from arkd_bench.train.distill import Distiller
from helpers import examples_of_varied_length as examples

PADDING = 64


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def padded(model, rows: int):
    """`model` with `rows` more embedding rows (random, as an untrained padding row is): the
    same function on every real token id, but a larger softmax."""
    from transformers import GPT2LMHeadModel

    config = model.config.to_dict()
    config["vocab_size"] = model.config.vocab_size + rows
    out = GPT2LMHeadModel(type(model.config).from_dict(config)).eval()
    state = model.state_dict()
    torch.manual_seed(123)
    extra = torch.randn(rows, model.config.n_embd) * 2.0  # visible mass on the padding rows
    state["transformer.wte.weight"] = torch.cat([state["transformer.wte.weight"], extra])
    state["lm_head.weight"] = state["transformer.wte.weight"]
    out.load_state_dict(state)
    return out


def distiller(tokenizer, builtin_plugins, student, teacher, **train):
    from accelerate import Accelerator

    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"],
                                        "weighting": {"name": "fixed", "options": {"weights": [0.5, 0.5]}}})
    spec = TrainSpec.model_validate({"steps": 3, "batch_size": 4, "max_length": 96, "log_every": 1, "lr": 0.02,
                                     **train})
    items = TrainingDataset(examples(16), tokenizer, spec.max_length).items
    source = teacher(items) if callable(teacher) and not isinstance(teacher, torch.nn.Module) else OnlineTeacher(teacher)
    return Distiller(student=student, teacher=source, tokenizer=tokenizer, train_items=items, method=method,
                     train=spec, plugins=builtin_plugins, seed=0, accelerator=Accelerator(cpu=True))


def losses(d) -> list:
    """Every step's loss, term losses, weights and features."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in d.run().log]


@pytest.mark.parametrize("padded_side", ["teacher", "student", "both"])
@pytest.mark.parametrize("fused_head", [False, True])
def test_padding_rows_are_sliced_off_and_the_loss_is_that_without_them(tokenizer, builtin_plugins, padded_side,
                                                                       fused_head):
    """`padded_side` gets PADDING more rows than the other side; with "both", the student has
    PADDING rows of padding and the teacher twice as many, and the reference is both at PADDING
    (the smaller side's padding is kept: only the larger side is cut to it)."""
    student, teacher = tiny_gpt2(tokenizer, seed=1), tiny_gpt2(tokenizer, n_layer=2, seed=2)
    if padded_side == "both":
        student, teacher = padded(student, PADDING), padded(teacher, PADDING)
    # padded() copies, so each run trains its own student
    plain = losses(distiller(tokenizer, builtin_plugins, padded(student, 0), padded(teacher, 0),
                             fused_head=fused_head))
    s = padded(student, PADDING if padded_side == "student" else 0)
    t = padded(teacher, 0 if padded_side == "student" else PADDING)
    assert vocab_size(s) != vocab_size(t)
    sliced = losses(distiller(tokenizer, builtin_plugins, s, t, fused_head=fused_head))
    assert sliced[0] == plain[0]  # at the same weights: the same loss, terms and features, bit for bit
    if padded_side != "student" or fused_head:
        assert sliced == plain
    else:
        # The dense head's backward sums the logits' gradient (zero on the padding columns) over
        # the student's whole vocabulary, in another order: later steps agree up to rounding.
        for a, b in zip(sliced, plain):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-9)


def test_a_teacher_cache_of_the_padded_teacher_is_sliced_on_read(tokenizer, builtin_plugins):
    student, teacher = tiny_gpt2(tokenizer, seed=1), tiny_gpt2(tokenizer, n_layer=2, seed=2)

    def cached(model):
        return lambda items: TeacherOutputs.compute(model, items, tokenizer.pad_token_id)

    plain = losses(distiller(tokenizer, builtin_plugins, padded(student, 0), cached(teacher)))
    padded_teacher = cached(padded(teacher, PADDING))
    assert losses(distiller(tokenizer, builtin_plugins, padded(student, 0), padded_teacher)) == plain


def test_padding_makes_a_visible_difference_when_not_sliced(tokenizer):
    """The check above is not vacuous: the padding rows carry mass in the padded softmax."""
    teacher = tiny_gpt2(tokenizer, seed=2)
    ids = torch.tensor([tokenizer("Return the base name of a pathname.")["input_ids"]])
    with torch.no_grad():
        probs = padded(teacher, PADDING)(input_ids=ids).logits.softmax(-1)
    assert float(probs[..., len(tokenizer):].sum(-1).min()) > 1e-3


def test_a_vocabulary_smaller_than_the_tokenizer_is_refused(tokenizer, builtin_plugins):
    n = len(tokenizer)
    assert shared_vocabulary(n + PADDING, n, n) == n
    with pytest.raises(ModelError, match=rf"student 's' has a vocabulary of {n - 8} entries, fewer than the "
                                         rf"tokenizer's {n} \(teacher {n + PADDING}, student {n - 8}\)"):
        shared_vocabulary(n + PADDING, n - 8, n, teacher="t", student="s")
    teacher, student = tiny_gpt2(tokenizer, seed=2), tiny_gpt2(tokenizer, seed=1)
    assert check_vocabularies(teacher, student, tokenizer, "t", "s") is None  # equal sizes: nothing recorded
    assert check_vocabularies(padded(teacher, PADDING), student, tokenizer, "t", "s") == {
        "teacher": n + PADDING, "student": n, "used": n}
    small = tiny_gpt2(tokenizer, seed=1)
    small.resize_token_embeddings(n - 8)
    with pytest.raises(ModelError, match=f"teacher 't' has a vocabulary of {n - 8} entries"):
        check_vocabularies(small, student, tokenizer, "t", "s")
    with pytest.raises(ModelError, match=f"fewer than the tokenizer's {n}"):
        check_vocabularies(small, small, tokenizer, "t", "s")
    # the distiller refuses it too, whatever source the teacher's logits come from
    d = distiller(tokenizer, builtin_plugins, padded(student, PADDING), teacher)
    batch = d.dataset.collate([d.dataset[i] for i in range(2)])
    batch["teacher_logits"] = torch.zeros(*batch["input_ids"].shape, n - 8)
    with pytest.raises(ModelError, match=f"teacher 'teacher' has a vocabulary of {n - 8} entries"):
        d._logits(batch)


def test_teacher_forced_metrics_compare_the_shared_rows(tokenizer):
    from arkd_bench.evaluate.distribution import teacher_forced_stats

    student, teacher = tiny_gpt2(tokenizer, seed=1), tiny_gpt2(tokenizer, n_layer=2, seed=2)
    test = examples(6)
    plain = teacher_forced_stats(student, teacher, tokenizer, test, batch_size=4)
    for s, t in ((padded(student, PADDING), teacher), (student, padded(teacher, PADDING))):
        assert teacher_forced_stats(s, t, tokenizer, test, batch_size=4) == plain
    assert teacher_forced_stats(padded(teacher, PADDING), teacher, tokenizer, test)["tf_fkl"] == pytest.approx(
        [0.0] * len(test), abs=1e-6)


def test_a_cell_with_a_padded_student_records_the_sizes_it_used(tmp_path):
    """A tiny grid whose student is built with 64 padding rows: the distilled cell trains and is
    scored (teacher-forced too), and its provenance says which sizes met; the teacher's cell,
    where nothing was sliced, records nothing."""
    import json

    from arkd_bench.testing import TINY_RECIPE, run_tiny

    student = TINY_RECIPE["students"][0]
    config = {**student["scratch"]["config"], "vocab_size": 320 + PADDING}
    run = run_tiny(tmp_path, students=[{**student, "scratch": {**student["scratch"], "config": config}}],
                   metrics=["rougeL", "tf_fkl"], eval={**TINY_RECIPE["eval"], "baselines": ["teacher"]})
    provenance = {cell["kind"]: json.loads((run.out / "cells" / cell["id"] / "provenance.json").read_text())
                  for cell in run.results["cells"]}
    tokens = provenance["distill"]["vocab"]["used"]  # len(tokenizer): the teacher is built to it
    assert tokens <= 320
    assert provenance["distill"]["vocab"] == {"teacher": tokens, "student": 320 + PADDING, "used": tokens}
    assert "vocab" not in provenance["teacher"]
    assert run.metric("fkl", "tf_fkl") >= 0


@pytest.mark.parametrize("layout", ["dense", "topk"])
def test_stored_log_probs_of_the_padded_teacher_are_sliced_on_read(tokenizer, builtin_plugins, tmp_path, layout):
    """Stored log-probs are normalised over the padded vocabulary; the pass renormalises the kept
    columns, which then hold the unpadded teacher's distribution: up to float16 rounding (dense),
    or with top-k's approximate tail (spread over the padding columns too) around the exact top-k."""
    from arkd_bench.teacher.disk import StoredTeacherOutputs

    student, teacher = tiny_gpt2(tokenizer, seed=1), tiny_gpt2(tokenizer, n_layer=2, seed=2)
    padded_teacher, k = padded(teacher, PADDING), 32

    def stored(items):
        StoredTeacherOutputs.write(tmp_path, layout, padded_teacher, items, tokenizer.pad_token_id,
                                   vocab_size(padded_teacher), k=k)
        return StoredTeacherOutputs(tmp_path, layout, vocab_size(padded_teacher), model=padded_teacher)

    d = distiller(tokenizer, builtin_plugins, padded(student, 0), stored)
    batch = d.dataset.collate([d.dataset[i] for i in range(4)])
    with torch.no_grad():
        _, t_stored, labels = d._logits(batch)
        exact = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    rows = labels != -100
    assert t_stored.shape[-1] == len(tokenizer)
    p, q = exact[rows].softmax(-1), t_stored[rows].softmax(-1)
    if layout == "dense":
        torch.testing.assert_close(q, p, atol=2e-3, rtol=0)
    else:  # an approximation (its top-k may hold padding rows, then cut): a distribution over the kept rows
        torch.testing.assert_close(q.sum(-1), torch.ones(len(q)))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in d.run().log)
