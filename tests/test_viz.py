"""ganlib.viz: figures, animations for static HTML and the live monitor (Agg, no display)."""

import json
import re
import sys
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PatchCollection, PathCollection  # noqa: E402

from ganlib import book, viz  # noqa: E402
from ganlib.data.mixtures import GaussianMixture, ring_of_gaussians  # noqa: E402
from ganlib.models.mlp import MLPGenerator  # noqa: E402


@pytest.fixture(autouse=True)
def _static(monkeypatch):
    monkeypatch.delenv("GANLIB_STATIC", raising=False)


def _rgb_at(fig, ax, fx, fy):
    """Rendered RGB at fraction (fx, fy) of ``ax``'s box (fy from the top)."""
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    box = ax.get_window_extent()
    col = int(box.x0 + fx * box.width)
    row = int(buf.shape[0] - (box.y1 - fy * box.height))
    return tuple(int(v) for v in buf[row, col, :3])


def _history(n=40):
    steps = list(range(1, n + 1))
    return {"step": steps, "d_loss": [1.0 / s for s in steps], "g_loss": [0.1 * s for s in steps],
            "d_real": [0.5] * n, "d_fake": [-0.5] * n}


# --- image_grid ------------------------------------------------------------------------------------
def test_image_grid_maps_minus_one_to_black_and_one_to_white():
    img = torch.tensor([[[-1.0, 1.0], [-1.0, 1.0]]])[None]   # [1, 1, 2, 2]: left column -1, right +1
    img = img * 3                                             # out of range: clamped
    fig = viz.image_grid(img)
    (ax,) = fig.axes
    assert _rgb_at(fig, ax, 0.25, 0.5) == (0, 0, 0)
    assert _rgb_at(fig, ax, 0.75, 0.5) == (255, 255, 255)


def test_image_grid_rgb_channels():
    img = -torch.ones(1, 3, 4, 4)
    img[:, 0] = 1.0                                           # pure red
    fig = viz.image_grid(img)
    assert _rgb_at(fig, fig.axes[0], 0.5, 0.5) == (255, 0, 0)


def test_image_grid_layout_one_image_artist():
    images = torch.linspace(-1, 1, 10).reshape(10, 1, 1, 1).expand(10, 1, 8, 8)
    fig = viz.image_grid(images, nrow=4, title="digits")
    (ax,) = fig.axes
    (im,) = ax.get_images()
    grid = np.asarray(im.get_array())
    assert grid.shape == (3 * 8 + 2, 4 * 8 + 3)               # 3 rows of 4, 1-px white padding
    # tile i sits at row i // 4, column i % 4, with value (x + 1) / 2
    for i in (0, 5, 9):
        r, c = divmod(i, 4)
        np.testing.assert_allclose(grid[r * 9: r * 9 + 8, c * 9: c * 9 + 8], (images[i, 0].numpy() + 1) / 2,
                                   atol=1e-6)
    assert np.all(grid[8, :] == 1.0) and np.all(grid[18:, 18:] == 1.0)  # padding and empty slots are white
    assert ax.get_title() == "digits"


def test_image_grid_default_is_square_and_draws_into_given_axes():
    fig = viz.image_grid(torch.zeros(9, 1, 5, 5))
    assert np.asarray(fig.axes[0].get_images()[0].get_array()).shape == (17, 17)
    own = viz.image_grid(torch.zeros(2, 3, 4, 4))
    ax = own.axes[0]
    assert viz.image_grid(torch.zeros(4, 1, 4, 4), ax=ax) is own
    assert len(ax.get_images()) == 2


@pytest.mark.parametrize("shape", [(8, 8), (2, 8, 8), (2, 2, 8, 8), (0, 1, 8, 8)])
def test_image_grid_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="images"):
        viz.image_grid(torch.zeros(shape))


# --- 2-D plots -------------------------------------------------------------------------------------------
def test_scatter_2d_draws_samples_modes_and_3sigma_circles():
    ring = ring_of_gaussians()
    x = torch.cat([ring.sample(200, torch.Generator().manual_seed(0)), torch.full((3, 2), 50.0)])
    fig = viz.scatter_2d(x, ring, title="ring")
    (ax,) = fig.axes
    circles = [c for c in ax.collections if isinstance(c, PatchCollection)]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(circles) == 1 and len(circles[0].get_paths()) == 8
    radii = {round(float(np.ptp(p.vertices[:, 0])) / 2, 6) for p in circles[0].get_paths()}
    assert radii == {0.03}                                    # 3 * std
    sizes = sorted(len(c.get_offsets()) for c in points)
    assert sizes == [8, 203]                                  # mode means, samples
    np.testing.assert_allclose([*ax.get_xlim(), *ax.get_ylim()], viz.mixture_bounds(ring))
    assert any(t.get_text() == "3 of 203 points outside the view" for t in ax.texts)


