"""The README and the plugin guides document the hooks, interfaces and commands; these tests
fail when docs and code drift, and run every guide's complete example."""
import inspect
import json
import re
import runpy
from pathlib import Path

import pytest

from arkd_bench.plugins import hookspecs
from arkd_bench.plugins.kinds import PLUGIN_KINDS

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def hook_functions():
    return {name: fn for name, fn in vars(hookspecs).items() if name.startswith("arkd_") and callable(fn)}


def test_every_hook_is_documented_with_its_signature_docstring_base_class_and_guide():
    table = README.split("<!-- hooks:start -->")[1].split("<!-- hooks:end -->")[0]
    documented = re.findall(r"^\| `(arkd_\w+\(.*?\))` \| (.+?) \| `(\w+)` \| \[(.+?)\]\((.+?)\) \|$", table, re.M)
    expected = []
    for kind in PLUGIN_KINDS.values():
        fn = hook_functions()[kind.hook]
        signature = f"{kind.hook}({', '.join(inspect.signature(fn).parameters)})"
        doc = inspect.getdoc(fn).removeprefix("Register ").rstrip(".")
        expected.append((signature, doc, kind.base_name, kind.guide, kind.guide))
    assert documented == expected


def test_readme_cli_summary_matches_the_real_commands():
    import typer.main

    from arkd_bench.cli import app

    block = README.split("## Using it", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    summary = {}
    for line in block.splitlines():
        if line.startswith("arkd-bench "):
            words = line.split("#", 1)[0].split()
            summary[words[1]] = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-z])\b", " ".join(words[2:])))
    commands = typer.main.get_command(app).commands
    assert set(summary) == set(commands)
    for name, command in commands.items():
        options = [param.opts for param in command.params if param.param_type_name == "option"]
        documented = summary[name]
        unknown = documented - {opt for opts in options for opt in opts}
        assert not unknown, f"{name}: the README lists options it does not have: {unknown}"
        missing = [opts[0] for opts in options if not set(opts) & documented]
        assert not missing, f"{name}: options missing from the README summary: {missing}"




def test_every_command_line_in_the_readme_uses_real_options():
    """Beyond the summary: each `arkd-bench CMD ...` line in a bash block of the README or a
    guide names a real command and only options it has."""
    import typer.main

    from arkd_bench.cli import app

    commands = typer.main.get_command(app).commands
    texts = [README] + [path.read_text() for path in sorted((ROOT / "docs" / "plugins").glob("*.md"))]
    lines = [line for text in texts for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.splitlines() if line.startswith("arkd-bench ")]
    assert len(lines) > 8
    for line in lines:
        words = line.split("#", 1)[0].split()
        assert words[1] in commands, line
        real = {opt for param in commands[words[1]].params for opt in param.opts}
        used = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-z])\b", " ".join(words[2:])))
        assert used <= real, f"{line!r}: no such option {used - real}"

def test_schema_command_prints_the_recipe_schema_with_every_field_described():
    from typer.testing import CliRunner

    from arkd_bench.cli import app
    from arkd_bench.recipe.schema import Recipe

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == Recipe.model_json_schema()
    models = [("Recipe", printed), *printed["$defs"].items()]
    undescribed = [f"{name}.{field}" for name, model in models
                   for field, spec in model.get("properties", {}).items() if not spec.get("description")]
    assert undescribed == []

def test_hooks_take_only_register():
    for name, fn in hook_functions().items():
        assert list(inspect.signature(fn).parameters) == ["register"], name


def test_documented_strategy_methods_exist():
    from arkd_bench.weighting import WeightingStrategy

    for method in ("weights", "observe", "log_scalars", "state_dict", "load_state_dict"):
        assert f"{method}(" in README and callable(getattr(WeightingStrategy, method))
    assert "feedback_requests" in README and hasattr(WeightingStrategy, "feedback_requests")


# -- the plugin guides in docs/plugins/ --------------------------------------------------------

SECTIONS = ("## Interface", "## Registration", "## Testing", "## Complete example")


def guide(kind: str) -> str:
    return (ROOT / PLUGIN_KINDS[kind].guide).read_text()


