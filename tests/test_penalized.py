"""PenalizedSeedBatch: S seeds at once with penalties and spectral norm, checked against
separate Trainers and PyTorch's own spectral-norm parametrization."""

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torch.testing import assert_close

from ganlib.data import TensorSource, ring_of_gaussians
from ganlib.models import DCGANDiscriminator, MLPDiscriminator, MLPGenerator
from ganlib.regularizers import GradientPenalty, R1Penalty, input_gradients
from ganlib.training import TrainConfig, Trainer, seed_everything
from ganlib.training.penalized import PenalizedSeedBatch, _FlatCritic, stacked_spectral_norm

make_g = lambda: MLPGenerator(hidden=16, depth=2)
make_sn_d = lambda: MLPDiscriminator(hidden=16, depth=2, spectral_norm=True)


def test_stacked_spectral_norm_equals_pytorch_per_model():
    layers = [spectral_norm(nn.Conv2d(3, 5, 3)) for _ in range(3)]
    pw = [m.parametrizations.weight for m in layers]
    W = torch.stack([p.original.detach() for p in pw])
    u = torch.stack([p[0]._u.clone() for p in pw])
    v = torch.stack([p[0]._v.clone() for p in pw])
    ours = stacked_spectral_norm(W, u, v)              # one power iteration, updates u and v
    for s, m in enumerate(layers):
        assert_close(ours[s], m.weight)                # training mode: PyTorch also iterates once
        assert_close(u[s], pw[s][0]._u)
        assert_close(v[s], pw[s][0]._v)


def test_spectral_norm_and_r1_match_separate_trainers():
    cfg = TrainConfig(steps=3, batch_size=16, n_critic=2, lr_d=1e-3, lr_g=5e-4, loss="hinge",
                      progress=False, log_every=3)
    batch = PenalizedSeedBatch(make_g, make_sn_d, ring_of_gaussians(), cfg, seeds=[3, 7],
                               d_penalty=R1Penalty(gamma=1.0))
    assert batch.spectral_norm
    batch.fit()
    for s, seed in enumerate([3, 7]):
        seed_everything(seed)
        G, D = make_g(), make_sn_d()
        tr = Trainer(G, D, ring_of_gaussians(), TrainConfig(**{**cfg.__dict__, "seed": seed}),
                     d_penalty=R1Penalty(gamma=1.0))
        tr.fit()
        assert_close(torch.tensor(batch.history["d_real"])[:, s], torch.tensor(tr.history["d_real"]),
                     rtol=1e-4, atol=1e-5)
        D_s = batch.model(s, "discriminator", like=D)
        assert_close(D_s.net[0].parametrizations.weight.original, D.net[0].parametrizations.weight.original,
                     rtol=1e-4, atol=1e-5)


def test_flat_critic_gives_each_models_own_input_gradients():
    cfg = TrainConfig(steps=1, batch_size=8, loss="wgan", progress=False)
    batch = PenalizedSeedBatch(make_g, lambda: MLPDiscriminator(hidden=16, depth=2), ring_of_gaussians(), cfg,
                               seeds=[0, 1, 2], d_penalty=GradientPenalty())
    batch.fit()
    x = torch.randn(3 * 5, 2)
    g = input_gradients(_FlatCritic(batch, 3), x)
    for s in range(3):
        D_s = batch.model(s, "discriminator", like=MLPDiscriminator(hidden=16, depth=2))
        assert_close(g[5 * s:5 * s + 5], input_gradients(D_s, x[5 * s:5 * s + 5]))


def test_penalty_with_batchnorm_critic_is_refused():
    cfg = TrainConfig(steps=1, batch_size=4, loss="wgan", progress=False)
    from ganlib.models import DCGANGenerator

    with pytest.raises(ValueError, match="without BatchNorm"):
        PenalizedSeedBatch(lambda: DCGANGenerator(latent_dim=4, width=4, norm="none"),
                           lambda: DCGANDiscriminator(width=4, norm="batch"), TensorSource(torch.randn(8, 1, 8, 8)), cfg,
                           seeds=[0], d_penalty=GradientPenalty())


def test_per_model_losses_train_each_model_with_its_own_loss():
    # Models with a relativistic loss draw exactly what a solo Trainer draws, so they match it;
    # every model in a mixed batch draws a real batch for the generator step.
    cfg = TrainConfig(steps=3, batch_size=16, lr_d=1e-3, lr_g=5e-4, progress=False, log_every=3)
    names = ["rasgan", "ralsgan", "rasgan"]
    batch = PenalizedSeedBatch(make_g, lambda: MLPDiscriminator(hidden=16, depth=2), ring_of_gaussians(), cfg,
                               seeds=[1, 2, 3], losses=names)
    batch.fit()
    for s, (seed, name) in enumerate(zip([1, 2, 3], names)):
        seed_everything(seed)
        G, D = make_g(), MLPDiscriminator(hidden=16, depth=2)
        tr = Trainer(G, D, ring_of_gaussians(), TrainConfig(**{**cfg.__dict__, "seed": seed, "loss": name}))
        tr.fit()
        assert_close(torch.tensor(batch.history["g_loss"])[:, s], torch.tensor(tr.history["g_loss"]),
                     rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="one loss per model"):
        PenalizedSeedBatch(make_g, make_sn_d, ring_of_gaussians(), cfg, seeds=[0, 1], losses=["ns"])
    with pytest.raises(ValueError, match="unknown loss"):
        PenalizedSeedBatch(make_g, make_sn_d, ring_of_gaussians(), cfg, seeds=[0], losses=["wgangp"])


def test_stripping_spectral_norm_leaves_the_template_working():
    from ganlib.models import MLPDiscriminator
    from ganlib.training.penalized import _spectral_norm_entries

    D = MLPDiscriminator(hidden=8, depth=1, spectral_norm=True)
    plain, entries, _ = _spectral_norm_entries(D)
    assert len(entries) == 2 and not hasattr(plain.net[0], "parametrizations")
    assert D(torch.zeros(3, 2)).shape == (3,)   # the original still has its parametrized weight
