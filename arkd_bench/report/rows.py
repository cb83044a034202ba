"""Rows and statistics: the results dict of one or more run folders, the input of every
report and check.

results.json (schema_version 1; keys marked + are extras beyond the documented minimum):
  recipe: str                    recipe name(s), comma-joined when runs are merged
  runs: [str]                    run folders merged
  cells: [{id, kind, dataset, teacher, student, method, seed, status, error?,
           metrics: {name: number}, +recipe, +run, +source_cell, +trained_on}]
                                 a cell evaluated on an eval_only dataset appears again as
                                 `<id>@<dataset>` with that dataset's metrics (+source_cell, +trained_on)
  leaderboard: [{dataset, teacher, student, method, kind, failed,
                 metrics: {name: {mean, std, n, +low, +high, +interval, +seed_variance}},
                 vs_reference: {name: {reference, diff, low, high, p_value, n_examples,
                                       +interval, +seeds, +paired_seeds, +seed_variance,
                                       +p_adjusted}},
                 +label, +pending, +cells, +recipes, +seeds: [int] (distinct training seeds
                 of the finished cells), +rank: {name: int | null},
                 +data_policy: {label, generation_seconds_per_step, build_seconds?} (rows not
                 trained on the ground truth: where their sequences came from and what generating
                 them cost, mean over seeds)}]
  reference: str                 the method each row is compared with
  comparisons: int               how many row-vs-reference tests the leaderboard reports
  +adjustment: {method, family, comparisons: {dataset: int}}
                                 how stars are adjusted for multiple comparisons: holm,
                                 bonferroni or none, over each dataset's table
  settings: {seeds, eval}        the settings of the first run's recipe
  +metric_info: {name: {higher_is_better, scale, bounds: [low | null, high | null],
                 teacher_value: number | null}}
  +primary_metric: str           the metric the rank column orders by
  +eval_settings: [{dataset, recipe, seeds, examples, generation, generation_seeds, metrics}]

A row is one method on one (dataset, teacher, student) over its training seeds. Cells
are merged by id, so shards of a grid give the rows of the whole grid; two cells of one
seed (merged runs) count as one seed, their scores averaged, so `n` counts distinct seeds.
`metrics.low/high` is a 95% interval of the row's mean and `vs_reference` the paired
difference with the reference row. `interval` says what they cover: "examples" (one
training seed and no seed variance to borrow: test examples only, percentile bootstrap,
sign-flip p-value) or "seeds+examples" (the two-level interval of
`evaluate.stats.seeded_bootstrap`); `seeds` is [row seeds, reference seeds];
`paired_seeds` is true when both rows have the same seeds and were compared seed by
seed; `seed_variance` says where a one-seed row's seed variance came from: "pooled"
over the multi-seed rows of its dataset, teacher and student (assuming methods share a
seed variance), else "own", "other side" or "none". `p_adjusted` is the p-value adjusted
for the comparisons of its table (`adjustment`); stars use it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from arkd_bench.report.pairing import (ExampleScores, SeedScores, average_seeds, by_seed, compare_rows, paired,
                                       pool_seed_variance, rank_values, row_interval, seed_mean_variance)
from arkd_bench.report.read import RunOrder, metric_names, per_example_scores, read_runs
from arkd_bench.rundir.store import DONE, FAILED, RunDir

SCHEMA_VERSION = 1


GROUP_KEYS = ("dataset", "teacher", "student", "method")


# Rows that are reference points, not contestants: never ranked, never "best".
REFERENCE_KINDS = ("teacher", "echo", "constant")


@dataclass(frozen=True)
class Row:
    """One leaderboard row, typed: a view of a `results["leaderboard"]` entry (`from_dict`)
    whose containers are the entry's own, so filling `metrics`, `vs_reference` or `rank`
    fills the results; `to_dict` gives the entry back with results.json's key order."""

    dataset: str
    teacher: str
    student: str | None
    method: str
    kind: str
    label: str  # the method, plus what tells its variants apart
    failed: int = 0
    pending: int = 0
    cells: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    seeds: list[int] | None = None  # None in results written before rows recorded them
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_policy: dict[str, Any] | None = None  # only rows not trained on the ground truth
    vs_reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    rank: dict[str, int | None] | None = None  # set once metric directions are known

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Row:
        names = [f.name for f in fields(cls)]
        return cls(**{**{k: row[k] for k in names if k in row}, "label": row.get("label", row["method"])})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if v is not None or k == "student"}

    @property
    def rank_group(self) -> tuple:
        """The rows it is ranked against: same dataset, teacher and student."""
        return (self.dataset, self.teacher, self.student)

    @property
    def trained(self) -> bool:
        """Whether its training seeds matter (not the teacher, a bound, nor a floor)."""
        return self.kind not in REFERENCE_KINDS

    @property
    def seed_count(self) -> int:
        """Distinct training seeds of its finished cells (merged runs that repeat a seed
        count it once)."""
        if self.seeds is not None:
            return len(self.seeds)
        return max((s["n"] for s in self.metrics.values()), default=0)


