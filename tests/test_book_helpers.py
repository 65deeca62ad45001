"""ganlib.book: device choice, profiles, glue fallback, Colab command, timing, run info, caching."""

import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch

from ganlib import book

PRESETS = dict(smoke=dict(steps=2, lr=1e-3), book=dict(steps=2000, lr=1e-3), gpu=dict(steps=20000, lr=2e-4))


class _Recorder:
    """Stands in for IPython.display.display."""

    def __init__(self):
        self.calls = []

    def __call__(self, *objs, **kwargs):
        self.calls.append((objs, kwargs))


@pytest.fixture
def fake_notebook(monkeypatch):
    """Pretend to run inside IPython, recording what is displayed."""
    import IPython.display

    recorder = _Recorder()
    monkeypatch.setattr(book, "_ipython_shell", lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setattr(IPython.display, "display", recorder)
    return recorder


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.delenv("GANLIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(book, "_mps_available", lambda: False)


# --- device -------------------------------------------------------------------------------------
def test_device_falls_back_to_cpu_and_prints_hardware(no_accelerator, capsys):
    dev = book.device()
    assert dev == torch.device("cpu")
    out = capsys.readouterr().out
    assert out.startswith("Running on CPU:") and torch.__version__ in out


def test_device_sets_cpu_threads_only_on_the_cpu(no_accelerator, monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        book.device("cpu", verbose=False)  # the default: one thread
        assert torch.get_num_threads() == 1
        book.device("cpu", verbose=False, cpu_threads=2)
        assert torch.get_num_threads() == 2
        book.device("cpu", verbose=False, cpu_threads=None)  # left as it is
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        book.device("cuda", verbose=False)  # a GPU run keeps the host's threads
        assert torch.get_num_threads() == 2
        for bad in (0, -1, 1.5, "1", True):
            with pytest.raises(ValueError, match="cpu_threads must be a positive integer"):
                book.device("cpu", verbose=False, cpu_threads=bad)
    finally:
        torch.set_num_threads(before)


def test_cpu_budget_reads_ganlib_cpus(monkeypatch):
    monkeypatch.setenv("GANLIB_CPUS", "3")
    assert book.cpu_budget() == 3
    monkeypatch.delenv("GANLIB_CPUS")
    assert book.cpu_budget() == book.usable_cpus() >= 1
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("GANLIB_CPUS", bad)
        with pytest.raises(ValueError, match="GANLIB_CPUS must be a positive integer"):
            book.cpu_budget()


def test_device_all_threads_takes_the_cpu_budget(no_accelerator, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("GANLIB_CPUS", "2")
        book.device("cpu", verbose=False, cpu_threads="all")
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="'all' or None"):
            book.device("cpu", verbose=False, cpu_threads="every")
    finally:
        torch.set_num_threads(before)


def _seeded_draw(seed):
    """A run that seeds itself: its result depends on the seed only."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    return os.getpid(), torch.get_num_threads(), net, net(torch.randn(4, 3)).detach()


@pytest.mark.skipif(sys.platform != "linux", reason="map_processes forks only on Linux")
def test_map_processes_matches_the_serial_run_in_other_processes():
    seeds = [5, 1, 4, 2, 3]
    spread = book.map_processes(_seeded_draw, seeds, workers=2)
    serial = [_seeded_draw(s) for s in seeds]
    pids = {pid for pid, *_ in spread}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # forked workers did the work
    assert {threads for _, threads, *_ in spread} == {1}  # one torch thread per worker
    for (_, _, net_a, y_a), (_, _, net_b, y_b) in zip(spread, serial, strict=True):  # in order
        torch.testing.assert_close(net_a.weight, net_b.weight, rtol=0, atol=0)
        torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)


def test_process_count_is_one_per_item_up_to_the_budget_and_one_off_the_cpu(monkeypatch):
    monkeypatch.setenv("GANLIB_CPUS", "3")
    on_linux = sys.platform == "linux"
    assert book.process_count(10) == (3 if on_linux else 1)
    assert book.process_count(2) == (2 if on_linux else 1)
    assert book.process_count(10, workers=4) == (4 if on_linux else 1)
    assert book.process_count(1) == book.process_count(0) == 1
    assert book.process_count(10, device="cuda") == 1
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        book.process_count(10, workers=0)


def test_map_processes_runs_serially_where_it_should(monkeypatch):
    here = os.getpid()
    assert {r[0] for r in book.map_processes(_seeded_draw, [1, 2], workers=1)} == {here}
    assert {r[0] for r in book.map_processes(_seeded_draw, [1, 2], device="cuda", workers=2)} == {here}
    assert {r[0] for r in book.map_processes(_seeded_draw, [7], workers=2)} == {here}  # one item
    monkeypatch.setenv("GANLIB_CPUS", "1")  # what run_chapters gives a chapter beside others
    assert {r[0] for r in book.map_processes(_seeded_draw, [1, 2])} == {here}
    assert book.map_processes(_seeded_draw, []) == []
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            book.map_processes(_seeded_draw, [1, 2], workers=bad)


def _fails_on_three(x):
    if x == 3:
        raise ValueError("item three is bad")
    return x


@pytest.mark.skipif(sys.platform != "linux", reason="map_processes forks only on Linux")
def test_map_processes_raises_a_workers_error_and_can_run_again():
    with pytest.raises(ValueError, match="item three is bad"):
        book.map_processes(_fails_on_three, [1, 2, 3, 4], workers=2)
    assert book.map_processes(_fails_on_three, [1, 2], workers=2) == [1, 2]


def test_device_prefers_cuda_when_present(monkeypatch):
    monkeypatch.delenv("GANLIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert book.device(verbose=False) == torch.device("cuda")


def test_device_without_request_matches_this_machine(monkeypatch):
    monkeypatch.delenv("GANLIB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if book._mps_available() else "cpu"
    assert book.device(verbose=False).type == expected


def test_device_refuses_unavailable_cuda_with_advice(no_accelerator):
    with pytest.raises(RuntimeError, match="CUDA is not available.*device\\('cpu'\\)"):
        book.device("cuda")
    with pytest.raises(RuntimeError, match="MPS is not available"):
        book.device("mps")


def test_device_rejects_unknown_names(no_accelerator):
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        book.device("gpu0")


def test_device_environment_override(no_accelerator, monkeypatch):
    monkeypatch.setenv("GANLIB_DEVICE", "cpu")
    assert book.device(verbose=False) == torch.device("cpu")
    monkeypatch.setenv("GANLIB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        book.device(verbose=False)


def test_hardware_summary_names_cpu_cores_and_torch(no_accelerator):
    text = book.hardware_summary("cpu")
    assert text.startswith("CPU: ") and "logical CPUs" in text and text.endswith(f"torch {torch.__version__}")
    assert f"{torch.backends.cpu.get_cpu_capability()} kernels)" in text  # the rounding depends on them
    assert "torch" not in book.hardware_summary("cpu", torch_version=False)


# --- profiles -----------------------------------------------------------------------------------
def test_select_profile_returns_the_chosen_preset(capsys):
    P = book.select_profile("book", **PRESETS)
    assert (P.name, P.steps, P.lr) == ("book", 2000, 1e-3)
    assert vars(P) == {**PRESETS["book"], "name": "book", "dry": False}
    assert capsys.readouterr().out == ""  # no banner outside smoke


def test_select_profile_unknown_lists_the_profiles():
    with pytest.raises(ValueError, match="'smoke', 'book', 'gpu', 'gpu-dry'"):
        book.select_profile("full", **PRESETS)


def test_select_profile_names_missing_keys():
    presets = dict(smoke=dict(steps=2, lr=1.0, extra=1), book=dict(steps=3, lr=1.0), gpu=dict(steps=4))
    with pytest.raises(ValueError, match=r"book lacks \['extra'\]; gpu lacks \['extra', 'lr'\]"):
        book.select_profile("book", **presets)


@pytest.mark.parametrize("key", ["name", "dry"])
def test_select_profile_reserves_name_and_dry(key):
    presets = {k: {**v, key: "x"} for k, v in PRESETS.items()}
    with pytest.raises(ValueError, match=f"reserved key '{key}'"):
        book.select_profile("book", **presets)


def test_gpu_dry_is_gpu_with_only_the_counts_shrunk(capsys):
    presets = dict(
        smoke=dict(steps=20, n_seeds=2, eval_every=10, sizes=[5, 10], digits_budget_s=3.0, hidden=8, lr=1e-2,
                   batch=16, dataset="digits", n_players=2, unroll_ks=[1], grid_steps=50),
        book=dict(steps=400, n_seeds=3, eval_every=100, sizes=[5, 10, 50], digits_budget_s=20.0, hidden=32, lr=1e-3,
                  batch=32, dataset="digits", n_players=4, unroll_ks=[1, 3], grid_steps=0),
        gpu=dict(steps=20000, n_seeds=10, eval_every=1000, sizes=[25, 397], digits_budget_s=300.0, hidden=128,
                 lr=2e-4, batch=64, dataset="mnist", n_players=4, unroll_ks=[1, 5, 10], grid_steps=30),
    )
    P = book.select_profile("gpu-dry", **presets)
    assert vars(P) == dict(steps=20, n_seeds=2, eval_every=10, sizes=[5, 10], digits_budget_s=3.0,
                           grid_steps=30,                     # smoke's 50 is more than gpu's 30: gpu's kept
                           hidden=128, lr=2e-4, batch=64, dataset="mnist", n_players=4, unroll_ks=[1, 5, 10],
                           name="gpu-dry", dry=True)
    assert book.DRY_BANNER in capsys.readouterr().out
    assert book.select_profile("gpu", **presets).dry is False


@pytest.mark.parametrize("key", ["temperature", "lr_steps"])
def test_gpu_dry_refuses_a_key_it_cannot_classify(key):
    presets = {k: dict(steps=2, **{key: 1}) for k in ("smoke", "book", "gpu")}
    with pytest.raises(ValueError, match=f"preset key '{key}' is (neither|both).*COUNT_KEY or KEPT_KEY"):
        book.select_profile("gpu-dry", **presets)
    assert book.select_profile("gpu", **presets).name == "gpu"   # the other profiles do not classify keys


def test_smoke_banner_is_printed_without_ipython(capsys):
    P = book.select_profile("smoke", **PRESETS)
    assert P.steps == 2
    assert book.SMOKE_BANNER in capsys.readouterr().out


def test_smoke_banner_is_html_in_a_notebook(fake_notebook):
    book.select_profile("smoke", **PRESETS)
    (bundle,), kwargs = fake_notebook.calls[0]
    assert kwargs == {"raw": True}
    assert book.SMOKE_BANNER in bundle["text/plain"] and book.SMOKE_BANNER in bundle["text/html"]


# --- glue ---------------------------------------------------------------------------------------
def test_glue_without_myst_nb_does_nothing_unless_asked(fake_notebook, monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb -> ImportError, as on Colab
    value = torch.tensor(0.25)
    assert book.glue("x", value) is None
    assert fake_notebook.calls == []
    assert book.glue("x", value, display=True) is None
    assert fake_notebook.calls == [((value,), {})]


def test_glue_outside_a_notebook_prints_only_on_display(capsys):
    assert book.glue("n", 3) is None  # a cell ending in glue(...) shows no stray value
    assert capsys.readouterr().out == ""
    book.glue("n", 3, display=True)
    assert capsys.readouterr().out == "3\n"


def test_glue_uses_myst_nb_with_plain_numbers(fake_notebook, monkeypatch):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    assert book.glue("a", np.float64(0.5)) is None
    book.glue("b", torch.tensor([2.0]), display=True)
    book.glue("c", "text")
    assert calls == [("a", 0.5, False), ("b", 2.0, True), ("c", "text", False)]
    assert type(calls[0][1]) is float  # myst-nb cannot format "np.float64(0.5)"


def test_glue_rejects_empty_name():
    with pytest.raises(ValueError, match="non-empty string"):
        book.glue("", 1)


# --- Colab --------------------------------------------------------------------------------------


def test_in_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not book.in_colab()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert book.in_colab()


def test_imports_without_myst_nb_ipywidgets_ipython_or_display():
    code = ("import sys\n"
            "for m in ('myst_nb', 'ipywidgets', 'IPython'): sys.modules[m] = None\n"
            "import ganlib.book, ganlib.viz\n"
            "ganlib.book.glue('x', 1, display=True)\n"
            "print(ganlib.viz.static_mode())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True"]


# --- timing and run info ----------------------------------------------------------------------------
def test_timer_measures_and_reports(capsys):
    with book.Timer("nap") as t:
        time.sleep(0.05)
    assert 0.05 <= t.seconds < 5
    assert capsys.readouterr().out == f"nap: {t}\n"
    assert str(t).endswith(" s")
    frozen = t.seconds
    time.sleep(0.01)
    assert t.seconds == frozen  # stopped at the end of the block


def test_timer_before_start_raises():
    with pytest.raises(RuntimeError, match="with Timer"):
        book.Timer().seconds


def test_run_info_fields_and_markdown(no_accelerator):
    P = book.select_profile("gpu", **PRESETS)
    info = book.run_info([0, 1, 2], P)
    assert info["profile"] == "gpu" and info["seed"] == [0, 1, 2]
    assert info["torch"] == torch.__version__ and info["hardware"].startswith("CPU: ")
    assert len(info["date"]) == 10 and info["date"][4] == "-"
    line = info._repr_markdown_()
    assert "profile `gpu`" in line and "seed 0, 1, 2" in line and str(info) == line
    with pytest.raises(ValueError, match="unknown profile"):
        book.run_info(0, "fast")


# --- cached_run -------------------------------------------------------------------------------------
def test_cached_run_computes_once_then_loads(tmp_path, capsys):
    calls = []

    def compute():
        calls.append(1)
        return {"losses": torch.arange(4.0), "modes": 7, "name": "ring"}

    path = tmp_path / "sub" / "ch06_book_seed0.pt"
    first = book.cached_run(path, compute)
    assert path.exists() and calls == [1]
    second = book.cached_run(path, compute)
    assert calls == [1]
    assert "Loaded cached results" in capsys.readouterr().out
    torch.testing.assert_close(second["losses"], first["losses"])
    assert (second["modes"], second["name"]) == (7, "ring")
    book.cached_run(path, compute, refresh=True)
    assert calls == [1, 1]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary files left


def test_cached_run_refuses_unsafe_results_before_writing(tmp_path):
    path = tmp_path / "r.pt"
    with pytest.raises(TypeError, match="torch.as_tensor"):
        book.cached_run(path, lambda: {"a": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_cached_run_corrupt_file_says_what_to_do(tmp_path):
    path = tmp_path / "r.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(RuntimeError, match="refresh=True"):
        book.cached_run(path, lambda: 1)
    assert book.cached_run(path, lambda: 5, refresh=True, verbose=False) == 5
    assert book.cached_run(path, lambda: 6, verbose=False) == 5


def _chapter_presets():
    """(chapter, smoke, book, gpu) of every chapter's select_profile call, evaluated with SEED = 0
    and the top-level literal assignments of its cell (e.g. a dict of settings shared by presets)."""
    import ast
    import json
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "book").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for source in ("".join(c["source"]) for c in cells if c["cell_type"] == "code"):
            tree, names = ast.parse(source), {"SEED": 0}
            for stmt in tree.body:  # NAME = <literal>: the values a preset may build on
                if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                        and isinstance(stmt.targets[0], ast.Name)):
                    try:
                        names[stmt.targets[0].id] = eval(compile(ast.Expression(stmt.value), path.name, "eval"),
                                                         dict(names))
                    except Exception:  # computed at run time (a call, an import): not a preset input
                        pass
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "select_profile":
                    kw = {k.arg: eval(compile(ast.Expression(k.value), path.name, "eval"), dict(names))
                          for k in node.keywords}
                    yield path.stem, kw["smoke"], kw["book"], kw["gpu"]


def test_every_chapter_has_a_gpu_dry_profile_with_only_counts_shrunk():
    chapters = list(_chapter_presets())
    assert len(chapters) == 12
    for name, smoke, book_, gpu in chapters:
        dry = book.dry_preset(gpu, smoke)            # raises on a key it cannot classify
        changed = {k for k in gpu if dry[k] != gpu[k]}
        assert all(book.COUNT_KEY.fullmatch(k) for k in changed), name
        assert all(dry[k] == gpu[k] for k in gpu if book.KEPT_KEY.fullmatch(k)), name
