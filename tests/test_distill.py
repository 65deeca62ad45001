"""DGL-GAN (Tian et al., arXiv 2112.06502): the teacher term of the student generator's loss,
the frozen teacher, the two-stage schedule, the batched version and the size counters."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganlib.data import TensorSource
from ganlib.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganlib.training import CheckpointError, TrainConfig, Trainer, seed_everything
from ganlib.training.distill import (
    DGL_KEYS, DGLSeedBatch, DGLTrainer, check_lambda, count_macs, count_parameters, dgl_generator_loss,
    freeze_teacher, two_stage,
)
from ganlib.training.penalized import PenalizedSeedBatch


class LinearG(nn.Module):
    """G(z) = W z: its gradient can be written by hand."""

    def __init__(self, latent_dim=3, out_dim=2):
        super().__init__()
        self.latent_dim = latent_dim
        self.lin = nn.Linear(latent_dim, out_dim, bias=False)

    def sample_latent(self, n, generator=None, device=None):
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def forward(self, z):
        return self.lin(z)


def linear_d(weights):
    """D(x) = w . x, one score per sample."""
    d = nn.Sequential(nn.Linear(len(weights), 1, bias=False), nn.Flatten(0))
    with torch.no_grad():
        d[0].weight.copy_(torch.tensor([weights]))
    return d


def cfg(**kw):
    base = dict(steps=3, batch_size=8, progress=False, log_every=1, lr_d=1e-3, lr_g=1e-3)
    return TrainConfig(**{**base, **kw})


def data(dim=2, n=40):
    return TensorSource(torch.randn(n, dim, generator=torch.Generator().manual_seed(5)))


def digits_like(n=40):
    return TensorSource(torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1)


def conv_teacher(**kw):
    torch.manual_seed(123)
    return freeze_teacher(DCGANDiscriminator(width=8, **kw))


# --- the loss -------------------------------------------------------------------------------------

def test_dgl_generator_loss_hand_values():
    s, t = torch.tensor([0.0, 0.0]), torch.tensor([math.log(3.0), math.log(3.0)])
    # ns: softplus(-0) = log 2; softplus(-log 3) = log(1 + 1/3) = log(4/3)
    assert_close(dgl_generator_loss(s, t, lam=0.1), torch.tensor(math.log(2) + 0.1 * math.log(4 / 3)))
    # hinge (BigGAN branch): -mean D_S - lam mean D_T
    s2, t2 = torch.tensor([1.0, -3.0]), torch.tensor([2.0, 4.0])
    assert_close(dgl_generator_loss(s2, t2, lam=0.5, loss="hinge"), torch.tensor(1.0 - 0.5 * 3.0))
    assert_close(dgl_generator_loss(s2, t2, lam=0.0, loss="hinge"), torch.tensor(1.0))
    with pytest.raises(ValueError, match="same fakes"):
        dgl_generator_loss(s2, torch.zeros(3))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_negative_or_non_finite_lambda_is_refused(bad):
    with pytest.raises(ValueError, match="lam"):
        check_lambda(bad)
    G, D = LinearG(), linear_d([1.0, 0.0])
    with pytest.raises(ValueError, match="lam"):
        DGLTrainer(G, D, data(), cfg(), freeze_teacher(linear_d([0.0, 1.0])), lam=bad)
    with pytest.raises(TypeError):
        check_lambda(True)


# --- the generator step ---------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["ns", "hinge"])
def test_generator_gradient_is_the_hand_computed_sum_of_both_terms(loss):
    a, b, lam, n = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.25]), 0.3, 8
    G = LinearG()
    D_S, D_T = linear_d(a.tolist()), freeze_teacher(linear_d(b.tolist()))
    tr = DGLTrainer(G, D_S, data(), cfg(loss=loss), D_T, lam=lam)
    rng = torch.Generator()
    rng.set_state(tr.noise_rng.get_state())
    z = torch.randn(n, 3, generator=rng)                       # the codes g_step will draw
    W = G.lin.weight.detach().clone()
    x = z @ W.T
    ls, lt = x @ a, x @ b                                       # known logits of D_S and D_T
    if loss == "ns":   # d softplus(-l) / dl = -sigmoid(-l)
        cs, ct = -torch.sigmoid(-ls) / n, -torch.sigmoid(-lt) / n
    else:              # d(-mean l) / dl = -1/n
        cs, ct = torch.full((n,), -1.0 / n), torch.full((n,), -1.0 / n)
    # dL/dW = sum_i (cs_i a + lam ct_i b) z_i^T
    expected = (cs[:, None] * a + lam * ct[:, None] * b).T @ z
    tr.g_step(n)
    assert_close(G.lin.weight.grad, expected)
    assert D_T[0].weight.grad is None                          # the teacher gets no gradient
    teacher_only = (lam * ct[:, None] * b).T @ z
    assert teacher_only.abs().sum() > 1e-3                     # the teacher's part is not negligible here
    assert_close(tr._dgl_pending[-1][0], dgl_generator_loss(ls, lt, lam=0.0, loss=loss))


def test_gradient_flows_through_the_teacher():
    """A student D with zero weights gives no signal: all of G's gradient must come through D_T
    (it would be zero if the fake were detached before the teacher)."""
    G = LinearG()
    tr = DGLTrainer(G, linear_d([0.0, 0.0]), data(), cfg(loss="hinge"), freeze_teacher(linear_d([1.0, -2.0])), lam=0.1)
    rng = torch.Generator()
    rng.set_state(tr.noise_rng.get_state())
    z = torch.randn(8, 3, generator=rng)
    tr.g_step(8)
    expected = -0.1 * torch.tensor([1.0, -2.0])[:, None] * z.mean(0)[None, :]
    assert G.lin.weight.grad.abs().sum() > 0
    assert_close(G.lin.weight.grad, expected)


@pytest.mark.parametrize("monitor", [False, True])
def test_lambda_zero_is_exactly_the_plain_trainer(monitor):
    """λ = 0 (stage 1, the baseline) must be the host GAN step, bit for bit, even with BatchNorm in G
    (the teacher check's probe must not touch its statistics) and with the teacher monitored."""
    make_g = lambda: DCGANGenerator(latent_dim=8, width=4, norm="batch")
    make_d = lambda: DCGANDiscriminator(width=4)
    teacher = conv_teacher(spectral_norm=True)
    seed_everything(0)
    tr_plain = Trainer(make_g(), make_d(), digits_like(), cfg())
    tr_plain.fit()
    seed_everything(0)
    tr_dgl = DGLTrainer(make_g(), make_d(), digits_like(), cfg(), teacher, lam=0.0, monitor_teacher=monitor)
    tr_dgl.fit()
    for a, b in [(tr_plain.G, tr_dgl.G), (tr_plain.D, tr_dgl.D)]:
        for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), k
    assert tr_plain.history["g_loss"] == tr_dgl.history["g_loss"]
    assert set(DGL_KEYS) <= set(tr_dgl.history)
    assert all(math.isnan(v) for v in tr_dgl.history["g_teacher"]) != monitor


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_teacher_is_bit_identical_after_training(lam):
    """Parameters and buffers of D_T, including spectral norm's u and v and BatchNorm statistics."""
    teacher = conv_teacher(spectral_norm=True, norm="batch")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert any(k.endswith("_u") for k in before) and any("running_mean" in k for k in before)
    seed_everything(1)
    tr = DGLTrainer(DCGANGenerator(latent_dim=8, width=4, norm="none"), DCGANDiscriminator(width=4, spectral_norm=True),
                    digits_like(), cfg(steps=4), teacher, lam=lam, monitor_teacher=True)
    tr.fit()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(math.isfinite(v) for v in tr.history["g_teacher"])


