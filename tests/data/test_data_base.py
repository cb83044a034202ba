"""Core data types: examples, content hashes, seeded splits, source options."""
import pytest
from pydantic import ValidationError

from arkd_bench.data import BUILTIN_DATASETS, DatasetSource, DatasetSplits, DataError, Example, content_hash
from arkd_bench.data.base import resolve_path, seeded_split


def make(n, tag="x"):
    return [Example(f"p{i}{tag}", (f"r{i}",)) for i in range(n)]


def test_example_normalises_references_and_is_hashable():
    ex = Example("p", ["a", "b"], {"k": 1})
    assert ex.references == ("a", "b") and ex.response == "a"
    assert Example("p", "a").references == ("a",)
    assert len({ex, Example("p", ("a", "b"), {"k": 1})}) == 1  # hashable despite a dict field
    assert ex != Example("p", ("a", "b"), {"k": 2})  # meta still counts for equality
    assert Example.from_dict(ex.to_dict()) == ex
    with pytest.raises(TypeError):
        Example("p", ())
    with pytest.raises(TypeError):
        Example("p", (1,))


def test_content_hash_is_stable_and_sensitive():
    train, valid, test = make(5), make(2, "v"), make(2, "t")
    h = content_hash(train, valid, test)
    assert h == content_hash(list(train), list(valid), list(test))
    assert len(h) == 64
    changed = [Example(train[0].prompt, ("other",))] + train[1:]
    assert content_hash(changed, valid, test) != h  # a reference
    assert content_hash(train[::-1], valid, test) != h  # the order
    assert content_hash(train, test, valid) != h  # the split an example is in
    meta = [Example(train[0].prompt, train[0].references, {"a": 1})] + train[1:]
    assert content_hash(meta, valid, test) != h  # meta


def test_dataset_splits_build_and_verify():
    splits = DatasetSplits.build(make(3), make(1, "v"), make(1, "t"), "demo")
    assert splits.sizes() == {"train": 3, "valid": 1, "test": 1}
    splits.verify()
    splits.train.pop()
    with pytest.raises(DataError, match="content hash mismatch"):
        splits.verify()


def test_seeded_split_is_deterministic_disjoint_and_complete():
    items = make(100)
    a = seeded_split(items, 7, 10, 0.2, "demo")
    assert a == seeded_split(items, 7, 10, 0.2, "demo")
    assert a != seeded_split(items, 8, 10, 0.2, "demo")
    train, valid, test = a
    assert (len(train), len(valid), len(test)) == (70, 10, 20)
    assert sorted(train + valid + test, key=lambda e: e.prompt) == sorted(items, key=lambda e: e.prompt)
    # a positive fraction never rounds down to an empty split
    assert len(seeded_split(make(3), 0, 0.01, 0.01)[2]) == 1


def test_seeded_split_too_small():
    with pytest.raises(DataError, match="demo: 5 examples are too few.*train would be empty"):
        seeded_split(make(5), 0, 2, 3, "demo")


def test_resolve_path(tmp_path):
    assert resolve_path("a.jsonl", tmp_path) == tmp_path / "a.jsonl"
    assert resolve_path(tmp_path / "b.jsonl", None) == tmp_path / "b.jsonl"
    assert resolve_path("/abs/c.jsonl", tmp_path).as_posix() == "/abs/c.jsonl"


def test_builtin_datasets_and_options_validation():
    assert set(BUILTIN_DATASETS) == {"jsonl", "hf", "stdlib", "longtail"}
    for name, cls in BUILTIN_DATASETS.items():
        assert issubclass(cls, DatasetSource) and cls.name == name
        with pytest.raises(ValidationError, match="extra"):
            cls(no_such_option=1) if name != "jsonl" else cls(path="x.jsonl", no_such_option=1)


def test_data_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, arkd_bench.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
