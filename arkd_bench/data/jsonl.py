"""The `jsonl` source: local JSON Lines or JSON (a list of objects) with field mapping.

Either one `path` split with `split_seed` into train/valid/test (`valid_size`,
`test_size`), or an explicit `train` file with optional `valid` and `test`
files; a split without its own file is carved from `train` the same way.
Errors name the file and line: "data.jsonl:7: missing field 'response' ...".
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Optional

from pydantic import model_validator

from arkd_bench.data.base import DatasetSource, DatasetSplits, DataError, resolve_path
from arkd_bench.data.records import Record, RecordOptions, assemble, format_counts, prepare

_SPACE = re.compile(r"\s*")


class JsonlOptions(RecordOptions):
    path: Optional[str] = None
    train: Optional[str] = None
    valid: Optional[str] = None
    test: Optional[str] = None

    @model_validator(mode="after")
    def _check_files(self):
        if (self.path is None) == (self.train is None):
            raise ValueError("give either `path` (one file, split with split_seed) or `train` (not both)")
        if self.path is not None and (self.valid or self.test):
            raise ValueError("`valid`/`test` files go with `train`, not `path`")
        return self


def read_records(path: Path) -> list[Record]:
    """Parse a JSONL file, or a JSON list when the first non-blank character is '['."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path}: file is empty; expected JSON Lines (one object per line) or a JSON list of objects")
    if text.lstrip().startswith("["):
        return _json_list(path, text)
    records = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            records.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            hint = "each line must hold one JSON object"
            if not records and _is_one_object(text):
                hint = "the file holds one JSON object; expected JSON Lines or a JSON list of objects"
            raise DataError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); {hint}") from None
    return records


def _is_one_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _json_list(path: Path, text: str) -> list[Record]:
    """Items of a top-level JSON list, each tagged with the line it starts on."""
    decoder = json.JSONDecoder()
    records: list[Record] = []
    pos = _SPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    try:
        while not text.startswith("]", pos):
            line += text.count("\n", counted, pos)
            counted = pos
            value, pos = decoder.raw_decode(text, pos)
            records.append((f"{path}:{line}", value))
            pos = _SPACE.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _SPACE.match(text, pos + 1).end()
            elif not text.startswith("]", pos):
                line += text.count("\n", counted, pos)
                raise DataError(f"{path}:{line}: expected ',' or ']' after a list item")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if text[pos + 1:].strip():
        raise DataError(f"{path}:{text.count(chr(10), 0, pos) + 1}: unexpected data after the JSON list")
    if not records:
        raise DataError(f"{path}: the JSON list is empty; expected a list of objects")
    return records


class JsonlSource(DatasetSource):
    """Local JSONL/JSON data with field mapping, presets, prompt templates, filters and splits."""

    name = "jsonl"
    Options = JsonlOptions

    def local_files(self) -> dict[str, str]:
        return {split: getattr(self.options, split) for split in ("path", "train", "valid", "test")
                if getattr(self.options, split)}

    def load(self, base_dir: Path | None = None) -> DatasetSplits:
        opts: JsonlOptions = self.options
        source_path = resolve_path(opts.path or opts.train, base_dir)
        dropped: Counter = Counter()
        given = {}
        for split in ("test", "valid"):
            if getattr(opts, split):
                given[split] = prepare(read_records(resolve_path(getattr(opts, split), base_dir)), opts, dropped)
        source = prepare(read_records(source_path), opts, dropped)
        splits = assemble(source, given, opts, str(source_path), dropped)
        files = ", ".join(f"{s}={getattr(opts, s)}" for s in ("path", "train", "valid", "test") if getattr(opts, s))
        sizes = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
        description = f"jsonl {files} (preset {opts.preset}): {sizes}; dropped: {format_counts(dropped)}"
        return DatasetSplits.build(splits["train"], splits["valid"], splits["test"], description)
