"""scripts/check_html.py fails on every defect a reader would see, and passes a clean page.

Tiny pages shaped like Jupyter Book's HTML (cells, outputs, math spans) are written to
tmp_path, each seeded with one defect, and inspected in one Chromium session (seconds).
Skipped where /usr/bin/chromium or Playwright is missing.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
check_html = importlib.import_module("check_html")

pytestmark = pytest.mark.skipif(not Path(check_html.CHROMIUM).is_file(),
                                reason=f"{check_html.CHROMIUM} is missing (apt-get install -y chromium)")

MATHJAX = '<script>window.MathJax = {tex: {inlineMath: [["\\\\(", "\\\\)"]]}};</script>' \
          '<script defer src="mathjax/tex-chtml.js"></script>'


def cell(code: str, output: str = "", tags: str = "") -> str:
    """A notebook cell as myst-nb writes it: input, then outputs."""
    return (f'<div class="cell {tags} docutils container"><div class="cell_input docutils container">'
            f'<div class="highlight"><pre>{code}</pre></div></div>'
            f'<div class="cell_output docutils container">{output}</div></div>')


def stream(text: str, kind: str = "stream") -> str:
    return f'<div class="output {kind} highlight-myst-ansi notranslate"><div class="highlight"><pre>{text}</pre></div></div>'


# A page with one of everything done right: it must pass.
CLEAN = (
    "<p>The loss is \\(\\min_G \\max_D V(D, G)\\) with \\(\\beta_1 = 0.5\\).</p>"
    '<div class="math notranslate nohighlight">\\[ \\mathbb{E}_{x}[\\log D(x)] \\]</div>'
    '<p>Run <code>.venv/bin/python -m pytest</code>; solutions are marked like this:</p>'
    "<pre>### BEGIN SOLUTION\n### END SOLUTION</pre>"
    + cell("rows = ['| a | b |', '|---|---|']  # a long code input line may scroll sideways " + "x" * 200,
           '<table><tr><th>variant</th><th>FID</th></tr><tr><td>WGAN-GP</td><td>12.5</td></tr></table>'
           + stream("WGAN-GP reached the lowest FID in this run."))
    + cell("print(1)", '<div class="output text_plain"><pre>(12, 0.5)</pre></div>')
    + '<div class="cell tag_exercise docutils container"><details class="hide above-input"><summary>Show code'
      '</summary><div class="cell_input"><pre>def f(x):\n    ### BEGIN SOLUTION\n    return x\n'
      "    ### END SOLUTION</pre></div></details></div>"
    + '<details class="solution admonition"><summary class="admonition-title">Solution to Exercise 1</summary>'
      "<p>The answer.</p></details>"
)

# page name -> (body, the defect's name in the failure message)
DEFECTIVE = {
    "raw_table": (cell("display(Markdown(t))", "<p>| a | b |\n|---|---|\n| 1 | 2 |</p>"), "raw markdown table"),
    "raw_table_printed": (cell("print(t)", stream("| a | b |\n| --- | --- |\n| 1 | 2 |")), "raw markdown table"),
    "math_error": ("<p>Broken: \\(x^^2\\)</p>", "MathJax error"),
    "math_undefined_macro": ("<p>Typo: \\(\\betaa_1\\)</p>", "MathJax error"),
    "traceback": (cell("1/0", '<div class="output traceback highlight-ipythontb"><pre>Traceback (most recent '
                             "call last)\nZeroDivisionError: division by zero</pre></div>"), "traceback output"),
    "stderr": (cell("train()", stream("step 10/100", "stderr")), "stderr output"),
    "warning": (cell("fit()", stream("ganlib/x.py:3: UserWarning: lr is large")), "warning shown in an output"),
    "bare_number": (cell("book.glue('n', 22)", '<div class="output text_plain"><pre>0.08730158730158732</pre></div>'),
                    "bare numeric output"),
    "bare_tensor": (cell("loss", '<div class="output text_plain"><pre>tensor(-6.0257)</pre></div>'),
                    "bare numeric output"),
    "clipped": (cell("print(verdict)", '<div class="output stream"><pre style="white-space: pre; overflow-x: auto">'
                     + "The verdict: " + "WGAN-GP covered more modes than the others " * 6 + "</pre></div>"),
                "clipped output line"),
    "internal_path": ("<p>As found in <code>shared/research/papers_modecollapse.md</code>.</p>",
                      "internal reference"),
    "internal_words": ("<p>The schedule comes from the research pilot.</p>", "internal reference"),
    "internal_build_dir_in_prose": ("<p>The data sit in _build/cache of the repository.</p>", "internal reference"),
    "internal_in_output": (cell("print(path)", stream("saved to /work/main/_build/ckpt.pt")), "internal reference"),
    "solution_code_open": (cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION",
                                tags="tag_exercise"), "visible solution"),
    "solution_admonition_open": ('<div class="solution admonition"><p class="admonition-title">Solution to '
                                 "Exercise 1</p><p>The answer.</p></div>", "visible solution"),
}


def page_html(body: str, mathjax: bool = True) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'>{MATHJAX if mathjax else ''}</head>"
            f"<body><main><article style='width: 700px'>{body}</article></main></body></html>")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    os.symlink(REPO / "_widgets_js" / "mathjax", root / "mathjax")
    pages = {"clean": page_html(CLEAN), "math_untypeset": page_html(CLEAN, mathjax=False)}
    pages.update({name: page_html(body) for name, (body, _) in DEFECTIVE.items()})
    for name, html in pages.items():
        (root / f"{name}.html").write_text(html, encoding="utf-8")
    failures, _ = check_html.inspect_pages(root, [check_html.Page(f"{n}.html") for n in pages], timeout_ms=15000)
    by_page: dict[str, list[str]] = {n: [] for n in pages}
    for f in failures:
        name, _, message = f.partition(".html: ")
        by_page[name].append(message)
    return by_page


def test_clean_page_passes(results):
    assert results["clean"] == []


@pytest.mark.parametrize("name", sorted(DEFECTIVE))
def test_each_defect_fails_and_is_named(results, name):
    label = DEFECTIVE[name][1]
    assert results[name], f"{name}: the check missed the defect"
    assert all(label in msg for msg in results[name]), results[name]


def test_math_without_mathjax_fails(results):
    assert results["math_untypeset"] and all("math not typeset" in m for m in results["math_untypeset"])

