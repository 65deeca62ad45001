"""PacGAN packing (Lin et al., 2018): packs are consecutive samples, never mixed across packs."""

import pytest
import torch
from torch.testing import assert_close

from ganlib.data import TensorSource, ring_of_gaussians
from ganlib.models import DCGANDiscriminator, MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer
from ganlib.training.packing import PackedDiscriminator, pack, unpack


def _labelled_vectors(n, d):
    """Sample i is the vector [i + 0.0, i + 0.1, ...]: every entry names its sample and feature."""
    return torch.arange(n, dtype=torch.float32)[:, None] + 0.1 * torch.arange(d, dtype=torch.float32)


def test_pack_vectors_concatenates_consecutive_samples_along_features():
    x = _labelled_vectors(6, 2)
    p = pack(x, 3)
    assert p.shape == (2, 6)
    assert_close(p, torch.tensor([[0.0, 0.1, 1.0, 1.1, 2.0, 2.1],
                                  [3.0, 3.1, 4.0, 4.1, 5.0, 5.1]]))
    assert_close(unpack(p, 3), x)


def test_pack_images_concatenates_along_channels():
    n, m, C = 4, 2, 3
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) * 10 + torch.arange(C).view(1, C, 1, 1)
    x = x.expand(n, C, 5, 5)
    p = pack(x, m)
    assert p.shape == (n // m, m * C, 5, 5)
    for i in range(n // m):
        for j in range(m):                      # channels j*C .. j*C+C-1 of pack i are sample i*m+j
            assert_close(p[i, j * C:(j + 1) * C], x[i * m + j])


def test_permutations_within_packs_only_reorder_a_pack_across_packs_change_it():
    torch.manual_seed(0)
    x, m = torch.randn(12, 2), 3
    packs = pack(x, m)
    member_sets = [sorted(r.view(m, 2).tolist()) for r in packs]
    within = torch.cat([torch.randperm(m) + i * m for i in range(4)])
    packs_within = pack(x[within], m)
    assert [sorted(r.view(m, 2).tolist()) for r in packs_within] == member_sets   # same members per pack
    across = torch.arange(12)
    across[[2, 3]] = across[[3, 2]]             # swap the last sample of pack 0 with the first of pack 1
    packs_across = pack(x[across], m)
    assert [sorted(r.view(m, 2).tolist()) for r in packs_across] != member_sets
    assert not torch.equal(packs_across[0], packs[0]) and not torch.equal(packs_across[1], packs[1])
    assert torch.equal(packs_across[2:], packs[2:])


def test_packed_discriminator_scores_packs_and_depends_only_on_its_pack():
    torch.manual_seed(0)
    m = 4
    D = PackedDiscriminator(MLPDiscriminator(in_dim=2 * m, hidden=8, depth=2), m)
    x = torch.randn(20, 2, requires_grad=True)
    out = D(x)
    assert out.shape == (5,)
    (jac,) = torch.autograd.grad(out[1], x)          # pack 1 = samples 4..7
    touched = jac.abs().sum(1) > 0
    assert touched.tolist() == [4 <= i < 8 for i in range(20)]
    assert_close(out, D.base(x.detach().reshape(5, 8)))

    Dimg = PackedDiscriminator(DCGANDiscriminator(channels=3 * 2, image_size=8, width=4), 2)
    assert Dimg(torch.randn(6, 3, 8, 8)).shape == (3,)


def test_packing_errors_are_clear():
    with pytest.raises(ValueError, match="multiple of m"):
        pack(torch.randn(10, 2), 3)
    with pytest.raises(ValueError, match="integer >= 1"):
        pack(torch.randn(10, 2), 0)
    with pytest.raises(ValueError, match="at least 2-D"):
        pack(torch.randn(10), 2)
    D = PackedDiscriminator(MLPDiscriminator(in_dim=6, hidden=8, depth=1), 3)
    with pytest.raises(ValueError, match="multiple of m"):
        D(torch.randn(7, 2))
    with pytest.raises(ValueError, match="in_dim=5 is not a multiple"):
        PackedDiscriminator(MLPDiscriminator(in_dim=5, hidden=8, depth=1), 2)


@pytest.mark.parametrize("loss", ["ns", "minimax"])
def test_plain_trainer_trains_a_packed_discriminator(loss):
    # The base discriminator must see packs: 16 samples -> 8 rows of two different real samples side
    # by side (consecutive draws), once per D step, and both players must learn through the packs.
    torch.manual_seed(0)
    data = _labelled_vectors(64, 2) / 64
    G = MLPGenerator(hidden=8, depth=2)
    base = MLPDiscriminator(in_dim=4, hidden=8, depth=2)
    seen = []
    base.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    cfg = TrainConfig(steps=3, batch_size=16, loss=loss, progress=False, log_every=3)
    before = [p.detach().clone() for p in (*base.parameters(), *G.parameters())]
    Trainer(G, PackedDiscriminator(base, 2), TensorSource(data), cfg).fit()
    assert all(not torch.equal(a, b) for a, b in zip(before, (*base.parameters(), *G.parameters())))
    assert all(x.shape == (8, 4) for x in seen)
    is_data_row = lambda halves: (halves[:, None, :] == data[None]).all(-1).any(-1)
    real_packs = [x for x in seen if is_data_row(x[:, :2]).all() and is_data_row(x[:, 2:]).all()]
    assert len(real_packs) == cfg.steps * cfg.n_critic
    assert all((x[:, :2] != x[:, 2:]).any(-1).float().mean() > 0.5 for x in real_packs)
