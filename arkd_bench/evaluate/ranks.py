"""Evaluation shared by the processes of a run: each rank takes a contiguous shard of the
examples, and the per-example results are gathered back in example order, so the main
process scores exactly what one process would have produced alone."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ranks:
    """This process's place among `count` processes; `gather(obj)` returns every rank's
    `obj`, in rank order, on every rank (a collective: all ranks call it together)."""

    index: int = 0
    count: int = 1
    gather: Callable[[Any], list] | None = None

    @classmethod
    def of(cls, accelerator) -> Ranks:
        """The accelerator's processes; one process needs no collective."""
        if getattr(accelerator, "num_processes", 1) <= 1:
            return cls()
        from accelerate.utils import gather_object

        # gather_object concatenates lists: wrapping makes it one entry per rank
        return cls(accelerator.process_index, accelerator.num_processes, lambda obj: gather_object([obj]))

    @property
    def main(self) -> bool:
        return self.index == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous share of n items; shares differ in size by at most one."""
        return range(n * self.index // self.count, n * (self.index + 1) // self.count)

    def joined(self, part: list) -> list:
        """Every rank's `part` concatenated in rank order: with contiguous shards, the items
        in their original order."""
        if self.count == 1:
            return list(part)
        return [item for rank_part in self.gather(part) for item in rank_part]