def test_scatter_2d_without_mixture_autoscales():
    fig = viz.scatter_2d(torch.randn(50, 2))
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 1
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        viz.scatter_2d(torch.randn(5, 3))
    with pytest.raises(TypeError, match="means"):
        viz.scatter_2d(torch.randn(5, 2), mixture=object())


# --- curves ----------------------------------------------------------------------------------------------
def test_plot_history_panels_and_smoothing():
    fig = viz.plot_history(_history(), keys=["d_loss", ("d_real", "d_fake")], smooth=0.9)
    visible = [a for a in fig.axes if a.axison]
    assert len(visible) == 2
    assert len(visible[0].lines) == 2 and len(visible[1].lines) == 4  # raw (faint) + smoothed per key
    fig = viz.plot_history(_history(), smooth=0.0)
    assert [len(a.lines) for a in fig.axes] == [1, 1]
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), _history()["g_loss"])


def test_plot_history_ema_is_debiased():
    h = {"step": [1, 2], "loss": [1.0, 0.0]}
    fig = viz.plot_history(h, keys="loss", smooth=0.5)
    smoothed = fig.axes[0].lines[1].get_ydata()
    np.testing.assert_allclose(smoothed, [1.0, 1.0 / 3.0])     # (0.5*1)/0.5, (0.25*1)/0.75


def test_plot_history_accepts_a_trainer_and_checks_keys():
    trainer = types.SimpleNamespace(history=_history())
    assert len(viz.plot_history(trainer, keys=["g_loss"]).axes) == 1
    with pytest.raises(ValueError, match="no key.*'w_dist'.*available"):
        viz.plot_history(_history(), keys=["w_dist"])
    with pytest.raises(ValueError, match="smooth"):
        viz.plot_history(_history(), smooth=1.0)
    fig = viz.image_grid(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="one Axes per entry"):
        viz.plot_history(_history(), ax=fig.axes[0])


# --- animations ---------------------------------------------------------------------------------------------
def test_animation_html_has_one_frame_per_snapshot_and_no_cdn():
    ring = ring_of_gaussians()
    snaps = [(10 * i, ring.sample(64) * i / 4) for i in range(1, 5)]
    anim = viz.animate_snapshots(snaps, mixture=ring)
    html = viz.to_html(anim)
    assert viz.count_frames(html) == 4
    text = html.data
    assert "<script" in text and "font-awesome" not in text and 'class="fa ' not in text
    titles = []
    for i in range(4):
        anim._func(i)
        titles.append(anim._fig.axes[0].get_title())
    assert titles == ["step 10", "step 20", "step 30", "step 40"]


def test_animation_of_images_and_thinning():
    snaps = [(i, torch.rand(4, 1, 6, 6) * 2 - 1) for i in range(10)]
    anim = viz.animate_snapshots(snaps, max_frames=4)
    assert viz.count_frames(viz.to_html(anim)) == 4
    anim._func(3)
    assert anim._fig.axes[0].get_title() == "step 9"          # the last snapshot is kept


def test_animation_input_checks():
    with pytest.raises(ValueError, match="snapshot_every"):
        viz.animate_snapshots([])
    with pytest.raises(ValueError, match="same shape"):
        viz.animate_snapshots([(1, torch.zeros(4, 2)), (2, torch.zeros(5, 2))])
    with pytest.raises(ValueError, match="kind='images'"):
        viz.animate_snapshots([(1, torch.zeros(4, 2))], kind="images")
    with pytest.raises(TypeError, match="matplotlib animation"):
        viz.to_html("not an animation")


def test_to_html_warns_when_frames_are_dropped():
    snaps = [(i, torch.rand(16, 3, 8, 8)) for i in range(3)]
    with pytest.warns(UserWarning, match=r"kept [0-2] of 3 frames.*max_frames"):
        html = viz.to_html(viz.animate_snapshots(snaps), embed_limit_mb=0.015)
    assert viz.count_frames(html) < 3


