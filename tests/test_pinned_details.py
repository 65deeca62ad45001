"""Details that a bug-like edit used to change without any test noticing (issue 12's list).

Each test names the detail it pins; each was checked by making the wrong edit in the library and
seeing the test fail.
"""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganlib.data import AugmentPhase, PhasedAugmentation, TensorSource, random_affine, ring_of_gaussians
from ganlib.metrics import kid
from ganlib.models import MLPDiscriminator, MLPGenerator, ProgressiveDiscriminator, ProgressiveGenerator, \
    VectorQuantizerEMA
from ganlib.models.base import LatentGenerator
from ganlib.regularizers import DRAGANPenalty, GradientPenalty, dragan_penalty, gradient_penalty
from ganlib.training import CheckpointError, TrainConfig, Trainer, load_checkpoint, save_checkpoint
from ganlib.training import checkpoint as checkpoint_module
from ganlib.training.batched import SeedBatch
from ganlib.training.phased import PhasedConfig, PhasedTrainer
from ganlib.training.progressive import ProgressiveConfig, ProgressiveTrainer
from ganlib.training.unrolled import FunctionalAdam, unroll_discriminator


class HalfSquare(nn.Module):
    """C(x) = ½‖x‖² (input gradient x); remembers every batch it is evaluated on."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(1.0))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.theta * 0.5 * x.flatten(1).square().sum(1)


class BNGenerator(LatentGenerator):
    """A generator with BatchNorm: its running statistics are buffers, and train/eval outputs differ."""

    def __init__(self):
        super().__init__()
        self.latent_dim = 2
        self.net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, z):
        return self.net(z)


def _trainer(checkpoint_dir=None, G=None, d_penalty=None, **cfg):
    torch.manual_seed(0)
    G = G if G is not None else MLPGenerator(hidden=8, depth=1)
    config = TrainConfig(**{"steps": 4, "batch_size": 8, "progress": False, "checkpoint_dir": checkpoint_dir,
                            "log_every": 1, **cfg})
    return Trainer(G, MLPDiscriminator(hidden=8, depth=1), ring_of_gaussians(), config, d_penalty=d_penalty)


# --- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_goes_to_a_temporary_file_and_is_renamed_over_the_target(tmp_path, monkeypatch):
    """A kill during the write must leave the previous checkpoint intact and loadable."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.arange(1000.0)})
    real_save = torch.save

    def dies_half_way(obj, fh):
        real_save(obj, fh)
        fh.seek(0)
        fh.truncate(100)                                   # what a kill mid-write leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(1000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]

    renames = []
    real_replace = checkpoint_module.os.replace
    monkeypatch.setattr(checkpoint_module.os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b)))
    save_checkpoint(path, {"step": 3})
    ((src, dst),) = renames
    assert dst == path and src.parent == path.parent and src.name.startswith(".checkpoint.pt.tmp-")
    assert load_checkpoint(path)["step"] == 3


def test_resuming_a_checkpoint_saved_with_another_seed_is_refused(tmp_path):
    _trainer(str(tmp_path), seed=1).fit(steps=2)
    with pytest.raises(CheckpointError, match="seed: checkpoint 1, this run 2"):
        _trainer(str(tmp_path), seed=2).fit()
    _trainer(str(tmp_path), seed=1).fit(steps=3)          # the same seed resumes


# --- the Trainer's details -----------------------------------------------------------------------
def test_ema_generator_copies_buffers_batchnorm_statistics():
    tr = _trainer(G=BNGenerator(), ema_decay=0.5)
    tr.fit(steps=2)
    for name, b in tr.G.named_buffers():
        assert_close(dict(tr.G_ema.named_buffers())[name], b, rtol=0, atol=0, msg=name)
    assert tr.G.net[1].running_mean.abs().sum() > 0           # the statistics did move


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_nan_guard_catches_plus_and_minus_infinity(bad):
    calls = []

    def poison(D, real, fake):
        calls.append(1)
        return torch.tensor(bad) if len(calls) == 3 else torch.zeros(())

    tr = _trainer(d_penalty=poison, steps=6, log_every=6)
    with pytest.raises(FloatingPointError, match=f"d_loss became {bad} at step 3"):
        tr.fit()


def test_sample_draws_in_eval_mode_and_restores_train_mode():
    tr = _trainer(G=BNGenerator())
    tr.fit(steps=2)
    assert tr.G.training
    out = tr.sample(16, seed=5)
    assert tr.G.training                                       # restored
    rng = torch.Generator().manual_seed(5)
    z = tr.G.sample_latent(16, generator=rng)
    with torch.no_grad():
        tr.G.eval()
        expected = tr.G(z)
        tr.G.train()
        in_train_mode = tr.G(z)
    assert_close(out, expected)
    assert not torch.allclose(out, in_train_mode)              # the two modes do differ here
    tr.G.eval()
    tr.sample(4)
    assert not tr.G.training                                   # an eval-mode generator stays in eval mode


