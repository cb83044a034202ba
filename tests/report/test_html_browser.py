"""The HTML report rendered by a real headless Chromium (scripts/render_in_browser.py):
what a reader sees holds the labels of a merge, and every plot decodes."""
import importlib.util
from pathlib import Path

import pytest

from arkd_bench.report.html import render_html

from test_html_labels import merged_results

SCRIPT = Path(__file__).parent.parent.parent / "scripts" / "render_in_browser.py"
spec = importlib.util.spec_from_file_location("render_in_browser", SCRIPT)
browser_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser_script)
BROWSER = browser_script.find_browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (apt-get install chromium)")


@needs_browser
def test_rendered_merged_report_names_each_teacher_student_and_alpha(tmp_path):
    page_file = tmp_path / "merged.html"
    page_file.write_text(render_html(*merged_results()), encoding="utf-8")
    page = browser_script.render(page_file, BROWSER)
    assert page["images"] == 3 and page["broken_images"] == 0
    lines = page["text"].splitlines()
    assert ("bars: teacher [t-small], teacher [t-large], sft [t-small -> s-small], sft [t-large -> s-large], "
            "arkd [t-small -> s-small]") in lines
    assert "arkd [t-small -> s-small]: strategy/alpha, strategy/alpha_expected, weight/fkl, weight/rkl" in lines
    table = [l.split("\t") for l in lines if "\t" in l]
    assert table[0][:4] == ["rank (rougeL)", "method", "teacher", "student"]
    assert [r[:4] for r in table[1:]] == [["-", "teacher", "t-small", "-"], ["-", "teacher", "t-large", "-"],
                                          ["2", "sft", "t-small", "s-small"], ["1", "sft", "t-large", "s-large"],
                                          ["1", "arkd", "t-small", "s-small"]]


@needs_browser
def test_a_real_run_report_renders_with_its_plots(grid):
    _, run, _ = grid
    page = browser_script.render(run / "report.html", BROWSER)
    assert page["broken_images"] == 0 and page["images"] >= 2
    assert "Leaderboard: tiny" in page["text"] and "mix: weight/fkl, weight/rkl" in page["text"]
