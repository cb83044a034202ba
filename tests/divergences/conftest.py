import pytest
import torch
from _divergences_ref import CASES, case_id


@pytest.fixture(autouse=True)
def _single_thread(torch_single_thread):
    yield


@pytest.fixture(params=CASES, ids=[case_id(c) for c in CASES])
def case(request):
    return request.param
