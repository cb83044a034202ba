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
the signal-to-noise ratio of a REINFORCE estimate of d E[r] / d alpha from N samples. SNR 2 means
the sign of the estimate is right about 97.7% of the time (Phi(2), for a normal estimate).

    python benchmarks/arkd_signal.py --seed 0 --out benchmarks/results/arkd_signal.json
    python benchmarks/arkd_signal.py --seed 1 --out benchmarks/results/arkd_signal_seed1.json

Analysis of stored tables, no training (`--from-json`): the same SNR with three baselines
subtracted from the reward, the global mean of the table (as above), the mean of the reward's
own checkpoint, and ARKD's own advantage (the moving average it keeps, with its default decay,
over the rewards in the order a run sees them; alone and with ARKD's running-rms normalisation
and clip), from simulated 200-step runs over the table:

    python benchmarks/arkd_signal.py --from-json benchmarks/results/arkd_signal.json \
        benchmarks/results/arkd_signal_seed1.json --out benchmarks/results/arkd_signal_baselines.json
    python benchmarks/arkd_signal.py --smoke     # the analysis on the stored seed-0 table, small, for the tests
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

    from arkd_bench.run.artifacts import Artifacts
    from arkd_bench.run.cache import ArtifactCache, default_cache_dir
    from arkd_bench.train.distill import Distiller
    from arkd_bench.train.modes import eval_mode
    from arkd_bench.train.optim import adamw_with_schedule, forever, training_loader
    from arkd_bench.train.trial import TermGradients, TrialUpdate

    loaded = load_recipe(Path(recipe_path))
    recipe = loaded.recipe
    accelerator = Accelerator(cpu=True)
    ctx = Artifacts(loaded, ArtifactCache(default_cache_dir(), accelerator, say=print), accelerator, print)
    dataset, teacher_name, student_name = recipe.datasets[0].name, recipe.teachers[0].name, recipe.students[0].name
    tokenizer, _ = ctx.data.tokenizer(dataset, teacher_name)
    teacher = ctx.teacher(dataset, teacher_name)[0]
    student = ctx.student(dataset, teacher_name, student_name, seed, sft=recipe.train.student_sft)
    method = next(m for m in recipe.methods if m.name == "alpha-0.50")
    train = recipe.train
    d = Distiller(student=student, teacher=ctx.teacher_source(dataset, teacher_name), tokenizer=tokenizer,
                  train_items=ctx.data.train_items(dataset, teacher_name), method=method, train=train,
                  plugins=loaded.plugins, seed=seed, accelerator=ctx.accelerator,
                  probe_items=ctx.data.probe_items(dataset, teacher_name))
    rouge_probe = ctx.data.rouge_probe(dataset, teacher_name)
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


RUN_STEPS = 200  # a run of the alpha-sweep recipe
UPDATE_EVERY = 4  # ArkdOptions.update_every: rewards per policy update


def reinforce_snr(r: np.ndarray, alphas, baseline: np.ndarray | float | None = None) -> dict[str, float]:
    """One REINFORCE sample: a state and batch drawn at random, alpha drawn uniformly from the
    grid, g = (r - b) * (alpha - mean alpha) / var(alpha), an unbiased estimate of the
    least-squares slope of E[r] in alpha for any b that does not depend on the sample's alpha
    (default: b = mean r, the global baseline). SNR of the mean of N independent samples =
    sqrt(N) |E g| / sd g; N = 4 is one policy update, N = 200 a run's 50 updates pooled."""
    a = np.asarray(alphas, dtype=float)
    b = r.mean() if baseline is None else baseline
    g = (r - b) * ((a - a.mean()) / a.var())[None, None, :]
    mean, sd = g.mean(), g.std()
    snr1 = abs(mean) / sd if sd > 0 else math.inf
    return {"slope": float(mean), "sd": float(sd), "snr_1": float(snr1),
            "snr_4": float(snr1 * math.sqrt(UPDATE_EVERY)), "snr_200": float(snr1 * math.sqrt(RUN_STEPS)),
            "n_for_snr_2": float(math.inf if snr1 == 0 else (2 / snr1) ** 2)}


def arkd_advantages(rewards: np.ndarray, decay: float, normalise: bool) -> np.ndarray:
    """ARKD's advantage for each reward of a run, rewards [runs, steps] in step order, as
    ArkdWeighting._advantage computes it (vectorised over runs): z = r - b with b the moving
    average of the earlier rewards (the first reward only initialises b: z = 0); with
    `normalise`, z / s clipped to +-5, s the bias-corrected running rms of the earlier z
    (0 until there is one)."""
    from arkd_bench.weighting.arkd.rewards import _ADV_CLIP, _SCALE_DECAY

    runs, steps = rewards.shape
    z = np.zeros_like(rewards, dtype=float)
    b = rewards[:, 0].astype(float)
    sq, n = np.zeros(runs), 0
    for t in range(1, steps):
        adv = rewards[:, t] - b
        b = decay * b + (1.0 - decay) * rewards[:, t]
        if not normalise:
            z[:, t] = adv
            continue
        scale = np.sqrt(sq / (1.0 - _SCALE_DECAY**n)) if n else np.zeros(runs)
        sq = _SCALE_DECAY * sq + (1.0 - _SCALE_DECAY) * adv * adv
        n += 1
        z[:, t] = np.where(scale > 0, np.clip(adv / np.where(scale > 0, scale, 1.0), -_ADV_CLIP, _ADV_CLIP), 0.0)
    return z


