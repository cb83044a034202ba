"""How well does the first-order paired reward agree with the exact one, what does it cost, and
what do K-step rewards do to ARKD's reward noise?

Agreement. The student is trained with the fixed 0.5/0.5 mix (the alpha-sweep recipe's models,
data and train settings); at several steps it is held fixed and, on several training batches
(the run's own and others), the loop's first-order slopes are computed (Feedback.probe_grad:
one probe forward and backward in eval mode, train/trial.py's first_order_slopes) and the
update of each alpha in {0, 0.25, 0.5, 0.75, 1} is applied as a trial update (state restored
after) with the probe criterion FKL+RKL measured after it, in eval mode. The paired reward
r(alpha) - r(0.5) = c_after(0.5) - c_after(alpha) is compared with its first-order prediction
(0.5 - alpha) * (slope_fkl - slope_rkl), as ARKD's `reward: first_order` computes it: Pearson
correlation and sign agreement over all states, batches and alpha != 0.5, also for the local
slope r(0.75) - r(0.25) (the sign hypergrad follows), and the regression factor exact /
predicted. Two predictions: `first_order` from ProbeGradient.slopes (the derivative of the real
AdamW update: what the loop reports and the strategies use) and `held_preconditioner` from
ProbeGradient.held (AdamW's preconditioner and the clipping factor held at the step's values). Cost: median
seconds of the first-order measurement (probe forward and backward, both slope passes) against
one trial update (an optimizer step and a probe forward; both come after the per-term backward
they share), and a plain training step.

K-step rewards. A second run of the same length draws alpha uniformly in [0, 1] at every step
and records the probe reward (decrease of FKL+RKL over the step), the exact paired reward
(one trial at alpha = 0.5 a step) and the first-order one. For each reward and horizon K the
rewards of K consecutive steps are summed (ARKD's `reward_horizon: K`; for the probe reward the
decrease over the window), ARKD's moving-average baseline is subtracted (decay 0.9, over the
windows), and it reports: the variance of that advantage against K independent steps'
(var_ratio = Var(adv_K) / (K Var(adv_1)); below 1 means the steps' noise cancels within a
window), and the SNR of the REINFORCE estimate of the reward's slope in alpha with each step of
a window credited with the window's advantage, g = adv_K * sum_w (alpha_t - 1/2) / Var(alpha):
per window and for the whole run (|mean| / sd * sqrt(windows): a t statistic, whose own standard
error is about 1 at any K). var_per_step_ratio = var_ratio / K compares the window's reward per
step with one step's. Crediting the window's mean alpha instead gives the same g up to a constant
factor here (alphas drawn independently), so the same SNR.

Where hypergrad takes alpha. The same student trained by the loop itself (Distiller.run) with
`weighting: hypergrad` at each of --hypergrad-betas (other options at their defaults): alpha's
mean over steps 0-49, 50-99, 100-149, 150-199 and its last value. No evaluation: which mix is
better at the end is for a run-level comparison on the dev split.

    python benchmarks/first_order_reward.py --cache-dir DIR --out benchmarks/results/first_order_reward.json
    python benchmarks/first_order_reward.py --smoke   # the tiny grid of arkd_bench.testing, 8 steps, K <= 2
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from arkd_bench.weighting.base import PassSettings

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
REFERENCE = 0.5
CRITERION = ("fkl", "rkl")
HORIZONS = (1, 2, 4, 8)
BASELINE_DECAY = 0.9  # ArkdOptions.baseline_decay's default


def build(recipe_path: Path, cache_dir: Path, seed: int, method_name: str):
    """A Distiller for the recipe's first teacher/student/dataset with the fixed 0.5 method, a
    function making fresh ones (another method spec optional), the probe batch (teacher logits
    attached) and the recipe's train settings."""
    import torch
    from accelerate import Accelerator

    from arkd_bench.data.collate import collate_for_training
    from arkd_bench.recipe.validate import load_recipe
    from arkd_bench.run.artifacts import Artifacts
    from arkd_bench.run.grid import quiet_transformers
    from arkd_bench.run.cache import ArtifactCache
    from arkd_bench.train.distill import Distiller

    quiet_transformers()
    loaded = load_recipe(recipe_path)
    recipe = loaded.recipe
    accelerator = Accelerator(cpu=True)
    ctx = Artifacts(loaded, ArtifactCache(cache_dir, accelerator, say=lambda m: None), accelerator, lambda m: None)
    dataset, teacher_name, student_name = recipe.datasets[0].name, recipe.teachers[0].name, recipe.students[0].name
    tokenizer, _ = ctx.data.tokenizer(dataset, teacher_name)
    teacher = ctx.teacher(dataset, teacher_name)[0]
    method = next(m for m in recipe.methods if m.name == method_name)

    def distiller(spec=method):
        student = ctx.student(dataset, teacher_name, student_name, seed, sft=recipe.train.student_sft)
        return Distiller(student=student, teacher=ctx.teacher_source(dataset, teacher_name), tokenizer=tokenizer,
                         train_items=ctx.data.train_items(dataset, teacher_name), method=spec,
                         train=recipe.train.model_copy(update={"log_every": 1}), plugins=loaded.plugins,
                         seed=seed, accelerator=accelerator, probe_items=ctx.data.probe_items(dataset, teacher_name))

    d = distiller()
    probe = collate_for_training(d.probe_items, tokenizer.pad_token_id)
    with torch.no_grad():
        probe["teacher_logits"] = teacher(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits
    return d, distiller, probe, recipe.train


def criterion(d, batch) -> float:
    values = d._criteria([batch])
    return sum(values[c] for c in CRITERION)


def optimizer_for(d, train):
    import torch

    from arkd_bench.train.optim import adamw_with_schedule

    optimizer, scheduler = adamw_with_schedule(d.student, train.lr, train.weight_decay, train.warmup_steps,
                                               train.steps)
    clip = None
    if train.grad_clip is not None:
        clip = lambda: torch.nn.utils.clip_grad_norm_(d.student.parameters(), train.grad_clip)  # noqa: E731
    return optimizer, scheduler, clip


def split_step(d, batch, step, weights, optimizer):
    """The step's gradient with each term kept apart, installed with `weights` (as the loop does)."""
    from arkd_bench.train.trial import TermGradients

    d.strategy.alpha = weights[0]
    grads = TermGradients(d.student.parameters(), 2)
    d._micro_step(batch, step, d._step_tokens([batch]), grads)
    grads.install(grads.actual)
    return grads


class Drawn:
    """A stand-in strategy whose alpha the script sets before each step (FKL first)."""

    feedback_requests = frozenset()
    probe_grad_criteria = CRITERION
    pass_settings = PassSettings()  # the recipe's mu

    def __init__(self, terms) -> None:
        self.terms, self.alpha = list(terms), 0.5

    def weights(self, features):
        import torch

        return torch.tensor([self.alpha, 1.0 - self.alpha])

    def log_scalars(self):
        return {}


def agreement_run(d, probe, train, checkpoints: list[int], n_batches: int, seed: int) -> list[dict]:
    """Trial and first-order rewards at `checkpoints` of a fixed-0.5 run (see the docstring)."""
    import torch

    from arkd_bench.train.hooks.probe_gradient import probe_gradient
    from arkd_bench.train.optim import forever, training_loader
    from arkd_bench.train.trial import TrialUpdate

    torch.manual_seed(seed)  # dropout draws; loading cached artifacts leaves the global RNG unseeded
    d.strategy = Drawn(d.terms)
    optimizer, scheduler, clip = optimizer_for(d, train)
    batches = forever(training_loader(d.dataset, train.batch_size, seed))
    extra = forever(training_loader(d.dataset, train.batch_size, seed + 1000))  # the run sees its own batches
    records = []
    d.student.train()
    for step in range(train.steps):
        batch = next(batches)
        if step in checkpoints:
            for b in range(n_batches):
                trial_batch = batch if b == 0 else next(extra)
                grads = split_step(d, trial_batch, step, (REFERENCE, 1 - REFERENCE), optimizer)
                started = time.perf_counter()
                measured = probe_gradient(d, probe, grads, optimizer)
                first_order_s = time.perf_counter() - started
                trial = TrialUpdate(grads, optimizer, clip)
                started = time.perf_counter()
                after = [trial.run([a, 1 - a], lambda: criterion(d, probe)) for a in ALPHAS]
                trial_s = (time.perf_counter() - started) / len(ALPHAS)
                records.append({"step": step, "batch": b, "criterion_before": measured.criterion,
                                "after": dict(zip(map(str, ALPHAS), after)),
                                "slopes": measured.slopes, "update": measured.update,
                                "held": measured.held,
                                "seconds_first_order": first_order_s, "seconds_trial": trial_s})
                d.student.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        started = time.perf_counter()
        d._micro_step(batch, step, d._step_tokens([batch]))
        if clip is not None:
            clip()
        optimizer.step()
        scheduler.step()
        if step in checkpoints:
            records[-1]["seconds_plain_step"] = time.perf_counter() - started
    return records


def agreement_summary(records: list[dict], fkl: str, rkl: str) -> dict:
    exact, predicted, held = [], [], []
    local = {"exact": [], "predicted": [], "held": []}
    for r in records:
        after = {float(a): c for a, c in r["after"].items()}
        slope = r["slopes"][fkl] - r["slopes"][rkl]
        held_slope = r["held"][fkl] - r["held"][rkl]
        for a in ALPHAS:
            if a != REFERENCE:
                exact.append(after[REFERENCE] - after[a])
                predicted.append((REFERENCE - a) * slope)
                held.append((REFERENCE - a) * held_slope)
        local["exact"].append(after[0.25] - after[0.75])  # r(0.75) - r(0.25)
        local["predicted"].append(-0.5 * slope)
        local["held"].append(-0.5 * held_slope)

    def compare(x, y) -> dict:
        x, y = np.asarray(x), np.asarray(y)
        nonzero = (x != 0) & (y != 0)
        fit = float(np.dot(x, y) / np.dot(y, y)) if np.dot(y, y) > 0 else math.nan
        return {"pearson": float(np.corrcoef(x, y)[0, 1]), "sign_agreement": float((np.sign(x) == np.sign(y))[nonzero].mean()),
                "n": int(x.size), "exact_over_predicted": fit}

    costs = {k: float(np.median([r[k] for r in records if k in r]))
             for k in ("seconds_first_order", "seconds_trial", "seconds_plain_step")}
    return {"paired": {"first_order": compare(exact, predicted), "held_preconditioner": compare(exact, held)},
            "local_slope": {"first_order": compare(local["exact"], local["predicted"]),
                            "held_preconditioner": compare(local["exact"], local["held"])},
            "median_seconds": costs,
            "first_order_over_trial": costs["seconds_first_order"] / costs["seconds_trial"]}


def horizon_run(d, probe, train, seed: int) -> list[dict]:
    """A run with alpha drawn uniformly at each step; per step the probe, paired and first-order
    rewards (see the docstring)."""
    import torch

    from arkd_bench.train.hooks.probe_gradient import probe_gradient
    from arkd_bench.train.optim import forever, training_loader
    from arkd_bench.train.trial import TrialUpdate

    torch.manual_seed(seed)
    d.strategy = Drawn(d.terms)
    optimizer, scheduler, clip = optimizer_for(d, train)
    batches = forever(training_loader(d.dataset, train.batch_size, seed))
    rng = np.random.default_rng(seed)
    records = []
    d.student.train()
    before = criterion(d, probe)
    for step in range(train.steps):
        batch = next(batches)
        alpha = float(rng.uniform())
        grads = split_step(d, batch, step, (alpha, 1 - alpha), optimizer)
        measured = probe_gradient(d, probe, grads, optimizer)
        reference = TrialUpdate(grads, optimizer, clip).run([REFERENCE, 1 - REFERENCE], lambda: criterion(d, probe))
        if clip is not None:
            clip()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        after = criterion(d, probe)
        f, r = (measured.slopes[t] for t in d.terms)  # the recipe lists fkl, then rkl
        records.append({"step": step, "alpha": alpha, "before": before, "after": after,
                        "probe": before - after, "paired": reference - after,
                        "first_order": REFERENCE * f + (1 - REFERENCE) * r - measured.update,
                        "hypergrad": f - r})
        before = after
    return records


def hypergrad_run(make_distiller, beta: float) -> dict:
    """alpha's trajectory in a real loop run with hypergrad (see the docstring)."""
    from arkd_bench.recipe.schema import MethodSpec

    d = make_distiller(MethodSpec.model_validate({"name": "hypergrad", "objective": ["fkl", "rkl"],
                                                  "weighting": {"name": "hypergrad", "options": {"beta": beta}}}))
    started = time.perf_counter()
    log = [r for r in d.run().log if "strategy/alpha" in r]
    alphas = np.array([r["strategy/alpha"] for r in log])
    n = len(alphas)
    quarters = [float(alphas[i * n // 4:(i + 1) * n // 4].mean()) for i in range(4)]
    return {"beta": beta, "steps": n, "alpha_quarter_means": quarters, "alpha_last": float(alphas[-1]),
            "alpha_min": float(alphas.min()), "alpha_max": float(alphas.max()),
            "seconds_per_step": (time.perf_counter() - started) / max(n, 1),
            "probe_gradients": d.probe_gradients, "alphas": alphas.tolist()}


def windows(values: np.ndarray, k: int) -> np.ndarray:
    n = len(values) - len(values) % k
    return values[:n].reshape(-1, k)


def arkd_advantage(rewards: np.ndarray) -> np.ndarray:
    """r - b with b ARKD's moving average of the earlier rewards (the first reward only starts it)."""
    out, b = [], rewards[0]
    for r in rewards[1:]:
        out.append(r - b)
        b = BASELINE_DECAY * b + (1 - BASELINE_DECAY) * r
    return np.asarray(out)


def horizon_summary(records: list[dict], horizons=HORIZONS) -> dict:
    alphas = np.array([r["alpha"] for r in records])
    var_alpha = 1.0 / 12.0  # uniform on [0, 1]
    out = {}
    for kind in ("probe", "paired", "first_order"):
        rewards = np.array([r[kind] for r in records])
        per_k = {}
        for k in horizons:
            window_rewards = windows(rewards, k).sum(1)
            score = (windows(alphas, k) - 0.5).sum(1) / var_alpha
            adv = arkd_advantage(window_rewards)
            g = adv * score[1:]
            snr = float(abs(g.mean()) / g.std()) if g.std() > 0 else math.inf
            per_k[str(k)] = {"windows": int(len(window_rewards)), "var_advantage": float(adv.var()),
                             "slope_estimate": float(g.mean()), "snr_window": snr,
                             "snr_run": snr * math.sqrt(len(g))}
        var1 = per_k["1"]["var_advantage"]
        for k in horizons:
            per_k[str(k)]["var_ratio"] = per_k[str(k)]["var_advantage"] / (k * var1) if var1 > 0 else math.nan
            per_k[str(k)]["var_per_step_ratio"] = per_k[str(k)]["var_ratio"] / k
            per_k[str(k)]["snr_run_over_k1"] = per_k[str(k)]["snr_run"] / per_k["1"]["snr_run"]
        # autocorrelation of the per-step advantage at lag 1: negative when the steps' noise cancels
        adv1 = arkd_advantage(rewards)
        per_k["lag1_autocorrelation"] = float(np.corrcoef(adv1[:-1], adv1[1:])[0, 1])
        out[kind] = per_k
    h = np.array([r["hypergrad"] for r in records])
    out["hypergrad"] = {"mean": float(h.mean()), "sd": float(h.std()), "share_negative": float((h < 0).mean()),
                        "lag1_autocorrelation": float(np.corrcoef(h[:-1], h[1:])[0, 1])}
    return out


def pooled(result: dict, fkl: str, rkl: str) -> dict:
    """Agreement over every seed's records; per horizon, each seed's var_ratio and run SNR and their means."""
    records = [r for block in result["seeds"] for r in block["agreement"]["records"]]
    horizon = {}
    for kind in ("probe", "paired", "first_order"):
        horizon[kind] = {}
        for k in result["horizons"]:
            cells = [block["horizon"]["summary"][kind][str(k)] for block in result["seeds"]]
            horizon[kind][str(k)] = {name: {"per_seed": [c[name] for c in cells], "mean": float(np.mean([c[name] for c in cells]))}
                                     for name in ("var_ratio", "var_per_step_ratio", "snr_run", "snr_run_over_k1")}
    return {"agreement": agreement_summary(records, fkl, rkl), "horizon": horizon}


def agreement_table(agreement: dict) -> list[str]:
    """Markdown rows: how well each prediction of the paired reward agrees with the trial update's."""
    lines = ["| prediction | what | Pearson | sign agreement | exact / predicted |", "|---|---|---|---|---|"]
    for what in ("paired", "local_slope"):
        for variant in ("first_order", "held_preconditioner"):
            c = agreement[what][variant]
            lines.append(f"| {variant} | {what} | {c['pearson']:.3f} | {c['sign_agreement']:.1%} | "
                         f"{c['exact_over_predicted']:.3f} |")
    return lines


def markdown(result: dict) -> str:
    lines = []
    for block in result["seeds"]:
        a = block["agreement"]["summary"]
        lines += [f"seed {block['seed']}: agreement of r(alpha) - r(0.5) with its prediction "
                  f"({a['paired']['first_order']['n']} state/batch/alpha cells)", "", *agreement_table(a)]
        s = a["median_seconds"]
        lines += ["", f"median seconds: first-order {s['seconds_first_order']:.3f}, one trial update "
                      f"{s['seconds_trial']:.3f} (ratio {a['first_order_over_trial']:.2f}), a plain step "
                      f"{s['seconds_plain_step']:.3f}", ""]
        hsum = block["horizon"]["summary"]
        lines += ["| reward | K | windows | var ratio | per step | SNR per window | SNR of the run | vs K=1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for kind in ("probe", "paired", "first_order"):
            for k in result["horizons"]:
                c = hsum[kind][str(k)]
                lines.append(f"| {kind} | {k} | {c['windows']} | {c['var_ratio']:.2f} | {c['var_per_step_ratio']:.2f} | "
                             f"{c['snr_window']:.3f} | {c['snr_run']:.2f} | {c['snr_run_over_k1']:.2f} |")
        for h in block["hypergrad"]:
            quarters = " / ".join(f"{q:.3f}" for q in h["alpha_quarter_means"])
            lines.append(f"\nhypergrad beta {h['beta']}: alpha by quarter of the run {quarters}, last {h['alpha_last']:.3f} "
                         f"(range {h['alpha_min']:.3f}-{h['alpha_max']:.3f}), {h['seconds_per_step']:.3f} s a step")
        lines.append("")
    a = result["pooled"]["agreement"]
    lines += [f"all seeds: {a['paired']['first_order']['n']} cells", "", *agreement_table(a)]
    lines += ["", "| reward | K | var ratio (mean; per seed) | SNR of the run (mean; per seed) |", "|---|---|---|---|"]
    for kind, per_k in result["pooled"]["horizon"].items():
        for k, c in per_k.items():
            seeds = lambda name: ", ".join(f"{v:.2f}" for v in c[name]["per_seed"])  # noqa: E731
            lines.append(f"| {kind} | {k} | {c['var_ratio']['mean']:.2f}; {seeds('var_ratio')} | "
                         f"{c['snr_run']['mean']:.2f}; {seeds('snr_run')} |")
    return "\n".join(lines)


def smoke_recipe(directory: Path) -> Path:
    import yaml

    from arkd_bench.testing import TINY_RECIPE

    recipe = {**TINY_RECIPE, "methods": [{"name": "alpha-0.50", "objective": ["fkl", "rkl"],
                                          "weighting": {"name": "fixed", "options": {"weights": [0.5, 0.5]}}}],
              "train": {**TINY_RECIPE["train"], "steps": 8, "batch_size": 8}}
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/alpha-sweep.yaml")
    parser.add_argument("--cache-dir", default=None, help="artifact cache (default: arkd-bench's own)")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--checkpoints", default="0,25,50,100,150,199")
    parser.add_argument("--batches", type=int, default=4, help="training batches per checkpoint")
    parser.add_argument("--hypergrad-betas", default="0.01", help="comma-separated betas of the hypergrad runs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the full result as JSON here")
    parser.add_argument("--smoke", action="store_true", help="the tiny grid, 8 steps, in a temporary folder")
    args = parser.parse_args()

    import torch

    from arkd_bench.run.cache import default_cache_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            recipe, cache = smoke_recipe(Path(tmp)), Path(tmp) / "cache"
            checkpoints, n_batches, horizons = [0, 7], 2, (1, 2)
        else:
            recipe, cache = Path(args.recipe), Path(args.cache_dir) if args.cache_dir else default_cache_dir()
            checkpoints, n_batches = [int(c) for c in args.checkpoints.split(",")], args.batches
            horizons = HORIZONS
        started = time.time()
        result = {"recipe": str(recipe) if not args.smoke else "arkd_bench.testing.TINY_RECIPE (8 steps)",
                  "smoke": args.smoke, "alphas": list(ALPHAS), "reference": REFERENCE, "criterion": "+".join(CRITERION),
                  "horizons": list(horizons), "baseline_decay": BASELINE_DECAY, "checkpoints": checkpoints,
                  "batches_per_checkpoint": n_batches, "threads": torch.get_num_threads(), "seeds": []}
        for seed in [int(s) for s in args.seeds.split(",")]:
            d, fresh, probe, train = build(recipe, cache, seed, "alpha-0.50")
            records = agreement_run(d, probe, train, checkpoints, n_batches, seed)
            summary = agreement_summary(records, *list(d.terms))
            horizon = horizon_run(fresh(), probe, train, seed)
            hypergrad = [hypergrad_run(fresh, float(b)) for b in args.hypergrad_betas.split(",")]
            result["seeds"].append({"seed": seed, "agreement": {"summary": summary, "records": records},
                                    "horizon": {"summary": horizon_summary(horizon, horizons), "records": horizon},
                                    "hypergrad": hypergrad})
        result["pooled"] = pooled(result, *list(d.terms))
        result["seconds"] = round(time.time() - started, 1)
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k not in ("seeds", "pooled")}
                     | {"pooled": result["pooled"]}
                     | {"summaries": [{"seed": b["seed"], "agreement": b["agreement"]["summary"],
                                       "horizon": b["horizon"]["summary"],
                                       "hypergrad": [{k: v for k, v in h.items() if k != "alphas"}
                                                     for h in b["hypergrad"]]} for b in result["seeds"]]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
