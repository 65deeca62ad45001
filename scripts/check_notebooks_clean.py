#!/usr/bin/env python
"""Check that the chapter sources are committed clean and match ``_toc.yml``.

Fails on, for every ``book/**/*.ipynb``: outputs, execution counts,
``metadata.widgets``, papermill/execution metadata (an executed copy committed
as a source), a kernelspec other than ``python3`` (Colab needs it).  And: every
file ``_toc.yml`` lists exists; every toc notebook has exactly one cell tagged
``parameters`` and it assigns ``PROFILE``; its first cell carries the Colab
badge for its own path; no notebook under ``book/`` is missing from the toc
(it would never be run, built or tested).

    python scripts/check_notebooks_clean.py        # exit 1 and a list of problems
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_chapters import REPO, ToolingError, read_toc  # noqa: E402

COLAB = "https://colab.research.google.com/github/ganbook/gan-training-book/blob/main/"
PROFILE_ASSIGN = re.compile(r"^\s*PROFILE\s*(:[^=]+)?=", re.M)
SKIP = {".ipynb_checkpoints", "checkpoints"}


def notebook_problems(path: Path, rel: str) -> list[str]:
    """Problems of one source notebook that make it not clean."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as err:  # unreadable JSON is a problem to report, not a crash
        return [f"{rel}: cannot be read as a notebook: {err}"]
    problems = []
    for key in ("widgets", "papermill", "ganbook"):
        if key in nb.metadata:
            problems.append(f"{rel}: notebook metadata.{key} present (strip it)")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{rel}: kernelspec name is {kernel!r}, expected 'python3'")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{rel}: cell {i} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"{rel}: cell {i} has execution_count {cell.execution_count}")
        for key in ("execution", "papermill"):
            if key in cell.get("metadata", {}):
                problems.append(f"{rel}: cell {i} has metadata.{key}")
    return problems


def chapter_problems(path: Path, rel: str) -> list[str]:
    """Toc-chapter conventions: the parameters cell and the Colab badge."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:
        return []  # already reported by notebook_problems
    problems = []
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        problems.append(f"{rel}: {len(params)} cells tagged 'parameters', expected exactly one")
    elif params[0].cell_type != "code" or not PROFILE_ASSIGN.search(params[0].source):
        problems.append(f"{rel}: the 'parameters' cell does not assign PROFILE")
    first = nb.cells[0].source if nb.cells else ""
    if COLAB + rel not in first:
        problems.append(f"{rel}: the first cell lacks the Colab badge link {COLAB + rel}")
    return problems


def find_problems(root: Path = REPO) -> list[str]:
    try:
        entries = read_toc(root)
    except ToolingError as err:
        return [str(err)]
    problems = [f"_toc.yml lists {e.name} but neither {e.name}.ipynb nor {e.name}.md exists"
                for e in entries if e.path is None]
    in_toc = {e.path.resolve() for e in entries if e.path is not None}
    for e in entries:
        if e.is_notebook:
            problems += chapter_problems(e.path, e.path.relative_to(root).as_posix())
    for path in sorted((root / "book").rglob("*.ipynb")) if (root / "book").is_dir() else []:
        rel = path.relative_to(root).as_posix()
        if SKIP & set(path.relative_to(root).parts):
            continue
        problems += notebook_problems(path, rel)
        if path.resolve() not in in_toc:
            problems.append(f"{rel}: not listed in _toc.yml (add it there, or move it out of book/)")
    return problems


def main() -> int:
    problems = find_problems(REPO)
    if problems:
        print("check_notebooks_clean: FAILED\n" + "\n".join("  " + p for p in problems), file=sys.stderr)
        return 1
    print("check_notebooks_clean: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
