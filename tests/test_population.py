"""The population core: stacked optimizer == P torch optimizers bit for bit, arms x seeds members ==
their own Trainers, the NaN guard names the member, and a killed population resumes bit-exactly."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

import ganlib
from ganlib.data import ring_of_gaussians
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.training import CheckpointError, TrainConfig, Trainer, seed_everything
from ganlib.training.packing import PackedDiscriminator
from ganlib.training.population import Packed, Population, Standard, StackedOptimizer

make_g = lambda: MLPGenerator(hidden=16, depth=2)          # noqa: E731
make_d = lambda: MLPDiscriminator(hidden=16, depth=2)      # noqa: E731


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_stacked_optimizer_is_p_torch_optimizers_bit_for_bit(kind):
    torch.manual_seed(0)
    w = torch.randn(3, 4, 2)
    refs = [w[p].clone().requires_grad_(True) for p in range(3)]
    make = {"adam": lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.5, 0.9)),
            "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.1)}[kind]
    opts = [make([r]) for r in refs]
    stacked = w.clone()
    opt = StackedOptimizer([stacked], kind, lr=0.1, betas=(0.5, 0.9))
    for _ in range(5):
        g = torch.randn(3, 4, 2)
        opt.step([g])
        for p in range(3):
            refs[p].grad = g[p].clone()
            opts[p].step()
    for p in range(3):
        assert torch.equal(stacked[p], refs[p].detach())


def test_masked_rmsprop_leaves_masked_members_untouched():
    stacked = torch.ones(3, 2)
    opt = StackedOptimizer([stacked], "rmsprop", lr=0.1)
    opt.step([torch.ones(3, 2)])
    before = stacked.clone()
    opt.step([torch.ones(3, 2)], mask=torch.tensor([True, False, True]))
    assert torch.equal(stacked[1], before[1]) and not torch.equal(stacked[0], before[0])
    assert opt.steps.tolist() == [2, 1, 2]
    # by hand: v1 = 0.01, v2 = 0.99 * 0.01 + 0.01 = 0.0199; step 2 moves by 0.1 / (sqrt(0.0199) + 1e-8)
    assert_close(stacked[0], before[0] - 0.1 / (0.0199 ** 0.5 + 1e-8))


def test_arms_by_seeds_members_equal_their_own_trainers():
    cfg = TrainConfig(steps=4, batch_size=16, lr_d=1e-3, lr_g=1e-3, progress=False, log_every=2)
    pop = Population(make_g, make_d, ring_of_gaussians(), cfg, seeds=[3, 7],
                     arms={"gan": Standard("ns"), "ls": Standard("lsgan")})
    pop.fit()
    assert pop.members == [("gan", 3), ("gan", 7), ("ls", 3), ("ls", 7)]
    assert pop.history_of("d_loss", arm="ls").shape == (4, 2)
    for arm, loss in (("gan", "ns"), ("ls", "lsgan")):
        for seed in (3, 7):
            seed_everything(seed)
            G, D = make_g(), make_d()
            tr = Trainer(G, D, ring_of_gaussians(), TrainConfig(**{**cfg.__dict__, "seed": seed, "loss": loss}))
            tr.fit()
            p = pop.index(arm, seed)
            assert_close(pop.history_of("d_loss")[:, p], torch.tensor(tr.history["d_loss"]), rtol=1e-4, atol=1e-5)
            assert_close(pop.export(p, like=G).net[0].weight, G.net[0].weight, rtol=1e-4, atol=1e-5)


def test_packed_member_equals_a_trainer_with_a_packed_discriminator():
    cfg = TrainConfig(steps=3, batch_size=16, progress=False, log_every=3, seed=5)
    make_pd = lambda: MLPDiscriminator(in_dim=4, hidden=16, depth=2)     # noqa: E731
    pop = Population(make_g, make_pd, ring_of_gaussians(), cfg, seeds=[5], arms=Packed(m=2))
    pop.fit()
    seed_everything(5)
    G, D = make_g(), make_pd()
    tr = Trainer(G, PackedDiscriminator(D, 2), ring_of_gaussians(), cfg)
    tr.fit()
    assert_close(pop.history_of("d_loss")[:, 0], torch.tensor(tr.history["d_loss"]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        Population(make_g, make_pd, ring_of_gaussians(), TrainConfig(batch_size=15), arms=Packed(m=2))


def test_nan_guard_names_step_quantity_and_member():
    def poison(critic, real, fake, calls=[0]):
        calls[0] += 1
        return critic(real).mean() * (float("nan") if calls[0] == 3 else 0.0)

    cfg = TrainConfig(steps=6, batch_size=8, progress=False, log_every=5)
    pop = Population(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0, 1], arms={"a": Standard(penalty=poison)})
    with pytest.raises(FloatingPointError, match=r"g_loss of model 0 \(seed 0\) became nan at step 3"):
        pop.fit()


def test_arms_must_share_one_scheme_class_and_its_shared_settings():
    cfg = TrainConfig(progress=False)
    with pytest.raises(ValueError, match="one scheme class"):
        Population(make_g, make_d, ring_of_gaussians(), cfg, arms={"a": Standard(), "b": Packed(m=2)})
    with pytest.raises(ValueError, match="'clip'"):
        Population(make_g, make_d, ring_of_gaussians(), cfg, arms={"a": Standard(clip=0.1), "b": Standard()})


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    from ganlib.data import ring_of_gaussians
    from ganlib.models import MLPDiscriminator, MLPGenerator
    from ganlib.training import TrainConfig
    from ganlib.training.population import Population, Standard

    def build(ckpt):
        cfg = TrainConfig(steps=10, batch_size=16, n_critic=2, ema_decay=0.9, snapshot_every=4, log_every=1,
                          checkpoint_every=3, checkpoint_dir=ckpt, progress=False, optimizer=sys.argv[3])
        return Population(lambda: MLPGenerator(hidden=16, depth=2), lambda: MLPDiscriminator(hidden=16, depth=2),
                          ring_of_gaussians(), cfg, seeds=[0, 1], arms={"ns": Standard("ns"), "h": Standard("hinge")})

    def die(pop):
        if pop.step == 7:        # after the step-6 checkpoint, before the next one
            os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[1] == "kill":
        build(sys.argv[2]).fit(callbacks=[die])
    else:
        pop = build(sys.argv[2])
        pop.fit()
        torch.save({"g": pop.G.state_dict(), "d": pop.D.state_dict(), "ema": pop.g_ema, "history": pop.history,
                    "snapshots": pop.snapshots, "resumed_from": sys.argv[1]}, sys.argv[2] + "/result.pt")
""")


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_killed_population_resumes_bit_exactly(tmp_path, optimizer):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(ganlib.__file__).parents[1])}   # the ganlib under test
    run = lambda *args: subprocess.run([sys.executable, str(script), *args, optimizer], capture_output=True,  # noqa: E731
                                       text=True, timeout=120, env=env)
    killed = run("kill", str(tmp_path / "a"))
    assert killed.returncode == -9, killed.stderr
    state = torch.load(tmp_path / "a" / "population.pt", weights_only=True)
    assert state["step"] == 6
    resumed = run("resume", str(tmp_path / "a"))
    assert resumed.returncode == 0, resumed.stderr
    straight = run("straight", str(tmp_path / "b"))
    assert straight.returncode == 0, straight.stderr
    a = torch.load(tmp_path / "a" / "result.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "result.pt", weights_only=True)
    for part in ("g", "d"):
        for k in b[part]["params"]:
            assert torch.equal(a[part]["params"][k], b[part]["params"][k]), k
    for k in b["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k])
    assert a["history"] == b["history"] and a["history"]["step"] == list(range(1, 11))
    assert [s for s, _ in a["snapshots"]] == [4, 8] and all(torch.equal(x, y) for (_, x), (_, y)
                                                            in zip(a["snapshots"], b["snapshots"]))


def test_resume_refuses_other_settings_or_members(tmp_path):
    cfg = dict(steps=2, batch_size=8, progress=False, checkpoint_dir=str(tmp_path))
    Population(make_g, make_d, ring_of_gaussians(), TrainConfig(**cfg), seeds=[0, 1]).fit()
    with pytest.raises(CheckpointError, match="batch_size"):
        Population(make_g, make_d, ring_of_gaussians(), TrainConfig(**{**cfg, "batch_size": 16}), seeds=[0, 1]).fit(3)
    with pytest.raises(CheckpointError, match="members"):
        Population(make_g, make_d, ring_of_gaussians(), TrainConfig(**cfg), seeds=[0, 2]).fit(3)


def test_every_scheme_honours_rmsprop_or_refuses_it_clearly():
    import copy

    from ganlib.training.auction import AuctionConfig, AuctionPopulation, LoopPopulation
    from ganlib.training.distill import DGLSeedBatch, freeze_teacher
    from ganlib.training.penalized import PenalizedSeedBatch
    from ganlib.training.unrolled import UnrolledSeedBatch

    cfg = TrainConfig(steps=2, batch_size=8, optimizer="rmsprop", progress=False)
    teacher = freeze_teacher(make_d())
    pops = [PenalizedSeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0]),
            UnrolledSeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0], unroll_steps=1, unroll_optimizer="sgd"),
            DGLSeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0], teacher=teacher, lam=0.1)]
    for pop in pops:
        assert pop.opt_d.kind == pop.opt_g.kind == "rmsprop"
        pop.fit()
    with pytest.raises(ValueError, match="optimizer='adam'"):
        UnrolledSeedBatch(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0], unroll_steps=1)
    # the auction with RMSprop: batched == one torch.optim.RMSprop per player (the loop oracle)
    torch.manual_seed(0)
    Gs, Ds = [make_g() for _ in range(4)], [make_d() for _ in range(4)]
    auction = AuctionConfig(n_players=2)
    batched = AuctionPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg, auction)
    looped = LoopPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg, auction)
    batched.fit()
    looped.fit()
    assert batched.opt_d.kind == "rmsprop" and isinstance(looped.opt_d[0], torch.optim.RMSprop)
    for p in range(4):
        for a, b in zip(batched.export(p)[1].parameters(), looped.D[p].parameters()):
            assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_maem_ensemble_resumes_exactly_with_its_replay_buffers(tmp_path):
    from ganlib.models.embedding import EmbeddingDiscriminator
    from ganlib.training.maem import MaEMConfig, MaEMEnsemble

    arms = [MaEMConfig(dlle_transform="noise", entropy_weight=0.1, buffer_size=16),
            MaEMConfig(dlle_transform="noise", entropy_weight=0.1, buffer_size=16, buffer="official")]

    def build(d):
        cfg = TrainConfig(steps=4, batch_size=8, n_critic=2, progress=False, log_every=1, checkpoint_dir=str(d))
        return MaEMEnsemble(lambda: MLPGenerator(latent_dim=4, hidden=8, depth=1),
                            lambda: EmbeddingDiscriminator.mlp(m=3, hidden=8, depth=1), ring_of_gaussians(), cfg, arms,
                            seeds=[0, 1])

    build(tmp_path / "a").fit(2)
    resumed = build(tmp_path / "a")
    resumed.fit(4)
    straight = build(tmp_path / "b")
    straight.fit(4)
    assert resumed.history == straight.history
    for k, v in straight.G.params.items():
        assert torch.equal(resumed.G.params[k], v)
    assert torch.equal(resumed.buffer_gen.fifo.data, straight.buffer_gen.fifo.data)



