"""Unrolled GAN (Metz et al., 2017): the surrogate loss, its gradient through the unrolled
discriminator steps, the functional optimizers and the trainers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from ganlib.data import grid_of_gaussians, ring_of_gaussians
from ganlib.losses import LossPair, d_minimax, g_ns, get_loss
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer, seed_everything
from ganlib.training.unrolled import (FunctionalAdam, FunctionalSGD, UnrolledSeedBatch, UnrolledTrainer,
                                      detached_params, functional_forward, unroll_discriminator,
                                      unrolled_generator_loss)

make_g = lambda: MLPGenerator(hidden=8, depth=2)                 # noqa: E731
make_d = lambda: MLPDiscriminator(hidden=8, depth=2)             # noqa: E731

# a linear "critic" game whose unrolled gradient has a closed form (see test_sgd_unroll_closed_form)
LINEAR = LossPair("linear", d=lambda r, f: f.mean() - r.mean(), g=lambda f, r=None: -f.mean())


def _g_grads(loss, G):
    return torch.autograd.grad(loss, list(G.parameters()))


def _setup(seed=0):
    torch.manual_seed(seed)
    G, D = make_g(), make_d()
    return G, D, torch.randn(32, 2), torch.randn(32, 2)


@pytest.mark.parametrize("update", [FunctionalSGD(0.1), FunctionalAdam(0.01, (0.5, 0.999))])
def test_k0_is_the_plain_generator_loss_and_gradient(update):
    G, D, real, z = _setup()
    got = unrolled_generator_loss(functional_forward(D), detached_params(D), real, G(z), k=0, loss="ns",
                                  update=update)
    want = g_ns(D(G(z)))
    assert_close(got, want)
    for a, b in zip(_g_grads(got, G), _g_grads(g_ns(D(G(z))), G)):
        assert_close(a, b)


@pytest.mark.parametrize("name", ["minimax", "wgan"])
def test_k0_value_objective_is_the_game_value_for_zero_sum_losses(name):
    """The paper's surrogate is the value f = -L_D ("auto" picks it for zero-sum losses); at k = 0
    its G-gradient is the plain generator loss's."""
    G, D, real, z = _setup()
    pair = get_loss(name)
    got = unrolled_generator_loss(functional_forward(D), detached_params(D), real, G(z), k=0, loss=name)
    assert_close(got, -pair.d(D(real), D(G(z))))
    for a, b in zip(_g_grads(got, G), _g_grads(pair.g(D(G(z))), G)):
        assert_close(a, b)


@pytest.mark.parametrize("k", [1, 3])
def test_sgd_unroll_closed_form(k):
    """Critic D(x) = w.x, linear loss, generator = a point theta (all fakes equal theta).

    L_D(w) = w.theta - w.mean(real) has constant gradient theta - mu, so k SGD steps give
    w_k = w0 - k*eta*(theta - mu) and L_G = -w_k.theta. Hence
    dL_G/dtheta = -w0 + k*eta*(2*theta - mu)        (through the unroll),
    versus       -w_k = -w0 + k*eta*(theta - mu)    (w_k treated as a constant).
    """
    eta, w0 = 0.3, torch.tensor([0.5, -1.0])
    theta = torch.tensor([0.2, 0.7], requires_grad=True)
    real = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    mu = real.mean(0)
    d_forward = lambda p, x: x @ p["w"]                           # noqa: E731
    fake = theta.expand(4, 2)
    loss = unrolled_generator_loss(d_forward, {"w": w0}, real, fake, k=k, loss=LINEAR, update=FunctionalSGD(eta))
    (g,) = torch.autograd.grad(loss, theta)
    assert_close(g, -w0 + k * eta * (2 * theta.detach() - mu))
    w_k = w0 - k * eta * (theta.detach() - mu)
    assert_close(loss, -(w_k * theta.detach()).sum())
    assert not torch.allclose(g, -w_k)                           # the missing gradient term is there


def test_sgd_unroll_matches_hand_unrolled_logistic_discriminator():
    """D(x) = w.x + b with the BCE loss, two SGD steps written out by hand (explicit sigmoid
    gradients, no autograd inside the unroll); generator x = A z + c."""
    torch.manual_seed(1)
    A, c = torch.randn(2, 2, requires_grad=True), torch.randn(2, requires_grad=True)
    z, real = torch.randn(16, 2), torch.randn(16, 2) + 1.0
    w0, b0, eta, k = torch.randn(2), torch.randn(()), 0.5, 2
    fake = z @ A.T + c

    w, b = w0, b0
    for _ in range(k):   # grad of mean softplus(-l_r) + mean softplus(l_f) w.r.t. (w, b)
        s_r, s_f = torch.sigmoid(-(real @ w + b)), torch.sigmoid(fake @ w + b)
        gw = -(s_r[:, None] * real).mean(0) + (s_f[:, None] * fake).mean(0)
        gb = -s_r.mean() + s_f.mean()
        w, b = w - eta * gw, b - eta * gb
    want = F.softplus(-(fake @ w + b)).mean()

    lin = nn.Linear(2, 1)
    d_forward = lambda p, x: torch.func.functional_call(lin, p, (x,)).squeeze(1)       # noqa: E731
    got = unrolled_generator_loss(d_forward, {"weight": w0[None], "bias": b0[None]}, real, fake, k=k, loss="ns",
                                  update=FunctionalSGD(eta))
    assert_close(got, want)
    for a, b_ in zip(torch.autograd.grad(got, (A, c), retain_graph=True), torch.autograd.grad(want, (A, c))):
        assert_close(a, b_)


