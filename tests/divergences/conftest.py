import pytest
import torch
from _divergences_ref import CASES, case_id


@pytest.fixture(autouse=True)
def _single_thread():
    # these tensors are tiny: extra intra-op threads only add spin-wait overhead, which on a
    # shared machine costs more than the math
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=CASES, ids=[case_id(c) for c in CASES])
def case(request):
    return request.param
