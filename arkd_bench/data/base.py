"""Core data types: examples, the three splits of a dataset, and the source interface.

No torch here: recipes are validated (and `arkd-bench --help` runs) without it.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Union

from pydantic import BaseModel, Field

from arkd_bench.plugins.options import PluginOptions

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Bad data or a bad data option; the message names the file (and line) and what is valid."""


@dataclass(frozen=True)
class Example:
    """One prompt and its references; the first reference is the training response."""

    prompt: str
    references: tuple[str, ...]
    # Free-form, JSON-serialisable extras (a category, a known answer distribution...).
    # Left out of hash() so examples can live in sets; still part of == and content_hash.
    meta: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise TypeError(f"prompt must be a str, got {type(self.prompt).__name__}")
        refs = (self.references,) if isinstance(self.references, str) else tuple(self.references)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise TypeError("references must be a non-empty sequence of str")
        object.__setattr__(self, "references", refs)

    @property
    def response(self) -> str:
        return self.references[0]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "references": list(self.references), "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict) -> Example:
        return cls(data["prompt"], tuple(data["references"]), dict(data.get("meta") or {}))


def content_hash(train: list[Example], valid: list[Example], test: list[Example]) -> str:
    """sha256 of the canonical JSON of every example, split by split (order counts)."""
    payload = {name: [ex.to_dict() for ex in part] for name, part in zip(SPLITS, (train, valid, test))}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class DatasetSplits:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    content_hash: str
    description: str

    @classmethod
    def build(cls, train, valid, test, description: str) -> DatasetSplits:
        """Splits with their content hash computed from the examples."""
        train, valid, test = list(train), list(valid), list(test)
        return cls(train, valid, test, content_hash(train, valid, test), description)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def verify(self) -> None:
        """Raise if the examples no longer match the recorded hash (e.g. edited after loading)."""
        actual = content_hash(self.train, self.valid, self.test)
        if actual != self.content_hash:
            raise DataError(f"content hash mismatch: recorded {self.content_hash}, examples give {actual}")


class SourceOptions(PluginOptions):
    """Base of every source's options: unknown keys are errors, values immutable."""


class DatasetSource:
    """A named reader that turns validated options into `DatasetSplits`.

    Subclasses set `name` and `Options` and implement `load`. Construction
    validates the options (pydantic.ValidationError on bad ones) and does no I/O,
    so a whole recipe can be checked before anything is read.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = SourceOptions

    def __init__(self, **options) -> None:
        self.options = self.Options(**options)

    def load(self, base_dir: Path | None = None) -> DatasetSplits:
        """Read the data; relative paths resolve against `base_dir` (the recipe's folder)."""
        raise NotImplementedError

    def local_files(self) -> dict[str, str]:
        """The local files `load` will read, by option name, as given (relative or not).

        `validate` and `run` check that each exists and can be read before anything trains;
        a source that reads local files overrides this so a missing one is caught there.
        """
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


# A split size: an int is a count of examples, a float in (0, 1) a fraction of them.
SplitSize = Union[Annotated[int, Field(ge=0)], Annotated[float, Field(gt=0, lt=1)]]


def resolve_path(path: str | Path, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def count_of(size: int | float, total: int) -> int:
    """A split size as a count; a positive fraction never rounds down to an empty split."""
    return size if isinstance(size, int) else max(1, round(size * total))


def seeded_split(
    items: list, seed: int, valid_size: int | float, test_size: int | float, what: str = "the data"
) -> tuple[list, list, list]:
    """Shuffle once with `seed`, then take test, then valid; the rest is train.

    Each split keeps the shuffled order, so truncating one later (max_examples)
    keeps a random sample of it rather than the head of the file.
    """
    n_test, n_valid = count_of(test_size, len(items)), count_of(valid_size, len(items))
    if n_test + n_valid >= len(items):
        raise DataError(
            f"{what}: {len(items)} examples are too few for valid_size={valid_size} and "
            f"test_size={test_size} ({n_valid} + {n_test}); train would be empty"
        )
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    shuffled = [items[i] for i in order]
    return shuffled[n_test + n_valid:], shuffled[n_test:n_test + n_valid], shuffled[:n_test]
