"""What each row of a run writes: the signatures of FKL, RKL and the rest in their generations.

    python benchmarks/generation_signatures.py RUN_DIR [--side-by-side teacher,sft,fkl] [--examples 4]
        [--out signatures.json] [--markdown signatures.md]
    python benchmarks/generation_signatures.py --smoke   # the stored smollm2-docstrings run, seconds

Per row (method, all seeds pooled) from each cell's generations.jsonl:
- the commonest first word of an answer and the share of answers that start with it (a student
  that copies its teacher's opening shows it first);
- repetition: the share of answers in which some word 3-gram occurs twice or more (the loop that
  mode-seeking or under-trained students fall into), and distinct-2 (distinct word bigrams over
  all bigrams, pooled over the row's answers);
- the mean answer length in words, and the row's mean Rouge-L (from the per-example scores).
Side by side: the first examples' predictions of the named rows (seed 0, or the row's first seed).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

STORED_RUN = Path(__file__).resolve().parent / "results" / "runs" / "smollm2-docstrings"


def read_rows(run_dir: Path) -> dict[str, list[dict]]:
    """{row: [generation records with their seed]} over the run's finished cells; a row is a
    method, or "student: method" when the run has several students."""
    cells = []
    for cell_dir in sorted((run_dir / "cells").iterdir()):
        if (cell_dir / "generations.jsonl").exists():
            cells.append((cell_dir, json.loads((cell_dir / "cell.json").read_text(encoding="utf-8"))))
    # with several students a row is named by its student too (each student has its own sft row)
    students = {cell["student"] for _, cell in cells if cell["student"]}
    rows: dict[str, list[dict]] = defaultdict(list)
    for cell_dir, cell in cells:
        name = f"{cell['student']}: {cell['method']}" if len(students) > 1 and cell["student"] else cell["method"]
        for line in (cell_dir / "generations.jsonl").read_text(encoding="utf-8").splitlines():
            rows[name].append({**json.loads(line), "cell_seed": cell["seed"]})
    return dict(rows)


def repeats_a_trigram(words: list[str]) -> bool:
    trigrams = Counter(zip(words, words[1:], words[2:]))
    return any(n > 1 for n in trigrams.values())


def signature(records: list[dict]) -> dict:
    answers = [r["prediction"].split() for r in records]
    first = Counter(w[0] for w in answers if w)
    word, count = first.most_common(1)[0] if first else ("", 0)
    bigrams = [b for w in answers for b in zip(w, w[1:])]
    rouge = [r["scores"]["rougeL"] for r in records if "rougeL" in r.get("scores", {})]
    return {"answers": len(answers), "first_word": word, "first_word_share": count / max(1, len(answers)),
            "repeats_trigram": sum(map(repeats_a_trigram, answers)) / max(1, len(answers)),
            "distinct_2": len(set(bigrams)) / max(1, len(bigrams)),
            "mean_words": sum(map(len, answers)) / max(1, len(answers)),
            "rougeL": sum(rouge) / len(rouge) if rouge else None}


def side_by_side(rows: dict[str, list[dict]], methods: list[str], examples: int) -> list[dict]:
    out = []
    for k in range(examples):
        entry = {}
        for method in methods:
            records = rows.get(method, [])
            seeds = sorted({r["cell_seed"] for r in records}, key=lambda s: (s is None, s))
            pick = [r for r in records if r["cell_seed"] == (seeds[0] if seeds else None) and r["example"] == k]
            if pick:
                entry.setdefault("prompt", pick[0]["prompt"])
                entry.setdefault("reference", pick[0]["references"][0])
                entry[method] = pick[0]["prediction"]
        out.append(entry)
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(signatures: dict[str, dict], pairs: list[dict], methods: list[str]) -> str:
    lines = ["| row | answers | commonest first word (share) | repeats a 3-gram | distinct-2 | mean words | Rouge-L |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for method, s in signatures.items():
        rouge = "-" if s["rougeL"] is None else f"{s['rougeL']:.2f}"
        lines.append(f"| {method} | {s['answers']} | {_cell(s['first_word'])} ({s['first_word_share']:.0%}) | "
                     f"{s['repeats_trigram']:.0%} | {s['distinct_2']:.2f} | {s['mean_words']:.1f} | {rouge} |")
    if pairs and methods:
        lines += ["", "| prompt | reference | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
        for entry in pairs:
            question = entry.get("prompt", "").split("user\n")[-1].split("<|im_end|>")[0]
            cells = [question, entry.get("reference", "-"), *(entry.get(m, "-") for m in methods)]
            lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--side-by-side", default="teacher,sft", help="rows shown side by side, comma-separated")
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--smoke", action="store_true", help="the stored smollm2-docstrings run")
    args = parser.parse_args()
    run_dir = STORED_RUN if args.smoke else args.run_dir
    if run_dir is None:
        parser.error("give RUN_DIR, or --smoke")
    rows = read_rows(run_dir)
    signatures = {method: signature(records) for method, records in rows.items()}
    methods = [m for m in args.side_by_side.split(",") if m]
    pairs = side_by_side(rows, methods, args.examples)
    markdown = render(signatures, pairs, methods)
    print(markdown)
    if args.out:
        args.out.write_text(json.dumps({"run": run_dir.name, "signatures": signatures, "side_by_side": pairs},
                                       indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(markdown + "\n", encoding="utf-8")
    if args.smoke:
        print(json.dumps({"smoke": True, "signatures": signatures, "side_by_side": pairs}))


if __name__ == "__main__":
    main()
