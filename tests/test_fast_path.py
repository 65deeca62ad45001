"""Trainer's CUDA fast path: channels_last, bf16 autocast and CUDA-graph capture of the step.

Each switch is checked for equivalence with the plain fp32 eager step where its mechanism exists
on this device (channels_last and autocast on the CPU; the CUDA graph only on a GPU, skipped here),
and refused clearly where it cannot work.
"""
import pytest
import torch
from conftest import CUDA_ONLY
from torch.testing import assert_close

from ganlib.data import TensorSource
from ganlib.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer, seed_everything
from ganlib.training.distill import DGLTrainer
from ganlib.training.trainer import _StepInputs


def dcgan_trainer(device="cpu", size=8, **cfg):
    seed_everything(0)
    G = DCGANGenerator(latent_dim=16, channels=3, image_size=size, width=8).to(device)
    D = DCGANDiscriminator(channels=3, image_size=size, width=8).to(device)
    images = torch.rand(256, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    config = TrainConfig(steps=3, batch_size=16, progress=False, log_every=1, ema_decay=0.9, **cfg)
    return Trainer(G, D, TensorSource(images.to(device)), config)


def params(trainer):
    return [p.detach().contiguous() for p in [*trainer.G.parameters(), *trainer.D.parameters()]]


def grads(module):
    return [p.grad.contiguous() for p in module.parameters()]


def test_channels_last_computes_the_same_step_in_nhwc_layout():
    plain, nhwc = dcgan_trainer(), dcgan_trainer(channels_last=True)
    conv_weights = [p for p in nhwc.D.parameters() if p.ndim == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    assert not all(p.is_contiguous() for p in conv_weights if p.shape[-1] > 1)   # the layout really changed
    real_plain, real_nhwc = plain.real_batch(16), nhwc.real_batch(16)
    assert real_nhwc.is_contiguous(memory_format=torch.channels_last) and not real_nhwc.is_contiguous()
    assert_close(real_plain, real_nhwc)
    a, b = plain.d_step(real_plain), nhwc.d_step(real_nhwc)       # the same losses and gradients
    assert_close(a["d_loss"], b["d_loss"], rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads(plain.D), grads(nhwc.D)):
        assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    a, b = plain.g_step(16), nhwc.g_step(16)
    assert_close(a["g_loss"], b["g_loss"], rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads(plain.G), grads(nhwc.G)):
        assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    plain.fit(); nhwc.fit()                                          # and whole steps (EMA, history) run
    assert_close(torch.tensor(plain.history["d_loss"]), torch.tensor(nhwc.history["d_loss"]), rtol=1e-3, atol=1e-4)


def test_channels_last_is_refused_for_mlps():
    with pytest.raises(ValueError, match="channels_last=True is for convolutional networks"):
        Trainer(MLPGenerator(), MLPDiscriminator(), TensorSource(torch.randn(64, 2)),
                TrainConfig(steps=1, progress=False, channels_last=True))


def test_bf16_autocast_computes_the_same_step_at_bf16_precision():
    fp32, bf16 = dcgan_trainer(), dcgan_trainer(amp_dtype="bf16")
    real = fp32.real_batch(16)
    assert_close(real, bf16.real_batch(16))
    a, b = fp32.d_step(real), bf16.d_step(real)
    assert a["d_loss"].item() != b["d_loss"].item()              # autocast really ran in bf16 ...
    assert_close(a["d_loss"], b["d_loss"], rtol=3e-2, atol=3e-2)  # ... and computed the same loss
    with bf16.autocast():
        assert bf16.G(bf16.latent_batch(4)).dtype == torch.bfloat16


def test_cuda_graph_is_refused_clearly_off_cuda():
    with pytest.raises(ValueError, match="cuda_graph=True needs the networks on a CUDA device, they are on cpu"):
        dcgan_trainer(cuda_graph=True)
    with pytest.raises(ValueError, match="graph_warmup must be an integer >= 1"):
        TrainConfig(cuda_graph=True, graph_warmup=0)


def test_cuda_graph_support_is_declared_not_inherited():
    class Declared(Trainer):
        supports_cuda_graph = True

    class Inherits(Declared):
        pass

    assert Trainer.supports_cuda_graph and Declared.supports_cuda_graph
    assert not Inherits.supports_cuda_graph and not DGLTrainer.supports_cuda_graph


def test_step_inputs_replay_the_draws_of_an_eager_step():
    """The graph's input mechanism without the graph: warm-up steps recorded, static buffers filled
    with the same draws, the step run on them: the result is the eager run's, bit for bit."""
    eager, staged = dcgan_trainer(), dcgan_trainer()
    eager.fit()
    for _ in range(2):
        staged._inputs.record(staged._train_step)
    staged._inputs.allocate()
    staged._inputs.fill(staged._draw)
    with staged._inputs.replaying():
        staged._train_step()
    for a, b in zip(params(eager), params(staged)):
        assert torch.equal(a, b)
    assert [k for k, _ in staged._inputs.plan] == ["real", "latent", "latent"]   # D: real + fake, G: fake


def test_step_inputs_refuse_a_step_that_draws_differently():
    inputs = _StepInputs()
    draw = lambda kind, n: torch.zeros(n)
    inputs.record(lambda: inputs.take("real", 4, draw))
    with pytest.raises(RuntimeError, match="warm-up steps drew different inputs"):
        inputs.record(lambda: inputs.take("real", 5, draw))
    inputs.allocate()
    with pytest.raises(RuntimeError, match="drew latent x4 where the warm-up steps drew"):
        with inputs.replaying():
            inputs.take("latent", 4, draw)


@pytest.mark.parametrize("device", CUDA_ONLY)
def test_cuda_graph_replays_the_eager_step_on_cuda(device):
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    plain, graphed = dcgan_trainer(device, size=16), dcgan_trainer(device, size=16, cuda_graph=True)
    plain.fit(steps=8); graphed.fit(steps=8)                      # 3 warm-up steps, 1 capture, 5 replays
    assert graphed._graph is not None
    for a, b in zip(params(plain), params(graphed)):              # the same kernels on the same inputs
        assert_close(a, b)
    assert_close(torch.tensor(plain.history["g_loss"]), torch.tensor(graphed.history["g_loss"]))
    assert_close(plain.sample(8, ema=True), graphed.sample(8, ema=True))


@pytest.mark.parametrize("device", CUDA_ONLY)
@pytest.mark.parametrize("fast", [dict(channels_last=True), dict(cuda_graph=True, channels_last=True),
                                  dict(cuda_graph=True, channels_last=True, amp_dtype="bf16")])
def test_combined_fast_paths_train_like_the_eager_step_on_cuda(device, fast):
    plain, quick = dcgan_trainer(device, size=16), dcgan_trainer(device, size=16, **fast)
    plain.fit(steps=8); quick.fit(steps=8)
    tol = 5e-2 if fast.get("amp_dtype") else 1e-3                # other kernels: rounding differs, losses agree
    assert_close(torch.tensor(plain.history["d_loss"]), torch.tensor(quick.history["d_loss"]), rtol=tol, atol=tol)


def test_the_benchmark_prints_its_table_on_cpu(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_fast_path

    bench_fast_path.main(["--size", "8", "--width", "4", "--batch", "4", "--steps", "1"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "batch |" not in line]
    assert [r.split("|")[1].strip() for r in rows] == [name for name, _ in bench_fast_path.MODES]
    assert rows[0].rstrip().endswith("1.00x |")
    assert sum("n/a on cpu" in r for r in rows) == 2                   # the two CUDA-graph modes
