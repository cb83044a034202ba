"""YAML loading that remembers where each value came from, and readable errors.

Errors read `recipe.yaml:12: methods[2].weighting.name: message`, so a user can go
straight to the line. Only yaml's safe loader is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class Problem:
    path: Path_
    message: str


class RecipeError(Exception):
    """One or more problems in a recipe, each with its file, line and field path."""

    def __init__(self, file: str, problems: list[Problem], lines: dict[Path_, int] | None = None):
        self.file = file
        self.problems = problems
        self.lines = lines or {}
        super().__init__(self.format())

    def line_of(self, path: Path_) -> int:
        # The deepest prefix of the path that the YAML spelled out.
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return self.lines[path[:cut]]
        return 1

    def format(self) -> str:
        return "\n".join(
            f"{self.file}:{self.line_of(p.path)}: {format_path(p.path) or '(recipe)'}: {p.message}"
            for p in self.problems
        )


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node, path: Path_ = (), lines: dict | None = None) -> dict[Path_, int]:
    lines = {} if lines is None else lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (str(key_node.value),)
            lines[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines)
    return lines


@dataclass
class LoadedYAML:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)


def load_yaml(text: str, file: str) -> LoadedYAML:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(file, [Problem((), f"invalid YAML: {problem}")], {(): line}) from None
    if node is None:
        raise RecipeError(file, [Problem((), "the recipe is empty")])
    if not isinstance(data, dict):
        raise RecipeError(file, [Problem((), "a recipe is a YAML mapping (key: value lines)")])
    return LoadedYAML(data, _line_map(node))


def pydantic_problems(exc, prefix: Path_ = (), model=None) -> list[Problem]:
    """Turn a pydantic ValidationError into problems with field paths."""
    problems = []
    for err in exc.errors():
        loc = tuple(part for part in err["loc"] if not _is_internal(part))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
            allowed = _allowed_fields(model, loc)
            if allowed:
                message += f"; valid fields here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            message = "field required"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        problems.append(Problem(prefix + loc, message))
    return problems


def _is_internal(part: Any) -> bool:
    # pydantic puts validator/union tags like 'function-after[...]' into locations.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _allowed_fields(model, loc: Path_) -> list[str]:
    if model is None:
        return []
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part)
        if field_info is None:
            return []
        model = _model_in(field_info.annotation)
        if model is None:
            return []
    return sorted(model.model_fields)


def _model_in(annotation: Any):
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), [Problem((), "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(str(path), [Problem((), f"not UTF-8 text ({exc.reason})")]) from None
