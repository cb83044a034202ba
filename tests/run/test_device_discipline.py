"""Device discipline without a GPU: the run's models and cached teacher outputs live on the
accelerator's device. The device is reported as `meta` (shapes without data), and a torch
function mode fails any op whose tensors sit on different devices: on CUDA that op raises a
device mismatch, on a CPU run it passes unseen, since there the device is the CPU."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from arkd_bench.recipe.validate import load_recipe
from arkd_bench.run.artifacts import Artifacts
from arkd_bench.run.cache import ArtifactCache

FIXTURES = Path(__file__).parents[1] / "fixtures"
META = torch.device("meta")
# moves between devices (a module's `.to` asks whether a parameter can take the moved data in place)
TRANSFERS = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.copy_, torch.Tensor.__setitem__,
             torch._has_compatible_shallow_copy_type}
HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
              torch.Tensor.__float__}


class DeviceDiscipline(TorchFunctionMode):
    """Fails an op that mixes devices (moves between them excepted; 0-dim CPU tensors are
    scalars, which torch lets through on any device). A meta tensor read back to the host
    reads as zeros of its shape, so what a run stores on the CPU can be stored."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
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
        return func(*args, **kwargs)


def _to_host(func, args, kwargs) -> bool:
    """A meta tensor copied to the CPU (`.cpu()` or `.to("cpu")`)."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device != META:
        return False
    if func is torch.Tensor.cpu:
        return True
    target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
    return target is not None and torch.device(target).type == "cpu"


def tiny_recipe(tmp_path, teacher_outputs: str) -> Path:
    """The tiny grid with models trained by nothing: no SFT stage (so no training on `meta`)."""
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    for spec in recipe["teachers"] + recipe["students"]:
        spec.pop("sft")
    recipe["datasets"][0]["options"]["path"] = str(FIXTURES / "tiny_pairs.jsonl")
    recipe["methods"] = recipe["methods"][:1]
    recipe["train"]["teacher_outputs"] = teacher_outputs
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def artifacts_on(device, tmp_path, teacher_outputs: str = "memory") -> Artifacts:
    accelerator = SimpleNamespace(device=device, is_main_process=True, num_processes=1,
                                  wait_for_everyone=lambda: None, free_memory=lambda: None)
    loaded = load_recipe(tiny_recipe(tmp_path, teacher_outputs))
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
