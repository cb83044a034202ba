"""Helpers for tests and plugin authors: tiny real models that build in milliseconds."""
from __future__ import annotations

from contextlib import contextmanager

SAMPLE_TEXTS = [
    "Return the absolute version of a path.",
    "Join two or more pathname components, inserting a separator as needed.",
    "Split a pathname into a pair of head and tail.",
    "Return the base name of a pathname.",
    "Test whether a path exists.",
    "Return a copy of the string with leading and trailing whitespace removed.",
    "Sort the list in place and return None.",
    "Return the number of items in a container.",
]


def tiny_tokenizer(texts=None, vocab_size: int = 320):
    """A byte-level BPE trained on a few sentences (no download)."""
    from arkd_bench.train.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer((texts or SAMPLE_TEXTS) * 4, vocab_size=vocab_size)


def tiny_gpt2(tokenizer, n_layer: int = 1, n_embd: int = 32, n_head: int = 2, seed: int = 0):
    """A randomly initialised GPT-2 whose vocabulary matches `tokenizer`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@contextmanager
def registered_plugin(plugin, name: str = "test-plugin", autoload: bool = False):
    """Within the block, `arkd_bench.get_*` and the CLI's defaults see `plugin`
    (a module or object with hookimpls) next to the builtins. Yields the Plugins."""
    from arkd_bench import plugins as plugin_module

    loaded = plugin_module.load_plugins(autoload=autoload, extra=[(name, plugin)])
    plugin_module._override.append(loaded)
    try:
        yield loaded
    finally:
        plugin_module._override.remove(loaded)
