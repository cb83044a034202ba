"""The divergence pass alone at one shape (hidden states ``rows x hidden``, head ``vocab x
hidden``, JSD(0.5), forward + backward): this project's fused pass with and without the AKL
features and at two chunk sizes, and Liger-Kernel's peer when it can be run."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import torch

from liger_peer import liger_available, liger_pass, pass_inputs
from machine import PeakRSS


def fused_pass(rows: int, hidden: int, vocab: int, *, features: bool, chunk_size: int) -> dict:
    """Seconds and peak RSS above the start of one forward + backward; the teacher's logits are
    computed before (timed apart: `teacher_logits_s`), as a disk cache gives them."""
    from arkd_bench.divergences import JSD, LinearHead, divergence_pass

    x = pass_inputs(rows, hidden, vocab)
    started = time.perf_counter()
    teacher_logits = x["teacher_hidden"] @ x["teacher_weight"].t()
    teacher_s = time.perf_counter() - started
    h = x["student_hidden"].clone().requires_grad_()
    w = x["student_weight"].clone().requires_grad_()
    with PeakRSS() as rss:
        started = time.perf_counter()
        out = divergence_pass(student_logits=h, teacher_logits=teacher_logits, terms={"jsd": JSD()},
                              chunk_size=chunk_size, lm_head=LinearHead(w), features=features)
        loss = out.values.mean()
        loss.backward()
        loss = loss.detach()
        seconds = time.perf_counter() - started
    return {"impl": "arkd fused", "chunk_size": chunk_size, "features": features, "seconds": round(seconds, 3),
            "compile_s": None, "peak_extra_gib": round(rss.above_base_gib, 3), "loss": loss.item(),
            "teacher_head_inside": False, "teacher_logits_s": round(teacher_s, 3)}


def pass_rows(rows: int, hidden: int, vocab: int, *, chunk_sizes, skip_compile: bool,
              liger_python: str | None) -> list[dict]:
    """Ours with and without features (first chunk size), ours without at the others, then the
    peer: in this process when liger_kernel imports, else through `liger_python`, else none."""
    out = [fused_pass(rows, hidden, vocab, features=f, chunk_size=chunk_sizes[0]) for f in (True, False)]
    out += [fused_pass(rows, hidden, vocab, features=False, chunk_size=c) for c in chunk_sizes[1:]]
    if liger_available():
        for compiled in (False,) if skip_compile else (False, True):
            out.append(liger_pass(rows, hidden, vocab, compiled=compiled))
    elif liger_python:
        script = Path(__file__).with_name("liger_peer.py")
        cmd = [liger_python, str(script), "--rows", str(rows), "--hidden", str(hidden), "--vocab", str(vocab),
               "--threads", str(torch.get_num_threads())] + (["--skip-compile"] if skip_compile else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return out