def test_to_html_without_ipython(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    html = viz.to_html(viz.animate_snapshots([(1, torch.zeros(4, 2))]))
    assert isinstance(html, viz.StaticHTML) and viz.count_frames(html._repr_html_()) == 1


# --- live monitor ---------------------------------------------------------------------------------------
class FakeTrainer:
    def __init__(self, kind="2d", steps=None):
        self.history, self.step = {"step": [], "d_loss": [], "g_loss": []}, 0
        self.kind = kind
        self.sampled = []
        if steps is not None:
            self.config = types.SimpleNamespace(steps=steps)

    def train(self, n):
        for _ in range(n):
            self.step += 1
            self.history["step"].append(self.step)
            self.history["d_loss"].append(1.0 / self.step)
            self.history["g_loss"].append(0.5)

    def sample(self, n, ema=False):
        self.sampled.append(n)
        return torch.randn(n, 2) if self.kind == "2d" else torch.rand(n, 1, 8, 8) * 2 - 1


@pytest.mark.parametrize("kind", ["2d", "images"])
def test_live_monitor_without_ipywidgets_or_kernel_is_silent_then_static(monkeypatch, kind):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    trainer, monitor = FakeTrainer(kind), viz.LiveMonitor(every=0)
    for _ in range(3):
        trainer.train(10)
        monitor(trainer)
    assert not monitor.live and monitor.redraws == 0 and trainer.sampled == []  # no cost during training
    fig = monitor.finish()
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "samples, step 30"
    assert len(fig.axes[1].lines) == 2                        # raw + smoothed d_loss
    assert trainer.sampled[-1] == (512 if kind == "2d" else 64)


def test_live_monitor_redraws_in_place_with_throttle(monkeypatch):
    import IPython.display

    shown, updates = [], []

    class Handle:
        def update(self, obj):
            updates.append(obj)

    def display(obj, display_id=False):
        shown.append(obj)
        return Handle()

    monkeypatch.setattr(book, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    ring = ring_of_gaussians()
    trainer, monitor = FakeTrainer("2d", steps=40), viz.LiveMonitor(every=3600, mixture=ring)
    assert monitor.live
    trainer.train(10)
    monitor(trainer)                                          # first call draws
    trainer.train(10)
    monitor(trainer)                                          # within `every`: skipped
    assert (len(shown), len(updates), monitor.redraws) == (1, 0, 1)
    trainer.train(20)
    monitor(trainer)                                          # step 40 == config.steps: always drawn
    assert (len(shown), len(updates)) == (1, 1)
    assert shown[0].format == "png" and shown[0].data[:4] == b"\x89PNG"
    assert monitor.finish() is None and len(updates) == 2
    monkeypatch.setenv("GANLIB_STATIC", "1")                  # the book's build: static output
    assert not monitor.live and monitor.finish() is not None


def test_live_monitor_needs_a_trainer():
    with pytest.raises(ValueError, match="callbacks"):
        viz.LiveMonitor().finish()


# --- static mode ---------------------------------------------------------------------------------
def test_static_mode_follows_kernel_and_environment(monkeypatch):
    assert viz.static_mode()                                  # no kernel in pytest
    monkeypatch.setattr(book, "in_notebook", lambda: True)
    assert not viz.static_mode()
    monkeypatch.setenv("GANLIB_STATIC", "1")
    assert viz.static_mode()
    monkeypatch.setenv("GANLIB_STATIC", "0")
    assert not viz.static_mode()


def test_figures_are_not_left_open_in_pyplot():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    viz.image_grid(torch.zeros(4, 1, 4, 4))
    viz.scatter_2d(torch.zeros(4, 2), GaussianMixture(torch.zeros(1, 2), 1.0))
    viz.plot_history(_history())
    assert len(plt.get_fignums()) == before                   # shown once in notebooks, no leaks


def test_with_the_real_trainer():
    from ganlib.training.trainer import TrainConfig, Trainer
    from ganlib.models.mlp import MLPDiscriminator

    torch.manual_seed(0)
    ring = ring_of_gaussians()
    monitor = viz.LiveMonitor(every=0)
    cfg = TrainConfig(steps=12, batch_size=16, log_every=4, snapshot_every=4, n_fixed_samples=32, progress=False)
    trainer = Trainer(MLPGenerator(hidden=16, depth=1), MLPDiscriminator(hidden=16, depth=1), ring, cfg,
                      callbacks=[monitor])
    trainer.fit()
    assert monitor.trainer is trainer and monitor.redraws == 0   # no kernel: silent during fit
    fig = monitor.finish()
    assert fig.axes[0].get_title() == "samples, step 12"
    assert [len(c.get_offsets()) for c in fig.axes[0].collections if isinstance(c, PathCollection)] == [8, 512]
    assert viz.count_frames(viz.to_html(viz.animate_snapshots(trainer.snapshots, mixture=ring))) == 3
    assert len(viz.plot_history(trainer, keys=["d_loss", "g_loss", ("d_real", "d_fake")]).axes) == 3


# --- the chapters' names ------------------------------------------------------------------------------
BOOK = Path(__file__).resolve().parents[1] / "book"


def _viz_names_in_chapters() -> dict[str, set[str]]:
    """``{name: {chapter files}}`` for every ``viz.NAME`` in the notebooks' code cells."""
    names: dict[str, set[str]] = {}
    for path in sorted(BOOK.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                for name in re.findall(r"\bviz\.(\w+)", "".join(cell["source"])):
                    names.setdefault(name, set()).add(path.name)
    return names


def test_every_viz_name_a_chapter_uses_is_exported():
    names = _viz_names_in_chapters()
    assert {"image_grid", "scatter_2d", "animate_snapshots", "to_html"} <= set(names)   # the parse works
    missing = {n: sorted(files) for n, files in names.items() if n not in viz.__all__ or not hasattr(viz, n)}
    assert not missing, f"chapters use viz names that ganlib.viz does not export: {missing}"
