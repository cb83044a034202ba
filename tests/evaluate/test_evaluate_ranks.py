"""Evaluation shared by processes: each rank generates and teacher-forces its shard, the
shards are joined in example order, and the main process's scores equal one process's.
Ranks here are threads whose gather meets at a barrier (the run's own two-process check,
with torchrun and gloo, is tests/e2e/test_multiprocess.py)."""
import threading

import pytest

from arkd_bench.data.base import Example
from arkd_bench.evaluate.evaluate_model import evaluate_model
from arkd_bench.evaluate.generate import GenerationSettings
from arkd_bench.evaluate.metrics import BUILTIN_METRICS
from arkd_bench.evaluate.ranks import Ranks
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2

EXAMPLES = [Example(" ".join(t.split(" ")[:2]), (" ".join(t.split(" ")[2:]),)) for t in SAMPLE_TEXTS[:7]]
METRICS = [BUILTIN_METRICS["rougeL"](), BUILTIN_METRICS["tf_fkl"](batch_size=1)]


def threaded_ranks(count: int) -> list[Ranks]:
    """`count` ranks whose `gather` exchanges objects through shared slots and a barrier."""
    slots, barrier = [None] * count, threading.Barrier(count)

    def gather_for(index):
        def gather(obj):
            slots[index] = obj
            barrier.wait()
            out = list(slots)
            barrier.wait()  # nobody overwrites a slot before every rank has read them
            return out
        return gather

    return [Ranks(i, count, gather_for(i)) for i in range(count)]


def evaluate_on(count, student, teacher, tokenizer, settings):
    results = [None] * count

    def work(ranks):
        results[ranks.index] = evaluate_model(student, tokenizer, EXAMPLES, METRICS, settings, teacher=teacher,
                                              ranks=ranks)

    threads = [threading.Thread(target=work, args=(r,)) for r in threaded_ranks(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.fixture(scope="module")
def models(tokenizer):
    return tiny_gpt2(tokenizer, n_layer=1, n_embd=16, seed=2), tiny_gpt2(tokenizer, n_layer=2, seed=1)


def test_shards_are_contiguous_cover_everything_and_differ_by_at_most_one():
    for n in range(0, 9):
        shards = [Ranks(i, 3).shard(n) for i in range(3)]
        assert [k for s in shards for k in s] == list(range(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("do_sample", [False, True])
def test_three_ranks_score_exactly_as_one_process(models, tokenizer, do_sample):
    """7 examples on 3 ranks (shards of 2, 2 and 3); sampled rows are seeded by the example's
    index in the whole list, not in its shard, so the samples are one process's too."""
    student, teacher = models
    settings = GenerationSettings(do_sample=do_sample, seeds=[3, 4], max_new_tokens=6, batch_size=2)
    alone = evaluate_model(student, tokenizer, EXAMPLES, METRICS, settings, teacher=teacher)
    main, *others = evaluate_on(3, student, teacher, tokenizer, settings)
    assert others == [None, None]  # only the main process scores
    assert main.records == alone.records and main.per_seed == alone.per_seed and main.metrics == alone.metrics
    assert len({r["prediction"] for r in alone.records}) > 1  # the comparison is not between empty answers
    if do_sample:  # the seeds draw differently: a seed-blind sharding would be caught
        by_seed = {s: [r["prediction"] for r in alone.records if r["seed"] == s] for s in (3, 4)}
        assert by_seed[3] != by_seed[4]
