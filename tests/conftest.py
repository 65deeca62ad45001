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
