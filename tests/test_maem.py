"""MaEM-GAN (Liu et al., 2023): losses, replay buffers, entropy estimator, trainer, seed ensemble."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganlib.data import ring_of_gaussians
from ganlib.models import MLPGenerator
from ganlib.models.embedding import EmbeddingDiscriminator
from ganlib.training import CheckpointError, TrainConfig, seed_everything
from ganlib.training.maem import (
    MaEMConfig, MaEMEnsemble, MaEMTrainer, OfficialReplayBuffer, ReplayBuffer, SeedEnsemble, discriminator_losses,
    dlle_loss, dlle_transform, entropy_loss, entropy_weight, isomap_loss, isomap_mix, isomap_target, knn_entropy,
    maf_d_loss, maf_g_loss, nearest_neighbours, nn_distances, realness,
)


# --- replay buffers -----------------------------------------------------------------------------

def test_fifo_buffer_keeps_the_last_k_codes_in_order():
    buf = ReplayBuffer(10, 2, init="empty")
    assert len(buf) == 0
    pushed = torch.arange(2 * 3 * 37, dtype=torch.float32).reshape(37, 3, 2)   # 37 batches of 3
    for i, batch in enumerate(pushed):
        buf.push(batch)
        assert len(buf) == min(10, 3 * (i + 1))
    assert_close(buf.contents(), pushed.reshape(-1, 2)[-10:])
    buf.push(torch.full((25, 2), -1.0))                   # a batch larger than the buffer
    assert len(buf) == 10 and bool((buf.contents() == -1).all())


def test_fifo_buffer_starts_full_of_uniform_codes_and_stacks_over_seeds():
    buf = ReplayBuffer(6, 3, batch_shape=(4,), generator=torch.Generator().manual_seed(0))
    assert len(buf) == 6 and buf.data.shape == (4, 6, 3)
    assert bool((buf.data.abs() <= 1).all())
    new = torch.randn(4, 4, 3)
    buf.push(new)
    assert_close(buf.contents()[:, -4:], new)
    assert_close(buf.contents()[:, :2], buf.data[:, 4:6])   # the two survivors of the initial fill


def test_official_buffer_shrinks_to_the_previous_batch():
    # train.py: cat(buffer[batch_size:], batch[None]) drops 64 slots and adds 1.
    buf = OfficialReplayBuffer(1024, 4, batch_size=64, generator=torch.Generator().manual_seed(0))
    sizes = []
    for _ in range(20):
        buf.push(torch.randn(64, 4))
        sizes.append(len(buf))
    assert sizes[:3] == [961, 898, 835] and sizes[15] == 16 and sizes[16:] == [1, 1, 1, 1]
    last = torch.randn(64, 4)
    buf.push(last)
    assert_close(buf.nearest(torch.randn(64, 4)), last)     # the only neighbour left: same index, previous batch


def test_official_buffer_compares_only_the_same_batch_index():
    buf = OfficialReplayBuffer(3, 2, batch_size=2, generator=torch.Generator().manual_seed(0))
    buf.data = torch.tensor([[[0.0, 0.0], [9.0, 9.0]], [[5.0, 5.0], [1.0, 1.0]], [[2.0, 2.0], [4.0, 4.0]]])
    q = torch.tensor([[1.0, 1.0], [8.0, 8.0]])
    # index 0 chooses among (0,0),(5,5),(2,2); index 1 among (9,9),(1,1),(4,4) -- never across indices
    assert_close(buf.nearest(q), torch.tensor([[0.0, 0.0], [9.0, 9.0]]))


# --- nearest neighbours and the entropy estimator -----------------------------------------------

def test_nearest_neighbour_distances_equal_brute_force():
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(3, 50, 5, generator=g), torch.randn(3, 200, 5, generator=g)
    brute = (q[:, :, None, :] - r[:, None, :, :]).square().sum(-1).sqrt().min(dim=-1).values   # all pairs
    assert_close(nn_distances(q, r), brute, rtol=1e-5, atol=1e-5)
    loo = torch.tensor([min(float((q[0, i] - q[0, j]).norm()) for j in range(50) if j != i) for i in range(50)])
    assert_close(nn_distances(q[0]), loo, rtol=1e-5, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(q[0, :, None], r[0, None], dim=-1)
    idx, nb = nearest_neighbours(q[0], r[0], "cosine")
    assert torch.equal(idx, cos.argmax(1)) and torch.equal(nb, r[0, cos.argmax(1)])


def test_knn_entropy_matches_a_gaussian_and_grows_when_samples_spread():
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(2))
    h = knn_entropy(x)
    assert abs(float(h) - math.log(2 * math.pi * math.e)) < 0.1        # H(N(0, I_2)) = log(2 pi e)
    assert_close(knn_entropy(3.0 * x) - h, torch.tensor(2 * math.log(3.0)), rtol=0, atol=1e-4)
    ref = torch.randn(500, 2, generator=torch.Generator().manual_seed(3))
    assert float(knn_entropy(2 * x[:100], 2 * ref)) > float(knn_entropy(x[:100], ref)) + 1.0


def test_entropy_terms_are_finite_on_duplicates_and_an_all_equal_buffer():
    codes = torch.ones(8, 4, requires_grad=True)           # a fully collapsed batch
    buf = ReplayBuffer(16, 4, init="empty")
    buf.push(torch.ones(16, 4))                             # an all-equal buffer, equal to the codes
    assert torch.isfinite(knn_entropy(codes)) and torch.isfinite(knn_entropy(codes, buf.reference()))
    for metric in ("l2", "cosine"):
        loss = entropy_loss(codes, buf.nearest(codes, metric), metric, lam=0.1)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(codes.grad).all()
        codes.grad = None
    zeros = torch.zeros(8, 4, requires_grad=True)           # zero codes: cosine is undefined, must stay finite
    entropy_loss(zeros, torch.zeros(8, 4), "cosine").backward()
    assert torch.isfinite(zeros.grad).all()


def test_entropy_loss_hand_values_and_direction():
    v = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    nb = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # official: -log(mean_b mean_k (v - r)^2) = -log((1 + 0 + 0 + 0) / 4)
    assert_close(entropy_loss(v, nb, "l2", eps=0.0), torch.tensor(-math.log(0.25)))
    # Eq. 8: mean_b cos(V, V*) + lambda ||V||: cos = [1 (zero vector counts as 0), 1]
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    n2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert_close(entropy_loss(w, n2, "cosine", lam=0.5), torch.tensor((1 / math.sqrt(2) + 1) / 2 + 0.5 * 1.5))
    # minimising it moves a code away from its neighbour
    c = torch.tensor([[0.5, 0.0]], requires_grad=True)
    entropy_loss(c, torch.zeros(1, 2), "l2").backward()
    assert c.grad[0, 0] < 0                                  # gradient descent increases the distance


def test_entropy_weight_warms_up_linearly():
    assert [entropy_weight(s, 0.2, 100) for s in (0, 50, 100, 500)] == [0.0, 0.1, 0.2, 0.2]
    assert entropy_weight(0, 0.2, 0) == 0.2


# --- L_MaF, DLLE, DIsoMap -----------------------------------------------------------------------

def test_maf_loss_is_the_mean_realness_gap():
    real = torch.tensor([[1.0, 3.0], [2.0, 2.0]])          # realness 2, 2
    fake = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])         # realness 0.5, -0.5
    assert_close(realness(real), torch.tensor([2.0, 2.0]))
    assert_close(maf_d_loss(real, fake), torch.tensor(-2.0))
    assert_close(maf_g_loss(fake), torch.tensor(0.0))
    assert_close(maf_d_loss(real.expand(3, 2, 2), fake.expand(3, 2, 2)), torch.full((3,), -2.0))


def test_dlle_is_zero_when_f_is_the_identity():
    seed_everything(0)
    D = EmbeddingDiscriminator.mlp(m=4, hidden=16, depth=2, reparameterize=False).eval()   # eval: no SN update
    x = torch.randn(32, 2)
    for metric in ("l2", "mse"):
        assert_close(dlle_loss(D(x), D(dlle_transform(x, "identity")), metric), torch.tensor(0.0))
        with torch.no_grad():
            assert float(dlle_loss(D(x), D(dlle_transform(x, "noise", noise_std=0.3)), metric)) > 1e-4
    cfg = MaEMConfig(dlle_transform="identity", isomap_weight=0, entropy_weight=0)
    _, stats = discriminator_losses(D.train(), x, torch.randn(32, 2), cfg)   # one D call: exact even in training
    assert_close(stats["l_dlle"], torch.tensor(0.0))
    assert_close(dlle_loss(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2), "l2"), torch.tensor(5.0))   # unsquared


def test_disomap_is_zero_for_a_linear_embedding():
    lin = nn.Linear(12, 5)
    real, fake = torch.randn(16, 3, 2, 2), torch.randn(16, 3, 2, 2)
    D = lambda x: lin(x.flatten(1))
    for alpha in ("uniform", "normal"):
        x_mix, a = isomap_mix(real, fake, alpha)
        target = isomap_target(D(real), D(fake), a)
        for metric in ("cosine", "mse"):
            assert_close(isomap_loss(D(x_mix), target, metric), torch.tensor(0.0), rtol=0, atol=1e-5)
    # a non-linear embedding is not isometric in this sense
    D2 = lambda x: torch.tanh(3 * lin(x.flatten(1)))
    x_mix, a = isomap_mix(real, fake)
    with torch.no_grad():
        assert float(isomap_loss(D2(x_mix), isomap_target(D2(real), D2(fake), a), "mse")) > 1e-3


def test_uniform_mixing_weights_are_convex_and_official_ones_are_not():
    g = torch.Generator().manual_seed(0)
    _, a = isomap_mix(torch.zeros(1000, 2), torch.ones(1000, 2), "uniform", g)
    assert bool(((a >= 0) & (a <= 1)).all())
    _, a = isomap_mix(torch.zeros(1000, 2), torch.ones(1000, 2), "normal", g)
    assert bool((a < 0).any() and (a > 1).any())


def test_rotation_transform_keeps_norms_and_zero_angle_is_identity():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(64, 2)
    rot = dlle_transform(pts, "rotate_noise", noise_std=0.0, max_degrees=30, generator=g)
    assert_close(rot.norm(dim=1), pts.norm(dim=1))
    assert not torch.allclose(rot, pts)
    imgs = torch.rand(5, 3, 8, 8) * 2 - 1
    assert_close(dlle_transform(imgs, "rotate_noise", noise_std=0.0, max_degrees=0.0, generator=g), imgs,
                 rtol=0, atol=1e-5)
    flipped = dlle_transform(imgs, "flip_noise", noise_std=0.0, generator=g)
    assert torch.equal(flipped, imgs.flip(-1)) or torch.equal(flipped, imgs.flip(-2))


# --- the embedding discriminator ----------------------------------------------------------------

def test_embedding_discriminator_reparameterizes_around_its_mean():
    seed_everything(0)
    D = EmbeddingDiscriminator.mlp(m=3, hidden=16, depth=2).eval()     # eval: spectral norm fixed
    assert D.m == 3 and D.trunk.out_dim == 6
    x = torch.randn(4, 2)
    mu = D.embed(x)
    with torch.no_grad():
        draws = D(x.repeat(4000, 1)).reshape(4000, 4, 3)                # 4,000 draws per input
    assert not torch.equal(draws[0], draws[1])
    logvar = D.trunk(x)[:, 3:]
    assert_close(draws.mean(0), mu, rtol=0, atol=0.1)
    assert_close(draws.std(0), (0.5 * logvar).exp(), rtol=0.1, atol=0.01)
    assert D.realness(x).shape == (4,)
    conv = EmbeddingDiscriminator.dcgan(m=4, channels=3, image_size=8, width=8, reparameterize=False).eval()
    assert conv(torch.randn(2, 3, 8, 8)).shape == (2, 4) and torch.equal(conv(torch.ones(1, 3, 8, 8)),
                                                                           conv.embed(torch.ones(1, 3, 8, 8)))


def test_bad_settings_are_refused():
    from ganlib.models import MLPDiscriminator

    with pytest.raises(ValueError, match="even"):
        EmbeddingDiscriminator(MLPDiscriminator(out_dim=3), reparameterize=True)
    with pytest.raises(TypeError, match="out_dim"):
        EmbeddingDiscriminator(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="entropy_metric"):
        MaEMConfig(entropy_metric="euclid")
    with pytest.raises(ValueError, match="entropy_weight"):
        MaEMConfig(entropy_weight=-1)
    with pytest.raises(ValueError, match="flips images"):
        dlle_transform(torch.randn(4, 2), "flip_noise")
    with pytest.raises(ValueError, match="agree"):
        nearest_neighbours(torch.randn(4, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="stores whole batches"):
        OfficialReplayBuffer(8, 2, batch_size=4).nearest(torch.randn(3, 2))
    with pytest.raises(TypeError, match=r"\.m"):
        MaEMTrainer(MLPGenerator(), MLPDiscriminator(), ring_of_gaussians(), TrainConfig(steps=1))


# --- training -----------------------------------------------------------------------------------

def _trainer(tmp_path=None, maem=None):
    seed_everything(0)
    G = MLPGenerator(latent_dim=4, hidden=16, depth=2)
    D = EmbeddingDiscriminator.mlp(m=4, hidden=16, depth=2)
    cfg = TrainConfig(steps=6, batch_size=16, n_critic=3, lr_d=1e-3, lr_g=1e-3, betas_d=(0.0, 0.999),
                      betas_g=(0.0, 0.999), log_every=2, progress=False,
                      checkpoint_dir=None if tmp_path is None else str(tmp_path))
    maem = maem or MaEMConfig(dlle_transform="rotate_noise", entropy_weight=0.1, entropy_warmup=4, buffer_size=24)
    return MaEMTrainer(G, D, ring_of_gaussians(), cfg, maem)


@pytest.mark.parametrize("maem", [None, MaEMConfig.official(dlle_transform="noise", entropy_weight=0.1,
                                                                buffer_size=40)])
def test_maem_trainer_resumes_exactly(tmp_path, maem):
    straight = _trainer(maem=maem)
    straight.fit()
    warmup = [0.0, 0.025, 0.05, 0.075, 0.1] if maem is None else [0.1] * 5    # official preset: no warm-up
    assert straight.history["ent_weight"][:5] == pytest.approx(warmup)
    first = _trainer(tmp_path, maem)
    first.fit(steps=3)
    resumed = _trainer(tmp_path, maem)
    torch.manual_seed(99)
    resumed.fit()
    for key in straight.history:
        assert_close(torch.tensor(resumed.history[key]), torch.tensor(straight.history[key]), rtol=0, atol=0)
    for a, b in zip(resumed.D.parameters(), straight.D.parameters()):
        assert_close(a, b, rtol=0, atol=0)
    assert_close(resumed.buffer_gen.data, straight.buffer_gen.data, rtol=0, atol=0)
    other = _trainer(tmp_path, MaEMConfig(entropy_weight=0.5))
    with pytest.raises(CheckpointError, match=r"maem.entropy_weight: checkpoint .*, this run 0.5"):
        other.fit()


def test_seed_ensemble_matches_its_members_with_spectral_norm():
    seed_everything(0)
    Ds = [EmbeddingDiscriminator.mlp(m=3, hidden=8, depth=2, reparameterize=False) for _ in range(3)]
    ens = SeedEnsemble(Ds)
    x = torch.randn(3, 10, 2)
    for _ in range(3):                                   # both sides run one power iteration per call
        out = ens(x)
        for e, D in enumerate(Ds):
            assert_close(out[e], D(x[e]), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    Ds[1](x[1]).sum().backward()
    name = "trunk.net.0.parametrizations.weight.original"
    assert_close(ens.params[name].grad[1], Ds[1].trunk.net[0].parametrizations.weight.original.grad,
                 rtol=1e-4, atol=1e-6)


def test_maem_ensemble_trains_arms_and_seeds_at_once():
    cfg = TrainConfig(steps=4, batch_size=16, n_critic=3, lr_d=1e-3, lr_g=1e-3, log_every=2)
    full = MaEMConfig(dlle_transform="noise", entropy_weight=0.1, buffer_size=32)
    arms = [MaEMConfig(dlle_transform="noise", isomap_weight=0, dlle_weight=0, entropy_weight=0, buffer_size=32),
            full, MaEMConfig(**{**full.to_dict(), "buffer": "official"})]
    make_d = lambda: EmbeddingDiscriminator.mlp(m=4, hidden=16, depth=2)
    ens = MaEMEnsemble(lambda: MLPGenerator(latent_dim=4, hidden=16, depth=2), make_d, ring_of_gaussians(), cfg, arms,
                       seeds=[0, 1])
    assert ens.n_members == 6 and [ens.member_arm(i) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    w = ens.D.params["trunk.net.0.parametrizations.weight.original"]
    assert torch.equal(w[0], w[2]) and torch.equal(w[0], w[4]) and not torch.equal(w[0], w[1])   # same seed, same init
    hist = ens.fit()
    assert hist["step"] == [2, 4] and len(hist["l_ent"][0]) == 6
    assert hist["l_ent"][-1][:2] == [0.0, 0.0] and hist["l_iso"][-1][0] == 0.0     # arm 0 has the terms off
    assert hist["ent_weight"][-1] == pytest.approx([0, 0, 0.1, 0.1, 0.1, 0.1])
    s = ens.sample(50)
    assert s.shape == (6, 50, 2) and not torch.allclose(s[0], s[1])
    assert ens.embed(torch.randn(7, 2)).shape == (6, 7, 4)
    with pytest.raises(ValueError, match="differ only in"):
        MaEMEnsemble(lambda: MLPGenerator(latent_dim=4, hidden=16, depth=2), make_d, ring_of_gaussians(), cfg,
                     [full, MaEMConfig(entropy_metric="l2")], seeds=[0])
