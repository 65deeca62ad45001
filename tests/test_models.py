import pytest
import torch

from ganlib.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


def test_mlp_shapes_and_latent():
    G, D = MLPGenerator(latent_dim=3), MLPDiscriminator()
    z = G.sample_latent(7, generator=torch.Generator().manual_seed(0))
    assert z.shape == (7, 3) and G(z).shape == (7, 2) and D(G(z)).shape == (7,)
    assert MLPDiscriminator(out_dim=4)(torch.zeros(5, 2)).shape == (5, 4)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_dcgan_shapes_and_range(size):
    G = DCGANGenerator(latent_dim=16, channels=3, image_size=size, width=8)
    D = DCGANDiscriminator(channels=3, image_size=size, width=8)
    x = G(G.sample_latent(4))
    assert x.shape == (4, 3, size, size) and x.abs().max() <= 1
    assert D(x).shape == (4,)


def test_width_is_the_capacity_knob():
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(DCGANGenerator(width=16)) < count(DCGANGenerator(width=32))


def test_spectral_norm_bounds_each_layer():
    D = MLPDiscriminator(spectral_norm=True)
    for _ in range(20):  # power iterations converge during forward passes in train mode
        D(torch.randn(8, 2))
    for layer in D.net:
        if isinstance(layer, torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
            assert sigma < 1.05


def test_bad_shapes_and_sizes_are_refused():
    with pytest.raises(ValueError, match="image_size"):
        DCGANGenerator(image_size=12)
    with pytest.raises(ValueError, match="expected images"):
        DCGANDiscriminator(image_size=8)(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="expected latent"):
        MLPGenerator(latent_dim=2)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(norm="instance")
