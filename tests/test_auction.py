"""The auction-inspired population (The Bid Picture, arXiv 2403.13866): batched == looped,
the diagonal never counts, L_aux vanishes for the winner and pulls the others toward it, and the
control is N independent GANs."""

import copy

import pytest
import torch
from torch.testing import assert_close

from ganlib.data import ring_of_gaussians
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer
from ganlib.training.auction import (
    AuctionConfig, AuctionPopulation, LoopPopulation, StackedAdam, aux_loss, bid_matrix_from_logits,
    cross_scores, select_winner,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The networks here are tiny: a second intra-op thread only adds synchronisation, which on a
    shared 2-core machine can cost seconds per test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def players(P, seed=0, hidden=16):
    torch.manual_seed(seed)
    return ([MLPGenerator(hidden=hidden, depth=2) for _ in range(P)],
            [MLPDiscriminator(hidden=hidden, depth=2) for _ in range(P)])


def twins(P=4, auction=None, steps=3, loss="ns", seed=0, **kw):
    Gs, Ds = players(P, seed)
    cfg = TrainConfig(steps=steps, batch_size=16, progress=False, log_every=2, loss=loss, **kw.pop("cfg", {}))
    make = lambda cls: cls(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg, auction, **kw)
    return make(AuctionPopulation), make(LoopPopulation)


def assert_same_players(vpop, lpop, atol=2e-5, rtol=1e-4):
    for p in range(vpop.n_pairs):
        G, D = vpop.export(p)
        for a, b in zip([*G.parameters(), *D.parameters()], [*lpop.G[p].parameters(), *lpop.D[p].parameters()]):
            assert_close(a, b, atol=atol, rtol=rtol)


# --- the pure pieces ------------------------------------------------------------------------------

def test_bid_matrix_by_hand():
    # 2 bidders x 3 lots x 2 samples of raw logits; B[i, j] = mean_b s_j(X_ib)
    logits = torch.tensor([[[0.0, 0.0], [2.0, 4.0], [-1.0, 1.0]],
                           [[1.0, 3.0], [0.0, 2.0], [5.0, 5.0]]])
    B = bid_matrix_from_logits(logits, score="logit")
    assert_close(B, torch.tensor([[0.0, 2.0], [3.0, 1.0], [0.0, 5.0]]))
    real = torch.tensor([[1.0, 3.0], [0.0, 0.0]])            # bidder means 2 and 0
    assert_close(bid_matrix_from_logits(logits, real, "centered"), torch.tensor([[-2.0, 2.0], [1.0, 1.0], [-2.0, 5.0]]))
    assert_close(bid_matrix_from_logits(torch.zeros(2, 2, 3), score="prob"), torch.full((2, 2), 0.5))


def test_cross_scores_exclude_the_diagonal():
    bids = torch.tensor([[9.0, 1.0, 2.0], [4.0, 9.0, 6.0], [0.0, 3.0, 9.0]])
    assert_close(cross_scores(bids, "mean"), torch.tensor([1.5, 5.0, 1.5]))
    assert_close(cross_scores(bids, "min"), torch.tensor([1.0, 4.0, 0.0]))
    assert_close(cross_scores(bids, "median"), torch.tensor([1.0, 4.0, 0.0]))   # lower middle of 2
    assert select_winner(cross_scores(bids)).item() == 1
    assert select_winner(torch.tensor([1.0, 3.0, 3.0])).item() == 1                # ties: lowest index
    for how in ("mean", "min", "median"):
        x = torch.randn(3, 5, 5)
        for poison in (1e9, -1e9, float("nan"), float("inf")):
            y = x.clone()
            y.diagonal(dim1=-2, dim2=-1).fill_(poison)
            assert_close(cross_scores(y, how), cross_scores(x, how))
        assert cross_scores(x, how).shape == (3, 5)


def test_population_bids_ignore_a_pair_that_rates_its_own_lot():
    """Poison the diagonal in the running population: a discriminator that adores every lot
    changes the bids it makes on *other* lots, but its own partner's value only through them."""
    vpop, _ = twins(P=3, auction=AuctionConfig(aux=None))
    z, real = vpop.draw_lots()
    with torch.no_grad():
        lots = vpop.generate(z)
        bids = vpop.bid_matrix(lots, real)
    poisoned = bids.clone()
    poisoned[0].diagonal().fill_(1e6)
    assert_close(cross_scores(poisoned), cross_scores(bids))
    assert torch.isfinite(bids).all() and bids.shape == (1, 3, 3)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="score"):
        AuctionConfig(score="vibes")
    with pytest.raises(ValueError, match="aggregate"):
        AuctionConfig(aggregate="max")
    with pytest.raises(ValueError, match="aux"):
        AuctionConfig(aux="kl")
    with pytest.raises(ValueError, match="n_players"):
        AuctionConfig(n_players=1)
    with pytest.raises(ValueError, match="square"):
        cross_scores(torch.zeros(3, 4))
    Gs, Ds = players(3)
    with pytest.raises(ValueError, match="multiple"):
        AuctionPopulation(Gs, Ds, ring_of_gaussians(), TrainConfig(progress=False), AuctionConfig(n_players=2))
    with pytest.raises(ValueError, match="buffers"):
        AuctionPopulation(Gs, [MLPDiscriminator(spectral_norm=True) for _ in range(3)], ring_of_gaussians(),
                          TrainConfig(progress=False))


