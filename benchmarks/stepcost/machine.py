"""What the machine can do: GEMM throughput at the student's shapes, the CPU flags that decide
whether bf16 has hardware support, the load, and model FLOPs utilisation against that peak."""
from __future__ import annotations

import os
import platform
import threading
import time

import torch

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


class PeakRSS:
    """Highest resident set size seen while the context is open, sampled in a thread."""

    def __enter__(self):
        self.peak, self.running = 0, True
        self.base = _rss()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def above_base_gib(self) -> float:
        return max(0, self.peak - self.base) / 2**30


def _rss() -> int:
    """Resident set size in bytes (psutil, else /proc: the peer's environment may lack psutil)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return psutil.Process().memory_info().rss


def cpu_info() -> dict:
    """CPU model, the flags in FLAGS it advertises, and the 1-minute load average now."""
    flags, model = set(), platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "model name":
                    model = value.strip()
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": {name: name in flags for name in FLAGS},
            "load_average_1m": round(os.getloadavg()[0], 2)}


def gemm_gflops(m: int, k: int, n: int, dtype: torch.dtype, *, budget_s: float = 1.0) -> float:
    """GFLOPS of ``[m, k] @ [k, n]`` in ``dtype`` on the current threads: repeated until
    ``budget_s`` has passed (at least twice: the first call is a warm-up)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen).to(dtype), torch.randn(k, n, generator=gen).to(dtype)
    a @ b  # warm-up: thread pool and kernel choice
    runs, started = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - started < budget_s:
        a @ b
        runs += 1
    return 2.0 * m * k * n * runs / (time.perf_counter() - started) / 1e9


def matmul_peak(shapes: dict[str, tuple[int, int, int]], threads: int, budget_s: float) -> list[dict]:
    """One row per shape and dtype (fp32, bf16) at ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [{"shape": name, "m_k_n": list(mkn), "dtype": label, "threads": threads,
                 "gflops": round(gemm_gflops(*mkn, dtype, budget_s=budget_s), 1)}
                for name, mkn in shapes.items() for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))]
    finally:
        torch.set_num_threads(before)


def parameter_counts(model) -> dict:
    """Parameters counted once each (``total``: a tied embedding is the LM head's matrix, whose
    GEMM runs at every token, counted once) and ``non_embedding`` (the embedding matrix left out)."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    return {"total": total, "non_embedding": total - embedding.numel(),
            "tied_head": head is not None and head.weight is embedding}


def mfu(parameters: int, tokens_per_s: float, peak_gflops: float) -> float:
    """Model FLOPs utilisation: 6 x parameters x tokens/s over the peak (forward 2N, backward 4N)."""
    return 6.0 * parameters * tokens_per_s / (peak_gflops * 1e9)
