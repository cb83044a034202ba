"""Schema errors and plugin, name and reference errors come in one pass, not in waves."""
from pathlib import Path

from typer.testing import CliRunner

from arkd_bench.cli import app

FIXTURES = Path(__file__).parents[1] / "fixtures"
runner = CliRunner()


def test_four_independent_errors_are_reported_together_and_the_config_error_next():
    """Schema, plugin, name and reference errors in one pass; the transformers config check
    (an unknown architecture), which imports transformers and torch, once those are fixed."""
    recipe = FIXTURES / "five_errors.yaml"
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    expected = [
        ":19: train.steps: Input should be greater than or equal to 1",  # the schema error
        ":15: methods[0].objective[0].name: unknown divergence 'fkll'; did you mean 'fkl'?",
        ":18: methods[1].weighting.options.weigths: unknown field; weighting 'fixed' takes: weights",
        ":23: checks[0].student: unknown student 'ss'; did you mean 's'? valid: s"]
    assert len(lines) == len(expected), result.output
    for line, end in zip(lines, expected):
        assert line.startswith(f"{recipe}{end}"), (line, end)


def test_the_config_error_comes_once_the_others_are_fixed(tmp_path):
    text = (FIXTURES / "five_errors.yaml").read_text()
    for wrong, right in (("steps: 0", "steps: 1"), ("[fkll]", "[fkl]"), ("weigths", "weights"), ("ss}", "s}")):
        text = text.replace(wrong, right)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    lines = runner.invoke(app, ["validate", str(recipe)]).output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"{recipe}:6: teachers[0].scratch.architecture: 'lama' is not a transformers model type; "
        "did you mean 'llama'"), lines


def test_a_schema_error_in_one_item_keeps_the_others_checked_at_their_own_index(tmp_path):
    text = (FIXTURES / "five_errors.yaml").read_text()
    text = text.replace("  - name: fkl\n    objective: [fkll]\n", "  - name: fkl\n    objective: []\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    lines = runner.invoke(app, ["validate", str(recipe)]).output.splitlines()
    assert any(l.startswith(f"{recipe}:15: methods[0].objective: ") for l in lines)
    assert any(l.startswith(f"{recipe}:18: methods[1].weighting.options.weigths: unknown field") for l in lines)
    # a check could name the invalid method: judged only once every method validates
    assert not any("checks[0]" in l for l in lines)
    assert not any("fkll" in l for l in lines)
