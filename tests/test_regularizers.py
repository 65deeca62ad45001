"""Regularizers against critics whose input gradients are known in closed form.

* a linear critic ``C(x) = w . x + b`` has gradient ``w`` everywhere, so every penalty is a
  number: WGAN-GP ``λ(‖w‖ - 1)²``, DRAGAN ``λ(‖w‖ - k)²``, R1 ``γ/2 ‖w‖²``;
* the critic ``C(x) = ½‖x‖²`` has gradient ``x``: its penalties depend on *where* they are
  evaluated, which a recording critic exposes.
"""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganlib.data import TensorSource, ring_of_gaussians
from ganlib.models import DCGANDiscriminator, MLPDiscriminator, MLPGenerator
from ganlib.regularizers import (DRAGANPenalty, GradientPenalty, R1Penalty, WeightClipper, clip_weights,
                                 dragan_penalty, gradient_penalty, input_gradients, r1_penalty)
from ganlib.training import TrainConfig, Trainer


class Linear(nn.Module):
    """C(x) = w . flatten(x) + b."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32).flatten())
        self.b = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return x.flatten(1) @ self.w + self.b


class HalfSquare(nn.Module):
    """C(x) = θ · ½‖x‖² (gradient θ·x); remembers every batch it is evaluated on."""

    def __init__(self, theta=1.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta)))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.theta * 0.5 * x.flatten(1).square().sum(1)


W = [3.0, 4.0]  # ‖w‖ = 5


# --- linear critic: exact values --------------------------------------------------------------------

def test_linear_critic_values():
    C = Linear(W)
    real, fake = torch.randn(7, 2), torch.randn(7, 2) + 5
    assert_close(gradient_penalty(C, real, fake), torch.tensor(10 * (5 - 1) ** 2.0))
    assert_close(gradient_penalty(C, real, fake, weight=2.0, target=0.0), torch.tensor(2 * 25.0))
    assert_close(dragan_penalty(C, real), torch.tensor(10 * (5 - 1) ** 2.0))
    assert_close(dragan_penalty(C, real, weight=1.0, k=2.0), torch.tensor(9.0))
    assert_close(r1_penalty(C, real), torch.tensor(10 / 2 * 25.0))
    assert_close(r1_penalty(C, real, gamma=1.0), torch.tensor(12.5))


def test_norm_is_per_flattened_sample():
    # An image critic with all 16 weights 0.5: ‖w‖ = sqrt(16 · 0.25) = 2 per sample.
    # A per-pixel or per-channel norm would give (0.5 - 1)² or something else, not (2 - 1)².
    C = Linear(torch.full((1, 4, 4), 0.5))
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    assert_close(gradient_penalty(C, real, fake), torch.tensor(10.0 * (2 - 1) ** 2))
    assert_close(r1_penalty(C, real), torch.tensor(5.0 * 4))


def test_penalty_gradient_reaches_the_critic_weights():
    # GP = λ(‖w‖ - 1)² -> dGP/dw = 2λ(‖w‖ - 1) w / ‖w‖ = 2·10·4·[0.6, 0.8] = [48, 64]
    C = Linear(W)
    gradient_penalty(C, torch.randn(4, 2), torch.randn(4, 2)).backward()
    assert_close(C.w.grad, torch.tensor([48.0, 64.0]))
    # R1 = γ/2 ‖w‖² -> dR1/dw = γ w
    C = Linear(W)
    r1_penalty(C, torch.randn(4, 2), gamma=3.0).backward()
    assert_close(C.w.grad, torch.tensor([9.0, 12.0]))


def test_input_gradients_of_a_linear_critic():
    C = Linear(W)
    g = input_gradients(C, torch.randn(3, 2))
    assert_close(g, torch.tensor([W] * 3))


# --- where the penalties look -----------------------------------------------------------------

def test_gradient_penalty_at_interpolates_between_paired_samples():
    real = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [3.0, 1.0]])
    fake = torch.tensor([[4.0, 4.0], [-2.0, 0.0], [2.0, -3.0], [0.0, 0.0]])
    C = HalfSquare()
    value = gradient_penalty(C, real, fake, generator=torch.Generator().manual_seed(5))
    (x_hat,) = C.seen
    # each point lies strictly inside the segment from its own fake to its own real sample
    eps = (x_hat - fake) / (real - fake)                     # same ε on every coordinate
    assert_close(eps[:, 0], eps[:, 1])
    assert ((eps > 0) & (eps < 1)).all()
    # hand value: gradient of ½‖x‖² is x, so GP = λ mean (‖x̂‖ - 1)²
    assert_close(value, 10 * (x_hat.norm(dim=1) - 1).square().mean())
    # the draw is one ε per sample from U[0, 1] of the given generator
    assert_close(eps[:, 0], torch.rand(4, 1, generator=torch.Generator().manual_seed(5))[:, 0])


def test_gradient_penalty_uses_the_global_rng_by_default():
    C = HalfSquare()
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    torch.manual_seed(1)
    a = gradient_penalty(C, real, fake)
    torch.manual_seed(1)
    b = gradient_penalty(C, real, fake)
    c = gradient_penalty(C, real, fake)
    assert_close(a, b)
    assert not torch.allclose(a, c)


def test_dragan_penalty_looks_only_near_real_data():
    real = torch.randn(64, 2)
    fake = torch.full((64, 2), 100.0)                       # far away: must play no part
    C = HalfSquare()
    value = DRAGANPenalty(weight=10.0, k=1.0, c=0.5)(C, real, fake)
    (x_tilde,) = C.seen
    delta = x_tilde - real
    # x~ = x + α · 0.5 · std(x) · u with α, u in [0, 1]: a one-sided box of side 0.5 · std(x)
    assert (delta >= 0).all() and (delta <= 0.5 * real.std() + 1e-6).all()
    assert delta.abs().sum() > 0                            # it does perturb
    assert_close(value, 10 * (x_tilde.norm(dim=1) - 1).square().mean())


def test_r1_at_the_real_data_and_its_gradient():
    real = torch.randn(5, 3)
    C = HalfSquare(theta=2.0)
    value = R1Penalty(gamma=4.0)(C, real, torch.full((5, 3), float("nan")))   # fake is ignored
    (x,) = C.seen
    assert_close(x, real)
    # ∇_x C = θx -> R1 = γ/2 θ² mean ‖x‖²;  dR1/dθ = γ θ mean ‖x‖²
    msq = real.square().sum(1).mean()
    assert_close(value, 0.5 * 4.0 * 4.0 * msq)
    value.backward()
    assert_close(C.theta.grad, 4.0 * 2.0 * msq)


# --- weight clipping ---------------------------------------------------------------------------

def test_clip_weights_bounds_every_parameter_and_keeps_small_ones():
    D = MLPDiscriminator(hidden=8, depth=2)
    with torch.no_grad():
        D.net[0].weight[0, 0] = 0.005
        D.net[0].weight[0, 1] = 0.5
        D.net[0].bias[0] = -0.3
    clip_weights(D, 0.01)
    for p in D.parameters():
        assert p.abs().max() <= 0.01
    assert D.net[0].weight[0, 0] == 0.005
    assert D.net[0].weight[0, 1] == 0.01
    assert D.net[0].bias[0] == -0.01


def test_weight_clipper_in_the_trainer():
    torch.manual_seed(0)
    cfg = TrainConfig(steps=3, batch_size=16, n_critic=2, loss="wgan", progress=False)
    tr = Trainer(MLPGenerator(hidden=8, depth=2), MLPDiscriminator(hidden=8, depth=2), ring_of_gaussians(), cfg,
                 d_after_step=WeightClipper(0.02))
    tr.fit()
    assert max(p.abs().max().item() for p in tr.D.parameters()) <= 0.02


# --- BatchNorm and hyperparameter errors ------------------------------------------------------------

def test_penalty_with_batchnorm_critic_is_refused():
    bn_critic = DCGANDiscriminator(image_size=8, width=4, norm="batch")
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError, match="without BatchNorm"):
        gradient_penalty(bn_critic, x, x)
    from ganlib.models import DCGANGenerator

    cfg = TrainConfig(steps=1, batch_size=4, loss="wgan", progress=False)
    with pytest.raises(ValueError, match="without BatchNorm"):
        Trainer(DCGANGenerator(latent_dim=4, width=4), bn_critic, TensorSource(torch.randn(10, 1, 8, 8)), cfg,
                d_penalty=GradientPenalty())


@pytest.mark.parametrize("make", [
    lambda: GradientPenalty(weight=-1.0),
    lambda: GradientPenalty(weight=float("nan")),
    lambda: GradientPenalty(target=-1.0),
    lambda: DRAGANPenalty(weight=-0.5),
    lambda: DRAGANPenalty(c=0.0),
    lambda: DRAGANPenalty(k=-1.0),
    lambda: R1Penalty(gamma=-10.0),
    lambda: WeightClipper(c=0.0),
    lambda: WeightClipper(c=-0.01),
    lambda: clip_weights(nn.Linear(2, 2), c=0),
])
def test_bad_hyperparameters(make):
    with pytest.raises(ValueError, match="must be a finite number"):
        make()


def test_gradient_penalty_needs_paired_batches():
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(Linear(W), torch.randn(4, 2), torch.randn(3, 2))


def _critic_gradient_norms_after_training(d_penalty, steps=50):
    """Norms of D's input gradient at real/fake interpolates after ``steps`` WGAN generator steps
    (5 critic steps each) on the ring: the quantity WGAN-GP's penalty drives to 1."""
    torch.manual_seed(0)
    cfg = TrainConfig(steps=steps, batch_size=64, loss="wgan", lr_d=1e-3, lr_g=1e-3, n_critic=5,
                      progress=False, log_every=steps)
    tr = Trainer(MLPGenerator(hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2), ring_of_gaussians(), cfg,
                 d_penalty=d_penalty)
    hist = tr.fit()
    assert all(math.isfinite(v) for v in hist["d_loss"])
    g = torch.Generator().manual_seed(1)
    real = ring_of_gaussians().sample(256, g)
    with torch.no_grad():
        fake = tr.G(tr.G.sample_latent(256, generator=g))
    eps = torch.rand(256, 1, generator=g)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(tr.D(x).sum(), x)
    return grad.norm(dim=1)


