"""The book's tooling: config files, CI entry points and the scripts' refusals.

Fast (seconds), no kernel, no Chromium: the scripts' functions are called on
tiny notebooks built in tmp_path.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    """Import scripts/<name>.py (scripts/ is not a package; the scripts import each other)."""
    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))
    return importlib.import_module(name)


def _notebook(path: Path, cells) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    nbformat.write(nb, str(path))
    return path


def test_workflow_builds_the_book_and_deploys_pages():
    wf = yaml.safe_load((REPO / ".github/workflows/book.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    runs = [s.get("run", "") for s in wf["jobs"]["build"]["steps"]]
    assert "make book" in runs
    uses = [s.get("uses", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"


def test_ci_entry_point_runs_make_test():
    text = (REPO / ".ci/run").read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    commands = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert commands[-1] == "make test"


def test_readme_names_both_commands_and_every_chapter():
    readme = (REPO / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    run_chapters = _load("run_chapters")
    for entry in run_chapters.read_toc(REPO):
        if entry.name != "intro":
            assert entry.name in readme, f"README does not list {entry.name}"


def test_toc_and_config_parse_and_execution_is_off():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert toc["format"] == "jb-book" and toc["root"] == "intro"
    assert [p["caption"] for p in toc["parts"]] == [
        "Foundations", "Stabilizing training", "Fighting mode collapse", "Limited data", "Compression",
        "Teaching with this book"]
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"  # a string: YAML would read bare off as False
    assert config["only_build_toc_files"] is True
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"]
    js = config["sphinx"]["config"]["nb_ipywidgets_js"]
    static = config["sphinx"]["config"]["html_static_path"]
    assert static != ["_static"] and all((REPO / d / f).is_file() for d in static for f in js)


def test_notebooks_are_clean():
    problems = _load("check_notebooks_clean").find_problems(REPO)
    assert problems == [], "\n".join(problems)


def test_clean_check_catches_outputs_and_widgets(tmp_path):
    check = _load("check_notebooks_clean")
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    path = _notebook(tmp_path / "dirty.ipynb", [cell])
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, str(path))
    problems = check.notebook_problems(path, "dirty.ipynb")
    assert any("outputs" in p for p in problems)
    assert any("execution_count" in p for p in problems)
    assert any("metadata.widgets" in p for p in problems)


def test_runner_refuses_a_misspelt_parameter(tmp_path):
    run_chapters = _load("run_chapters")
    path = _notebook(tmp_path / "ch.ipynb", [
        nbformat.v4.new_code_cell('PROFILE = "book"  # "smoke" | "book" | "gpu"\nSEED = 0',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(PROFILE, SEED)"),
    ])
    declared = run_chapters.validate_parameters(path, {"PROFILE": "smoke", "SEED": 1})
    assert set(declared) == {"PROFILE", "SEED"}
    with pytest.raises(run_chapters.ParameterError, match=r"'SED'.*did you mean 'SEED'"):
        run_chapters.validate_parameters(path, {"PROFILE": "smoke", "SED": 1})
    assert issubclass(run_chapters.ParameterError, ValueError)


def test_runner_refuses_a_chapter_without_one_parameters_cell(tmp_path):
    run_chapters = _load("run_chapters")
    path = _notebook(tmp_path / "ch.ipynb", [nbformat.v4.new_code_cell("PROFILE = 'book'")])
    with pytest.raises(run_chapters.ParameterError, match="exactly one cell tagged 'parameters'"):
        run_chapters.validate_parameters(path, {"PROFILE": "smoke"})


def test_runner_parses_values_like_papermill_and_selects_chapters():
    run_chapters = _load("run_chapters")
    assert [run_chapters.parse_value(v) for v in ("3", "0.5", "True", "None", "ring")] == [
        3, 0.5, True, None, "ring"]
    chapters = [run_chapters.TocEntry(n, Path(n + ".ipynb"), None)
                for n in ("book/05_ttur", "book/06_unrolled_and_packing")]
    assert run_chapters.select(chapters, ["06"]) == chapters[1:]
    assert run_chapters.select(chapters, ["book/05_ttur.ipynb"]) == chapters[:1]
    with pytest.raises(run_chapters.ToolingError, match="matches no chapter"):
        run_chapters.select(chapters, ["07"])
    with pytest.raises(run_chapters.ToolingError, match="ambiguous"):
        run_chapters.select(chapters, ["0"])


def test_student_version_strips_solutions(tmp_path):
    student = _load("make_student_version")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("```{exercise}\n:label: ex-double\n\nWrite `double`.\n```"),
        nbformat.v4.new_code_cell(
            "def double(x):\n    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION\n",
            execution_count=1, outputs=[nbformat.v4.new_output("stream", text="x\n")]),
        nbformat.v4.new_markdown_cell("The answer is `2 * x`.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("Text.\n\n```{solution} ex-double\n:class: dropdown\n\nSecret.\n```\nAfter."),
        nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\nassert double(2) == 4\n### END HIDDEN TESTS\nprint('ok')"),
    ]
    out, stats = student.student_notebook(nb)
    code = out.cells[1].source
    assert "2 * x" not in code and "### BEGIN SOLUTION" not in code
    assert code == ('def double(x):\n    raise NotImplementedError('
                    '"Exercise ex-double: replace this line with your solution")\n')
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None
    texts = "\n".join(c.source for c in out.cells)
    assert "The answer is" not in texts and "Secret" not in texts and "After." in texts
    assert out.cells[-1].source == "print('ok')"
    assert stats == {"solutions": 1, "dropped_cells": 1, "directives": 1}
    compile(code, "student", "exec")  # still valid Python
    assert "2 * x" in nb.cells[1].source  # the source notebook is untouched


def test_student_version_refuses_unbalanced_markers():
    student = _load("make_student_version")
    with pytest.raises(student.ToolingError, match="without its END"):
        student.strip_code("### BEGIN SOLUTION\nx = 1\n", "Exercise")
    with pytest.raises(student.ToolingError, match="END marker without"):
        student.strip_code("x = 1\n### END SOLUTION\n", "Exercise")


def test_staging_collapses_solutions_and_leaves_the_rest():
    build = _load("build_html")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"),
        nbformat.v4.new_code_cell("y = 1", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell("z = 2", metadata={"tags": ["exercise", "remove-input"]}),
        nbformat.v4.new_code_cell("print('teaching code stays open')"),
        nbformat.v4.new_markdown_cell("```{solution} ex-a\n:label: sol-a\n\nSecret.\n```\n\n"
                                      ":::{solution} ex-b\n:class: tip\nOther.\n:::"),
        nbformat.v4.new_markdown_cell("Answer:\n\n```python\n2 * x\n```", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("```{exercise} Title\n:label: ex-a\n\nDo it.\n```"),
    ]
    stats = build.collapse_solutions(nb)
    assert stats == {"hidden_code": 2, "dropdown_directives": 2, "wrapped_cells": 1}
    assert [c.metadata.get("tags") for c in nb.cells[:4]] == [
        ["hide-input"], ["exercise", "hide-input"], ["exercise", "remove-input"], None]
    assert nb.cells[4].source == ("```{solution} ex-a\n:label: sol-a\n:class: dropdown\n\nSecret.\n```\n\n"
                                  ":::{solution} ex-b\n:class: tip dropdown\nOther.\n:::")
    assert nb.cells[5].source == ("````{admonition} Solution\n:class: dropdown solution\n\n"
                                  "Answer:\n\n```python\n2 * x\n```\n````\n")
    assert nb.cells[6].source.startswith("```{exercise} Title\n:label: ex-a\n\nDo it.")  # exercises stay open


def test_timings_table_compares_book_runs_with_their_targets(tmp_path):
    build, run = _load("build_html"), _load("run_chapters")
    entries = []
    for name, marks in [("a", {}), ("b", {"book_target_min": 8}), ("c", {}), ("d", {})]:
        nb = nbformat.v4.new_notebook(metadata={"ganlib": marks})
        nbformat.write(nb, str(tmp_path / f"{name}.ipynb"))
        entries.append(run.TocEntry(name, tmp_path / f"{name}.ipynb", None))
    book = lambda s: {"profile": "book", "status": "ok", "wall_time_s": s, "cores": 2}
    timings = {"chapters": {"a": book(301.0), "b": book(479.0), "c": book(300.0),
                            "d": {**book(900.0), "profile": "smoke"}}}
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "timings.json").write_text(json.dumps(timings))
    rows = [r for r in build.timings_markdown(tmp_path, entries).splitlines() if r.startswith("| ")][1:]
    assert [r.split(" | ")[3] for r in rows] == ["5 min: **over**", "8 min: within", "5 min: within", "—"]


def test_bibliography_labels_are_author_year_like_the_citations():
    from pybtex.database import parse_string

    sys.path.insert(0, str(REPO / "_ext"))
    bibstyle = importlib.import_module("ganbook_bibstyle")
    bib = parse_string(r"""
        @article{a, author = {Lim, Jae Hyun and Ye, Jong Chul}, year = {2017}, title = {T}}
        @article{b, author = {van den Oord, A{\"a}ron and Kalchbrenner, Nal and Kavukcuoglu, Koray}, year = {2016}, title = {T}}
        @article{c, author = {Bi{\'n}kowski, Miko{\l}aj}, year = {2018}, title = {T}}
        @article{d, author = {Karras, Tero and Aila, Timo and Laine, Samuli}, year = {2018}, title = {One}}
        @article{e, author = {Karras, Tero and Laine, Samuli and Aila, Timo}, year = {2018}, title = {Two}}
    """, "bibtex")
    labels = list(bibstyle.AuthorYearLabelStyle().format_labels(bib.entries.values()))
    assert labels == ["Lim and Ye, 2017", "van den Oord et al., 2016", "Bińkowski, 2018",
                      "Karras et al., 2018a", "Karras et al., 2018b"]
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["sphinx"]["config"]["bibtex_default_style"] == "authoryear"
    assert config["sphinx"]["local_extensions"] == {"ganbook_bibstyle": "_ext"}


def test_course_page_lists_every_exercise_and_only_real_tests():
    """book/course.md names each exercise of the chapters once, and its tests exist."""
    import re

    course = (REPO / "book" / "course.md").read_text(encoding="utf-8")
    labels = set()
    for path in sorted((REPO / "book").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                labels.update(re.findall(r"\{exercise\}[^\n]*\n(?::[\w-]+:[^\n]*\n)*?:label:\s*(\S+)", cell.source))
    assert labels, "no {exercise} labels found in book/*.ipynb"
    missing = sorted(label for label in labels if f"`{label}`" not in course)
    assert not missing, f"book/course.md does not list these exercises: {missing}"
    for file, func in re.findall(r"`(tests/test_ch\w*_exercises\.py)::(test_\w+)`", course):
        assert re.search(rf"^def {func}\(", (REPO / file).read_text(), re.M), f"{file}::{func} does not exist"
    assert "test_exercises*" not in course
