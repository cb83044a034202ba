"""Loading the plugins a run folder was made with, for the commands that read runs."""
from __future__ import annotations

from pathlib import Path

from arkd_bench.cli.common import err, fail


def run_plugins_or_exit(run_dirs: list[Path], plugins_dir: list[Path] | None = None):
    """The plugins the runs were made with (their recipes' `plugins:` and `--plugins-dir`),
    so a plugin metric is ranked in its own direction; a plugin that cannot load exits 1."""
    from arkd_bench.plugins import PluginLoadError, load_run_plugins
    from arkd_bench.registry import RegistryError

    try:
        loaded = load_run_plugins(run_dirs, plugins_dir or [])
    except (PluginLoadError, RegistryError) as exc:
        fail(str(exc))
    for failure in loaded.failures:
        err.print(f"warning: {failure}", markup=False)
    return loaded
