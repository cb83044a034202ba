import os

import pytest

# Tests never touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; see arkd_bench/cli


@pytest.fixture
def builtin_plugins():
    """Only the builtins: installed entry points must not leak into these tests."""
    from arkd_bench.plugins import load_plugins

    return load_plugins(autoload=False)


@pytest.fixture
def torch_single_thread():
    """For tests of tiny tensors: handing them to several threads costs more than the math
    (and on a shared machine the waiting threads cost more still)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    """A tiny byte-level BPE trained here (arkd_bench.testing.tiny_tokenizer), one per module."""
    from arkd_bench.testing import tiny_tokenizer

    return tiny_tokenizer()
