"""Cache keys follow the content of models and tokenizers, not their names: new weights in an
old folder rebuild every entry built from them, the run says why, and finished cells that used
the old weights are run again. File hashes are memoised by stat, so they are cheap to repeat."""
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from arkd_bench.testing import tiny_gpt2, tiny_tokenizer
from arkd_bench.models import identity
from arkd_bench.models.identity import FileHashes, folder_identity

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture
def no_racy_window(monkeypatch):
    """Memoise files however recently they were written (the tests write them just before)."""
    monkeypatch.setattr(identity, "RACY_NS", -10**12)


def _flip_one_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_changed_weight_byte_changes_the_identity_and_touching_keeps_it(tmp_path, no_racy_window):
    folder = tmp_path / "model"
    tokenizer = tiny_tokenizer()
    tiny_gpt2(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "optimizer.pt").write_bytes(b"not read by from_pretrained")
    index = tmp_path / "cache" / identity.INDEX_FILE
    hashes = FileHashes(index)
    first = folder_identity(folder, hashes)
    assert "model.safetensors" in first.files and "config.json" in first.files and "tokenizer.json" in first.files
    assert "optimizer.pt" not in first.files
    assert hashes.hashed == len(first.files) and index.is_file()

    # A new process finds every hash in the index: nothing is read again.
    again = FileHashes(index)
    assert folder_identity(folder, again) == first and again.hashed == 0 and again.reused == len(first.files)

    # A touched file (new mtime, same bytes) is read again and keeps its hash.
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    touched = FileHashes(index)
    assert folder_identity(folder, touched) == first and touched.hashed == 1

    # One flipped byte of the weights, same size, even with the old mtime put back: a new identity.
    stat = weights.stat()
    _flip_one_byte(weights, stat.st_size - 3)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = folder_identity(folder, FileHashes(index))
    assert changed.sha256 != first.sha256
    assert {n for n in first.files if first.files[n] != changed.files[n]} == {"model.safetensors"}
    assert "model.safetensors" in identity.describe_change(first.record(), changed)


def test_files_written_just_now_are_not_memoised_on_disk(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    index = tmp_path / identity.INDEX_FILE
    hashes = FileHashes(index)
    digest = hashes.sha256(path)
    assert hashes.sha256(path) == digest and hashes.hashed == 1  # this process remembers it
    assert not index.exists()  # a write in the same timestamp tick could go unseen: not on disk
    stamp = path.stat()
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 10 * identity.RACY_NS))
    identity_now = FileHashes(index)
    identity_now.sha256(path)
    assert identity_now.hashed == 1  # the ctime of that utime is recent too: still not memoised


def test_gguf_key_is_memoised(tmp_path, no_racy_window):
    from arkd_bench.models.gguf import gguf_key

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1000))
    hashes = FileHashes(tmp_path / identity.INDEX_FILE)
    key = gguf_key(gguf, hashes)
    assert gguf_key(gguf, FileHashes(tmp_path / identity.INDEX_FILE)) == key == gguf_key(gguf)
    _flip_one_byte(gguf, 10)
    assert gguf_key(gguf, FileHashes(tmp_path / identity.INDEX_FILE)) != key


