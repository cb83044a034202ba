"""Loading the plugins a run folder was made with, for the commands that read runs.

A run folder keeps copies of its plugin files (`arkd_bench.rundir.plugin_files`), so this
works from any directory and on a moved folder. A plugin found nowhere is an error only
where it is needed: for the direction of a metric the runs measured, or for the reporter
asked for. A training-side plugin (weighting, divergence, data policy, dataset) is not
needed to read results, so its absence is a warning.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arkd_bench.cli.common import err, fail, usage_error


@dataclass
class RunPlugins:
    plugins: object  # arkd_bench.plugins.Plugins
    missing: list  # [rundir.plugin_files.MissingPlugin]
    metrics: list[str]  # the metrics the runs' recipes measure

    def require(self, command: str, reporter: str | None = None):
        """The plugins, after exiting 1 when a missing plugin file is needed for a metric's
        direction or for `reporter`; every other missing plugin is a warning. For a run folder
        that did not record what its plugins register, a metric no loaded plugin registers
        counts as needing each of its missing plugins."""
        unregistered = [m for m in self.metrics if m not in self.plugins.registry("metric")]
        needed = []
        for missing in self.missing:
            if missing.registers is not None:
                needs = [f"the direction of metric {m!r}" for m in missing.registers.get("metric", [])
                         if m in self.metrics]
                if reporter is not None and reporter in missing.registers.get("reporter", []):
                    needs.append(f"the reporter {reporter!r}")
            else:
                needs = [f"the direction of metric {m!r}, which no loaded plugin registers (it may come from "
                         "this one)" for m in unregistered]
            where = (f"plugin {missing.name} of run folder {missing.run_dir} ({missing.what()}) was not found "
                     f"(looked in {missing.where()})")
            if needs:
                needed.append(f"{where}; {command} needs it for {' and '.join(needs)}")
            else:
                err.print(f"warning: {where}; {command} does not need it, so it is skipped", markup=False)
        if needed:
            fail("\n".join(needed) + "\nput each file back in its run folder's plugins/ folder, or pass its folder "
                                     "with --plugins-dir")
        return self.plugins


def run_plugins_or_exit(run_dirs: list[Path], plugins_dir: list[Path] | None = None) -> RunPlugins:
    """The plugins the runs were made with (the copies in each run folder, else the files
    their recipes listed) plus `--plugins-dir`; a plugin file that cannot load exits 1, a
    bad `--plugins-dir` exits 2. Call `require` before using them."""
    import yaml

    from arkd_bench import plugins as plugin_module
    from arkd_bench.plugins.registry import RegistryError
    from arkd_bench.report.read import metric_names
    from arkd_bench.rundir.plugin_files import find_plugin_files

    dirs_error = getattr(plugin_module, "PluginsDirError", ())
    try:
        found = find_plugin_files(run_dirs, plugins_dir or [])
        dir_files = [path for directory in plugins_dir or [] for path in plugin_module.plugin_files_in(directory)]
        loaded = plugin_module.load_plugins([*found.files.values(),
                                             *(p for p in dir_files if p.name not in found.files)])
        metrics: list[str] = []
        for run_dir in run_dirs:
            recipe = yaml.safe_load((Path(run_dir) / "recipe.yaml").read_text(encoding="utf-8")) or {}
            metrics += [m for m in metric_names(recipe) if m and m not in metrics]
    except dirs_error as exc:
        usage_error(str(exc))
    except (plugin_module.PluginLoadError, RegistryError, OSError, ValueError, yaml.YAMLError) as exc:
        fail(str(exc))
    for warning in found.warnings:
        err.print(f"warning: {warning}", markup=False)
    for failure in loaded.failures:
        err.print(f"warning: {failure}", markup=False)
    return RunPlugins(loaded, found.missing, metrics)
