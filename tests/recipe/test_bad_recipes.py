"""A corpus of malformed recipes (tests/fixtures/bad_recipes): each is rejected by `validate`
with exit 1, every message located as `file:line: field: ...`, no traceback, within 5 s.

Each file says what kind of mistake it holds (`# kind:`) and a text its error must contain
(`# expect:`); when that text is a field path, the reported line must be the line where the
field is written."""
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app

CORPUS = Path(__file__).parents[1] / "fixtures" / "bad_recipes"
FILES = sorted(CORPUS.glob("*.yaml"))
FIELD_PATH = re.compile(r"^[a-z_]+(\[\d+\]|\.[a-z_]+)+$")
KINDS = {"syntax", "types", "ranges", "references", "plugin options", "files", "semantics"}


def header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.*)$", path.read_text(encoding="utf-8"), re.M)
    assert match, f"{path.name} has no '# {key}:' line"
    return match[1]


def test_the_corpus_covers_every_kind_of_mistake():
    assert len(FILES) >= 40
    assert {header(f, "kind") for f in FILES} == KINDS


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Import what validate imports (transformers' config tables) once, outside the timings:
    the 5 s budget is per recipe, not for starting Python."""
    result = CliRunner().invoke(app, ["validate", str(CORPUS.parent / "tiny.yaml")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_bad_recipe_is_rejected_located_and_fast(path, monkeypatch):
    monkeypatch.chdir(CORPUS)  # model and tokenizer folders are read from the current folder
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", path.name])
    seconds = time.perf_counter() - started
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no escaped exception
    assert "Traceback" not in result.output
    assert seconds < 5, f"{seconds:.1f} s"
    expect = header(path, "expect")
    assert expect in result.output, result.output
    lines = path.read_text(encoding="utf-8").splitlines()
    located = re.compile(rf"^{re.escape(path.name)}:(\d+): (\S+): ")
    for message in result.output.strip().splitlines():
        match = located.match(message)
        assert match, f"not located: {message!r}"
        assert 1 <= int(match[1]) <= len(lines)
    if FIELD_PATH.match(expect):
        # The line that writes the field: it names one of the path's keys, or starts its list item.
        message = next(m for m in result.output.splitlines() if f": {expect}" in m)
        line = lines[int(located.match(message)[1]) - 1]
        keys = re.findall(r"[a-z_]+", expect)
        assert any(key in line for key in keys) or line.lstrip().startswith("- "), (message, line)