# --- batched == looped ----------------------------------------------------------------------------

@pytest.mark.parametrize("aux", [None, "output", "relative"])
def test_vmapped_and_looped_populations_agree(aux):
    auction = AuctionConfig(n_players=2, aux=aux, aggregate="mean")
    vpop, lpop = twins(P=4, auction=auction, steps=3)
    vpop.fit()
    lpop.fit()
    v, l = vpop.auction_log(), lpop.auction_log()
    assert v["bids"].shape == (3, 2, 2, 2)                  # 3 auctions x 2 groups x N x N
    assert_close(v["bids"], l["bids"], atol=1e-5, rtol=1e-4)
    assert torch.equal(v["winner"], l["winner"])
    assert_close(v["aux_loss"], l["aux_loss"], atol=1e-6, rtol=1e-3)
    vh, lh = vpop.history_tensors(), lpop.history_tensors()
    assert_close(vh["d_loss"], lh["d_loss"], atol=1e-5, rtol=1e-4)
    assert_same_players(vpop, lpop)


def test_vmapped_and_looped_agree_with_a_gradient_penalty():
    """WGAN-GP: same critic gradients (double backward through vmap) and same bids. Parameters are
    compared through the gradients: structurally zero gradient entries (a unit linear on the whole
    batch) come out as +-1e-9 in one implementation and 0 in the other, which Adam's normalisation
    turns into lr-sized steps, so multi-step parameter equality is not a fair test for this loss."""
    from ganlib import losses

    loss = "wgan" if "wgan" in losses.LOSSES else losses.LossPair(
        "wgan", lambda r, f: f.mean() - r.mean(), lambda f, r=None: -f.mean())
    Gs, Ds = players(4)
    cfg = TrainConfig(batch_size=32, progress=False, loss="ns")
    cfg.loss = loss
    vpop = AuctionPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg,
                             AuctionConfig(n_players=2), gp_weight=10.0)
    lpop = LoopPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg,
                          AuctionConfig(n_players=2), gp_weight=10.0)
    assert vpop.score == "centered"
    real, z = vpop.real_batches(32), vpop.latents(32)
    alpha = vpop.gp_weights(real)
    captured = {}
    step = vpop.opt_d.step
    vpop.opt_d.step = lambda grads, mask=None: (captured.setdefault("g", [g.clone() for g in grads]), step(grads, mask))
    vl = vpop.d_update(real, z, alpha)
    ll = lpop.d_update(real, z, alpha)
    assert_close(vl[0], ll[0], atol=1e-5, rtol=1e-4)
    for name, g in zip(vpop.d_params, captured["g"]):
        looped = torch.stack([dict(D.named_parameters())[name].grad for D in lpop.D])
        assert_close(g, looped, atol=1e-6, rtol=1e-4)
    zl, rl = vpop.draw_lots()
    with torch.no_grad():
        assert_close(vpop.bid_matrix(vpop.generate(zl), rl), lpop.bid_matrix(lpop.generate(zl), rl),
                     atol=1e-5, rtol=1e-4)


def test_stacked_adam_is_per_player_torch_adam_with_a_mask():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 2)
    refs = [w[p].clone().requires_grad_(True) for p in range(3)]
    opts = [torch.optim.Adam([r], lr=0.1, betas=(0.5, 0.9)) for r in refs]
    stacked = w.clone()
    opt = StackedAdam([stacked], lr=0.1, betas=(0.5, 0.9))
    for k in range(4):
        g = torch.randn(3, 4, 2)
        mask = None if k % 2 == 0 else torch.tensor([True, False, True])
        opt.step([g], mask)
        for p in range(3):
            if mask is None or mask[p]:
                refs[p].grad = g[p].clone()
                opts[p].step()
    assert opt.steps.tolist() == [4, 2, 4]
    for p in range(3):
        assert_close(stacked[p], refs[p].detach())


