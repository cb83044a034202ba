from __future__ import annotations

import re
import textwrap
from enum import Enum
from pathlib import Path
from string import Template
from typing import Annotated

import typer

from arkd_bench.cli.common import fail, out
from arkd_bench.plugins.kinds import PLUGIN_KINDS

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

# The kinds with templates (`<kind>.py.tmpl`, `<kind>_test.py.tmpl`), from the table of kinds.
Kind = Enum("Kind", {k.name: k.name for k in PLUGIN_KINDS.values() if k.scaffold}, type=str)

# What each kind is called in prose, and the working example its template starts from (said
# in the module's docstring only: the README and pyproject describe the user's plugin).
KIND_TEXT = {
    "weighting": "weighting strategy",
    "divergence": "divergence",
    "metric": "metric",
    "dataset": "dataset source",
    "reporter": "reporter",
    "data_policy": "data policy",
}
EXAMPLES = {
    "weighting": "per-batch weights inversely proportional to each objective term's value",
    "divergence": "the squared Hellinger distance between teacher and student",
    "metric": "exact match (x100) of predictions against references",
    "dataset": "prompt/response pairs read from a CSV file",
    "reporter": "the leaderboard as tab-separated values",
    "data_policy": "distillation on the first few tokens of each response only",
}

USAGE = {
    "weighting": "methods:\n  - name: {name}\n    objective: [fkl, rkl]\n    weighting: {{name: {name}, options: {{eps: 1.0e-6}}}}",
    "divergence": "methods:\n  - name: {name}\n    objective: [{name}]",
    "metric": "eval:\n  metrics: [rougeL, {name}]",
    "dataset": "datasets:\n  - name: my-data\n    source: {name}\n    options: {{path: pairs.csv, test_size: 0.1}}",
    "reporter": "# arkd-bench report RUNDIR --format {name} -o leaderboard.tsv",
    "data_policy": "methods:\n  - name: fkl-{name}\n    objective: [fkl]\n    data: {{name: {name}, options: {{tokens: 16}}}}",
}


def module_doc(kind: str, name: str) -> str:
    """The scaffolded module's docstring: a TODO for the user's one-line description, and what
    the example it starts from does."""
    example = (f"It starts as a small working example, {EXAMPLES[kind]}, so that its tests pass from the "
               "first run; replace it with yours, and the class docstring with what yours does "
               "(`arkd-bench plugins` shows it).")
    return (f'"""arkd-bench {KIND_TEXT[kind]} `{name}`: TODO: say in one line what it does.\n\n'
            f'{textwrap.fill(example, 92)}\n"""')


def plugin_names(name: str, kind: str) -> dict[str, str]:
    """Every spelling of the plugin's name (registered name, distribution, module, class)
    and the texts the templates fill in."""
    base = name.lower().removeprefix("arkd-bench-").removeprefix("arkd_bench_")
    if not NAME.match(base):
        raise ValueError(f"plugin name {name!r}: use lower-case letters, digits, '-' or '_', starting with a letter")
    registered = base.replace("-", "_")
    suffix = "".join(part.capitalize() for part in kind.split("_"))
    cls = "".join(part.capitalize() for part in registered.split("_"))
    cls += "" if cls.endswith(suffix) else suffix
    return {"name": registered, "dist": f"arkd-bench-{registered.replace('_', '-')}",
            "module": f"arkd_bench_{registered}", "cls": cls, "kind": kind, "kind_text": KIND_TEXT[kind],
            "module_doc": module_doc(kind, registered),
            "usage": USAGE[kind].format(name=registered), "guide": PLUGIN_KINDS[kind].guide}


def scaffold(name: str, kind: str, directory: Path) -> Path:
    """Write the plugin package into directory/<distribution name>; return that folder."""
    from importlib.resources import files

    names = plugin_names(name, kind)
    root = Path(directory) / names["dist"]
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} already exists and is not empty")
    templates = files("arkd_bench") / "templates" / "plugin"
    layout = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        "conftest.py": "conftest.py.tmpl",
        f"{names['module']}/__init__.py": f"{kind}.py.tmpl",
        # named after the module: test files must not share a basename with any other test
        f"tests/test_{names['module']}.py": f"{kind}_test.py.tmpl",
    }
    for target, template in layout.items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((templates / template).read_text(encoding="utf-8")).substitute(names),
                        encoding="utf-8")
    return root


def _taken(kind: str, name: str, plugins_dirs: list[Path]) -> str | None:
    """The plugin that already registers `name` for `kind` (builtins, installed, and the
    single-file plugins of `plugins_dirs`), if any."""
    from arkd_bench.cli.plugins_cmd import load_plugins_or_exit

    registry = load_plugins_or_exit(plugins_dirs).registry(kind)
    return registry.get(name).origin if name in registry else None


def new_plugin(
    name: Annotated[str, typer.Argument(help="plugin name, e.g. entropy-gap (registered as entropy_gap)")],
    kind: Annotated[Kind, typer.Option("--kind", "-k", help="what the plugin registers")] = Kind.weighting,
    directory: Annotated[Path, typer.Option("--dir", help="folder to create the package in")] = Path("."),
    plugins_dir: Annotated[list[Path] | None, typer.Option(
        "--plugins-dir", help="folder of single-file plugins the new name must not clash with (repeatable)")] = None,
) -> None:
    """Scaffold a third-party plugin package: pyproject with the entry point, module, test, README."""
    try:
        names = plugin_names(name, kind.value)
    except ValueError as exc:
        fail(str(exc))
    origin = _taken(kind.value, names["name"], plugins_dir or [])
    if origin is not None:
        fail(f"{kind.value} {names['name']!r} is already registered by plugin {origin!r}; choose another name")
    try:
        root = scaffold(name, kind.value, directory)
    except FileExistsError as exc:
        fail(str(exc))
    out.print(f"created {root} ({kind.value} {names['name']!r})", markup=False)
    out.print(f"next: cd {root} && python -m pytest && pip install -e .", markup=False)
