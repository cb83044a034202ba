"""Mid-cell checkpoints (`train.checkpoint_every`): every N steps the student, optimizer,
scheduler, grad scaler and RNG states (accelerate's `save_accelerator_state`, scoped to this
loop's objects so a teacher the accelerator also holds is not saved with them), plus the
strategy's, the other hooks' and the training log's state, go to `checkpoint-<step>/` in the
cell's folder. A student sharded with FSDP2 (train.sharding: fsdp) and its optimizer state go
through torch.distributed.checkpoint instead, each process writing its own shards. A rerun of
the cell resumes from the newest one: the loop redraws the batches already trained on (so the
loader's sampler is where it was), then this hook restores the rest, RNG states last, and the
loop continues at that step as an uninterrupted run would."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from arkd_bench.train.hooks.base import StepState, TrainingHook
from arkd_bench.train.optim import torch_optimizer
from arkd_bench.train.sharding import is_sharded, load_sharded_state, save_sharded_state

PREFIX = "checkpoint-"
EXTRA = "training_state.pt"  # what accelerate's state does not hold: strategy, hooks, log
SHARDED = "sharded_student"  # a sharded student's and its optimizer's shards (torch.distributed.checkpoint)


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The finished checkpoints in `folder`, oldest first (a `.tmp` one was cut short)."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob(f"{PREFIX}*")
             if (m := re.fullmatch(rf"{PREFIX}(\d+)", p.name)) and (p / EXTRA).is_file()]
    return sorted(found)


def latest_checkpoint(folder: Path | None, total_steps: int) -> tuple[int, Path] | None:
    """The newest checkpoint to resume from, or None (no folder, none saved, or one at or past
    the last step, which a finished training never leaves)."""
    if folder is None:
        return None
    usable = [(step, path) for step, path in checkpoints(folder) if 0 < step < total_steps]
    return usable[-1] if usable else None


class Checkpoints(TrainingHook):
    """Saves every `every` steps into `folder`, keeping only the newest; resumes from `resume`
    (a path from `latest_checkpoint`) at train begin; at train end removes the checkpoints
    unless `keep`. Comes last, so the step's log record is in what it saves."""

    def __init__(self, folder: Path, every: int, keep: bool = False, resume: Path | None = None) -> None:
        self.folder, self.every, self.keep, self.resume = Path(folder), every, keep, resume

    def on_train_begin(self, loop) -> None:
        if self.resume is not None:
            load_checkpoint(loop, self.resume)

    def on_step_end(self, loop, state: StepState) -> None:
        done = state.step + 1
        if done % self.every == 0 and done < loop.train.steps:
            save_checkpoint(loop, self.folder, done)

    def on_train_end(self, loop) -> None:
        loop.accelerator.wait_for_everyone()
        if loop.accelerator.is_main_process:  # a save cut short goes too, kept or not
            pattern = rf"{PREFIX}\d+\.tmp" if self.keep else rf"{PREFIX}\d+(\.tmp)?"
            for path in self.folder.glob(f"{PREFIX}*"):
                if re.fullmatch(pattern, path.name):
                    shutil.rmtree(path, ignore_errors=True)


def hook_keys(hooks) -> list[str]:
    """A key per hook: its class name, numbered among hooks of that class (not its place in the
    list, which a hook added for one run only would shift)."""
    seen: dict[str, int] = {}
    keys = []
    for hook in hooks:
        name = type(hook).__name__
        seen[name] = seen.get(name, -1) + 1
        keys.append(f"{name}:{seen[name]}")
    return keys


def hook_states(loop) -> dict[str, Any]:
    """Each hook's state that a resumed run needs."""
    states = {}
    for key, hook in zip(hook_keys(loop.hooks), loop.hooks):
        state = hook.state_dict()
        if state is not None:
            states[key] = state
    return states


def save_checkpoint(loop, folder: Path, step: int) -> Path:
    """`checkpoint-<step>` written whole under a temporary name, then renamed (a kill mid-save
    leaves the previous checkpoint usable); older checkpoints are removed after."""
    import torch
    from accelerate.checkpointing import save_accelerator_state

    acc, final = loop.accelerator, Path(folder) / f"{PREFIX}{step}"
    partial = final.with_name(final.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    acc.wait_for_everyone()
    if is_sharded(loop.student):  # train.sharding: fsdp; each process writes its shards
        save_sharded_state(loop.student, torch_optimizer(loop.optimizer), partial / SHARDED)
        models, optimizers = [], []
    else:
        models, optimizers = [acc.get_state_dict(loop.student)], [loop.optimizer]
    # pickled, not safetensors: tied weights (an LM head sharing the embeddings) stay tied
    save_accelerator_state(partial, models, optimizers, [loop.scheduler], [loop.loader], acc.process_index, step,
                           scaler=acc.scaler, safe_serialization=False)
    extra = {"step": step, "strategy": loop.strategy.state_dict(), "hooks": hook_states(loop),
             "log": list(loop.outcome.log), "counters": {"trial_updates": loop.distiller.trial_updates,
                                                         "probe_gradients": loop.distiller.probe_gradients}}
    acc.wait_for_everyone()  # every process has written its RNG states
    if acc.is_main_process:
        torch.save(extra, partial / EXTRA)  # written last: its presence marks a whole checkpoint
        partial.rename(final)
        for older, path in checkpoints(folder):
            if older != step:
                shutil.rmtree(path, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def load_checkpoint(loop, path: Path) -> int:
    """Restore what `save_checkpoint` wrote into the prepared loop; returns its step."""
    import torch
    from accelerate.checkpointing import load_accelerator_state

    acc = loop.accelerator
    # our own file, written by save_checkpoint: it holds numpy RNG states and hook objects
    extra = torch.load(Path(path) / EXTRA, weights_only=False)
    loop.strategy.load_state_dict(extra["strategy"])
    states = extra["hooks"]
    for key, hook in zip(hook_keys(loop.hooks), loop.hooks):
        if key in states:
            hook.load_state_dict(states[key])
    loop.outcome.log[:] = extra["log"]
    loop.distiller.trial_updates = extra["counters"]["trial_updates"]
    loop.distiller.probe_gradients = extra["counters"]["probe_gradients"]
    if is_sharded(loop.student):
        load_sharded_state(loop.student, torch_optimizer(loop.optimizer), Path(path) / SHARDED)
        models, optimizers = [], []
    else:
        models, optimizers = [acc.unwrap_model(loop.student)], [loop.optimizer]
    # the RNG states last: nothing after this may draw before the loop's next step
    load_accelerator_state(path, models, optimizers, [loop.scheduler], [loop.loader], acc.process_index,
                           scaler=acc.scaler, load_kwargs={"weights_only": False})
    return extra["step"]
