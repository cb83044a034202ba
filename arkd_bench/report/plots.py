"""Figures for the HTML report, drawn with matplotlib's Agg canvas (no pyplot, no display).

Each function returns PNG bytes. pyplot is avoided on purpose: it keeps global state and
picks a GUI backend, neither of which a report written at the end of a run should touch.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable

# method label -> one training log per seed
Curves = dict[str, list[list[dict]]]
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "x", "+", "^")


def _figure(n_panels: int, width: float = 10.0, panel_height: float = 2.6, columns: int = 3):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, n_panels))
    rows = math.ceil(n_panels / columns)
    fig = Figure(figsize=(width, panel_height * rows + 0.6), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def trajectories(curves: Curves, wanted: Callable[[str], bool], title: str, ylabel: str,
                 unit_range: bool = False) -> bytes | None:
    """One panel per method; one colour per logged key, one line per seed (later seeds fainter).
    `unit_range` pins the y axis to [0, 1] when every value lies there (weights), so a
    constant 0.5 does not fill the panel."""
    from matplotlib.ticker import MaxNLocator

    panels = {label: logs for label, logs in curves.items()
              if any(wanted(k) for log in logs for record in log for k in record)}
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    fig.suptitle(title)
    for ax, (label, logs) in zip(axes, panels.items()):
        keys = list(dict.fromkeys(k for log in logs for record in log for k in record if wanted(k)))
        for color, key in enumerate(keys):
            # Keys can coincide (weight/fkl is alpha itself): each gets its own dash, marker
            # and a thinner line than the one before, so a line drawn over another stays visible.
            style = {"color": f"C{color}", "linestyle": LINESTYLES[color % len(LINESTYLES)],
                     "linewidth": max(3.2 - 0.8 * color, 1.0)}
            for seed, log in enumerate(logs):
                points = [(r["step"], r[key]) for r in log if key in r and r[key] is not None]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, **style, alpha=0.9 if seed == 0 else 0.4, label=key if seed == 0 else None,
                            marker=MARKERS[color % len(MARKERS)] if len(xs) < 30 else None, markersize=4)
        values = [r[k] for log in logs for r in log for k in keys if isinstance(r.get(k), (int, float))]
        if unit_range and values and 0.0 <= min(values) and max(values) <= 1.0:
            ax.set_ylim(-0.05, 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    return _png(fig)


def metric_bars(labels: list[str], means: list[float], intervals: list[tuple[float, float] | None],
                metric: str, higher_is_better: bool, reference: list[bool] | None = None,
                bounds: tuple[float | None, float | None] = (None, None)) -> bytes:
    """Bars of each row's mean with its 95% interval as error bars (over training seeds and
    test examples for a row with 2+ seeds or a one-seed row given its grid's pooled seed
    variance, over test examples otherwise); `reference` rows (teacher, SFT, trivial
    baselines) in grey. Give intervals clipped to the metric's `bounds`; the y axis stops at
    them too, so a 0-100 score's bars never reach below 0."""
    reference = reference or [False] * len(labels)
    fig, (ax,) = _figure(1, width=max(5.0, 1.0 + 0.9 * len(labels)), panel_height=3.2)
    below = [m - iv[0] if iv else 0.0 for m, iv in zip(means, intervals)]
    above = [iv[1] - m if iv else 0.0 for m, iv in zip(means, intervals)]
    ax.bar(range(len(labels)), means, yerr=[below, above], capsize=4,
           color=["C7" if ref else "C0" for ref in reference])
    low, high = bounds
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom if low is None else max(bottom, low), top if high is None else min(top, high))
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_title(f"{metric}: mean and 95% interval (seeds x examples; one-seed rows: see the notes)", fontsize=10)
    return _png(fig)
