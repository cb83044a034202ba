"""`torch`, imported on first use.

The divergence classes are registered (and recipes validated, `arkd-bench plugins` listed)
without running any tensor code; importing torch alone takes seconds. Modules whose
functions need torch write `from arkd_bench._lazy_torch import torch` and use `torch.x` as
usual: the first attribute looked up imports torch, and each name is then kept on the
proxy, so later look-ups cost what a module attribute costs.
"""
from __future__ import annotations

from typing import Any


class _LazyTorch:
    def __getattr__(self, name: str) -> Any:
        import torch

        value = getattr(torch, name)
        setattr(self, name, value)
        return value

    def __repr__(self) -> str:
        return "<torch, imported on first use>"


torch: Any = _LazyTorch()
