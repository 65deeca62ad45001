import pytest
import torch
from torch.testing import assert_close

from ganlib.models import GatedPixelCNN
from ganlib.models.pixelcnn import horizontal_mask, raster_mask, vertical_mask

H = W = 5
K = 6


def _dependence(model, codes, cond=None):
    """dep[p, q]: does the logit vector at raster position p change when the code at q changes?"""
    base = model(codes, cond)[0]
    n = codes[0].numel()
    dep = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        other = codes.clone()
        other.view(-1)[q] = (other.view(-1)[q] + 1) % K
        diff = (model(other, cond)[0] - base).abs().amax(0).flatten()   # [H*W]
        dep[:, q] = diff > 1e-6
    return dep


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GatedPixelCNN(K, width=8, n_layers=4, kernel=3, first_kernel=3).eval()


def test_masks_hand_values():
    assert raster_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert raster_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert vertical_mask(3).tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]
    assert horizontal_mask(5, "A").tolist() == [[1, 1, 0, 0, 0]]
    assert horizontal_mask(5, "B").tolist() == [[1, 1, 1, 0, 0]]
    with pytest.raises(ValueError, match="odd"):
        raster_mask(4, "A")


def test_causality_no_future_dependence(model):
    codes = torch.randint(K, (1, H, W), generator=torch.Generator().manual_seed(1))
    dep = _dependence(model, codes)
    # q >= p in raster order (the position itself and everything after it) must not matter
    assert not dep.triu().any()


def test_no_blind_spot(model):
    codes = torch.randint(K, (1, H, W), generator=torch.Generator().manual_seed(2))
    dep = _dependence(model, codes)
    i, j = 2, 2
    p = i * W + j
    for (a, b) in [(i, j - 1), (i - 1, j), (i - 1, j + 1), (i - 1, j + 2), (i - 2, j + 2), (i, 0)]:
        assert dep[p, a * W + b], f"logits at {(i, j)} ignore the code at {(a, b)}"
    # every earlier position is seen by position (4, 4) with 4 layers of 3x3 on a 5x5 map
    assert dep[H * W - 1, : H * W - 1].all()


def test_conditioning_changes_logits_but_not_causality():
    torch.manual_seed(0)
    m = GatedPixelCNN(K, width=8, n_layers=3, kernel=3, first_kernel=3, cond_codes=4, cond_scale=2).eval()
    codes = torch.randint(K, (1, 4, 4))
    c1 = torch.zeros(1, 2, 2, dtype=torch.long)
    c2 = c1.clone()
    c2[0, 1, 1] = 3
    l1, l2 = m(codes, c1), m(codes, c2)
    assert not torch.allclose(l1, l2)
    # the top codes are given, so every position may see all of them; the codes stay causal
    assert not _dependence(m, codes, c2).triu().any()
    with pytest.raises(ValueError, match="conditional"):
        m(codes)
    with pytest.raises(ValueError, match="upsampled"):
        m(codes, torch.zeros(1, 3, 3, dtype=torch.long))


def test_nll_is_cross_entropy_in_bits(model):
    codes = torch.randint(K, (3, H, W))
    logits = model(codes)
    by_hand = -torch.log2(logits.softmax(1).gather(1, codes[:, None]).squeeze(1)).flatten(1).sum(1)
    assert_close(model.nll(codes), by_hand, rtol=1e-5, atol=1e-4)


