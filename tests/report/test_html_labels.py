"""The HTML report of a merge labels what it merges, and keeps coinciding lines visible."""
import base64
import io
import re

from arkd_bench.report.html import render_html
from arkd_bench.report.rows import add_ranks


def row(method, kind, teacher, student, value, cells=()):
    return {"dataset": "d", "teacher": teacher, "student": student, "method": method, "label": method, "kind": kind,
            "failed": 0, "pending": 0, "cells": list(cells), "recipes": ["r"],
            "metrics": {"rougeL": {"mean": value, "std": 0.0, "n": 1, "low": value - 1, "high": value + 1}},
            "vs_reference": {}}


def merged_results():
    """Two grids merged: teachers t-small and t-large, each with its student; an ARKD row
    whose weight/fkl is its sampled alpha, next to the policy's mean alpha."""
    rows = [row("teacher", "teacher", "t-small", None, 30.0), row("teacher", "teacher", "t-large", None, 40.0),
            row("sft", "sft", "t-small", "s-small", 20.0), row("sft", "sft", "t-large", "s-large", 25.0),
            row("arkd", "distill", "t-small", "s-small", 22.0, ["c1"])]
    results = {"recipe": "a, b", "runs": [], "cells": [], "leaderboard": rows, "reference": "sft", "comparisons": 0,
               "primary_metric": "rougeL", "metric_info": {"rougeL": {"higher_is_better": True}}, "eval_settings": []}
    add_ranks(results)
    log = [{"step": s, "loss": 1.0 / s, "weight/fkl": 0.3 + 0.01 * s, "weight/rkl": 0.7 - 0.01 * s,
            "strategy/alpha": 0.3 + 0.01 * s, "strategy/alpha_expected": 0.5} for s in range(1, 11)]
    return results, {"c1": log}


def text_of(html):
    return re.sub(r"<[^>]+>", " ", html)


def test_baseline_bars_and_panels_carry_their_teacher_and_student():
    html = render_html(*merged_results())
    text = text_of(html)
    assert "bars: teacher [t-small], teacher [t-large], sft [t-small -&gt; s-small], " \
           "sft [t-large -&gt; s-large], arkd [t-small -&gt; s-small]" in text
    assert "arkd [t-small -&gt; s-small]: strategy/alpha, strategy/alpha_expected, weight/fkl, weight/rkl" in text


def test_a_line_drawn_over_another_stays_visible(monkeypatch):
    import matplotlib.axes

    from arkd_bench.report import plots

    log = merged_results()[1]["c1"]
    recorded, real_plot = [], matplotlib.axes.Axes.plot

    def recording_plot(self, *args, **kwargs):  # the real plot, with its style kept for the test
        recorded.append(kwargs)
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    png = plots.trajectories({"arkd": [log]}, lambda k: k.startswith(("weight/", "strategy/")), "t", "w",
                             unit_range=True)
    assert png.startswith(b"\x89PNG")
    styles = {k["label"]: (k["linestyle"], k["linewidth"], k["marker"]) for k in recorded}
    assert set(styles) == {"weight/fkl", "weight/rkl", "strategy/alpha", "strategy/alpha_expected"}
    assert len(set(styles.values())) == 4  # no two keys share dash, width and marker
    # the later-drawn alpha is thinner than weight/fkl under it, so both show
    assert styles["strategy/alpha"][1] < styles["weight/fkl"][1]


def test_the_png_of_the_weights_is_embedded():
    html = render_html(*merged_results())
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    from matplotlib.image import imread

    assert imread(io.BytesIO(base64.b64decode(images[1])), format="png").shape[0] > 100


def test_the_alpha_keys_plotted_are_the_ones_arkd_logs():
    from arkd_bench.report.html import ALPHA_KEYS
    from arkd_bench.testing import fake_features
    from arkd_bench.weighting import ArkdWeighting

    strategy = ArkdWeighting()
    strategy.weights(fake_features())
    logged = {f"strategy/{key}" for key in strategy.log_scalars()}
    assert set(ALPHA_KEYS) <= logged
