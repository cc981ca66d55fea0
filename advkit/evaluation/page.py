"""The report's page as data, built once: its opening lines, figures and parts (the comparisons, each
model, the sections), each with its tables, text and figures. report.md and report.html render it
(markdown.py, html.py); neither walks the :class:`~advkit.evaluation.report.Report` itself."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .comparison import Comparison
from .plot import COMPARISON_FILE, CORRUPTIONS_FILE
from .results import ModelResult
from .tables import Table, comparison_tables, comparison_title, model_tables, unshown_images


@dataclass(frozen=True)
class Figure:
    """A picture of the report folder: ``file``, ``alt`` (what it shows); ``title`` and ``detail``, where
    given, are the heading report.html puts above it and the longer alt text it gives it."""

    file: str
    alt: str
    title: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Part:
    """A titled part of the page: its tables, then its text (Markdown; None for generated parts), then
    its figures."""

    title: str
    tables: Sequence[Table] = ()
    text: str | None = None
    figures: Sequence[Figure] = ()


@dataclass(frozen=True)
class Page:
    """The whole page: ``warnings`` (gradient masking) and ``lines`` open it, ``figures`` follow, then the parts."""

    warnings: Sequence[str]
    lines: Sequence[str]
    figures: Sequence[Figure]
    parts: Sequence[Part] = field(default_factory=list)


#: The opening lines that warn (report.html sets them apart).
WARNING = "Gradient masking"


def build_page(header: Sequence[str], results: Mapping[str, ModelResult], example_files: Mapping[str, str],
               sections: Sequence[Mapping[str, Any]], comparisons: Sequence[Comparison] = ()) -> Page:
    """The page: the ``header`` lines, the ``comparisons`` with a baseline (before and after a defense),
    each model's tables and examples (``example_files``: each model's picture), then the ``sections``."""
    figures = [Figure("curve.png", "accuracy versus eps")]
    if any(res.corrupted for res in results.values()):
        figures.append(Figure(CORRUPTIONS_FILE, "accuracy under corruptions"))
    if comparisons:
        figures.append(Figure(COMPARISON_FILE, "before and after"))
    parts = [Part(comparison_title(c), comparison_tables(c)) for c in comparisons]
    parts += [Part(f"{name}: clean accuracy {res.clean_accuracy:.1%}", model_tables(res),
                   figures=[Figure(example_files[name], "examples", "Examples (clean / adversarial / amplified "
                                   "perturbation)", f"examples for {name}")] if res.examples else [])
              for name, res in results.items()]
    parts += [Part(s["title"], text=s["markdown"], figures=[Figure(p.name, p.name) for p in unshown_images(s)])
              for s in sections]
    return Page([line for line in header if line.startswith(WARNING)],
                [line for line in header if not line.startswith(WARNING)], figures, parts)


__all__ = ["Figure", "Page", "Part", "build_page"]