def example_file(kind: str, directory: Path) -> Path:
    """The guide's complete example, saved as the plugin file an author would write."""
    text = guide(kind).split("## Complete example", 1)[1]
    filename = re.search(r"`(\w+\.py)`", text).group(1)
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    path = directory / filename
    path.write_text(code)
    return path


def example_plugins(kind: str, tmp_path: Path):
    from arkd_bench.plugins import load_plugins

    path = example_file(kind, tmp_path)
    plugins = load_plugins([path], autoload=False, strict=True)
    entries = [e for e in plugins.registry(kind).entries() if e.origin == path.name]
    assert len(entries) == 1, f"{path.name} should register one {kind}"
    return plugins, entries[0]


@pytest.mark.parametrize("kind", list(PLUGIN_KINDS))
def test_every_kind_has_a_guide_with_the_four_sections_linked_from_the_readme(kind):
    text = guide(kind)
    assert [s for s in SECTIONS if s not in text] == []
    assert PLUGIN_KINDS[kind].hook in text and PLUGIN_KINDS[kind].base_name in text
    assert f"]({PLUGIN_KINDS[kind].guide})" in README


def test_field_tables_match_the_code():
    tables = runpy.run_path(str(ROOT / "scripts" / "doc_tables.py"))
    for path in sorted((ROOT / "docs" / "plugins").glob("*.md")):
        text = path.read_text()
        assert tables["render"](text) == text, f"{path} is out of date: run python scripts/doc_tables.py"
        assert tables["missing_descriptions"](text) == [], path
    assert "<!-- fields: arkd_bench.divergences.features:StepFeatures -->" in guide("weighting")
    assert "<!-- fields: arkd_bench.weighting.base:Feedback -->" in guide("weighting")


def test_weighting_guide_example(tmp_path):
    import torch

    from arkd_bench.testing import fake_feedback, fake_features

    plugins, entry = example_plugins("weighting", tmp_path)
    strategy = plugins.create("weighting", entry.name, terms=["fkl", "rkl"], scale=2.0)
    features = fake_features(masked=1)
    weights = strategy.weights(features)
    assert weights.shape == (2, *features.mask.shape)
    assert torch.allclose(weights.sum(0), torch.ones_like(features.teacher_entropy))
    assert 0 < strategy.log_scalars()["alpha"] < 1
    strategy.observe(fake_feedback(features))
    with pytest.raises(ValueError, match="two terms"):
        plugins.create("weighting", entry.name, terms=["fkl"])


def test_divergence_guide_example(tmp_path):
    import torch

    plugins, entry = example_plugins("divergence", tmp_path)
    div = plugins.create("divergence", entry.name)
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 30, requires_grad=True), torch.randn(2, 4, 30)
    assert div(student_logits=a, teacher_logits=a.detach()).abs().max() < 1e-6
    ab = div(student_logits=a, teacher_logits=b)
    assert ab.shape == (2, 4) and (ab > 0).all() and (ab <= 1).all()
    assert torch.allclose(ab, div(student_logits=b, teacher_logits=a.detach()), atol=1e-6)
    ab.sum().backward()
    assert a.grad.abs().sum() > 0


def test_metric_guide_example(tmp_path):
    plugins, entry = example_plugins("metric", tmp_path)
    metric = plugins.create("metric", entry.name)
    assert metric.higher_is_better is False
    assert metric.score(["a b c", "a"], [["a b"], ["a b c", "x"]]) == [1.0, 0.0]


def test_dataset_guide_example(tmp_path):
    plugins, entry = example_plugins("dataset", tmp_path)
    (tmp_path / "pairs.tsv").write_text("".join(f"Q{i}?\tA{i}.\n" for i in range(20)))
    splits = plugins.create("dataset", entry.name, path="pairs.tsv").load(tmp_path)
    assert splits.sizes() == {"train": 14, "valid": 2, "test": 4}
    (tmp_path / "bad.tsv").write_text("Q?\tA.\nno tab here\n")
    with pytest.raises(ValueError, match="bad.tsv:2"):
        plugins.create("dataset", entry.name, path="bad.tsv").load(tmp_path)


