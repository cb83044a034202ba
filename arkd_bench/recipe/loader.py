"""YAML loading that remembers where each value came from, and readable errors.

Errors read `recipe.yaml:12: methods[2].weighting.name: message`, so a user can go
straight to the line. Only yaml's safe loader is used.
"""
from __future__ import annotations

import stat
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


# Bounds on what a recipe may expand to. Recipes are a few KB and a few levels deep; the
# limits are far above that and far below what hangs or crashes the loader (an alias bomb
# expands a few hundred bytes into billions of nodes; Python's recursion limit is 1000).
MAX_RECIPE_BYTES = 1 << 20
MAX_NODES = 100_000  # after alias expansion
MAX_CHARS = 4 << 20  # characters of scalars after alias expansion
MAX_DEPTH = 64


class _Bounded(yaml.SafeLoader):
    """PyYAML's safe loader, measuring every node's expanded size and depth as it is composed.

    An alias returns the anchored node, so sizes add up over a graph, once per node: an alias
    bomb is measured (and refused) without ever being expanded. A node that contains itself
    (a recursive alias) is refused: nothing in a recipe is recursive. A key repeated in a
    mapping is refused rather than silently overwritten.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._measure: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, chars, depth)
        self._nesting = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)  # already measured (or still open: see below)
        self._nesting += 1
        if self._nesting > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._nesting -= 1
        self._measure_node(node)
        return node

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen: dict[str, int] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise yaml.composer.ComposerError(
                        None, None, f"key {key.value!r} appears twice in one mapping (first at line {seen[key.value]})",
                        key.start_mark)
                seen[key.value] = key.start_mark.line + 1
        return node

    def _measure_node(self, node) -> None:
        if isinstance(node, yaml.ScalarNode):
            nodes, chars, depth = 1, len(node.value), 1
        else:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            # Children are measured as they are composed; one that is not is an enclosing
            # node reached through an alias: the value would contain itself.
            if any(id(c) not in self._measure for c in children):
                raise yaml.composer.ComposerError(None, None, "an alias here refers to a node that contains it "
                                                  "(recursive alias)", node.start_mark)
            sizes = [self._measure[id(c)] for c in children]
            nodes = 1 + sum(s[0] for s in sizes)
            chars = sum(s[1] for s in sizes)
            depth = 1 + max((s[2] for s in sizes), default=0)
        if nodes > MAX_NODES or chars > MAX_CHARS:
            raise yaml.composer.ComposerError(
                None, None, f"expands to more than {MAX_NODES} values or {MAX_CHARS} characters "
                "(aliases repeated inside aliases?); recipes are far smaller", node.start_mark)
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep once aliases are expanded", node.start_mark)
        self._measure[id(node)] = (nodes, chars, depth)

    def construct_object(self, node, deep=False):
        # A value the constructor cannot make (an int of 5000 digits, ...) is located like
        # any other YAML error instead of escaping as a bare ValueError.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {exc}",
                                                    node.start_mark) from None


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
    """Parse one YAML document within the bounds above; every failure is a located RecipeError."""
    loader = None
    try:
        loader = _Bounded(text)
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise RecipeError(file, [Problem((), f"invalid YAML: character #x{exc.character:04x} "
                                             f"is not allowed ({exc.reason})")], {(): line}) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)  # e.g. "while parsing a flow sequence"
        if context:
            problem = f"{problem} ({context})"
        raise RecipeError(file, [Problem((), f"invalid YAML: {problem}")], {(): line}) from None
    finally:
        if loader is not None:
            loader.dispose()
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
    """The recipe's text, or a RecipeError naming the file and saying why it cannot be read."""
    def refuse(message: str, line: int = 1):
        return RecipeError(str(path), [Problem((), message)], {(): line})

    try:
        info = path.stat()
    except FileNotFoundError:
        raise refuse("no such file") from None
    except OSError as exc:
        raise refuse(f"cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse("is a folder; give the recipe's .yaml file")
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file; give the recipe's .yaml file")
    if info.st_size > MAX_RECIPE_BYTES:
        raise refuse(f"is {info.st_size} bytes; a recipe may be at most {MAX_RECIPE_BYTES} bytes")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_RECIPE_BYTES + 1)
    except PermissionError:
        raise refuse("cannot read: permission denied") from None
    except OSError as exc:
        raise refuse(f"cannot read ({exc.strerror})") from None
    if len(raw) > MAX_RECIPE_BYTES:  # grew since stat
        raise refuse(f"is larger than {MAX_RECIPE_BYTES} bytes, the most a recipe may be")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise refuse(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}: {exc.reason}); "
                     "save the recipe as UTF-8", line) from None
