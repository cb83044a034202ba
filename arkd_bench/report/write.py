"""Writing the reports every run leaves in its folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from arkd_bench.report.rows import load
from arkd_bench.rundir.store import atomic_write_json, atomic_write_text


def write_run_reports(run_dir: str | Path, plugins) -> dict[str, Any]:
    """results.json, leaderboard.md and report.html in the run folder (every run writes all three)."""
    run_dir = Path(run_dir)
    results = load([run_dir], plugins).results
    atomic_write_json(run_dir / "results.json", results)
    atomic_write_text(run_dir / "leaderboard.md", plugins.create("reporter", "md").render(results))
    atomic_write_text(run_dir / "report.html", plugins.create("reporter", "html").render(results))
    return results
