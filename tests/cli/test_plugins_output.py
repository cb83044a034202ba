"""`arkd-bench plugins` for logs and tools: nothing cut off, full option types with choices."""
import json

from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins.registry import choices, type_text

runner = CliRunner()


def test_type_text_and_choices_keep_what_a_user_may_write():
    from typing import Literal, Optional, Union

    assert type_text(Literal["beta", "bernoulli"]) == "Literal['beta', 'bernoulli']"
    assert type_text(Optional[Literal["a", "b"]]) == "Literal['a', 'b'] | None"
    assert type_text(Union[int, dict[str, int], None]) == "int | dict[str, int] | None"
    assert type_text(tuple[str, ...]) == "tuple[str, ...]" and type_text(list[float] | None) == "list[float] | None"
    assert choices(Optional[Literal["a", "b"]]) == ["a", "b"] and choices(int | None) is None


def test_json_gives_full_types_choices_and_defaults():
    entries = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    arkd = next(e for e in entries if (e["kind"], e["name"]) == ("weighting", "arkd"))
    action = arkd["options"]["action"]
    assert action["type"] == "Literal['beta', 'logit_normal', 'bernoulli']"
    assert action["choices"] == ["beta", "logit_normal", "bernoulli"] and action["default"] == "beta"
    assert arkd["options"]["max_grad_norm"]["type"] == "float | None"
    types = {o["type"] for e in entries for o in e["options"].values()}
    assert not types & {"Literal", "Optional", "Union"}, types


def test_text_lists_one_name_per_line_with_every_option():
    result = runner.invoke(app, ["plugins"])  # not a terminal: text
    assert result.exit_code == 0
    lines = result.output.splitlines()
    entries = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    assert len(lines) == len(entries)
    arkd = next(l for l in lines if l.startswith("weighting arkd ("))
    assert all(f"{name}: " in arkd for name in next(e for e in entries if e["name"] == "arkd")["options"])
    assert "divergence fkl (" in result.output and "[temperature: float = 1.0]" in result.output


def test_table_folds_long_options_instead_of_cutting_them():
    result = runner.invoke(app, ["plugins", "--format", "table"])  # 80 columns, as in a CI log
    assert result.exit_code == 0 and "…" not in result.output
    # rich folds a cell over lines: the options column, read top to bottom, has every option
    cells = "".join(line.split("│")[4].strip() for line in result.output.splitlines() if line.count("│") == 6)
    assert "temperature:float=1.0" in cells.replace(" ", "") and "initial_alpha:float=0.5" in cells.replace(" ", "")
