"""Independent float64 numpy implementations of every divergence and feature, written directly
from the formulas (no shared code with the package), plus test-input generators."""

from __future__ import annotations

import numpy as np
import torch

NEG_INF = -np.inf


# ---- distributions ------------------------------------------------------------------------------


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    x = logits.astype(np.float64) / temperature
    m = np.max(x, axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def _kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum a log(a/b) with 0 log 0 = 0 and a log(a/0) = inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
    return terms.sum(-1)


def fkl(p, q, **_):
    return _kl(p, q)


def rkl(p, q, **_):
    return _kl(q, p)


def tvd(p, q, **_):
    return 0.5 * np.abs(p - q).sum(-1)


def jsd(p, q, beta=0.5, **_):
    if beta == 0:
        return _kl(p, q)
    if beta == 1:
        return _kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * _kl(p, m) + (1 - beta) * _kl(q, m)


def skew_fkl(p, q, alpha=0.1, **_):
    return _kl(p, alpha * p + (1 - alpha) * q)


def skew_rkl(p, q, alpha=0.1, **_):
    return _kl(q, alpha * q + (1 - alpha) * p)


def ab(p, q, alpha=0.8, beta=0.3, **_):
    a, b = alpha, beta
    with np.errstate(divide="ignore", invalid="ignore"):
        if a == 0 and b == 0:
            both_zero = (p == 0) & (q == 0)
            terms = np.where(both_zero, 0.0, 0.5 * (np.log(p) - np.log(q)) ** 2)
        elif b == 0:
            pa, qa = p**a, q**a
            log_term = np.where(pa > 0, pa * np.log(pa / qa), 0.0)
            terms = (log_term - pa + qa) / a**2
        elif a == 0:
            qb, pb = q**b, p**b
            log_term = np.where(qb > 0, qb * np.log(qb / pb), 0.0)
            terms = (log_term - qb + pb) / b**2
        else:
            s = a + b
            terms = -(p**a * q**b - a / s * p**s - b / s * q**s) / (a * b)
    return terms.sum(-1)


def todi(p, q, sharpness=1.0, **_):
    with np.errstate(divide="ignore", invalid="ignore"):
        pw, qw = p**sharpness, q**sharpness
        w = np.where(pw + qw > 0, pw / (pw + qw), 0.5)  # = sigmoid(sharpness * log(p/q))
        fwd = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
        rev = np.where(q > 0, q * (np.log(q) - np.log(p)), 0.0)
        terms = np.where(w > 0, w * fwd, 0.0) + np.where(w < 1, (1 - w) * rev, 0.0)
    return terms.sum(-1)


REFERENCE = {
    "fkl": fkl,
    "rkl": rkl,
    "tvd": tvd,
    "jsd": jsd,
    "skew_fkl": skew_fkl,
    "skew_rkl": skew_rkl,
    "ab": ab,
    "todi": todi,
}


def entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(-1)


def akl(p, q, mu):
    """(g_head, g_tail, head_size) by a full stable sort, one row at a time."""
    out = np.zeros((3, p.shape[0]))
    for i in range(p.shape[0]):
        order = np.argsort(-p[i], kind="stable")
        before = np.concatenate([[0.0], np.cumsum(p[i][order])[:-1]])
        head = order[before < mu]
        gap = np.abs(p[i] - q[i])
        in_head = np.zeros(p.shape[1], dtype=bool)
        in_head[head] = True  # vocabulary order
        out[:, i] = gap[in_head].sum(), gap[~in_head].sum(), in_head.sum()
    return out


# every builtin with option sets covering defaults, limits and interior points
CASES = [
    ("fkl", {}),
    ("rkl", {}),
    ("tvd", {}),
    ("jsd", {}),
    ("jsd", {"beta": 0.0}),
    ("jsd", {"beta": 1.0}),
    ("jsd", {"beta": 0.2}),
    ("skew_fkl", {}),
    ("skew_fkl", {"alpha": 0.0}),
    ("skew_fkl", {"alpha": 0.5}),
    ("skew_rkl", {}),
    ("skew_rkl", {"alpha": 0.0}),
    ("skew_rkl", {"alpha": 0.5}),
    ("ab", {}),
    ("ab", {"alpha": 1.0, "beta": 0.0}),
    ("ab", {"alpha": 0.0, "beta": 1.0}),
    ("ab", {"alpha": 0.0, "beta": 0.0}),
    ("ab", {"alpha": 0.5, "beta": 0.5}),
    ("ab", {"alpha": 0.3, "beta": 0.0}),
    ("ab", {"alpha": 0.0, "beta": 0.4}),
    ("ab", {"alpha": 2.0, "beta": 1.5}),
    ("todi", {}),
    ("todi", {"sharpness": 0.5}),
]


def case_id(case):
    name, opts = case
    return name + "".join(f"-{k}={v}" for k, v in opts.items())


# ---- inputs -------------------------------------------------------------------------------------


def make_logits(kind: str, n: int, vocab: int, seed: int) -> np.ndarray:
    """float32-representable logits of one of several shapes of distribution."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.normal(size=(n, vocab)) * 2.0
    elif kind == "peaked":
        x = rng.normal(size=(n, vocab)) * 1.5
        x[np.arange(n), rng.integers(0, vocab, n)] += 12.0
    elif kind == "near_uniform":
        x = rng.normal(size=(n, vocab)) * 0.01
    elif kind == "mixed":  # rows from very flat to very sharp
        x = rng.normal(size=(n, vocab)) * np.linspace(0.05, 8.0, n)[:, None]
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


def pair(kind: str, n: int = 6, vocab: int = 17, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student logits of the same kind (independent draws)."""
    return make_logits(kind, n, vocab, seed), make_logits(kind, n, vocab, seed + 1000)


def torch_rows(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
