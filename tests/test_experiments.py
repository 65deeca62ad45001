"""ganlib.experiments: statistics by hand, tables, the arms x seeds harness, per-model digits FID."""

import math
import pickle

import pytest
import torch
from torch.testing import assert_close

from ganlib.data import ring_of_gaussians
from ganlib.experiments import Markdown, digits_fid_per_model, mean_se, paired, pm, run_arms, table
from ganlib.models import MLPDiscriminator, MLPGenerator, TanhMLPGenerator
from ganlib.training import TrainConfig
from ganlib.training.population import Population, Standard


def test_mean_se_and_pm_by_hand():
    # [1, 2, 3, 4]: mean 2.5, sample variance 5/3, s.e. sqrt(5/3) / 2 = 0.6455
    m, se, n = mean_se([1.0, 2.0, 3.0, 4.0])
    assert (m, n) == (2.5, 4) and se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert pm([1.0, 2.0, 3.0, 4.0]) == "2.50 ± 0.65"
    assert pm([1.0, float("nan"), 3.0], digits=1) == "2.0 ± 1.0"          # NaN left out: [1, 3]
    assert pm([0.25], digits=1, scale=10) == "2.5" and pm([float("nan")]) == "n/a"


def test_paired_difference_and_verdict_by_hand():
    d = paired([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])           # differences 2, 3, 4: mean 3, s.e. 1/sqrt(3)
    assert d.mean == 3.0 and d.se == pytest.approx(1 / math.sqrt(3)) and d.verdict == "higher"
    assert str(d) == "+3.00 ± 0.58 (higher, 3 seeds)"
    unclear = paired([1.0, 3.0, 2.0], [2.0, 1.0, 1.0])     # differences -1, 2, 1: mean 0.67, s.e. 0.88
    assert unclear.verdict == "no clear difference"
    assert paired([1.0, 0.0], [2.0, 1.0]).verdict == "lower"   # differences -1, -1: s.e. 0 -> clear
    assert paired([1.0], [0.0]).verdict == "no clear difference"
    with pytest.raises(ValueError, match="one value per seed"):
        paired([1.0, 2.0], [1.0])


