"""The `hf` source: anything Hugging Face `datasets` reads, with the field mapping, presets,
templates, filters, dedup and splits of `jsonl` (both feed `records.prepare`/`assemble`).

Options named as `datasets.load_dataset`'s arguments: `path` (a hub name such as
`databricks/databricks-dolly-15k`, or a builder such as `json`, `csv`, `parquet`, `arrow`
with `data_files`), `name`, `data_files`, `split` and `revision`. `path` may also be a local
data file, e.g. `data/train.parquet` (`.parquet`, `.json`/`.jsonl`, `.csv`, `.arrow`, read by
the builder its suffix names, as the split `train`), or a local folder: one written by
`Dataset.save_to_disk` (or `DatasetDict.save_to_disk`) is read with `load_from_disk`, any
other by `load_dataset` (splits from the file names). Local paths resolve against the
recipe's folder. `split` is the split the examples come from; `valid_split`/`test_split`
name the dataset's own evaluation splits, and a split not named is carved from `split` with
`split_seed`, exactly as `jsonl` carves one from its `path`.

`check` reads what local data says about itself (a parquet or arrow schema, a csv header,
json keys, a saved dataset's features), not the data: `validate` reports a missing file, a
missing split or a field the mapping names but the data lacks once, before any cell runs.

`datasets` is an optional extra: `pip install 'arkd-bench[datasets]'`.
"""
from __future__ import annotations

import csv
import json
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import Field, model_validator

from arkd_bench.data.base import DataError, DatasetSource, DatasetSplits, resolve_path
from arkd_bench.data.records import (
    PRESETS,
    Record,
    RecordOptions,
    assemble,
    format_counts,
    prepare,
)

INSTALL_HINT = "pip install 'arkd-bench[datasets]'"
# Files `save_to_disk` writes: a Dataset folder has state.json, a DatasetDict folder dataset_dict.json.
SAVED_MARKERS = ("state.json", "dataset_dict.json")
GLOB_CHARS = set("*?[")
# A local data file's suffix names the `datasets` builder that reads it.
BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}
# Packaged builders: `path: json` is one of these, never a folder that happens to be called so.
PACKAGED = {"json", "csv", "parquet", "arrow", "text", "pandas", "sql", "webdataset", "imagefolder",
            "audiofolder", "videofolder", "generator"}
# json keys are read by parsing the file; beyond this size the field check is left to the run.
MAX_JSON_SCAN = 64 << 20

DataFiles = str | list[str] | dict[str, str | list[str]]


class HfOptions(RecordOptions):
    path: str = Field(description="hub dataset name; a builder (json, csv, parquet, arrow) with data_files; a local "
                                  "data file (.parquet, .json, .jsonl, .csv, .arrow) or folder (save_to_disk's, or "
                                  "one of data files); local paths resolve against the recipe")
    name: str | None = Field(None, description="the dataset's configuration name")
    data_files: DataFiles | None = Field(
        None, description="file(s) for a builder: one path, a list, or {split: path(s)}; relative to the recipe")
    split: str = Field("train", description="the split the examples come from")
    valid_split: str | None = Field(None, description="the dataset's own validation split (else carved from split)")
    test_split: str | None = Field(None, description="the dataset's own test split (else carved from split)")
    revision: str | None = Field(None, description="hub commit, tag or branch; pin it for reproducible data")

    @model_validator(mode="after")
    def _distinct_splits(self):
        named = [s for s in (self.split, self.valid_split, self.test_split) if s is not None]
        if len(set(named)) != len(named):
            raise ValueError(f"split, valid_split and test_split must differ, got {named}")
        return self


def import_datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(f"source hf needs the Hugging Face `datasets` package, which is not installed: "
                        f"{INSTALL_HINT}") from None
    return datasets


@contextmanager
def quiet_datasets(datasets) -> Iterator[None]:
    """No progress bars or info logs from `datasets` (or the hub client it downloads with) while
    reading: a run's own bars say what runs. Restored afterwards; an explicit
    HF_DATASETS_DISABLE_PROGRESS_BARS=0 still wins."""
    from huggingface_hub import utils as hub_utils

    logging = datasets.utils.logging
    datasets_bars = not datasets.are_progress_bars_disabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    verbosity = logging.get_verbosity()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # datasets warns when its environment variable asks for bars
        datasets.disable_progress_bars()
        hub_utils.disable_progress_bars()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if datasets_bars:
                datasets.enable_progress_bars()
            if hub_bars:
                hub_utils.enable_progress_bars()


def _local(path: str, base_dir: Path | None) -> Path | None:
    """The local file or folder `path` names, resolved against the recipe; None for a hub name or
    a builder. Local: spelled as a path (./x, ../x, /x, ~/x), ending in a data file's suffix, or
    existing; as in `load_dataset`, an existing local folder wins over a hub name."""
    if path in PACKAGED:
        return None
    resolved = resolve_path(path, base_dir)
    if path.startswith(("/", "./", "../", "~")) or Path(path).suffix.lower() in BUILDERS or resolved.exists():
        return resolved
    return None


