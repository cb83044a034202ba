"""The one base of every plugin's options model."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PluginOptions(BaseModel):
    """Options of a plugin: an unknown key (a typo in a recipe) is a validation error, and
    values are immutable once validated. Every kind's options base subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(PluginOptions):
    """Options of a plugin that takes none (any key is an error)."""
