"""Reading run folders: each cell's record, scores and training log, merged by cell id.

The input of `report.rows`, which turns the cells into leaderboard rows.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import yaml

from arkd_bench.report.pairing import ExampleScores
from arkd_bench.rundir.store import DONE, RunDir, read_json

KIND_ORDER = {"teacher": 0, "echo": 1, "constant": 2, "sft": 3, "distill": 4}


def _cell_record(rundir: RunDir, cell_id: str) -> tuple[dict[str, Any], dict | None, dict | None] | None:
    """(record, config, scores.json) of a cell whose cell.json is readable, else None."""
    try:
        cell = rundir.read(cell_id, "cell.json")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    status = rundir.status(cell_id) or {"status": "unknown"}
    record = {k: cell.get(k) for k in ("id", "kind", "dataset", "teacher", "student", "method", "seed")}
    record["status"] = status.get("status", "unknown")
    record["metrics"] = {}
    scores = None
    if rundir.is_done(cell_id):
        scores = rundir.read(cell_id, "scores.json")
        record["metrics"] = scores["metrics"]
        if scores.get("data_policy"):  # only cells not trained on the ground truth have one
            record["data_policy"] = data_policy_cost(scores["data_policy"])
    elif status.get("error"):
        record["error"] = status["error"]
    return record, cell.get("config"), scores


def data_policy_cost(recorded: dict[str, Any]) -> dict[str, Any]:
    """A cell's data policy as reports show it: its label and what generating its data cost
    (seconds per training step for on-policy samples; one build per grid for built sequences)."""
    out = {"label": recorded.get("label", recorded.get("name")),
           "generation_seconds_per_step": recorded.get("generation_seconds_per_step", 0.0)}
    built = recorded.get("sequences") or {}
    if "build_seconds" in built:
        out["build_seconds"] = built["build_seconds"]
    return out


def per_example_scores(rundir: RunDir, cell_id: str) -> ExampleScores:
    """metric -> example index -> score averaged over generation seeds."""
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    cell_id, _, eval_set = cell_id.partition("@")
    for row in rundir.read(cell_id, f"evals/{eval_set}/generations.jsonl" if eval_set else "generations.jsonl"):
        for metric, value in row["scores"].items():
            sums[metric][row["example"]].append(value)
    return {m: {i: sum(v) / len(v) for i, v in by_ex.items()} for m, by_ex in sums.items()}


def _variant(config: dict | None) -> str | None:
    """What a row's cells share: their config without the seed (None when unknown)."""
    if config is None:
        return None
    from arkd_bench.recipe.matrix import content_hash

    return content_hash({k: v for k, v in config.items() if k != "seed"})


def _names(recipe: dict, key: str) -> list[str]:
    return [item["name"] for item in recipe.get(key) or [] if isinstance(item, dict) and "name" in item]


def metric_names(recipe: dict) -> list[str]:
    metrics = (recipe.get("eval") or {}).get("metrics") or ["rougeL"]
    return [m if isinstance(m, str) else m.get("name") for m in metrics]


class RunOrder:
    """Grid order from the recipes' lists, so shards sort like the whole grid."""

    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = defaultdict(list)

    def add(self, name: str, recipe: dict) -> None:
        self.lists["recipes"] += [name] if name not in self.lists["recipes"] else []
        for key in ("datasets", "teachers", "students", "methods"):
            self.lists[key] += [n for n in _names(recipe, key) if n not in self.lists[key]]

    def _index(self, key: str, name: str | None) -> tuple[int, str]:
        names = self.lists[key]
        return (names.index(name), "") if name in names else (len(names), name or "")

    def row_key(self, r: dict[str, Any]) -> tuple:
        return (self._index("datasets", r["dataset"]), self._index("teachers", r["teacher"]),
                r["kind"] != "teacher", self._index("students", r["student"]),
                KIND_ORDER.get(r["kind"], 9), self._index("methods", r["method"]),
                min(self._index("recipes", name) for name in r.get("recipes") or [r.get("recipe")]), r.get("label", ""))


def read_runs(run_dirs, order: RunOrder):
    """Every cell of every run folder, merged by id (a finished copy wins)."""
    cells: dict[str, dict[str, Any]] = {}
    extras: dict[str, tuple[str | None, dict | None]] = {}  # id -> (variant, scores.json)
    runs = []
    for path in run_dirs:
        rundir = RunDir(path)
        run = read_json(rundir.path / "run.json")
        recipe = yaml.safe_load((rundir.path / "recipe.yaml").read_text(encoding="utf-8")) or {}
        order.add(run["recipe"], recipe)
        runs.append((run["recipe"], recipe))
        for summary in run["cells"]:
            found = _cell_record(rundir, summary["id"])
            record, config, scores = found or ({**summary, "status": "pending", "metrics": {}}, None, None)
            record.update(recipe=run["recipe"], run=str(path))
            previous = cells.get(record["id"])
            if previous is None or (previous["status"] != DONE and record["status"] == DONE):
                cells[record["id"]] = record
                extras[record["id"]] = (_variant(config), scores)
                for virtual, evaluated in _eval_set_cells(record, scores):
                    cells[virtual["id"]] = virtual
                    extras[virtual["id"]] = (_variant(config), evaluated)
    return cells, extras, runs


def _eval_set_cells(record: dict[str, Any], scores: dict | None):
    """A cell evaluated on eval-only datasets stands in each of their tables as a cell of
    its own, id `<cell id>@<dataset>`, so rows, intervals and checks treat them alike."""
    for name, evaluated in ((scores or {}).get("eval_sets") or {}).items():
        yield ({**record, "id": f"{record['id']}@{name}", "dataset": name, "metrics": evaluated["metrics"],
                "source_cell": record["id"], "trained_on": record["dataset"]}, evaluated)


def train_logs(results: dict[str, Any], cell_ids: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Cell id -> its train_log.jsonl records (cells that trained and finished); an unreadable
    log counts as empty, so one damaged file never stops a report."""
    wanted = set(cell_ids) if cell_ids is not None else None
    logs = {}
    for cell in results["cells"]:
        if cell["status"] != DONE or cell["kind"] != "distill" or "run" not in cell:
            continue
        if wanted is not None and cell["id"] not in wanted:
            continue
        try:
            logs[cell["id"]] = RunDir(cell["run"]).read(cell.get("source_cell", cell["id"]), "train_log.jsonl")
        except (OSError, ValueError):
            logs[cell["id"]] = []
    return logs
