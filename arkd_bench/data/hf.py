"""The `hf` source: anything Hugging Face `datasets` reads, with the field mapping, presets,
templates, filters, dedup and splits of `jsonl` (both feed `records.prepare`/`assemble`).

Options named as `datasets.load_dataset`'s arguments: `path` (a hub name such as
`databricks/databricks-dolly-15k`, or a builder such as `json`, `csv`, `parquet`, `arrow`
with `data_files`), `name`, `data_files`, `split` and `revision`. A folder written by
`Dataset.save_to_disk` (or `DatasetDict.save_to_disk`) is read with `load_from_disk`.
`split` is the split the examples come from; `valid_split`/`test_split` name the dataset's
own evaluation splits, and a split not named is carved from `split` with `split_seed`,
exactly as `jsonl` carves one from its `path`.

`datasets` is an optional extra: `pip install 'arkd-bench[datasets]'`.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import Field, model_validator

from arkd_bench.data.base import DataError, DatasetSource, DatasetSplits, resolve_path
from arkd_bench.data.records import (
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

DataFiles = str | list[str] | dict[str, str | list[str]]


class HfOptions(RecordOptions):
    path: str = Field(description="hub dataset name, a builder (json, csv, parquet, arrow) with data_files, "
                                  "or a folder written by save_to_disk; local paths resolve against the recipe")
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


def _local_path(path: str, base_dir: Path | None) -> str:
    """`path` resolved against the recipe when it names a local file or folder; a hub name as is.
    As in `load_dataset`, an existing local folder wins over a hub name."""
    resolved = resolve_path(path, base_dir)
    return str(resolved) if path.startswith(("/", "./", "../", "~")) or resolved.exists() else path


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
        if opts.path.startswith(("/", "./", "../", "~")):
            files["path"] = opts.path
        return files

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
        path = _local_path(opts.path, base_dir)
        local = Path(path).expanduser()
        try:
            if local.is_dir() and any((local / marker).exists() for marker in SAVED_MARKERS):
                if opts.name or opts.data_files or opts.revision:
                    raise DataError(f"{path}: a save_to_disk folder takes no name, data_files or revision")
                loaded = datasets.load_from_disk(str(local))
            else:
                files = _resolve_files(opts.data_files, base_dir) if opts.data_files is not None else None
                loaded = datasets.load_dataset(path, name=opts.name, data_files=files, revision=opts.revision)
        except DataError:
            raise
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
