"""The input contract: every bad input and bad file is refused with the right exception type and a
message that names the offending parameter or file (never a raw KeyError/IndexError/AttributeError
or a torch shape error from deep inside).

Each case is ``(id, call, exception type, words the message must contain)``.
"""

import os
import subprocess
import zipfile

import pytest
import torch

from ganlib.training.batched import SeedBatch
import yaml

from ganlib import metrics
from ganlib.data import AugmentPhase, GaussianMixture, PhasedAugmentation, TensorSource, grid_of_gaussians, \
    load_dataset, load_digits, random_affine, ring_of_gaussians
from ganlib.losses import d_ns, get_loss
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.regularizers import GradientPenalty, R1Penalty, gradient_penalty
from ganlib.training import CheckpointError, TrainConfig, Trainer, load_checkpoint, save_checkpoint
from ganlib.training.phased import PhasedConfig, PhasedTrainer
from ganlib.training.progressive import ProgressiveConfig
from ganlib.validation import as_float, as_int

NAN = float("nan")


def nets(seed=0):
    torch.manual_seed(seed)
    return MLPGenerator(hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1)


def trainer(checkpoint_dir=None, **cfg):
    G, D = nets()
    config = TrainConfig(**{"steps": 4, "batch_size": 8, "progress": False, "checkpoint_dir": checkpoint_dir, **cfg})
    return Trainer(G, D, ring_of_gaussians(), config)


def with_nan(shape, where):
    x = torch.randn(*shape)
    x[where] = NAN
    return x


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    """A checkpoint of a 2-step run and its bytes (the bad files below are edits of it)."""
    folder = tmp_path_factory.mktemp("good")
    trainer(str(folder)).fit(steps=2)
    path = folder / "checkpoint.pt"
    return path, path.read_bytes()


