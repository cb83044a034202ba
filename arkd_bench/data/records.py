"""From raw records (dicts) to split examples: field mapping, prompt templates, filters, dedup.

Shared by every reader of record-shaped data: the JSONL/JSON reader here, and a
Hugging Face `datasets` reader later, which only has to produce `(where, dict)`
pairs (`where` like "dolly[train]#12") and subclass `RecordOptions`.

Prompt templates are `str.format` strings with three placeholders:
  {instruction} and {prompt}: the value of `prompt_field` (two names for one value),
  {context}: the value of `context_field` ("" when that is unset, null or empty).
`template` formats records without context and `template_with_context` those
with a non-empty one, so Dolly's context is folded in only when there is some.
"""
from __future__ import annotations

import string
from collections import Counter
from typing import Literal, Optional, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from arkd_bench.data.base import DataError, Example, SourceOptions, SplitSize, seeded_split

Record = tuple[str, object]  # (where it came from, e.g. "data.jsonl:12"; the parsed JSON value)
PLACEHOLDERS = ("instruction", "prompt", "context")
SplitName = Literal["train", "valid", "test"]

# Our own wording; MiniLLM's processed files already hold formatted prompts, so
# the `minillm` preset uses them verbatim.
DOLLY_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
DOLLY_TEMPLATE_WITH_CONTEXT = "### Instruction:\n{instruction}\n\n### Context:\n{context}\n\n### Response:\n"
PRESETS: dict[str, dict] = {
    "prompt_response": {"prompt_field": "prompt", "response_field": "response", "template": "{prompt}"},
    "dolly": {
        "prompt_field": "instruction",
        "response_field": "response",
        "context_field": "context",
        "template": DOLLY_TEMPLATE,
        "template_with_context": DOLLY_TEMPLATE_WITH_CONTEXT,
        "meta_fields": ["category"],
    },
    "minillm": {"prompt_field": "prompt", "response_field": "output", "template": "{prompt}"},
}


class RecordOptions(SourceOptions):
    """Options of every record reader; a preset fills the mapping fields the recipe leaves out."""

    preset: Literal["prompt_response", "dolly", "minillm"] = "prompt_response"
    prompt_field: str = "prompt"
    response_field: str = Field("response", description="a string, or a list of strings (several references)")
    context_field: Optional[str] = None
    meta_fields: tuple[str, ...] = Field((), description="record fields copied into Example.meta when present")
    template: str = "{prompt}"
    template_with_context: Optional[str] = Field(None, description="defaults to `template`")
    dedup: bool = Field(True, description="drop exact (prompt, references) repeats across all splits")
    min_reference_words: Optional[PositiveInt] = Field(
        None, description="drop examples whose first reference has fewer whitespace-separated words"
    )
    max_reference_words: Optional[PositiveInt] = None
    split_seed: int = 0
    valid_size: SplitSize = Field(0.05, description="count (int) or fraction (float) carved from the source")
    test_size: SplitSize = Field(0.05, description="count (int) or fraction (float) carved from the source")
    max_examples: Union[PositiveInt, dict[SplitName, PositiveInt], None] = Field(
        None, description="keep at most this many examples per split (or per named split)"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        preset = PRESETS.get(data.get("preset", "prompt_response"), {})
        own_template = "template" in data
        for key, value in preset.items():
            # A recipe's own template also serves records with context, unless it gives both.
            if key == "template_with_context" and own_template:
                continue
            data.setdefault(key, value)
        if data.get("template_with_context") is None:
            data["template_with_context"] = data.get("template", "{prompt}")
        return data

    @field_validator("template", "template_with_context")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid format string ({exc}); write a literal brace as {{{{ or }}}}")
        unknown = [n for n in names if n not in PLACEHOLDERS]
        if unknown:
            valid = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; valid ones are {valid}")
        return value

    @model_validator(mode="after")
    def _check_consistency(self):
        if self.context_field and "{context}" not in self.template_with_context:
            raise ValueError("context_field is set but template_with_context has no {context}: it would be lost")
        lo, hi = self.min_reference_words, self.max_reference_words
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_reference_words ({lo}) is above max_reference_words ({hi})")
        return self


def count_words(text: str) -> int:
    """Length used by the filters: whitespace-separated words, not model tokens.

    MiniLLM's "at least 11 tokens" rule counts GPT-2 tokens; words are a
    tokenizer-free stand-in (a filter on tokens would take a tokenizer here).
    """
    return len(text.split())


def _field(where: str, record: dict, name: str, role: str):
    if name not in record:
        fields = ", ".join(repr(k) for k in record) or "none"
        presets = ", ".join(PRESETS)
        raise DataError(
            f"{where}: missing field {name!r} ({role}); this record has fields: {fields}. "
            f"Set {role} to one of them, or use a preset ({presets})"
        )
    return record[name]


def _type_error(where: str, name: str, expected: str, value) -> DataError:
    return DataError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__}")


