import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganlib.models import (DCGANDiscriminator, DCGANGenerator, EqualizedConv2d, EqualizedLinear, MinibatchStdDev,
                           PixelNorm, SelfAttention2d, attention_readout, spectral_norm_all)


# --- self-attention --------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["paper", "official"])
def test_attention_is_identity_at_init_and_not_after(variant):
    block = SelfAttention2d(16, variant=variant)
    x = torch.randn(3, 16, 6, 6)
    assert block.gamma.item() == 0.0
    assert torch.equal(block(x), x)                    # γ = 0: y = x + 0·o exactly
    with torch.no_grad():
        block.gamma.fill_(0.7)
    y = block(x)
    assert not torch.allclose(y, x)
    # and the change is exactly γ·o, with o the v-projection of the attended values
    beta = block.attention(x)                          # [n, N, Nk]
    val = block.h(x)
    if variant == "official":
        val = nn.functional.max_pool2d(val, 2)
    o = (beta @ val.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(3, -1, 6, 6)
    assert_close(y, x + 0.7 * block.v(o), rtol=1e-5, atol=1e-5)


def test_attention_gradient_reaches_gamma_at_init():
    block = SelfAttention2d(16)
    block(torch.randn(2, 16, 4, 4)).square().sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs() > 0


def test_attention_map_is_a_softmax_of_f_g_products():
    torch.manual_seed(1)
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 5, 4)
    fx = block.f.weight.flatten(1) @ x.flatten(2)      # keys   [n, C/8, N]
    gx = block.g.weight.flatten(1) @ x.flatten(2)      # queries [n, C/8, N]
    s = torch.einsum("nci,ncj->nij", fx, gx)           # s_ij = f(x_i)^T g(x_j)
    beta = torch.softmax(s, dim=1)                     # β_{j,i}: softmax over i, column j
    row, col = 3, 2
    j = row * 4 + col
    amap = block.attention_map(x, (row, col))
    assert amap.shape == (2, 5, 4)
    assert_close(amap.sum(dim=(1, 2)), torch.ones(2))
    assert_close(amap.reshape(2, -1), beta[:, :, j])
    assert_close(block.attention_map(x, j), amap)
    full = block.attention(x)
    assert_close(full.sum(-1), torch.ones(2, 20))
    assert_close(full, beta.transpose(1, 2))


