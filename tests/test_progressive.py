import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganlib.data import TensorSource
from ganlib.models import ProgressiveDiscriminator, ProgressiveGenerator
from ganlib.training.checkpoint import CheckpointError
from ganlib.training.progressive import (ProgressiveConfig, ProgressiveTrainer, count_step_flops,
                                         progressive_schedule, progressive_total_steps, schedule_flops)

TINY = dict(fmap_base=32, fmap_max=8)


def up(x):   # nearest-neighbour 2x by hand
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def down(x):  # 2x2 box filter by hand
    return (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]) / 4


class Fixed(nn.Module):
    """Ignores its input (records it) and returns a fixed tensor."""

    def __init__(self, value):
        super().__init__()
        self.value, self.seen = value, None

    def forward(self, x):
        self.seen = x
        return self.value


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75, 1.0])
def test_generator_output_is_the_alpha_blend_of_old_and_new_rgb(alpha):
    G = ProgressiveGenerator(latent_dim=8, channels=2, max_resolution=16, **TINY)
    old_rgb, new_rgb = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 8, 8)
    G.to_rgb[0], G.to_rgb[1] = Fixed(old_rgb), Fixed(new_rgb)
    G.set_progress(1, alpha)
    out = G(torch.randn(3, 8))
    assert_close(out, (1 - alpha) * up(old_rgb) + alpha * new_rgb)


