"""The leaderboard as markdown: one pure function of the results dict."""
from __future__ import annotations

from typing import Any

KIND_ORDER = {"teacher": 0, "sft": 1, "distill": 2}


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _direction(results: dict[str, Any], metric: str) -> bool:
    return results.get("metric_info", {}).get(metric, {}).get("higher_is_better", True)


def _significance(p: float) -> str:
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def make_table(results: dict[str, Any], dataset: str) -> str:
    rows = [r for r in results["leaderboard"] if r["dataset"] == dataset]
    rows.sort(key=lambda r: (KIND_ORDER.get(r["kind"], 9), r["teacher"], r["student"] or "", r["method"]))
    metrics = sorted({m for r in rows for m in r["metrics"]})
    best = {}
    for m in metrics:
        values = [r["metrics"][m]["mean"] for r in rows if m in r["metrics"] and r["kind"] != "teacher"]
        if values:
            best[m] = max(values) if _direction(results, m) else min(values)
    reference = results.get("reference", "sft")
    header = ["method", "teacher", "student"]
    header += [f"{m} {'↑' if _direction(results, m) else '↓'}" for m in metrics]
    header += [f"Δ{m} vs {reference} [95% CI]" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [r["method"] + (f" ({r['failed']} failed)" if r.get("failed") else ""), r["teacher"],
                 r["student"] or "-"]
        for m in metrics:
            stat = r["metrics"].get(m)
            if stat is None:
                cells.append("-")
                continue
            text = f"{_fmt(stat['mean'])} ± {_fmt(stat['std'])}"
            if r["kind"] != "teacher" and best.get(m) == stat["mean"]:
                text = f"**{text}**"
            cells.append(text)
        for m in metrics:
            c = r.get("vs_reference", {}).get(m)
            cells.append("-" if c is None else
                         f"{c['diff']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]{_significance(c['p_value'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    settings = results.get("settings", {})
    generation = settings.get("eval", {}).get("generation", {})
    out = [f"# Leaderboard: {results['recipe']}", ""]
    out.append(f"Training seeds: {settings.get('seeds')}; generation: "
               + (", ".join(f"{k}={v}" for k, v in sorted(generation.items())) or "defaults")
               + ". Mean ± std over training seeds; Δ is the paired difference with the reference "
               f"`{results.get('reference')}` over test examples (95% bootstrap interval; * p<0.05, ** p<0.01; "
               f"{results.get('comparisons', 0)} comparisons, uncorrected).")
    for dataset in sorted({r["dataset"] for r in results["leaderboard"]}):
        out += ["", f"## {dataset}", "", make_table(results, dataset)]
    failed = [c for c in results["cells"] if c["status"] == "failed"]
    if failed:
        out += ["", "## Failed cells", ""]
        out += [f"- `{c['id']}` {c['method']} seed={c['seed']}: {c.get('error', '')}" for c in failed]
    return "\n".join(out) + "\n"
