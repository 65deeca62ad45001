import pytest
import torch
from torch.testing import assert_close

from ganlib.data import AugmentPhase, PhasedAugmentation, affine_transform, random_affine


def _params(n, angle=0.0, shift=(0.0, 0.0), scale=1.0, flip=False):
    return (torch.full((n,), float(angle)), torch.tensor([shift] * n, dtype=torch.float32),
            torch.full((n,), float(scale)), torch.full((n,), flip, dtype=torch.bool))


def test_strength_zero_is_exact_identity_and_draws_nothing():
    x = torch.randn(4, 3, 6, 6)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert random_affine(x, generator=g) is x
    assert torch.equal(g.get_state(), state)
    assert AugmentPhase(10, 0.1, 0.1).scaled(0.0)(x) is x
    # an explicit identity transform through grid_sample hits the pixel centres exactly
    assert_close(affine_transform(x, *_params(4)), x, atol=1e-6, rtol=0)


def test_rotation_by_90_degrees_equals_rot90():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    assert_close(affine_transform(x, *_params(2, angle=90)), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4, rtol=0)
    assert_close(affine_transform(x, *_params(2, angle=-90)), torch.rot90(x, -1, dims=(-2, -1)), atol=1e-4, rtol=0)


def test_flip_shift_and_fill():
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    assert_close(affine_transform(x, *_params(1, flip=True)), x.flip(-1), atol=1e-5, rtol=0)
    # shift by 1/5 of the side = one pixel to the right; the uncovered column reads the fill value
    y = affine_transform(x, *_params(1, shift=(0.2, 0.0)), fill=-1.0)
    assert_close(y[..., 1:], x[..., :-1], atol=1e-5, rtol=0)
    assert_close(y[..., 0], torch.full((1, 1, 5), -1.0))
    down = affine_transform(x, *_params(1, shift=(0.0, 0.2)), padding_mode="border")
    assert_close(down[..., 1:, :], x[..., :-1, :], atol=1e-5, rtol=0)
    assert_close(down[..., 0, :], x[..., 0, :], atol=1e-5, rtol=0)   # border repeats the edge row


def test_random_affine_reproducible_and_per_sample():
    x = torch.randn(8, 1, 8, 8)
    a = random_affine(x, 20, 0.1, 0.1, generator=torch.Generator().manual_seed(3))
    b = random_affine(x, 20, 0.1, 0.1, generator=torch.Generator().manual_seed(3))
    c = random_affine(x, 20, 0.1, 0.1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = x[:1].expand(8, -1, -1, -1)
    y = random_affine(same, 20, 0.1, 0.1, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(y[0], y[1])       # each image gets its own parameters


def test_phase_lookup_at_known_steps():
    sched = PhasedAugmentation([dict(rotation=15, translation=0.1, zoom=0.1), dict(rotation=5), {}], [0.45, 0.9])
    assert sched.phase_starts(100) == [0, 45, 90]
    got = [sched.phase_index(s, 100) for s in (0, 44, 45, 89, 90, 99)]
    assert got == [0, 0, 1, 1, 2, 2]
    assert sched.phase(50, 100) == AugmentPhase(rotation=5)
    x = torch.randn(3, 1, 8, 8)
    assert sched(x, 95, 100) is x                 # last phase: the data unchanged
    with pytest.raises(ValueError, match="step"):
        sched.phase_index(100, 100)


def test_schedule_validation_errors():
    strong, mild = AugmentPhase(15, 0.1, 0.1), AugmentPhase(5, 0.03, 0.03)
    with pytest.raises(ValueError, match="widens rotation"):
        PhasedAugmentation([mild, strong, AugmentPhase()], [0.3, 0.6])
    with pytest.raises(ValueError, match="unchanged"):
        PhasedAugmentation([strong, mild], [0.5])
    with pytest.raises(ValueError, match="mirror"):
        PhasedAugmentation([AugmentPhase(10, hflip=True), AugmentPhase(hflip=True)], [0.5])
    PhasedAugmentation([AugmentPhase(10, hflip=True), AugmentPhase(hflip=True)], [0.5], flip_invariant=True)
    with pytest.raises(ValueError, match="turns the mirror on"):
        PhasedAugmentation([strong, AugmentPhase(hflip=True)], [0.5], flip_invariant=True)
    with pytest.raises(ValueError, match="boundaries"):
        PhasedAugmentation([strong, mild, AugmentPhase()], [0.6, 0.3])
    with pytest.raises(ValueError, match="need 2 boundaries"):
        PhasedAugmentation([strong, mild, AugmentPhase()], [0.5])
    with pytest.raises(ValueError, match="rotation"):
        AugmentPhase(rotation=-1)
    with pytest.raises(ValueError, match="unknown augmentation"):
        PhasedAugmentation([dict(rotate=5)])
    const = PhasedAugmentation.constant(strong)                 # the baseline is allowed explicitly
    assert const.phase(99, 100) == strong and len(PhasedAugmentation.none()) == 1
    with pytest.raises(ValueError, match="images"):
        random_affine(torch.randn(8, 8), 10)
