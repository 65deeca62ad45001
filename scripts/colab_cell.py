#!/usr/bin/env python
"""Write or check every chapter's first code cell: the Colab install cell of ganlib.book.colab_install_cell.

    python scripts/colab_cell.py           # check (exit 1 and name the chapters that differ)
    python scripts/colab_cell.py --write   # rewrite the cells that differ (nothing else in the notebook)

The extras a chapter installs are ganlib.book.COLAB_EXTRAS. Notebooks keep their JSON layout
(indent 1), so the diff is the cell alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ganlib.book import COLAB_EXTRAS, colab_install_cell  # noqa: E402


def first_code_cell(nb: dict) -> dict:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise ValueError("the notebook has no code cell")


def chapters(root: Path = REPO) -> list[Path]:
    return sorted((root / "book").glob("[0-9][0-9]_*.ipynb"))


def stale(root: Path = REPO, write: bool = False) -> list[str]:
    """Names of the chapters whose first code cell is not the generated Colab cell (fixed if ``write``)."""
    unknown = set(COLAB_EXTRAS) - {p.stem for p in chapters(root)}
    if unknown:
        raise ValueError(f"COLAB_EXTRAS names chapters that do not exist: {sorted(unknown)}")
    out = []
    for path in chapters(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = first_code_cell(nb)
        want = colab_install_cell(COLAB_EXTRAS.get(path.stem, ()))
        if "".join(cell["source"]) != want:
            out.append(path.stem)
            if write:
                cell["source"] = want.splitlines(keepends=True)
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the cells that differ")
    args = ap.parse_args(argv)
    names = stale(write=args.write)
    if names and not args.write:
        print("colab_cell: the Colab install cell differs in " + ", ".join(names)
              + "\n  run: python scripts/colab_cell.py --write", file=sys.stderr)
        return 1
    print(f"colab_cell: {'rewrote ' + ', '.join(names) if names else 'ok'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
