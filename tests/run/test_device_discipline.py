"""Device discipline without a GPU: the run's models and cached teacher outputs live on the
accelerator's device. The device is reported as `meta` (shapes without data), and a torch
function mode fails any op whose tensors sit on different devices: on CUDA that op raises a
device mismatch, on a CPU run it passes unseen, since there the device is the CPU."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from accelerate import Accelerator
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from arkd_bench.recipe.validate import load_recipe
from arkd_bench.run.artifacts import Artifacts
from arkd_bench.run.cache import ArtifactCache

FIXTURES = Path(__file__).parents[1] / "fixtures"
META = torch.device("meta")
# moves between devices (a module's `.to` asks whether a parameter can take the moved data in place)
TRANSFERS = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.copy_, torch.Tensor.__setitem__,
             torch._has_compatible_shallow_copy_type}
# backward passes: a function mode is off inside the op it handles, so the ops a backward runs
# (custom autograd functions' included) are checked one level down, at dispatch
BACKWARDS = {torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad}
COPIES = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}
HOST_READS = {torch.Tensor.item, torch.Tensor.__contains__, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
              torch.Tensor.__float__}


class DeviceDiscipline(TorchFunctionMode):
    """Fails an op that mixes devices (moves between them excepted; 0-dim CPU tensors are
    scalars, which torch lets through on any device). A meta tensor read back to the host
    reads as zeros of its shape, so what a run stores on the CPU can be stored; its truth
    value reads True, so a check on values (`if not torch.isfinite(loss)`) passes."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.__bool__ and args[0].device == META:  # a check on values: taken as passed
            return True
        if func in HOST_READS and args[0].device == META:  # a value the host reads: zero
            return func(torch.zeros(args[0].shape, dtype=args[0].dtype), *args[1:], **kwargs)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func in TRANSFERS:
            if func is not torch.Tensor.__setitem__ and _to_host(func, args, kwargs):
                return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        else:
            devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
            if len(devices) > 1:
                raise AssertionError(f"{getattr(func, '__name__', func)} mixes devices {sorted(map(str, devices))}")
        if func in BACKWARDS:
            with DispatchDiscipline():
                return func(*args, **kwargs)
        return func(*args, **kwargs)


class DispatchDiscipline(TorchDispatchMode):
    """The same rules for the aten ops of a backward pass."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device == META:
            return True if args[0].dtype == torch.bool else 0  # as DeviceDiscipline reads them
        if func not in COPIES:
            devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
            if len(devices) > 1:
                raise AssertionError(f"{func} mixes devices {sorted(map(str, devices))} in a backward pass")
        return func(*args, **kwargs)


def _to_host(func, args, kwargs) -> bool:
    """A meta tensor copied to the CPU (`.cpu()` or `.to("cpu")`)."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device != META:
        return False
    if func is torch.Tensor.cpu:
        return True
    target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
    return target is not None and torch.device(target).type == "cpu"


def tiny_recipe(tmp_path, teacher_outputs: str, data: dict | None = None) -> Path:
    """The tiny grid with models trained by nothing: no SFT stage (so no training on `meta`).
    `data`: the method's data policy (default: the dataset's responses)."""
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    for spec in recipe["teachers"] + recipe["students"]:
        spec.pop("sft")
    recipe["datasets"][0]["options"]["path"] = str(FIXTURES / "tiny_pairs.jsonl")
    recipe["methods"] = recipe["methods"][:1]
    if data is not None:
        recipe["methods"][0]["data"] = data
    recipe["train"].update(teacher_outputs=teacher_outputs, steps=1)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


class MetaAccelerator(Accelerator):
    """A real accelerator (one CPU process) whose device is `meta`: `prepare` puts the student,
    the optimizer's state and every batch there, as it would on a GPU."""

    @property
    def device(self):
        return META


def artifacts_on(device, tmp_path, teacher_outputs: str = "memory", data: dict | None = None,
                 accelerator=None) -> Artifacts:
    accelerator = accelerator or SimpleNamespace(device=device, is_main_process=True, num_processes=1,
                                                 distributed_type="NO", mixed_precision="no",
                                                 wait_for_everyone=lambda: None, free_memory=lambda: None)
    loaded = load_recipe(tiny_recipe(tmp_path, teacher_outputs, data))
    cache = ArtifactCache(tmp_path / "cache", None, say=lambda message: None)
    return Artifacts(loaded, cache, accelerator, say=lambda message: None)


