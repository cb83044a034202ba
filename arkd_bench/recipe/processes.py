"""What a recipe cannot do under several processes (torchrun or `accelerate launch`), refused
when it is loaded, before anything trains, rather than at the first cell that needs it."""
from __future__ import annotations

import os

from arkd_bench.method import build_strategy, build_terms
from arkd_bench.recipe.loader import Problem
from arkd_bench.recipe.schema import Recipe

# strategy requests that keep each term's gradient apart (train/trial.py): one process only
SINGLE_PROCESS_REQUESTS = ("trial", "probe_grad")


def launched_processes() -> int:
    """The number of processes this run was launched with (WORLD_SIZE, which torchrun and
    accelerate launch set); 1 when run plainly."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def process_problems(recipe: Recipe, plugins, processes: int | None = None) -> list[Problem]:
    """The recipe's settings that run in a single process only, when there are several."""
    processes = launched_processes() if processes is None else processes
    if processes <= 1:
        return []
    problems = []
    if recipe.train.fused_head:
        problems.append(Problem(("train", "fused_head"), f"runs in a single process only, and this run has "
                                f"{processes} (the fused pass reads the student's hidden states past DDP's "
                                "forward); set fused_head: false or run one process"))
    for i, method, asked in _single_process_strategies(recipe, plugins):
        problems.append(Problem(("methods", i, "weighting", "name"),
                                f"{method.weighting.name!r} requests {' and '.join(asked)} (each term's gradient "
                                f"kept apart), which runs in a single process only, and this run has "
                                f"{processes}; run method {method.name!r} in one process"))
    return problems


def _single_process_strategies(recipe: Recipe, plugins):
    """(index, method, requests) of each method whose strategy keeps each term's gradient apart."""
    for i, method in enumerate(recipe.methods):
        try:
            strategy = build_strategy(plugins, method.weighting.name, method.weighting.options,
                                      build_terms(method, plugins))
        except Exception:  # noqa: BLE001 - the strategy's own check reports what is wrong with it
            continue
        asked = sorted(set(strategy.feedback_requests) & set(SINGLE_PROCESS_REQUESTS))
        if asked:
            yield i, method, asked


# train settings not run with a sharded student (train.sharding: fsdp), and why
NOT_WITH_FSDP = {
    "fused_head": ("the fused pass reads the student's hidden states and LM head past its sharded forward",
                   "fused_head: false"),
    "select_best": ("the best student's weights are kept and restored unsharded", "select_best: false"),
}


def sharding_problems(recipe: Recipe, plugins) -> list[Problem]:
    """What `train.sharding: fsdp` does not run with, whatever the number of processes (under
    one process fsdp is a no-op, but a recipe means the same under any launcher)."""
    train = recipe.train
    if train.sharding != "fsdp":
        return []
    problems = [Problem(("train", name), f"not run with train.sharding: fsdp ({why}); set {off} or "
                        "train.sharding: none") for name, (why, off) in NOT_WITH_FSDP.items() if getattr(train, name)]
    for i, student in enumerate(recipe.students):
        if student.lora is not None:
            problems.append(Problem(("students", i, "lora"), "LoRA students are not sharded (peft's wrapper over "
                                    "FSDP2 is untested here); remove lora or set train.sharding: none"))
    for i, method, asked in _single_process_strategies(recipe, plugins):
        problems.append(Problem(("methods", i, "weighting", "name"),
                                f"{method.weighting.name!r} requests {' and '.join(asked)} (each term's gradient "
                                "kept apart, through the unsharded parameters), which train.sharding: fsdp does not "
                                f"run; use train.sharding: none for method {method.name!r}"))
    return problems
