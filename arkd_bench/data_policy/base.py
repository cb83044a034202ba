"""The DataPolicy interface: where a method's training sequences come from.

A method is objective x weighting x data policy. The policy decides which token sequences
the divergences are computed on; the objective and the weighting never know. It acts in
one or both of two places:

- once per grid, before training (`builds_sequences = True`): `build_sequences(source)`
  returns the training items every cell with this policy trains on instead of the
  dataset's (SeqKD: the teacher's generations). The runner caches them on disk by a
  content hash of (policy name and options, teacher, dataset, tokenizer, max length), so
  every cell of a grid, and every rerun, shares one build.
- during training (`online = True`): `batch(batch, session)` gets each micro-batch of the
  dataset's items and returns the batch to train on (GKD: with probability lambda, the
  current student's samples for the same prompts). The teacher then runs on what it
  returns. `after_step(session)` follows each optimizer step.

Items are dicts of `input_ids`, `labels` (IGNORE_INDEX, -100, on the prompt) and
`attention_mask`, as `arkd_bench.data.collate.join_ids` makes them. Policies are importable without pluggy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.data_policy.checks import check_built_sequences
from arkd_bench.plugins.output import check_on_return

if TYPE_CHECKING:
    from arkd_bench.data_policy.session import DataSession, SequenceSource

DEFAULT_DATA_POLICY = "ground_truth"


class DataPolicyOptions(PluginOptions):
    """Options every data policy accepts; a policy subclasses this to add its own."""


class DataPolicy:
    """Where the training sequences come from. Subclasses set `name` and `Options`."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = DataPolicyOptions
    builds_sequences: ClassVar[bool] = False  # implements build_sequences (once per grid, cached)
    online: ClassVar[bool] = False  # implements batch/after_step (during training)

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The grid calls build_sequences (once, then caches its items): what it returns is
        # checked on return, naming the policy. Online batches are checked by the session.
        super().__init_subclass__(**kwargs)
        check_on_return(cls, "build_sequences", _check_built)

    @property
    def targets(self) -> Literal["distribution", "tokens"]:
        """What the teacher side of every term is on built sequences: the teacher's
        distributions ("distribution"), or a one-hot of each sequence's next token
        ("tokens": FKL then equals the cross-entropy, i.e. SFT on the sequences)."""
        return "distribution"

    def sequence_settings(self) -> dict[str, Any]:
        """The options that decide what `build_sequences` returns (part of the cache key)."""
        return self.options.model_dump(mode="json")

    def build_sequences(self, source: SequenceSource) -> list[dict]:
        """The training items of every cell with this policy (`builds_sequences` policies)."""
        raise NotImplementedError(f"data policy {self.name!r} builds no sequences")

    def batch(self, batch: dict, session: DataSession) -> dict:
        """The micro-batch to train on, given the dataset's (`online` policies)."""
        return batch

    def after_step(self, session: DataSession) -> None:
        """Called after each optimizer step (`online` policies)."""

    def log_scalars(self) -> dict[str, float]:
        """Scalars for the training log (prefixed `data/` there)."""
        return {}

    def describe(self) -> str:
        """A short label for leaderboards, e.g. `student (lmbda 0.5)`."""
        options = self.options.model_dump()
        return self.name + (f" ({', '.join(f'{k} {v}' for k, v in options.items())})" if options else "")


def _check_built(policy: DataPolicy, items: Any, *args: Any, **kwargs: Any) -> None:
    check_built_sequences(policy, items, args[0] if args else next(iter(kwargs.values())))
