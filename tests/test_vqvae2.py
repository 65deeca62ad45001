import pytest
import torch
from torch.testing import assert_close

from ganlib.models import VQVAE2, VectorQuantizerEMA


def _hand_quantiser(**kw):
    vq = VectorQuantizerEMA(num_codes=2, dim=1, **kw)
    vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    vq.embed_sum.copy_(vq.codebook)
    return vq


def _latents(values):                      # [B=1, D=1, H=1, W=len(values)]
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_quantiser_picks_nearest_code_and_commitment_value():
    vq = _hand_quantiser(beta=0.25).eval()
    z = _latents([1.0, 2.0, 9.0, 4.9, 5.1])
    q, idx, commit = vq(z)
    assert idx.tolist() == [[[0, 0, 1, 0, 1]]]
    assert_close(q, _latents([0.0, 0.0, 10.0, 0.0, 10.0]))
    # beta * mean (z - e)^2 = 0.25 * (1 + 4 + 1 + 24.01 + 24.01) / 5
    assert_close(commit, torch.tensor(0.25 * 54.02 / 5))


def test_straight_through_gradient_is_identity():
    vq = _hand_quantiser().eval()
    z = _latents([1.0, 2.0, 9.0]).requires_grad_(True)
    w = torch.tensor([3.0, -1.0, 2.0]).view(1, 1, 1, 3)
    q, _, _ = vq(z)
    (q * w).sum().backward()
    assert_close(z.grad, w)


def test_ema_update_hand_example():
    vq = _hand_quantiser(decay=0.5, eps=0.0).train()
    vq(_latents([1.0, 2.0, 9.0]))
    # counts n = [2, 1], sums = [3, 9]; N = 0.5 * 1 + 0.5 * n; m = 0.5 * e + 0.5 * sums
    assert_close(vq.cluster_size, torch.tensor([1.5, 1.0]))
    assert_close(vq.embed_sum, torch.tensor([[1.5], [9.5]]))
    assert_close(vq.codebook, torch.tensor([[1.0], [9.5]]))
    before = vq.codebook.clone()
    vq.eval()(_latents([1.0, 2.0, 9.0]))
    assert torch.equal(vq.codebook, before)                  # eval mode never moves the codebook


def test_laplace_smoothing_and_dead_code_restart():
    vq = _hand_quantiser(decay=0.5, eps=1.0).train()
    vq(_latents([1.0, 2.0, 9.0]))
    n = 2.5
    smoothed = (torch.tensor([1.5, 1.0]) + 1.0) / (n + 2.0) * n
    assert_close(vq.codebook.squeeze(1), torch.tensor([1.5, 9.5]) / smoothed)
    dead = _hand_quantiser(decay=0.5, eps=0.0, dead_threshold=0.9).train()
    dead(_latents([1.0, 2.0, 3.0]))                            # code 1 unused: count 0.5 < 0.9
    assert dead.codebook[1].item() in (1.0, 2.0, 3.0) and dead.cluster_size[1].item() == 1.0


@pytest.mark.parametrize("size,factors,shapes", [(8, (2, 2), ((2, 2), (4, 4))), (16, (2, 2), ((4, 4), (8, 8))),
                                                 (16, (4, 2), ((2, 2), (4, 4)))])
def test_vqvae2_shapes_and_roundtrip(size, factors, shapes):
    model = VQVAE2(hidden=16, res_channels=8, num_codes=16, code_dim=4, bottom_factor=factors[0],
                   top_factor=factors[1]).eval()
    x = torch.randn(3, 1, size, size)
    x_hat, commit = model(x)
    assert x_hat.shape == x.shape and commit.ndim == 0
    top, bottom = model.encode_indices(x)
    assert (tuple(top.shape[1:]), tuple(bottom.shape[1:])) == shapes == model.latent_shapes(size)
    assert top.dtype == torch.long and int(top.max()) < 16
    assert_close(model.decode_indices(top, bottom), x_hat)     # the codes carry everything the decoder sees


def test_vqvae2_training_step_moves_weights_and_codebooks():
    torch.manual_seed(0)
    model = VQVAE2(hidden=16, res_channels=8, num_codes=16, code_dim=4, bottom_factor=2, top_factor=2).train()
    x = torch.randn(8, 1, 8, 8)
    cb = model.quant_b.codebook.clone()
    loss, stats = model.loss(x)
    loss.backward()
    assert model.enc_b[0].weight.grad.abs().sum() > 0          # reaches the encoder through straight-through
    assert model.quant_b.codebook.requires_grad is False and not torch.equal(cb, model.quant_b.codebook)
    assert set(stats) == {"recon", "commitment"}


def test_vqvae2_rejects_bad_input():
    model = VQVAE2(hidden=16, res_channels=8, num_codes=16, code_dim=4, bottom_factor=2, top_factor=2)
    with pytest.raises(ValueError, match="multiples"):
        model(torch.randn(1, 1, 6, 6))
    with pytest.raises(ValueError, match="images"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="power of 2"):
        VQVAE2(bottom_factor=3)
    with pytest.raises(ValueError, match="top_factor"):
        model.decode_indices(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