def test_sampling_shapes_and_determinism(model):
    a = model.sample(7, shape=(H, W), generator=torch.Generator().manual_seed(5))
    b = model.sample(7, shape=(H, W), generator=torch.Generator().manual_seed(5))
    assert a.shape == (7, H, W) and a.dtype == torch.long and torch.equal(a, b)
    assert 0 <= int(a.min()) and int(a.max()) < K
    torch.manual_seed(0)
    cm = GatedPixelCNN(K, width=8, n_layers=2, cond_codes=4, cond_scale=2).eval()
    cond = torch.randint(4, (3, 2, 2))
    s = cm.sample(3, cond=cond, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        model.sample(2)


def _sample_on_the_whole_map(model, n, shape, cond, generator):
    """The plain loop: every draw runs the network on the whole map."""
    s = model.condition(cond, shape)
    codes = torch.zeros(n, *shape, dtype=torch.long)
    for i in range(shape[0]):
        for j in range(shape[1]):
            probs = torch.softmax(model._logits(codes, s)[:, :, i, j], dim=1)
            codes[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return codes


def test_sampling_on_the_rows_so_far_draws_what_the_whole_map_draws(model):
    # sample() runs the network on rows <= i for row i: the same logits, so the same draws
    gen = lambda: torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(50, shape=(H, W), generator=gen()),
                       _sample_on_the_whole_map(model, 50, (H, W), None, gen()))
    torch.manual_seed(1)
    cm = GatedPixelCNN(K, width=8, n_layers=3, first_kernel=5, cond_codes=4, cond_scale=2).eval()
    cond = torch.randint(4, (50, 3, 2))
    assert torch.equal(cm.sample(50, cond=cond, generator=gen()),
                       _sample_on_the_whole_map(cm, 50, (6, 4), cond, gen()))


def test_sampling_follows_the_model():
    # a prior whose logits ignore the input: the head's bias alone sets p; samples follow it
    torch.manual_seed(0)
    m = GatedPixelCNN(3, width=4, n_layers=1).eval()
    with torch.no_grad():
        last = m.head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.log(torch.tensor([0.7, 0.2, 0.1])))
    s = m.sample(4000, shape=(1, 2), generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(s.flatten(), minlength=3).float() / s.numel()
    assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02, rtol=0)


@pytest.mark.parametrize("mask", [vertical_mask(3), vertical_mask(5), horizontal_mask(3, "A"), horizontal_mask(5, "B"),
                                  raster_mask(5, "A")])
def test_masked_conv_equals_full_masked_kernel(mask):
    from ganlib.models.pixelcnn import MaskedConv2d
    import torch.nn.functional as F

    torch.manual_seed(0)
    conv = MaskedConv2d(3, 4, mask)
    x = torch.randn(2, 3, 5, 6)
    ref = F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=(mask.shape[0] // 2, mask.shape[1] // 2))
    assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


def test_dropout_is_causal_in_training_and_off_in_eval():
    """Dropout (as in VQ-VAE-2's priors) drops gated features, never a mask's zero: in training
    mode with one fixed dropout draw the logits still ignore the future; in eval mode it is off."""
    torch.manual_seed(0)
    plain = GatedPixelCNN(K, width=8, n_layers=4, kernel=3, first_kernel=3)
    torch.manual_seed(0)
    dropped = GatedPixelCNN(K, width=8, n_layers=4, kernel=3, first_kernel=3, dropout=0.5)
    codes = torch.randint(K, (1, H, W), generator=torch.Generator().manual_seed(3))
    assert_close(dropped.eval()(codes), plain.eval()(codes))  # same weights, eval: dropout is off

    dropped.train()
    state = torch.get_rng_state()

    def same_draw(c, cond=None):  # every call reuses one dropout mask
        torch.set_rng_state(state)
        return dropped(c, cond)

    assert not torch.equal(same_draw(codes), plain(codes))  # training mode: features are dropped
    assert not _dependence(same_draw, codes).triu().any()


def test_zero_dropout_draws_no_random_numbers_and_bad_rates_are_refused():
    torch.manual_seed(0)
    model = GatedPixelCNN(K, width=8, n_layers=2, kernel=3, first_kernel=3, dropout=0.0).train()
    state = torch.get_rng_state()
    model(torch.zeros(2, H, W, dtype=torch.long))
    assert torch.equal(torch.get_rng_state(), state)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout"):
            GatedPixelCNN(K, width=8, dropout=bad)
