"""Prompt formats: raw text (the default), or the tokenizer's chat template.

The format is applied once, to the examples themselves, before anything tokenizes them, so
training, the teacher cache, teacher-forced metrics and generation all see the same prompt
string by construction. The raw prompt stays in `meta["raw_prompt"]` for baselines (echo) and
reports; the templated prompt changes the data's content hash, so caches never mix formats.
"""
from __future__ import annotations

from dataclasses import replace

from arkd_bench.data.base import DatasetSplits, DataError, Example

RAW_PROMPT = "raw_prompt"


def chat_prompt(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """`prompt` as the user turn of the tokenizer's chat template, ending where the assistant's
    answer starts. A BOS the template writes is dropped when the tokenizer adds its own."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"prompt_format chat: tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat "
                        "template; use prompt_format: raw, or a tokenizer (model) that has one")
    messages = [{"role": "user", "content": prompt}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        text = text[len(bos):]
    return text


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def raw_prompt(example: Example) -> str:
    """The prompt as the dataset wrote it, before any template."""
    return example.meta.get(RAW_PROMPT, example.prompt)


def apply_prompt_format(splits: DatasetSplits, tokenizer, prompt_format: str,
                        system_prompt: str | None = None) -> DatasetSplits:
    """`splits` with every prompt in `prompt_format` (`raw` returns them unchanged)."""
    if prompt_format == "raw":
        return splits
    if prompt_format != "chat":
        raise DataError(f"prompt_format: {prompt_format!r} is not one of raw, chat")

    def fmt(part):
        return [replace(e, prompt=chat_prompt(tokenizer, e.prompt, system_prompt),
                        meta={**e.meta, RAW_PROMPT: raw_prompt(e)}) for e in part]

    return DatasetSplits.build(fmt(splits.train), fmt(splits.valid), fmt(splits.test),
                               f"{splits.description}; prompts in the chat template")
