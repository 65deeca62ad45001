"""Every exercise of chapters 7-12 is graded: by an autograder test (an ``exercise``-tagged code
cell right after it, exercised by tests/test_ch*_exercises.py) or by a written reference answer
and rubric in a collapsed ``{solution}`` block that names the exercise's label."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ["07_progressive_growing", "08_self_attention", "09_bid_picture", "10_maem_gan",
            "11_phased_augmentation", "12_dgl_gan"]
EXERCISE = re.compile(r"```\{exercise\}[^\n]*\n:label: (\S+)")
SOLUTION = re.compile(r"```\{solution\} (\S+)\n((?::[^\n]*\n)*)")


def exercises_and_answers(chapter):
    cells = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())["cells"]
    autograded, written, found = set(), {}, []
    for k, cell in enumerate(cells):
        text = "".join(cell["source"])
        if cell["cell_type"] != "markdown":
            continue
        labels = EXERCISE.findall(text)
        found += labels
        following = cells[k + 1] if k + 1 < len(cells) else None
        if labels and following and "exercise" in following.get("metadata", {}).get("tags", []):
            autograded.add(labels[-1])      # the code cell answers the cell's last exercise
        for label, options in SOLUTION.findall(text):
            written[label] = options
    return found, autograded, written


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_has_a_test_or_a_reference_answer(chapter):
    found, autograded, written = exercises_and_answers(chapter)
    assert found, f"{chapter}: no exercises found"
    missing = [label for label in found if label not in autograded and label not in written]
    assert not missing, f"{chapter}: exercises without a test or a written answer: {missing}"
    for label, options in written.items():
        assert label in found, f"{chapter}: a solution names an unknown exercise {label!r}"
        assert ":class: dropdown" in options, f"{chapter}: solution of {label} is not collapsed"
        assert f":label: sol-{label[3:]}" in options, f"{chapter}: solution of {label} unlabelled"


def test_written_answers_have_a_rubric():
    for chapter in CHAPTERS:
        text = (ROOT / "book" / f"{chapter}.ipynb").read_text()
        assert text.count("```{solution}") == text.count("**Rubric"), chapter
