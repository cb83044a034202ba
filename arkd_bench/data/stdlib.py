"""The embedded default `stdlib` source: summarize a standard-library call signature.

Real text that needs no download: ~4k pairs of a Python 3.11.7 signature and the
first sentence of its docstring, frozen in `embedded/stdlib_docstrings.jsonl` by
`scripts/build_stdlib_docstrings.py` (see `embedded/README.md` for provenance,
licence and hash). Loading shuffles with `split_seed` and carves test, then
valid; `max_train` only truncates train, so the evaluation sets never move.
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Optional

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from arkd_bench.data.base import DatasetSource, DatasetSplits, DataError, Example, SourceOptions, seeded_split

DATA_FILE = "stdlib_docstrings.jsonl"
DEFAULT_TEMPLATE = "Summarize what `{signature}` does."


def data_bytes() -> bytes:
    return resources.files("arkd_bench.data").joinpath("embedded").joinpath(DATA_FILE).read_bytes()


def data_sha256() -> str:
    return hashlib.sha256(data_bytes()).hexdigest()


class StdlibOptions(SourceOptions):
    valid_size: NonNegativeInt = 100
    test_size: PositiveInt = 200
    split_seed: int = 0
    max_train: Optional[PositiveInt] = None
    template: str = Field(DEFAULT_TEMPLATE, description="prompt format string with a {signature} placeholder")

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        if "{signature}" not in value:
            raise ValueError("the template must contain {signature}")
        try:
            value.format(signature="f(x)")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"not a valid format string with only {{signature}} ({exc!r})")
        return value


class StdlibSource(DatasetSource):
    """Code summarization from standard-library docstrings (Python 3.11.7, PSF licence)."""

    name = "stdlib"
    Options = StdlibOptions

    def load(self, base_dir: Path | None = None) -> DatasetSplits:
        opts: StdlibOptions = self.options
        raw = data_bytes()
        examples = []
        for line in raw.decode("ascii").splitlines():
            row = json.loads(line)
            name = row["signature"].split("(", 1)[0]
            prompt = opts.template.format(signature=row["signature"])
            examples.append(Example(prompt, (row["summary"],), {"name": name}))
        if not examples:
            raise DataError(f"embedded {DATA_FILE} is empty; rebuild it with scripts/build_stdlib_docstrings.py")
        train, valid, test = seeded_split(examples, opts.split_seed, opts.valid_size, opts.test_size, DATA_FILE)
        if opts.max_train is not None:
            train = train[: opts.max_train]
        sha = hashlib.sha256(raw).hexdigest()
        description = (
            f"stdlib docstrings (Python 3.11.7, {len(examples)} pairs, file sha256 {sha[:12]}): "
            f"train {len(train)}, valid {len(valid)}, test {len(test)}, split_seed {opts.split_seed}"
        )
        return DatasetSplits.build(train, valid, test, description)