def test_lambda_changes_the_student_generator_only():
    """From the same seed, one step with λ > 0 moves G differently; D_S's first update is the same."""
    make_g, make_d = (lambda: MLPGenerator(latent_dim=4, out_dim=2, hidden=8, depth=1),
                      lambda: MLPDiscriminator(in_dim=2, hidden=8, depth=1))
    torch.manual_seed(7)
    teacher = freeze_teacher(MLPDiscriminator(in_dim=2, hidden=8, depth=1))
    runs = {}
    for lam in (0.0, 0.1):
        seed_everything(3)
        runs[lam] = DGLTrainer(make_g(), make_d(), data(), cfg(steps=1), teacher, lam=lam)
        runs[lam].fit()
    assert_close(runs[0.0].D.net[0].weight, runs[0.1].D.net[0].weight, rtol=0, atol=0)
    assert not torch.equal(runs[0.0].G.net[0].weight, runs[0.1].G.net[0].weight)


# --- refusing bad teachers ------------------------------------------------------------------------

def test_bad_teachers_are_refused():
    G, D = DCGANGenerator(latent_dim=8, width=4, norm="none"), DCGANDiscriminator(width=4)
    torch.manual_seed(0)
    trainable = DCGANDiscriminator(width=8).eval()
    with pytest.raises(ValueError, match="trainable parameters.*freeze_teacher"):
        DGLTrainer(G, D, digits_like(), cfg(), trainable)
    training_mode = DCGANDiscriminator(width=8).requires_grad_(False)
    with pytest.raises(ValueError, match="training mode"):
        DGLTrainer(G, D, digits_like(), cfg(), training_mode)
    with pytest.raises(ValueError, match="student's own discriminator"):
        DGLTrainer(G, freeze_teacher(D), digits_like(), cfg(), D)
    wrong_size = freeze_teacher(DCGANDiscriminator(width=8, image_size=16))
    with pytest.raises(ValueError, match=r"does not accept the student's samples of shape \(1, 8, 8\)"):
        DGLTrainer(G, DCGANDiscriminator(width=4), digits_like(), cfg(), wrong_size)
    wrong_dim = freeze_teacher(MLPDiscriminator(in_dim=32))
    with pytest.raises(ValueError, match="does not accept"):
        DGLTrainer(MLPGenerator(latent_dim=4, out_dim=64), MLPDiscriminator(in_dim=64), data(64), cfg(), wrong_dim)
    many_outputs = freeze_teacher(DCGANDiscriminator(width=8, out_dim=3))
    with pytest.raises(ValueError, match="one score per sample"):
        DGLTrainer(G, DCGANDiscriminator(width=4), digits_like(), cfg(), many_outputs)
    with pytest.raises(TypeError):
        freeze_teacher("not a module")


