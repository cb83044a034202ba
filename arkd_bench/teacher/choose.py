"""The one place a cell's teacher source is chosen and built. `train.teacher_outputs` says
where the teacher's logits come from ("auto": memory within `train.teacher_cache_mb`, else
disk; online when it is 0); a data policy that trains on its built sequences' tokens gets
token targets instead. A source is built once per (teacher, items) and shared by every cell
of the run, so full passes of the teacher over a training set happen once."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from arkd_bench.recipe.matrix import content_hash
from arkd_bench.teacher.base import OnlineTeacher, TeacherSource
from arkd_bench.teacher.disk import StoredTeacherOutputs
from arkd_bench.teacher.items import items_hash
from arkd_bench.teacher.memory import TeacherOutputs, cache_bytes
from arkd_bench.teacher.targets import TokenTargets


@dataclass
class TeacherItems:
    """A teacher and the training items a source answers for."""

    name: str  # the teacher's name in the recipe (messages)
    key: tuple  # what tells these items apart within a run: (dataset, teacher[, built sequences' key])
    model: Any
    vocab_size: int
    pad_token_id: int
    items: Sequence[dict]
    identity: str  # the teacher's content identity: stored outputs are keyed by it
    sources: dict = field(default_factory=dict)  # {role: identity} the model and tokenizer files


class TeacherSources:
    """Chooses, builds and keeps the run's teacher sources; counts the teacher's work."""

    def __init__(self, train, cache, device, say: Callable[[str], None]) -> None:
        self.train, self.cache, self.device, self.say = train, cache, device, say
        self.made: dict[tuple, TeacherSource] = {}
        self.passes = 0  # full passes of a teacher over a training set (stored outputs built)
        self.build_seconds = 0.0

    def kind(self, what: TeacherItems) -> str:
        """memory | disk | topk | online, as `train.teacher_outputs` asks."""
        kind = self.train.teacher_outputs
        if kind != "auto":
            return kind
        size = cache_bytes(what.items, what.vocab_size)
        return ("memory" if size <= self.train.teacher_cache_mb * 2**20
                else "online" if self.train.teacher_cache_mb == 0 else "disk")

    def source(self, what: TeacherItems, targets: str = "distribution") -> TeacherSource:
        """The source for `what`: token targets when `targets` is "tokens" (the next token of
        each sequence stands in for the teacher), else the kind `train.teacher_outputs` asks."""
        kind = "tokens" if targets == "tokens" else self.kind(what)
        key = (kind, *what.key)
        if key not in self.made:
            if kind == "tokens":
                self.made[key] = TokenTargets(what.items, what.vocab_size, model=what.model)
            elif kind == "online":
                self.made[key] = OnlineTeacher(what.model)
            elif kind == "memory":
                self.made[key] = self._memory(what)
            else:
                self.made[key] = self._stored(what, "dense" if kind == "disk" else "topk")
        return self.made[key]

    def _memory(self, what: TeacherItems) -> TeacherOutputs:
        size = cache_bytes(what.items, what.vocab_size)
        self.passes += 1
        self.say(f"teacher {what.name}: caching logits of {len(what.items)} training examples "
                 f"({size / 2**20:.0f} MB)")
        started = time.time()
        outputs = TeacherOutputs.compute(what.model, what.items, what.pad_token_id, device=self.device)
        self.build_seconds += time.time() - started
        return outputs

    def _stored(self, what: TeacherItems, layout: str) -> StoredTeacherOutputs:
        """Log-probs in memory-mapped files (`dense`: float16, exact but for rounding; `topk`:
        an approximation), written once per (teacher, items) into the artifact cache."""
        k = self.train.teacher_topk
        key = content_hash({"teacher": what.identity, "items": items_hash(what.items),
                            "layout": layout, **({"k": k} if layout == "topk" else {})})

        def build(folder) -> None:
            self.passes += 1
            kept = "float16 log-probs" if layout == "dense" else f"top-{k} log-probs (approximate)"
            self.say(f"teacher {what.name}: writing {kept} of {len(what.items)} training examples to disk "
                     f"(cached as {key})")
            started = time.time()
            StoredTeacherOutputs.write(folder, layout, what.model, what.items, what.pad_token_id,
                                       what.vocab_size, k=k, device=self.device)
            self.build_seconds += time.time() - started

        folder = self.cache.get_or_build("teacher_outputs", key, build, sources=what.sources)
        return StoredTeacherOutputs(folder, layout, what.vocab_size, model=what.model)

    def stats(self) -> dict[str, Any]:
        """What cache.json records of the teacher's work: stored-output passes, online
        forwards, and the seconds of both."""
        made = self.made.values()
        return {"teacher_passes": self.passes, "online_teacher_batches": sum(s.online_batches for s in made),
                "teacher_seconds": round(self.build_seconds + sum(s.seconds for s in made), 3)}
