"""Benchmark: batched vs one-at-a-time greedy generation, and BERTScore throughput.

    HF_HUB_OFFLINE=1 python benchmarks/generation.py [--threads 2] [--results benchmarks/RESULTS.md]
    HF_HUB_OFFLINE=1 python benchmarks/generation.py --smoke   # 4 prompts, 4 new tokens, 4 pairs, seconds

The student is quickstart-sized: GPT-2 built from a config (2 layers, n_embd 128,
vocabulary 2048 from a byte-level BPE trained on standard-library docstrings),
random weights. Prompts are docstring sentences of varied length, so batches
really are left-padded. Generated tokens are counted as they are decoded (EOS
and padding excluded). Each timing is the best of `--repeats` interleaved rounds
after a warm-up round.
With `--results FILE`, the section "## Generation and BERTScore" of FILE is
replaced (or appended); the rest of the file is left alone.
--smoke runs the same code on 4 prompts (vocabulary 512, 4 new tokens, batch sizes 1, 32 and 4)
and 4 BERTScore pairs, one round after the warm-up, prints the section and a JSON line of its
numbers, and writes no file.
"""
from __future__ import annotations

import argparse
import inspect
import json
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

SECTION = "## Generation and BERTScore"
# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def docstring_sentences() -> list[str]:
    import collections
    import functools
    import itertools
    import json
    import os
    import pathlib
    import string
    import textwrap

    sentences = []
    for module in (os, pathlib, json, collections, functools, itertools, string, textwrap, re):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc:
                text = " ".join(doc.split())
                sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 20]
    return list(dict.fromkeys(sentences))  # unique, stable order