def _is_saved(folder: Path) -> bool:
    return folder.is_dir() and any((folder / marker).exists() for marker in SAVED_MARKERS)


def _resolve_files(files: DataFiles, base_dir: Path | None) -> DataFiles:
    def one(path: str) -> str:
        return str(resolve_path(path, base_dir))

    if isinstance(files, str):
        return one(files)
    if isinstance(files, list):
        return [one(f) for f in files]
    return {split: one(f) if isinstance(f, str) else [one(x) for x in f] for split, f in files.items()}


def _flat_files(files: DataFiles | None) -> list[str]:
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    if isinstance(files, list):
        return list(files)
    return [f for value in files.values() for f in ([value] if isinstance(value, str) else value)]


class HfSource(DatasetSource):
    """Data read by Hugging Face `datasets`, mapped like `jsonl`."""

    name = "hf"
    Options = HfOptions

    def local_files(self) -> dict[str, str]:
        opts: HfOptions = self.options
        # Globs are left to `datasets` (which says when one matches nothing).
        files = {f"data_files[{i}]": f for i, f in enumerate(_flat_files(opts.data_files))
                 if not GLOB_CHARS & set(f)}
        if Path(opts.path).suffix.lower() in BUILDERS and opts.path not in PACKAGED:
            files["path"] = opts.path  # a data file; a local folder is checked by local_problems
        return files

    def local_problems(self, base_dir: Path | None = None) -> list[tuple[str, str]]:
        """What `load` would refuse, found from the local data's own description without reading
        it: (option, message) pairs for a local path that does not exist or is misused, a split
        the data lacks, a field the mapping names that the data lacks. Hub data is not checked."""
        opts: HfOptions = self.options
        local = _local(opts.path, base_dir)
        if local is not None:
            misuse = self._misuse(local)
            if misuse:
                return [misuse]
        tables = self._local_tables(local, base_dir)
        if tables is None:
            return []
        problems = []
        have = ", ".join(sorted(tables)) or "none"
        for option in ("split", "valid_split", "test_split"):
            split = getattr(opts, option)
            if split is not None and split not in tables:
                problems.append((option, f"{self._label(split)}: no split {split!r}; the data has: {have}"))
        used = [s for s in (opts.split, opts.valid_split, opts.test_split) if s in tables]
        roles = [("prompt_field", opts.prompt_field), ("response_field", opts.response_field)]
        if opts.context_field:
            roles.append(("context_field", opts.context_field))
        for role, field_name in roles:
            for split in used:
                where, columns = tables[split]
                if columns is not None and field_name not in columns:
                    fields = ", ".join(repr(c) for c in columns) or "none"
                    problems.append((role, f"{where}: no field {field_name!r} ({role}); the data has fields: "
                                           f"{fields}. Set {role} to one of them, or use a preset "
                                           f"({', '.join(PRESETS)})"))
                    break
        return problems

    def _misuse(self, local: Path) -> tuple[str, str] | None:
        """Why the local `path` cannot be read as given, as (option, message), or None."""
        opts: HfOptions = self.options
        if not local.exists():
            return "path", f"no such file or folder: {local} (relative paths start at the recipe's folder)"
        if local.is_file():
            if local.suffix.lower() not in BUILDERS:
                return "path", (f"{local}: a data file is read by the builder its suffix names "
                                f"({', '.join(BUILDERS)}); for another file give the builder as path "
                                "(json, csv, parquet, arrow) and the file as data_files")
            extra = [o for o in ("name", "data_files", "revision") if getattr(opts, o) is not None]
            if extra:
                return extra[0], f"path {opts.path!r} is a data file, which takes no {', '.join(extra)}"
        elif _is_saved(local):
            extra = [o for o in ("name", "data_files", "revision") if getattr(opts, o) is not None]
            if extra:
                return extra[0], f"{local}: a save_to_disk folder takes no {', '.join(extra)}"
        return None

    def _local_tables(self, local: Path | None, base_dir: Path | None):
        """{split: (where, column names or None when unknown)} of local data; None when the
        splits are not known without `datasets` (hub data, a folder of data files)."""
        opts: HfOptions = self.options
        if local is not None:
            if local.is_file():
                return {"train": (opts.path, _columns(local, BUILDERS[local.suffix.lower()]))}
            return _saved_tables(local, opts.split, opts.path) if _is_saved(local) else None
        if opts.path not in BUILDERS.values() or opts.data_files is None:
            return None
        files = opts.data_files if isinstance(opts.data_files, dict) else {"train": opts.data_files}
        tables = {}
        for split, given in files.items():
            first = given if isinstance(given, str) else (given[0] if given else None)
            columns = None
            if first is not None and not GLOB_CHARS & set(first):
                columns = _columns(resolve_path(first, base_dir), opts.path)
            tables[split] = (first or opts.path, columns)
        return tables

    def load(self, base_dir: Path | None = None) -> DatasetSplits:
        opts: HfOptions = self.options
        tables = self._read(base_dir)
        label = opts.path + (f"/{opts.name}" if opts.name else "") + (f" data_files={opts.data_files}"
                                                                    if opts.data_files is not None else "")
        dropped: Counter = Counter()
        given = {role: prepare(self._records(tables, split), opts, dropped)
                 for role, split in (("test", opts.test_split), ("valid", opts.valid_split)) if split}
        source = prepare(self._records(tables, opts.split), opts, dropped)
        splits = assemble(source, given, opts, f"{self._label(opts.split)}[{opts.split}]", dropped)
        pinned = f"@{opts.revision}" if opts.revision else ""
        sizes = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
        description = (f"hf {label}{pinned}: split={opts.split} (preset {opts.preset}): {sizes}; "
                       f"dropped: {format_counts(dropped)}")
        return DatasetSplits.build(splits["train"], splits["valid"], splits["test"], description)

    def _label(self, split: str | None = None) -> str:
        """What errors call the data: the one file it (or `split`) reads, else its path and name."""
        opts: HfOptions = self.options
        files = opts.data_files
        if isinstance(files, dict) and split is not None:
            files = files.get(split)
        flat = _flat_files(files)
        if len(flat) == 1:
            return flat[0]
        return opts.path if opts.name is None else f"{opts.path}/{opts.name}"

    def _read(self, base_dir: Path | None):
        """The dataset as a mapping of split name to table (a DatasetDict, or one Dataset as {split: it})."""
        opts: HfOptions = self.options
        datasets = import_datasets()
        local = _local(opts.path, base_dir)
        misuse = self._misuse(local) if local is not None else None
        if misuse:
            raise DataError(f"hf {misuse[0]}={getattr(opts, misuse[0])!r}: {misuse[1]}")
        files = _resolve_files(opts.data_files, base_dir) if opts.data_files is not None else None
        try:
            with quiet_datasets(datasets):
                if local is not None and local.is_file():
                    loaded = datasets.load_dataset(BUILDERS[local.suffix.lower()], data_files=str(local))
                elif local is not None and _is_saved(local):
                    loaded = datasets.load_from_disk(str(local))
                else:
                    where = opts.path if local is None else str(local)
                    loaded = datasets.load_dataset(where, name=opts.name, data_files=files, revision=opts.revision)
        except Exception as exc:  # noqa: BLE001 - datasets raises many kinds (missing file, bad split, hub)
            raise DataError(f"hf path={opts.path!r}: datasets could not load it: "
                            f"{type(exc).__name__}: {exc}") from None
        if isinstance(loaded, datasets.Dataset):
            return {opts.split: loaded}
        return loaded

    def _records(self, tables, split: str) -> list[Record]:
        label = self._label(split)
        if split not in tables:
            have = ", ".join(sorted(tables)) or "none"
            raise DataError(f"hf {label}: no split {split!r}; the dataset has: {have}")
        return [(f"{label}[{split}]#{i}", row) for i, row in enumerate(tables[split])]