def test_branch_can_switch_spectral_norm_on_from_the_current_weights():
    """branch(wrap_discriminator=...) keeps every member's weights and data stream and wraps a copy
    of its discriminator, here with PyTorch's spectral norm (what chapter 4 switches on mid-run)."""
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    def with_sn(d):
        for m in d.net:
            if isinstance(m, nn.Linear):
                spectral_norm(m)
        return d

    cfg = TrainConfig(steps=4, batch_size=8, progress=False, log_every=1)
    pop = Population(make_g, make_d, ring_of_gaussians(), cfg, seeds=[0, 1])
    pop.fit(2)
    plain = pop.branch({"plain": Standard()})
    sn = pop.branch({"sn": Standard()}, wrap_discriminator=with_sn)
    assert sn.D.spectral_norm and not plain.D.spectral_norm and not pop.D.spectral_norm
    x = torch.randn(2, 5, 2)
    sn.D.eval()
    out = sn.D(x)
    sn.D.train()
    for p in range(2):
        d = sn.export(p, "discriminator")
        assert torch.equal(d.net[0].parametrizations.weight.original,
                           pop.export(p, "discriminator").net[0].weight)
        assert_close(out[p], d.eval()(x[p]))
        assert torch.equal(sn.data_rngs[p].get_state(), plain.data_rngs[p].get_state())
    sn.fit()
    plain.fit()
    assert sn.step == plain.step == 4 and pop.step == 2
    assert torch.isfinite(torch.tensor(sn.history["d_loss"])).all()