def _adam_state_after(D, opt_steps=3, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2, betas=(0.5, 0.9))
    for _ in range(opt_steps):
        x, y = torch.randn(16, 2), torch.randn(16, 2) + 2
        opt.zero_grad()
        d_minimax(D(x), D(y)).backward()
        opt.step()
    return opt


def test_functional_adam_step_equals_torch_adam_from_its_current_state():
    torch.manual_seed(0)
    D = make_d()
    opt = _adam_state_after(D)
    update = FunctionalAdam.from_optimizer(opt)
    state = update.state_from(opt, dict(D.named_parameters()))
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    f = functional_forward(D)
    p1, state1 = unroll_discriminator(lambda p: d_minimax(f(p, real), f(p, fake)), detached_params(D), 1,
                                      update, state)
    opt.zero_grad()
    d_minimax(D(real), D(fake)).backward()
    opt.step()
    assert state1["step"] == 4.0
    for n, p in D.named_parameters():
        assert_close(p1[n], p.detach())
        assert_close(state1["exp_avg"][n], opt.state[p]["exp_avg"])
        assert_close(state1["exp_avg_sq"][n], opt.state[p]["exp_avg_sq"])


def test_functional_adam_is_finite_where_a_gradient_is_exactly_zero():
    """sqrt(v) at v = 0 would put 0 * inf = NaN into the generator gradient."""
    w = {"w": torch.tensor([1.0, 2.0])}
    theta = torch.tensor(0.5, requires_grad=True)
    loss_fn = lambda p: (p["w"][0] * theta) ** 2                 # noqa: E731  dL/dw[1] == 0
    pk, _ = unroll_discriminator(loss_fn, w, 2, FunctionalAdam(0.1))
    (g,) = torch.autograd.grad(pk["w"].sum() * theta, theta)
    assert torch.isfinite(g)
    assert_close(pk["w"][1], torch.tensor(2.0))


def test_generator_gradient_flows_through_the_unrolled_adam_steps():
    """Finite differences of the whole surrogate (float64) agree with autograd, and differ from
    the gradient that treats theta_D^K as a constant: the unroll reaches the generator."""
    torch.manual_seed(0)
    G, D = MLPGenerator(hidden=4, depth=1).double(), make_d().double()
    opt = _adam_state_after(D.float(), seed=1)
    D = D.double()
    update = FunctionalAdam.from_optimizer(opt)
    state = update.state_from(opt, dict(D.named_parameters()))
    state = {**state, "exp_avg": {n: v.double() for n, v in state["exp_avg"].items()},
             "exp_avg_sq": {n: v.double() for n, v in state["exp_avg_sq"].items()}}
    real, z = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    f, p0 = functional_forward(D), detached_params(D)
    names = [n for n, _ in G.named_parameters()]

    def surrogate(*g_params, k=3):
        fake = torch.func.functional_call(G, dict(zip(names, g_params)), (z,))
        return unrolled_generator_loss(f, p0, real, fake, k=k, loss="ns", update=update, state=state)

    g_params = tuple(p.detach().requires_grad_() for p in G.parameters())
    assert torch.autograd.gradcheck(surrogate, g_params, eps=1e-6, atol=1e-6)

    full = torch.autograd.grad(surrogate(*g_params), g_params)
    # the same theta_D^K, but detached: only the direct term dL_G/dG at fixed D
    fake = torch.func.functional_call(G, dict(zip(names, g_params)), (z,))
    dl = lambda p: d_minimax(f(p, real), f(p, fake.detach()))      # noqa: E731
    pk, _ = unroll_discriminator(dl, p0, 3, update, state)
    direct = torch.autograd.grad(g_ns(f({n: v.detach() for n, v in pk.items()}, fake)), g_params)
    k0 = torch.autograd.grad(surrogate(*g_params, k=0), g_params)
    assert max((a - b).abs().max() for a, b in zip(full, direct)) > 1e-4
    assert max((a - b).abs().max() for a, b in zip(full, k0)) > 1e-4


def _trainer(cls, seed=0, **kw):
    seed_everything(seed)
    cfg = TrainConfig(steps=4, batch_size=16, lr_d=1e-2, lr_g=1e-2, progress=False, log_every=2, seed=seed)
    return cls(make_g(), make_d(), ring_of_gaussians(), cfg, **kw)


