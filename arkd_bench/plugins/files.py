"""Single-file plugins: the `.py` files of a `--plugins-dir` folder or of a recipe's
`plugins:` list, imported as modules of their own."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from arkd_bench.plugins.errors import PluginsDirError

# What marks a folder as a Python package (or a distribution's root), not a folder of plugin files.
PACKAGE_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "__init__.py")


def plugin_name(path: Path) -> str:
    """The name a plugin file is registered under: a package's __init__.py is better known by
    its folder's name."""
    return path.parent.name if path.name == "__init__.py" else path.name


def import_file(path: Path):
    """The module of a plugin file, imported once per resolved path (the name is what
    `arkd_bench.rundir.plugin_files.FILE_MODULE_PREFIX` expects)."""
    module_name = f"arkd_bench_plugin_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def plugin_files_in(directory: str | Path) -> list[Path]:
    """The single-file plugins of a `--plugins-dir` folder: its `*.py` files, except those
    starting with `_`. A folder that is missing, a package (or a distribution's root) or
    has no plugin file is a PluginsDirError saying what was expected."""
    directory = Path(directory)
    if not directory.exists():
        raise PluginsDirError(f"--plugins-dir {directory}: no such folder")
    if not directory.is_dir():
        raise PluginsDirError(f"--plugins-dir {directory}: not a folder; give the folder that holds the plugin "
                              f".py files (one file can be listed in a recipe's `plugins:`)")
    markers = [name for name in PACKAGE_MARKERS if (directory / name).is_file()]
    if markers:
        raise PluginsDirError(f"--plugins-dir {directory}: {_package_advice(directory, markers)}")
    files = sorted(p for p in directory.glob("*.py") if not p.name.startswith("_") and p.is_file())
    if not files:
        packages = sorted(p.name for p in directory.iterdir()
                          if p.is_dir() and any((p / name).is_file() for name in PACKAGE_MARKERS))
        inside = (f"; it holds the package(s) {', '.join(packages)}: `pip install -e` a package instead"
                  if packages else "")
        raise PluginsDirError(f"--plugins-dir {directory}: no plugin files (*.py not starting with '_') in it{inside}")
    return files


def _package_advice(directory: Path, markers: list[str]) -> str:
    """What to do with a package folder given as `--plugins-dir`."""
    expected = (f"a Python package (it has {' and '.join(markers)}), but --plugins-dir expects a folder of "
                "single-file .py plugins")
    dists = [d for d in (directory, directory.parent)
             if any((d / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg"))]
    if dists:
        return (f"{expected}; install the package with `pip install -e {dists[0]}` (its `arkd_bench` "
                "entry point makes every command see it)")
    return (f"{expected}; list {directory / '__init__.py'} in a recipe's `plugins:`, or give the package a "
            "pyproject.toml with an `arkd_bench` entry point and `pip install -e` it (`arkd-bench new-plugin` writes one)")