def test_official_variant_pools_keys_and_uses_c_over_2_values():
    block = SelfAttention2d(32, variant="official")
    assert block.f.out_channels == 4 and block.g.out_channels == 4
    assert block.h.out_channels == 16 and block.v.in_channels == 16
    amap = block.attention_map(torch.randn(2, 32, 8, 6), (0, 0))
    assert amap.shape == (2, 4, 3)
    paper = SelfAttention2d(32)
    assert paper.h.out_channels == 4 and paper.v.in_channels == 4


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_forward_equals_the_four_1x1_convolutions(variant):
    torch.manual_seed(2)
    block = SelfAttention2d(24, variant=variant)
    with torch.no_grad():
        block.gamma.fill_(1.3)
    x = torch.randn(4, 24, 6, 6)
    y_fast = block(x)
    beta = block.attention(x)
    val = block.h(x)
    if variant == "official":
        val = nn.functional.max_pool2d(val, 2)
    o = (beta @ val.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(4, -1, 6, 6)
    assert_close(y_fast, x + 1.3 * block.v(o), rtol=1e-5, atol=1e-5)
    y2, beta2 = block(x, return_attention=True)
    assert_close(y2, y_fast)
    assert_close(beta2, beta)


def test_attention_refuses_bad_input():
    with pytest.raises(ValueError, match="channels"):
        SelfAttention2d(4)
    with pytest.raises(ValueError, match="variant"):
        SelfAttention2d(16, variant="bigger")
    block = SelfAttention2d(16)
    with pytest.raises(ValueError, match="16"):
        block(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="grid"):
        block.attention_map(torch.randn(1, 16, 4, 4), (4, 0))
    with pytest.raises(ValueError, match="even"):
        SelfAttention2d(16, variant="official")(torch.randn(1, 16, 5, 4))


def test_dcgan_attention_insertion_keeps_init_function_and_reads_out():
    G1 = DCGANGenerator(latent_dim=8, image_size=16, width=8, attention_resolution=8).eval()
    idx = [i for i, m in enumerate(G1.blocks) if isinstance(m, SelfAttention2d)]
    assert len(idx) == 1 and G1.blocks[idx[0] - 1].__class__ is nn.ReLU     # after the 8x8 block
    z = torch.randn(4, 8)
    with_block = G1(z)
    out, amap = attention_readout(G1, z, (2, 5))
    assert_close(out, with_block)
    G1.blocks[idx[0]] = nn.Identity()
    assert_close(with_block, G1(z))                    # γ = 0: the same function as without the block
    assert out.shape == (4, 1, 16, 16) and amap.shape == (4, 8, 8)
    assert_close(amap.sum(dim=(1, 2)), torch.ones(4))
    D = DCGANDiscriminator(image_size=16, width=8, spectral_norm=True, attention_resolution=16)
    att = next(m for m in D.modules() if isinstance(m, SelfAttention2d))
    assert att.channels == 8 and hasattr(att.f, "parametrizations")
    assert D(torch.randn(4, 1, 16, 16)).shape == (4,)
    with pytest.raises(ValueError, match="attention_resolution"):
        DCGANGenerator(image_size=16, attention_resolution=32)


def test_spectral_norm_all_wraps_generator_layers_once():
    G = spectral_norm_all(DCGANGenerator(latent_dim=8, image_size=8, width=8, attention_resolution=8))
    wrapped = [m for m in G.modules() if hasattr(m, "parametrizations")]
    assert len(wrapped) == 1 + 1 + 1 + 4               # linear, conv-transpose, to-image conv, 4 attention convs
    spectral_norm_all(G)                               # idempotent
    assert all(len(m.parametrizations.weight) == 1 for m in wrapped)
    ct = next(m for m in G.modules() if isinstance(m, nn.ConvTranspose2d))
    assert ct.parametrizations.weight[0].dim == 1      # ConvTranspose weight is [in, out, k, k]
    assert next(m for m in G.modules() if isinstance(m, nn.Linear)).parametrizations.weight[0].dim == 0


# --- ProGAN layers ---------------------------------------------------------------------------

def test_minibatch_stddev_hand_computed():
    x = torch.randn(8, 3, 2, 2)
    y = MinibatchStdDev(4)(x)
    assert y.shape == (8, 4, 2, 2)
    assert torch.equal(y[:, :3], x)
    # groups are strided: sample i is in group i mod 2 (8 samples, groups of 4 -> 2 groups)
    for m in range(2):
        members = x[m::2]                              # the 4 samples of group m
        std = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert_close(y[m::2, 3], std.expand(4, 2, 2))


def test_minibatch_stddev_small_batch_and_bad_batch():
    x = torch.randn(2, 3, 2, 2)                        # smaller than the group: one group of 2
    std = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    assert_close(MinibatchStdDev(4)(x)[:, 3], std.expand(2, 2, 2))
    with pytest.raises(ValueError, match="multiple"):
        MinibatchStdDev(4)(torch.randn(6, 3, 2, 2))


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = torch.randn(5, 7, 3, 3) * 10
    y = PixelNorm()(x)
    assert_close(y.square().mean(dim=1), torch.ones(5, 3, 3))
    assert_close(y, x / (x.square().mean(1, keepdim=True) + 1e-8).sqrt())


def test_equalized_linear_runtime_scale_and_output():
    layer = EqualizedLinear(20, 5)
    assert math.isclose(layer.scale, math.sqrt(2 / 20))
    assert 0.8 < layer.weight.std().item() < 1.2      # stored weights are N(0, 1)
    ref = nn.Linear(20, 5)
    with torch.no_grad():
        ref.weight.copy_(layer.weight * math.sqrt(2 / 20))
        ref.bias.copy_(layer.bias)
    x = torch.randn(4, 20)
    assert_close(layer(x), ref(x))
    # the gradient w.r.t. the stored weight is scaled by c: the "equalized" learning rate
    layer(x).sum().backward()
    ref(x).sum().backward()
    assert_close(layer.weight.grad, ref.weight.grad * math.sqrt(2 / 20))


def test_equalized_conv_runtime_scale_and_output():
    layer = EqualizedConv2d(6, 4, 3, gain=1.0)
    assert math.isclose(layer.scale, 1 / math.sqrt(6 * 9))
    layer2 = EqualizedConv2d(6, 4, 3)
    assert math.isclose(layer2.scale, math.sqrt(2 / (6 * 9)))
    ref = nn.Conv2d(6, 4, 3, padding=1)
    with torch.no_grad():
        ref.weight.copy_(layer2.weight * math.sqrt(2 / 54))
        ref.bias.copy_(torch.randn(4))
        layer2.bias.copy_(ref.bias)
    x = torch.randn(2, 6, 5, 5)
    assert_close(layer2(x), ref(x))
    with pytest.raises(ValueError, match="odd"):
        EqualizedConv2d(3, 3, 2)
