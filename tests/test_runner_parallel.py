"""scripts/run_chapters.py --jobs: chapters run at the same time, each in its own kernel, and a
failing chapter still fails the run. Starts real kernels on tiny notebooks (a few seconds)."""
from __future__ import annotations

import json
import os

import nbformat
import pytest

from test_book_tooling import _load, _notebook

CHAPTER = """import json, time
start = time.time()
time.sleep(1.5)
json.dump([start, time.time()], open(NAME + ".json", "w"))
"""


def _chapter(path, name, fail=False):
    return _notebook(path / f"{name}.ipynb", [
        nbformat.v4.new_code_cell('PROFILE = "book"\nSEED = 0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f"NAME = {name!r}\n" + CHAPTER
                                  + ("raise ValueError('broken chapter')" if fail else "")),
    ])


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    run_chapters = _load("run_chapters")
    (tmp_path / "intro.md").write_text("# intro\n")
    for name in ("a", "b"):
        _chapter(tmp_path, name)
    _chapter(tmp_path, "c", fail=True)
    monkeypatch.setattr(run_chapters, "REPO", tmp_path)
    return run_chapters, tmp_path


def _toc(root, names):
    root.joinpath("_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n" + "".join(f"- file: {n}\n" for n in names))


def test_two_jobs_overlap_and_are_recorded(tiny_book):
    run_chapters, root = tiny_book
    _toc(root, ["a", "b"])
    build = root / "_build"
    assert run_chapters.main(["--jobs", "2", "--build-dir", str(build), "--profile", "smoke"]) == 0
    spans = {n: json.loads((build / "executed" / f"{n}.json").read_text()) for n in ("a", "b")}
    # both chapters were running at the same moment: each started before the other ended
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1]
    timings = json.loads((build / "executed" / "timings.json").read_text())["chapters"]
    assert {timings[n]["status"] for n in ("a", "b")} == {"ok"}
    assert {timings[n]["parallel_jobs"] for n in ("a", "b")} == {2}
    stamped = nbformat.read(str(build / "executed" / "a.ipynb"), as_version=4)
    assert stamped.metadata["ganbook"]["status"] == "ok"


