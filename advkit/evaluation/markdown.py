"""report.md: the report's tables in Markdown, with the plot and pictures linked.

Names and every other text of the report are plain text here (escaped, see
:func:`~advkit.evaluation.tables.markdown_text`); a section's text is Markdown, without raw HTML
(its ``<`` outside code is escaped), as report.html shows it."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .comparison import Comparison
from .plot import COMPARISON_FILE, CORRUPTIONS_FILE
from .results import ModelResult
from .tables import (
    comparison_tables,
    comparison_title,
    markdown_text,
    model_tables,
    to_markdown,
    unshown_images,
)


def render(header: Sequence[str], results: Mapping[str, ModelResult], example_files: Mapping[str, str],
           sections: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison] = ()) -> str:
    """The Markdown page: the ``header`` lines, the ``comparisons`` with a baseline (before and after a
    defense), each model's tables and examples (``example_files``: each model's picture), then the
    ``sections``."""
    out = ["# advkit robustness report", "", *map(markdown_text, header), "", "![accuracy versus eps](curve.png)", ""]
    if any(res.corrupted for res in results.values()):
        out += [f"![accuracy under corruptions]({CORRUPTIONS_FILE})", ""]
    if comparisons:
        out += [f"![before and after]({COMPARISON_FILE})", ""]
    for comparison in comparisons:
        out += [f"## {markdown_text(comparison_title(comparison))}", ""]
        for table in comparison_tables(comparison):
            out += [to_markdown(table), ""]
    for name, res in results.items():
        out += [f"## {markdown_text(name)}: clean accuracy {res.clean_accuracy:.1%}", ""]
        for table in model_tables(res):
            out += [to_markdown(table), ""]
        if res.examples:
            out += [f"![examples]({example_files[name]})", ""]
    for section in sections:
        out += [f"## {markdown_text(section['title'])}", "", _no_html(section["markdown"]), ""]
        out += [f"![{p.name}]({p.name})" for p in unshown_images(section)] + [""]
    return "\n".join(out)


def _no_html(markdown: str) -> str:
    """``markdown`` with every ``<`` outside code spans escaped: its raw HTML shows as text."""
    return "".join(part if part.startswith("`") else part.replace("<", "&lt;")
                   for part in re.split(r"(`[^`]*`)", markdown))
