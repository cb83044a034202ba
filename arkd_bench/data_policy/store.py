"""Built sequences on disk: one folder per content hash, shared by every cell and rerun."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ITEMS_FILE = "items.jsonl"
META_FILE = "meta.json"


def save_sequences(folder: Path, items: list[dict], meta: dict[str, Any]) -> None:
    lines = (json.dumps({"input_ids": it["input_ids"], "labels": it["labels"]}, separators=(",", ":"))
             for it in items)
    (folder / ITEMS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def load_sequences(folder: Path) -> tuple[list[dict], dict[str, Any]]:
    """(items, meta); meta gains `sha256`, the hash of the items file (recorded in provenance)."""
    raw = (folder / ITEMS_FILE).read_bytes()
    items = []
    for line in raw.decode("utf-8").splitlines():
        item = json.loads(line)
        item["attention_mask"] = [1] * len(item["input_ids"])
        items.append(item)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    meta["sha256"] = hashlib.sha256(raw).hexdigest()
    return items, meta
