"""Host-to-device bytes of one training batch's teacher outputs, before and after they cross
in their stored dtype and are laid out on the device.

    python benchmarks/teacher_transfer.py [--vocab 49152] [--batch 8] [--length 96] [--k 64]
    python benchmarks/teacher_transfer.py --smoke   # vocabulary 2048, 2 x 16 tokens: seconds

Items: `--batch` sequences of `--length` tokens, the first third prompt (no loss), the rest
response. Teacher: a one-layer GPT-2 with the given vocabulary (random weights: only the
shapes matter here). For each teacher source (memory: float32 logits; disk: float16 log-probs;
topk: k float32 log-probs and int32 ids; tokens: one-hot targets) it prints one JSON line:

- `before_bytes`: what crossed before, a float32 [B, L, V] tensor built on the host and moved
  with `.to(device)` (rebuilt here the way it was, `host_built`);
- `after_bytes`: what `source.batch(..., device)` now hands to `.to(device)` (`sent_bytes`);
- `before_ms` / `after_ms`: seconds per batch of each on this CPU (device "cpu": no copy, the
  layout work only);
- for topk, `fkl_pass_ms`: one FKL forward and backward of the divergence pass with the sparse
  teacher (on its support) and with the teacher expanded to dense first (`dense_fkl_pass_ms`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from arkd_bench.teacher.disk import StoredTeacherOutputs
from arkd_bench.teacher.memory import TeacherOutputs
from arkd_bench.teacher.targets import OFF_TARGET_LOGIT, TokenTargets


def teacher_model(vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=1, n_head=2, n_positions=512, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def items_of(batch: int, length: int, vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    prompt = length // 3
    out = []
    for _ in range(batch):
        ids = torch.randint(0, vocab, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * length,
                    "labels": [-100] * prompt + ids[prompt:]})
    return out


def host_built(source, indices, width: int, vocab: int):
    """The batch as every source built it before: a float32 [B, width, V] tensor on the host."""
    if isinstance(source, TokenTargets):
        out = torch.full((len(indices), width, vocab), OFF_TARGET_LOGIT)
        for row, index in enumerate(indices.tolist()):
            ids = torch.tensor(source.items[index]["input_ids"][1:width], dtype=torch.long)
            out[row, torch.arange(len(ids)), ids] = 0.0
        return out
    out = torch.zeros(len(indices), width, vocab)
    for row, index in enumerate(indices.tolist()):
        if isinstance(source, TeacherOutputs):
            out[row, : source.rows[index].shape[0]] = source.rows[index]
        elif source.positions[index]:
            out[row, torch.tensor(source.positions[index])] = source.rows(index)
    return out


def timed(fn, repeats: int) -> tuple[object, float]:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    return result, (time.perf_counter() - started) / repeats * 1000


def fkl_pass_ms(teacher, mask, vocab: int, repeats: int) -> float:
    from arkd_bench.divergences import FKL, divergence_pass

    shape = teacher.shape[:-1]
    student = torch.randn(*shape, vocab, generator=torch.Generator().manual_seed(2)).requires_grad_(True)

    def step():
        out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms={"fkl": FKL()},
                              chunk_size=max(16, (1 << 19) // vocab), features=False)
        out.values.sum().backward()

    return timed(step, repeats)[1]


def sources(folder: Path, model, items: list[dict], vocab: int, k: int) -> dict:
    made = {"memory": TeacherOutputs.compute(model, items, 0)}
    for layout in ("dense", "topk"):
        (folder / layout).mkdir()
        StoredTeacherOutputs.write(folder / layout, layout, model, items, 0, vocab, k=k)
        made["disk" if layout == "dense" else "topk"] = StoredTeacherOutputs(folder / layout, layout, vocab)
    made["tokens"] = TokenTargets(items, vocab)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--k", type=int, default=64, help="top-k kept (train.teacher_topk's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="vocabulary 2048, 2 x 16 tokens, k 8: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.vocab, args.batch, args.length, args.k, args.repeats = 2048, 2, 16, 8, 1
    items = items_of(args.batch, args.length, args.vocab)
    indices, width = torch.arange(args.batch), args.length
    with tempfile.TemporaryDirectory() as tmp:
        made = sources(Path(tmp), teacher_model(args.vocab), items, args.vocab, args.k)
        for name, source in made.items():
            before, before_ms = timed(lambda: host_built(source, indices, width, args.vocab), args.repeats)
            source.sent_bytes = 0
            after = source.batch(indices, width, device="cpu")
            sent = source.sent_bytes
            after_ms = timed(lambda: source.batch(indices, width, device="cpu"), args.repeats)[1]
            row = {"source": name, "vocab": args.vocab, "batch": args.batch, "length": args.length,
                   "k": args.k if name == "topk" else None, "before_bytes": before.numel() * 4,
                   "after_bytes": sent, "ratio": round(before.numel() * 4 / sent, 1),
                   "same_values": bool(torch.equal(after.dense() if name == "topk" else after, before)),
                   "before_ms": round(before_ms, 2), "after_ms": round(after_ms, 2), "smoke": args.smoke}
            if name == "topk":
                row["fkl_pass_ms"] = round(fkl_pass_ms(after, after.present, args.vocab, args.repeats), 1)
                row["dense_fkl_pass_ms"] = round(fkl_pass_ms(after.dense(), after.present, args.vocab,
                                                             args.repeats), 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
