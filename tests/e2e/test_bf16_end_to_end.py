"""A whole tiny grid in bf16 end to end (`train.mixed_precision: bf16`, the LM head inside the
divergence pass, a bfloat16 teacher) against the same grid in fp32: every cell trains,
generates and is evaluated, the cells record bf16, and the distillation losses agree.

Tolerance: 5% relative per logged step. bfloat16 keeps 8 significant bits (relative rounding
up to 2^-8, about 0.4%); the teacher is fine-tuned and run in bfloat16 weights and the
student's products run in bf16 under autocast, so both models' logits carry errors of that
order, and the FKL logged here is a small number (about 0.013) made of differences of nearby
log-probs, whose relative error is a few times the rounding. Measured on this CPU: 0.7 to 0.8%.
"""
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from arkd_bench.cli import app
from helpers import write_tiny_recipe

TOLERANCE = 0.05


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """accelerate keeps one process-wide state that refuses a second precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def run_grid(root: Path, precision: str) -> Path:
    from accelerate.state import AcceleratorState

    def edit(recipe: dict) -> None:
        recipe["methods"] = [m for m in recipe["methods"] if m["name"] == "fkl"]
        recipe["train"].update(fused_head=True, mixed_precision=precision)
        recipe["teachers"][0]["dtype"] = "bfloat16" if precision == "bf16" else "float32"

    AcceleratorState._reset_state(True)
    folder = root / precision
    recipe = write_tiny_recipe(folder, edit)
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(folder / "out"),
                                      "--cache-dir", str(folder / "cache")])
    assert result.exit_code == 0, result.output
    assert "ran 3 cells, skipped 0 finished, 0 failed" in result.output
    return folder


def cells(folder: Path) -> dict[str, Path]:
    return {json.loads((c / "cell.json").read_text())["kind"]: c for c in (folder / "out" / "cells").iterdir()}


def losses(cell: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (cell / "train_log.jsonl").read_text().splitlines()]


def test_a_bf16_grid_with_a_fused_head_and_a_bf16_teacher_matches_fp32(tmp_path):
    fp32, bf16 = run_grid(tmp_path, "no"), run_grid(tmp_path, "bf16")
    for folder, precision in ((fp32, "no"), (bf16, "bf16")):
        for kind, cell in cells(folder).items():
            provenance = json.loads((cell / "provenance.json").read_text())
            assert provenance["accelerator"]["mixed_precision"] == precision, kind
            scores = json.loads((cell / "scores.json").read_text())
            assert scores["settings"]["examples"] == 6 and 0 <= scores["metrics"]["rougeL"] <= 100, kind
            assert len((cell / "generations.jsonl").read_text().splitlines()) == 6, kind
    # the teacher was fine-tuned and kept in bfloat16
    (teacher_weights,) = (bf16 / "cache" / "teachers").glob("*/model.safetensors")
    with safe_open(str(teacher_weights), "pt") as f:
        assert {f.get_slice(name).get_dtype() for name in f.keys()} == {"BF16"}
    exact, mixed = losses(cells(fp32)["distill"]), losses(cells(bf16)["distill"])
    assert len(exact) == len(mixed) == 3
    assert exact != mixed  # bf16 did round something
    for a, b in zip(exact, mixed):
        assert abs(b - a) <= TOLERANCE * abs(a), (exact, mixed)
