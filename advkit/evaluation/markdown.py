"""report.md: the report's tables in Markdown, with the plot and pictures linked."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .comparison import Comparison
from .plot import COMPARISON_FILE, CORRUPTIONS_FILE, examples_file
from .results import ModelResult
from .tables import comparison_tables, comparison_title, model_tables, to_markdown, unshown_images


def render(header: Sequence[str], results: Mapping[str, ModelResult], sections: Sequence[Mapping[str, Any]],
           comparisons: Sequence[Comparison] = ()) -> str:
    """The Markdown page: the ``header`` lines, the ``comparisons`` with a baseline (before and after a
    defense), each model's tables and examples, then the ``sections``."""
    out = ["# advkit robustness report", "", *header, "", "![accuracy versus eps](curve.png)", ""]
    if any(res.corrupted for res in results.values()):
        out += [f"![accuracy under corruptions]({CORRUPTIONS_FILE})", ""]
    if comparisons:
        out += [f"![before and after]({COMPARISON_FILE})", ""]
    for comparison in comparisons:
        out += [f"## {comparison_title(comparison)}", ""]
        for table in comparison_tables(comparison):
            out += [to_markdown(table), ""]
    for name, res in results.items():
        out += [f"## {name}: clean accuracy {res.clean_accuracy:.1%}", ""]
        for table in model_tables(res):
            out += [to_markdown(table), ""]
        if res.examples:
            out += [f"![examples]({examples_file(name)})", ""]
    for section in sections:
        out += [f"## {section['title']}", "", section["markdown"], ""]
        out += [f"![{p.name}]({p.name})" for p in unshown_images(section)] + [""]
    return "\n".join(out)
