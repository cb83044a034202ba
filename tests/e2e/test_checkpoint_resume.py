"""A cell killed with SIGKILL after a mid-cell checkpoint resumes from it on the rerun, and ends
with the scores and training log of an uninterrupted run, exactly (fp32 on CPU)."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import run_command as command
from helpers import two_processes, write_tiny_recipe


def write_recipe(folder: Path) -> Path:
    """One distilled cell (the scratch student keeps GPT-2's dropout, so the RNG matters), long
    enough that the kill lands between checkpoints; the SFT and teacher rows are left out."""
    def one_cell(recipe: dict) -> None:
        recipe["methods"] = [m for m in recipe["methods"] if m["name"] == "mix"]
        recipe["eval"]["baselines"] = []
        recipe["eval"]["reference"] = "mix"
        recipe["train"].update(steps=60, checkpoint_every=10, log_every=1)

    return write_tiny_recipe(folder, one_cell)


def checkpoint_saved(out: Path) -> bool:
    return any((out / "cells").glob("*/checkpoint-*/training_state.pt"))


def cell_results(out: Path) -> tuple[dict, list]:
    (cell,) = (out / "cells").iterdir()
    scores = json.loads((cell / "scores.json").read_text())
    scores.pop("seconds")
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    return scores, log


# about 1.5 minutes on 2 cores (three runs); the loop-level resume is tests/train/test_checkpoints.py
@pytest.mark.slow
def test_sigkill_after_a_checkpoint_resumes_to_the_uninterrupted_scores(tmp_path):
    env = {**os.environ, "ARKD_BENCH_NO_AUTOLOAD": "1"}
    recipe = write_recipe(tmp_path / "recipe")
    killed, whole, cache = tmp_path / "killed", tmp_path / "whole", tmp_path / "cache"
    process = subprocess.Popen(command(recipe, killed, cache), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint_saved(killed) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint_saved(killed), "the kill should land after a checkpoint and before the cell ends"

    rerun = subprocess.run(command(recipe, killed, cache), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed from step " in rerun.stderr  # where the run says what it does
    assert not checkpoint_saved(killed)  # the finished cell removed its checkpoint

    subprocess.run(command(recipe, whole, tmp_path / "cache_w"), env=env, check=True, capture_output=True)
    assert cell_results(killed) == cell_results(whole)


# about 1.5 minutes on 2 cores (two 2-process runs) for each sharding
@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["none", "fsdp"])
def test_two_processes_resume_from_a_kept_checkpoint_to_the_same_log(tmp_path, sharding):
    """Under torchrun (2 CPU processes, gloo) every process saves its RNG states into the one
    checkpoint and resumes from it: a finished cell made unfinished again and rerun from its
    kept checkpoint ends with the same training log and scores. A student sharded with FSDP2
    (train.sharding: fsdp) has each process write its shards of the student and its optimizer
    state (torch.distributed.checkpoint), and accelerate's files hold neither."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARKD_BENCH_NO_AUTOLOAD": "1"}
    recipe = write_recipe(tmp_path / "recipe")
    settings = yaml.safe_load(recipe.read_text())
    settings["train"].update(steps=20, checkpoint_every=5, keep_checkpoints=True, sharding=sharding)
    recipe.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    launch = two_processes(command(recipe, out, tmp_path / "c"))
    subprocess.run(launch, env=env, check=True, capture_output=True, timeout=600)
    (cell,) = (out / "cells").iterdir()
    saved = cell / "checkpoint-15"
    assert sorted(p.name for p in saved.glob("random_states_*")) == ["random_states_0.pkl", "random_states_1.pkl"]
    recorded = json.loads((cell / "provenance.json").read_text())["accelerator"]["sharding"]
    assert recorded == sharding
    shards = sorted(p.name for p in (saved / "sharded_student").glob("*.distcp"))
    assert shards == (["__0_0.distcp", "__1_0.distcp"] if sharding == "fsdp" else [])
    assert any(saved.glob("optimizer*")) == (sharding == "none")
    whole = cell_results(out)
    (cell / "status.json").unlink()
    (cell / "scores.json").unlink()
    rerun = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed from step 15" in rerun.stderr
    assert cell_results(out) == whole