# --- penalties -----------------------------------------------------------------------------------
def test_dragan_uses_one_alpha_per_sample_and_the_std_of_the_whole_batch():
    """x~ = x + α·c·std(x)·u, u ~ U[0,1]^shape, α ~ U[0,1] per sample, std over the whole minibatch."""
    real = torch.randn(6, 3) * torch.tensor([1.0, 5.0, 0.2])    # features of very different spread
    C = HalfSquare()
    value = dragan_penalty(C, real, weight=10.0, k=1.0, c=0.5, generator=torch.Generator().manual_seed(7))
    (x_tilde,) = C.seen
    g = torch.Generator().manual_seed(7)
    u = torch.rand(real.shape, generator=g)
    alpha = torch.rand(6, 1, generator=g)
    assert_close(x_tilde, real + alpha * 0.5 * real.std() * u)
    assert_close(value, 10 * (x_tilde.norm(dim=1) - 1).square().mean())
    ratio = (x_tilde - real) / (0.5 * real.std() * u)           # the per-sample α, the same on every feature
    assert_close(ratio, ratio[:, :1].expand(6, 3))
    assert ratio[:, 0].std() > 0.05                             # and not one α for the whole batch


@pytest.mark.parametrize("penalty", [
    lambda g: GradientPenalty(generator=g), lambda g: DRAGANPenalty(generator=g),
    lambda g: (lambda C, r, f: gradient_penalty(C, r, f, generator=g)),
    lambda g: (lambda C, r, f: dragan_penalty(C, r, generator=g))])
def test_penalties_draw_from_the_generator_they_are_given(penalty):
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    values = []
    for global_seed in (0, 1):                                   # the global RNG must play no part
        torch.manual_seed(global_seed)
        values.append(penalty(torch.Generator().manual_seed(3))(HalfSquare(), real, fake))
    assert_close(values[0], values[1], rtol=0, atol=0)
    other = penalty(torch.Generator().manual_seed(4))(HalfSquare(), real, fake)
    assert not torch.equal(values[0], other)


# --- KID -----------------------------------------------------------------------------------------
def test_kid_std_is_the_population_std_over_subsets():
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randn(11, 3, dtype=torch.float64) + 0.5
    S, m = 5, 4
    mean, std = kid(x, y, n_subsets=S, subset_size=m, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    ix = torch.rand(S, 9, generator=g).topk(m, dim=1).indices
    iy = torch.rand(S, 11, generator=g).topk(m, dim=1).indices
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3                      # noqa: E731
    values = []
    for s in range(S):
        a, b = x[ix[s]], y[iy[s]]
        kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
        values.append((kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.sum() / m**2)
    values = torch.stack(values)
    assert_close(mean, values.mean())
    assert_close(std, (values - values.mean()).square().mean().sqrt())   # ddof = 0
    assert not torch.isclose(std, values.std(correction=1))


# --- seed batch and unrolled step ----------------------------------------------------------------
def test_seed_batch_reports_gradient_norms_not_their_squares():
    cfg = TrainConfig(steps=3, batch_size=8, lr_d=1e-3, progress=False, log_every=1, seed=3)
    make_g, make_d = (lambda: MLPGenerator(hidden=8, depth=1)), (lambda: MLPDiscriminator(hidden=8, depth=1))
    batch = SeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[3])
    batch.fit()
    torch.manual_seed(3)
    tr = Trainer(make_g(), make_d(), ring_of_gaussians(), cfg)
    tr.fit()
    for key in ("grad_norm_d", "grad_norm_g"):
        assert_close(torch.tensor(batch.history[key])[:, 0], torch.tensor(tr.history[key]), rtol=1e-4, atol=1e-6)
        assert min(tr.history[key]) > 0 and max(abs(v - 1) for v in tr.history[key]) > 0.05  # squares would differ


def test_unrolled_adam_has_a_finite_generator_gradient_where_a_gradient_is_exactly_zero():
    """dL/dw[1] = θ - ½ is exactly 0 at θ = ½ but depends on θ: a plain sqrt(v) then gives 0·∞ = NaN."""
    theta = torch.tensor(0.5, requires_grad=True)
    w = {"w": torch.tensor([1.0, 2.0])}
    loss_fn = lambda p: (p["w"][0] * theta) ** 2 + p["w"][1] * (theta - 0.5)   # noqa: E731
    pk, _ = unroll_discriminator(loss_fn, w, 2, FunctionalAdam(0.1))
    (grad,) = torch.autograd.grad(pk["w"].sum(), theta)
    assert torch.isfinite(grad)
    assert_close(pk["w"][1], torch.tensor(2.0))


# --- progressive growing -------------------------------------------------------------------------
def test_fading_real_images_blend_low_resolution_first():
    """During a fade-in at α the reals are (1-α)·upsample(downsample(x)) + α·x (at α = 0.25, not 0.5)."""
    torch.manual_seed(0)
    tiny = dict(fmap_base=32, fmap_max=8)
    G, D = ProgressiveGenerator(latent_dim=4, max_resolution=8, **tiny), ProgressiveDiscriminator(max_resolution=8, **tiny)
    cfg = ProgressiveConfig(steps=0, batch_size=2, stabilize_steps=2, fade_steps=4, progress=False)
    tr = ProgressiveTrainer(G, D, TensorSource(torch.rand(4, 1, 8, 8)), cfg)
    tr.step = 3                                               # stage 1 (8x8), the second step of the fade
    tr._apply_schedule()
    assert (tr.stage, tr.alpha) == (1, 0.25)
    x = torch.arange(64.0).view(1, 1, 8, 8)
    low = x.view(1, 1, 4, 2, 4, 2).mean((3, 5)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert_close(tr.downsample_reals(x), 0.75 * low + 0.25 * x)


# --- phased augmentation -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rotation", "translation", "zoom"])
def test_strict_schedule_refuses_a_range_left_in_the_last_phase(name):
    with pytest.raises(ValueError, match="last phase"):
        PhasedAugmentation([{name: 0.2}, {name: 0.1}], [0.5])
    PhasedAugmentation([{name: 0.2}, {name: 0.1}], [0.5], strict=False)   # allowed for a baseline


@pytest.mark.parametrize("name", ["rotation", "translation", "zoom"])
def test_strict_schedule_refuses_a_range_that_widens(name):
    with pytest.raises(ValueError, match=f"widens {name}"):
        PhasedAugmentation([{name: 0.1}, {name: 0.2}, {}], [0.3, 0.6])
    PhasedAugmentation([{name: 0.2}, {name: 0.2}, {}], [0.3, 0.6])       # equal ranges may follow


def test_mirror_probability_is_one_half():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(4000, 1, 4, 4).contiguous()
    out = random_affine(x, hflip=True, generator=torch.Generator().manual_seed(0))
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (mirrored | kept).all()
    assert abs(mirrored.double().mean().item() - 0.5) < 0.03    # 4000 draws: 6 standard deviations


def test_phase_boundaries_round_half_up_and_the_trainer_uses_the_step_it_trains():
    sched = PhasedAugmentation([AugmentPhase(10), AugmentPhase(5), AugmentPhase()], [0.25, 0.75])
    assert sched.phase_starts(10) == [0, 3, 8]                  # 2.5 -> 3 and 7.5 -> 8, never a step early
    assert [sched.phase_index(s, 10) for s in range(10)] == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2]

    seen = []

    class Spy(PhasedAugmentation):
        def __call__(self, x, step, total_steps, generator=None):
            seen.append(step)
            return super().__call__(x, step, total_steps, generator)

    module = nn.Linear(2, 2)
    spy = Spy([AugmentPhase(10), AugmentPhase(5), AugmentPhase()], [0.25, 0.75])
    loss_fn = lambda x: (module(x.flatten(1)[:, :2]).square().mean(), {})     # noqa: E731
    tr = PhasedTrainer(module, loss_fn, TensorSource(torch.randn(8, 1, 4, 4)), spy,
                       PhasedConfig(steps=10, batch_size=2, log_every=1))
    tr.fit()
    assert seen == list(range(10))
    assert tr.history["phase"] == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2]


