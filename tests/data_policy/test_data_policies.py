"""Data policies on real tiny models: ground truth unchanged, lambda 0 equal to it, on-policy
samples drawn from the current student, determinism, DistiLLM's threshold rule, SeqKD items."""
from __future__ import annotations

import copy

import pytest
import torch

from arkd_bench.data.base import Example
from arkd_bench.data.collate import IGNORE_INDEX, TrainingDataset, collate_for_training, shift_for_next_token
from arkd_bench.data_policy import GroundTruth, OnPolicy, Replay, TeacherGenerated
from arkd_bench.data_policy.session import DataSession, SequenceSource
from arkd_bench.evaluate.generate import GenerationSettings, generate_ids
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2
from arkd_bench.train.distill import Distiller


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def items_of(tokenizer, n: int = 24, max_length: int = 64):
    examples = [Example(prompt=f"Item {i}:", references=(SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)],)) for i in range(n)]
    return TrainingDataset(examples, tokenizer, max_length).items


def distiller(tokenizer, plugins, policy=None, steps: int = 3, seed: int = 0):
    from accelerate import Accelerator

    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl"]})
    spec = TrainSpec.model_validate({"steps": steps, "batch_size": 4, "max_length": 64, "lr": 0.01, "log_every": 1})
    items = items_of(tokenizer)
    return Distiller(student=tiny_gpt2(tokenizer, seed=1),
                     teacher=OnlineTeacher(tiny_gpt2(tokenizer, n_layer=2, seed=2)),
                     tokenizer=tokenizer, train_items=items, method=method, train=spec, plugins=plugins, seed=seed,
                     accelerator=Accelerator(cpu=True), probe_items=items[:4], data_policy=policy)


def without_data_keys(log):
    return [{k: v for k, v in record.items() if not k.startswith("data/")} for record in log]


def test_ground_truth_and_lambda_zero_train_exactly_like_no_policy(tokenizer, builtin_plugins):
    plain = distiller(tokenizer, builtin_plugins).run()
    for policy in (GroundTruth(), OnPolicy(lmbda=0.0)):
        run = distiller(tokenizer, builtin_plugins, policy).run()
        assert without_data_keys(run.log) == plain.log
        for (name, a), b in zip(plain.student.state_dict().items(), run.student.state_dict().values()):
            assert torch.equal(a, b), name
    assert run.data["generated_sequences"] == 0 and run.data["on_policy_fraction"] == 0.0
    assert GroundTruth().online is False  # the loop never builds a session for it: batches untouched


class Recording(OnPolicy):
    """On-policy batches, remembering the student each batch was drawn from."""

    name = "recording"

    def __init__(self, **options):
        super().__init__(**options)
        self.drawn = []  # (student state at the time, the batch it returned)

    def batch(self, batch, session):
        state = copy.deepcopy(session.student().state_dict())
        out = super().batch(batch, session)
        self.drawn.append((state, out))
        return out


def test_on_policy_batches_are_the_current_students_greedy_continuations(tokenizer, builtin_plugins):
    policy = Recording(lmbda=1.0, do_sample=False, max_new_tokens=6)
    d = distiller(tokenizer, builtin_plugins, policy)
    outcome = d.run()
    assert len(policy.drawn) == 3 and outcome.data["generated_sequences"] == 12
    assert outcome.data["generation_seconds"] > 0
    states = [s for s, _ in policy.drawn]
    assert any(not torch.equal(a, b) for a, b in zip(states[0].values(), states[-1].values()))  # it learned
    for state, batch in policy.drawn:
        student = tiny_gpt2(tokenizer, seed=1)
        student.load_state_dict(state)
        prompts = DataSession.prompts(batch)
        expected = generate_ids(student, tokenizer, prompts, GenerationSettings(max_new_tokens=6,
                                                                               max_prompt_length=63))
        responses = [[t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
                     for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist())]
        assert responses == expected


def session(tokenizer, policy, model, seed=0, items=()):
    return DataSession(policy=policy, student=lambda: model, tokenizer=tokenizer, max_length=64, device="cpu",
                       seed=seed, total_steps=10, probe_items=list(items))


def always_says(model, token: int) -> None:
    """Change a GPT-2 so its next token is `token` whatever the input: the final layer norm
    outputs a constant along one axis, and only `token`'s (tied) embedding is large there."""
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[:, 0] = 0.0
        model.transformer.wte.weight[token, 0] = 50.0


