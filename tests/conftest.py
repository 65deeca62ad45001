import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)  # tiny tensors: threads only add contention


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))


# Devices a test runs on: the CPU always, CUDA where present (skipped cleanly elsewhere). Use as
# @pytest.mark.parametrize("device", DEVICES) or through the `device` fixture.
DEVICES = [
    pytest.param(torch.device("cpu"), id="cpu"),
    pytest.param(torch.device("cuda"), id="cuda",
                 marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]
CUDA_ONLY = DEVICES[1:]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
