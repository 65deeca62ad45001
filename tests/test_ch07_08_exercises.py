"""Autograder tests for the exercises of chapters 7 (progressive growing) and 8 (self-attention)."""

import torch
from torch import nn
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.models import MinibatchStdDev, ProgressiveGenerator, SelfAttention2d


class _Fixed(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, h):
        return self.value


def test_ch07_fade_in():
    fade_in = load_exercise("07_progressive_growing")["fade_in"]
    g = torch.Generator().manual_seed(0)
    old, new = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    G = ProgressiveGenerator(latent_dim=4, channels=3, max_resolution=8, fmap_base=32, fmap_max=8)
    G.to_rgb[0], G.to_rgb[1] = _Fixed(old), _Fixed(new)
    for alpha in (0.0, 0.25, 0.9, 1.0):
        G.set_progress(1, alpha)
        assert_close(fade_in(old, new, alpha), G(torch.zeros(2, 4)))
    # hand value: a single old pixel becomes a 2x2 block (nearest), blended with the new image
    out = fade_in(torch.ones(1, 1, 1, 1) * 2, torch.zeros(1, 1, 2, 2), 0.25)
    assert_close(out, torch.full((1, 1, 2, 2), 1.5))


def test_ch07_minibatch_stddev():
    f = load_exercise("07_progressive_growing")["minibatch_stddev"]
    x = torch.randn(8, 4, 2, 3, generator=torch.Generator().manual_seed(1))
    assert_close(f(x), MinibatchStdDev(4)(x))
    assert_close(f(x[:2], group_size=4), MinibatchStdDev(4)(x[:2]))   # batch smaller than a group
    # hand value: a group of four copies of one sample has zero spread -> sqrt(1e-8)
    same = torch.randn(1, 2, 2, 2).expand(4, 2, 2, 2).contiguous()
    assert_close(f(same)[:, 2], torch.full((4, 2, 2), 1e-4))


def test_ch08_attention_map_by_hand():
    f = load_exercise("08_self_attention")["attention_map_by_hand"]
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 4, 5)
    for j in (0, 7, 19):
        beta = f(block, x, j)
        assert beta.shape == (2, 20)
        assert_close(beta, block.attention_map(x, j).reshape(2, -1))
        assert_close(beta.sum(-1), torch.ones(2))
    # hand value: the same feature vector at every position gives a uniform map, 1 / N
    flat = torch.randn(1, 16, 1, 1).expand(1, 16, 4, 5)
    assert_close(f(block, flat, 7), torch.full((1, 20), 1 / 20))
    # hand value: C = 8 -> one key/query channel; f = g = channel 0, two positions holding 1
    # and 2 -> logits for the query j = 1 are s_i1 = x_i * 2 = [2, 4], beta = softmax([2, 4])
    small = SelfAttention2d(8)
    with torch.no_grad():
        for conv in (small.f, small.g):
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0
    x2 = torch.zeros(1, 8, 1, 2)
    x2[0, 0, 0] = torch.tensor([1.0, 2.0])
    e2 = torch.exp(torch.tensor(2.0))
    assert_close(f(small, x2, 1), torch.stack([1 / (1 + e2), e2 / (1 + e2)])[None])


def test_ch08_official_attention():
    f = load_exercise("08_self_attention")["official_attention"]
    torch.manual_seed(0)
    block = SelfAttention2d(32, variant="official")
    x = torch.randn(2, 32, 6, 4)
    assert_close(f(block, x), x)                                      # gamma = 0 at initialisation
    with torch.no_grad():
        block.gamma.fill_(-0.6)
    assert_close(f(block, x), block(x), rtol=1e-5, atol=1e-5)
