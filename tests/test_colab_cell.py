"""The chapters' Colab install cell (ganlib.book.colab_install_cell), executed here with a fake
google.colab module: its failure path runs the real pip against a URL that does not exist."""
import importlib.util
import json
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from ganlib import book

REPO = Path(__file__).resolve().parents[1]


def _colab_cell_script():
    spec = importlib.util.spec_from_file_location("colab_cell", REPO / "scripts" / "colab_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_colab(monkeypatch):
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)


def test_every_chapter_starts_with_the_generated_cell():
    assert _colab_cell_script().stale(REPO) == []
    assert "ganlib[inception] @ git+https://github.com/ganbook/gan-training-book@main" in book.colab_install_cell(
        book.COLAB_EXTRAS["02_measuring_gans"])


def test_a_failing_install_shows_pips_own_message(fake_colab, monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_NO_INDEX", "1")            # never reach for the network, whatever the URL
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    missing = tmp_path / "nonexistent-ganlib"
    namespace = {}
    with pytest.raises(RuntimeError) as info:
        exec(book.colab_install_cell(url=f"file://{missing}"), namespace)
    message = str(info.value)
    assert message.startswith(f"pip could not install ganlib @ file://{missing} (exit 1):")
    assert "nonexistent-ganlib" in message.split("\n", 1)[1]   # pip's own words follow, naming the path
    assert "ERROR" in message
    assert f"torch=={metadata.version('torch')}" in namespace["keep"]   # Colab's torch would have been pinned
    assert f"ipywidgets=={metadata.version('ipywidgets')}" in namespace["keep"]


def test_a_successful_install_says_in_one_line_what_it_installed(fake_colab, monkeypatch, capsys):
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        report = cmd[cmd.index("--report") + 1]
        Path(report).write_text(json.dumps({"install": [{"metadata": {"name": "ganlib", "version": "0.3.0"}},
                                                        {"metadata": {"name": "torchmetrics", "version": "1.6.0"}}]}))
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    exec(book.colab_install_cell(("inception",)), {})
    (cmd,) = calls
    assert cmd[-1] == "ganlib[inception] @ git+https://github.com/ganbook/gan-training-book@main"
    constraints = Path(cmd[cmd.index("--constraint") + 1]).read_text().splitlines()
    assert f"torch=={metadata.version('torch')}" in constraints
    out = capsys.readouterr().out.splitlines()
    assert out == [f"installed ganlib 0.3.0, torchmetrics 1.6.0; kept {', '.join(constraints)}"]


def test_outside_colab_the_cell_does_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run outside Colab"))
    exec(book.colab_install_cell(), {})


def test_colab_install_cell_refuses_bad_names():
    with pytest.raises(ValueError, match="owner/name"):
        book.colab_install_cell(repo="not a repo")
    with pytest.raises(ValueError, match="git ref"):
        book.colab_install_cell(branch='main" && rm -rf /')
    with pytest.raises(ValueError, match="optional dependencies"):
        book.colab_install_cell(extras=("inception]; rm",))
    with pytest.raises(ValueError, match="quotes"):
        book.colab_install_cell(url='x" + y')
