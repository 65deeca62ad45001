import math

import pytest
import torch
from torch.testing import assert_close

from ganlib.data import AugmentPhase, PhasedAugmentation, TensorSource
from ganlib.models import VQVAE2, GatedPixelCNN
from ganlib.training import CheckpointError
from ganlib.training.phased import (PhasedConfig, PhasedTrainer, code_nll, prior_loss, sample_images, train_priors,
                                    train_vqvae)

SCHED = PhasedAugmentation([AugmentPhase(15, 0.1, 0.1), AugmentPhase(5, 0.03, 0.03), AugmentPhase()], [0.4, 0.8],
                           fill=-1.0)


def _models(seed=0):
    torch.manual_seed(seed)
    vq = VQVAE2(hidden=16, res_channels=8, n_res_blocks=1, num_codes=8, code_dim=4, bottom_factor=2, top_factor=2)
    top = GatedPixelCNN(8, width=8, n_layers=2, first_kernel=3)
    bottom = GatedPixelCNN(8, width=8, n_layers=2, first_kernel=3, cond_codes=8, cond_scale=2)
    return vq, top, bottom


def _data():
    return torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_trainer_logs_phases_and_uses_the_scheduled_augmentation():
    vq, _, _ = _models()
    cfg = PhasedConfig(steps=10, batch_size=4, log_every=5)
    trainer = train_vqvae(vq, TensorSource(_data()), SCHED, cfg)
    assert trainer.history["step"] == list(range(1, 11))
    assert trainer.history["phase"] == [0] * 4 + [1] * 4 + [2] * 2
    assert {"loss", "recon", "commitment"} <= set(trainer.history)
    assert not vq.training
    # in the last phase a batch is the raw data (the schedule is the identity there)
    t2 = PhasedTrainer(vq, lambda x: vq.loss(x), TensorSource(_data()), SCHED, cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    raw = TensorSource(_data()).sample(4, g)
    assert torch.equal(t2.batch(9), raw)


def test_prior_stage_freezes_vqvae_and_nll_in_bits():
    vq, top, bottom = _models()
    vq.eval()
    cb = vq.quant_b.codebook.clone()
    x = _data()
    before = code_nll(vq, top, bottom, x)
    train_priors(vq, top, bottom, TensorSource(x), SCHED, PhasedConfig(steps=30, batch_size=8, lr=3e-3))
    assert torch.equal(cb, vq.quant_b.codebook) and not any(p.requires_grad for p in vq.parameters())
    after = code_nll(vq, top, bottom, x)
    assert after["bits_per_code"] < before["bits_per_code"]
    # bits per code = total bits / (4 top + 16 bottom codes), and matches the training loss in nats
    assert_close(torch.tensor(after["bits_per_image"] / 20), torch.tensor(after["bits_per_code"]))
    loss, stats = prior_loss(vq, top.eval(), bottom.eval(), x)
    by_hand = (4 * stats["top_nats"] + 16 * stats["bottom_nats"]) / 20 / math.log(2)
    assert_close(torch.tensor(after["bits_per_code"]), by_hand.float(), rtol=1e-4, atol=1e-4)


def test_sample_images_shape_range_and_determinism():
    vq, top, bottom = _models()
    a = sample_images(vq, top.eval(), bottom.eval(), 5, 8, generator=torch.Generator().manual_seed(1))
    b = sample_images(vq, top, bottom, 5, 8, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and a.abs().max() <= 1


def test_resume_continues_exactly(tmp_path):
    x = TensorSource(_data())
    vq, _, _ = _models()
    PhasedTrainer(vq, lambda b: vq.loss(b), x, SCHED, PhasedConfig(steps=8, batch_size=4, log_every=2)).fit()

    cfg = PhasedConfig(steps=8, batch_size=4, log_every=2, checkpoint_dir=str(tmp_path), checkpoint_every=4)
    vq2, _, _ = _models()
    calls = []

    def crashing_loss(b):                                   # a disconnect during step 6
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return vq2.loss(b)

    with pytest.raises(KeyboardInterrupt):
        PhasedTrainer(vq2, crashing_loss, x, SCHED, cfg).fit()
    vq3, _, _ = _models(seed=123)                          # other initial weights: the checkpoint must replace them
    resumed = PhasedTrainer(vq3, lambda b: vq3.loss(b), x, SCHED, cfg)
    resumed.fit()
    assert resumed.step == 8 and resumed.history["step"] == list(range(1, 9))
    for p, q in zip(vq.parameters(), vq3.parameters()):
        assert_close(p, q)
    assert_close(vq.quant_t.codebook, vq3.quant_t.codebook)
    other = PhasedTrainer(vq3, lambda b: vq3.loss(b), x, SCHED,
                          PhasedConfig(steps=8, batch_size=5, checkpoint_dir=str(tmp_path)))
    with pytest.raises(CheckpointError, match="batch_size"):
        other.load(other.checkpoint_path)


def test_decay_from_falls_linearly_and_default_keeps_lr():
    cfg = PhasedConfig(steps=10, lr=1.0, decay_from=0.5)
    assert [cfg.lr_at(s) for s in range(10)] == [1.0] * 6 + [0.8, 0.6, 0.4, 0.2]
    assert PhasedConfig(steps=10, lr=0.5).lr_at(9) == 0.5
    with pytest.raises(ValueError):
        PhasedConfig(decay_from=1.0)
    vq, _, _ = _models()
    trainer = PhasedTrainer(vq, lambda x: vq.loss(x), TensorSource(_data()), SCHED,
                            PhasedConfig(steps=4, batch_size=4, lr=1e-3, decay_from=0.0))
    trainer.fit()
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)
