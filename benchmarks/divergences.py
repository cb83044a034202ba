"""Benchmark: the fused divergence pass against a straightforward reference and a floor.

Workload: N tokens x V vocabulary, float32 logits, AKL-weighted FKL + RKL, forward + backward.

* reference: the straightforward way: FKL and RKL computed separately with full autograd (each
  with its own softmax / log-softmax calls) and the AKL weight from a full-vocabulary sort.
* fused: ``divergence_pass`` with terms fkl + rkl and all step features, AKL weight from the
  features.
* floor: one log-softmax per model and a backward through the student's, the least any exact
  method has to do.

Each variant runs in a fresh process so allocator state does not leak between them. Peak extra
memory is the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs`` once the
inputs exist) minus the resident size just before the first run; it therefore includes the
N x V logit gradient. Time is the median of ``--repeats`` runs (the first one included).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/divergences.py   # N=2048, V=50257, 2 threads
    python benchmarks/divergences.py --tokens 256 --vocab 8192 --repeats 2   # quick look
    python benchmarks/divergences.py --smoke   # N=64, V=512, chunks of 16, 1 run, 1 thread: checks that it runs

On a machine shared with other jobs, the default (spinning) OpenMP wait policy slows the pass's
many parallel regions far more than the floor's few; ``OMP_WAIT_POLICY=PASSIVE`` avoids that.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arkd_bench.divergences import FKL, RKL, divergence_pass  # noqa: E402

MU = 0.5
CHUNK_SIZE = 64  # set from --chunk-size


def make_inputs(n: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher rows of varying sharpness (head sizes ~2 to ~200 at mu = 0.5) and a correlated
    student; built in place so no N x V temporaries outlive this function."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.empty(n, 1).uniform_(3.0, 6.0, generator=gen)
    teacher = torch.empty(n, vocab).normal_(generator=gen)
    student = torch.empty(n, vocab).normal_(generator=gen)
    student.mul_(0.6).add_(teacher, alpha=0.8).mul_(scale)
    teacher.mul_(scale)
    return student.requires_grad_(True), teacher


# ---- the three variants -------------------------------------------------------------------------


def _ref_fkl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    p, lp, lq = F.softmax(t, -1), F.log_softmax(t, -1), F.log_softmax(s, -1)
    return (p * (lp - lq)).sum(-1)


def _ref_rkl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    q, lq, lp = F.softmax(s, -1), F.log_softmax(s, -1), F.log_softmax(t, -1)
    return (q * (lq - lp)).sum(-1)


def _ref_head_weight(s: torch.Tensor, t: torch.Tensor, mu: float) -> torch.Tensor:
    p, q = F.softmax(t, -1), F.softmax(s, -1).detach()
    sorted_p, order = p.sort(-1, descending=True)
    gap = (sorted_p - q.gather(-1, order)).abs()
    cum = sorted_p.cumsum(-1)
    head = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=1) < mu  # sorted order
    g_head, g_tail = (gap * head).sum(-1), (gap * ~head).sum(-1)
    return g_head / (g_head + g_tail)


def reference(student: torch.Tensor, teacher: torch.Tensor, reduce=torch.mean) -> dict:
    fkl, rkl = _ref_fkl(student, teacher), _ref_rkl(student, teacher)
    w = _ref_head_weight(student, teacher, MU)
    reduce(w * fkl + (1 - w) * rkl).backward()
    return {"fkl": fkl.detach(), "rkl": rkl.detach(), "w": w}


def fused(student: torch.Tensor, teacher: torch.Tensor, reduce=torch.mean) -> dict:
    out = divergence_pass(
        student_logits=student,
        teacher_logits=teacher,
        terms={"fkl": FKL(), "rkl": RKL()},
        mu=MU,
        chunk_size=CHUNK_SIZE,
    )
    f = out.features
    w = f.g_head / (f.g_head + f.g_tail)
    reduce(w * out.values[0] + (1 - w) * out.values[1]).backward()
    return {"fkl": f.fkl, "rkl": f.rkl, "w": w, "head_size": f.head_size}


def floor(student: torch.Tensor, teacher: torch.Tensor, reduce=None) -> dict:
    t_logp = F.log_softmax(teacher, -1)
    F.log_softmax(student, -1).backward(t_logp)
    return {}


VARIANTS = {"reference": reference, "fused": fused, "floor": floor}


# ---- measurement --------------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def run_child(variant: str, n: int, vocab: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    student, teacher = make_inputs(n, vocab)
    fn = VARIANTS[variant]
    baseline_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    times = []
    for _ in range(repeats):
        student.grad = None
        t0 = time.perf_counter()
        fn(student, teacher)
        times.append(time.perf_counter() - t0)
    peak_extra_mb = (_status_kb("VmHWM") - baseline_kb) / 1024
    return {
        "variant": variant,
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_extra_mb": peak_extra_mb,
    }


def run_compare(n: int, vocab: int, threads: int, exact_rows: int = 128) -> dict:
    """Max abs differences fused vs reference: per-token values, AKL weight, and the logit
    gradient of the summed loss (entries O(p), not O(p / N)); plus both against a float64
    computation on the first ``exact_rows`` rows."""
    torch.set_num_threads(threads)
    student, teacher = make_inputs(n, vocab)
    ref = reference(student, teacher, reduce=torch.sum)
    ref_grad, student.grad = student.grad, None
    fus = fused(student, teacher, reduce=torch.sum)
    fus_grad = student.grad
    keys = ("fkl", "rkl", "w")
    out = {"fused_vs_reference": {k: float((fus[k] - ref[k]).abs().max()) for k in keys}}
    out["fused_vs_reference"]["grad"] = float((fus_grad - ref_grad).abs().max())
    out["grad_max_abs"] = float(ref_grad.abs().max())

    s64 = student.detach()[:exact_rows].double().requires_grad_(True)
    ex = reference(s64, teacher[:exact_rows].double(), reduce=torch.sum)
    for name, res, grad in (("fused", fus, fus_grad), ("reference", ref, ref_grad)):
        errs = {k: float((res[k][:exact_rows].double() - ex[k]).abs().max()) for k in keys}
        errs["grad"] = float((grad[:exact_rows].double() - s64.grad).abs().max())
        out[f"{name}_vs_float64_first_{exact_rows}_rows"] = errs
    heads = fus["head_size"]
    out["rows_with_head_over_64"] = int((heads > 64).sum())
    out["head_size_median_max"] = [float(heads.median()), float(heads.max())]
    return out


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{info['Model name'].strip()}, {info['CPU(s)'].strip()} CPUs"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=64, help="divergence_pass chunk_size")
    ap.add_argument("--smoke", action="store_true",
                    help="N=64, V=512, chunk size 16, 1 run, 1 thread; ends with a JSON line of the results")
    ap.add_argument("--child", choices=[*VARIANTS, "compare"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.smoke:
        args.tokens, args.vocab, args.repeats, args.threads, args.chunk_size = 64, 512, 1, 1, 16
    global CHUNK_SIZE
    CHUNK_SIZE = args.chunk_size
    common = [f"--tokens={args.tokens}", f"--vocab={args.vocab}", f"--threads={args.threads}",
              f"--chunk-size={args.chunk_size}"]
    if args.child == "compare":
        print(json.dumps(run_compare(args.tokens, args.vocab, args.threads)))
        return
    if args.child:
        result = run_child(args.child, args.tokens, args.vocab, args.repeats, args.threads)
        print(json.dumps(result))
        return

    variants = ("floor", "fused", "reference")
    res = {v: _child(["--child", v, f"--repeats={args.repeats}", *common]) for v in variants}
    cmp = _child(["--child", "compare", *common])
    fl, fu, ref = res["floor"], res["fused"], res["reference"]
    print(f"# N={args.tokens} V={args.vocab} threads={args.threads} chunk_size={args.chunk_size} "
          f"torch {torch.__version__} on {_cpu_model()}")
    print("| variant | fwd+bwd median (s) | runs (s) | peak extra RSS (MB) |")
    print("|---|---|---|---|")
    for name in ("reference", "fused", "floor"):
        r = res[name]
        runs = ", ".join(f"{t:.2f}" for t in r["times_s"])
        print(f"| {name} | {r['median_s']:.2f} | {runs} | {r['peak_extra_mb']:.0f} |")
    print(f"\nfused / floor time: {fu['median_s'] / fl['median_s']:.2f}x")
    print(f"reference / fused time: {ref['median_s'] / fu['median_s']:.1f}x")
    print(f"fused / reference extra memory: 1/{ref['peak_extra_mb'] / fu['peak_extra_mb']:.1f}")
    print("accuracy (max abs differences):", json.dumps(cmp, indent=1))
    if args.smoke:
        print(json.dumps({"smoke": True, "tokens": args.tokens, "vocab": args.vocab,
                          "median_s": {v: r["median_s"] for v, r in res.items()},
                          "peak_extra_mb": {v: r["peak_extra_mb"] for v, r in res.items()}, "accuracy": cmp}))


if __name__ == "__main__":
    main()
