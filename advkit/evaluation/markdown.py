"""report.md: the report's tables in Markdown, with the plot and pictures linked.

Names and every other text of the report are plain text here (escaped, see
:func:`~advkit.evaluation.tables.markdown_text`); a section's text is Markdown, without raw HTML
(its ``<`` outside code is escaped), as report.html shows it."""
from __future__ import annotations

import re

from .page import Page
from .tables import markdown_text, to_markdown


def render(page: Page) -> str:
    """The Markdown page: the opening lines, the figures, then each part (tables, text, figures)."""
    out = ["# advkit robustness report", "", *map(markdown_text, [*page.warnings, *page.lines]), ""]
    for figure in page.figures:
        out += [f"![{figure.alt}]({figure.file})", ""]
    for part in page.parts:
        out += [f"## {markdown_text(part.title)}", ""]
        for table in part.tables:
            out += [to_markdown(table), ""]
        if part.text is not None:  # a section: its text, then its pictures in one paragraph (maybe none)
            out += [_no_html(part.text), "", *(f"![{f.alt}]({f.file})" for f in part.figures), ""]
        else:
            for figure in part.figures:
                out += [f"![{figure.alt}]({figure.file})", ""]
    return "\n".join(out)


def _no_html(markdown: str) -> str:
    """``markdown`` with every ``<`` outside code spans escaped: its raw HTML shows as text."""
    return "".join(part if part.startswith("`") else part.replace("<", "&lt;")
                   for part in re.split(r"(`[^`]*`)", markdown))
