"""Every exercise of chapters 1-6 is gradable: it has an ``exercise``-tagged code cell (which
the chapter's autograder tests run, see tests/exercise_utils.py) or a written reference answer
in a ``{solution}`` block, collapsed as a dropdown and pointing at its exercise's label."""

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = ["01_gan_game", "02_measuring_gans", "03_alternative_losses", "04_lipschitz",
            "05_ttur", "06_unrolled_and_packing"]
EXERCISE = re.compile(r"```\{exercise\}[^\n]*\n:label: (\S+)")
SOLUTION = re.compile(r"```\{solution\} (\S+)\n((?::[\w-]+:[^\n]*\n)*)")


def exercise_coverage(cells):
    """{exercise label: set of ways it is covered ('code', 'solution')}."""
    coverage, current = {}, None
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for match in re.finditer(f"{EXERCISE.pattern}|{SOLUTION.pattern}", text):
                if match.group(1):
                    current = match.group(1)
                    coverage.setdefault(current, set())
                else:
                    target, options = match.group(2), match.group(3)
                    assert target in coverage, f"solution for unknown exercise {target}"
                    assert ":class: dropdown" in options, f"solution of {target} is not collapsed"
                    assert f":label: sol-{target.removeprefix('ex-')}" in options, target
                    coverage[target].add("solution")
        elif "exercise" in cell.get("metadata", {}).get("tags", []) and current:
            coverage[current].add("code")
    return coverage


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_has_a_test_or_a_reference_answer(chapter):
    cells = json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]
    coverage = exercise_coverage(cells)
    assert coverage, f"{chapter} has no exercise"
    uncovered = [label for label, ways in coverage.items() if not ways]
    assert not uncovered, f"{chapter}: exercises without a test or a written answer: {uncovered}"


def test_coverage_check_fails_on_an_uncovered_exercise():
    cells = [{"cell_type": "markdown", "source": ["```{exercise} A\n:label: ex-a\n\nText.\n```\n"]},
             {"cell_type": "markdown", "source": ["```{exercise} B\n:label: ex-b\n\nText.\n```\n"]},
             {"cell_type": "code", "metadata": {"tags": ["exercise"]}, "source": ["x = 1\n"]}]
    assert exercise_coverage(cells) == {"ex-a": set(), "ex-b": {"code"}}