# --- VQ-VAE-2 ------------------------------------------------------------------------------------
def _quantiser(**kw):
    vq = VectorQuantizerEMA(num_codes=2, dim=1, **kw)
    vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    vq.embed_sum.copy_(vq.codebook)
    return vq


def _latents(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_commitment_gradient_reaches_the_encoder_output():
    """commitment = β·mean(z - sg[e])²: its gradient w.r.t. z is 2β(z - e)/N (the encoder is pulled)."""
    vq = _quantiser(beta=0.25).eval()
    z = _latents([1.0, 2.0, 9.0]).requires_grad_(True)
    _, _, commitment = vq(z)
    (grad,) = torch.autograd.grad(commitment, z)
    assert_close(grad, 2 * 0.25 * (z.detach() - _latents([0.0, 0.0, 10.0])) / 3)


def test_ema_cluster_sizes_keep_the_decay_and_add_the_complement():
    vq = _quantiser(decay=0.9, eps=0.0).train()
    vq(_latents([1.0, 2.0, 9.0]))                             # counts n = [2, 1], sums = [3, 9]
    assert_close(vq.cluster_size, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * 1 + 0.1 * 1]))
    assert_close(vq.embed_sum, torch.tensor([[0.9 * 0 + 0.1 * 3], [0.9 * 10 + 0.1 * 9]]))
    assert_close(vq.codebook, vq.embed_sum / vq.cluster_size[:, None])


def test_dead_code_restart_survives_the_next_ema_update():
    vq = _quantiser(decay=0.9, eps=0.0, dead_threshold=0.95).train()
    vq(_latents([1.0, 1.0, 1.0]))                             # code 1 unused: count 0.9 < 0.95 -> restarted
    assert vq.codebook[1].item() == 1.0 and vq.cluster_size[1].item() == 1.0
    vq(_latents([1.0, 1.0]))                                   # now code 1 is the nearest for both
    # N_1 = 0.9·1 + 0.1·2 = 1.1, m_1 = 0.9·1 + 0.1·2 = 1.1: the restarted code stays at 1
    assert_close(vq.cluster_size[1], torch.tensor(1.1))
    assert_close(vq.codebook[1], torch.tensor([1.0]))