def test_samples_follow_the_student_as_it_changes(tokenizer):
    items = items_of(tokenizer)
    model = tiny_gpt2(tokenizer, seed=1)
    policy = OnPolicy(lmbda=1.0, do_sample=False, max_new_tokens=5)
    s = session(tokenizer, policy, model)
    batch = collate_for_training(items[:4], tokenizer.pad_token_id)
    before = policy.batch(batch, s)
    token = tokenizer.convert_tokens_to_ids("e")
    always_says(model, token)  # the "update": from now on the student answers e e e e e
    after = policy.batch(batch, s)
    responses = [[t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
                 for ids, labels in zip(after["input_ids"].tolist(), after["labels"].tolist())]
    assert responses == [[token] * 5] * 4
    assert not torch.equal(before["input_ids"], after["input_ids"])
    assert "index" not in after  # no cached teacher rows: the teacher runs on these sequences


def test_same_seed_same_samples_other_seed_other_samples(tokenizer):
    items = items_of(tokenizer)
    batch = collate_for_training(items[:4], tokenizer.pad_token_id)

    def draws(seed):
        policy = OnPolicy(lmbda=0.5, max_new_tokens=6)
        s = session(tokenizer, policy, tiny_gpt2(tokenizer, seed=1), seed=seed)
        return [policy.batch(batch, s)["input_ids"] for _ in range(6)]

    a, b, c = draws(0), draws(0), draws(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))


def test_replay_threshold_rises_when_the_validation_loss_rises(tokenizer):
    items = items_of(tokenizer)
    model = tiny_gpt2(tokenizer, seed=1)
    policy = Replay(init_threshold=0.0, check_every=2, loss_eps=0.1)
    s = session(tokenizer, policy, model, items=items[:4])
    batch = collate_for_training(items[:4], tokenizer.pad_token_id)
    assert policy.batch(batch, s) is batch  # threshold 0: ground truth, nothing generated
    start = policy.reference_loss
    s.step = 0
    policy.after_step(s)  # not a check step
    s.step = 1
    policy.after_step(s)  # a check, same weights: the loss did not rise
    assert policy.threshold == 0.0
    always_says(model, tokenizer.convert_tokens_to_ids("e"))  # the validation loss jumps
    s.step = 3
    policy.after_step(s)
    assert policy.threshold == pytest.approx(0.1) and policy.reference_loss > start + 0.1
    assert [policy.sample_threshold(t, 10) for t in (0, 5, 10)] == pytest.approx([0.1, 0.05, 0.0])


def test_replay_fills_the_buffer_then_reuses_it(tokenizer):
    items = items_of(tokenizer)
    policy = Replay(init_threshold=1.0, capacity=8, max_new_tokens=4, replay_ratio="increasing")
    s = session(tokenizer, policy, tiny_gpt2(tokenizer, seed=1), items=items[:4])
    batch = collate_for_training(items[:4], tokenizer.pad_token_id)
    s.step = 0  # increasing ratio at step 0: fresh samples only while the buffer fills
    policy.batch(batch, s), policy.batch(batch, s)
    assert policy.counts["fresh"] == 2 and len(policy.buffer) == 8
    replayed = policy.batch(batch, s)
    assert policy.counts["replayed"] == 1 and s.generated_sequences == 8
    buffered = {tuple(item["input_ids"]) for item in policy.buffer}
    rows = [tuple(t for t, m in zip(ids, mask) if m) for ids, mask in
            zip(replayed["input_ids"].tolist(), replayed["attention_mask"].tolist())]
    assert set(rows) <= buffered


def test_teacher_policy_builds_the_teachers_generations(tokenizer):
    items = items_of(tokenizer, n=6)
    teacher = tiny_gpt2(tokenizer, n_layer=2, seed=2)
    source = SequenceSource(teacher=teacher, tokenizer=tokenizer, items=items, max_length=64)
    built = TeacherGenerated(do_sample=False, max_new_tokens=5).build_sequences(source)
    expected = generate_ids(teacher, tokenizer, source.prompts, GenerationSettings(max_new_tokens=5,
                                                                                  max_prompt_length=63))
    assert [it["input_ids"][len(p):] for it, p in zip(built, source.prompts)] == expected
    assert [it["input_ids"][: len(p)] for it, p in zip(built, source.prompts)] == source.prompts
    two = TeacherGenerated(samples=2, max_new_tokens=5).build_sequences(source)
    assert len(two) == 12 and two[0]["input_ids"][: len(source.prompts[0])] == source.prompts[0]
    with pytest.raises(ValueError, match="samples > 1 needs do_sample"):
        TeacherGenerated(samples=2, do_sample=False)


def test_token_targets_make_fkl_the_cross_entropy(tokenizer, builtin_plugins):
    import torch.nn.functional as F

    from arkd_bench.teacher.targets import TokenTargets

    items = items_of(tokenizer, n=4)
    batch = collate_for_training(items, tokenizer.pad_token_id)
    targets = TokenTargets(items, len(tokenizer)).batch(torch.arange(4), batch["input_ids"].shape[1])
    logits = torch.randn(4, batch["input_ids"].shape[1], len(tokenizer))
    s, labels = shift_for_next_token(logits, batch["labels"])
    t, _ = shift_for_next_token(targets, batch["labels"])
    mask = labels != IGNORE_INDEX
    fkl = builtin_plugins.create("divergence", "fkl")(student_logits=s, teacher_logits=t, mask=mask)
    ce = F.cross_entropy(s.transpose(1, 2), labels.clamp_min(0), reduction="none")
    assert torch.allclose(fkl[mask], ce[mask], atol=1e-5)
