"""The model and tokenizer files a run reads: their content identities (a local folder's
files, a hub repo's resolved commit, a GGUF file's sha256), and GGUF models dequantized once."""
from __future__ import annotations

from arkd_bench.recipe.matrix import TRIVIAL_BASELINES, Cell
from arkd_bench.run.shared import Memo, named


class SourceFiles:
    """Content identities of the recipe's model and tokenizer files, computed once per run."""

    def __init__(self, loaded, cache, memo: Memo, say) -> None:
        self.loaded, self.recipe, self.cache, self.memo, self.say = loaded, loaded.recipe, cache, memo, say

    def source_identity(self, spec):
        """The content identity of a model spec's own files (arkd_bench.models.identity): a local
        folder's files, a hub repo's resolved commit, a GGUF file's sha256; None for `scratch`
        (its spec and seed are its identity) and `derive` (its teacher's is)."""
        from arkd_bench.models.identity import gguf_identity, path_identity

        if spec.gguf_file is not None:
            from arkd_bench.models.gguf import locate_gguf

            return self.memo(("source", "gguf", spec.distribution, spec.path, spec.revision, spec.gguf_file),
                             lambda: gguf_identity(locate_gguf(spec, self.loaded.base_dir), self.cache.file_hashes))
        if spec.path is not None:
            return self.memo(("source", "path", spec.path, spec.revision),
                             lambda: path_identity(spec.path, spec.revision, self.cache.file_hashes))
        return None

    def tokenizer_source(self, teacher: str):
        """The content identity of the tokenizer's files (None for one trained on the data, which
        is keyed by the data): `tokenizer.path`, the teacher's folder or repo, or its GGUF file."""
        from arkd_bench.models.identity import path_identity

        spec, teacher_spec = self.recipe.tokenizer, named(self.recipe.teachers, teacher)
        if not spec.path and teacher_spec.gguf_file is not None:
            return self.source_identity(teacher_spec)
        path, revision = (spec.path, spec.revision) if spec.path else (teacher_spec.path, teacher_spec.revision)
        if not path:
            return None
        return self.memo(("source", "tokenizer", path, revision),
                         lambda: path_identity(path, revision, self.cache.file_hashes, what="tokenizer"))

    def sources(self, teacher: str, student: str | None = None) -> dict:
        """{role: identity} of the files the teacher (or with `student`, that student) is built
        from: its own files, a derived student's teacher, and the tokenizer. Cache entries built
        from them pass these to the cache, which says when one changed."""
        found: dict = {}

        def add(role: str, identity) -> None:
            if identity is not None and all(i.label != identity.label for i in found.values()):
                found[role] = self.cache.use_source(role, identity)

        if student is None or named(self.recipe.students, student).derive is not None:
            add(f"teacher {teacher!r}", self.source_identity(named(self.recipe.teachers, teacher)))
        if student is not None:
            add(f"student {student!r}", self.source_identity(named(self.recipe.students, student)))
        add("tokenizer", self.tokenizer_source(teacher))
        return found

    def cell_sources(self, cell: Cell) -> dict:
        """The sources a cell's result depends on (recorded in its provenance, checked on resume)."""
        if cell.kind in TRIVIAL_BASELINES:
            return {}
        found = dict(self.sources(cell.teacher)) if cell.kind != "sft" else {}
        if cell.student is not None:
            found.update(self.sources(cell.teacher, cell.student))
        return found

    @staticmethod
    def pinned(spec, identity):
        """`spec` loading the hub commit its identity resolved (a moving branch cannot hand
        over other weights than the ones its keys were computed from)."""
        commit = identity.files.get("commit", "unresolved") if identity is not None else "unresolved"
        if spec.path is None or spec.gguf_file is not None or "repo" not in identity.files or commit == "unresolved":
            return spec
        return spec.model_copy(update={"revision": commit})

    def gguf_folder(self, spec):
        """(folder, key) of a GGUF model dequantized once into the cache."""
        from arkd_bench.models.gguf import gguf_folder

        return self.memo(("gguf", spec.name), lambda: gguf_folder(spec, self.cache, self.loaded.base_dir, self.say))