def on_device(model, device) -> bool:
    return all(t.device == device for t in [*model.parameters(), *model.buffers()])


def test_the_teacher_is_placed_on_the_device_in_eval_mode(tmp_path):
    art = artifacts_on(META, tmp_path)
    teacher = art.teacher("tiny", "t")[0]
    assert on_device(teacher, META) and not teacher.training


@pytest.mark.parametrize("kind", ["memory", "disk", "topk"])
def test_teacher_outputs_are_computed_on_the_device_and_answered_there(tmp_path, kind):
    art = artifacts_on(META, tmp_path, kind)
    with DeviceDiscipline():
        source = art.teacher_source("tiny", "t")
        items = art.data.train_items("tiny", "t")
        logits = source.batch(torch.arange(2), max(len(i["input_ids"]) for i in items[:2]), device=META)
    assert logits.device == META


def test_every_evaluated_model_runs_on_the_device(tmp_path, monkeypatch):
    """The teacher's row and the SFT row evaluate (generate and score) where training ran."""
    from arkd_bench.evaluate import evaluate_model as module
    from arkd_bench.recipe.matrix import expand
    from arkd_bench.run.cell import run_cell
    from arkd_bench.rundir.store import RunDir

    art = artifacts_on(META, tmp_path)
    evaluated = {}

    def recording(model, tokenizer, examples, *args, teacher=None, **kwargs):
        evaluated[id(model)] = (on_device(model, META), on_device(teacher, META))
        return module.Evaluation()

    monkeypatch.setattr(module, "evaluate_model", recording)
    rundir = RunDir(tmp_path / "out", writable=True)
    for cell in expand(art.recipe):
        if cell.kind in ("teacher", "sft"):
            evaluated.clear()
            run_cell(cell, art, rundir)
            assert list(evaluated.values()) == [(True, True)], cell.kind


@pytest.fixture
def meta_masks():
    """Boolean-mask indexing on `meta` (the divergence pass keeps the response tokens): torch
    then takes every entry as selected, since a meta tensor has no values to count."""
    import torch.fx.experimental._config as fx_config

    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        yield


def distill_cell_of(art):
    from arkd_bench.recipe.matrix import expand

    return next(cell for cell in expand(art.recipe) if cell.kind == "distill")


@pytest.mark.parametrize("kind", ["memory", "online"])
def test_a_distillation_step_runs_on_the_device(tmp_path, kind, meta_masks):
    """One optimizer step of a distilled cell: the student prepared by accelerate, the teacher
    source's logits, the divergence pass, the backward and the update, all on the device."""
    from arkd_bench.run.cell import distill_cell, start_cell
    from arkd_bench.rundir.store import RunDir

    art = artifacts_on(META, tmp_path, kind, accelerator=MetaAccelerator(cpu=True))
    cell = distill_cell_of(art)
    with DeviceDiscipline():
        student = distill_cell(cell, art, RunDir(tmp_path / "out", writable=False), start_cell(cell, art))
    assert on_device(student, META)


def test_teacher_sequences_are_generated_on_the_device(tmp_path, meta_masks):
    """SeqKD (the `teacher` data policy): the teacher continues the training prompts where it was
    placed, and the distillation step on those sequences runs there too."""
    from arkd_bench.run.cell import distill_cell, start_cell
    from arkd_bench.rundir.store import RunDir

    # greedy: `meta` has no generator, so a sampled row would draw on the host from the zeros it reads
    art = artifacts_on(META, tmp_path, data={"name": "teacher", "options": {"max_new_tokens": 4, "do_sample": False}},
                       accelerator=MetaAccelerator(cpu=True))
    cell, rundir = distill_cell_of(art), RunDir(tmp_path / "out", writable=False)
    with DeviceDiscipline():
        begun = start_cell(cell, art)
        student = distill_cell(cell, art, rundir, begun)
    assert begun.extra["data_policy"]["sequences"]["sequences"] > 0 and on_device(student, META)
