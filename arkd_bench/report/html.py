"""The report as one self-contained HTML page: tables plus plots embedded as base64 PNG.

`render_html(results, logs, view)` is a pure function of the results dict, the cells' training
logs and the table view; a figure that cannot be drawn is replaced by its error, so one odd log never costs
the page.
"""
from __future__ import annotations

import base64
from html import escape
from typing import Any

from arkd_bench.report.notes import legend
from arkd_bench.report.numbers import clip, metric_bounds
from arkd_bench.report.rows import higher_is_better, leaderboard_rows
from arkd_bench.report.table import Table, View, datasets, make_table, row_label, teacher_defined, unfinished_cells

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td:nth-child(2) { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.note { color: #555; font-size: 0.9em; }
.error { color: #a00; }
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td><strong>{escape(c.text)}</strong></td>" if c.bold
                                    else f"<td>{escape(c.text)}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(title: str, draw, caption: str = "") -> str:
    """A figure with a text caption naming what it draws (readable without the image)."""
    try:
        png = draw()
    except Exception as exc:  # a broken figure must not lose the tables
        return f'<p class="error">{escape(title)}: could not draw ({escape(type(exc).__name__)}: {escape(str(exc))})</p>'
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    alt = f"{title}: {caption}" if caption else title
    note = f'<p class="note">{escape(caption)}</p>' if caption else ""
    return f'<h3>{escape(title)}</h3><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{note}'


# Logged keys drawn with the weights: the sampled alpha and the policy's mean alpha (ARKD).
ALPHA_KEYS = ("strategy/alpha", "strategy/alpha_expected")


def _is_weight_key(key: str) -> bool:
    return key.startswith("weight/") or key in ALPHA_KEYS


def _is_loss_key(key: str) -> bool:
    return key == "loss" or key.startswith("term/")


def _series(curves: dict[str, list[list[dict]]], wanted) -> str:
    keys = {label: sorted({k for log in logs for r in log for k in r if wanted(k)}) for label, logs in curves.items()}
    return "; ".join(f"{label}: {', '.join(k)}" for label, k in keys.items() if k)


def bar_intervals(results: dict[str, Any], metric: str, stats: list[dict]) -> list[tuple[float, float] | None]:
    """Each row's 95% interval of its mean, clipped to the metric's range as the tables are."""
    bounds = metric_bounds(results, metric)
    return [clip(s["low"], s["high"], bounds)[:2] if "low" in s else None for s in stats]


def _figures(results: dict[str, Any], dataset: str, logs: dict[str, list[dict]], view: View) -> list[str]:
    from arkd_bench.report import plots

    rows = [r for r in leaderboard_rows(results) if r.dataset == dataset]
    out = []
    measured = sorted({m for r in rows for m in r.metrics})
    for m in measured if view.metrics is None else [m for m in view.metrics if m in measured]:
        # the teacher is left out where the metric fixes its value (the teacher against itself)
        with_m = [r for r in rows if m in r.metrics and not teacher_defined(results, r, m)]
        stats = [r.metrics[m] for r in with_m]
        intervals = bar_intervals(results, m, stats)
        labels = [row_label(r, rows) for r in with_m]
        out.append(_image(f"{m} by method", lambda: plots.metric_bars(
            labels, [s["mean"] for s in stats], intervals, m, higher_is_better(results, m),
            reference=[r.kind in ("teacher", "sft", "echo", "constant") for r in with_m],
            bounds=metric_bounds(results, m)),
            "bars: " + ", ".join(labels)))
    curves = {row_label(r, rows): [logs[c] for c in r.cells if c in logs] for r in rows if r.kind == "distill"}
    curves = {k: v for k, v in curves.items() if v}
    out.append(_image("Weights and alpha over training", lambda: plots.trajectories(
        curves, _is_weight_key, "objective weights per method", "weight", unit_range=True),
        _series(curves, _is_weight_key)))
    out.append(_image("Training loss", lambda: plots.trajectories(
        curves, _is_loss_key, "loss and its terms per method", "loss"), _series(curves, _is_loss_key)))
    return out


def render_html(results: dict[str, Any], logs: dict[str, list[dict]], view: View | None = None) -> str:
    view = view or View()
    title = f"Leaderboard: {results['recipe']}"
    parts = [f"<h1>{escape(title)}</h1>"]
    for dataset in datasets(results):
        table = make_table(results, dataset, view)
        parts.append(f"<h2>{escape(dataset)}</h2>")
        parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in table.context) + "</ul>")
        parts.append(_table_html(table))
        parts.append(f'<p class="note">{escape("; ".join(table.key + ["full legend at the end"]))}.</p>')
        parts += _figures(results, dataset, logs, view)
    unfinished = unfinished_cells(results)
    if unfinished:
        parts.append("<h2>Failed or unfinished cells</h2><ul>")
        parts += [f"<li><code>{escape(c['id'])}</code> {escape(c['method'])} seed={c['seed']} {escape(c['status'])}: "
                  f"{escape(c.get('error') or '')}</li>" for c in unfinished]
        parts.append("</ul>")
    parts.append(f'<h2>Legend</h2><p class="note">{escape(legend(results))}</p>')
    body = "\n".join(p for p in parts if p)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
