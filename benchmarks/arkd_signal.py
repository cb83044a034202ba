"""How much does ARKD's immediate reward say about the action that earned it?

At several points of a quickstart-sized run (the student trained with a fixed 0.5/0.5 mix in
between), the student and its optimizer state are held fixed; from that one state, on each of
several training batches, the update for every alpha of a grid is applied as a trial update
(same batch, same state, state restored afterwards) and each reward the `arkd` strategy offers
is measured after it, in eval mode:

  probe   decrease of FKL+RKL on the held-out probe batch (the default reward)
  batch   decrease of FKL+RKL on the training batch itself
  rouge   change of Rouge-L (greedy) on the validation probe prompts (the authors' reward;
          here over one step, which is the most favourable case for it)

and the paired versions of probe and batch (minus the same reward at alpha = 0.5 from the same
state and batch). From the table r[checkpoint, batch, alpha] it reports the oracle reward curve
over alpha, a variance decomposition (alpha, checkpoint, batch within checkpoint, residual), and
the signal-to-noise ratio of a REINFORCE estimate of d E[r] / d alpha from N samples.

    python benchmarks/arkd_signal.py --recipe recipes/alpha-sweep.yaml --out benchmarks/results/arkd_signal.json
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
REFERENCE = 0.5


def collect(recipe_path: str, checkpoints: list[int], n_batches: int, seed: int, rouge: bool) -> dict:
    import torch

    from arkd_bench.data.collate import collate_for_training
    from arkd_bench.recipe.validate import load_recipe
    from accelerate import Accelerator

    from arkd_bench.runner import RunContext
    from arkd_bench.train.cache import ArtifactCache, default_cache_dir
    from arkd_bench.train.distill import Distiller
    from arkd_bench.train.optim import adamw_with_schedule, forever, training_loader
    from arkd_bench.train.trial import TermGradients, TrialUpdate, eval_mode

    loaded = load_recipe(Path(recipe_path))
    recipe = loaded.recipe
    accelerator = Accelerator(cpu=True)
    ctx = RunContext(loaded, ArtifactCache(default_cache_dir(), accelerator, say=print), accelerator, print)
    dataset, teacher_name, student_name = recipe.datasets[0].name, recipe.teachers[0].name, recipe.students[0].name
    tokenizer, _ = ctx.tokenizer(dataset, teacher_name)
    teacher = ctx.teacher(dataset, teacher_name)[0]
    student = ctx.student(dataset, teacher_name, student_name, seed, sft=recipe.train.student_sft)
    method = next(m for m in recipe.methods if m.name == "alpha-0.50")
    train = recipe.train
    d = Distiller(student=student, teacher=teacher, tokenizer=tokenizer,
                  train_items=ctx.train_items(dataset, teacher_name),
                  teacher_outputs=ctx.teacher_outputs(dataset, teacher_name), method=method, train=train,
                  plugins=loaded.plugins, seed=seed, accelerator=ctx.accelerator,
                  probe_items=ctx.probe_items(dataset, teacher_name))
    rouge_probe = ctx.rouge_probe(dataset, teacher_name)
    probe = collate_for_training(d.probe_items, tokenizer.pad_token_id)
    with torch.no_grad():
        probe["teacher_logits"] = teacher(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits

    optimizer, scheduler = adamw_with_schedule(d.student, train.lr, train.weight_decay, train.warmup_steps, train.steps)
    clip = lambda: torch.nn.utils.clip_grad_norm_(d.student.parameters(), train.grad_clip)  # noqa: E731
    batches = forever(training_loader(d.dataset, train.batch_size, seed))
    # other batches for the same checkpoint come from a loader of their own, so the run itself
    # sees exactly the batches a seed-`seed` run would
    extra = forever(training_loader(d.dataset, train.batch_size, seed + 1000))

    def measure(batch):
        out = {"probe": d._criteria([probe]), "batch": d._criteria([batch])}
        if rouge:
            with eval_mode(d.student):
                out["rouge"] = rouge_probe(d.student)
        return out

    def score(before, after):
        r = {k: sum(before[k][c] for c in ("fkl", "rkl")) - sum(after[k][c] for c in ("fkl", "rkl"))
             for k in ("probe", "batch")}
        if rouge:
            r["rouge"] = after["rouge"] - before["rouge"]
        return r

    table, started = [], time.time()
    d.student.train()
    for step in range(train.steps):
        batch = next(batches)
        if step in checkpoints:
            rows = []
            for b in range(n_batches):
                trial_batch = batch if b == 0 else next(extra)
                grads = TermGradients(d.student.parameters(), 2)
                d._micro_step(trial_batch, step, d._step_tokens([trial_batch]), grads)
                trial = TrialUpdate(grads, optimizer, clip)
                before = measure(trial_batch)
                rows.append([score(before, trial.run([a, 1.0 - a], lambda: measure(trial_batch))) for a in ALPHAS])
                d.student.zero_grad(set_to_none=True)
            table.append({"step": step, "rewards": rows})
            print(f"checkpoint step {step}: {time.time() - started:.0f} s", flush=True)
        optimizer.zero_grad(set_to_none=True)
        d._micro_step(batch, step, d._step_tokens([batch]))
        clip()
        optimizer.step()
        scheduler.step()
    return {"recipe": recipe_path, "seed": seed, "alphas": list(ALPHAS), "checkpoints": table,
            "seconds": round(time.time() - started, 1)}


def reward_array(data: dict, kind: str) -> np.ndarray:
    """r[checkpoint, batch, alpha]; kind 'probe-paired' subtracts alpha = REFERENCE."""
    base = kind.removesuffix("-paired")
    r = np.array([[[cell[base] for cell in row] for row in cp["rewards"]] for cp in data["checkpoints"]])
    if kind.endswith("-paired"):
        r = r - r[:, :, [data["alphas"].index(REFERENCE)]]
    return r


def decompose(r: np.ndarray) -> dict[str, float]:
    """Shares of the total sum of squares of r[c, b, a] (a balanced three-way layout): alpha's
    main effect, checkpoint, batch within checkpoint, and what is left (alpha x batch/step)."""
    grand = r.mean()
    total = ((r - grand) ** 2).sum()
    alpha = r.shape[0] * r.shape[1] * ((r.mean((0, 1)) - grand) ** 2).sum()
    step = r.shape[1] * r.shape[2] * ((r.mean((1, 2)) - grand) ** 2).sum()
    batch = r.shape[2] * ((r.mean(2) - r.mean((1, 2))[:, None]) ** 2).sum()
    residual = total - alpha - step - batch
    if total == 0:
        return {"alpha": 0.0, "checkpoint": 0.0, "batch": 0.0, "residual": 0.0}
    return {k: float(v / total) for k, v in
            (("alpha", alpha), ("checkpoint", step), ("batch", batch), ("residual", residual))}


def reinforce_snr(r: np.ndarray, alphas) -> dict[str, float]:
    """One REINFORCE sample: a state and batch drawn at random, alpha drawn uniformly from the
    grid, g = (r - mean r) * (alpha - mean alpha) / var(alpha), an unbiased estimate of the
    least-squares slope of E[r] in alpha. SNR of the mean of N samples = sqrt(N) |E g| / sd g."""
    a = np.asarray(alphas, dtype=float)
    g = (r - r.mean()) * ((a - a.mean()) / a.var())[None, None, :]
    mean, sd = g.mean(), g.std()
    snr1 = abs(mean) / sd if sd > 0 else math.inf
    return {"slope": float(mean), "sd": float(sd), "snr_1": float(snr1),
            "snr_4": float(snr1 * 2), "snr_50": float(snr1 * math.sqrt(50)),
            "n_for_snr_2": float(math.inf if snr1 == 0 else (2 / snr1) ** 2)}


def summarise(data: dict) -> dict:
    kinds = ["probe", "batch", "probe-paired", "batch-paired"]
    if "rouge" in data["checkpoints"][0]["rewards"][0][0]:
        kinds.insert(2, "rouge")
    out = {}
    for kind in kinds:
        r = reward_array(data, kind)
        per_checkpoint = r.mean(1)  # [c, a]
        out[kind] = {
            "oracle_curve": r.mean((0, 1)).tolist(),
            "curve_per_checkpoint": per_checkpoint.tolist(),
            "best_alpha_per_checkpoint": [data["alphas"][int(i)] for i in per_checkpoint.argmax(1)],
            "scale": float(r.std()),
            "shares": decompose(r),
            "reinforce": reinforce_snr(r, data["alphas"]),
        }
    return out


def markdown(data: dict, summary: dict) -> str:
    alphas = data["alphas"]
    steps = [cp["step"] for cp in data["checkpoints"]]
    lines = [f"Checkpoints (steps): {steps}; batches per checkpoint: {len(data['checkpoints'][0]['rewards'])}; "
             f"seed {data['seed']}; {data['seconds']} s.", "",
             "| reward | " + " | ".join(f"E r(α={a})" for a in alphas) + " | best α per checkpoint | sd(r) |",
             "|---|" + "---|" * (len(alphas) + 2)]
    for kind, s in summary.items():
        curve = " | ".join(f"{v:+.2e}" for v in s["oracle_curve"])
        lines.append(f"| {kind} | {curve} | {s['best_alpha_per_checkpoint']} | {s['scale']:.2e} |")
    lines += ["", "| reward | alpha | checkpoint | batch | residual | slope | SNR (N=1) | SNR (N=4) | SNR (N=50) "
                  "| N for SNR 2 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, s in summary.items():
        sh, rf = s["shares"], s["reinforce"]
        lines.append(f"| {kind} | {sh['alpha']:.1%} | {sh['checkpoint']:.1%} | {sh['batch']:.1%} | "
                     f"{sh['residual']:.1%} | {rf['slope']:+.2e} | {rf['snr_1']:.3f} | {rf['snr_4']:.2f} | "
                     f"{rf['snr_50']:.2f} | {rf['n_for_snr_2']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/alpha-sweep.yaml")
    parser.add_argument("--checkpoints", default="0,50,100,150,199")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-rouge", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/arkd_signal.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    data = collect(args.recipe, [int(s) for s in args.checkpoints.split(",")], args.batches, args.seed,
                   rouge=not args.no_rouge)
    summary = summarise(data)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"data": data, "summary": summary}, indent=1))
    print(markdown(data, summary))


if __name__ == "__main__":
    main()
