"""The Slurm recipe: the example array script run as two concurrent tasks sharing one cache,
then `report` merging their folders into the whole grid."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins import load_plugins
from arkd_bench.recipe.matrix import expand
from arkd_bench.recipe.validate import load_recipe

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / ".github" / "workflows" / "slurm-array.sbatch"
RECIPE = ROOT / "tests" / "fixtures" / "tiny.yaml"


# Two whole tiny runs at once: over two minutes on a shared 2-core machine. The lock itself is
# tested in the default suite (tests/run/test_cache_lock.py).
@pytest.mark.slow
def test_array_tasks_share_the_cache_without_building_an_entry_twice_and_report_merges(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "RECIPE": str(RECIPE), "RUNS": str(tmp_path / "grid"), "ARKD_BENCH_CACHE": str(cache),
           "ARKD": f"{sys.executable} -m arkd_bench", "SLURM_ARRAY_TASK_COUNT": "2", "HF_HUB_OFFLINE": "1"}
    tasks = [subprocess.Popen(["bash", str(SCRIPT)], env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    outputs = [task.communicate(timeout=600)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs
    shards = [tmp_path / "grid" / f"shard-{i}" for i in (1, 2)]
    ran = [{c["id"] for c in json.loads((s / "run.json").read_text())["cells"]} for s in shards]
    grid = {c.id for c in expand(load_recipe(RECIPE, plugins=load_plugins(autoload=False)).recipe)}
    assert ran[0] and ran[1] and not ran[0] & ran[1] and ran[0] | ran[1] == grid
    # Every cache entry was built by exactly one task; the other waited for it or found it.
    entries = [p for kind in cache.iterdir() if not kind.name.startswith(".") for p in kind.iterdir()]
    misses = sum(json.loads((s / "cache.json").read_text())["misses"] for s in shards)
    assert entries and misses == len(entries), (misses, entries)
    result = CliRunner().invoke(app, ["report", *map(str, shards), "--format", "json"])
    assert result.exit_code == 0, result.output
    merged = json.loads(result.output)
    assert {c["id"] for c in merged["cells"]} == grid
    assert {row["method"] for row in merged["leaderboard"]} >= {"fkl", "mix"}