# -- what local data says about itself, without `datasets` -------------------------------------
def _saved_tables(folder: Path, split: str, where: str):
    """Splits and features of a save_to_disk folder, from the json files it wrote."""
    def features(part: Path) -> list[str] | None:
        try:
            info = json.loads((part / "dataset_info.json").read_text(encoding="utf-8"))
            return list(info["features"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    if (folder / "dataset_dict.json").exists():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return {name: (f"{where}[{name}]", features(folder / name)) for name in splits}
    return {split: (where, features(folder))}


def _columns(file: Path, builder: str) -> list[str] | None:
    """The column names `builder` will find in `file`; None when they cannot be told cheaply
    (the run's own read then says what is wrong)."""
    try:
        if builder == "csv":
            with open(file, newline="", encoding="utf-8-sig") as handle:
                return next(csv.reader(handle), [])
        if builder == "json":
            return _json_keys(file)
        import pyarrow as pa

        if builder == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(str(file)).names)
        if builder == "arrow":
            with pa.memory_map(str(file)) as source:
                try:
                    return list(pa.ipc.open_stream(source).schema.names)
                except pa.ArrowInvalid:
                    source.seek(0)
                    return list(pa.ipc.open_file(source).schema.names)
    except (OSError, ValueError, UnicodeDecodeError, ImportError):
        return None
    return None


def _json_keys(file: Path) -> list[str] | None:
    """Keys of the records of a JSON Lines file, a JSON list of objects, or a JSON object of columns."""
    if file.stat().st_size > MAX_JSON_SCAN:
        return None
    text = file.read_text(encoding="utf-8-sig")
    keys: dict[str, None] = {}
    if text.lstrip()[:1] in ("[", "{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSON Lines, one object per line
        if isinstance(whole, list):
            if not all(isinstance(item, dict) for item in whole):
                return None
            for item in whole:
                keys.update(dict.fromkeys(item))
            return list(keys)
        if isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
            return list(whole)
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(record, dict):
            return None
        keys.update(dict.fromkeys(record))
    return list(keys) if keys else None
