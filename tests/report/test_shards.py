"""Shards of one grid, merged by `report`, give the leaderboard of the unsharded run."""
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins import load_plugins
from arkd_bench.report.rows import load

runner = CliRunner()


def test_two_shards_merge_into_the_unsharded_leaderboard(grid, run_tiny, tmp_path):
    recipe, whole, cache = grid
    shards = [tmp_path / "s1", tmp_path / "s2"]
    for i, out in enumerate(shards, 1):
        result = run_tiny(recipe, out, cache, "--shard", f"{i}/2")
        assert result.exit_code == 0, result.output
    assert all(any((s / "cells").iterdir()) for s in shards)
    plugins = load_plugins(autoload=False)
    merged, single = load(shards[::-1], plugins).results, load([whole], plugins).results
    assert merged["leaderboard"] == single["leaderboard"]
    strip = lambda cells: [{k: v for k, v in c.items() if k != "run"} for c in cells]  # noqa: E731
    assert strip(merged["cells"]) == strip(single["cells"])
    md_merged = runner.invoke(app, ["report", *map(str, shards)])
    md_single = runner.invoke(app, ["report", str(whole)])
    assert md_merged.exit_code == 0 and md_merged.output == md_single.output
