"""The pass's label log-probs: the cross-entropy the loop logs comes from the pass's own
log-softmax, and must equal torch's cross-entropy (also on the shifted, strided view)."""
import pytest
import torch
import torch.nn.functional as F

from arkd_bench import get_divergence
from arkd_bench.data.collate import IGNORE_INDEX
from arkd_bench.divergences import divergence_pass


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_label_log_probs_equal_cross_entropy(chunk_size, torch_single_thread):
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 8, 40, requires_grad=True), torch.randn(3, 8, 40)
    labels = torch.randint(0, 40, (3, 8))
    labels[0, :4] = IGNORE_INDEX
    labels[2, 6:] = IGNORE_INDEX
    s, t, y = student[:, :-1], teacher[:, :-1], labels[:, 1:]  # the loop's next-token view
    mask = y != IGNORE_INDEX
    out = divergence_pass(student_logits=s, teacher_logits=t, mask=mask, terms={"fkl": get_divergence("fkl")},
                          chunk_size=chunk_size, target_ids=y)
    ce = F.cross_entropy(s.detach().transpose(1, 2), y.clamp_min(0), reduction="none")
    torch.testing.assert_close(-out.label_logp[mask], ce[mask])
    assert (out.label_logp[~mask] == 0).all()
    plain = divergence_pass(student_logits=s, teacher_logits=t, mask=mask, terms={"fkl": get_divergence("fkl")},
                            chunk_size=chunk_size)
    assert plain.label_logp is None
    torch.testing.assert_close(out.values, plain.values)  # asking for labels changes no term
    for name in ("fkl", "teacher_entropy", "g_head"):
        torch.testing.assert_close(getattr(out.features, name), getattr(plain.features, name))
