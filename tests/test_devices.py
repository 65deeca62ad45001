"""Device correctness without a GPU: the trainers create every tensor on the model's device.

Two checks, on every available device (CUDA where present, skipped cleanly elsewhere):
* no tensor factory in ganlib's code runs without ``device=`` during construction, training and
  sampling (``ImplicitDeviceCalls``: this one finds the bug on the CPU too, where a forgotten
  device goes unnoticed);
* every tensor the trainer holds afterwards (parameters, EMA, optimizer state, fixed noise, pending
  statistics, random generators) is on the model's device.
The population classes (batched, auction, maem, penalized, unrolled, distill) are being rewritten
into one core; their checks join this file with it.
"""
import pytest
import torch
from conftest import DEVICES, ImplicitDeviceCalls, tensors_in

from ganlib.data import PhasedAugmentation, TensorSource, grid_of_gaussians
from ganlib.models import (DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator,
                           ProgressiveDiscriminator, ProgressiveGenerator)
from ganlib.regularizers import GradientPenalty
from ganlib.training import TrainConfig, Trainer, seed_everything


def check_devices(obj, device, generators=()):
    found = list(tensors_in(vars(obj)))
    assert found
    wrong = [tuple(t.shape) for t in found if t.device.type != device.type]
    assert wrong == [], f"tensors of shapes {wrong} are not on {device}"
    for g in generators:
        assert g.device.type == device.type


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mlp+ema+gp", "dcgan+bf16"])
def test_trainer_keeps_everything_on_the_models_device(device, kind):
    seed_everything(0)
    if kind == "mlp+ema+gp":
        G, D, source = MLPGenerator(hidden=16), MLPDiscriminator(hidden=16), grid_of_gaussians()
        extra, penalty = dict(ema_decay=0.9), GradientPenalty(10.0)
    else:
        G = DCGANGenerator(latent_dim=8, image_size=8, width=8)
        D = DCGANDiscriminator(image_size=8, width=8)
        source, extra, penalty = TensorSource(torch.rand(64, 1, 8, 8, device=device)), dict(amp_dtype="bf16"), None
    with ImplicitDeviceCalls() as calls:   # models are built on the CPU and moved: watch what the trainer makes
        tr = Trainer(G.to(device), D.to(device), source,
                     TrainConfig(steps=3, batch_size=8, n_critic=2, log_every=2, snapshot_every=1, progress=False,
                                 **extra), d_penalty=penalty)
        tr.fit()
        tr.sample(4), tr.sample_fixed()
    assert calls.calls == []
    tr._stats.add_row(tr.step + 1, tr._train_step())   # a step's statistics before they reach the host
    check_devices(tr, device, [tr.noise_rng, tr.data_rng])


@pytest.mark.parametrize("device", DEVICES)
def test_progressive_trainer_keeps_everything_on_the_models_device(device):
    from ganlib.training.progressive import ProgressiveConfig, ProgressiveTrainer

    seed_everything(0)
    net = dict(max_resolution=8, fmap_base=32, fmap_max=8)
    G, D = ProgressiveGenerator(latent_dim=8, **net).to(device), ProgressiveDiscriminator(**net).to(device)
    with ImplicitDeviceCalls() as calls:
        tr = ProgressiveTrainer(G, D, TensorSource(torch.rand(64, 1, 8, 8, device=device) * 2 - 1),
                                ProgressiveConfig(stabilize_steps=2, fade_steps=2, batch_size=8, progress=False))
        tr.fit()
        tr.sample(4)
    assert calls.calls == []
    check_devices(tr, device, [tr.noise_rng, tr.data_rng])


@pytest.mark.parametrize("device", DEVICES)
def test_phased_trainer_keeps_everything_on_the_models_device(device):
    from ganlib.data import AugmentPhase
    from ganlib.models import VQVAE2, GatedPixelCNN
    from ganlib.training.phased import PhasedConfig, sample_images, train_priors, train_vqvae

    seed_everything(0)
    schedule = PhasedAugmentation([AugmentPhase(15, 0.1, 0.1), AugmentPhase()], [0.5], fill=-1.0)
    vq = VQVAE2(hidden=16, res_channels=8, n_res_blocks=1, num_codes=8, code_dim=4, bottom_factor=2,
                top_factor=2).to(device)
    top = GatedPixelCNN(8, width=8, n_layers=2, first_kernel=3).to(device)
    bottom = GatedPixelCNN(8, width=8, n_layers=2, first_kernel=3, cond_codes=8, cond_scale=2).to(device)
    source = TensorSource(torch.rand(32, 1, 8, 8, device=device) * 2 - 1)
    with ImplicitDeviceCalls() as calls:
        stage1 = train_vqvae(vq, source, schedule, PhasedConfig(steps=3, batch_size=4))
        stage2 = train_priors(vq, top, bottom, source, schedule, PhasedConfig(steps=3, batch_size=4))
        images = sample_images(vq, top, bottom, 2, 8, generator=torch.Generator(device).manual_seed(0))
    assert calls.calls == []
    assert images.device.type == device.type
    for tr in (stage1, stage2):
        check_devices(tr, device, [tr.data_rng, tr.aug_rng])


def test_the_checker_finds_a_tensor_made_without_a_device():
    from conftest import _GANLIB

    namespace = {"torch": torch}
    code = "def forgetful():\n    return torch.zeros(())\ndef careful(x):\n    return torch.zeros((), device=x.device)\n"
    exec(compile(code, f"{_GANLIB}/fake_module.py", "exec"), namespace)   # as if it were ganlib's code
    with ImplicitDeviceCalls() as calls:
        namespace["forgetful"](), namespace["careful"](torch.ones(1))
        torch.zeros(())                                                   # the tests' own calls are not ganlib's
    assert calls.calls == ["fake_module.py:2 torch.zeros"]