def test_generator_at_alpha_zero_is_the_previous_stage_upsampled():
    G = ProgressiveGenerator(latent_dim=8, max_resolution=16, **TINY)
    z = torch.randn(4, 8)
    for stage in (1, 2):
        G.set_progress(stage - 1, 1.0)
        before = G(z)
        G.grow()
        assert (G.stage, G.alpha) == (stage, 0.0)
        assert torch.equal(G(z), up(before))
        G.alpha = 0.5
        assert not torch.allclose(G(z), up(before))


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_discriminator_blends_old_fromrgb_of_pooled_input_with_new_block(alpha):
    D = ProgressiveDiscriminator(channels=2, max_resolution=16, **TINY)
    x = torch.randn(4, 2, 16, 16)
    c = D.nf(8)                                         # maps entering the 8x8 block
    f_old, f_new = torch.randn(4, c, 8, 8), torch.randn(4, c, 8, 8)
    D.from_rgb[1], D.blocks[2] = Fixed(f_old), Fixed(f_new)
    seen = []
    D.blocks[1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    D.set_progress(2, alpha)
    assert D(x).shape == (4,)
    assert_close(seen[-1], (1 - alpha) * f_old + alpha * f_new)
    if alpha < 1:
        assert_close(D.from_rgb[1].seen, down(x))       # the old path sees the box-filtered image
    else:
        assert D.from_rgb[1].seen is None               # no old path once the fade-in is over


def test_discriminator_at_alpha_zero_equals_previous_stage_on_pooled_images():
    D = ProgressiveDiscriminator(max_resolution=16, **TINY)
    x = torch.randn(8, 1, 16, 16)
    D.set_progress(1, 1.0)
    before = D(down(x))
    D.grow()
    assert_close(D(x), before)


def test_shapes_per_stage_and_growth_limits():
    G = ProgressiveGenerator(latent_dim=8, channels=3, max_resolution=32, **TINY)
    D = ProgressiveDiscriminator(channels=3, max_resolution=32, **TINY)
    assert G.n_stages == D.n_stages == 4
    z = torch.randn(4, 8)
    for stage, res in enumerate((4, 8, 16, 32)):
        for alpha in (0.5, 1.0):
            if stage == 0 and alpha < 1:
                continue
            G.set_progress(stage, alpha), D.set_progress(stage, alpha)
            x = G(z)
            assert x.shape == (4, 3, res, res) and G.resolution == res
            assert D(x).shape == (4,)
    with pytest.raises(ValueError, match="max_resolution"):
        G.grow()
    with pytest.raises(ValueError, match="at stage 3"):
        D(torch.randn(4, 3, 16, 16))
    with pytest.raises(ValueError, match="power of two"):
        ProgressiveGenerator(max_resolution=24)
    with pytest.raises(ValueError, match="alpha"):
        G.set_progress(1, 1.5)


def test_state_dict_carries_stage_and_alpha():
    G = ProgressiveGenerator(latent_dim=8, max_resolution=16, **TINY)
    G.set_progress(2, 0.25)
    G2 = ProgressiveGenerator(latent_dim=8, max_resolution=16, **TINY)
    G2.load_state_dict(G.state_dict())
    assert (G2.stage, G2.alpha) == (2, 0.25)


def test_schedule_by_hand():
    got = [progressive_schedule(t, n_stages=3, stabilize_steps=3, fade_steps=2) for t in range(13)]
    assert got == [(0, 1.0)] * 3 + [(1, 0.0), (1, 0.5)] + [(1, 1.0)] * 3 + [(2, 0.0), (2, 0.5)] + [(2, 1.0)] * 3
    assert progressive_total_steps(3, 3, 2) == 13
    assert progressive_schedule(10**6, 3, 3, 2) == (2, 1.0)


def _trainer(tmp_path=None, callbacks=(), max_resolution=16, **kw):
    torch.manual_seed(0)
    G = ProgressiveGenerator(latent_dim=8, max_resolution=max_resolution, **TINY)
    D = ProgressiveDiscriminator(max_resolution=max_resolution, **TINY)
    data = torch.rand(32, 1, max_resolution, max_resolution) * 2 - 1
    settings = dict(steps=0, batch_size=4, stabilize_steps=2, fade_steps=2, log_every=1, progress=False,
                    ema_decay=0.9, checkpoint_dir=None if tmp_path is None else str(tmp_path))
    cfg = ProgressiveConfig(**{**settings, **kw})
    return ProgressiveTrainer(G, D, TensorSource(data), cfg, callbacks=callbacks)


def test_trainer_moves_alpha_and_grows_at_the_right_steps():
    seen = []

    def record(tr):  # runs after each step; tr.step steps are done, the last one used schedule(step - 1)
        p = next(p for p in tr.D.blocks[0].parameters())
        seen.append((tr.step, tr.G.stage, tr.G.alpha, tr.D.stage, tr.D.alpha, tr.G_ema.stage,
                     int(tr.opt_d.state[p]["step"])))

    tr = _trainer(callbacks=[record])
    assert tr.config.steps == 3 * 2 + 2 * 2
    tr.fit()
    stages = [s[1] for s in seen]
    alphas = [s[2] for s in seen]
    assert stages == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert alphas == [1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    assert all(s[1:3] == s[3:5] == (s[5], s[2]) for s in seen)   # G, D and the EMA copy agree
    # Adam is reset when a fade-in starts (steps 3, 7) and ends (steps 5, 9; 1-based)
    assert [s[6] for s in seen] == [1, 2, 1, 2, 1, 2, 1, 2, 1, 2]
    assert tr.sample_fixed().shape[-1] == 16 and tr.sample(5).shape == (5, 1, 16, 16)


def test_real_images_are_pooled_and_blended_like_the_generator():
    tr = _trainer()
    x = torch.randn(4, 1, 16, 16)
    tr.step = 0
    tr._apply_schedule()
    assert_close(tr.downsample_reals(x), down(down(x)))
    tr.step = 3                                        # stage 1 (8x8), alpha = 0.5
    tr._apply_schedule()
    x8 = down(x)
    assert_close(tr.downsample_reals(x), 0.5 * up(down(x8)) + 0.5 * x8)
    with pytest.raises(ValueError, match="max_resolution"):
        tr.downsample_reals(torch.randn(4, 1, 8, 8))


def test_no_growth_baseline_trains_full_size_from_the_start():
    tr = _trainer(steps=2, grow=False)
    assert (tr.G.stage, tr.G.alpha) == (2, 1.0)
    tr.fit()
    assert tr.G.stage == 2 and len(tr.history["step"]) == 2


def test_resume_mid_fade_matches_an_uninterrupted_run(tmp_path):
    full = _trainer(max_resolution=8)                  # 4x4 for 2 steps, fade 8x8 in for 2, 8x8 for 2
    full.fit()
    part = _trainer(tmp_path / "run", max_resolution=8)
    part.fit(3)                                        # stops in the middle of the fade-in:
    assert (part.G.stage, part.G.alpha) == (1, 0.0)    # the last step done faded with α = 0,
    assert part.schedule(part.step) == (1, 0.5)        # the next one will use α = 0.5
    resumed = _trainer(tmp_path / "run", max_resolution=8)
    resumed.fit()
    assert resumed.step == full.step == 6
    for a, b in zip(full.G.state_dict().values(), resumed.G.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    assert full.history == resumed.history
    changed = _trainer(tmp_path / "run", max_resolution=8, fade_steps=3)
    with pytest.raises(CheckpointError, match="fade_steps"):
        changed.fit()


def test_flop_counts_grow_with_resolution():
    tr = _trainer(max_resolution=8)
    summary = schedule_flops(tr)
    assert [p[:3] for p in summary["phases"]] == [(0, False, 2), (1, True, 2), (1, False, 2)]
    flops = [p[3] for p in summary["phases"]]
    assert flops[0] < flops[2] < flops[1]              # the fade-in also runs the old toRGB / fromRGB
    assert summary["total"] == 2 * sum(flops)
    assert count_step_flops(tr) == flops[0]
    assert tr.step == 0 and tr.G.stage == 0 and not tr.opt_d.state   # counting leaves the trainer alone


def test_config_is_checked():
    with pytest.raises(ValueError, match="fade_steps"):
        ProgressiveConfig(stabilize_steps=0, fade_steps=0)
    with pytest.raises(ValueError, match="drift"):
        ProgressiveConfig(drift=-1.0)
    with pytest.raises(TypeError, match="ProgressiveConfig"):
        from ganlib.training import TrainConfig
        ProgressiveTrainer(ProgressiveGenerator(**TINY), ProgressiveDiscriminator(**TINY),
                           TensorSource(torch.zeros(4, 1, 16, 16)), TrainConfig())
