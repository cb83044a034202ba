"""`train.sharding: fsdp`: the distilled student sharded with PyTorch's FSDP2 (`fully_shard`)
over the run's processes, on CPU (gloo) and GPU alike.

accelerate's FSDP plugin falls back to DDP on CPU, so the student is sharded here directly:
each decoder layer (the model's `_no_split_modules`), then the root. Under one process
`fsdp` is a no-op: the student trains unwrapped, as with `none`.

A sharded forward all-gathers each layer's parameters, a collective every process must join.
Generation runs a different number of forwards on each process, so it runs inside
`full_parameters`, which gathers every layer once and keeps it gathered until it ends, and
without transformers' lock-step decoding (`generate_options`)."""
from __future__ import annotations

import contextlib
from typing import Any


def shards(sharding: str, accelerator) -> bool:
    """Whether the student is sharded: `fsdp` over more than one process."""
    return sharding == "fsdp" and accelerator.num_processes > 1


def shard_student(model, device, processes: int):
    """`model` on `device`, its decoder layers and then the whole of it sharded with
    `fully_shard` over the default process group's `processes`. Call before its optimizer is
    made: the optimizer must hold the sharded parameters."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (processes,))
    model.to(device)
    names = set(getattr(model, "_no_split_modules", None) or ())  # transformers' decoder layer classes
    for layer in [m for m in model.modules() if type(m).__name__ in names]:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def shard_for_training(accelerator, model, processes: int | None = None):
    """`model` sharded over the accelerator's processes (or `processes`), its forward under the
    accelerator's mixed precision as a prepared model's is.

    Mixed precision is accelerate's own autocast around the forward, applied by `prepare_model`
    in evaluation mode (which wraps nothing else: no DDP): the fp32 parameters are gathered, the
    matrix products run in bf16/fp16, the outputs come back in fp32, and the gradients and the
    sharded master weights stay fp32 (fp16's GradScaler reduces its inf check over the shards,
    DTensor's `_amp_foreach_non_finite_check_and_unscale_`). So a sharded step computes what the
    unsharded student's step computes, and a recipe gives the same numbers in one process (where
    fsdp is a no-op) as in several. FSDP2's `MixedPrecisionPolicy` would instead cast the gathered
    parameters and run the whole forward (norms, softmax, logits) in bf16: half the all-gather
    traffic, but other numbers than the unsharded student's."""
    model = shard_student(model, accelerator.device, processes or accelerator.num_processes)
    return accelerator.prepare_model(model, device_placement=False, evaluation_mode=True)


def prepare_training(accelerator, sharding: str, student, loader, make_optimizer):
    """(student, optimizer, loader, scheduler) prepared by accelerate, `make_optimizer(student)`
    giving (optimizer, scheduler). A student to shard is sharded first (its optimizer must hold
    the shards) and left out of `prepare`, which would wrap it in DDP; it gets the accelerator's
    mixed precision from `shard_for_training`."""
    if shards(sharding, accelerator):
        kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
        if kind in ("FSDP", "DEEPSPEED"):
            raise ValueError(f"train.sharding: fsdp shards the student itself, and this run was launched with "
                             f"accelerate's {kind} config, which would shard it again; launch with torchrun or a "
                             "DDP config, or set train.sharding: none")
        student = shard_for_training(accelerator, student)
    optimizer, scheduler = make_optimizer(student)
    if is_sharded(student):
        return (student, *accelerator.prepare(optimizer, loader, scheduler))
    return accelerator.prepare(student, optimizer, loader, scheduler)


def is_sharded(model: Any) -> bool:
    import torch

    if not torch.distributed.is_available():  # a torch built without it shards nothing
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _fsdp_modules(model) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def full_parameters(model):
    """Every parameter of a sharded `model` gathered (all processes enter together) and kept so
    through every forward inside: forwards then run no collective, so each process may generate
    as long as it needs. Sharded again on exit. A model that is not sharded passes through."""
    if model is None or not is_sharded(model):
        yield model
        return
    modules = _fsdp_modules(model)
    model.set_reshard_after_forward(False)
    for module in modules:  # unshard() is per module, not recursive
        module.unshard()
    try:
        yield model
    finally:
        for module in modules:
            module.reshard()
        model.set_reshard_after_forward(True)
        # the root keeps its parameters gathered between forwards (FSDP2's own default)
        model.set_reshard_after_forward(False, recurse=False)


def generate_options(model) -> dict:
    """What `model.generate` needs for `model`: for a sharded one (inside `full_parameters`),
    `synced_gpus=False`. transformers would otherwise keep the processes in lock-step (one
    all-reduce per decoding step), which hangs when they run different numbers of generate
    calls, as evaluation's uneven shares and rollouts do. A sharded model outside
    `full_parameters` would all-gather at each forward: refused."""
    if not is_sharded(model):
        return {}
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in model.parameters()):
        raise RuntimeError("a sharded (train.sharding: fsdp) model generates only inside full_parameters(model), "
                           "with its parameters gathered on every process")
    return {"synced_gpus": False}


def save_sharded_state(model, optimizer, folder) -> None:
    """The sharded `model`'s and its (torch) optimizer's state into `folder` with
    torch.distributed.checkpoint, each process writing its own shards; every process calls it.
    accelerate's save would keep the main process's optimizer shard only."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder))


def load_sharded_state(model, optimizer, folder) -> None:
    """Restore what `save_sharded_state` wrote into `model` and `optimizer` (sharded alike)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)  # the shapes and shards to load into
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_state_dict(model) -> dict:
    """The gathered (unsharded) state dict of a sharded `model`, on the CPU of the main process
    (empty elsewhere); every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
