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


# --- tensors created without a device ----------------------------------------------------------------
_FACTORIES = {"zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange", "linspace",
              "logspace", "eye", "tensor", "as_tensor", "normal", "bernoulli_"}
_GANLIB = str(pathlib.Path(__file__).resolve().parents[1] / "ganlib")


class ImplicitDeviceCalls(torch.overrides.TorchFunctionMode):
    """Records every tensor factory call made from ganlib's code without ``device=`` (such a tensor lands on
    the CPU whatever the model's device: a bug on a GPU that a CPU run cannot see). Entries: "file:line func"."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _FACTORIES and "device" not in kwargs and not (args and isinstance(args[0], torch.Tensor)):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(_GANLIB):
                where = f"{pathlib.Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
                self.calls.append(f"{where} torch.{name}")
        return func(*args, **kwargs)


def tensors_in(obj, seen=None):
    """Every tensor reachable from ``obj`` through attributes, dicts, lists and tuples (modules included)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, torch.optim.Optimizer):
        for state in obj.state.values():
            yield from tensors_in(state, seen)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors_in(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors_in(v, seen)
