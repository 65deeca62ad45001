#!/usr/bin/env python
"""Render the book to HTML from the executed chapters (Jupyter Book 1).

Stages ``BUILD/site/`` with the book's config, the markdown pages and, for
every notebook of ``_toc.yml``, the executed copy from ``BUILD/executed/``
(written by scripts/run_chapters.py) in place of the output-free source; then
runs ``jupyter-book build BUILD/site -W --keep-going`` (warnings are errors)
and checks that ``index.html`` and a page for every toc entry exist.

Refuses to render a chapter whose executed copy is missing, failed, or stale
(its source changed after it ran), and refuses a mix of profiles.  Pages built
from the ``smoke`` profile get a visible warning: smoke outputs only prove the
code runs, they are not results.

Solutions stay in the instructor's notebook (the single source) but are
collapsed in the staged copy (:func:`collapse_solutions`): exercise code cells
(tagged ``exercise`` or holding ``### BEGIN SOLUTION``) get the ``hide-input``
tag, ``{solution}`` directives get ``:class: dropdown`` and markdown cells
tagged ``solution`` are wrapped in a closed "Solution" dropdown.

    python scripts/build_html.py                 # _build/site/_build/html
    python scripts/build_html.py --build-dir _build/test
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_student_version import BEGIN, FENCE_OPEN  # noqa: E402
from run_chapters import REPO, ToolingError, chapter_marks, executed_path, read_toc, sha256  # noqa: E402

TOP_LEVEL = ["_config.yml", "_toc.yml", "references.bib", "_widgets_js", "_ext"]
SKIP_IN_BOOK = {"__pycache__", ".ipynb_checkpoints", "checkpoints"}
SMOKE_WARNING = (
    ":::{warning}\n"
    "This page was rendered from a **smoke** run (`PROFILE = \"smoke\"`): tiny sizes "
    "that only prove the code runs end to end. Its numbers and figures are **not results**; "
    "the published book is rendered from the `book` profile.\n"
    ":::"
)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*SKIP_IN_BOOK))
    else:
        shutil.copy2(src, dst)


def _executed_copy(build_dir: Path, entry, allow_stale: bool):
    import nbformat

    path = executed_path(build_dir, entry)
    run = f"python scripts/run_chapters.py --only {Path(entry.name).name}"
    if not path.is_file():
        raise ToolingError(f"{entry.name}: no executed copy at {path}; run `{run}` first")
    nb = nbformat.read(str(path), as_version=4)
    stamp = nb.metadata.get("ganbook", {})
    if stamp.get("status") != "ok":
        raise ToolingError(f"{entry.name}: {path} is not a successful run (it failed or was "
                           f"not made by run_chapters.py); run `{run}`")
    if stamp.get("source_sha256") != sha256(entry.path) and not allow_stale:
        raise ToolingError(f"{entry.name}: the source changed after it was executed; run `{run}` "
                           f"(or pass --allow-stale)")
    return nb, stamp


HIDING_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
OPTION_LINE = re.compile(r"^\s*:[\w-]+:")


def _dropdown_solution_directives(source: str) -> tuple[str, int]:
    """Give every ``{solution}`` / ``{solution-start}`` directive ``:class: dropdown``."""
    lines, out, n, i = source.splitlines(keepends=True), [], 0, 0
    while i < len(lines):
        out.append(lines[i])
        m = FENCE_OPEN.match(lines[i])
        i += 1
        if not (m and m["name"] in ("solution", "solution-start")):
            continue
        n += 1
        options = []
        while i < len(lines) and OPTION_LINE.match(lines[i]):
            options.append(lines[i])
            i += 1
        for k, opt in enumerate(options):
            if re.match(r"^\s*:class:", opt):
                if "dropdown" not in opt.split():
                    options[k] = opt.rstrip("\n") + " dropdown\n"
                break
        else:
            options.append(f"{m['indent']}:class: dropdown\n")
        out += options
    return "".join(out), n


def collapse_solutions(nb) -> dict:
    """Collapse the solutions of a staged notebook (in place); returns what was done.

    The public book keeps the solutions for self-study, behind a toggle, so the
    instructor's notebook stays the only source (``make student`` removes them instead).
    """
    stats = {"hidden_code": 0, "dropdown_directives": 0, "wrapped_cells": 0}
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code":
            is_solution = ({"exercise", "solution"} & set(tags)
                           or any(BEGIN.match(line) for line in cell.source.splitlines()))
            if is_solution and not HIDING_TAGS & set(tags):
                cell.setdefault("metadata", {})["tags"] = tags + ["hide-input"]
                stats["hidden_code"] += 1
        elif cell.cell_type == "markdown":
            if "solution" in tags:
                runs = [len(r) for r in re.findall(r"^\s*(`{3,})", cell.source, re.M)]
                fence = "`" * max([4] + [r + 1 for r in runs])
                cell.source = (f"{fence}{{admonition}} Solution\n:class: dropdown solution\n\n"
                               f"{cell.source.rstrip()}\n{fence}\n")
                stats["wrapped_cells"] += 1
            else:
                cell.source, k = _dropdown_solution_directives(cell.source)
                stats["dropdown_directives"] += k
    return stats


BOOK_TARGET_MIN = 5  # the book profile's run-time target per chapter on a 2-core CPU (course page)


def timings_markdown(build_dir: Path, entries) -> str:
    """A table of the measured chapter run times, included by book/course.md; for the ``book``
    profile, each against its target (``BOOK_TARGET_MIN``, or the notebook's
    ``"ganlib": {"book_target_min": ...}``), so an over-target chapter shows as such."""
    try:
        data = json.loads((build_dir / "executed" / "timings.json").read_text())
    except (OSError, ValueError):
        data = {"chapters": {}}
    rows, hardware = [], None
    for e in entries:
        rec = data.get("chapters", {}).get(e.name)
        if not e.is_notebook or not rec or rec.get("status") != "ok":
            continue
        hardware = rec.get("hardware") or hardware
        gpu = (rec.get("hardware") or {}).get("gpu") or "none (CPU only)"
        target = "—"
        if rec["profile"] == "book":
            minutes = chapter_marks(e).get("book_target_min", BOOK_TARGET_MIN)
            target = f"{minutes} min: " + ("within" if rec["wall_time_s"] <= 60 * minutes else "**over**")
        rows.append(f"| {Path(e.name).name} | `{rec['profile']}` | {rec['wall_time_s']:.0f} s | {target} | "
                    f"{rec.get('cores', 1)} | {gpu} |")
    if not rows:
        return "*(No measured run times: this build has no timings.json.)*\n"
    hw = hardware or {}
    head = (f"Measured by `scripts/run_chapters.py` for this build on {hw.get('cpus', '?')} CPU core(s)"
            f"{' (' + hw['cpu'] + ')' if hw.get('cpu') else ''}, Python {hw.get('python', '?')}, "
            f"torch {hw.get('torch', '?')}. *Cores*: how many the chapter had to itself (one when it ran "
            f"beside another chapter; a chapter that spreads its independent runs over processes, "
            f"`book.map_processes`, ran alone on all of them):\n\n")
    return (head + "| chapter | profile | wall time | target | cores | GPU |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def stage(build_dir: Path, allow_stale: bool = False) -> tuple[Path, str]:
    """Fill ``build_dir/site``; returns (site, profile of the executed chapters)."""
    import nbformat

    entries = read_toc(REPO)
    missing = [e.name for e in entries if e.path is None]
    if missing:
        raise ToolingError("listed in _toc.yml but missing: " + ", ".join(missing))
    site = build_dir / "site"
    if site.exists():
        shutil.rmtree(site)  # a clean build: -W must see every page's warnings
    site.mkdir(parents=True)
    for name in TOP_LEVEL:
        if not (REPO / name).exists():
            raise ToolingError(f"{REPO / name} is missing")
        _copy(REPO / name, site / name)
    for e in entries:  # md pages: the toc's, plus whatever they include from book/
        if not e.is_notebook:
            _copy(e.path, site / e.path.relative_to(REPO))
    if (REPO / "book").is_dir():
        for f in (REPO / "book").rglob("*"):
            rel = f.relative_to(REPO)
            if f.is_file() and f.suffix not in (".ipynb", ".md") and not SKIP_IN_BOOK & set(rel.parts):
                _copy(f, site / rel)  # figures and data files next to the pages
    profiles = {}
    for e in entries:
        if not e.is_notebook:
            continue
        nb, stamp = _executed_copy(build_dir, e, allow_stale)
        profiles[e.name] = stamp["profile"]
        collapse_solutions(nb)
        if stamp["profile"] == "smoke":
            nb.cells.insert(1, nbformat.v4.new_markdown_cell(SMOKE_WARNING))
        out = site / (e.name + ".ipynb")
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))
    if len(set(profiles.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in profiles.items())
        raise ToolingError(f"the executed chapters mix profiles ({detail}); rerun them with one profile")
    (site / "book").mkdir(exist_ok=True)
    (site / "book" / "_timings.md").write_text(timings_markdown(build_dir, entries))
    return site, next(iter(profiles.values()), "none")


def jupyter_book() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if not found:
        raise ToolingError("jupyter-book is not installed here: run `make venv`")
    return [found]


def check_pages(site: Path) -> list[Path]:
    html = site / "_build" / "html"
    pages = [html / "index.html"] + [html / e.html for e in read_toc(REPO)]
    missing = [str(p.relative_to(html)) for p in pages if not p.is_file()]
    if missing:
        raise ToolingError(f"the build did not produce: {', '.join(missing)} (in {html})")
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=REPO / "_build",
                    help="holds executed/ (input) and site/ (output); default _build")
    ap.add_argument("--allow-stale", action="store_true",
                    help="render executed copies even if their source changed since")
    args = ap.parse_args(argv)
    build_dir = args.build_dir.resolve()
    try:
        t0 = time.perf_counter()
        site, profile = stage(build_dir, args.allow_stale)
        print(f"staged {site} (profile {profile!r}) in {time.perf_counter() - t0:.1f} s", flush=True)
        t1 = time.perf_counter()
        cmd = jupyter_book() + ["build", str(site), "-W", "--keep-going"]
        print("+ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=str(REPO))
        print(f"jupyter-book build: rc={rc} in {time.perf_counter() - t1:.1f} s")
        if rc != 0:
            raise ToolingError("jupyter-book build failed (warnings are errors); see its output above")
        pages = check_pages(site)
    except ToolingError as err:
        print(f"build_html: error: {err}", file=sys.stderr)
        return 1
    print(f"{len(pages) - 1} pages built from the {profile!r} profile. The HTML is in\n"
          f"  {pages[0].parent}\nopen {pages[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