# --- the two-stage schedule -----------------------------------------------------------------------

def _mlp_pair():
    return MLPGenerator(latent_dim=4, out_dim=2, hidden=8, depth=1), MLPDiscriminator(in_dim=2, hidden=8, depth=1)


def test_branch_starts_stage_two_from_stage_one_weights_with_fresh_adam():
    torch.manual_seed(9)
    teacher = freeze_teacher(MLPDiscriminator(in_dim=2, hidden=8, depth=1))
    seed_everything(0)
    stage1 = DGLTrainer(*_mlp_pair(), data(), cfg(ema_decay=0.9), teacher, lam=0.0)
    stage1.fit(2)
    stage2 = stage1.branch(0.1)
    assert stage2.lam == 0.1 and stage2.step == 2 and stage2.teacher is teacher
    assert len(stage2.opt_g.state) == 0 and len(stage2.opt_d.state) == 0        # fresh Adam states
    assert all(s["step"] == 2 for s in stage1.opt_g.state.values())
    for a, b in [(stage1.G, stage2.G), (stage1.D, stage2.D), (stage1.G_ema, stage2.G_ema)]:
        for p, q in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    stage2.fit(3)
    assert all(s["step"] == 1 for s in stage2.opt_g.state.values())
    assert stage1.step == 2 and stage2.history["step"] == [1, 2, 3]


def test_branch_with_copied_optimizers_continues_exactly():
    torch.manual_seed(9)
    teacher = freeze_teacher(MLPDiscriminator(in_dim=2, hidden=8, depth=1))
    seed_everything(0)
    straight = DGLTrainer(*_mlp_pair(), data(), cfg(), teacher, lam=0.0)
    straight.fit(5)
    seed_everything(0)
    first = DGLTrainer(*_mlp_pair(), data(), cfg(), teacher, lam=0.0)
    first.fit(2)
    cont = first.branch(0.0, fresh_optimizers=False)
    cont.fit(5)
    for p, q in zip(straight.G.parameters(), cont.G.parameters()):
        assert torch.equal(p, q)


def test_two_stage_runs_baseline_and_dgl_from_the_same_stage_one():
    torch.manual_seed(9)
    teacher = freeze_teacher(MLPDiscriminator(in_dim=2, hidden=8, depth=1))
    seed_everything(0)
    with pytest.raises(ValueError, match="lam=0"):
        two_stage(DGLTrainer(*_mlp_pair(), data(), cfg(), teacher, lam=0.1), 2, 2)
    seed_everything(0)
    runs = two_stage(DGLTrainer(*_mlp_pair(), data(), cfg(), teacher, lam=0.0), 2, 3)
    assert runs["stage1"].step == 2 and runs["dgl"].step == 5 and runs["baseline"].step == 5
    assert runs["dgl"].lam == 0.1 and runs["baseline"].lam == 0.0
    # same batches and codes, same D_S first update from the shared weights; G differs by the teacher term
    assert runs["dgl"].history["d_real"][2] == runs["baseline"].history["d_real"][2]
    assert not torch.equal(runs["dgl"].G.net[0].weight, runs["baseline"].G.net[0].weight)