def test_trainer_k0_is_the_plain_trainer_and_d_update_stays_ordinary():
    plain, k0 = _trainer(Trainer), _trainer(UnrolledTrainer, unroll_steps=0)
    plain.fit()
    k0.fit()
    for key in plain.history:
        assert_close(torch.tensor(k0.history[key]), torch.tensor(plain.history[key]), rtol=0, atol=0)

    plain, unrolled = _trainer(Trainer), _trainer(UnrolledTrainer, unroll_steps=3)
    d_before = {n: p.detach().clone() for n, p in unrolled.D.named_parameters()}
    plain.fit(1)
    unrolled.fit(1)
    # step 1: D's update is the same ordinary update in both (it comes before G's)...
    for (_, a), (_, b) in zip(unrolled.D.named_parameters(), plain.D.named_parameters()):
        assert_close(a, b)
    assert any(not torch.equal(p, d_before[n]) for n, p in unrolled.D.named_parameters())
    # ...and the unroll left D's optimizer state alone (step count of one real update)
    assert all(float(s["step"]) == 1.0 for s in unrolled.opt_d.state.values())
    # while G's update differs: it saw the unrolled discriminator
    assert not torch.allclose(next(unrolled.G.parameters()), next(plain.G.parameters()))


def test_seed_batch_members_equal_their_own_unrolled_trainers():
    """One population, per-member K and per-member data: each member follows its own trainer."""
    cfg = TrainConfig(steps=3, batch_size=16, lr_d=1e-2, lr_g=1e-2, progress=False, log_every=3)
    setups = [(3, ring_of_gaussians(), 2), (5, grid_of_gaussians(), 1)]
    batch = UnrolledSeedBatch(make_g, make_d, [src for _, src, _ in setups], cfg, seeds=[s for s, _, _ in setups],
                              unroll_steps=[k for _, _, k in setups])
    batch.fit()
    for i, (seed, source, k) in enumerate(setups):
        seed_everything(seed)
        tr = UnrolledTrainer(make_g(), make_d(), source, TrainConfig(**{**cfg.__dict__, "seed": seed}), unroll_steps=k)
        tr.fit()
        assert_close(torch.tensor(batch.history["g_loss"])[:, i], torch.tensor(tr.history["g_loss"]),
                     rtol=1e-4, atol=1e-5)
        assert_close(batch.model(i, like=tr.G).net[0].weight, tr.G.net[0].weight, rtol=1e-4, atol=1e-5)


def test_member_steps_unroll_each_member_its_own_number_of_steps():
    torch.manual_seed(0)
    S, steps = 3, torch.tensor([0, 1, 3])
    w0 = torch.randn(S, 2)
    theta = torch.randn(S, 2, requires_grad=True)            # member s's generator: the point theta[s]
    real = torch.randn(S, 4, 2)
    d_forward = lambda p, x: torch.einsum("snd,sd->sn", x, p["w"])      # noqa: E731
    fake = theta[:, None, :].expand(S, 4, 2)
    losses = unrolled_generator_loss(d_forward, {"w": w0}, real, fake, k=3, loss=LINEAR, update=FunctionalSGD(0.3),
                                     member_steps=steps)
    (g,) = torch.autograd.grad(losses.sum(), theta)
    for s in range(S):                                        # closed form of test_sgd_unroll_closed_form
        k = int(steps[s])
        assert_close(g[s], -w0[s] + k * 0.3 * (2 * theta[s].detach() - real[s].mean(0)))
    with pytest.raises(ValueError, match="maximum"):
        unroll_discriminator(lambda p: p["w"].sum(), {"w": w0}, 2, FunctionalSGD(0.1), member_steps=steps)


def test_bad_arguments_are_refused():
    G, D, real, z = _setup()
    with pytest.raises(ValueError, match="update rule"):
        unrolled_generator_loss(functional_forward(D), detached_params(D), real, G(z), k=2)
    with pytest.raises(ValueError, match="k"):
        unroll_discriminator(lambda p: p["w"].sum(), {"w": torch.ones(1)}, -1, FunctionalSGD(0.1))
    with pytest.raises(ValueError, match="objective"):
        unrolled_generator_loss(functional_forward(D), detached_params(D), real, G(z), k=0, objective="max")
    with pytest.raises(ValueError, match="unroll_steps"):
        _trainer(UnrolledTrainer, unroll_steps=1.5)
    with pytest.raises(ValueError, match="unroll_optimizer"):
        _trainer(UnrolledTrainer, unroll_optimizer="rmsprop")
    seed_everything(0)
    rms = TrainConfig(steps=4, batch_size=16, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="replays D's Adam"):
        UnrolledTrainer(make_g(), make_d(), ring_of_gaussians(), rms, unroll_steps=2)
    UnrolledTrainer(make_g(), make_d(), ring_of_gaussians(), rms, unroll_steps=2, unroll_optimizer="sgd")
    with pytest.raises(ValueError, match="d_penalty"):
        _trainer(UnrolledTrainer, unroll_steps=2, d_penalty=lambda D, r, f: D(r).mean())
    with pytest.raises(ValueError, match="lr"):
        FunctionalAdam(0.0)
    with pytest.raises(TypeError, match="Adam"):
        FunctionalAdam.from_optimizer(torch.optim.SGD(D.parameters(), lr=0.1))
