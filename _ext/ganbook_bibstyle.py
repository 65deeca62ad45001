"""Author-year labels for the book's bibliography (a local Sphinx extension).

The chapters cite in author-year form (``bibtex_reference_style: author_year``:
"Goodfellow et al., 2014"), so the bibliography page labels its entries the same
way instead of pybtex's alpha labels ("[GPAM+14]"). Registers the pybtex
formatting style ``authoryear`` (pybtex's ``plain`` with these labels) for
``bibtex_default_style: authoryear`` in ``_config.yml``.

Labels: "Last, year" for one author, "Last and Last, year" for two, "Last et al.,
year" for more (the von part kept: "van den Oord et al., 2017"), with a, b, ...
after the year when two entries would otherwise share a label.
"""
from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    """The printed surname with its von part, LaTeX accents decoded ("Bińkowski")."""
    latex = " ".join(person.prelast_names + person.last_names)
    return Text.from_latex(latex).render_as("text")


def author_year(entry) -> str:
    """"Goodfellow et al., 2014" for one pybtex entry (authors, else editors, else the key)."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in persons]
    if not names:
        who = entry.key
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    year = entry.fields.get("year", "n.d.")
    return f"{who}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(e) for e in entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabelStyle


def setup(app):
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
