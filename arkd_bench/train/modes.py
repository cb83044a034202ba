"""Switching models between training and evaluation mode for a measurement."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def eval_mode(*models) -> Iterator[None]:
    """Models in eval mode (no dropout) for the block, then each given back its own mode
    (None entries are skipped, so an optional teacher can be passed as it is)."""
    states = [(m, m.training) for m in models if m is not None]
    for m, _ in states:
        m.eval()
    try:
        yield
    finally:
        for m, training in states:
            m.train(training)
