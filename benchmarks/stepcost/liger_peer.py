"""The peer of the fused pass: Liger-Kernel's LigerFusedLinearJSDLoss (its chunked pure-PyTorch
path runs on CPU without triton), never a dependency. Needs only torch and liger_kernel, so it
also runs as a script in a separate environment:

    /path/to/venv/bin/python benchmarks/stepcost/liger_peer.py --rows 2048 --hidden 576 --vocab 49152
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def pass_inputs(rows: int, hidden: int, vocab: int, seed: int = 0) -> dict:
    """Student and teacher hidden states and heads, the same for every implementation."""
    gen = torch.Generator().manual_seed(seed)
    scale = hidden ** -0.5
    return {"student_hidden": torch.randn(rows, hidden, generator=gen),
            "student_weight": torch.randn(vocab, hidden, generator=gen) * scale,
            "teacher_hidden": torch.randn(rows, hidden, generator=gen),
            "teacher_weight": torch.randn(vocab, hidden, generator=gen) * scale,
            "labels": torch.randint(0, vocab, (rows,), generator=gen)}


def liger_available() -> bool:
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss  # noqa: F401
    except Exception:  # not installed, or its import needs what this machine lacks
        return False
    return True


def liger_pass(rows: int, hidden: int, vocab: int, *, compiled: bool, chunk_size: int = 1024) -> dict:
    """JSD(0.5) forward + backward through LigerFusedLinearJSDLoss: seconds of the timed call,
    compile seconds (the first call, `compiled` only), peak RSS above the start, the loss."""
    from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

    from machine import PeakRSS  # noqa: I001  (benchmarks/stepcost on sys.path)

    x = pass_inputs(rows, hidden, vocab)
    loss_fn = LigerFusedLinearJSDLoss(weight_hard_loss=0.0, weight_soft_loss=1.0, beta=0.5, compiled=compiled,
                                      chunk_size=chunk_size)

    def call():
        h = x["student_hidden"].clone().requires_grad_()
        w = x["student_weight"].clone().requires_grad_()
        loss = loss_fn(h, w, x["teacher_hidden"], x["teacher_weight"], x["labels"])
        loss.backward()
        loss = loss.detach()
        return loss.item()

    compile_s = None
    if compiled:
        started = time.perf_counter()
        call()
        compile_s = round(time.perf_counter() - started, 2)
    with PeakRSS() as rss:
        started = time.perf_counter()
        loss = call()
        seconds = time.perf_counter() - started
    return {"impl": "liger " + ("compiled" if compiled else "eager"), "chunk_size": chunk_size, "features": False,
            "seconds": round(seconds, 3), "compile_s": compile_s, "peak_extra_gib": round(rss.above_base_gib, 3),
            "loss": loss, "teacher_head_inside": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for compiled in (False,) if args.skip_compile else (False, True):
        print(json.dumps(liger_pass(args.rows, args.hidden, args.vocab, compiled=compiled)), flush=True)


if __name__ == "__main__":
    main()