def leaderboard_rows(results: dict[str, Any]) -> list[Row]:
    """The typed rows of a results dict, in leaderboard order."""
    return [Row.from_dict(row) for row in results["leaderboard"]]


@dataclass
class Collected:
    """The results dict plus what it leaves out: per-example scores of every finished cell."""

    results: dict[str, Any]
    scores: dict[str, ExampleScores] = field(default_factory=dict)  # cell id -> metric -> example -> score
    seeds: dict[str, int] = field(default_factory=dict)  # cell id -> training seed
    _pooled: dict[tuple, tuple | None] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> list[Row]:
        """Typed views of the leaderboard's rows (filling their containers fills the results)."""
        return leaderboard_rows(self.results)

    def example_scores(self, row: Row, metric: str) -> dict[int, float]:
        """Example -> score of a row, averaged over its training and generation seeds."""
        return average_seeds([self.scores[c] for c in row.cells if c in self.scores], metric)

    def paired(self, row_a: Row, row_b: Row, metric: str) -> tuple[list[float], list[float]]:
        """Scores of two rows on the test examples both have, in the same order."""
        return paired(self.example_scores(row_a, metric), self.example_scores(row_b, metric))

    def seed_scores(self, row: Row, metric: str) -> SeedScores:
        """Training seed -> example -> score of a row (generation seeds averaged)."""
        return by_seed([(self.seeds.get(c, 0), self.scores[c]) for c in row.cells if c in self.scores], metric)

    def pooled_seed_variance(self, row: Row, metric: str) -> tuple[float, int, int] | None:
        """(variance of one seed's mean, df, rows) pooled over the trained rows of the row's
        dataset, teacher and student that have 2+ distinct seeds; None when there are none."""
        key = (row.rank_group, metric)
        if key not in self._pooled:
            estimates = [seed_mean_variance(self.seed_scores(r, metric)) for r in self.rows
                         if r.rank_group == key[0] and r.trained]
            self._pooled[key] = pool_seed_variance([e for e in estimates if e is not None])
        return self._pooled[key]

    def compare(self, row_a: Row, row_b: Row, metric: str):
        """Comparison of a - b (`pairing.compare_rows`: over seeds and examples when either
        row has 2+ seeds, or when a one-seed row can borrow the seed variance pooled over its
        grid's multi-seed rows), or None with under 2 common examples."""
        a, b = self.seed_scores(row_a, metric), self.seed_scores(row_b, metric)
        pooled = self.pooled_seed_variance(row_a, metric) if min(len(a), len(b)) == 1 else None
        return compare_rows(a, b, pooled=None if pooled is None else pooled[:2])

    @cached_property
    def _cell_index(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.results["cells"]}

    def cell(self, cell_id: str) -> dict[str, Any]:
        return self._cell_index[cell_id]


