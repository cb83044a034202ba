"""Every benchmark script has a --smoke mode, and it runs against today's package.

Each case runs `python benchmarks/X.py --smoke` as a subprocess from the repository root
(offline, one OpenMP thread) and checks what it printed, not only its exit code. The scripts
smoke-tested in tests/benchmarks/test_benchmarks_arkd.py are not run again here. A new script fails
`test_every_script_has_a_smoke_mode` until it has a --smoke option and a case below.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
# smoke-tested in tests/benchmarks/test_benchmarks_arkd.py
TESTED_ELSEWHERE = {"benchmarks/arkd_policy_budget.py", "benchmarks/arkd_signal.py",
                    "benchmarks/first_order_reward.py", "benchmarks/multiple_comparisons.py"}


def scripts() -> list[str]:
    found = sorted(BENCHMARKS.glob("*.py")) + sorted((BENCHMARKS / "gpu").glob("*.py"))
    return [str(p.relative_to(ROOT)) for p in found]


def _results_digest() -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((BENCHMARKS / "results").rglob("*")) if p.is_file()}


def smoke(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    before = _results_digest()
    done = subprocess.run([sys.executable, script, "--smoke"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert _results_digest() == before, f"{script} --smoke changed benchmarks/results/"
    return done


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def last_json(stdout: str) -> dict:
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["smoke"] is True
    return result


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ---- one check per script ------------------------------------------------------------------------


def check_alpha_trajectories(done):
    result = last_json(ok(done))
    rows = {(r["method"], r["quantity"]): r["means"] for r in result["rows"]}
    assert {("akl", "weight/fkl"), ("arkd", "strategy/alpha"), ("arkd", "strategy/alpha_expected")} <= set(rows)
    assert not any(method == "mix" for method, _ in rows)  # a fixed mix is left out
    for means in rows.values():
        assert len(means) == 4 and all(finite(m) and 0.0 <= m <= 1.0 for m in means)


def check_generation_signatures(done):
    result = last_json(ok(done))  # the stored smollm2-docstrings run: 2 seeds x 40 answers a trained row
    rows = result["signatures"]
    assert {"teacher", "sft", "fkl", "rkl", "echo"} <= set(rows)
    assert (rows["sft"]["first_word"], rows["sft"]["first_word_share"]) == ("Return", 1.0)
    assert rows["fkl"]["first_word"] == "It" and rows["fkl"]["answers"] == 80
    assert rows["fkl"]["rougeL"] == pytest.approx(8.80, abs=0.01)  # the stored leaderboard's mean
    assert rows["echo"]["repeats_trigram"] == 0.0 and 0.0 < rows["fkl"]["repeats_trigram"] < 1.0
    assert [sorted(e) for e in result["side_by_side"]] == [["prompt", "reference", "sft", "teacher"]] * 4


def check_hypergrad_signs(done):
    result = last_json(ok(done))
    (cell,) = result["cells"]
    assert cell["method"] == "hypergrad" and len(cell["quarters"]) == 4  # 8 steps: 2 a quarter
    for q in cell["quarters"]:
        assert q["steps"] == 2 and 0.0 <= q["up"] <= 1.0 and q["lag1"] in (0.0, 1.0)
        assert all(finite(q[k]) for k in ("t", "drift", "persistence")) and q["persistence"] >= 0.0


def check_divergences(done):
    result = last_json(ok(done))
    assert (result["tokens"], result["vocab"]) == (64, 512)
    assert set(result["median_s"]) == {"reference", "fused", "floor"}
    assert all(finite(t) and t > 0 for t in result["median_s"].values())
    assert all(finite(m) for m in result["peak_extra_mb"].values())
    accuracy = result["accuracy"]
    assert set(accuracy["fused_vs_reference"]) == {"fkl", "rkl", "w", "grad"}
    assert all(finite(e) and e < 1e-4 for e in accuracy["fused_vs_reference"].values())
    assert all(finite(e) and e < 1e-4 for e in accuracy["fused_vs_float64_first_128_rows"].values())


def check_generation(done):
    result = last_json(ok(done))
    rows = result["generation"]
    assert [r["batch_size"] for r in rows] == [1, 32, 4]
    for r in rows:
        assert 0 < r["tokens"] <= 4 * 4 and finite(r["tokens_per_s"]) and r["tokens_per_s"] > 0
    assert re.fullmatch(r"[0-4]/4", result["same_as_one_at_a_time"])
    bert = result["bertscore"]
    assert bert["pairs"] == 4 and finite(bert["pairs_per_s"]) and bert["pairs_per_s"] > 0
    assert "## Generation and BERTScore" in done.stdout


def check_real_model_step(done):
    stdout = ok(done)
    assert "scratch 4-layer Llama" in stdout  # the stand-in, said so
    rows = {r["config"]: r for r in json_lines(stdout)}
    assert list(rows) == ["baseline: fp32, sdpa, 1 thread, features off", "AKL features on", "eager attention",
                          "2 threads", "bf16 autocast", "length-grouped batches",
                          "torch.compile (eager) of the student"]
    for r in rows.values():
        assert r["teacher_outputs"] == "disk" and r["fused_head"] and r["batch"] == 2 and r["steps"] == 1
        assert finite(r["tokens_per_s"]) and r["tokens_per_s"] > 0 and finite(r["peak_step_memory_gib"])
        assert 0 < r["mfu"] < 1 and 0 <= r["padding_fraction"] < 1
    assert rows["AKL features on"]["features"] and not rows["bf16 autocast"]["features"]
    assert (rows["eager attention"]["attn"], rows["2 threads"]["threads"]) == ("eager", 2)
    assert rows["bf16 autocast"]["autocast"] == "bfloat16"
    assert rows["length-grouped batches"]["padding_fraction"] <= rows["eager attention"]["padding_fraction"]
    assert rows["torch.compile (eager) of the student"]["compile_s"] > 0
    # the one table: the machine, the GEMM peak in both dtypes, every configuration, the pass alone
    assert re.search(r"avx2 (yes|no), avx512f (yes|no), avx512_bf16 (yes|no)", stdout)
    assert re.search(r"\| LM head 768 x 64 x 514 \| bf16 \| 1 \| [\d.]+ \|", stdout)
    assert all(f"| {name} |" in stdout for name in rows)
    alone = [line for line in stdout.splitlines() if line.startswith("| arkd fused |")]
    assert len(alone) == 3 and len({line.rsplit("|", 2)[1] for line in alone}) == 1  # one loss, features or not


def check_teacher_transfer(done):
    rows = {r["source"]: r for r in json_lines(ok(done))}
    assert set(rows) == {"memory", "disk", "topk", "tokens"}
    assert all(r["smoke"] and r["same_values"] for r in rows.values())
    before = 2 * 16 * 2048 * 4  # the float32 [B, L, V] batch each source built on the host
    assert all(r["before_bytes"] == before for r in rows.values())
    # float16 rows of the response positions only; k values and ids; the target ids
    assert rows["tokens"]["after_bytes"] < rows["topk"]["after_bytes"] < rows["disk"]["after_bytes"] < before / 2
    assert rows["topk"]["fkl_pass_ms"] > 0 and rows["topk"]["dense_fkl_pass_ms"] > 0


def check_teacher_outputs_error(done):
    stdout = ok(done)
    assert "scratch 4-layer Llama" in stdout
    rows = {(r["student"], r["cache"]): r for r in json_lines(stdout)}
    caches = ["disk (float16 log-probs)", "topk k=8", "topk k=64"]
    assert set(rows) == {(s, c) for s in ("pruned-2 (untrained)", "teacher itself") for c in caches}
    quantities = {"fkl", "rkl", "tvd", "g_head", "g_tail", "head_size", "akl_fkl_weight"}
    for row in rows.values():
        assert row["tokens"] > 0 and set(row["measures"]) == quantities
        assert all(finite(v) for m in row["measures"].values() for v in m.values())
    itself = {c: rows[("teacher itself", c)]["measures"] for c in caches}
    assert all(abs(m["fkl"]["exact"]) < 1e-6 for m in itself.values())  # a model against itself
    # float16 rounding costs less than dropping all but 8 log-probs
    assert itself["disk (float16 log-probs)"]["tvd"]["mean_abs_err"] < itself["topk k=8"]["tvd"]["mean_abs_err"]


def check_train_step(done):
    rows = json_lines(ok(done))
    step = rows[0]
    assert step["vocab"] == 256 and finite(step["tokens_per_s"]) and step["tokens_per_s"] > 0
    grids = {r["grid"]: r for r in rows if "grid" in r}
    assert set(grids) == {"cached", "online"}
    # the cached grid computes teacher outputs in one pass; the online one per batch
    assert (grids["cached"]["teacher_passes"], grids["cached"]["online_teacher_batches"]) == (1, 0)
    assert grids["online"]["teacher_passes"] == 0 and grids["online"]["online_teacher_batches"] > 0
    assert "teacher_time_ratio_cached_over_online" in rows[-1]


def check_weighting(done):
    result = last_json(ok(done))
    final = result["final_alpha"]
    assert set(final) == {"beta/ema", "beta/value", "logit_normal/ema", "logit_normal/value", "bernoulli"}
    assert all(len(v) == 2 and all(finite(a) and 0.0 <= a <= 1.0 for a in v) for v in final.values())
    assert len(result["overhead_ms"]) == 5
    assert all(finite(ms) and ms > 0 for ms in result["overhead_ms"].values())


def check_gpu_distill_step(done):
    import torch

    lines = done.stdout.splitlines()
    assert lines and lines[0].startswith("# smoke on ")
    if not torch.cuda.is_available():
        assert "no CUDA device" in lines[0]  # runs on the CPU, and says so
    rows = json_lines(done.stdout)
    assert [r.get("dtype") for r in rows[:2]] == ["bfloat16", "float32"]
    assert all(finite(r["tokens_per_s"]) and r["tokens_per_s"] > 0 for r in rows)
    ok(done)
    assert [r["teacher_outputs"] for r in rows[2:]] == ["online", "disk"]
    assert all(r["autocast"] == "bf16" for r in rows[2:])


CHECKS = {
    "benchmarks/alpha_trajectories.py": check_alpha_trajectories,
    "benchmarks/divergences.py": check_divergences,
    "benchmarks/generation.py": check_generation,
    "benchmarks/generation_signatures.py": check_generation_signatures,
    "benchmarks/hypergrad_signs.py": check_hypergrad_signs,
    "benchmarks/real_model_step.py": check_real_model_step,
    "benchmarks/teacher_outputs_error.py": check_teacher_outputs_error,
    "benchmarks/teacher_transfer.py": check_teacher_transfer,
    "benchmarks/train_step.py": check_train_step,
    "benchmarks/weighting.py": check_weighting,
    "benchmarks/gpu/distill_step.py": check_gpu_distill_step,
}
# run a whole tiny grid (tokenizer, SFT, cells, evaluation, reports) or five processes: tens of
# seconds each on a busy 2-core machine
SLOW = {"benchmarks/alpha_trajectories.py", "benchmarks/hypergrad_signs.py", "benchmarks/train_step.py", "benchmarks/divergences.py"}


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in CHECKS])
def test_smoke(script):
    CHECKS[script](smoke(script))


def test_every_script_has_a_smoke_mode():
    for script in scripts():
        text = (ROOT / script).read_text(encoding="utf-8")
        assert re.search(r"add_argument\(\s*[\"']--smoke[\"']", text), f"{script} has no --smoke option"
    assert set(scripts()) == set(CHECKS) | TESTED_ELSEWHERE, "a benchmark script without a smoke test"
    elsewhere = (ROOT / "tests" / "benchmarks" / "test_benchmarks_arkd.py").read_text(encoding="utf-8")
    assert all(Path(s).name in elsewhere for s in TESTED_ELSEWHERE)