def test_gradient_penalty_in_the_trainer_keeps_the_critic_gradient_near_one():
    # Unconstrained, the WGAN critic's slope grows without bound (mean norm ~8 after 250 critic
    # steps here); with the penalty (lambda 10) it stays near the target 1. A penalty that is never
    # added, or added with weight 0, leaves the first picture, so this test fails on a no-op.
    plain = _critic_gradient_norms_after_training(None)
    penalized = _critic_gradient_norms_after_training(GradientPenalty(weight=10.0))
    assert (plain - 1).abs().mean() > 3.0
    assert (penalized - 1).abs().mean() < 0.3
    assert_close(_critic_gradient_norms_after_training(GradientPenalty(weight=0.0)), plain)


def test_ttur_preset_reaches_the_optimizers():
    cfg = TrainConfig.ttur(steps=1, progress=False)
    tr = Trainer(MLPGenerator(hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1), ring_of_gaussians(), cfg)
    assert tr.opt_d.param_groups[0]["lr"] == 4e-4 and tr.opt_g.param_groups[0]["lr"] == 1e-4
    assert tr.opt_d.param_groups[0]["betas"] == (0.0, 0.9) == tr.opt_g.param_groups[0]["betas"]
    assert cfg.n_critic == 1
    with pytest.raises(ValueError, match="n_critic"):
        TrainConfig(n_critic=0)
