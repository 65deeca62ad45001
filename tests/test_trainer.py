import pytest
import torch
from torch.testing import assert_close

from ganlib.data import TensorSource, load_digits, ring_of_gaussians
from ganlib.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganlib.training import CheckpointError, TrainConfig, Trainer, load_checkpoint, save_checkpoint, seed_everything


def make_trainer(tmp_path=None, seed=0, **cfg):
    seed_everything(seed)
    G, D = MLPGenerator(hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2)
    config = TrainConfig(steps=12, batch_size=32, log_every=4, progress=False, snapshot_every=3, ema_decay=0.9,
                         checkpoint_dir=None if tmp_path is None else str(tmp_path), **cfg)
    # a penalty that draws from the global RNG, so resume must restore it too
    noisy_penalty = lambda D, real, fake: 0.01 * D(real + 0.1 * torch.randn_like(real)).square().mean()
    return Trainer(G, D, ring_of_gaussians(), config, d_penalty=noisy_penalty)


def test_history_records_every_step():
    tr = make_trainer(n_critic=2)
    hist = tr.fit()
    assert hist["step"] == list(range(1, 13))
    assert all(len(v) == 12 for v in hist.values())
    assert [s for s, _ in tr.snapshots] == [3, 6, 9, 12]
    assert tr.sample(5).shape == (5, 2) and tr.sample(5, ema=True).shape == (5, 2)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = make_trainer()
    straight.fit()

    first = make_trainer(tmp_path)
    first.fit(steps=5)                       # stops and checkpoints at step 5
    resumed = make_trainer(tmp_path)         # a fresh process would build everything anew
    torch.manual_seed(1234)                  # and its global RNG would be anywhere
    resumed.fit()                            # picks up the checkpoint automatically
    assert resumed.step == 12
    for key in straight.history:
        assert_close(torch.tensor(resumed.history[key]), torch.tensor(straight.history[key]), rtol=0, atol=0)
    for a, b in zip(resumed.G.parameters(), straight.G.parameters()):
        assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(resumed.G_ema.parameters(), straight.G_ema.parameters()):
        assert_close(a, b, rtol=0, atol=0)
    assert_close(resumed.snapshots[-1][1], straight.snapshots[-1][1], rtol=0, atol=0)


def test_ema_is_a_running_average_of_the_generator():
    tr = make_trainer()
    before = [p.detach().clone() for p in tr.G_ema.parameters()]
    tr.fit(steps=1)
    for e, b, g in zip(tr.G_ema.parameters(), before, tr.G.parameters()):
        assert_close(e, 0.9 * b + 0.1 * g)


def test_checkpoint_is_atomic_and_safe(tmp_path):
    tr = make_trainer(tmp_path)
    tr.fit(steps=2)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 2


def test_corrupt_checkpoint_gets_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    make_trainer(tmp_path).fit(steps=2)
    path.write_bytes(path.read_bytes()[:100])        # truncated, as after a broken copy
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        make_trainer(tmp_path).fit()
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="Delete or move it"):
        load_checkpoint(path)
    torch.save({"x": torch.zeros(1)}, path)          # a valid torch file that is not ours
    with pytest.raises(CheckpointError, match="not a ganlib checkpoint"):
        load_checkpoint(path)


def test_resume_with_other_settings_is_refused(tmp_path):
    make_trainer(tmp_path).fit(steps=2)
    with pytest.raises(CheckpointError, match="batch_size"):
        seed_everything(0)
        cfg = TrainConfig(steps=4, batch_size=16, progress=False, ema_decay=0.9, checkpoint_dir=str(tmp_path))
        Trainer(MLPGenerator(hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2), ring_of_gaussians(), cfg).fit()


def test_nan_guard_names_step_and_quantity():
    seed_everything(0)
    G, D = MLPGenerator(hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1)

    def poison(D, real, fake, calls=[0]):
        calls[0] += 1
        return torch.tensor(float("nan")) if calls[0] == 3 else torch.zeros(())

    tr = Trainer(G, D, ring_of_gaussians(), TrainConfig(steps=10, batch_size=8, log_every=5, progress=False),
                 d_penalty=poison)
    with pytest.raises(FloatingPointError, match="d_loss became nan at step 3"):
        tr.fit()


@pytest.mark.parametrize("bad", [dict(n_critic=0), dict(lr_d=-1.0), dict(loss="wasserstein-ish"),
                                 dict(betas_g=(0.5, 1.5)), dict(ema_decay=1.0), dict(batch_size=0),
                                 dict(amp_dtype="fp8"), dict(optimizer="sgd")])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_rmsprop_option_takes_the_optimizer_step_of_torch_rmsprop():
    """WGAN's Algorithm 1 trains with RMSProp: one Trainer D step must equal a hand RMSprop step."""
    import copy
    from ganlib.losses import d_wgan
    seed_everything(0)
    G, D = MLPGenerator(hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2)
    tr = Trainer(G, D, ring_of_gaussians(), TrainConfig(steps=1, batch_size=8, lr_d=5e-3, loss="wgan",
                                                         optimizer="rmsprop", progress=False))
    assert isinstance(tr.opt_d, torch.optim.RMSprop) and isinstance(tr.opt_g, torch.optim.RMSprop)
    D_hand = copy.deepcopy(D)
    opt = torch.optim.RMSprop(D_hand.parameters(), lr=5e-3)
    real = torch.randn(8, 2)
    noise_rng = torch.Generator().set_state(tr.noise_rng.get_state())
    with torch.no_grad():
        fake = G(G.sample_latent(8, generator=noise_rng))
    d_wgan(D_hand(real), D_hand(fake)).backward()
    opt.step()
    tr.d_step(real)
    for p_hand, p_lib in zip(D_hand.parameters(), D.parameters()):
        assert_close(p_lib, p_hand)     # an Adam step (about lr per weight) would be 10x smaller here


def test_ttur_preset_is_sagan_setting():
    cfg = TrainConfig.ttur(steps=5)
    assert (cfg.lr_d, cfg.lr_g, cfg.betas_d, cfg.betas_g, cfg.n_critic) == (4e-4, 1e-4, (0.0, 0.9), (0.0, 0.9), 1)


def test_penalty_with_batchnorm_critic_is_refused():
    G, D = DCGANGenerator(width=4), DCGANDiscriminator(width=4, norm="batch")
    with pytest.raises(ValueError, match="without BatchNorm"):
        Trainer(G, D, TensorSource(torch.zeros(4, 1, 8, 8)), TrainConfig(steps=1), d_penalty=lambda *a: 0)


def test_image_gan_learns_something_and_bf16_runs():
    seed_everything(0)
    images = load_digits()[0]
    G, D = DCGANGenerator(latent_dim=16, width=8), DCGANDiscriminator(width=8)
    tr = Trainer(G, D, TensorSource(images), TrainConfig(steps=30, batch_size=32, progress=False, amp_dtype="bf16"))
    tr.fit()
    fake = tr.sample(64)
    assert fake.shape == (64, 1, 8, 8) and torch.isfinite(fake).all()
    # after 30 steps the mean pixel moved from ~0 (random init) toward the data's dark background
    assert fake.mean() < 0


def test_generator_step_does_not_touch_discriminator_grads():
    tr = make_trainer()
    tr.g_step(8)
    assert all(p.grad is None for p in tr.D.parameters())
    assert all(p.requires_grad for p in tr.D.parameters())
