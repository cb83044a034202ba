"""A tokenizer from a hub repo loads at the revision the recipe gives (the resolved commit when
the hub or the local cache knows it); a local folder loads as it always did."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from arkd_bench.models.identity import FileHashes
from arkd_bench.recipe.schema import Recipe
from arkd_bench.run.data import RunData
from arkd_bench.run.files import SourceFiles
from arkd_bench.run.shared import Memo
from arkd_bench.testing import TINY_RECIPE

COMMIT = "c" * 40


def tokenizer_loads(monkeypatch, tmp_path, *, teacher: dict, tokenizer: dict | None = None) -> list:
    """The (path, revision) `load_tokenizer` is called with for the recipe's one teacher."""
    from arkd_bench.models import tokenizer as tokenizer_module

    calls = []
    monkeypatch.setattr(tokenizer_module, "load_tokenizer",
                        lambda path, revision=None: calls.append((str(path), revision)) or object())
    recipe = Recipe.model_validate({**TINY_RECIPE, "teachers": [{"name": "teacher", **teacher}],
                                    "tokenizer": tokenizer or {}})
    loaded = SimpleNamespace(recipe=recipe, base_dir=tmp_path)
    cache, memo = SimpleNamespace(file_hashes=FileHashes()), Memo()
    RunData(loaded, cache, memo, SourceFiles(loaded, cache, memo, say=print)).tokenizer("stdlib", "teacher")
    return calls


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_an_unresolved_hub_tokenizer_loads_at_the_teachers_revision(monkeypatch, tmp_path):
    calls = tokenizer_loads(monkeypatch, tmp_path, teacher={"path": "no-such-org/no-such-model", "revision": "v1.0"})
    assert calls == [("no-such-org/no-such-model", "v1.0")]


def test_a_hub_tokenizer_path_loads_at_its_own_revision(monkeypatch, tmp_path):
    calls = tokenizer_loads(monkeypatch, tmp_path, teacher={"path": "no-such-org/no-such-model", "revision": "v1.0"},
                            tokenizer={"path": "no-such-org/tokenizer", "revision": "v2"})
    assert calls == [("no-such-org/tokenizer", "v2")]


def test_a_resolved_hub_tokenizer_loads_at_its_commit(monkeypatch, tmp_path):
    from arkd_bench.models import identity

    monkeypatch.setattr(identity, "resolve_commit", lambda repo, revision: COMMIT)
    calls = tokenizer_loads(monkeypatch, tmp_path, teacher={"path": "no-such-org/no-such-model"},
                            tokenizer={"path": "no-such-org/tokenizer", "revision": "v2"})
    assert calls == [("no-such-org/tokenizer", COMMIT)]


def test_a_local_tokenizer_folder_loads_without_a_revision(monkeypatch, tmp_path):
    from arkd_bench.testing import tiny_tokenizer

    folder = tmp_path / "teacher"
    tiny_tokenizer().save_pretrained(str(folder))
    calls = tokenizer_loads(monkeypatch, tmp_path, teacher={"path": str(folder), "revision": "v1.0"})
    assert calls == [(str(folder), None)]


def test_a_tokenizer_revision_is_in_cell_ids_only_when_given():
    from pydantic import ValidationError

    from arkd_bench.recipe.matrix import expand

    with_path = {**TINY_RECIPE, "tokenizer": {"path": "no-such-org/tokenizer"}}
    plain = expand(Recipe.model_validate(with_path))
    pinned = expand(Recipe.model_validate({**with_path, "tokenizer": {**with_path["tokenizer"], "revision": "v2"}}))
    assert "revision" not in plain[0].config["tokenizer"]
    assert [c.id for c in plain] != [c.id for c in pinned]
    assert pinned[0].config["tokenizer"]["revision"] == "v2"
    with pytest.raises(ValidationError, match="`revision` needs `path`"):
        Recipe.model_validate({**TINY_RECIPE, "tokenizer": {"revision": "v2"}})
