"""train.log_with: accelerate's trackers get what train_log.jsonl logs, one run per cell; a real
tensorboard event file is read back with tensorboard's own reader."""
import importlib.util

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.testing import TINY_RECIPE, run_tiny
from arkd_bench.train.trackers import TrackerError, check_trackers, flat_config, scalars

runner = CliRunner()


def test_tensorboard_event_file_holds_the_training_log(tmp_path):
    pytest.importorskip("tensorboard", reason="the `tensorboard` extra: pip install 'arkd-bench[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_tiny(tmp_path, train={**TINY_RECIPE["train"], "log_with": ["tensorboard"]})
    cell = next(c for c in run.results["cells"] if c["kind"] == "distill")
    folder = run.out / "trackers" / f"fkl-seed0-{cell['id']}"
    assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
    events = EventAccumulator(str(folder))
    events.Reload()
    log = run.logs["fkl"]
    assert {"loss", "lr", "term/fkl", "weight/fkl"} <= set(events.Tags()["scalars"])
    for tag in ("loss", "term/fkl", "lr"):
        logged = [(r["step"], r[tag]) for r in log if tag in r]
        read = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in read] == [s for s, _ in logged]
        assert [v for _, v in read] == pytest.approx([v for _, v in logged], rel=1e-6)  # float32 in the file
    hparams = yaml.safe_load(next(folder.glob("*/hparams.yml")).read_text())
    assert hparams["id"] == cell["id"] and hparams["method"] == "fkl" and hparams["recipe"] == "tiny"
    assert hparams["run_name"] == f"fkl-seed0-{cell['id']}"
    assert hparams["config/train/steps"] == TINY_RECIPE["train"]["steps"]


def test_trackers_are_off_by_default_and_not_part_of_the_cell_id(tmp_path):
    from arkd_bench.recipe.matrix import expand
    from arkd_bench.recipe.schema import Recipe

    plain = Recipe.model_validate(TINY_RECIPE)
    tracked = Recipe.model_validate({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "log_with": ["tensorboard"]}})
    assert plain.train.log_with == []
    assert [c.id for c in expand(plain)] == [c.id for c in expand(tracked)]


def test_unknown_tracker_and_stray_options_are_recipe_errors(tmp_path):
    from pydantic import ValidationError

    from arkd_bench.recipe.schema import TrainSpec

    with pytest.raises(ValidationError, match="tensorboard"):
        TrainSpec(log_with=["tensorbored"])
    with pytest.raises(ValidationError, match="tracker_options for wandb, which log_with does not list"):
        TrainSpec(log_with=["tensorboard"], tracker_options={"wandb": {"entity": "me"}})


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_that_is_not_installed_stops_the_run_before_any_cell(tmp_path):
    with pytest.raises(TrackerError, match=r"tracker 'wandb' is not installed: pip install wandb"):
        check_trackers(["wandb"])
    recipe = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "log_with": ["wandb"]}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "tracker 'wandb' is not installed" in result.output
    assert not (tmp_path / "out" / "cells").exists()


def test_config_is_flattened_to_values_every_tracker_takes():
    flat = flat_config({"id": "abc", "train": {"lr": 0.1, "grad_clip": None, "log_with": ["tensorboard"]},
                        "method": {"objective": [{"name": "fkl"}]}, "sft": True})
    assert flat == {"id": "abc", "train/lr": 0.1, "train/grad_clip": "null", "train/log_with": '["tensorboard"]',
                    "method/objective": '[{"name": "fkl"}]', "sft": True}
    assert scalars({"step": 3, "loss": 1.5, "selected": True, "note": "x", "n": 2}) == {"loss": 1.5, "n": 2.0}
