"""The tiny teacher and encoded examples the teacher-output tests share."""
import pytest

from arkd_bench.data.base import Example
from arkd_bench.data.collate import TrainingDataset
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2, tiny_tokenizer


@pytest.fixture(scope="module")
def teacher_items():
    """(tokenizer, a 2-layer GPT-2 teacher, the encoded sample examples)."""
    tokenizer = tiny_tokenizer()
    teacher = tiny_gpt2(tokenizer, n_layer=2)
    examples = [Example(f"Q{i}: {text[:20]}", (text,)) for i, text in enumerate(SAMPLE_TEXTS)]
    return tokenizer, teacher, TrainingDataset(examples, tokenizer, max_length=48).items
