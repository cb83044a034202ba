"""What the run's artifact modules share: a memo of what was built, and finding specs by name."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class Memo:
    """Things built once per run, by key (each module keys its own by a leading name)."""

    def __init__(self) -> None:
        self._built: dict[tuple, Any] = {}

    def __call__(self, key: tuple, build: Callable[[], Any]) -> Any:
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]


def named(specs: Iterable, name: str):
    """The spec called `name` (a recipe's teachers, students or datasets)."""
    return next(s for s in specs if s.name == name)