BASELINES = ("global", "checkpoint", "arkd ema", "arkd ema+norm")


def simulated_snr(r: np.ndarray, alphas, runs: int, seed: int = 0, steps: int = RUN_STEPS) -> dict[str, dict]:
    """SNR of the slope estimate in simulated runs over the stored table r[c, b, a]: a run of
    `steps` steps spends steps / C consecutive steps at each checkpoint in order; each step
    draws a batch and an alpha uniformly and gets r[c, b, a]. g = advantage * (alpha - mean
    alpha) / var(alpha) with the advantage from each baseline in BASELINES. SNR of one reward
    (all g pooled), of one policy update (the mean of 4 consecutive g) and of a whole run (the
    mean of its `steps` g), each |mean| / sd over the simulated runs."""
    from arkd_bench.weighting.arkd import ArkdOptions

    decay = ArkdOptions.model_fields["baseline_decay"].default
    n_cp, n_b, n_a = r.shape
    a = np.asarray(alphas, dtype=float)
    w = (a - a.mean()) / a.var()
    cp = np.minimum(np.arange(steps) * n_cp // steps, n_cp - 1)
    rng = np.random.default_rng(seed)
    bi, ai = rng.integers(n_b, size=(runs, steps)), rng.integers(n_a, size=(runs, steps))
    rewards = r[cp[None, :], bi, ai]
    advantages = {
        "global": rewards - r.mean(),
        "checkpoint": rewards - r.mean((1, 2))[cp][None, :],
        "arkd ema": arkd_advantages(rewards, decay, normalise=False),
        "arkd ema+norm": arkd_advantages(rewards, decay, normalise=True),
    }
    out = {}
    for name, adv in advantages.items():
        g = adv * w[ai]

        def snr(x: np.ndarray) -> float:
            return float(abs(x.mean()) / x.std()) if x.std() > 0 else math.inf

        usable = steps - steps % UPDATE_EVERY
        snr1 = snr(g)
        out[name] = {"slope_sign": int(np.sign(g.mean())), "snr_1": snr1,
                     "snr_4": snr(g[:, :usable].reshape(runs, -1, UPDATE_EVERY).mean(2)),
                     f"snr_{steps}": snr(g.mean(1)),
                     "n_for_snr_2": float(math.inf if snr1 == 0 else (2 / snr1) ** 2)}
    return out


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
            "reinforce_checkpoint_baseline": reinforce_snr(r, data["alphas"], r.mean((1, 2), keepdims=True)),
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
    lines += ["", "Global baseline (b = mean of the table); N = 4 is one policy update, N = 200 the 50 updates "
                  "of a 200-step run pooled (independent samples).", "",
              "| reward | alpha | checkpoint | batch | residual | slope | SNR (N=1) | SNR (N=4) | SNR (N=200) "
              "| N for SNR 2 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, s in summary.items():
        sh, rf = s["shares"], reinforce_snr(reward_array(data, kind), alphas)
        lines.append(f"| {kind} | {sh['alpha']:.1%} | {sh['checkpoint']:.1%} | {sh['batch']:.1%} | "
                     f"{sh['residual']:.1%} | {rf['slope']:+.2e} | {rf['snr_1']:.3f} | {rf['snr_4']:.2f} | "
                     f"{rf['snr_200']:.2f} | {rf['n_for_snr_2']:.0f} |")
    return "\n".join(lines)


PAIRS = (("probe-paired", "probe"), ("batch-paired", "batch"))


def analyse(paths: list[str], runs: int, seed: int = 0) -> dict:
    """Baseline comparison over stored tables (see the module docstring); no training."""
    from arkd_bench.weighting.arkd import ArkdOptions

    result = {"inputs": list(paths), "simulated_runs": runs, "simulation_seed": seed, "run_steps": RUN_STEPS,
              "update_every": UPDATE_EVERY, "baseline_decay": ArkdOptions.model_fields["baseline_decay"].default,
              "tables": {}}
    for path in paths:
        data = json.loads(Path(path).read_text())["data"]
        summary = summarise(data)
        per_kind = {}
        for kind in summary:
            r = reward_array(data, kind)
            per_kind[kind] = {
                "exact": {"global": summary[kind]["reinforce"],
                          "checkpoint": summary[kind]["reinforce_checkpoint_baseline"]},
                "simulated": simulated_snr(r, data["alphas"], runs, seed),
                # each checkpoint's own least-squares slope of r in alpha, and the sd of its rewards
                "per_checkpoint": {
                    "slope": [reinforce_snr(r[c:c + 1], data["alphas"])["slope"] for c in range(r.shape[0])],
                    "sd": r.std(axis=(1, 2)).tolist(),
                },
            }
        ratios = {}
        for kind in ("probe", "batch", "rouge"):
            if kind in per_kind:
                ex, sim = per_kind[kind]["exact"], per_kind[kind]["simulated"]
                ratios[f"{kind}: checkpoint / global"] = ex["checkpoint"]["snr_1"] / ex["global"]["snr_1"]
                ratios[f"{kind}: arkd ema / global"] = sim["arkd ema"]["snr_1"] / sim["global"]["snr_1"]
                ratios[f"{kind}: arkd ema+norm / global"] = sim["arkd ema+norm"]["snr_1"] / sim["global"]["snr_1"]
        for paired, plain in PAIRS:
            ex_p, ex_u = per_kind[paired]["exact"], per_kind[plain]["exact"]
            sim_p, sim_u = per_kind[paired]["simulated"], per_kind[plain]["simulated"]
            ratios[f"{paired} / {plain}: both global"] = ex_p["global"]["snr_1"] / ex_u["global"]["snr_1"]
            ratios[f"{paired} / {plain}: both checkpoint"] = ex_p["checkpoint"]["snr_1"] / ex_u["checkpoint"]["snr_1"]
            ratios[f"{paired} / {plain}: both arkd ema"] = sim_p["arkd ema"]["snr_1"] / sim_u["arkd ema"]["snr_1"]
            ratios[f"{paired} / {plain}: both arkd ema+norm"] = (
                sim_p["arkd ema+norm"]["snr_1"] / sim_u["arkd ema+norm"]["snr_1"])
        result["tables"][str(data["seed"])] = {"input": path, "snr": per_kind, "ratios": ratios}
    return result


def analysis_markdown(result: dict) -> str:
    n = result["run_steps"]
    lines = [f"Simulated runs: {result['simulated_runs']} of {n} steps each ({n // result['update_every']} policy "
             f"updates of {result['update_every']} rewards), the state at each stored checkpoint for an equal "
             f"share of consecutive steps, batch and alpha drawn uniformly; ARKD's baseline decay "
             f"{result['baseline_decay']}. SNR of the REINFORCE slope estimate: per reward (N=1), of one policy "
             f"update (the mean of 4 consecutive rewards' estimates), of a whole run (the mean of its {n}); "
             f"'N for SNR 2' = (2 / SNR(N=1))^2 (independent samples).", "",
             f"| seed | reward | baseline | sign of slope | SNR (N=1) | SNR (N=4) | SNR (N={n}) | N for SNR 2 |",
             "|---|---|---|---|---|---|---|---|"]
    for seed, table in result["tables"].items():
        for kind, block in table["snr"].items():
            for name, v in block["simulated"].items():
                lines.append(f"| {seed} | {kind} | {name} | {v['slope_sign']:+d} | {v['snr_1']:.3f} | "
                             f"{v['snr_4']:.2f} | {v[f'snr_{n}']:.2f} | {v['n_for_snr_2']:.0f} |")
    lines += ["", "Exact per-reward SNR (every cell of the table equally likely) with the global and the "
                  "per-checkpoint baseline, and ratios of per-reward SNRs (exact for global/checkpoint, "
                  "simulated for ARKD's):", "", "| seed | reward | global | checkpoint |", "|---|---|---|---|"]
    for seed, table in result["tables"].items():
        for kind, block in table["snr"].items():
            ex = block["exact"]
            lines.append(f"| {seed} | {kind} | {ex['global']['snr_1']:.3f} | {ex['checkpoint']['snr_1']:.3f} |")
    lines += ["", "| seed | ratio of SNR (N=1) | value |", "|---|---|---|"]
    for seed, table in result["tables"].items():
        for name, value in table["ratios"].items():
            lines.append(f"| {seed} | {name} | {value:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/alpha-sweep.yaml")
    parser.add_argument("--checkpoints", default="0,50,100,150,199")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-rouge", action="store_true")
    parser.add_argument("--out", default=None,
                        help="JSON output (default benchmarks/results/arkd_signal.json; with --from-json: print only)")
    parser.add_argument("--from-json", nargs="+", metavar="JSON",
                        help="analyse stored tables (outputs of this script) instead of measuring")
    parser.add_argument("--runs", type=int, default=4000, help="--from-json: simulated runs per reward")
    parser.add_argument("--smoke", action="store_true",
                        help="--from-json on the stored seed-0 table with 40 simulated runs (for the tests)")
    args = parser.parse_args()
    if args.smoke:
        args.from_json = [str(Path(__file__).parent / "results" / "arkd_signal.json")]
        args.runs = 40
    if args.from_json:
        if args.out and any(Path(args.out).resolve() == Path(p).resolve() for p in args.from_json):
            parser.error("--out must not overwrite an input table")
        result = analyse(args.from_json, args.runs)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))
        print(analysis_markdown(result))
        return
    import torch

    torch.set_num_threads(2)
    out = args.out or "benchmarks/results/arkd_signal.json"
    data = collect(args.recipe, [int(s) for s in args.checkpoints.split(",")], args.batches, args.seed,
                   rouge=not args.no_rouge)
    summary = summarise(data)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"data": data, "summary": summary}, indent=1))
    print(markdown(data, summary))


if __name__ == "__main__":
    main()
