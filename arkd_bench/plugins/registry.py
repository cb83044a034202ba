"""Name -> class registries, one per plugin kind, that remember which plugin registered
what and accept only subclasses of the kind's base class."""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from arkd_bench.plugins.kinds import KINDS, PLUGIN_KINDS


class RegistryError(Exception):
    """A name registered twice, a name nobody registered, or a class of the wrong kind."""


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    factory: Any
    origin: str
    where: str = ""  # file:line of the register(...) call, for errors that name both registrations

    @property
    def options_model(self):
        return getattr(self.factory, "Options", None)

    @property
    def doc(self) -> str:
        return (self.factory.__doc__ or "").strip().splitlines()[0] if self.factory.__doc__ else ""

    def options_schema(self) -> dict[str, dict[str, Any]]:
        """Option name -> {type, choices, default, required, description} from the Options model,
        as `arkd-bench plugins` shows it."""
        model = self.options_model
        if model is None:
            return {}
        found = {}
        for name, field in model.model_fields.items():
            required = field.is_required()
            found[name] = {"type": type_text(field.annotation), "choices": choices(field.annotation),
                           "default": None if required else field.get_default(call_default_factory=True),
                           "required": required, "description": field.description or ""}
        return found


def type_text(annotation: Any) -> str:
    """A field's full type as written in Python: `Literal['a', 'b'] | None`, `list[float]`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]" if args else name
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def choices(annotation: Any) -> list | None:
    """The values a Literal field (also inside `| None`) accepts, else None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return list(args)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        found = [c for a in args if (c := choices(a)) is not None]
        return [v for c in found for v in c] if found else None
    return None


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
        self._base: type | None = None

    def check_kind(self, factory: Any, origin: str, name: str | None) -> None:
        """Raise naming the plugin when `factory` is not a subclass of this kind's base class
        (e.g. a Metric handed to the weighting hook): it would fail much later, in a recipe."""
        kind = PLUGIN_KINDS[self.kind]
        if self._base is None:
            self._base = kind.base_class()
        if isinstance(factory, type) and issubclass(factory, self._base):
            return
        what = getattr(factory, "__qualname__", None) or repr(factory)
        actual = None
        if isinstance(factory, type):
            actual = next((k for k in PLUGIN_KINDS.values() if issubclass(factory, k.base_class())), None)
        hint = f" (it is a {actual.base_name}: register it from `{actual.hook}`)" if actual else ""
        raise RegistryError(
            f"plugin {origin!r} registered {what}{f' as {name!r}' if name else ''} from `{kind.hook}`, "
            f"but a {self.kind} must be a subclass of {kind.base_name}{hint}; see {kind.guide}"
        )

    def check_options(self, factory: Any, origin: str) -> None:
        """An `Options` that is not a pydantic model would fail every listing and recipe check."""
        from pydantic import BaseModel

        model = getattr(factory, "Options", None)
        if model is None or (isinstance(model, type) and issubclass(model, BaseModel)):
            return
        raise RegistryError(
            f"plugin {origin!r} registered {factory.__qualname__} whose `Options` is {model!r}, not a pydantic "
            f"model; subclass arkd_bench.PluginOptions (see {PLUGIN_KINDS[self.kind].guide})"
        )

    def register(self, factory: Any, origin: str, name: str | None = None, where: str = "") -> None:
        """Add `factory` under `name` (or its `name` attribute). `where` is the file:line of the
        plugin's register(...) call: a refusal starts with it (a name registered twice gives
        both places instead), so the message says what to fix."""
        try:
            self.check_kind(factory, origin, name)
            self.check_options(factory, origin)
            name = name or getattr(factory, "name", None)
            if not name or not isinstance(name, str):
                raise RegistryError(
                    f"plugin {origin!r} registered a {self.kind} without a name: "
                    f"give {getattr(factory, '__name__', factory)!r} a `name` attribute or pass name=..."
                )
        except RegistryError as exc:
            raise RegistryError(f"{where}: {exc}" if where else str(exc)) from None
        if name in self._entries:
            first = self._entries[name]
            raise RegistryError(
                f"{self.kind} {name!r} is registered by both plugin {first.origin!r}"
                f"{f' ({first.where})' if first.where else ''} and plugin {origin!r}{f' ({where})' if where else ''}; "
                "uninstall or disable one of them, or rename one"
            )
        self._entries[name] = Entry(name=name, kind=self.kind, factory=factory, origin=origin, where=where)

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