class CountingTokenizer:
    """Delegates to a tokenizer and counts the tokens it is asked to decode."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.decoded = 0

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def decode(self, tokens, **kwargs):
        self.decoded += len(tokens)
        return self._tokenizer.decode(tokens, **kwargs)


def best_times(fns: list, repeats: int) -> tuple[list[float], list]:
    """Best wall time of each function over `repeats` rounds after a warm-up round.

    Rounds interleave the functions, so a burst of load from other processes on a
    shared machine does not land on one configuration only."""
    best, results = [float("inf")] * len(fns), [None] * len(fns)
    for round_ in range(repeats + 1):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            results[k] = fn()
            if round_ > 0:
                best[k] = min(best[k], time.perf_counter() - start)
    return best, results


def bench_generation(n_prompts: int, max_new_tokens: int, repeats: int, vocab_size: int = 2048) -> tuple[list, dict]:
    from arkd_bench.evaluate.generate import GenerationSettings, generate
    from arkd_bench.testing import tiny_gpt2
    from arkd_bench.models.tokenizer import train_bpe_tokenizer

    sentences = docstring_sentences()
    tokenizer = train_bpe_tokenizer(sentences, vocab_size=vocab_size)
    model = tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4, seed=0)
    # Prompts of 1 to 4 sentences: lengths vary, so batches are padded.
    prompts = [" ".join(sentences[i : i + 1 + i % 4]) for i in range(n_prompts)]
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]

    batch_sizes = (1, 32, n_prompts)
    counters = [CountingTokenizer(tokenizer) for _ in batch_sizes]

    def runner(batch_size, counter):
        settings = GenerationSettings(
            max_new_tokens=max_new_tokens, max_prompt_length=96, batch_size=batch_size
        )

        def run():
            counter.decoded = 0
            return generate(model, counter, prompts, settings)

        return run

    seconds, results = best_times(
        [runner(b, c) for b, c in zip(batch_sizes, counters)], repeats
    )
    rows = [(b, c.decoded, t, c.decoded / t) for b, c, t in zip(batch_sizes, counters, seconds)]
    outputs = dict(zip(batch_sizes, results))
    same = sum(a == b for a, b in zip(outputs[1], outputs[32]))
    info = {
        "vocab": len(tokenizer),
        "params": sum(p.numel() for p in model.parameters()),
        "prompt_tokens": (min(lengths), max(lengths)),
        "prompt_limit": 96,
        "same_as_one_at_a_time": f"{same}/{n_prompts}",
    }
    return rows, info


def bench_bertscore(n_pairs: int, repeats: int):
    from arkd_bench.evaluate.metrics import BertScore

    # At most 300 characters (about 80 word pieces), the size of a typical answer;
    # a few "sentences" in docstrings are whole tables and would dominate the time.
    sentences = [s for s in docstring_sentences() if len(s) <= 300]
    preds = [sentences[i % len(sentences)] for i in range(n_pairs)]
    refs = [[sentences[(i * 7 + 3) % len(sentences)]] for i in range(n_pairs)]
    metric = BertScore(device="cpu")
    start = time.perf_counter()
    metric.score(preds[:1], refs[:1])
    load = time.perf_counter() - start
    (seconds,), _ = best_times([lambda: metric.score(preds, refs)], repeats)
    tokenizer, _ = metric._model()
    lengths = [len(tokenizer.encode(t)) for t in set(preds) | {r[0] for r in refs}]
    return {
        "pairs": n_pairs,
        "seconds": seconds,
        "pairs_per_s": n_pairs / seconds,
        "load_s": load,
        "sentences": len(lengths),
        "tokens": (sum(lengths) / len(lengths), max(lengths)),
    }


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def render(args, gen_rows, gen_info, bert) -> str:
    import torch

    base = gen_rows[0][3]
    full = all(tokens == args.prompts * args.max_new_tokens for _, tokens, _, _ in gen_rows)
    eos_note = "no row stopped early at EOS" if full else "some rows stopped early at EOS"
    lines = [
        SECTION,
        "",
        f"Command: `HF_HUB_OFFLINE=1 python {shlex.join(sys.argv)}`",
        f"Machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        "CPU only. The machine was shared with other jobs while this ran, so treat the "
        f"numbers as indicative (best of {args.repeats} interleaved rounds after a warm-up). "
        "One-at-a-time generation (many tiny ops) suffers most when the cores are busy.",
        "",
        f"Greedy generation, GPT-2 from config (2 layers, n_embd 128, vocab {gen_info['vocab']}, "
        f"{gen_info['params'] / 1e6:.2f} M parameters, random weights), {args.prompts} prompts "
        f"of {gen_info['prompt_tokens'][0]}-{gen_info['prompt_tokens'][1]} tokens (left-truncated "
        f"to at most {gen_info['prompt_limit']}), max_new_tokens {args.max_new_tokens}; "
        f"{eos_note}:",
        "",
        "| batch size | generated tokens | seconds | tokens/s | speed-up vs batch 1 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for batch_size, tokens, seconds, rate in gen_rows:
        lines.append(
            f"| {batch_size} | {tokens} | {seconds:.2f} | {rate:.0f} | {rate / base:.1f}x |"
        )
    lines += [
        "",
        "Batch-32 outputs identical to one-at-a-time outputs: "
        f"{gen_info['same_as_one_at_a_time']}.",
        "",
        f"BERTScore (packaged all-MiniLM-L6-v2, layer 6, batch_size 64, CPU): {bert['pairs']} "
        f"docstring-sentence pairs ({bert['sentences']} distinct sentences of at most 300 "
        "characters, mean "
        f"{bert['tokens'][0]:.0f} and max {bert['tokens'][1]} word pieces) in "
        f"{bert['seconds']:.2f} s = {bert['pairs_per_s']:.0f} pairs/s "
        f"(first call, which loads the model: {bert['load_s']:.1f} s).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, help="update this markdown file's section")
    parser.add_argument("--smoke", action="store_true",
                        help="4 prompts, 4 new tokens, vocabulary 512, 4 BERTScore pairs, 1 round: checks that it "
                             "runs; prints a JSON line, writes no file")
    args = parser.parse_args()
    vocab_size = 2048
    if args.smoke:
        if args.results:
            parser.error("--smoke writes no results file")
        args.threads, args.prompts, args.max_new_tokens, args.pairs, args.repeats = 1, 4, 4, 4, 1
        vocab_size = 512

    import torch

    torch.set_num_threads(args.threads)
    gen_rows, gen_info = bench_generation(args.prompts, args.max_new_tokens, args.repeats, vocab_size)
    bert = bench_bertscore(args.pairs, args.repeats)
    section = render(args, gen_rows, gen_info, bert)
    print(section)
    if args.smoke:
        print(json.dumps({"smoke": True, "generation": [dict(zip(("batch_size", "tokens", "seconds", "tokens_per_s"),
                                                                  row)) for row in gen_rows],
                          "same_as_one_at_a_time": gen_info["same_as_one_at_a_time"], "bertscore": bert}))
    if args.results:
        write_section(args.results, section)


if __name__ == "__main__":
    main()