def test_a_failing_chapter_fails_a_parallel_run(tiny_book, capsys):
    run_chapters, root = tiny_book
    _toc(root, ["a", "c"])
    build = root / "_build"
    assert run_chapters.main(["--jobs", "2", "--build-dir", str(build), "--profile", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "c: cell" in err and "broken chapter" in err
    timings = json.loads((build / "executed" / "timings.json").read_text())["chapters"]
    assert timings["c"]["status"] == "failed" and timings["a"]["status"] == "ok"


def test_kernels_keep_freed_memory(tiny_book, monkeypatch):
    """The kernels start with glibc told to keep freed memory (see KEEP_FREED_MEMORY); a value the
    caller set already wins."""
    run_chapters, root = tiny_book
    for var in run_chapters.KEEP_FREED_MEMORY:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    _notebook(root / "env.ipynb", [
        nbformat.v4.new_code_cell('PROFILE = "book"\nSEED = 0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import json, os\njson.dump({k: os.environ.get(k) for k in "
                                  f"{sorted(run_chapters.KEEP_FREED_MEMORY)!r}}}, open('env.json', 'w'))")])
    _toc(root, ["env"])
    build = root / "_build"
    assert run_chapters.main(["--build-dir", str(build), "--profile", "smoke"]) == 0
    seen = json.loads((build / "executed" / "env.json").read_text())
    assert seen == {**run_chapters.KEEP_FREED_MEMORY, "MALLOC_TRIM_THRESHOLD_": "12345"}


def test_a_chapter_that_uses_every_core_runs_alone_after_the_others(tiny_book, monkeypatch):
    """With --jobs, chapters share the cores (GANLIB_CPUS=1 each); one whose notebook metadata says
    ``"ganlib": {"cores": "all"}`` runs after them, alone, with GANLIB_CPUS unset (every core)."""
    run_chapters, root = tiny_book
    monkeypatch.delenv("GANLIB_CPUS", raising=False)
    record = ("import json, os, time\nstart = time.time()\ntime.sleep(1.0)\n"
              "json.dump([start, time.time(), os.environ.get('GANLIB_CPUS')], open(NAME + '.json', 'w'))")
    for name in ("a", "b", "x"):
        _notebook(root / f"{name}.ipynb", [
            nbformat.v4.new_code_cell('PROFILE = "book"\nSEED = 0', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(f"NAME = {name!r}\n" + record)])
    nb = nbformat.read(str(root / "x.ipynb"), as_version=4)
    nb.metadata["ganlib"] = {"cores": "all"}
    nbformat.write(nb, str(root / "x.ipynb"))
    _toc(root, ["x", "a", "b"])
    build = root / "_build"
    assert run_chapters.main(["--jobs", "2", "--build-dir", str(build), "--profile", "smoke"]) == 0
    seen = {n: json.loads((build / "executed" / f"{n}.json").read_text()) for n in ("a", "b", "x")}
    assert seen["a"][2] == seen["b"][2] == "1" and seen["x"][2] is None
    assert seen["x"][0] >= max(seen["a"][1], seen["b"][1])  # x started after both had ended
    timings = json.loads((build / "executed" / "timings.json").read_text())["chapters"]
    assert timings["x"]["parallel_jobs"] == 1 and timings["a"]["parallel_jobs"] == 2
    assert timings["x"]["cores"] == len(os.sched_getaffinity(0)) and timings["a"]["cores"] == 1


def test_a_bad_ganlib_cpus_stops_the_runner_before_any_chapter(tiny_book, monkeypatch, capsys):
    """The runner reads GANLIB_CPUS with ganlib.book's own rule (ganlib/_cpus.py): a value that
    cpu_budget() would refuse inside every chapter stops the run at once, with the same message."""
    run_chapters, root = tiny_book
    _toc(root, ["a"])
    build = root / "_build"
    monkeypatch.setenv("GANLIB_CPUS", "two")
    assert run_chapters.main(["--build-dir", str(build), "--profile", "smoke"]) != 0
    assert "GANLIB_CPUS must be a positive integer, got 'two'" in capsys.readouterr().err
    assert not (build / "executed" / "a.ipynb").exists()
    monkeypatch.setenv("GANLIB_CPUS", "3")   # a good value is what a chapter alone may use
    assert run_chapters._ganlib_cpus().cpu_budget() == 3


def test_shared_chapters_start_longest_first(tiny_book):
    """LPT order for the chapters that share the cores: the build's last time for this profile
    first, else the notebook's ``book_seconds`` hint (book profile only); chapters with neither keep
    their toc order, last."""
    run_chapters, root = tiny_book
    entry = lambda name: run_chapters.TocEntry(name, root / f"{name}.ipynb", None)
    todo = [(i, entry(n), None) for i, n in enumerate(["a", "b", "c", "d", "e"], 1)]
    marks = {"a": {"book_seconds": 10}, "b": {"book_seconds": 300}, "c": {}, "d": {"book_seconds": 40},
             "e": {}}
    timings = {"chapters": {
        "d": {"profile": "book", "status": "ok", "wall_time_s": 500.0},   # measured: beats its hint
        "a": {"profile": "book", "status": "failed", "wall_time_s": 900.0},  # a failed run: not a time
        "e": {"profile": "smoke", "status": "ok", "wall_time_s": 20.0}}}   # another profile's time
    order = lambda profile: [t[1].name for t in run_chapters.longest_first(todo, marks, timings, profile)]
    assert order("book") == ["d", "b", "a", "c", "e"]
    assert order("smoke") == ["e", "a", "b", "c", "d"]  # only e has a smoke time; the rest keep toc order
    assert run_chapters.chapter_marks(entry("a")) == {}