# --- L_aux ----------------------------------------------------------------------------------------

def test_aux_loss_by_hand():
    own_r, own_l = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])
    ref_r, ref_l = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    # output: 0.5 * (mean([0, 4]) + mean([0, 4])) = 2
    assert_close(aux_loss(own_r, own_l, ref_r, ref_l, "output"), torch.tensor(2.0))
    # relative: own gap (2 - 1) = 1, ref gap (1 - 0) = 1 -> 0
    assert_close(aux_loss(own_r, own_l, ref_r, ref_l, "relative"), torch.tensor(0.0))


@pytest.mark.parametrize("form", ["output", "relative"])
def test_aux_loss_is_zero_for_the_winner_and_pulls_the_others_toward_it(form):
    pop, _ = twins(P=4, auction=AuctionConfig(aux=form, aux_weight=1.0), cfg=dict(lr_d=1e-4))
    z, real = pop.draw_lots()
    with torch.no_grad():
        lots = pop.generate(z)
    winner = torch.tensor([2])
    with torch.no_grad():                       # give the winner a clearly different opinion
        pop.d_params["net.4.weight"][2] *= 10
    losses = pop.aux_losses(lots, real, winner)
    assert losses[2].item() == 0.0
    assert (losses[[0, 1, 3]] > 0).all()
    (grad,) = torch.autograd.grad(losses[2], pop.d_params["net.0.weight"], retain_graph=True)
    assert grad.abs().max().item() == 0.0                      # and its gradient vanishes
    winner_before = {k: v.detach().clone() for k, v in pop.d_params.items()}
    pop.aux_update(lots, real, winner)
    after = pop.aux_losses(lots, real, winner).detach()
    assert (after[[0, 1, 3]] < losses[[0, 1, 3]].detach()).all()   # closer to the winner's outputs
    for k, v in pop.d_params.items():                           # the winner itself did not move
        assert torch.equal(v[2], winner_before[k][2])
        assert not torch.equal(v[0], winner_before[k][0])
    assert pop.opt_d.steps.tolist() == [1, 1, 0, 1]


# --- the control is N independent GANs ---------------------------------------------------------------

def test_control_equals_separate_trainers():
    Gs, Ds = players(3)
    cfg = TrainConfig(steps=4, batch_size=16, progress=False, log_every=4, seed=7)
    pop = AuctionPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg, None,
                            rng="per_player")
    pop.fit()
    for p in range(3):
        trainer = Trainer(copy.deepcopy(Gs[p]), copy.deepcopy(Ds[p]), ring_of_gaussians(),
                          TrainConfig(steps=4, batch_size=16, progress=False, log_every=4, seed=pop.seeds[p]))
        trainer.fit()
        G, D = pop.export(p)
        for a, b in zip([*G.parameters(), *D.parameters()], [*trainer.G.parameters(), *trainer.D.parameters()]):
            assert_close(a, b, atol=1e-6, rtol=1e-5)
        assert_close(pop.history_tensors()["d_loss"][:, p], torch.tensor(trainer.history["d_loss"]))


def test_selection_only_does_not_change_training():
    """An auction without L_aux only reports: training is bit-identical to the control's."""
    Gs, Ds = players(4)
    cfg = TrainConfig(steps=3, batch_size=32, progress=False)
    control = AuctionPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg, None)
    select = AuctionPopulation(copy.deepcopy(Gs), copy.deepcopy(Ds), ring_of_gaussians(), cfg, AuctionConfig(aux=None))
    control.fit()
    select.fit()
    for k in control.g_params:
        assert torch.equal(control.g_params[k], select.g_params[k])
    assert len(select.auction_log()["winner"]) == 3


def test_schedule_and_groups():
    vpop, _ = twins(P=6, auction=AuctionConfig(n_players=3, every=2, start=2, aux=None), steps=6)
    vpop.fit()
    log = vpop.auction_log()
    assert log["step"].tolist() == [2, 4, 6]                   # steps counted after the update
    assert log["bids"].shape == (3, 2, 3, 3) and log["winner"].shape == (3, 2)
    assert vpop.sample(7).shape == (6, 7, 2)
    ev = vpop.evaluate_auction(lot_size=64)
    assert ev["bids"].shape == (2, 3, 3) and ev["winner"].shape == (2,)