def _group(cells: dict[str, dict], extras: dict) -> dict[tuple, list[dict]]:
    """Rows: cells of one method on one (dataset, teacher, student) with the same config.

    Two recipes may use one method name for different settings; those become two rows.
    Cells without a config (never started) join the row of their recipe."""
    by_base: dict[tuple, dict[str | None, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells.values():
        by_base[tuple(cell[k] for k in GROUP_KEYS)][extras[cell["id"]][0]].append(cell)
    groups: dict[tuple, list[dict]] = {}
    for base, variants in by_base.items():
        unknown = variants.pop(None, [])
        for cell in unknown:
            home = next((v for v, members in variants.items() if any(m["recipe"] == cell["recipe"] for m in members)),
                        None)
            variants.setdefault(home, []).append(cell)
        for variant, members in variants.items():
            groups[(*base, variant)] = members
    return groups


def _labels(groups: dict[tuple, list[dict]]) -> dict[tuple, str]:
    """Row names: the method, plus its recipe (or a config hash) when the name has variants."""
    by_base: dict[tuple, list[tuple]] = defaultdict(list)
    for key in groups:
        by_base[key[:4]].append(key)
    labels = {}
    for base, keys in by_base.items():
        recipes = [sorted({m["recipe"] for m in groups[k]}) for k in keys]
        by_recipe = all(len(r) == 1 for r in recipes) and len({r[0] for r in recipes}) == len(keys)
        for key, names in zip(keys, recipes):
            if len(keys) == 1:
                labels[key] = base[3]
            else:
                labels[key] = f"{base[3]} ({names[0]})" if by_recipe else f"{base[3]} #{(key[4] or 'pending')[:6]}"
    return labels


def _eval_settings(cells: list[dict], extras: dict) -> list[dict[str, Any]]:
    """The evaluation every number was made with, per (dataset, recipe), from the cells themselves."""
    out: dict[tuple, dict[str, Any]] = {}
    for cell in cells:
        key = (cell["dataset"], cell["recipe"])
        entry = out.setdefault(key, {"dataset": key[0], "recipe": key[1], "seeds": set()})
        if cell["kind"] != "teacher":
            entry["seeds"].add(cell["seed"])
        scores = extras[cell["id"]][1]
        if scores and "generation" not in entry:
            settings = scores.get("settings", {})
            entry.update(examples=settings.get("examples"), generation=settings.get("generation", {}),
                         generation_seeds=settings.get("seeds_used"), metrics=settings.get("metrics", {}))
            if settings.get("split"):  # only a dev-split evaluation records its split
                entry["split"] = settings["split"]
    return [{**e, "seeds": sorted(e["seeds"])} for e in out.values()]


def load(run_dirs: list[str | Path], plugins=None, reference: str | None = None, adjust: str = "holm") -> Collected:
    """Merge run folders into one Collected; with `plugins`, metric directions and ranks too.
    `adjust` (holm, bonferroni, none) sets how each table's stars account for its number
    of comparisons."""
    from arkd_bench.evaluate.stats import ADJUSTMENTS

    if adjust not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {adjust!r}; valid: {', '.join(ADJUSTMENTS)}")

    order = RunOrder()
    cells, extras, runs = read_runs(run_dirs, order)
    first_recipe = runs[0][1] if runs else {}
    reference = reference or (first_recipe.get("eval") or {}).get("reference") or "sft"
    scores, seeds = {}, {}
    for path in run_dirs:
        rundir = RunDir(path)
        for cell in cells.values():
            if cell["run"] == str(path) and cell["status"] == DONE:
                scores[cell["id"]] = per_example_scores(rundir, cell["id"])
                seeds[cell["id"]] = cell["seed"]
    groups = _group(cells, extras)
    labels = _labels(groups)
    leaderboard = sorted((_row(key, members, labels[key]).to_dict() for key, members in groups.items()),
                         key=order.row_key)
    ordered_cells = sorted(cells.values(), key=lambda c: (*order.row_key(c), c["seed"]))
    collected = Collected({
        "schema_version": SCHEMA_VERSION, "recipe": ", ".join(dict.fromkeys(name for name, _ in runs)),
        "runs": [str(p) for p in run_dirs], "cells": ordered_cells, "leaderboard": leaderboard,
        "reference": reference, "comparisons": 0,
        "settings": {"seeds": first_recipe.get("seeds", [0]), "eval": first_recipe.get("eval", {})},
        "primary_metric": next((m for _, r in runs for m in metric_names(r)), None),
        "eval_settings": _eval_settings(ordered_cells, extras),
    }, scores, seeds)
    for row in collected.rows:  # after all rows: a one-seed row borrows the pooled seed variance of its grid
        for m, stat in row.metrics.items():
            row_scores = collected.seed_scores(row, m)
            # the teacher and the floors have no seed variance
            pooled = collected.pooled_seed_variance(row, m) if len(row_scores) == 1 and row.trained else None
            stat.update(row_interval(row_scores, pooled=None if pooled is None else pooled[:2]))
    _compare_with_reference(collected)
    adjust_comparisons(collected.results, adjust)
    if plugins is not None:
        annotate_metrics(collected.results, plugins)
    return collected


def _row(key: tuple, members: list[dict], label: str) -> Row:
    """A row from its cells: counts, seeds, per-metric mean and std over seeds, and what
    generating its sequences cost."""
    from arkd_bench.evaluate.stats import mean_std

    members.sort(key=lambda c: c["seed"])
    done = [c for c in members if c["status"] == DONE]
    metrics = {}
    for m in sorted({m for c in done for m in c["metrics"]}):
        mean, std, n = mean_std(_per_seed([c for c in done if m in c["metrics"]], m))
        metrics[m] = {"mean": mean, "std": std, "n": n}
    costs = [c["data_policy"] for c in done if c.get("data_policy")]
    data_policy = None  # ground-truth rows have none, and their results stay as they were
    if costs:
        data_policy = {**costs[0], "generation_seconds_per_step": round(
            sum(c["generation_seconds_per_step"] for c in costs) / len(costs), 4)}
    return Row(*key[:4], kind=members[0]["kind"], label=label,
               failed=sum(c["status"] == FAILED for c in members),
               pending=sum(c["status"] not in (DONE, FAILED) for c in members),
               cells=[c["id"] for c in members], recipes=sorted({c["recipe"] for c in members}),
               seeds=sorted({c["seed"] for c in done}), metrics=metrics, data_policy=data_policy)


def _per_seed(cells: list[dict], metric: str) -> list[float]:
    """One value per distinct training seed: cells of one seed (merged runs) averaged."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for c in cells:
        by_seed[c["seed"]].append(c["metrics"][metric])
    return [sum(v) / len(v) for _, v in sorted(by_seed.items())]


def adjust_comparisons(results: dict[str, Any], method: str = "holm") -> None:
    """`p_adjusted` on every comparison with the reference, adjusted (`evaluate.stats.
    adjust_p_values`) over the family of its table: every row and metric of its dataset."""
    from arkd_bench.evaluate.stats import adjust_p_values

    families: dict[str, list[dict]] = defaultdict(list)
    for row in leaderboard_rows(results):
        families[row.dataset] += list(row.vs_reference.values())
    for comparisons in families.values():
        for c, p in zip(comparisons, adjust_p_values([c["p_value"] for c in comparisons], method)):
            c["p_adjusted"] = p
    results["adjustment"] = {"method": method, "family": "table",
                             "comparisons": {d: len(c) for d, c in families.items()}}


def reference_row(rows: list[Row], row: Row, reference: str) -> Row | None:
    """The reference method's row next to `row` (same dataset, teacher, student), preferring
    one from the same recipe when a method name has several variants."""
    candidates = [r for r in rows if r.method == reference and r.rank_group == row.rank_group]
    same_recipe = [r for r in candidates if set(r.recipes) & set(row.recipes)]
    return (same_recipe or candidates or [None])[0]


def _compare_with_reference(collected: Collected) -> None:
    results = collected.results
    reference, comparisons = results["reference"], 0
    rows = collected.rows
    for row in rows:
        ref = reference_row(rows, row, reference)
        if ref is None or ref is row or row.method == reference:
            continue
        for m in row.metrics:
            c = collected.compare(row, ref, m)
            if c is not None:
                row.vs_reference[m] = {"reference": ref.label, "diff": c.diff, "low": c.low, "high": c.high,
                                       "p_value": c.p_value, "n_examples": c.n, "interval": c.interval,
                                       "seeds": list(c.seeds), "paired_seeds": c.paired_seeds,
                                       "seed_variance": c.seed_variance}
                comparisons += 1
    results["comparisons"] = comparisons


def collect(run_dirs: list[str | Path], reference: str | None = None, adjust: str = "holm") -> dict[str, Any]:
    """The results dict of run folders (without metric directions; see `annotate_metrics`)."""
    return load(run_dirs, reference=reference, adjust=adjust).results


def annotate_metrics(results: dict[str, Any], plugins) -> dict[str, Any]:
    """Add each metric's direction (from its plugin) and the ranks that depend on it."""
    registry = plugins.registry("metric")
    names = {m for row in leaderboard_rows(results) for m in row.metrics}
    results["metric_info"] = {m: _metric_info(registry.get(m).factory if m in registry else None)
                              for m in sorted(names)}
    add_ranks(results)
    return results


def _metric_info(factory) -> dict[str, Any]:
    """Direction and scale of a metric (percent, nats or count), the range of its values
    (`bounds`, None where open) and its value by definition for the teacher against itself
    (`teacher_value`, None when it has none); unknown metrics count as unbounded
    higher-is-better percentages, the common case."""
    low, high = getattr(factory, "bounds", (None, None))
    return {"higher_is_better": getattr(factory, "higher_is_better", True),
            "scale": getattr(factory, "scale", "percent"), "bounds": [low, high],
            "teacher_value": getattr(factory, "teacher_value", None)}


def higher_is_better(results: dict[str, Any], metric: str) -> bool:
    return results.get("metric_info", {}).get(metric, {}).get("higher_is_better", True)


def add_ranks(results: dict[str, Any]) -> None:
    """Rank rows per (dataset, teacher, student) and metric, 1 = best: students of other
    architectures or teachers are not rivals. The teacher (a bound) and the trivial
    baselines (floors) are reference points, not contestants."""
    for entry in results["leaderboard"]:
        entry["rank"] = {}
    ranked = [r for r in leaderboard_rows(results) if r.trained]
    for group in {r.rank_group for r in ranked}:
        rows = [r for r in ranked if r.rank_group == group]
        for m in dict.fromkeys(m for r in rows for m in r.metrics):  # a set's order would vary by process
            values = [r.metrics.get(m, {}).get("mean") for r in rows]
            for r, rank in zip(rows, rank_values(values, higher_is_better(results, m))):
                r.rank[m] = rank