def test_checkpoint_resume_and_lambda_mismatch(tmp_path):
    torch.manual_seed(9)
    teacher = freeze_teacher(MLPDiscriminator(in_dim=2, hidden=8, depth=1))
    seed_everything(0)
    straight = DGLTrainer(*_mlp_pair(), data(), cfg(steps=4), teacher, lam=0.1)
    straight.fit()
    seed_everything(0)
    part = DGLTrainer(*_mlp_pair(), data(), cfg(steps=4, checkpoint_dir=str(tmp_path)), teacher, lam=0.1)
    part.fit(2)
    resumed = DGLTrainer(*_mlp_pair(), data(), cfg(steps=4, checkpoint_dir=str(tmp_path)), teacher, lam=0.1)
    resumed.fit()
    for p, q in zip(straight.G.parameters(), resumed.G.parameters()):
        assert torch.equal(p, q)
    assert resumed.history["g_teacher"] == straight.history["g_teacher"]
    other = DGLTrainer(*_mlp_pair(), data(), cfg(steps=4, checkpoint_dir=str(tmp_path)), teacher, lam=0.2)
    with pytest.raises(CheckpointError, match="lam"):
        other.fit()


# --- several seeds at once -----------------------------------------------------------------------

make_g = lambda: MLPGenerator(latent_dim=4, out_dim=2, hidden=8, depth=1)
make_sn_d = lambda: MLPDiscriminator(in_dim=2, hidden=8, depth=1, spectral_norm=True)


def _teacher_mlp():
    torch.manual_seed(11)
    return freeze_teacher(MLPDiscriminator(in_dim=2, hidden=16, depth=2, spectral_norm=True))


def test_seed_batch_lambda_zero_equals_penalized_seed_batch():
    c = cfg(steps=3, loss="hinge")
    plain = PenalizedSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1])
    plain.fit()
    dgl = DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1], teacher=_teacher_mlp(), lam=0.0)
    dgl.fit()
    for k in plain.g_params:
        assert torch.equal(plain.g_params[k], dgl.g_params[k])
    for k in plain.d_buffers:
        assert torch.equal(plain.d_buffers[k], dgl.d_buffers[k])


def test_seed_batch_matches_separate_dgl_trainers():
    teacher = _teacher_mlp()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    c = cfg(steps=3, ema_decay=0.8)
    batch = DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[3, 4], teacher=teacher, lam=[0.0, 0.3])
    batch.fit()
    for s, (seed, lam) in enumerate([(3, 0.0), (4, 0.3)]):
        seed_everything(seed)
        G, D = make_g(), make_sn_d()
        tr = DGLTrainer(G, D, data(), TrainConfig(**{**c.__dict__, "seed": seed}), teacher, lam=lam)
        tr.fit()
        assert_close(batch.model(s, like=G).net[0].weight, G.net[0].weight, rtol=1e-4, atol=1e-5)
        assert_close(batch.g_ema["net.0.weight"][s], tr.G_ema.net[0].weight, rtol=1e-4, atol=1e-5)
        z = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(10_007))[s]   # sample's codes of model s
        assert_close(batch.sample(5, ema=True)[s], tr.G_ema(z), rtol=1e-4, atol=1e-5)
        assert_close(torch.tensor(batch.history["g_student"])[:, s], torch.tensor(tr.history["g_student"]),
                     rtol=1e-4, atol=1e-5)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_seed_batch_branch_tiles_seeds_into_arms_with_fresh_adam():
    teacher = _teacher_mlp()
    stage1 = DGLSeedBatch(make_g, make_sn_d, data(), cfg(), seeds=[0, 1], teacher=teacher, lam=0.0)
    stage1.fit(2)
    stage2 = stage1.branch([0.0, 0.1, 0.3])
    assert stage2.n_models == 6 and stage2.seeds == [0, 1] * 3
    assert stage2.lam_values == [0.0] * 2 + [0.1] * 2 + [0.3] * 2
    assert len(stage2.opt_g.state) == 0 and stage2.step == 2
    for k, v in stage2.g_params.items():
        for a in range(3):
            assert torch.equal(v[2 * a:2 * a + 2], stage1.g_params[k])
    assert stage2.g_ema is None
    with pytest.raises(ValueError, match="ema_decay"):
        stage2.sample(3, ema=True)
    stage2.fit(4)
    w = stage2.g_params["net.0.weight"]
    assert not torch.equal(w[0], w[2]) and not torch.equal(w[2], w[4])     # λ moved the DGL arms
    # arm 0 (λ = 0) of seed 0 saw the same batches as the DGL arm: the first D_S update after the branch agrees
    d_real = torch.tensor(stage2.history["d_real"])
    assert d_real[0, 0] == d_real[0, 2] == d_real[0, 4]
    runs = two_stage(DGLSeedBatch(make_g, make_sn_d, data(), cfg(), seeds=[0, 1], teacher=teacher, lam=0.0), 2, 2)
    assert runs["stage2"].lam_values == [0.0, 0.0, 0.1, 0.1]
    with pytest.raises(ValueError, match="one λ per model"):
        stage1.set_lam([0.1])


