"""The teacher sources: one interface whatever holds the logits, chosen in one place."""
import pytest
import torch

from arkd_bench.data.base import Example
from arkd_bench.data.collate import TrainingDataset, collate_for_training
from arkd_bench.recipe.schema import TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.teacher.choose import TeacherItems, TeacherSources
from arkd_bench.teacher.items import IndexedDataset
from arkd_bench.teacher.memory import TeacherOutputs
from arkd_bench.teacher.targets import TokenTargets
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2


@pytest.fixture(scope="module")
def setup(tokenizer):
    teacher = tiny_gpt2(tokenizer, n_layer=1).eval()
    examples = [Example(f"Q{i}: {text[:20]}", (text,)) for i, text in enumerate(SAMPLE_TEXTS[:4])]
    items = TrainingDataset(examples, tokenizer, max_length=32).items
    return teacher, items


def what(tokenizer, teacher, items):
    return TeacherItems(name="t", key=("d", "t"), model=teacher, vocab_size=len(tokenizer),
                        pad_token_id=tokenizer.pad_token_id, items=items, identity="id")


def test_auto_keeps_logits_in_memory_within_the_budget_and_runs_online_at_zero(tokenizer, setup, torch_single_thread):
    teacher, items = setup
    said = []
    cached = TeacherSources(TrainSpec(), cache=None, device="cpu", say=said.append)
    source = cached.source(what(tokenizer, teacher, items))
    assert isinstance(source, TeacherOutputs) and cached.passes == 1 and len(said) == 1
    assert cached.source(what(tokenizer, teacher, items)) is source  # built once per (teacher, items)
    online = TeacherSources(TrainSpec(teacher_cache_mb=0), cache=None, device="cpu", say=said.append)
    assert isinstance(online.source(what(tokenizer, teacher, items)), OnlineTeacher) and online.passes == 0
    tokens = online.source(what(tokenizer, teacher, items), targets="tokens")
    assert isinstance(tokens, TokenTargets) and tokens.description == "TokenTargets"


def test_a_stored_source_runs_the_teacher_on_batches_without_an_index(tokenizer, setup, torch_single_thread):
    teacher, items = setup
    stored = TeacherOutputs.compute(teacher, items, tokenizer.pad_token_id)
    online = OnlineTeacher(teacher)
    data = IndexedDataset(items, tokenizer.pad_token_id)
    indexed = data.collate([data[i] for i in range(len(items))])
    plain = collate_for_training(items, tokenizer.pad_token_id)  # an online data policy's batch
    real = indexed["attention_mask"].bool()  # stored rows hold zeros past each item's end
    torch.testing.assert_close(stored.logits(indexed)[real], online.logits(indexed)[real])
    assert (stored.online_batches, online.online_batches) == (0, 1)
    torch.testing.assert_close(stored.logits(plain), online.logits(plain))
    assert (stored.online_batches, online.online_batches) == (1, 2) and stored.seconds > 0
    plain["teacher_logits"] = online.forward(plain)  # computed once ahead, uncounted (the probe batch)
    assert stored.logits(plain) is plain["teacher_logits"] and online.online_batches == 2
