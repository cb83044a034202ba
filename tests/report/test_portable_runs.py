"""A run folder holds what `report` and `check` need: they work from any directory and on a
folder moved to another machine, and a missing plugin file is an error only where it is
needed (a metric's direction, the reporter asked for), a warning otherwise."""
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app

FIXTURES = Path(__file__).parent.parent / "fixtures"
runner = CliRunner()

PLUGINS = {
    # training side: not needed to report
    "half.py": "from arkd_bench import WeightingStrategy, hookimpl\n\n"
               "class Half(WeightingStrategy):\n"
               "    name = 'half'\n\n"
               "    def weights(self, features):\n"
               "        import torch\n"
               "        return torch.full((len(self.terms),), 1.0 / len(self.terms))\n\n"
               "@hookimpl\n"
               "def arkd_register_weightings(register):\n"
               "    register(Half)\n",
    # a metric whose direction only its plugin knows
    "short.py": "from arkd_bench import Metric, hookimpl\n\n"
                "class ShortLen(Metric):\n"
                "    name = 'short_len'\n"
                "    higher_is_better = False\n"
                "    scale = 'count'\n\n"
                "    def score(self, predictions, references):\n"
                "        return [float(len(p.split())) for p in predictions]\n\n"
                "@hookimpl\n"
                "def arkd_register_metrics(register):\n"
                "    register(ShortLen)\n",
    "fancy.py": "from arkd_bench import Reporter, hookimpl\n\n"
                "class Fancy(Reporter):\n"
                "    name = 'fancy'\n"
                "    suffix = '.fancy'\n\n"
                "    def render(self, results):\n"
                "        return 'fancy: ' + ', '.join(r['label'] for r in results['leaderboard']) + '\\n'\n\n"
                "@hookimpl\n"
                "def arkd_register_reporters(register):\n"
                "    register(Fancy)\n",
}


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory, grid):
    """The tiny grid (one seed, one plugin method) run as the issue did: from the project
    folder with relative paths, `run recipes/ci.yaml --out runs/ci`, the recipe listing
    `../plugins/*.py`. Returns the project folder."""
    _, _, cache = grid
    root = tmp_path_factory.mktemp("project")
    (root / "plugins").mkdir()
    for name, text in PLUGINS.items():
        (root / "plugins" / name).write_text(text)
    (root / "recipes").mkdir()
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", root / "recipes")
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe.update(name="ci", seeds=[0], plugins=[f"../plugins/{name}" for name in PLUGINS],
                  methods=[{"name": "half", "objective": ["fkl", "rkl"], "weighting": "half"}])
    recipe["eval"].update(max_examples=3, metrics=["rougeL", "short_len"], baselines=["teacher", "sft"])
    (root / "recipes" / "ci.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = runner.invoke(app, ["run", "recipes/ci.yaml", "--out", "runs/ci", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    return root


def on_another_machine(run: Path, dest: Path) -> Path:
    """A copy of a run folder as it arrives elsewhere: the recipe's folder and the plugin
    files' original paths do not exist there."""
    shutil.copytree(run, dest)
    info = json.loads((dest / "run.json").read_text())
    info["recipe_path"] = "/nonexistent/recipes/ci.yaml"
    for record in info.get("plugins", []):
        record["source"] = f"/nonexistent/plugins/{record['name']}"
    (dest / "run.json").write_text(json.dumps(info))
    return dest


def test_the_run_folder_keeps_its_recipe_plugin_files_and_data_sources(plugin_run):
    run = plugin_run / "runs" / "ci"
    info = json.loads((run / "run.json").read_text())
    assert info["recipe_path"] == str(plugin_run / "recipes" / "ci.yaml")  # absolute, not as typed
    assert (run / "recipe.yaml").read_text() == (plugin_run / "recipes" / "ci.yaml").read_text()
    records = {r["name"]: r for r in info["plugins"]}
    assert set(records) == set(PLUGINS)
    assert records["half.py"]["registers"] == {"weighting": ["half"]}
    assert records["short.py"]["registers"] == {"metric": ["short_len"]}
    assert records["fancy.py"]["registers"] == {"reporter": ["fancy"]}
    for name, record in records.items():
        assert record["file"] == f"plugins/{name}"
        assert (run / record["file"]).read_text() == PLUGINS[name]
        assert record["source"] == str(plugin_run / "plugins" / name)
        assert record["sha256"] == __import__("hashlib").sha256(PLUGINS[name].encode()).hexdigest()
    assert info["datasets"] == {"tiny": {"source": "jsonl",
                                         "files": {"path": str(plugin_run / "recipes" / "tiny_pairs.jsonl")}}}


def test_check_works_from_inside_the_runs_folder(plugin_run, monkeypatch):
    """`cd runs && arkd-bench check ci` used to fail: plugins: ../plugins/x.py not found."""
    monkeypatch.chdir(plugin_run / "runs")
    result = runner.invoke(app, ["check", "ci", "--format", "text"])
    assert result.exit_code == 0, result.output
    assert "1 checks: 1 passed, 0 failed" in result.output


def test_a_moved_run_folder_reports_and_checks_from_an_unrelated_directory(plugin_run, tmp_path, monkeypatch):
    on_another_machine(plugin_run / "runs" / "ci", tmp_path / "elsewhere" / "ci")
    (tmp_path / "unrelated").mkdir()
    monkeypatch.chdir(tmp_path / "unrelated")
    report = runner.invoke(app, ["report", "../elsewhere/ci", "--format", "json"])
    assert report.exit_code == 0, report.output
    results = json.loads(report.output)
    # the direction comes from the plugin copy in the run folder
    assert results["metric_info"]["short_len"]["higher_is_better"] is False
    assert "warning" not in report.output
    table = runner.invoke(app, ["report", "../elsewhere/ci"])
    assert table.exit_code == 0 and "short_len ↓" in table.output, table.output
    check = runner.invoke(app, ["check", "../elsewhere/ci", "--format", "text"])
    assert check.exit_code == 0, check.output
    assert "PASS sft rougeL >= 2" in check.output
    fancy = runner.invoke(app, ["report", "../elsewhere/ci", "-o", "board.fancy"])  # a plugin reporter's suffix
    assert fancy.exit_code == 0, fancy.output
    assert (tmp_path / "unrelated" / "board.fancy").read_text() == "fancy: teacher, sft, half\n"


def test_a_missing_training_side_plugin_is_a_warning(plugin_run, tmp_path):
    moved = on_another_machine(plugin_run / "runs" / "ci", tmp_path / "moved")
    (moved / "plugins" / "half.py").unlink()
    report = runner.invoke(app, ["report", str(moved)])
    assert report.exit_code == 0, report.output
    assert "warning: plugin half.py of run folder" in report.output
    assert "it registers weighting 'half'" in report.output and "report does not need it" in report.output
    check = runner.invoke(app, ["check", str(moved), "--format", "text"])
    assert check.exit_code == 0, check.output
    assert "check does not need it" in check.output


def test_a_missing_metric_plugin_is_an_error_naming_the_metric(plugin_run, tmp_path):
    moved = on_another_machine(plugin_run / "runs" / "ci", tmp_path / "moved")
    (moved / "plugins" / "short.py").unlink()
    for command in ("report", "check"):
        result = runner.invoke(app, [command, str(moved)])
        assert result.exit_code == 1, result.output
        assert (f"plugin short.py of run folder {moved} (it registers metric 'short_len') was not found"
                in result.output)
        assert f"{command} needs it for the direction of metric 'short_len'" in result.output
    (tmp_path / "found").mkdir()
    (tmp_path / "found" / "short.py").write_text(PLUGINS["short.py"])
    again = runner.invoke(app, ["report", str(moved), "--plugins-dir", str(tmp_path / "found")])
    assert again.exit_code == 0, again.output


def test_a_missing_reporter_plugin_is_an_error_only_when_its_format_is_asked_for(plugin_run, tmp_path):
    moved = on_another_machine(plugin_run / "runs" / "ci", tmp_path / "moved")
    (moved / "plugins" / "fancy.py").unlink()
    assert runner.invoke(app, ["report", str(moved)]).exit_code == 0
    result = runner.invoke(app, ["report", str(moved), "--format", "fancy"])
    assert result.exit_code == 1, result.output
    assert "report needs it for the reporter 'fancy'" in result.output


def test_a_changed_plugin_copy_is_loaded_with_a_warning(plugin_run, tmp_path):
    moved = on_another_machine(plugin_run / "runs" / "ci", tmp_path / "moved")
    with open(moved / "plugins" / "short.py", "a") as handle:
        handle.write("# edited after the run\n")
    result = runner.invoke(app, ["report", str(moved)])
    assert result.exit_code == 0, result.output
    assert f"{moved / 'plugins' / 'short.py'}: changed since the run" in result.output


def test_an_older_run_folder_without_plugin_records_reports_without_its_weighting_plugin(grid, tmp_path):
    """A folder written before the copies: its recipe lists a plugin file found nowhere, and
    no metric is unaccounted for, so the plugin was not needed."""
    _, run, _ = grid
    old = shutil.copytree(run, tmp_path / "old")
    info = json.loads((old / "run.json").read_text())
    info.pop("plugins", None)
    info["recipe_path"] = "recipes/tiny.yaml"  # relative, as older versions stored it
    (old / "run.json").write_text(json.dumps(info))
    recipe = yaml.safe_load((old / "recipe.yaml").read_text())
    recipe["plugins"] = ["../plugins/gone.py"]
    (old / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = runner.invoke(app, ["report", str(old)])
    assert result.exit_code == 0, result.output
    assert "plugin gone.py" in result.output and "what it registers is not recorded" in result.output
    recipe["eval"]["metrics"] = ["rougeL", "short_len"]  # a metric no loaded plugin registers: gone.py may
    (old / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = runner.invoke(app, ["report", str(old)])
    assert result.exit_code == 1, result.output
    assert "report needs it for the direction of metric 'short_len'" in result.output
