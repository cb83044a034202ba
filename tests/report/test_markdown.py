"""The leaderboard table from hand-built results: rank, bold, direction, significance, failures."""
import pytest

from arkd_bench.report.markdown import render_markdown
from arkd_bench.report.rows import add_ranks, adjust_comparisons


def row(method, kind="distill", vs=None, failed=0, **metrics):
    return {"dataset": "d", "teacher": "t", "student": None if kind == "teacher" else "s", "method": method,
            "label": method, "kind": kind, "failed": failed, "pending": 0, "cells": [], "recipes": ["hand"],
            "metrics": {m: {"mean": v[0], "std": v[1], "n": v[2]} for m, v in metrics.items()},
            "vs_reference": vs or {}}


def results(rows, cells=(), lower=()):
    res = {"recipe": "hand", "runs": [], "cells": list(cells), "leaderboard": rows, "reference": "sft",
           "comparisons": 2, "primary_metric": "rougeL",
           "metric_info": {m: {"higher_is_better": m not in lower} for r in rows for m in r["metrics"]},
           "eval_settings": [{"dataset": "d", "recipe": "hand", "seeds": [0, 1], "examples": 50,
                              "generation": {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                                             "max_new_tokens": 64},
                              "generation_seeds": [10, 20], "metrics": {"rougeL": {"package": "rouge-score",
                                                                                   "version": "0.1.2"}}}]}
    add_ranks(res)
    return res


def line_of(markdown, method):
    return next(l for l in markdown.splitlines() if f"| {method} |" in l or f"| {method} (" in l)


def comparison(diff, low, high, p):
    return {"rougeL": {"reference": "sft", "diff": diff, "low": low, "high": high, "p_value": p, "n_examples": 50}}


def test_rank_bold_best_and_baselines():
    md = render_markdown(results([
        row("teacher", "teacher", rougeL=(50.0, 0.0, 1)), row("sft", "sft", rougeL=(20.0, 1.0, 2)),
        row("a", rougeL=(30.0, 1.5, 2)), row("b", rougeL=(25.0, 0.5, 2)), row("c", rougeL=(25.0, 2.0, 2))]))
    assert "| rank (rougeL) | method | seeds | rougeL ↑ | ΔrougeL vs sft [95% CI] |" in md
    assert line_of(md, "teacher").startswith("| - | teacher | 1 | 50.00 |")  # a bound: not ranked, not bold
    assert line_of(md, "a").startswith("| 1 | a | 2† | **30.00 ± 1.50** |")  # 2 seeds: low power
    assert line_of(md, "b").startswith("| 2 | b | 2† | 25.00 ± 0.50 |")
    assert line_of(md, "c").startswith("| 2 | c |")  # ties share a rank
    assert line_of(md, "sft").startswith("| 4 | sft |")
    assert sum(l.count("**") for l in md.splitlines() if l.startswith("|")) == 2


def test_lower_is_better_metric_ranks_and_bolds_the_smallest():
    md = render_markdown(results([row("a", ppl=(12.0, 0.0, 1)), row("b", ppl=(9.5, 0.0, 1))], lower={"ppl"}))
    assert "ppl ↓" in md
    assert line_of(md, "b").startswith("| 1 | b | 1† | **9.50** |")  # one seed: no ± std
    assert line_of(md, "a").startswith("| 2 | a | 1† | 12.00 |")


def test_significance_marks_need_p_and_an_interval_excluding_zero():
    md = render_markdown(results([
        row("sft", "sft", rougeL=(20.0, 0.0, 1)),
        row("strong", vs=comparison(2.0, 1.0, 3.0, 0.004), rougeL=(22.0, 0.0, 1)),
        row("weak", vs=comparison(-1.0, -1.8, -0.2, 0.03), rougeL=(19.0, 0.0, 1)),
        row("noisy", vs=comparison(1.0, -0.5, 2.5, 0.03), rougeL=(21.0, 0.0, 1)),
        row("null", vs=comparison(0.5, -1.0, 2.0, 0.4), rougeL=(20.5, 0.0, 1))]))
    assert line_of(md, "strong").endswith("| +2.0 [+1.0, +3.0]** |")  # half-width 1: one decimal
    assert line_of(md, "weak").endswith("| -1.00 [-1.80, -0.20]* |")  # half-width 0.8: two
    assert line_of(md, "noisy").endswith("| +1.0 [-0.5, +2.5] |")
    assert line_of(md, "null").endswith("| +0.5 [-1.0, +2.0] |")
    assert line_of(md, "sft").endswith("| - |")