def _save_teacher(folder: Path, tokenizer, seed: int) -> None:
    tiny_gpt2(tokenizer, n_layer=1, n_embd=32, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _run(tmp_path: Path, recipe: dict, said: list[str]):
    from arkd_bench.plugins import load_plugins
    from arkd_bench.recipe.validate import load_recipe
    from arkd_bench.run.grid import run_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    loaded = load_recipe(path, plugins=load_plugins(autoload=False))
    summary = run_recipe(loaded, tmp_path / "out", cache_dir=tmp_path / "cache", say=said.append)
    assert not summary.failed, summary.failed
    return summary, json.loads((tmp_path / "out" / "cache.json").read_text(encoding="utf-8"))


def test_new_weights_in_a_local_teacher_folder_rebuild_everything_built_from_them(tmp_path):
    tokenizer = tiny_tokenizer()
    teacher = tmp_path / "teacher"
    _save_teacher(teacher, tokenizer, seed=0)
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", tmp_path)
    recipe = {
        "name": "content-keys", "seeds": [0],
        "teachers": [{"name": "local", "path": str(teacher), "sft": {"steps": 1, "batch_size": 8}}],
        "students": [{"name": "s", "scratch": {"architecture": "gpt2", "config": {
            "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 128}}}],
        "datasets": [{"name": "tiny", "source": "jsonl",
                      "options": {"path": "tiny_pairs.jsonl", "valid_size": 4, "test_size": 3}}],
        "methods": [{"name": "kd", "objective": ["fkl"]},
                    {"name": "seqkd", "objective": ["fkl"], "data": {"name": "teacher", "options": {
                        "do_sample": False, "max_new_tokens": 4, "targets": "tokens"}}}],
        "train": {"steps": 1, "batch_size": 8, "max_length": 48, "student_sft": False,
                  "teacher_outputs": "disk", "rouge_probe_size": 2},
        "eval": {"metrics": ["rougeL"], "generation": {"max_new_tokens": 4, "batch_size": 8},
                 "baselines": ["teacher"]},
    }
    said: list[str] = []
    first, stats = _run(tmp_path, recipe, said)
    assert len(first.ran) == 3 and stats["rebuilt"] == []
    built = {kind: set(os.listdir(tmp_path / "cache" / kind)) for kind in ("teachers", "teacher_outputs", "sequences")}
    assert all(len(keys) == 1 for keys in built.values())
    old = folder_identity(teacher, FileHashes())
    assert stats["sources"][old.label]["sha256"] == old.sha256 and stats["sources"][old.label]["roles"] == ["teacher 'local'"]
    cells = {c["method"]: c for c in json.loads((tmp_path / "out" / "results.json").read_text())["cells"]}
    provenance = json.loads((tmp_path / "out" / "cells" / cells["kd"]["id"] / "provenance.json").read_text())
    assert provenance["sources"]["teacher 'local'"]["sha256"] == old.sha256

    _save_teacher(teacher, tokenizer, seed=1)  # same name, config and tokenizer; other weights
    new = folder_identity(teacher, FileHashes())
    assert new.sha256 != old.sha256 and new.files["config.json"] == old.files["config.json"]
    said.clear()
    second, stats = _run(tmp_path, recipe, said)

    # Every finished cell had used the old weights: each runs again, and says why.
    assert sorted(second.ran) == sorted(first.ran) and second.skipped == []
    assert sum("running it again" in m and "model.safetensors" in m for m in said) == 3
    # Every entry built from the teacher is built anew under a new key, next to the old one.
    for kind, keys in built.items():
        now = set(os.listdir(tmp_path / "cache" / kind))
        assert len(now) == 2 and keys < now, kind
        (rebuilt,) = [r for r in stats["rebuilt"] if r["entry"].startswith(kind + "/")]
        assert rebuilt["entry"] == f"{kind}/{(now - keys).pop()}"
        assert (rebuilt["source"], rebuilt["old"], rebuilt["new"]) == (new.label, old.sha256, new.sha256)
        assert "teacher 'local' changed" in rebuilt["reason"] and "model.safetensors" in rebuilt["reason"]
    assert stats["teacher_passes"] == 1 and stats["sequence_builds"] == 1
    provenance = json.loads((tmp_path / "out" / "cells" / cells["kd"]["id"] / "provenance.json").read_text())
    assert provenance["sources"]["teacher 'local'"]["sha256"] == new.sha256

    # Nothing changed since: every cell is done, every entry found, nothing is called rebuilt.
    said.clear()
    third, stats = _run(tmp_path, recipe, said)
    assert third.ran == [] and len(third.skipped) == 3
    assert stats["rebuilt"] == [] and stats["misses"] == 0 and not any("again" in m for m in said)


def test_a_hub_model_is_its_resolved_commit_from_the_local_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    a, b = "a" * 40, "b" * 40
    for commit in (a, b):
        (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs" / "main").write_text(a)
    first = identity.path_identity("org/tiny", None, FileHashes())
    assert first.files == {"repo": "org/tiny", "revision": "main", "commit": a}
    (repo / "refs" / "main").write_text(b)  # the branch moved: another model under the same name
    moved = identity.path_identity("org/tiny", None, FileHashes())
    assert moved.sha256 != first.sha256 and moved.label == first.label
    assert identity.path_identity("org/tiny", a, FileHashes()).files["commit"] == a  # pinned: stays
    assert identity.path_identity("org/other", None, FileHashes()).files["commit"] == "unresolved"
