"""ARKD's counters and buffers in strategy.pt: each under its own name, listed once by its owner."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any


def saved_fields(owner: Any, names: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """{name: a copy of owner.<prefix><name>} for each name, in the order given."""
    return {name: copy.deepcopy(getattr(owner, prefix + name)) for name in names}


def restore_fields(owner: Any, names: Iterable[str], state: dict[str, Any], prefix: str = "") -> None:
    """Set owner.<prefix><name> from a copy of state[name]; a name missing from `state` (a file
    written before the field existed) keeps its initial value."""
    for name in names:
        if name in state:
            setattr(owner, prefix + name, copy.deepcopy(state[name]))
