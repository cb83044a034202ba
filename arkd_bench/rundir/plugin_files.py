"""Plugin files kept in the run folder, so that `report` and `check` work from any directory
and on a folder that was moved or copied to another machine.

At the start of a run, `keep_plugin_files` copies every plugin file the run loaded (its
recipe's `plugins:` and the `--plugins-dir` files) to RUNDIR/plugins/ and returns one
record per plugin for run.json:

  {"name": "boom.py", "file": "plugins/boom.py", "source": "/abs/path/boom.py",
   "sha256": "...", "registers": {"weighting": ["boom"]}}

A package listed by its `__init__.py` is copied with the .py files of its folder (to
plugins/<package>/), and its sha256 covers all of them.

`find_plugin_files` finds them again: the run folder's copy first, then the original file,
then a `--plugins-dir` folder, each checked against the recorded sha256. Run folders written
before the copies existed are resolved from their recipe's `plugins:` list, as the run did.
What cannot be found is returned, not raised: only the command knows whether it needs it
(`report` needs a plugin for a metric's direction or for a reporter, not for a weighting).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from arkd_bench.rundir.atomic import atomic_write_bytes
from arkd_bench.rundir.integrity import sha256_file

PLUGINS_DIR = "plugins"
# How arkd_bench.plugins names the modules it imports from files (entry points and builtins
# keep their own names), so the --plugins-dir files of a run are found as well.
FILE_MODULE_PREFIX = "arkd_bench_plugin_"


def plugin_name(path: Path) -> str:
    """The name a plugin file is registered under (a package by its folder's name)."""
    return path.parent.name if path.name == "__init__.py" else path.name


def _package_files(init: Path) -> list[Path]:
    return sorted(p for p in init.parent.rglob("*.py") if "__pycache__" not in p.parts and p.is_file())


def plugin_digest(path: Path) -> str:
    """sha256 of a plugin file; of a package (`__init__.py`), over each .py file's relative
    path and content."""
    if path.name != "__init__.py":
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in _package_files(path):
        digest.update(file.relative_to(path.parent).as_posix().encode() + b"\0")
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def _file_plugins(plugins, listed: list[Path]) -> dict[str, Path]:
    """Registered name -> file of every plugin loaded from a file, then the listed files that
    did not load (a plugin skipped on an import error is kept too: it is what the run had)."""
    found: dict[str, Path] = {}
    for name, module in plugins.pm.list_name_plugin():
        file = getattr(module, "__file__", None)
        if file and getattr(module, "__name__", "").startswith(FILE_MODULE_PREFIX):
            found[name] = Path(file).resolve()
    for path in listed:
        found.setdefault(plugin_name(path), Path(path).resolve())
    return found


def registrations(plugins, name: str) -> dict[str, list[str]]:
    """kind -> the names the plugin `name` registered."""
    out = {kind: sorted(e.name for e in registry.entries() if e.origin == name)
           for kind, registry in plugins.registries.items()}
    return {kind: names for kind, names in out.items() if names}


def keep_plugin_files(run_dir: str | Path, plugins, listed: list[Path] = ()) -> list[dict[str, Any]]:
    """Copy the run's plugin files into RUNDIR/plugins/; their records for run.json."""
    run_dir = Path(run_dir)
    records = []
    for name, source in sorted(_file_plugins(plugins, list(listed)).items()):
        if not source.is_file():
            continue
        if source.name == "__init__.py":
            for file in _package_files(source):
                atomic_write_bytes(run_dir / PLUGINS_DIR / name / file.relative_to(source.parent), file.read_bytes())
            kept = f"{PLUGINS_DIR}/{name}/__init__.py"
        else:
            atomic_write_bytes(run_dir / PLUGINS_DIR / name, source.read_bytes())
            kept = f"{PLUGINS_DIR}/{name}"
        records.append({"name": name, "file": kept, "source": str(source), "sha256": plugin_digest(source),
                        "registers": registrations(plugins, name)})
    return records


def data_sources(loaded) -> dict[str, dict[str, Any]]:
    """Dataset name -> its source and the local files it reads, resolved to absolute paths
    (the content of each cell's data is recorded as `data_hash` in its provenance.json)."""
    from arkd_bench.data.base import resolve_path

    out = {}
    for spec in loaded.recipe.datasets:
        entry: dict[str, Any] = {"source": spec.source}
        try:
            files = loaded.plugins.create("dataset", spec.source, **spec.options).local_files()
        except Exception:  # noqa: BLE001 - validation already checked the options; this is a record only
            files = {}
        if files:
            entry["files"] = {option: str(resolve_path(path, loaded.base_dir).resolve())
                              for option, path in files.items()}
        out[spec.name] = entry
    return out


# -- finding them again ------------------------------------------------------------------

@dataclass
class MissingPlugin:
    """A plugin file of a run folder found nowhere."""

    run_dir: Path
    name: str
    registers: dict[str, list[str]] | None  # None: not recorded (a run folder older than the copies)
    looked_in: list[Path]

    def what(self) -> str:
        if self.registers is None:
            return "what it registers is not recorded"
        names = [f"{kind} {n!r}" for kind, found in self.registers.items() for n in found]
        return f"it registers {', '.join(names) or 'nothing'}"

    def where(self) -> str:
        return ", ".join(dict.fromkeys(str(p) for p in self.looked_in))


@dataclass
class FoundPlugins:
    files: dict[str, Path] = field(default_factory=dict)  # registered name -> file to load
    missing: list[MissingPlugin] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _records(run_dir: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's plugin records; for an older run folder, its recipe's `plugins:` list
    resolved as that run did (relative to the recipe's folder when `recipe_path` still
    points at it, else to the run folder), after RUNDIR/plugins/ where a user put a copy."""
    if isinstance(run.get("plugins"), list):
        return run["plugins"]
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}
    recipe_path = run.get("recipe_path")
    records = []
    for listed in recipe.get("plugins") or []:
        bases = ([Path(recipe_path).parent] if recipe_path else []) + [run_dir]
        name = plugin_name(Path(listed))
        kept = f"{PLUGINS_DIR}/{name}/__init__.py" if Path(listed).name == "__init__.py" else f"{PLUGINS_DIR}/{name}"
        records.append({"name": name, "file": kept, "candidates": [base / listed for base in bases],
                        "registers": None})
    return records


def _candidates(run_dir: Path, record: dict[str, Any], plugins_dirs: list[Path]) -> list[Path]:
    name = record["name"]
    tried = [run_dir / record["file"]] if record.get("file") else []
    tried += [Path(record["source"])] if record.get("source") else []
    tried += record.get("candidates", [])
    package = str(record.get("file") or record.get("source") or "").endswith("__init__.py")
    tried += [Path(d) / name / "__init__.py" if package else Path(d) / name for d in plugins_dirs]
    return tried


def find_plugin_files(run_dirs, plugins_dirs=()) -> FoundPlugins:
    """The plugin file of every plugin the runs were made with (one per name: the first run
    that has it), with warnings for files that differ from the one the run used."""
    plugins_dirs = [Path(d) for d in plugins_dirs]
    found = FoundPlugins()
    digests: dict[str, str] = {}
    for run_dir in map(Path, run_dirs):
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        for record in _records(run_dir, run):
            name, tried = record["name"], _candidates(run_dir, record, plugins_dirs)
            path = next((p for p in tried if p.is_file()), None)
            if path is None:
                found.missing.append(MissingPlugin(run_dir, name, record.get("registers"), [p.parent for p in tried]))
                continue
            digest = plugin_digest(path)
            if record.get("sha256") and digest != record["sha256"]:
                kept = record.get("file") and path == run_dir / record["file"]
                found.warnings.append(
                    f"{path}: {'changed since the run' if kept else 'not the file the run used'} "
                    f"(sha256 {digest[:12]}, the run recorded {record['sha256'][:12]}); loading it anyway")
            if name in found.files:
                if digests[name] != digest:
                    found.warnings.append(f"{run_dir}: plugin {name} differs from {found.files[name]}, "
                                          f"which is loaded for every run (one file per plugin name)")
                continue
            found.files[name], digests[name] = path, digest
    return found