def test_stage_one_without_teacher_resumed_from_a_checkpoint_equals_the_in_process_schedule(tmp_path):
    """Stage 1 never reads D_T, so it may train with teacher=None (e.g. beside the teacher, in another
    process), be saved, and be resumed into stage 2 with the teacher: bit for bit the schedule run in
    one process with the teacher from the start. A teacher is still required wherever λ > 0."""
    teacher = _teacher_mlp()
    c = cfg(ema_decay=0.8)
    seed_everything(0)
    together = DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1], teacher=teacher, lam=0.0)
    together.fit(3)
    ref = together.branch([0.0, 0.3])
    ref.fit(6)

    seed_everything(0)
    alone = DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1], teacher=None, lam=0.0)
    alone.fit(3)
    path = alone.save(tmp_path / "stage1.pt")
    torch.manual_seed(123)                                        # another process, another global RNG state
    resumed = DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1], teacher=None, lam=0.0)
    resumed.load(path)
    stage2 = resumed.branch([0.0, 0.3], teacher=teacher)
    assert stage2.teacher is teacher and resumed.teacher is None
    stage2.fit(6)
    for k in ref.g_params:
        assert torch.equal(stage2.g_params[k], ref.g_params[k]), k
    for k in ref.g_ema:
        assert torch.equal(stage2.g_ema[k], ref.g_ema[k]), k
    assert torch.equal(stage2.sample(4, ema=True), ref.sample(4, ema=True))
    g_teacher = torch.tensor(stage2.history["g_teacher"])
    assert torch.isfinite(g_teacher[:, 2:]).all()                # the λ = 0.3 arm read the teacher
    assert torch.equal(g_teacher.nan_to_num(-1.0), torch.tensor(ref.history["g_teacher"]).nan_to_num(-1.0))

    with pytest.raises(ValueError, match="needs the frozen teacher"):
        DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1], teacher=None, lam=0.1)
    with pytest.raises(ValueError, match="needs the frozen teacher"):
        DGLSeedBatch(make_g, make_sn_d, data(), c, seeds=[0, 1], teacher=None, lam=0.0, monitor_teacher=True)
    with pytest.raises(ValueError, match="needs the frozen teacher"):
        alone.branch([0.0, 0.1])                                  # stage 2 without a teacher


# --- sizes ---------------------------------------------------------------------------------------

def test_parameter_and_mac_counts_by_hand():
    G = DCGANGenerator(latent_dim=4, width=2, norm="none")   # top = 4 channels at 4x4
    # Linear 4 -> 64: 4*64 + 64; ConvT 4 -> 2, k4: 4*2*16 + 2; Conv 2 -> 1, k3: 2*9 + 1
    assert count_parameters(G) == 320 + 130 + 19
    # MACs: Linear 4*64; ConvT at its input resolution: (4*4*4 inputs) * 2 * 16; Conv: 64 outputs * 2 * 9
    assert count_macs(G, torch.randn(5, 4)) == 256 + 2048 + 1152
    plain, sn = MLPDiscriminator(in_dim=3, hidden=5, depth=1), MLPDiscriminator(in_dim=3, hidden=5, depth=1,
                                                                                spectral_norm=True)
    assert count_parameters(plain) == count_parameters(sn) == 3 * 5 + 5 + 5 + 1
    assert count_parameters(freeze_teacher(sn), trainable_only=True) == 0
    assert count_macs(sn, torch.randn(2, 3)) == 15 + 5
    assert G.training and sn.training is False