def test_settings_above_the_table_and_failed_cells_listed():
    failed_cell = {"id": "abcdef012345", "kind": "distill", "dataset": "d", "teacher": "t", "student": "s",
                   "method": "a", "seed": 1, "status": "failed", "error": "RuntimeError: out of memory", "metrics": {}}
    md = render_markdown(results([row("a", failed=1, rougeL=(30.0, 0.0, 1))], cells=[failed_cell]))
    assert "# Leaderboard: hand" in md
    assert ("- recipe `hand`: training seeds 0, 1; 50 test examples; generation: sampling (temperature 1.0, "
            "top_p 1.0, top_k 0), generation seeds 10, 20; max_new_tokens 64; metrics: rougeL (rouge-score 0.1.2)") in md
    assert line_of(md, "a").startswith("| 1 | a (1 failed) |")
    assert "## Failed or unfinished cells" in md
    assert "- `abcdef012345` a seed=1 [d/t->s] failed: RuntimeError: out of memory" in md


def test_students_of_two_architectures_are_ranked_and_bolded_separately():
    small = [row("teacher", "teacher", rougeL=(50.0, 0.0, 1)), row("a", rougeL=(30.0, 0.0, 1)),
             row("b", rougeL=(20.0, 0.0, 1))]
    large = [{**r, "student": "big", "label": r["label"]} for r in
             (row("a", rougeL=(40.0, 0.0, 1)), row("b", rougeL=(45.0, 0.0, 1)))]
    res = results(small + large)
    ranks = {(r["student"], r["method"]): r["rank"].get("rougeL") for r in res["leaderboard"]}
    assert ranks == {(None, "teacher"): None, ("s", "a"): 1, ("s", "b"): 2, ("big", "a"): 2, ("big", "b"): 1}
    md = render_markdown(res)
    assert "| rank (rougeL) | method | student |" in md
    bold = [l for l in md.splitlines() if l.startswith("|") and "**" in l]
    assert len(bold) == 2 and any("| s |" in l and "**30.00**" in l for l in bold) and \
        any("| big |" in l and "**45.00**" in l for l in bold)


def test_row_labels_name_what_varies_in_a_merge():
    from arkd_bench.report.rows import Row
    from arkd_bench.report.table import row_label

    rows = [Row.from_dict(r) for r in (row("teacher", "teacher"), {**row("teacher", "teacher"), "teacher": "t2"},
                                       row("sft", "sft"))]
    assert [row_label(r, rows) for r in rows] == ["teacher [t]", "teacher [t2]", "sft [t -> s]"]
    assert row_label(rows[2], rows[2:]) == "sft"
    other = Row.from_dict({**row("sft", "sft"), "dataset": "e"})
    assert row_label(other, [rows[2], other]) == "sft [e]"


def test_the_table_says_above_it_which_variance_its_intervals_cover():
    one_seed = render_markdown(results([row("sft", "sft", rougeL=(20.0, 0.0, 1)), row("a", rougeL=(22.0, 0.0, 1))]))
    note = "- one training seed: intervals and p-values cover test-example variance only, not training-seed variance"
    head, table = one_seed.split("| rank", 1)
    assert note in head and note not in table
    seeds = render_markdown(results([row("teacher", "teacher", rougeL=(50.0, 0.0, 1)),
                                     row("sft", "sft", rougeL=(20.0, 1.0, 3)), row("a", rougeL=(22.0, 1.0, 3))]))
    two_levels = ("- intervals and p-values cover training seeds and test examples (two levels, each with "
                  "Student's t at its own degrees of freedom)")
    assert two_levels + "\n" in seeds
    assert "cover test-example variance only" not in seeds  # the teacher is one model, not a one-seed student
    pooled = comparison(1.0, -2.0, 4.0, 0.3)
    pooled["rougeL"]["seed_variance"] = "pooled"
    mixed = render_markdown(results([row("sft", "sft", rougeL=(20.0, 1.0, 3)),
                                     row("a", vs=pooled, rougeL=(22.0, 0.0, 1))]))
    assert ("rows with one training seed (a) take the seed variance pooled over the multi-seed rows of their "
            "teacher and student, assuming methods share it (‡)") in mixed
    assert line_of(mixed, "a").endswith("| +1.0 [-2.0, +4.0]‡ |")
    alone = render_markdown(results([row("sft", "sft", rougeL=(20.0, 1.0, 3)), row("a", rougeL=(22.0, 0.0, 1))]))
    assert "rows with one training seed (a) have no seed variance to borrow: their intervals cover test examples only" \
        in alone
    # merged runs repeating one seed: the cells are two, the seeds one, and the note says so
    repeated = [dict(row("sft", "sft", rougeL=(20.0, 0.0, 1)), seeds=[0]),
                dict(row("a", rougeL=(22.0, 0.0, 1)), seeds=[0])]
    md = render_markdown(results(repeated))
    assert "- one training seed: intervals and p-values cover test-example variance only" in md
    assert "two levels" not in md.split("| rank", 1)[0].split("## d", 1)[1]
    assert line_of(md, "a").startswith("| 1 | a | 1† |")


