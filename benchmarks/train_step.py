"""Distillation step throughput, and what the teacher cache saves on a 5-method grid.

    python benchmarks/train_step.py [--threads 2] [--skip-large] [--grid-steps 60]
    python benchmarks/train_step.py --smoke     # tiny models and grid, seconds: checks that it runs

1. Tokens/s of one distillation step (student forward + teacher forward + fused FKL/RKL
   pass + backward + AdamW) for the quickstart sizes and for a GPT-2-size student with a
   GPT-2-medium-size teacher (random init from configs, vocabulary 50257, short sequences).
2. A 5-method grid on the quickstart data (teacher and SFT student taken from a warm
   cache, so only distillation is timed) run twice: with the teacher cache and with
   `teacher_cache_mb: 0` (teacher online). Reports teacher passes, teacher seconds and wall time.

The loss is what the loop minimises: the weighted per-token sum of the terms, averaged over
the response tokens.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent


def gpt2(vocab: int, n_layer: int, n_embd: int, n_head: int, seed: int, device="cpu", dtype=torch.float32):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=1024,
                        bos_token_id=vocab - 1, eos_token_id=vocab - 1)
    return GPT2LMHeadModel(config).to(device=device, dtype=dtype)


def step_throughput(name, vocab, teacher_shape, student_shape, batch, seq, steps=4,
                    device="cpu", dtype=torch.float32) -> dict:
    """Time one full distillation step; the student trains in `dtype` under autocast."""
    from arkd_bench.divergences import FKL, RKL, divergence_pass
    from arkd_bench.train.distill import weighted_token_loss

    teacher = gpt2(vocab, *teacher_shape, seed=0, device=device, dtype=dtype).eval()
    student = gpt2(vocab, *student_shape, seed=1, device=device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones(batch, seq - 1, dtype=torch.bool, device=device)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32)
    terms = {"fkl": FKL(), "rkl": RKL()}
    weights = torch.tensor([0.5, 0.5])

    def one_step():
        with torch.no_grad():
            t = teacher(input_ids=ids).logits[:, :-1]
        with autocast:
            s = student(input_ids=ids).logits[:, :-1]
        out = divergence_pass(student_logits=s, teacher_logits=t, mask=mask, terms=terms)
        ((weighted_token_loss(out.values, weights) * mask).sum() / mask.sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    one_step()  # warm-up
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync()
    seconds = (time.perf_counter() - started) / steps
    params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    return {"setting": name, "teacher_params_M": round(params(teacher), 1), "student_params_M": round(params(student), 1),
            "batch": batch, "seq": seq, "vocab": vocab, "seconds_per_step": round(seconds, 3),
            "tokens_per_s": round(batch * seq / seconds, 1)}


def grid_recipe(steps: int, smoke: bool = False) -> dict:
    recipe = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    recipe["name"] = "bench-grid"
    recipe["train"]["steps"] = steps
    recipe["eval"] = {"metrics": ["rougeL"], "max_examples": 20, "baselines": [],
                      "generation": {"max_new_tokens": 16}}
    if smoke:  # the same data and grid, tiny: a 320-token vocabulary, 1-layer models, 2 methods
        recipe["tokenizer"] = {"vocab_size": 320}
        for role, width in (("teachers", 32), ("students", 16)):
            model = recipe[role][0]
            model["scratch"]["config"].update(n_layer=1, n_embd=width, n_head=2)
            model["sft"] = {"steps": 1, "batch_size": 4}
        recipe["datasets"][0]["options"] = {"max_train": 32, "valid_size": 4, "test_size": 2}
        recipe["methods"] = [m for m in recipe["methods"] if m["name"] in ("fkl", "akl")]
        recipe["train"].update(batch_size=4, max_length=48, warmup_steps=0)
        recipe["eval"].update(metrics=["tf_fkl"], max_examples=2, generation={"max_new_tokens": 2})
    return recipe


def run_grid(recipe: dict, work: Path, cache: Path, label: str) -> dict:
    from arkd_bench.recipe.validate import load_recipe
    from arkd_bench.run.grid import run_recipe

    path = work / f"{label}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded = load_recipe(path)
    started = time.perf_counter()
    run_recipe(loaded, work / label, cache_dir=cache, say=lambda m: None)
    wall = time.perf_counter() - started
    stats = json.loads((work / label / "cache.json").read_text())
    return {"grid": label, "wall_s": round(wall, 1), "teacher_passes": stats["teacher_passes"],
            "online_teacher_batches": stats["online_teacher_batches"], "teacher_s": stats["teacher_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--grid-steps", type=int, default=60)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models (vocabulary 256) and a 2-method, 2-step grid: checks that it runs")
    args = parser.parse_args()
    torch.set_num_threads(1 if args.smoke else args.threads)
    if args.smoke:
        rows = [step_throughput("smoke (teacher 1x32, student 1x16)", 256, (1, 32, 2), (1, 16, 2), 2, 16, steps=1)]
    else:
        rows = [step_throughput("quickstart (teacher 2x128, student 1x64)", 2048, (2, 128, 4), (1, 64, 2), 32, 48)]
    if not args.skip_large and not args.smoke:
        rows.append(step_throughput("gpt2-medium-size teacher, gpt2-size student", 50257, (24, 1024, 16),
                                    (12, 768, 12), 4, 64, steps=2))
    for row in rows:
        print(json.dumps(row))
    with tempfile.TemporaryDirectory() as tmp:
        work, cache = Path(tmp), Path(tmp) / "cache"
        recipe = grid_recipe(2 if args.smoke else args.grid_steps, smoke=args.smoke)
        warm = dict(recipe, methods=recipe["methods"][:1])
        warm["train"] = dict(recipe["train"], steps=1)
        run_grid(warm, work, cache, "warm-up")  # trains the teacher and SFT student into the cache
        cached = run_grid(recipe, work, cache, "cached")
        online = run_grid(dict(recipe, train=dict(recipe["train"], teacher_cache_mb=0)), work, cache, "online")
        for row in (cached, online):
            print(json.dumps(row))
        ratio = round(cached["teacher_s"] / online["teacher_s"], 3) if online["teacher_s"] else None
        print(json.dumps({"teacher_time_ratio_cached_over_online": ratio}))


if __name__ == "__main__":
    main()