# --- bad arguments -------------------------------------------------------------------------------
F = torch.randn(40, 3)
CASES = [
    # TrainConfig: numbers (strings are parsed: see test_numbers_given_as_strings_are_parsed)
    ("config lr_d not a number", lambda: TrainConfig(lr_d="fast"), ValueError, ["lr_d", "fast"]),
    ("config lr_g negative", lambda: TrainConfig(lr_g=-1e-4), ValueError, ["lr_g"]),
    ("config lr_d NaN", lambda: TrainConfig(lr_d=NAN), ValueError, ["lr_d"]),
    ("config lr_d None", lambda: TrainConfig(lr_d=None), TypeError, ["lr_d"]),
    ("config batch_size 0", lambda: TrainConfig(batch_size=0), ValueError, ["batch_size"]),
    ("config batch_size fraction", lambda: TrainConfig(batch_size=32.5), ValueError, ["batch_size"]),
    ("config batch_size bool", lambda: TrainConfig(batch_size=True), TypeError, ["batch_size"]),
    ("config steps -5", lambda: TrainConfig(steps=-5), ValueError, ["steps"]),
    ("config n_critic string", lambda: TrainConfig(n_critic="five"), ValueError, ["n_critic"]),
    ("config log_every 0", lambda: TrainConfig(log_every=0), ValueError, ["log_every"]),
    ("config checkpoint_every -1", lambda: TrainConfig(checkpoint_every=-1), ValueError, ["checkpoint_every"]),
    ("config snapshot_every string", lambda: TrainConfig(snapshot_every="often"), ValueError, ["snapshot_every"]),
    ("config seed fraction", lambda: TrainConfig(seed=0.5), ValueError, ["seed"]),
    ("config betas_d one number", lambda: TrainConfig(betas_d=0.5), ValueError, ["betas_d"]),
    ("config betas_g >= 1", lambda: TrainConfig(betas_g=(0.5, 1.0)), ValueError, ["betas_g"]),
    ("config betas_d string item", lambda: TrainConfig(betas_d=("a", 0.9)), ValueError, ["betas_d"]),
    ("config ema_decay 1", lambda: TrainConfig(ema_decay=1.0), ValueError, ["ema_decay"]),
    ("config ema_decay string", lambda: TrainConfig(ema_decay="high"), ValueError, ["ema_decay"]),
    ("config optimizer", lambda: TrainConfig(optimizer="sgd"), ValueError, ["optimizer", "sgd"]),
    ("config loss", lambda: TrainConfig(loss="wasserstein-ish"), ValueError, ["loss", "wasserstein-ish"]),
    ("config amp_dtype", lambda: TrainConfig(amp_dtype="fp8"), ValueError, ["amp_dtype"]),
    ("config checkpoint_dir number", lambda: TrainConfig(checkpoint_dir=3), TypeError, ["checkpoint_dir"]),
    ("ttur override", lambda: TrainConfig.ttur(lr_g=0), ValueError, ["lr_g"]),
    ("progressive drift", lambda: ProgressiveConfig(drift=-1), ValueError, ["drift"]),
    ("progressive lr_d string", lambda: ProgressiveConfig(lr_d="x"), ValueError, ["lr_d"]),
    ("phased lr", lambda: PhasedConfig(lr="slow"), ValueError, ["lr"]),
    ("phased steps", lambda: PhasedConfig(steps=0), ValueError, ["steps"]),
    ("phased checkpoint_every", lambda: PhasedConfig(checkpoint_every=-2), ValueError, ["checkpoint_every"]),
    # Trainer construction
    ("trainer raw tensor source", lambda: Trainer(*nets(), torch.randn(10, 2), TrainConfig()), TypeError,
     ["source", "TensorSource"]),
    ("seed batch raw tensor source", lambda: SeedBatch(lambda: MLPGenerator(hidden=8, depth=1),
     lambda: MLPDiscriminator(hidden=8, depth=1), torch.randn(10, 2), TrainConfig(), seeds=[0]), TypeError,
     ["source", "TensorSource"]),
    ("population one raw tensor among sources", lambda: SeedBatch(lambda: MLPGenerator(hidden=8, depth=1),
     lambda: MLPDiscriminator(hidden=8, depth=1), [ring_of_gaussians(), torch.randn(10, 2)], TrainConfig(),
     seeds=[0, 1]), TypeError, ["source[1]", "TensorSource"]),
    ("trainer list source", lambda: Trainer(*nets(), [[0.0, 1.0]], TrainConfig()), TypeError,
     ["source", "TensorSource"]),
    ("trainer dict config", lambda: Trainer(*nets(), ring_of_gaussians(), {"steps": 3}), TypeError,
     ["config", "TrainConfig"]),
    ("trainer generator not a module", lambda: Trainer(lambda z: z, nets()[1], ring_of_gaussians(), TrainConfig()),
     TypeError, ["generator"]),
    ("trainer generator without sample_latent",
     lambda: Trainer(torch.nn.Linear(2, 2), nets()[1], ring_of_gaussians(), TrainConfig()), TypeError,
     ["sample_latent"]),
    ("trainer discriminator without parameters",
     lambda: Trainer(nets()[0], torch.nn.Identity(), ring_of_gaussians(), TrainConfig()), TypeError,
     ["discriminator"]),
    ("trainer d_penalty not callable", lambda: Trainer(*nets(), ring_of_gaussians(), TrainConfig(), d_penalty=10.0),
     TypeError, ["d_penalty"]),
    ("trainer callback not callable", lambda: Trainer(*nets(), ring_of_gaussians(), TrainConfig(), callbacks=[3]),
     TypeError, ["callbacks[0]"]),
    ("phased trainer raw tensor source",
     lambda: PhasedTrainer(torch.nn.Linear(2, 2), lambda x: (x.sum(), {}), torch.randn(4, 1, 8, 8),
                           PhasedAugmentation.none(), PhasedConfig()), TypeError, ["source", "TensorSource"]),
    ("phased trainer loss_fn not callable",
     lambda: PhasedTrainer(torch.nn.Linear(2, 2), "mse", TensorSource(torch.randn(4, 1, 8, 8)),
                           PhasedAugmentation.none(), PhasedConfig()), TypeError, ["loss_fn"]),
    ("phased config seed string", lambda: PhasedConfig(seed="abc"), ValueError, ["seed"]),
    # fit / sample / load
    ("load allow_changed misspelt", lambda: trainer().load("x.pt", allow_changed="lr"), ValueError, ["allow_changed"]),
    ("load missing file", lambda: trainer().load("no-such-run/checkpoint.pt"), FileNotFoundError,
     ["no-such-run/checkpoint.pt"]),
    ("save without a path", lambda: trainer().save(), ValueError, ["checkpoint_dir"]),
    ("fit steps -5", lambda: trainer().fit(steps=-5), ValueError, ["steps", "-5"]),
    ("fit steps fraction", lambda: trainer().fit(steps=2.5), ValueError, ["steps"]),
    ("fit allow_changed unknown", lambda: trainer().fit(allow_changed=("batch_size",)), ValueError,
     ["allow_changed", "batch_size"]),
    ("sample -1", lambda: trainer().sample(-1), ValueError, ["n", "-1"]),
    ("sample 0", lambda: trainer().sample(0), ValueError, ["n"]),
    ("sample string", lambda: trainer().sample("many"), ValueError, ["n", "many"]),
    ("sample seed string", lambda: trainer().sample(4, seed="lucky"), ValueError, ["seed"]),
    ("sample ema without EMA", lambda: trainer().sample(4, ema=True), ValueError, ["ema_decay"]),
    # data sources
    ("TensorSource NaN", lambda: TensorSource(with_nan((20, 2), (3, 1))), ValueError, ["TensorSource data", "1 non-finite"]),
    ("TensorSource inf", lambda: TensorSource(torch.tensor([[0.0], [float("inf")], [float("-inf")]])), ValueError,
     ["TensorSource data", "2 non-finite"]),
    ("TensorSource list", lambda: TensorSource([[0.0, 1.0]]), TypeError, ["TensorSource", "data"]),
    ("TensorSource 1-D", lambda: TensorSource(torch.zeros(5)), ValueError, ["TensorSource", "shape"]),
    ("TensorSource empty", lambda: TensorSource(torch.zeros(0, 2)), ValueError, ["TensorSource", "shape"]),
    ("TensorSource integer images", lambda: TensorSource(torch.zeros(4, 1, 8, 8, dtype=torch.uint8)), TypeError,
     ["TensorSource data", "float"]),
    ("TensorSource sample -3", lambda: TensorSource(torch.zeros(4, 2)).sample(-3), ValueError, ["n"]),
    ("mixture std 0", lambda: GaussianMixture(torch.zeros(2, 2), 0.0), ValueError, ["std"]),
    ("mixture NaN means", lambda: GaussianMixture(with_nan((3, 2), (0, 0)), 0.1), ValueError, ["means"]),
    ("mixture means 1-D", lambda: GaussianMixture(torch.zeros(3), 0.1), ValueError, ["means"]),
    ("ring n_modes 0", lambda: ring_of_gaussians(n_modes=0), ValueError, ["n_modes"]),
    ("grid side string", lambda: grid_of_gaussians(side="five"), ValueError, ["side"]),
    ("mixture sample -1", lambda: ring_of_gaussians().sample(-1), ValueError, ["n"]),
    ("load_dataset unknown", lambda: load_dataset("imagenet"), ValueError, ["imagenet"]),
    # models
    ("MLPGenerator hidden -1", lambda: MLPGenerator(hidden=-1), ValueError, ["hidden"]),
    ("MLPGenerator latent_dim string", lambda: MLPGenerator(latent_dim="2"), ValueError, ["latent_dim"]),
    ("MLPDiscriminator depth NaN", lambda: MLPDiscriminator(depth=NAN), ValueError, ["depth"]),
    # losses and penalties
    ("loss unknown", lambda: get_loss("wgan-gpp"), ValueError, ["wgan-gpp"]),
    ("loss list logits", lambda: d_ns([0.0], torch.zeros(1)), TypeError, ["real_logits"]),
    ("loss 2-D logits", lambda: d_ns(torch.zeros(4, 2), torch.zeros(4)), ValueError, ["shape"]),
    ("penalty weight negative", lambda: GradientPenalty(weight=-1.0), ValueError, ["weight"]),
    ("penalty on a list", lambda: gradient_penalty(nets()[1], [[0.0, 0.0]], torch.zeros(1, 2)), ValueError, ["real"]),
    # metrics
    ("fid NaN fake", lambda: metrics.fid_from_features(F, with_nan((40, 3), (7, 2))), ValueError,
     ["f_fake", "non-finite"]),
    ("fid inf real", lambda: metrics.fid_from_features(with_nan((40, 3), (0, 0)) * 0 + float("inf"), F),
     ValueError, ["f_real", "non-finite"]),
    ("fid 1-D", lambda: metrics.fid_from_features(torch.zeros(40), F), ValueError, ["f_real"]),
    ("fid numpy", lambda: metrics.fid_from_features(F.numpy(), F), TypeError, ["f_real"]),
    ("fid dims differ", lambda: metrics.fid_from_features(F, torch.randn(40, 4)), ValueError, ["f_fake"]),
    ("kid NaN real", lambda: metrics.kid(with_nan((40, 3), (1, 1)), F), ValueError, ["f_real", "non-finite"]),
    ("kid n_subsets 0", lambda: metrics.kid(F, F, n_subsets=0), ValueError, ["n_subsets"]),
    ("kid subset_size string", lambda: metrics.kid(F, F, subset_size="big"), ValueError, ["subset_size"]),
    ("precision_recall NaN", lambda: metrics.precision_recall(F, with_nan((40, 3), (5, 0))), ValueError,
     ["f_fake", "non-finite"]),
    ("precision_recall k -1", lambda: metrics.precision_recall(F, F, k=-1), ValueError, ["k"]),
    ("gaussian_stats NaN", lambda: metrics.gaussian_stats(with_nan((40, 3), (2, 2))), ValueError, ["features"]),
    ("frechet_distance NaN sigma",
     lambda: metrics.frechet_distance(torch.zeros(2), with_nan((2, 2), (0, 1)), torch.zeros(2), torch.eye(2)),
     ValueError, ["sigma1"]),
    ("frechet_distance list", lambda: metrics.frechet_distance([0.0], torch.eye(1), torch.zeros(1), torch.eye(1)),
     TypeError, ["mu1"]),
    ("mode_statistics wrong dim", lambda: metrics.mode_statistics(torch.zeros(5, 3), ring_of_gaussians()),
     ValueError, ["samples"]),
    # augmentation
    ("augmentation widening", lambda: PhasedAugmentation([{"zoom": 0.1}, {"zoom": 0.2}, {}], [0.3, 0.6]),
     ValueError, ["zoom"]),
    ("augmentation unknown key", lambda: PhasedAugmentation([{"shear": 0.1}]), ValueError, ["shear"]),
    ("augmentation boundary string", lambda: PhasedAugmentation([{"zoom": 0.1}, {}], ["half"]), ValueError,
     ["boundaries[0]"]),
    ("augmentation step string", lambda: PhasedAugmentation([{"zoom": 0.1}, {}], [0.5]).phase_index("a", 10),
     ValueError, ["step"]),
    ("augmentation total_steps 0", lambda: PhasedAugmentation.none().phase_starts(0), ValueError, ["total_steps"]),
    ("progressive stabilize_steps string", lambda: ProgressiveConfig(stabilize_steps="long"), ValueError,
     ["stabilize_steps"]),
    # more models, data, metrics and files
    ("generator called on a list", lambda: MLPGenerator()([[0.0, 0.0]]), TypeError, ["z"]),
    ("discriminator called on a list", lambda: MLPDiscriminator()([[0.0, 0.0]]), ValueError, ["inputs"]),
    ("load_digits size string", lambda: load_digits("8"), ValueError, ["size"]),
    ("penalty critic None", lambda: gradient_penalty(None, torch.zeros(2, 2), torch.zeros(2, 2)), TypeError,
     ["critic"]),
    ("R1 gamma string", lambda: R1Penalty(gamma="strong"), ValueError, ["gamma"]),
    ("mode_statistics mixture None", lambda: metrics.mode_statistics(torch.zeros(3, 2), None), TypeError,
     ["mixture"]),
    ("kl_to_uniform list", lambda: metrics.kl_to_uniform([1, 2]), TypeError, ["counts"]),
    ("digits_fid list", lambda: metrics.digits_fid([1], [2]), TypeError, ["fake_images"]),
    ("kid generator string", lambda: metrics.kid(F, F, generator="seed"), TypeError, ["generator"]),
    ("TensorSource generator string", lambda: TensorSource(torch.zeros(3, 2)).sample(2, "seed"), TypeError,
     ["generator"]),
    ("ring radius string", lambda: ring_of_gaussians(radius="one"), ValueError, ["radius"]),
    ("grid spacing NaN", lambda: grid_of_gaussians(spacing=NAN), ValueError, ["spacing"]),
    ("save_checkpoint list state", lambda: save_checkpoint("unused.pt", [1, 2]), TypeError, ["state"]),
    ("load_checkpoint None", lambda: load_checkpoint(None), TypeError, ["path"]),
    # the shared parsers themselves
    ("as_float inf", lambda: as_float("lr", "inf"), ValueError, ["lr"]),
    ("as_int list", lambda: as_int("steps", [3]), TypeError, ["steps"]),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(call, error, words):
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is error or isinstance(info.value, error) and not isinstance(
        info.value, (KeyError, IndexError, AttributeError)), f"{type(info.value).__name__}: {info.value}"
    for word in words:
        assert word in str(info.value), f"{word!r} not named in: {info.value}"


# --- bad files -----------------------------------------------------------------------------------
def _tensor_member(data: bytes, path) -> tuple[int, int]:
    """Offset and size of the largest tensor's bytes inside a torch zip file."""
    path.write_bytes(data)
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "rb") as fh:  # the local header's own name/extra lengths locate the data
        fh.seek(info.header_offset + 26)
        n_name, n_extra = (int.from_bytes(fh.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + n_name + n_extra, info.file_size


def _flipped(data, path):
    start, size = _tensor_member(data, path)
    b = bytearray(data)
    b[start + size // 2] ^= 0x01
    return bytes(b)


def _resave(edit):
    """A checkpoint with ganlib's tag whose content was edited (checksum recomputed: a careful forger)."""
    def make(data, path):
        path.write_bytes(data)
        state = torch.load(path, weights_only=True)
        state.pop("format"), state.pop("checksum")
        edit(state)
        save_checkpoint(path, state)
        return path.read_bytes()
    return make


BAD_FILES = [
    ("empty file", lambda data, path: b"", ["empty"]),
    ("truncated", lambda data, path: data[: len(data) // 3], ["truncated or corrupt"]),
    ("first 100 bytes", lambda data, path: data[:100], ["truncated or corrupt"]),
    ("text file", lambda data, path: b"not a checkpoint at all", ["truncated or corrupt"]),
    ("flipped byte in a tensor", _flipped, ["corrupt", "checksum"]),
    ("missing config", _resave(lambda s: s.pop("config")), ["'config' is missing"]),
    ("rng without cuda", _resave(lambda s: s["rng"].pop("cuda")), ["'rng.cuda' is missing"]),
    ("step is a string", _resave(lambda s: s.update(step="2")), ["'step' should be int"]),
    ("config lost a field's value", _resave(lambda s: s["config"].update(loss="hinge")), ["loss", "'hinge'"]),
    ("generator of another shape", _resave(lambda s: s["generator"].popitem()), ["another shape"]),
    ("optimizer state of another optimizer", _resave(lambda s: s["opt_d"].update(param_groups=[])),
     ["opt_d"]),
]


@pytest.mark.parametrize("make, words", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_checkpoint_file_is_refused_naming_the_file(tmp_path, good_checkpoint, make, words):
    _, data = good_checkpoint
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(make(data, tmp_path / "scratch.pt"))
    tr = trainer(str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        tr.fit()
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_foreign_files_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"x": torch.zeros(1)}, path)              # a valid torch file that is not ours
    with pytest.raises(CheckpointError, match="not a ganlib checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a ganlib checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothing-here.pt"):
        load_checkpoint(tmp_path / "nothing-here.pt")


def test_a_pickle_with_a_payload_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ganlib-checkpoint-v1", "x": _Payload(str(tmp_path / "ran"))}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    assert not (tmp_path / "ran").exists()


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_numbers_given_as_strings_are_parsed():
    """The choice of the contract: a YAML file's "2e-4" (YAML 1.1 reads it as a string) is parsed."""
    cfg = TrainConfig(**yaml.safe_load("lr_d: 2e-4\nlr_g: '1e-4'\nbatch_size: '64'\nbetas_d: ['0', '0.9']\n"
                                      "ema_decay: '0.999'\nsteps: 1e3"))
    assert (cfg.lr_d, cfg.lr_g, cfg.batch_size, cfg.betas_d, cfg.ema_decay, cfg.steps) == (
        2e-4, 1e-4, 64, (0.0, 0.9), 0.999, 1000)
    assert isinstance(cfg.batch_size, int) and isinstance(cfg.steps, int)
    assert PhasedConfig(lr="3e-4", steps="10").lr == 3e-4
    assert trainer().sample("3").shape == (3, 2)
    assert AugmentPhase(zoom="0.1", rotation="15") == AugmentPhase(zoom=0.1, rotation=15.0)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(random_affine(x, "10", generator=torch.Generator().manual_seed(0)),
                               random_affine(x, 10, generator=torch.Generator().manual_seed(0)))
    assert ProgressiveConfig(stabilize_steps="4", drift="1e-3").stabilize_steps == 4
    assert R1Penalty(gamma="10").gamma == 10.0


# --- resume semantics ----------------------------------------------------------------------------
def test_every_changed_setting_is_listed_in_one_error(tmp_path):
    trainer(str(tmp_path)).fit(steps=2)
    changed = dict(lr_d=0.01, lr_g=1e-3, betas_d=(0.0, 0.9), optimizer="rmsprop", ema_decay=0.99, amp_dtype="bf16",
                   loss="hinge", batch_size=16, n_critic=2, seed=3, n_fixed_samples=8)
    with pytest.raises(CheckpointError) as info:
        trainer(str(tmp_path), **changed).fit()
    msg = str(info.value)
    assert str(tmp_path / "checkpoint.pt") in msg
    for key, value in changed.items():
        saved = 8 if key == "batch_size" else getattr(TrainConfig(), key)   # trainer() uses batch 8
        assert f"{key}: checkpoint {saved!r}, this run {value!r}" in msg, key
    assert "allow_changed=('lr_d', 'lr_g', 'ema_decay')" in msg and "checkpoint_dir" in msg
    # settings that only steer the loop may change freely
    trainer(str(tmp_path), steps=3, log_every=1, snapshot_every=1, checkpoint_every=1).fit()


def test_allow_changed_applies_new_learning_rates_to_the_optimizers(tmp_path):
    trainer(str(tmp_path)).fit(steps=2)
    tr = trainer(str(tmp_path), lr_d=0.01, lr_g=1e-3)
    with pytest.raises(CheckpointError, match="lr_d: checkpoint 0.0002, this run 0.01"):
        tr.fit(allow_changed=("lr_g",))                   # lr_d changed too but was not allowed
    tr = trainer(str(tmp_path), lr_d=0.01, lr_g=1e-3)
    tr.load(tmp_path / "checkpoint.pt", allow_changed=("lr_d", "lr_g"))
    assert [g["lr"] for g in tr.opt_d.param_groups] == [0.01]
    assert [g["lr"] for g in tr.opt_g.param_groups] == [1e-3]
    assert tr.opt_d.state                                 # the Adam moments were loaded, not reset
    # one Adam step from the loaded state at the new rate, by hand
    p = next(tr.D.parameters())
    st = tr.opt_d.state[p]
    m, v, t = st["exp_avg"].clone(), st["exp_avg_sq"].clone(), float(st["step"]) + 1
    g = torch.randn_like(p)
    before = p.detach().clone()
    p.grad = g
    tr.opt_d.step()
    b1, b2 = 0.5, 0.999
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    expected = before - 0.01 * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + 1e-8)
    torch.testing.assert_close(p.detach(), expected)


def test_ema_turned_on_at_resume_starts_from_the_loaded_generator(tmp_path):
    first = trainer(str(tmp_path))
    first.fit(steps=3)
    tr = trainer(str(tmp_path), ema_decay=0.9)
    with pytest.raises(CheckpointError, match="ema_decay"):
        tr.fit()
    tr.fit(steps=3, allow_changed=("ema_decay",))       # loads; no step to take
    for e, g, f in zip(tr.G_ema.parameters(), tr.G.parameters(), first.G.parameters()):
        torch.testing.assert_close(e, f, rtol=0, atol=0)
        torch.testing.assert_close(g, f, rtol=0, atol=0)
    before = [p.clone() for p in tr.G_ema.parameters()]
    tr.fit(steps=4)
    for e, b, g in zip(tr.G_ema.parameters(), before, tr.G.parameters()):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * g)


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path):
    tr = trainer(str(tmp_path))
    tr.fit(steps=1)
    dead = subprocess.Popen(["true"])
    dead.wait()                                          # a pid that no longer runs: a killed writer
    stale = tmp_path / f".checkpoint.pt.tmp-{dead.pid}"
    live = tmp_path / f".checkpoint.pt.tmp-{os.getppid()}"  # a running process may still be writing
    other = tmp_path / f".other.pt.tmp-{dead.pid}"
    for f in (stale, live, other):
        f.write_bytes(b"partial")
    tr.fit(steps=2)
    assert not stale.exists() and live.exists() and other.exists()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def test_phased_trainer_refuses_a_gan_checkpoint_by_its_missing_entries(tmp_path, good_checkpoint):
    path, _ = good_checkpoint
    tr = PhasedTrainer(torch.nn.Linear(2, 2), lambda x: (x.sum(), {}), TensorSource(torch.randn(4, 1, 8, 8)),
                       PhasedAugmentation.none(), PhasedConfig())
    with pytest.raises(CheckpointError, match="'module' is missing; 'opt' is missing") as info:
        tr.load(path)
    assert str(path) in str(info.value)


def test_a_subclass_setting_is_listed_with_the_config_in_the_same_error(tmp_path):
    from ganlib.training.distill import DGLTrainer, freeze_teacher

    teacher = freeze_teacher(MLPDiscriminator(hidden=8, depth=1))

    def dgl(lam, **cfg):
        config = TrainConfig(**{"steps": 3, "batch_size": 8, "progress": False, "checkpoint_dir": str(tmp_path),
                                **cfg})
        return DGLTrainer(*nets(), ring_of_gaussians(), config, teacher, lam=lam)

    dgl(0.1).fit(steps=2)
    with pytest.raises(CheckpointError) as info:
        dgl(0.2, lr_d=1e-3).fit()
    assert "lr_d: checkpoint 0.0002, this run 0.001" in str(info.value)
    assert "lam: checkpoint 0.1, this run 0.2" in str(info.value)
    with pytest.raises(CheckpointError, match="plain Trainer, not a DGLTrainer"):
        trainer(str(tmp_path / "plain")).fit(steps=1)
        dgl(0.1).load(tmp_path / "plain" / "checkpoint.pt")