def test_table_is_gfm_markdown():
    t = table(["arm", "FID"], [["gan", "1.0 ± 0.1"], ["a|b", 2]])
    assert isinstance(t, Markdown) and t._repr_markdown_() == t
    assert t.splitlines() == ["| arm | FID |", "|---|---|", "| gan | 1.0 ± 0.1 |", "| a\\|b | 2 |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        table(["a", "b"], [["x"]])


def test_tanh_generator_is_bounded_and_stacks_as_grouped_layers():
    torch.manual_seed(0)
    G = TanhMLPGenerator(latent_dim=4, out_dim=64, hidden=16, depth=2)
    z = 10 * torch.randn(50, 4)
    x = G(z)
    assert x.abs().max() <= 1 and x.shape == (50, 64)
    pop = Population(lambda: TanhMLPGenerator(latent_dim=4, out_dim=64, hidden=16, depth=2),
                     lambda: MLPDiscriminator(in_dim=64, hidden=16, depth=2), ring_of_gaussians(),
                     TrainConfig(progress=False), seeds=[0])
    assert pop.G._grouped is not None
    assert_close(pop.G(z[None]), pop.export(0)(z)[None])


def test_digits_fid_per_model_equals_digits_fid_of_each_model():
    from ganlib.metrics.digits import digits_fid

    x = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fids = digits_fid_per_model(x)
    assert fids.shape == (2,)
    for p in range(2):
        assert_close(fids[p], digits_fid(x[p].reshape(-1, 1, 8, 8)).cpu(), rtol=1e-4, atol=1e-4)
    big = torch.rand(2, 20, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1  # 16x16, flattened
    assert_close(digits_fid_per_model(big), digits_fid_per_model(big.reshape(2, 20, 1, 16, 16)))
    with pytest.raises(ValueError, match="square"):
        digits_fid_per_model(x[..., :60])


def test_run_arms_scores_every_arm_and_seed():
    exp = run_arms(lambda: MLPGenerator(hidden=8, depth=1), lambda: MLPDiscriminator(hidden=8, depth=1),
                   ring_of_gaussians(), TrainConfig(steps=3, batch_size=8, progress=False),
                   arms={"gan": Standard("ns"), "ls": Standard("lsgan")}, seeds=[0, 1],
                   scores={"radius": lambda x: x.norm(dim=-1).mean(1)}, n_samples=20)
    assert exp.samples["ls"].shape == (2, 20, 2) and exp.scores["gan"]["radius"].shape == (2,)
    assert_close(exp.scores["ls"]["radius"], exp.samples["ls"].norm(dim=-1).mean(1))
    rows = exp.table(baseline="gan").splitlines()
    assert rows[0] == "| arm | radius | radius - gan |" and rows[2].startswith("| gan | ") and "(baseline)" in rows[2]
    assert exp.steps == 3 == exp.population.step
    light = pickle.loads(pickle.dumps(exp.without_population()))  # what a map_processes worker returns
    assert light.population is None and light.steps == 3 and exp.population is not None
    assert_close(light.scores["ls"]["radius"], exp.scores["ls"]["radius"], rtol=0, atol=0)


# --- convergence gates and gated verdicts -------------------------------------------------------

from ganlib.experiments import Gate, compare, comparison_table, gates_table  # noqa: E402


def test_gate_passes_on_its_side_of_the_threshold_and_fails_on_nan():
    assert Gate("HQ %", 50.0, 50.0).passed
    assert not Gate("HQ %", 49.9, 50.0).passed
    assert Gate("FID", 20.0, 30.0, higher_is_better=False).passed
    assert not Gate("FID", 31.0, 30.0, higher_is_better=False).passed
    assert not Gate("FID", float("nan"), 30.0, higher_is_better=False).passed
    assert "FAILED" in str(Gate("HQ %", 1.0, 50.0)) and "≥ 50" in str(Gate("HQ %", 1.0, 50.0))
    assert "| HQ % | 1.0 | ≥ 50 | **no** |" in gates_table([Gate("HQ %", 1.0, 50.0)])


def test_compare_reads_direction_and_withholds_the_verdict_when_a_gate_fails():
    base = [10.0, 12.0, 11.0, 13.0, 12.0]
    arm = [8.0, 9.5, 9.0, 10.0, 9.5]  # differences -2, -2.5, -2, -3, -2.5: clearly lower
    c = compare("B", arm, "A", base, "FID", lower_is_better=True)
    assert c.better is True and c.word == "better" and "B is better than A" in str(c)
    assert compare("B", arm, "A", base, "modes", lower_is_better=False).better is False
    gated = compare("B", arm, "A", base, "FID", lower_is_better=True, gates=[Gate("ref FID", 80.0, 30.0, False)])
    assert gated.gated and gated.better is None and "unconverged" in str(gated) and "ref FID" in str(gated)
    noisy = compare("B", [1.0, 3.0, 0.0, 4.0, 2.0], "A", [2.0, 1.0, 3.0, 1.0, 2.0], "FID", lower_is_better=True)
    assert noisy.better is None and noisy.word == "no clear difference"


def test_comparison_table_has_one_row_per_arm_with_the_verdict():
    t = comparison_table({"A": [1.0, 1.0, 1.0], "B": [2.0, 2.1, 2.2]}, "A", "modes", lower_is_better=False)
    lines = t.splitlines()
    assert len(lines) == 4 and "(baseline)" in lines[2] and lines[3].endswith("| better |")
    assert "+1.10 ± 0.06" in lines[3]


def test_lr_decay_sets_the_population_rates_geometrically_after_start():
    from types import SimpleNamespace

    from ganlib.experiments import LRDecay
    from ganlib.training import TrainConfig

    cfg = TrainConfig(steps=100, lr_d=1e-3, lr_g=5e-4)
    update = SimpleNamespace(lr=2e-3)
    pop = SimpleNamespace(config=cfg, step=0, opt_d=SimpleNamespace(lr=None), opt_g=SimpleNamespace(lr=None),
                          scheme=SimpleNamespace(update=update))
    decay = LRDecay(start=0.5, final=0.01)
    for step, f in [(0, 1.0), (50, 1.0), (75, 0.1), (100, 0.01)]:
        pop.step = step
        decay(pop)
        assert math.isclose(pop.opt_d.lr, 1e-3 * f) and math.isclose(pop.opt_g.lr, 5e-4 * f)
        assert math.isclose(update.lr, 2e-3 * f)   # the unrolled steps follow D's rate
    with pytest.raises(ValueError):
        LRDecay(start=0.5, final=0.0)


def test_lr_decay_changes_a_real_population_run():
    from ganlib.data import ring_of_gaussians
    from ganlib.experiments import LRDecay
    from ganlib.models import MLPDiscriminator, MLPGenerator
    from ganlib.training import TrainConfig
    from ganlib.training.population import Population

    def run(callbacks):
        pop = Population(lambda: MLPGenerator(2, 2, 8, 1), lambda: MLPDiscriminator(2, 8, 1), ring_of_gaussians(),
                         TrainConfig(steps=6, batch_size=8, log_every=2, progress=False), seeds=[0],
                         callbacks=callbacks)
        pop.fit()
        return pop

    plain, decayed = run([]), run([LRDecay(start=0.0, final=0.01)])
    assert math.isclose(decayed.opt_d.lr, 2e-4 * 0.01) and plain.opt_d.lr == 2e-4
    assert not torch.equal(plain.G.params["net.0.weight"], decayed.G.params["net.0.weight"])
