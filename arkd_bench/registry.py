"""Name -> factory registries, one per kind, that remember which plugin registered what."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

KINDS = ("divergence", "weighting", "dataset", "metric", "reporter")


class RegistryError(Exception):
    """A name registered twice, or a name nobody registered."""


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    factory: Any
    origin: str

    @property
    def options_model(self):
        return getattr(self.factory, "Options", None)

    @property
    def doc(self) -> str:
        return (self.factory.__doc__ or "").strip().splitlines()[0] if self.factory.__doc__ else ""

    def options_schema(self) -> dict[str, dict[str, Any]]:
        """Option name -> {type, default, description}, for `arkd-bench plugins`."""
        model = self.options_model
        if model is None:
            return {}
        out = {}
        for field_name, field in model.model_fields.items():
            annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            out[field_name] = {
                "type": annotation.replace("typing.", ""),
                "default": default,
                "required": field.is_required(),
                "description": field.description or "",
            }
        return out


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {kind} {name!r}; {hint}valid: {', '.join(sorted(known)) or '(none registered)'}"


class Registry:
    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, factory: Any, origin: str, name: str | None = None) -> None:
        name = name or getattr(factory, "name", None)
        if not name or not isinstance(name, str):
            raise RegistryError(
                f"plugin {origin!r} registered a {self.kind} without a name: "
                f"give {getattr(factory, '__name__', factory)!r} a `name` attribute or pass name=..."
            )
        if name in self._entries:
            first = self._entries[name].origin
            raise RegistryError(
                f"{self.kind} {name!r} is registered by both plugin {first!r} and plugin {origin!r}; "
                "uninstall or disable one of them, or rename one"
            )
        self._entries[name] = Entry(name=name, kind=self.kind, factory=factory, origin=origin)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(unknown_name_message(self.kind, name, self.names())) from None

    def create(self, name: str, **options: Any) -> Any:
        return self.get(name).factory(**options)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries
