"""The evaluation report: curves, checks and examples for one or more models, and its files.

``Report.save(dir)`` writes ``report.json`` (machine-readable, with the list of the report's
files), ``report.md`` (tables), ``curve.png`` (one plot for every model), the example grids and
``report.html`` (one self-contained page), with ``corruptions.png`` when corruptions were
evaluated and ``comparison.png`` when the report has a baseline, as a whole (see
:mod:`advkit.evaluation.folder`).
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..distributed import is_main
from .comparison import Comparison
from .folder import manifest, write_folder
from .html import render_html
from .markdown import render as render_markdown
from .page import Page, build_page
from .plot import (
    COMPARISON_FILE,
    CORRUPTIONS_FILE,
    comparison_figure,
    corruption_figure,
    curve_figure,
    example_files,
    examples_figure,
    png_bytes,
)
from .results import WORST, Check, ModelResult
from .stats import wilson
from .tables import IMAGE, header_lines, markdown_text

log = logging.getLogger(__name__)

FORMAT = 1


def run_metadata(device: torch.device, seconds: float) -> dict[str, Any]:
    """Versions, device and wall time of an evaluation, for reproducing it."""
    versions = {"advkit": _version("advkit"), "torch": torch.__version__, "torchattacks": _version("torchattacks"),
                "python": sys.version.split()[0], "platform": platform.platform()}
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)")
    return {"versions": versions, "device": str(device), "device_name": name, "seconds": seconds,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


class Report:
    """Results of :func:`advkit.evaluate` for one or more models on one eps grid.

    ``curve``: ``{attack: [(eps, accuracy), ...], "worst": [...]}`` (with several models the keys
    are ``"model/attack"``; attacks that could not run have no curve); ``corruptions``:
    ``{corruption: [(severity, accuracy), ...]}`` when evaluated (keys ``"model/corruption"`` with
    several models; empty otherwise); ``checks``: every sanity
    check; ``sections``: extra demo sections (dicts with "title", "markdown", "images", and
    "files": the images' bytes by file name, read when the section is added). ``baseline``: the
    name of the model the others are compared with (before a defense; None: no comparison);
    ``comparisons``: ``{model: Comparison}`` of each other model with it (empty without a
    baseline; see :class:`~advkit.evaluation.comparison.Comparison`), shown in every report format.
    """

    def __init__(self, results: Sequence[ModelResult], config: dict[str, Any], meta: dict[str, Any],
                 sections: Sequence[dict[str, Any]] = (), baseline: str | None = None):
        names = [r.name for r in results]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be distinct, got {names}")
        self.results = {r.name: r for r in results}
        self.config, self.meta, self.sections = config, meta, list(sections)
        check_baseline(baseline, names)
        self.baseline = baseline
        self.comparisons: dict[str, Comparison] = {} if baseline is None else {
            name: Comparison(self.results[baseline], res) for name, res in self.results.items() if name != baseline}

    # -- views --------------------------------------------------------------------------------
    @property
    def curve(self) -> dict[str, list[tuple[float, float]]]:
        if len(self.results) == 1:
            return next(iter(self.results.values())).curve()
        return {f"{m}/{a}": pts for m, res in self.results.items() for a, pts in res.curve().items()}

    @property
    def corruptions(self) -> dict[str, list[tuple[int, float]]]:
        if len(self.results) == 1:
            return next(iter(self.results.values())).corruption_accuracy()
        return {f"{m}/{c}": pts for m, res in self.results.items() for c, pts in res.corruption_accuracy().items()}

    @property
    def checks(self) -> list[Check]:
        return [c for res in self.results.values() for c in res.checks]

    @property
    def check_counts(self) -> dict[str, int]:
        statuses = [c.status for c in self.checks]
        return {"passed": statuses.count("pass"), "failed": statuses.count("FAIL"), "skipped": statuses.count("skip")}

    def __getitem__(self, model: str) -> ModelResult:
        return self.results[model]

    # -- combining ------------------------------------------------------------------------------
    @classmethod
    def compare(cls, reports: Mapping[str, Report] | Sequence[Report], baseline: str | None = None) -> Report:
        """One report (one plot, one page) for several evaluations on the same eps grid and norm:
        before/after a defense. With a dict, each single-model report's model takes its key as name.
        ``baseline`` names the model the others are compared with (see :attr:`comparisons`); the
        compared models must have been evaluated on the same samples."""
        items = list(reports.items()) if isinstance(reports, Mapping) else [(None, r) for r in reports]
        if not items:
            raise ValueError("reports: nothing to compare")
        first = items[0][1]
        results = []
        for key, rep in items:
            if (rep.config["eps"], rep.config["norm"]) != (first.config["eps"], first.config["norm"]):
                raise ValueError("reports must share the eps grid and norm to be compared; got "
                                 f"{rep.config['eps']} {rep.config['norm']} vs "
                                 f"{first.config['eps']} {first.config['norm']}")
            if key is not None and len(rep.results) != 1:
                raise ValueError(f"reports[{key!r}] holds {len(rep.results)} models; "
                                 "name models with a list of reports instead")
            for res in rep.results.values():
                results.append(res if key is None else _renamed(res, key))
        meta = {**first.meta, "seconds": sum(r.meta.get("seconds", 0.0) for _, r in items)}
        return cls(results, first.config, meta, [s for _, r in items for s in r.sections], baseline=baseline)

    def add_section(self, title: str, markdown: str, images: Sequence[str | Path] = ()) -> None:
        """Append a section (a later part of the demo: defenses, GANs) to the saved report. The
        images are read now (the report keeps them even if their files go); ``markdown`` may show
        them by file name, ``![caption](name.png)``, and those it does not show follow it."""
        paths = [Path(p) for p in images]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"section {title!r}: image files not found: {', '.join(missing)}")
        self.sections.append({"title": title, "markdown": markdown, "images": paths,
                              "files": {p.name: p.read_bytes() for p in paths}})

    # -- output -------------------------------------------------------------------------------
    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        """Everything as JSON-ready data (no per-sample tensors); ``timings=False`` leaves out what differs
        between two runs of the same evaluation (wall times, the creation date, the files' digests), so
        that two reports compare equal exactly when their numbers are (one process against a group,
        streamed data against tensors)."""
        if not timings:
            return without_timings(self.to_dict())
        return {
            "format": FORMAT,
            "config": self.config,
            "seed": self.config.get("seed"),
            **self.meta,
            "checks": self.check_counts,
            "models": {name: _model_dict(res) for name, res in self.results.items()},
            "sections": [{"title": s["title"], "markdown": s["markdown"], "images": [p.name for p in s["images"]]}
                         for s in self.saved_sections()],
            **({"baseline": self.baseline, "comparisons": {name: c.to_dict() for name, c in self.comparisons.items()}}
               if self.baseline is not None else {}),
        }

    def table(self) -> str:
        """The accuracy table (rows: eps; columns: model/attack, names as plain text) in Markdown."""
        cols = [(m, a) for m, res in self.results.items() for a in res.names]
        label = (lambda m, a: a) if len(self.results) == 1 else (lambda m, a: f"{m}/{a}")
        head = "| eps | " + " | ".join(markdown_text(label(m, a)) for m, a in cols) + " |"
        rows = [head, "|" + "---|" * (len(cols) + 1)]
        accs = [self.results[m].accuracy(a) for m, a in cols]
        for j, eps in enumerate(self.config["eps"]):
            rows.append(f"| {eps:g} | " + " | ".join(f"{acc[j]:.1%}" for acc in accs) + " |")
        return "\n".join(rows)

    def page(self, sections: Sequence[Mapping[str, Any]] | None = None) -> Page:
        """The page both report.md and report.html render (``sections``: :meth:`saved_sections` unless given)."""
        sections = self.saved_sections() if sections is None else sections
        return build_page(self._header(), self.results, self.example_files(), sections,
                          list(self.comparisons.values()))

    def markdown(self) -> str:
        """report.md's text."""
        return render_markdown(self.page())

    def html(self, folder: str | Path) -> str:
        """report.html's text, its pictures read from ``folder`` (where the report's files are)."""
        return render_html(self.page(), Path(folder))

    def _header(self) -> list[str]:
        return header_lines(self.results, self.config, self.meta, self.check_counts)

    def save(self, out_dir: str | Path) -> Path:
        """Write report.json, report.md, curve.png, the example grids, the sections' images and
        report.html into ``out_dir``, as a whole: afterwards the folder holds the old report or
        this one, never a mix, and no file of the old report that this one does not write. Files
        of yours in an earlier report's folder stay, and none is ever replaced: a folder that holds
        no advkit report, or a file of yours named as one of the report's, is refused
        (:class:`~advkit.evaluation.folder.FolderError`, a FileExistsError), an unwritable folder
        too (PermissionError), before anything moves. Returns the report.html path. In a torchrun
        process group only rank 0 writes; the other ranks write nothing and return the same path."""
        if not is_main():
            return Path(out_dir) / "report.html"
        out = write_folder(out_dir, self._write, self.file_names())
        log.info("report written to %s", out)
        return out / "report.html"

    def example_files(self) -> dict[str, str]:
        """The file name of each model's example grid, one per model (see :func:`example_files`)."""
        return example_files(self.results)

    def saved_sections(self) -> list[dict[str, Any]]:
        """The sections as :meth:`save` writes them, each picture under a file name of its own: one
        named like a file of the report, or like another section's different picture, gets ``-2``,
        ``-3``, ... before its suffix (and the section's Markdown shows it by that name); the same
        picture in two sections is one file."""
        taken: dict[str, bytes | None] = {name.casefold(): None for name in self._own_files()}
        saved = []
        for section in self.sections:
            files, renamed = {}, {}
            for img in map(Path, section["images"]):
                data = section.get("files", {}).get(img.name) or img.read_bytes()
                name, k = img.name, 1
                while name.casefold() in taken and taken[name.casefold()] != data:
                    k += 1
                    name = f"{img.stem}-{k}{img.suffix}"
                taken[name.casefold()], files[name] = data, data
                if name != img.name:
                    renamed[img.name] = name
            saved.append({"title": section["title"], "markdown": _renamed_images(section["markdown"], renamed),
                          "images": list(map(Path, files)), "files": files})
        return saved

    def _own_files(self) -> list[str]:
        """The names of the files of the report that are not the sections' pictures."""
        corrupted = [CORRUPTIONS_FILE] if any(r.corrupted for r in self.results.values()) else []
        compared = [COMPARISON_FILE] if self.baseline is not None else []
        return ["curve.png", *corrupted, *compared,
                *(file for name, file in self.example_files().items() if self.results[name].examples),
                "report.md", "report.html", "report.json"]

    def file_names(self) -> list[str]:
        """The names of the files :meth:`save` writes."""
        *pictures, md, page, data = self._own_files()
        return [*pictures, *dict.fromkeys(p.name for s in self.saved_sections() for p in s["images"]), md, page, data]

    def _write(self, folder: Path) -> None:
        """Every file of the report into the (new, empty) ``folder``, report.json's manifest last."""
        files = {"curve.png": png_bytes(curve_figure(list(self.results.values()), self.config["norm"]))}
        if any(r.corrupted for r in self.results.values()):
            files[CORRUPTIONS_FILE] = png_bytes(corruption_figure(list(self.results.values())))
        comparisons = list(self.comparisons.values())
        if comparisons:
            files[COMPARISON_FILE] = png_bytes(comparison_figure(comparisons[0].before, [c.after for c in comparisons],
                                                                 self.config["norm"]))
        for name, file in self.example_files().items():
            if self.results[name].examples:
                files[file] = png_bytes(
                    examples_figure(self.results[name].examples, f"{name}: clean / adversarial / perturbation"))
        sections = self.saved_sections()
        for section in sections:
            files.update(section["files"])
        for name, data in files.items():
            (folder / name).write_bytes(data)
        page = self.page(sections)
        (folder / "report.md").write_text(render_markdown(page), encoding="utf-8")
        (folder / "report.html").write_text(render_html(page, folder), encoding="utf-8")
        manifest_entries = manifest(folder, self.file_names())
        (folder / "report.json").write_text(json.dumps({**self.to_dict(), **manifest_entries}, indent=2),
                                            encoding="utf-8")

    def __repr__(self) -> str:
        counts = self.check_counts
        return (f"Report(models={list(self.results)}, eps={self.config['eps']}, attacks={self.config['attacks']}, "
                f"checks {counts['passed']} passed / {counts['failed']} failed / {counts['skipped']} skipped)")


def without_timings(value: Any) -> Any:
    """A report's dict (:meth:`Report.to_dict`, or a saved report.json read back) less its wall times,
    creation date and file digests: what two runs of the same evaluation share."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in ("seconds", "created", "sha256")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def check_baseline(baseline: str | None, names: Sequence[str]) -> None:
    """``baseline`` must be None or the name of one of several models (ValueError otherwise)."""
    if baseline is None:
        return
    if baseline not in names:
        raise ValueError(f"baseline must name one of the models ({', '.join(map(repr, names))}), got {baseline!r}")
    if len(names) < 2:
        raise ValueError(f"baseline={baseline!r} needs at least one other model to compare with: evaluate a dict "
                         "of models, e.g. {'before': model, 'after': defended}")


def _model_dict(res: ModelResult) -> dict[str, Any]:
    n = len(res.labels)
    correct = int(res.clean.sum())
    return {
        "n": n,
        "num_classes": res.num_classes,
        "clean_accuracy": correct / n,
        "clean_ci95": list(wilson(correct, n)),
        "curves": {a: res.points(a) for a in res.names},
        "per_class": {a: {str(c): accs for c, accs in res.per_class(a).items()} for a in res.names},
        "attacks": {a: rec.description for a, rec in res.attacks.items()},
        "masked": res.masked,
        "notes": {a: rec.note for a, rec in res.attacks.items() if rec.note},
        "cost": {key: sum(getattr(c, key) for rec in res.attacks.values() for c in rec.costs)
                 for key in ("attacked", "forwards", "backwards")},
        "seconds": res.seconds,
        "checks": [{"name": c.name, "status": c.status, "passed": c.passed, "skipped": c.skipped,
                    "message": c.message, "details": c.details} for c in res.checks],
        **({"corruptions": {c: res.corruption_points(c) for c in res.corrupted},
            "mean_corruption_accuracy": res.mean_corruption_accuracy, "corruption_suite": res.corruption_suite}
           if res.corrupted else {}),
        **({"corruption_baseline": res.corruption_baseline.name, "corruption_errors": res.corruption_errors(),
            "mean_corruption_error": res.mean_corruption_error} if res.corrupted and res.corruption_baseline else {}),
        **({"smoothing": res.smoothed.to_dict()} if res.smoothed is not None else {}),
    }


def _renamed(res: ModelResult, name: str) -> ModelResult:
    return dataclasses.replace(res, name=name, checks=[dataclasses.replace(c, model=name) for c in res.checks])


def _renamed_images(markdown: str, renamed: Mapping[str, str]) -> str:
    """``markdown`` with the pictures it shows by a name in ``renamed`` shown by their new name."""
    def image(m: re.Match) -> str:
        name = Path(m["src"]).name
        return f"![{m['alt']}]({renamed[name]})" if name in renamed else m[0]

    return IMAGE.sub(image, markdown)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


__all__ = ["WORST", "Report", "run_metadata", "without_timings"]
