"""`arkd-bench new-plugin`: the scaffolded package registers a name that works."""
import csv
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins.kinds import PLUGIN_KINDS
from arkd_bench.plugins import load_plugins

runner = CliRunner()
KINDS = tuple(k.name for k in PLUGIN_KINDS.values() if k.scaffold)


def scaffold(tmp_path, kind):
    result = runner.invoke(app, ["new-plugin", f"my-{kind}", "--kind", kind, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return tmp_path / f"arkd-bench-my-{kind.replace('_', '-')}"


def exercise(plugins, kind, name, tmp_path):
    """Use the registered factory the way the pipeline does."""
    if kind == "weighting":
        import arkd_bench
        from arkd_bench.divergences import divergence_pass

        torch.manual_seed(0)
        terms = {t: arkd_bench.get_divergence(t) for t in ("fkl", "rkl")}
        features = divergence_pass(student_logits=torch.randn(2, 4, 30), teacher_logits=torch.randn(2, 4, 30),
                                   terms=terms).features
        weights = plugins.create("weighting", name, terms=["fkl", "rkl"]).weights(features)
        assert weights.shape == (2,) and torch.isclose(weights.sum(), torch.tensor(1.0))
    elif kind == "divergence":
        div = plugins.create("divergence", name)
        logits = torch.randn(2, 4, 30)
        assert torch.allclose(div(student_logits=logits, teacher_logits=logits), torch.zeros(2, 4), atol=1e-6)
        assert (div(student_logits=logits, teacher_logits=torch.randn(2, 4, 30)) > 0).all()
    elif kind == "metric":
        assert plugins.create("metric", name).score(["A  cat", "no"], [["a cat"], ["yes"]]) == [100.0, 0.0]
    elif kind == "reporter":
        row = {"dataset": "d", "teacher": "t", "student": None, "method": "fkl",
               "metrics": {"rougeL": {"mean": 1.5, "std": 0.0, "n": 1}}}
        assert plugins.create("reporter", name).render({"leaderboard": [row]}).splitlines()[1] == \
            "d\tt\t\tfkl\trougeL\t1.5\t0.0\t1"
    elif kind == "data_policy":
        policy = plugins.create("data_policy", name, tokens=1)
        labels = torch.tensor([[-100, 5, 6, 7]])
        batch = {"input_ids": torch.arange(4).view(1, 4), "attention_mask": torch.ones(1, 4, dtype=torch.long),
                 "labels": labels}
        assert policy.online and policy.batch(batch, session=None)["labels"].tolist() == [[-100, 5, -100, -100]]
    else:
        with open(tmp_path / "pairs.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([["prompt", "response"]] + [[f"q{i}", f"a{i}"] for i in range(10)])
        splits = plugins.create("dataset", name, path="pairs.csv", valid_size=2, test_size=2).load(tmp_path)
        assert splits.sizes() == {"train": 6, "valid": 2, "test": 2}


@pytest.mark.parametrize("kind", KINDS)
def test_scaffolded_plugin_registers_a_working_name(kind, tmp_path):
    root = scaffold(tmp_path, kind)
    module = root / f"arkd_bench_my_{kind}" / "__init__.py"
    assert (root / "README.md").is_file() and (root / "tests" / f"test_arkd_bench_my_{kind}.py").is_file()
    pyproject = (root / "pyproject.toml").read_text()
    assert f'[project.entry-points.arkd_bench]\nmy_{kind} = "arkd_bench_my_{kind}"' in pyproject
    plugins = load_plugins([module], autoload=False)
    assert not plugins.failures
    assert f"my_{kind}" in plugins.registry(kind).names()
    exercise(plugins, kind, f"my_{kind}", tmp_path)


def test_data_policy_has_a_template():
    assert "data_policy" in KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_readme_and_pyproject_describe_the_users_plugin_not_the_template(kind, tmp_path):
    from arkd_bench.cli.new_plugin_cmd import EXAMPLES

    root = tmp_path / "arkd-bench-entropy-gap"
    result = runner.invoke(app, ["new-plugin", "entropy-gap", "--kind", kind, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    readme, pyproject = (root / "README.md").read_text(), (root / "pyproject.toml").read_text()
    lead = readme.split("\n\n")[1]  # the paragraph under the title
    assert "`entropy_gap`" in lead and "TODO: say in one line what" in lead
    description = next(line for line in pyproject.splitlines() if line.startswith("description = "))
    assert "entropy_gap" in description and "TODO" in description
    example = EXAMPLES[kind]
    assert example not in readme and example not in pyproject
    # the module keeps saying what the example it starts from does, for the user to replace
    assert example in " ".join((root / "arkd_bench_entropy_gap" / "__init__.py").read_text().split())


@pytest.mark.parametrize("kind", KINDS)
def test_options_are_plugin_options(kind, tmp_path):
    from arkd_bench import PluginOptions

    root = scaffold(tmp_path, kind)
    source = (root / f"arkd_bench_my_{kind}" / "__init__.py").read_text()
    assert "BaseModel" not in source
    entry = load_plugins([root / f"arkd_bench_my_{kind}" / "__init__.py"], autoload=False).registry(kind).get(
        f"my_{kind}")
    options = getattr(entry.factory, "Options", None)
    assert options is None or issubclass(options, PluginOptions)
    assert all(o["description"] for o in entry.options_schema().values())  # `arkd-bench plugins` shows them


def test_refuses_taken_names_bad_names_and_existing_folders(tmp_path):
    taken = runner.invoke(app, ["new-plugin", "fkl", "--kind", "divergence", "--dir", str(tmp_path)])
    assert taken.exit_code == 1 and "divergence 'fkl' is already registered by plugin 'divergences'" in taken.output
    bad = runner.invoke(app, ["new-plugin", "9lives", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "use lower-case letters" in bad.output
    scaffold(tmp_path, "metric")
    again = runner.invoke(app, ["new-plugin", "my-metric", "--kind", "metric", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_scaffolded_tests_pass_without_installing(kind, tmp_path):
    root = scaffold(tmp_path, kind)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_refuses_a_name_a_single_file_plugin_of_plugins_dir_registers(tmp_path):
    files = tmp_path / "mine"
    files.mkdir()
    (files / "sharp.py").write_text(
        "from arkd_bench import WeightingStrategy, hookimpl\n\n"
        "class Sharp(WeightingStrategy):\n"
        "    name = 'sharp'\n\n"
        "    def weights(self, features):\n"
        "        return [1.0 for _ in self.terms]\n\n"
        "@hookimpl\n"
        "def arkd_register_weightings(register):\n"
        "    register(Sharp)\n")
    clash = runner.invoke(app, ["new-plugin", "sharp", "--dir", str(tmp_path), "--plugins-dir", str(files)])
    assert clash.exit_code == 1 and "weighting 'sharp' is already registered by plugin" in clash.output
    assert not (tmp_path / "arkd-bench-sharp").exists()
    elsewhere = runner.invoke(app, ["new-plugin", "sharp", "--dir", str(tmp_path)])  # no such file plugin here
    assert elsewhere.exit_code == 0, elsewhere.output
