import pytest
import torch
from torch.testing import assert_close

from ganlib.data import ring_of_gaussians
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer, seed_everything
from ganlib.training.batched import SeedBatch

make_g = lambda: MLPGenerator(hidden=16, depth=2)
make_d = lambda: MLPDiscriminator(hidden=16, depth=2)


@pytest.mark.parametrize("loss, optimizer", [("ns", "adam"), ("minimax", "adam"), ("wgan", "rmsprop")])
def test_seed_batch_equals_separate_trainers(loss, optimizer):
    cfg = TrainConfig(steps=6, batch_size=16, n_critic=2, lr_d=1e-3, lr_g=5e-4, loss=loss, optimizer=optimizer,
                      progress=False, log_every=3)
    batch = SeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[3, 7])
    batch.fit()
    for s, seed in enumerate([3, 7]):
        seed_everything(seed)
        G, D = make_g(), make_d()
        tr = Trainer(G, D, ring_of_gaussians(), TrainConfig(**{**cfg.__dict__, "seed": seed}))
        tr.fit()
        assert_close(torch.tensor(batch.history["d_loss"])[:, s], torch.tensor(tr.history["d_loss"]),
                     rtol=1e-4, atol=1e-5)
        assert_close(batch.model(s, like=G).net[0].weight, G.net[0].weight, rtol=1e-4, atol=1e-5)


def test_models_are_independent_and_clipping_applies():
    cfg = TrainConfig(steps=3, batch_size=8, progress=False)
    batch = SeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0, 0, 1], clip_weights=0.05)
    batch.fit()
    out = batch.sample(10)
    assert out.shape == (3, 10, 2)
    with torch.no_grad():
        same_z = batch.generate(torch.randn(1, 10, 2).expand(3, 10, 2))
    assert_close(same_z[0], same_z[1])        # same seed, same trajectory
    assert not torch.allclose(same_z[0], same_z[2])
    assert all(p.abs().max() <= 0.05 for p in batch.d_params.values())
    with pytest.raises(ValueError, match="clip_weights"):
        SeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0], clip_weights=0)
