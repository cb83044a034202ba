"""The embedded stdlib source and the script that freezes its data."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from arkd_bench.data import StdlibSource
from arkd_bench.data.stdlib import data_bytes, data_sha256

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "arkd_bench" / "data" / "embedded" / "README.md"
SCRIPT = ROOT / "scripts" / "build_stdlib_docstrings.py"


def readme_value(key):
    return re.search(rf"^- {key}: (\S+)", README.read_text(), re.MULTILINE).group(1)


def load_script():
    spec = importlib.util.spec_from_file_location("build_stdlib_docstrings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def splits():
    return StdlibSource().load()


def test_frozen_file_matches_its_readme():
    assert data_sha256() == readme_value("sha256")
    assert len(data_bytes().splitlines()) == int(readme_value("Pairs"))
    assert len(data_bytes()) < 1_000_000
    text = README.read_text()
    assert "Python 3.11.7" in text and "Python Software" in text and "build_stdlib_docstrings.py" in text


def test_default_splits(splits):
    n = int(readme_value("Pairs"))
    assert splits.sizes() == {"train": n - 300, "valid": 100, "test": 200}
    ex = splits.test[0]
    assert ex.prompt.startswith("Summarize what `") and ex.prompt.endswith("` does.")
    assert ex.meta["name"] in ex.prompt and len(ex.response.split()) >= 4
    prompts = [{e.prompt for e in part} for part in (splits.train, splits.valid, splits.test)]
    assert sum(map(len, prompts)) == n and len(set.union(*prompts)) == n
    assert "3.11.7" in splits.description and data_sha256()[:12] in splits.description


def test_os_path_join_is_in_the_data(splits):
    everything = splits.train + splits.valid + splits.test
    join = [e for e in everything if e.meta["name"] == "os.path.join"]
    assert join and join[0].prompt == "Summarize what `os.path.join(a, *p)` does."
    assert join[0].response.startswith("Join two or more pathname components")


def test_deterministic_and_seeded(splits):
    again = StdlibSource().load()
    assert again.content_hash == splits.content_hash and again.test == splits.test
    other = StdlibSource(split_seed=1).load()
    assert other.content_hash != splits.content_hash


def test_max_train_keeps_the_evaluation_sets(splits):
    small = StdlibSource(max_train=500, valid_size=50).load()
    assert small.sizes() == {"train": 500, "valid": 50, "test": 200}
    assert small.test == splits.test
    assert small.train == StdlibSource(valid_size=50).load().train[:500]


def test_template_option():
    splits = StdlibSource(template="Explain {signature}:", max_train=1).load()
    assert splits.test[0].prompt.startswith("Explain ") and splits.test[0].prompt.endswith(":")
    with pytest.raises(ValidationError, match="signature"):
        StdlibSource(template="Explain {name}")
    with pytest.raises(ValidationError, match="valid format string"):
        StdlibSource(template="{signature} {other}")


def test_first_sentence_extraction():
    script = load_script()
    assert script.first_sentence("Join paths.  More text here.") == "Join paths."
    assert script.first_sentence("\n    Split a path\n    into parts.\n\n    Details.") == "Split a path into parts."
    assert script.first_sentence("S.count(sub[, start]) -> int\n\nReturn the count.") == "Return the count."
    assert script.first_sentence("D.clear() -> None.  Remove all items from D.") == "Remove all items from D."
    assert script.first_sentence("Return the type, e.g. 'i386'. Then more.") == "Return the type, e.g. 'i386'."
    assert script.first_sentence(None) == ""


def test_filters():
    script = load_script()

    def reason(summary, name="mod.func", signature="mod.func()", deprecated=False):
        return script.rejection({"name": name, "signature": signature, "summary": summary, "deprecated": deprecated})

    assert reason("Return the sum of x and y.") is None
    assert reason("") == "no docstring"
    assert reason("Too short here.") == "too short"
    assert reason(" ".join(["word"] * 41) + ".") == "too long"
    assert reason("Return the caf\u00e9 of things.") == "non-ASCII"
    assert reason("Deprecated alias of something else.") == "deprecated"
    assert reason("Load the module by name.", deprecated=True) == "deprecated"
    assert reason("Get the file name value.", name="os.get_file_name") == "restates the name"
    assert reason("Return the following values:") == "introduces a list"
    assert reason(">>> f(1) returns two things.") == "example instead of a summary"


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="the frozen data comes from Python 3.11.7")
def test_rebuild_reproduces_the_frozen_file():
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