def to_example(where: str, record, opts: RecordOptions) -> Example | None:
    """Map one record; None when its prompt or response is empty."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    prompt = _field(where, record, opts.prompt_field, "prompt_field")
    if not isinstance(prompt, str):
        raise _type_error(where, opts.prompt_field, "a string", prompt)
    response = _field(where, record, opts.response_field, "response_field")
    refs = [response] if isinstance(response, str) else response
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise _type_error(where, opts.response_field, "a string or a non-empty list of strings", response)
    context = ""
    if opts.context_field:
        context = _field(where, record, opts.context_field, "context_field")
        if context is None:
            context = ""
        if not isinstance(context, str):
            raise _type_error(where, opts.context_field, "a string or null", context)
    if not prompt.strip() or not refs[0].strip():
        return None
    template = opts.template_with_context if context.strip() else opts.template
    text = template.format(prompt=prompt, instruction=prompt, context=context)
    meta = {k: record[k] for k in opts.meta_fields if k in record}
    return Example(text, tuple(refs), meta)


def prepare(records: list[Record], opts: RecordOptions, dropped: Counter) -> list[Example]:
    """Map and length-filter records, counting what is dropped and why."""
    out = []
    lo, hi = opts.min_reference_words, opts.max_reference_words
    for where, record in records:
        ex = to_example(where, record, opts)
        if ex is None:
            dropped["empty"] += 1
        elif lo is not None and count_words(ex.response) < lo:
            dropped["reference too short"] += 1
        elif hi is not None and count_words(ex.response) > hi:
            dropped["reference too long"] += 1
        else:
            out.append(ex)
    return out


def _dedup(examples: list[Example], seen: set, dropped: Counter) -> list[Example]:
    out = []
    for ex in examples:
        key = (ex.prompt, ex.references)
        if key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            out.append(ex)
    return out


def assemble(
    source: list[Example], given: dict[str, list[Example]], opts: RecordOptions, what: str, dropped: Counter
) -> dict[str, list[Example]]:
    """Split `source` into train plus whichever of valid/test `given` lacks; dedup and truncate.

    Dedup runs across all splits with the evaluation sets first, so a repeat is
    removed from train, never from test. The source is shuffled with split_seed
    (carved splits included); explicit valid/test files keep their order.
    """
    seen: set = set()
    if not source:
        raise DataError(f"{what}: no examples left (dropped: {format_counts(dropped)})")
    if opts.dedup:
        given = {name: _dedup(given[name], seen, dropped) for name in ("test", "valid") if name in given}
        source = _dedup(source, seen, dropped)
    valid_size = 0 if "valid" in given else opts.valid_size
    test_size = 0 if "test" in given else opts.test_size
    train, valid, test = seeded_split(source, opts.split_seed, valid_size, test_size, what)
    splits = {"train": train, "valid": given.get("valid", valid), "test": given.get("test", test)}
    for name, part in splits.items():
        limit = opts.max_examples.get(name) if isinstance(opts.max_examples, dict) else opts.max_examples
        if limit is not None:
            splits[name] = part[:limit]
    for name in ("train", "test"):
        if not splits[name]:
            raise DataError(f"{what}: the {name} split is empty (dropped: {format_counts(dropped)})")
    return splits


def format_counts(dropped: Counter) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items())) or "nothing"
