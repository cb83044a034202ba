"""Dataset readers: local JSONL/JSON, Hugging Face `datasets` (`hf`, an optional extra), the
embedded `stdlib` default, the synthetic `longtail` task.

Each reader is a `DatasetSource` with a pydantic `Options` model; `BUILTIN_DATASETS`
maps names to them for the plugin layer. Tokenization and batching live in
`arkd_bench.data.collate` (the only module here that imports torch).

Adding a reader: subclass `DatasetSource`; for record-shaped data subclass
`records.RecordOptions` and feed `(where, dict)` pairs to `records.prepare` and
`records.assemble` to get the same field mapping, presets, templates, filters, dedup
and splits as `jsonl` (as `hf` does).
"""
from arkd_bench.data.base import DataError, DatasetSource, DatasetSplits, Example, content_hash
from arkd_bench.data.hf import HfSource
from arkd_bench.data.jsonl import JsonlSource
from arkd_bench.data.longtail import LongtailSource
from arkd_bench.data.stdlib import StdlibSource

BUILTIN_DATASETS: dict[str, type[DatasetSource]] = {
    source.name: source for source in (JsonlSource, HfSource, StdlibSource, LongtailSource)
}

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "DatasetSource",
    "DatasetSplits",
    "Example",
    "HfSource",
    "JsonlSource",
    "LongtailSource",
    "StdlibSource",
    "content_hash",
]
