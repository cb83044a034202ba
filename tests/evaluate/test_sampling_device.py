"""Where sampling draws: on the CPU exactly as it always has; on an accelerator with the
device's own per-row generators, so no [B, V] probabilities go to the host per decode step."""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from arkd_bench.evaluate._sampling import RowSampler, draw_device, row_seeds


def reference_draws(scores: torch.Tensor, seeds: list[int], steps: int) -> list[torch.Tensor]:
    """What sampling drew before it could draw on a device: CPU generators, one per row."""
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    probs = torch.softmax(scores.float(), dim=-1)
    return [torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
            for _ in range(steps)]


def drawn_tokens(sampler: RowSampler, scores: torch.Tensor) -> torch.Tensor:
    out = sampler(torch.zeros(scores.shape[0], 1, dtype=torch.long), scores)
    return out.argmax(-1, keepdim=True)


def test_cpu_draws_are_the_ones_sampling_always_drew():
    seeds = row_seeds(10, 4)
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    sampler = RowSampler(seeds)
    expected = reference_draws(scores, seeds, steps=3)
    for want in expected:
        assert torch.equal(drawn_tokens(sampler, scores), want)
    assert all(g.device.type == "cpu" for g in sampler.generators)


def test_a_device_without_generators_draws_on_the_cpu():
    assert draw_device(torch.device("cpu")) == torch.device("cpu")
    assert draw_device(torch.device("meta")) == torch.device("cpu")


class HostCopies(TorchFunctionMode):
    """Counts tensors moved from a device to the CPU."""

    def __init__(self):
        super().__init__()
        self.copies = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (torch.Tensor.to, torch.Tensor.cpu) and isinstance(out, torch.Tensor):
            if args[0].device.type != "cpu" and out.device.type == "cpu":
                self.copies += 1
        return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_rows_draw_on_the_device_independently_of_the_batch():
    seeds = row_seeds(10, 4)
    scores = torch.randn(4, 50, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with HostCopies() as counted:
        together = drawn_tokens(RowSampler(seeds), scores)
    assert counted.copies == 0 and together.device.type == "cuda"
    alone = torch.cat([drawn_tokens(RowSampler([s]), scores[k : k + 1]) for k, s in enumerate(seeds)])
    assert torch.equal(together, alone)