def test_reporter_guide_example(tmp_path):
    plugins, entry = example_plugins("reporter", tmp_path)
    results = {"leaderboard": [{"dataset": "d", "method": "fkl", "label": "fkl",
                                "metrics": {"rougeL": {"mean": 12.5, "std": 0.5, "n": 3}}}]}
    text = plugins.create("reporter", entry.name).render(results)
    assert text.splitlines() == ["dataset\tmethod\tmetric\tmean\tstd\tn", "d\tfkl\trougeL\t12.5\t0.5\t3"]


def test_data_policy_guide_example(tmp_path):
    import torch

    plugins, entry = example_plugins("data_policy", tmp_path)
    policy = plugins.create("data_policy", entry.name, tokens=2)
    batch = {"input_ids": torch.arange(6).view(1, 6), "attention_mask": torch.ones(1, 6, dtype=torch.long),
             "labels": torch.tensor([[-100, -100, 2, 3, 4, 5]])}
    assert policy.batch(batch, session=None)["labels"].tolist() == [[-100, -100, 2, 3, -100, -100]]


def test_guide_examples_train_and_report_and_check_with_the_plugin_metric(tmp_path):
    """The weighting, divergence and metric of the guides in one tiny grid, listed in the
    recipe's `plugins:`; `report` and `check` load them from the run folder, so the
    lower-is-better metric is ranked and checked in its own direction there too."""
    from typer.testing import CliRunner

    from arkd_bench.cli import app
    from arkd_bench.testing import run_tiny

    files = [example_file(kind, tmp_path).name for kind in ("weighting", "divergence", "metric")]
    run = run_tiny(tmp_path, plugins=files, metrics=["rougeL", "length_error"], methods=[
        {"name": "gate", "objective": ["fkl", "rkl"], "weighting": {"name": "entropy_gate"}},
        {"name": "hellinger", "objective": ["hellinger"]}],
        checks=[{"method": "gate", "metric": "length_error", "at_most": 1000}])
    assert {"gate", "hellinger"} <= set(run.logs)
    assert all(0 <= r["strategy/alpha"] <= 1 for r in run.logs["gate"] if "strategy/alpha" in r)
    assert run.results["metric_info"]["length_error"]["higher_is_better"] is False

    result = CliRunner().invoke(app, ["report", str(run.out), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["metric_info"]["length_error"]["higher_is_better"] is False
    rows = [r for r in report["leaderboard"] if r["kind"] == "distill"]
    best = min(rows, key=lambda r: r["metrics"]["length_error"]["mean"])
    worst = max(rows, key=lambda r: r["metrics"]["length_error"]["mean"])
    assert best["rank"]["length_error"] == 1
    if worst["metrics"]["length_error"]["mean"] > best["metrics"]["length_error"]["mean"]:
        assert worst["rank"]["length_error"] > 1

    result = CliRunner().invoke(app, ["check", str(run.out), "--format", "json"])
    assert result.exit_code == 0, result.output
    # A moved run folder loads the copy of the plugin file it keeps; without the copy (and the
    # original gone) the metric's direction is unknown, which is an error until --plugins-dir.
    moved = tmp_path / "moved"
    run.out.rename(moved)
    (tmp_path / files[2]).rename(tmp_path / "elsewhere.py")
    result = CliRunner().invoke(app, ["report", str(moved), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["metric_info"]["length_error"]["higher_is_better"] is False
    (moved / "plugins" / files[2]).unlink()
    result = CliRunner().invoke(app, ["report", str(moved)])
    assert result.exit_code == 1 and f"plugin {files[2]} of run folder" in result.output
    assert "the direction of metric 'length_error'" in result.output
    plugin_dir = tmp_path / "plugin_dir"
    plugin_dir.mkdir()
    (tmp_path / "elsewhere.py").rename(plugin_dir / files[2])
    result = CliRunner().invoke(app, ["report", str(moved), "--plugins-dir", str(plugin_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["metric_info"]["length_error"]["higher_is_better"] is False
