"""Typed results of one or more run folders: the input of every report and check.

results.json (schema_version 1):
  recipe: str                    recipe name(s), comma-joined when runs are merged
  runs: [str]                    run folders merged
  cells: [{id, kind, dataset, teacher, student, method, seed, status, error?, metrics: {name: number}}]
  leaderboard: [{dataset, teacher, student, method, kind,
                 metrics: {name: {mean, std, n}},
                 vs_reference: {name: {reference, diff, low, high, p_value, n_examples}}}]
  reference: str                 the method each row is compared with
  comparisons: int               how many row-vs-reference tests the leaderboard reports
  settings: {seeds, eval}        the settings every number above was made with
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from arkd_bench.results.store import DONE, RunDir, atomic_write_json, atomic_write_text, read_json

SCHEMA_VERSION = 1
GROUP_KEYS = ("dataset", "teacher", "student", "method")


def _cell_record(rundir: RunDir, cell_id: str) -> dict[str, Any] | None:
    try:
        cell = rundir.read(cell_id, "cell.json")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    status = rundir.status(cell_id) or {"status": "unknown"}
    record = {k: cell.get(k) for k in ("id", "kind", "dataset", "teacher", "student", "method", "seed")}
    record["status"] = status.get("status", "unknown")
    record["metrics"] = {}
    if rundir.is_done(cell_id):
        record["metrics"] = rundir.read(cell_id, "scores.json")["metrics"]
    elif status.get("error"):
        record["error"] = status["error"]
    return record


def per_example_scores(rundir: RunDir, cell_id: str) -> dict[str, dict[int, float]]:
    """metric -> example index -> score averaged over generation seeds."""
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rundir.read(cell_id, "generations.jsonl"):
        for metric, value in row["scores"].items():
            sums[metric][row["example"]].append(value)
    return {m: {i: sum(v) / len(v) for i, v in by_ex.items()} for m, by_ex in sums.items()}


def collect(run_dirs: list[str | Path], reference: str | None = None) -> dict[str, Any]:
    from arkd_bench.evaluate.stats import mean_std, paired_bootstrap

    cells, names, settings = [], [], {}
    examples: dict[tuple, list[dict[str, dict[int, float]]]] = defaultdict(list)
    for path in run_dirs:
        rundir = RunDir(path)
        run = read_json(rundir.path / "run.json")
        names.append(run["recipe"])
        recipe = yaml.safe_load((rundir.path / "recipe.yaml").read_text(encoding="utf-8")) or {}
        settings = {"seeds": recipe.get("seeds", [0]), "eval": recipe.get("eval", {})}
        reference = reference or (recipe.get("eval") or {}).get("reference")
        for summary in run["cells"]:
            record = _cell_record(rundir, summary["id"])
            if record is None:
                record = {**summary, "status": "pending", "metrics": {}}
            cells.append(record)
            if record["status"] == DONE:
                examples[tuple(record[k] for k in GROUP_KEYS)].append(per_example_scores(rundir, record["id"]))
    reference = reference or "sft"
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        groups[tuple(cell[k] for k in GROUP_KEYS)].append(cell)
    leaderboard, comparisons = [], 0
    for key, members in groups.items():
        done = [c for c in members if c["status"] == DONE]
        metric_names = sorted({m for c in done for m in c["metrics"]})
        row = dict(zip(GROUP_KEYS, key))
        row["kind"] = members[0]["kind"]
        row["failed"] = sum(c["status"] == "failed" for c in members)
        row["metrics"] = {}
        for m in metric_names:
            mean, std, n = mean_std([c["metrics"][m] for c in done if m in c["metrics"]])
            row["metrics"][m] = {"mean": mean, "std": std, "n": n}
        row["vs_reference"] = {}
        ref_key = (key[0], key[1], key[2], reference)
        if key[3] != reference and ref_key in examples and examples.get(key):
            for m in metric_names:
                a, b = _paired(examples[key], examples[ref_key], m)
                if len(a) >= 2:
                    c = paired_bootstrap(a, b)
                    row["vs_reference"][m] = {"reference": reference, "diff": c.diff, "low": c.low,
                                              "high": c.high, "p_value": c.p_value, "n_examples": c.n}
                    comparisons += 1
        leaderboard.append(row)
    return {"schema_version": SCHEMA_VERSION, "recipe": ", ".join(dict.fromkeys(names)),
            "runs": [str(p) for p in run_dirs], "cells": cells, "leaderboard": leaderboard,
            "reference": reference, "comparisons": comparisons, "settings": settings}


def _paired(runs_a, runs_b, metric: str) -> tuple[list[float], list[float]]:
    """Per-example scores of two groups averaged over their seeds, on the examples both have."""
    def average(runs):
        sums: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for i, v in run.get(metric, {}).items():
                sums[i].append(v)
        return {i: sum(v) / len(v) for i, v in sums.items()}

    a, b = average(runs_a), average(runs_b)
    common = sorted(set(a) & set(b))
    return [a[i] for i in common], [b[i] for i in common]


def write_run_reports(run_dir: str | Path, plugins) -> dict[str, Any]:
    """results.json and leaderboard.md in the run folder (every run writes both)."""
    run_dir = Path(run_dir)
    results = annotate_metrics(collect([run_dir]), plugins)
    atomic_write_json(run_dir / "results.json", results)
    markdown = plugins.create("reporter", "md").render(results)
    atomic_write_text(run_dir / "leaderboard.md", markdown)
    return results


def annotate_metrics(results: dict[str, Any], plugins) -> dict[str, Any]:
    """Add each metric's direction (from its plugin) so tables can mark the best."""
    registry = plugins.registry("metric")
    names = {m for row in results["leaderboard"] for m in row["metrics"]}
    results["metric_info"] = {
        m: {"higher_is_better": getattr(registry.get(m).factory, "higher_is_better", True) if m in registry else True}
        for m in sorted(names)
    }
    return results
