#!/usr/bin/env python
"""Write the student version of chapters: the same notebook without solutions.

In code cells, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(nbgrader's markers) become one ``raise NotImplementedError("Exercise ...")``
at the marker's indentation; ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN
TESTS`` blocks are deleted.  Markdown cells tagged ``solution`` and cells
tagged ``hidden-tests`` are dropped, and so are ``{solution}`` directives
(sphinx-exercise) inside markdown.  Outputs, execution counts and widget state
are cleared.  Sources are never modified.

    python scripts/make_student_version.py                    # every toc chapter
    python scripts/make_student_version.py book/04_lipschitz.ipynb --out-dir /tmp/student
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_chapters import REPO, ToolingError  # noqa: E402

BEGIN = re.compile(r"^(?P<indent>[ \t]*)###\s*BEGIN SOLUTION\b")
END = re.compile(r"^[ \t]*###\s*END SOLUTION\b")
BEGIN_HIDDEN = re.compile(r"^[ \t]*###\s*BEGIN HIDDEN TESTS\b")
END_HIDDEN = re.compile(r"^[ \t]*###\s*END HIDDEN TESTS\b")
LABEL = re.compile(r"^\s*:label:\s*(\S+)", re.M)
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")
DROP_TAGS = {"solution", "hidden-tests"}


def strip_code(source: str, message: str, where: str = "cell") -> tuple[str, int]:
    """Replace solution blocks; returns (new source, number of blocks replaced)."""
    out, n, mode = [], 0, None
    for lineno, line in enumerate(source.splitlines(keepends=True), 1):
        if mode is None:
            m = BEGIN.match(line)
            if m:
                mode = "solution"
                n += 1
                out.append(f'{m["indent"]}raise NotImplementedError("{message}")\n')
            elif BEGIN_HIDDEN.match(line):
                mode = "hidden"
            elif END.match(line) or END_HIDDEN.match(line):
                raise ToolingError(f"{where}, line {lineno}: END marker without its BEGIN")
            else:
                out.append(line)
        elif (mode == "solution" and END.match(line)) or (mode == "hidden" and END_HIDDEN.match(line)):
            mode = None
        elif BEGIN.match(line) or BEGIN_HIDDEN.match(line):
            raise ToolingError(f"{where}, line {lineno}: nested BEGIN marker")
    if mode is not None:
        raise ToolingError(f"{where}: '### BEGIN {'SOLUTION' if mode == 'solution' else 'HIDDEN TESTS'}' "
                           "without its END marker")
    return "".join(out), n


def strip_markdown(source: str) -> tuple[str, int]:
    """Remove ``{solution}`` directives and ``{solution-start}``..``{solution-end}`` ranges."""
    lines, out, n, i = source.splitlines(keepends=True), [], 0, 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if m and m["name"] in ("solution", "solution-start"):
            fence, n = m["fence"], n + 1
            closing = re.compile(r"^\s*" + re.escape(fence[0]) + "{%d,}\\s*$" % len(fence))
            j = i + 1
            while j < len(lines) and not closing.match(lines[j]):
                j += 1
            if m["name"] == "solution-start":  # skip to the end of the {solution-end} block
                k = j + 1
                while k < len(lines):
                    mk = FENCE_OPEN.match(lines[k])
                    if mk and mk["name"] == "solution-end":
                        break
                    k += 1
                close_end = re.compile(r"^\s*" + re.escape(fence[0]) + "{3,}\\s*$")
                j = k + 1
                while j < len(lines) and not close_end.match(lines[j]):
                    j += 1
            i = j + 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(out), n


def student_notebook(nb, name: str = "notebook"):
    """A student copy of ``nb`` (nbformat v4); returns (notebook, stats dict)."""
    import copy

    nb = copy.deepcopy(nb)
    cells, label, stats = [], None, {"solutions": 0, "dropped_cells": 0, "directives": 0}
    for idx, cell in enumerate(nb.cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & DROP_TAGS:
            stats["dropped_cells"] += 1
            continue
        if cell.cell_type == "markdown":
            found = LABEL.findall(cell.source)
            label = found[-1] if found else label
            cell.source, k = strip_markdown(cell.source)
            stats["directives"] += k
        elif cell.cell_type == "code":
            message = (f"Exercise {label}: replace this line with your solution" if label
                       else "Exercise: replace this line with your solution")
            cell.source, k = strip_code(cell.source, message, where=f"{name} cell {idx}")
            stats["solutions"] += k
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
            cell.metadata.pop("papermill", None)
        cells.append(cell)
    nb.cells = cells
    for key in ("widgets", "papermill", "ganbook"):
        nb.metadata.pop(key, None)
    nb.metadata["ganbook_student_version"] = True
    return nb, stats


def main(argv: list[str] | None = None) -> int:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of _toc.yml")
    ap.add_argument("--out-dir", type=Path, default=REPO / "_build" / "student")
    args = ap.parse_args(argv)
    try:
        if args.notebooks:
            paths = [p.resolve() for p in args.notebooks]
        else:
            from run_chapters import toc_chapters

            paths = [c.path for c in toc_chapters(REPO)]
        for path in paths:
            rel = path.relative_to(REPO) if REPO in path.parents else Path(path.name)
            out = args.out_dir.resolve() / rel
            if out == path:
                raise ToolingError(f"refusing to overwrite the source {path}")
            nb, stats = student_notebook(nbformat.read(str(path), as_version=4), name=str(rel))
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(out))
            note = "" if stats["solutions"] else "  (no ### BEGIN SOLUTION block)"
            print(f"{str(rel):40s} {stats['solutions']} solution block(s), {stats['dropped_cells']} cell(s) "
                  f"and {stats['directives']} solution directive(s) removed -> {out}{note}")
    except ToolingError as err:
        print(f"make_student_version: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
