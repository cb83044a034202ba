"""Choosing settings on the dev split (`arkd-bench select`): a recipe's `select:` section
becomes candidates, a dev-split recipe that trains and scores them, a table with the
choice, and the recipe with the chosen settings for the run on test.

Pure functions of recipes and results: no torch, no I/O (cli/select_cmd.py runs the
grid and writes the files).

The rule: the best mean dev score over the selection seeds (higher or lower as the metric
says); candidates within `tie_within` of it are tied, and a tie goes to the candidate that
changes fewest settings of the method as written (its own options, else the plugin's
defaults), then to the first listed. A candidate whose cell failed is not eligible.
"""
from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkd_bench.recipe.schema import MethodSpec, Recipe, SelectAxis

MIN_FINAL_SEEDS = 3  # the chosen settings run on test with at least this many seeds
METHOD_ROOTS = ("objective", "weighting", "data")  # what an axis may set in a method
MISSING = object()


def value_label(value: Any) -> str:
    """A value as it reads in a candidate's name: 0.003, 4, true, paired."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _key(part: str, container) -> str | int:
    return int(part) if isinstance(container, list) and part.lstrip("-").isdigit() else part


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path (list items by index), or MISSING."""
    for part in path.split("."):
        key = _key(part, data)
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return data


def set_path(data: dict, path: str, value: Any) -> None:
    """Set a dotted path in a method's JSON dump, creating mappings on the way; a list item
    must exist. Raises ValueError naming the part that cannot be set."""
    parts = path.split(".")
    if parts[0] not in METHOD_ROOTS:
        raise ValueError(f"{path}: an axis sets {', '.join(p + '.' for p in METHOD_ROOTS)}... of a method, "
                         f"not {parts[0]!r}")
    node = data
    for i, part in enumerate(parts):
        key = _key(part, node)
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(key, int) or not -len(node) <= key < len(node):
                raise ValueError(f"{path}: {'.'.join(parts[:i]) or 'the method'} has {len(node)} items, no {part!r}")
        elif not isinstance(node, dict):
            raise ValueError(f"{path}: {'.'.join(parts[:i])} is {node!r}, not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]


@dataclass(frozen=True)
class Option:
    """One value of one axis: its label, what the table shows, and the paths it sets."""

    axis: str
    label: str
    shown: Any
    patch: dict[str, Any]


def axis_options(axis: SelectAxis) -> list[Option]:
    if axis.values is not None:
        return [Option(axis.name, value_label(v), v, {axis.path: v}) for v in axis.values]
    return [Option(axis.name, label, label, dict(patch)) for label, patch in axis.choices.items()]


@dataclass
class Candidate:
    method: str  # the method it is a setting of
    name: str  # e.g. arkd[lr=0.003,reward=paired]
    settings: dict[str, Any]  # axis -> value (values axis) or choice label
    patch: dict[str, Any]  # dotted path -> value, every axis together
    spec: dict[str, Any]  # the candidate's method spec (JSON), named `name`
    index: int  # listing order, for ties
    changed: int | None = None  # settings that differ from the method as written (see count_changed)


def patched_method(method: MethodSpec, patch: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The method's full JSON spec with `patch` applied (ValueError for a path that cannot be set)."""
    data = method.model_dump(mode="json")
    for path, value in patch.items():
        set_path(data, path, value)
    if name is not None:
        data["name"] = name
    return data


def candidates(recipe: Recipe, plugins=None) -> list[Candidate]:
    """Every candidate of every selected method, in listing order (the product of the axes,
    the first axis varying slowest), with the settings each changes (`plugins` supply the
    defaults of options the method does not set). Raises ValueError for a patch that does
    not apply."""
    spec = recipe.select
    found = []
    for method_name in spec.methods:
        method = next(m for m in recipe.methods if m.name == method_name)
        for combo in itertools.product(*(axis_options(a) for a in spec.axes)):
            patch: dict[str, Any] = {}
            for option in combo:
                patch.update(option.patch)
            name = f"{method_name}[{','.join(f'{o.axis}={o.label}' for o in combo)}]"
            candidate = Candidate(method_name, name, {o.axis: o.shown for o in combo}, patch,
                                  patched_method(method, patch, name), len(found))
            candidate.changed = count_changed(candidate, method, spec.axes, plugins)
            found.append(candidate)
    return found


def option_default(plugins, method: MethodSpec, path: str) -> Any:
    """The plugin's default at `path` when the method does not set it (weighting.options.X,
    data.options.X, objective.N.options.X), else MISSING."""
    parts = path.split(".")
    if parts[0] == "weighting" and len(parts) == 3 and parts[1] == "options":
        kind, name, option = "weighting", method.weighting.name, parts[2]
    elif parts[0] == "data" and len(parts) == 3 and parts[1] == "options":
        kind, name, option = "data_policy", method.data.name, parts[2]
    elif parts[0] == "objective" and len(parts) == 4 and parts[2] == "options" and parts[1].isdigit() \
            and int(parts[1]) < len(method.objective):
        kind, name, option = "divergence", method.objective[int(parts[1])].name, parts[3]
    else:
        return MISSING
    try:
        model = plugins.registry(kind).get(name).options_model
    except Exception:  # noqa: BLE001 - an unknown plugin has no defaults; validation reports it
        return MISSING
    info = getattr(model, "model_fields", {}).get(option)
    if info is None or info.is_required():
        return MISSING
    return info.get_default(call_default_factory=True)


def count_changed(candidate: Candidate, method: MethodSpec, axes: list[SelectAxis], plugins=None) -> int:
    """How many axes set something other than what the method as written has (its own
    value at the path, else the plugin's default): 0 for the method itself."""
    base = method.model_dump(mode="json")
    changed = 0
    for axis in axes:
        shown = candidate.settings[axis.name]
        patch = {axis.path: shown} if axis.values is not None else axis.choices[shown]
        for path, value in patch.items():
            current = get_path(base, path)
            if current is MISSING and plugins is not None:
                current = option_default(plugins, method, path)
            if current is MISSING or json.dumps(current, sort_keys=True) != json.dumps(value, sort_keys=True):
                changed += 1
                break
    return changed


# -- the recipes ---------------------------------------------------------------------------------

def _dump(recipe: Recipe) -> dict[str, Any]:
    """The recipe as written (unset fields left out), sections in schema order."""
    return recipe.model_dump(mode="json", exclude_unset=True)


def metric_spec(recipe: Recipe):
    name = recipe.select.metric or recipe.eval.metrics[0].name
    return next(m for m in recipe.eval.metrics if m.name == name)


def selection_recipe(recipe: Recipe, base_dir: Path, found: list[Candidate]) -> dict[str, Any]:
    """The grid that scores the candidates on the dev split: the candidates only (and the
    context baselines), the selection seeds and steps, the primary metric, eval.split valid,
    no eval-only (test) datasets, no checks."""
    spec = recipe.select
    data = _dump(recipe)
    data.pop("select", None)
    data.pop("checks", None)
    data["name"] = f"{recipe.name}-select"
    data["description"] = (f"dev-split selection for {recipe.name}: {len(found)} candidates of "
                           f"{', '.join(spec.methods)} (written by arkd-bench select)")
    data["base_dir"] = str(base_dir.resolve())
    data["seeds"] = list(spec.seeds)
    data["datasets"] = [d.model_dump(mode="json", exclude_unset=True) for d in recipe.training_datasets]
    data["methods"] = [c.spec for c in found]
    # candidates' students are scored, not kept
    data["train"] = {**data.get("train", {}), "steps": spec.steps or recipe.train.steps, "save_student": False}
    evaluation = {**data.get("eval", {}), "metrics": [metric_spec(recipe).model_dump(mode="json")],
                  "baselines": list(spec.baselines), "split": "valid"}
    evaluation.pop("reference", None)
    evaluation.pop("max_examples", None)
    if spec.max_examples is not None:
        evaluation["max_examples"] = spec.max_examples
    if "sft" not in spec.baselines:
        evaluation["reference"] = found[0].name
    data["eval"] = evaluation
    return data


def final_recipe(recipe: Recipe, base_dir: Path, chosen: dict[str, Candidate], note: str) -> dict[str, Any]:
    """The recipe with each selected method replaced by its chosen candidate (under the
    method's own name), without `select:`; it runs on test. A method whose choice changes
    none of its settings stays as written, so its cells keep their ids."""
    data = _dump(recipe)
    data.pop("select", None)
    data["base_dir"] = str(base_dir.resolve())
    data["description"] = f"{recipe.description} ({note})" if recipe.description else note
    methods = []
    for method in recipe.methods:
        if method.name in chosen and chosen[method.name].changed != 0:
            methods.append({**chosen[method.name].spec, "name": method.name})
        else:
            methods.append(method.model_dump(mode="json", exclude_unset=True))
    data["methods"] = methods
    return data


# -- scoring and the choice -------------------------------------------------------------------------

@dataclass
class Row:
    candidate: Candidate
    scores: dict[int, float] = field(default_factory=dict)  # seed -> dev score (mean over the grid's pairs)
    cells: list[dict[str, Any]] = field(default_factory=list)  # each cell: id, dataset, teacher, student, seed, score
    problem: str | None = None  # why it is not eligible (a failed or missing cell)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores.values()) if self.scores and self.problem is None else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.scores.values()) if len(self.scores) > 1 and self.problem is None else None


def tabulate(found: list[Candidate], cells: list[dict[str, Any]], metric: str, seeds: list[int]) -> list[Row]:
    """Each candidate's dev scores from results.json's cells. With several datasets, teachers
    or students, a seed's score is the mean over them (one setting for the whole grid)."""
    rows = []
    for candidate in found:
        row = Row(candidate)
        mine = [c for c in cells if c.get("kind") == "distill" and c.get("method") == candidate.name]
        by_seed: dict[int, list[float]] = {}
        for cell in mine:
            value = (cell.get("metrics") or {}).get(metric)
            ok = cell.get("status") == "done" and isinstance(value, (int, float)) and math.isfinite(value)
            row.cells.append({k: cell.get(k) for k in ("id", "dataset", "teacher", "student", "seed", "status")}
                             | {"score": value if ok else None, **({"error": cell["error"]} if cell.get("error") else {})})
            if not ok:
                why = cell.get("error") or (f"status {cell.get('status')}" if cell.get("status") != "done"
                                            else f"no finite {metric}")
                row.problem = row.problem or f"cell {cell.get('id')} (seed {cell.get('seed')}): {why}"
                continue
            by_seed.setdefault(cell["seed"], []).append(float(value))
        missing = [s for s in seeds if s not in by_seed]
        if not mine:
            row.problem = "no cells"
        elif missing and row.problem is None:
            row.problem = f"no score for seeds {missing}"
        row.scores = {s: statistics.fmean(v) for s, v in sorted(by_seed.items())}
        rows.append(row)
    return rows


@dataclass
class Choice:
    method: str
    chosen: Row | None
    tied: list[str]
    why: str


def choose(rows: list[Row], higher_is_better: bool, tie_within: float) -> Choice:
    """The rule (module docstring) applied to one method's rows."""
    method = rows[0].candidate.method
    eligible = [r for r in rows if r.mean is not None]
    if not eligible:
        return Choice(method, None, [], "no candidate finished: nothing to choose")
    sign = 1.0 if higher_is_better else -1.0
    best = max(sign * r.mean for r in eligible)
    tied = [r for r in eligible if best - sign * r.mean <= tie_within + 1e-12 * max(1.0, abs(best))]
    chosen = min(tied, key=lambda r: (r.candidate.changed if r.candidate.changed is not None else math.inf,
                                      r.candidate.index))
    word = "highest" if higher_is_better else "lowest"
    seeds = len(chosen.scores)
    why = f"{word} mean dev score ({chosen.mean:.6g} over {seeds} seed{'s' if seeds != 1 else ''})"
    if len(tied) > 1:
        why += (f"; tied within {tie_within:g} with {', '.join(r.candidate.name for r in tied if r is not chosen)}: "
                f"fewest settings changed from {method} as written ({chosen.candidate.changed}), then first listed")
    return Choice(method, chosen, [r.candidate.name for r in tied], why)


RULE = ("best mean dev score over the selection seeds ({direction}); candidates within tie_within = {tie} of "
        "the best are tied, and a tie goes to the fewest settings changed from the method as written (its own "
        "values, else the plugin's defaults), then to the first listed; a candidate with a failed cell is not "
        "eligible")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"  # enough digits to see the order the choice followed


def render_markdown(record: dict[str, Any]) -> str:
    """selection.md: the rule, the setting, and one table per selected method."""
    lines = [f"# Settings chosen on the dev split: {record['recipe']}", "",
             f"- metric: **{record['metric']}** ({'higher' if record['higher_is_better'] else 'lower'} is better), "
             f"on the **{record['split']}** split ({record['dev_examples']}); the test split is not evaluated",
             f"- selection seeds: {record['seeds']}; steps per candidate: {record['steps']} "
             f"(the final run: {record['final_steps']}"
             + (", so these are short runs" if record["steps"] < record["final_steps"] else "") + ")",
             f"- rule: {record['rule']}",
             f"- probe: a strategy that learns from a probe batch (ARKD's probe and paired rewards) measures "
             f"it on the first {record['probe_examples']} validation examples, which are also scored here",
             f"- selection run: `{record['selection_run']}`; resolved recipe: `{record['selected_recipe']}`",
             ""]
    for method, entry in record["methods"].items():
        lines += [f"## {method}", "", f"chosen: **{entry['chosen'] or '-'}**: {entry['why']}", ""]
        axes = list(entry["candidates"][0]["settings"]) if entry["candidates"] else []
        lines.append("| " + " | ".join(["candidate", *axes, f"dev {record['metric']} mean", "std", "seeds",
                                         "changed", "note"]) + " |")
        lines.append("|" + "---|" * (len(axes) + 6))
        for c in entry["candidates"]:
            mark = "**" if c["name"] == entry["chosen"] else ""
            cells = [f"{mark}{c['name']}{mark}", *(value_label(c["settings"][a]) for a in axes),
                     f"{mark}{_fmt(c['mean'])}{mark}", _fmt(c["std"]), str(len(c["scores"])),
                     "-" if c["changed"] is None else str(c["changed"]), c["problem"] or ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def selection_record(recipe: Recipe, found: list[Candidate], rows: list[Row], choices: list[Choice], *,
                     higher_is_better: bool, dev_examples: str, selection_run: str,
                     selected_recipe: str) -> dict[str, Any]:
    """selection.json: every candidate with its settings, scores and the choice (version 1)."""
    spec = recipe.select
    by_method: dict[str, Any] = {}
    for choice in choices:
        by_method[choice.method] = {
            "chosen": choice.chosen.candidate.name if choice.chosen else None,
            "chosen_settings": choice.chosen.candidate.settings if choice.chosen else None,
            "why": choice.why, "tied": choice.tied, "candidates": []}
    for row in rows:
        c = row.candidate
        by_method[c.method]["candidates"].append({
            "name": c.name, "settings": c.settings, "patch": c.patch, "changed": c.changed,
            "scores": {str(s): v for s, v in row.scores.items()}, "mean": row.mean, "std": row.std,
            "n": len(row.scores), "problem": row.problem, "cells": row.cells})
    steps = spec.steps or recipe.train.steps
    return {
        "selection_version": 1, "recipe": recipe.name, "split": "valid", "test_split_evaluated": False,
        "metric": metric_spec(recipe).name, "higher_is_better": higher_is_better,
        "seeds": list(spec.seeds), "steps": steps, "final_steps": recipe.train.steps,
        "final_seeds": list(recipe.seeds), "dev_examples": dev_examples,
        "probe_examples": recipe.train.batch_size,
        "rule": RULE.format(direction="higher is better" if higher_is_better else "lower is better",
                            tie=format(spec.tie_within, "g")),
        "selection_run": selection_run, "selected_recipe": selected_recipe, "methods": by_method,
    }