def test_low_power_rows_are_marked_and_the_legend_says_why():
    md = render_markdown(results([row("teacher", "teacher", rougeL=(50.0, 0.0, 1)),
                                  row("sft", "sft", rougeL=(20.0, 1.0, 3)), row("a", rougeL=(22.0, 1.0, 2)),
                                  dict(row("b", rougeL=(21.0, 1.0, 5)), seeds=[0, 1, 2, 3, 4])]))
    assert "† fewer than 3 training seeds: low power" in md
    assert line_of(md, "a").startswith("| 1 | a | 2† |")
    assert line_of(md, "sft").startswith("| 3 | sft | 3 |") and line_of(md, "b").startswith("| 2 | b | 5 |")
    assert line_of(md, "teacher").startswith("| - | teacher | 1 |")  # a bound, not a low-power student


def test_adjustment_sets_the_stars_and_the_table_says_which():
    def build(method):
        res = results([row("sft", "sft", rougeL=(20.0, 0.0, 3)),
                       row("a", vs=comparison(2.0, 1.0, 3.0, 0.008), rougeL=(22.0, 0.0, 3)),
                       row("b", vs=comparison(1.0, 0.2, 1.8, 0.03), rougeL=(21.0, 0.0, 3)),
                       row("c", vs=comparison(0.5, -1.0, 2.0, 0.4), rougeL=(20.5, 0.0, 3))])
        adjust_comparisons(res, method)
        return res, render_markdown(res)

    stars = {}
    for method in ("none", "holm", "bonferroni"):
        res, md = build(method)
        stars[method] = tuple(line_of(md, m).rsplit("]", 1)[1].rstrip(" |") for m in "abc")
        assert res["adjustment"] == {"method": method, "family": "table", "comparisons": {"d": 3}}
    assert stars == {"none": ("**", "*", ""), "holm": ("*", "", ""), "bonferroni": ("*", "", "")}
    res, md = build("holm")
    assert [r["vs_reference"]["rougeL"]["p_adjusted"] for r in res["leaderboard"][1:]] == \
        pytest.approx([0.024, 0.06, 0.4])
    assert "- stars: Holm-adjusted p-values over this table's 3 comparisons" in md
    assert "Holm-adjusted for the number of comparisons in each table" in md
    _, md = build("none")
    assert "- stars: unadjusted p-values (3 comparisons in this table)" in md
    _, md = build("bonferroni")
    assert "- stars: Bonferroni-adjusted p-values over this table's 3 comparisons" in md


def test_small_differences_get_the_digits_they_need():
    md = render_markdown(results([row("sft", "sft", kl=(0.5, 0.0, 3)),
                                  row("a", vs={"kl": {"reference": "sft", "diff": -0.0042, "low": -0.0061,
                                                      "high": -0.0023, "p_value": 0.001, "n_examples": 50}},
                                      kl=(0.4958, 0.0, 3))], lower={"kl"}))
    assert line_of(md, "a").endswith("| -0.0042 [-0.0061, -0.0023]** |")


@pytest.mark.parametrize("teacher_score, warned", [(10.5, True), (14.6, True), (14.7, False)])
def test_a_teacher_at_or_below_a_trivial_baseline_is_said_above_the_table(teacher_score, warned):
    md = render_markdown(results([
        row("teacher", "teacher", rougeL=(teacher_score, 0.0, 1)), row("sft", "sft", rougeL=(9.0, 1.0, 2)),
        row("echo", "echo", rougeL=(14.6, 0.0, 1)), row("constant", "constant", rougeL=(10.46, 0.0, 1))]))
    line = "- **the teacher does not beat the trivial baselines** on rougeL (t "
    assert (line in md) is warned
    if warned:
        assert f"t {teacher_score:.2f} against echo 14.60" in md
        assert md.index(line) < md.index("| rank (rougeL)")


def test_a_lower_is_better_metric_warns_when_the_teacher_is_higher():
    md = render_markdown(results([row("teacher", "teacher", ppl=(30.0, 0.0, 1)),
                                  row("constant", "constant", ppl=(25.0, 0.0, 1))], lower={"ppl"}))
    assert "does not beat the trivial baselines** on ppl (t 30.00 against constant 25.00)" in md
