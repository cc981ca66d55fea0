"""What report.md and report.html both show, as data: the opening lines, the tables (title,
header, rows of strings) and the pictures a section's text does not show. The two renderers
format these; neither knows the :class:`~advkit.evaluation.report.Report`."""
from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.suites import mean_corruption_error
from .comparison import Comparison
from .results import WORST, AttackRecord, ModelResult

#: A Markdown image, ``![alt](source)``.
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


def model_tables(res: ModelResult) -> list[Table]:
    """Accuracy (with 95% intervals and the worst-case drop), accuracy under corruptions (when
    evaluated), checks, cost, per-class accuracy, attacks."""
    points = {attack: res.points(attack) for attack in res.names}
    accuracy = Table("Accuracy (95% Wilson interval)", ["eps", *res.names, "drop (worst)", "worst set by"], [
        [f"{eps:g}",
         *(f"{p['accuracy']:.1%} [{p['ci95'][0]:.1%}, {p['ci95'][1]:.1%}]" for p in (points[a][j] for a in res.names)),
         f"{points[WORST][j]['drop']:.1%}", ", ".join(res.set_by(j)) if eps > 0 and res.ran else ""]
        for j, eps in enumerate(res.eps)])
    checks = Table("Sanity checks", ["check", "status", "message"], [[c.name, c.status, c.message] for c in res.checks])
    cost = Table("Cost (per-image passes)", ["attack", "eps", "attacked", "forwards", "backwards", "seconds"],
                 [[a, f"{eps:g}", str(c.attacked), str(c.forwards), str(c.backwards), f"{c.seconds:.2f}"]
                  for a in res.ran for eps, c in zip(res.eps, res.attacks[a].costs, strict=True) if eps > 0])
    per_class = Table("Per-class accuracy (worst case)", ["class", *(f"{e:g}" for e in res.eps)],
                      [[str(c), *(f"{a:.0%}" for a in accs)] for c, accs in res.per_class(WORST).items()])
    grid = "eps ∈ {" + ", ".join(f"{e:g}" for e in res.eps if e > 0) + "}"
    attacks = Table("Attacks (what ran)", ["name", "outcome", "configuration"],
                    [[a, _status(rec), rec.description if isinstance(rec.description, str)
                      else f"{grid}; {json.dumps(rec.description, ensure_ascii=False)}"]
                     for a, rec in res.attacks.items()])
    return [accuracy, *corruption_tables(res), *smoothing_tables(res), checks, cost, per_class, attacks]


def smoothing_tables(res: ModelResult) -> list[Table]:
    """The smoothed classifier's certified and empirical accuracy per L2 radius (no table without smoothing)."""
    if res.smoothed is None:
        return []
    info = res.smoothed.to_dict()
    s = info["settings"]
    attacked = bool(info["attacks"])
    head = ["L2 radius", "certified (95% Wilson)", *(["empirical (95% Wilson)", "refuted certificates"] if attacked
                                                    else [])]
    rows = [[f"{p['radius']:g}", f"{p['certified']:.1%} [{p['certified_ci95'][0]:.1%}, {p['certified_ci95'][1]:.1%}]",
             *([f"{p['empirical']:.1%} [{p['empirical_ci95'][0]:.1%}, {p['empirical_ci95'][1]:.1%}]",
                str(p["refuted"])] if attacked else [])] for p in info["curve"]]
    how = (f"attacked by {', '.join(info['attacks'])} with eot={s['eot']}, judged by PREDICT n={s['predict_n']}"
           if attacked else "not attacked")
    return [Table(f"Randomized smoothing, sigma={s['sigma']:g} (CERTIFY n0={s['n0']}, n={s['n']}, "
                  f"alpha={s['alpha']:g}; {how})", head, rows)]


def corruption_tables(res: ModelResult) -> list[Table]:
    """Accuracy under each corruption at each severity, with the mean per corruption and per severity
    (no table when no corruption was evaluated), and, when the suite carries a reference model's errors,
    each corruption's CE and the mCE relative to them (Hendrycks & Dietterich)."""
    if not res.corrupted:
        return []
    accuracy = res.corruption_accuracy()
    severities = [s for s, _ in next(iter(accuracy.values()))]
    ces = res.corruption_errors()
    rows = [[name, *(f"{a:.1%}" for _, a in points), f"{float(res.corrupted[name].float().mean()):.1%}",
             *([_ratio(ces[name])] if ces else [])] for name, points in accuracy.items()]
    rows.append(["mean", *(f"{a:.1%}" for _, a in res.corruption_means()), f"{res.mean_corruption_accuracy:.1%}",
                 *([_ratio(mean_corruption_error(ces))] if ces else [])])
    suite = f"{res.corruption_suite}, " if res.corruption_suite and res.corruption_suite != "advkit" else ""
    ce = ([f"CE vs {res.corruption_baseline.name}"] if ces else [])
    return [Table(f"Accuracy under corruptions ({suite}clean {res.clean_accuracy:.1%})",
                  ["corruption", *(f"severity {s}" for s in severities), "mean", *ce], rows)]


def _ratio(value: float | None) -> str:
    """A corruption error as a percentage (100%: as many errors as the baseline), or "n/a" when undefined."""
    return "n/a" if value is None else f"{value:.1%}"


def comparison_title(comparison: Comparison) -> str:
    return f"Before and after: {comparison.before.name} → {comparison.after.name}"


def comparison_tables(comparison: Comparison) -> list[Table]:
    """The defense at a glance (clean accuracy, worst case at the largest eps and averaged over the
    grid, mean accuracy under corruptions, failed checks: before, after, change), the robust accuracy per eps and attack
    (before → after, gain) and, when both were evaluated on corruptions, the accuracy per corruption.
    Changes are after minus before, in percentage points."""
    before, after = comparison.before, comparison.after
    names = [before.name, after.name]
    largest = len(comparison.eps) - 1
    worst = (before.accuracy(WORST)[largest], after.accuracy(WORST)[largest])
    means = [sum(r.accuracy(WORST)) / len(comparison.eps) for r in (before, after)]
    rows = [["clean accuracy", *_pair(before.clean_accuracy, after.clean_accuracy)],
            [f"worst case at eps {comparison.eps[largest]:g}", *_pair(*worst)],
            ["worst case, mean over the eps grid", *_pair(*means)]]
    if comparison.mean_corruption_accuracy is not None:
        rows.append(["mean accuracy under corruptions", *_pair(*comparison.mean_corruption_accuracy)])
    failed = comparison.failed_checks
    ran = {n: bool(r.checks) for n, r in zip(names, (before, after), strict=True)}
    rows.append(["failed sanity checks", *(", ".join(failed[n]) or ("none" if ran[n] else "not run") for n in names),
                 ""])
    summary = Table(f"Summary (change: {after.name} − {before.name}, in points)", ["", *names, "change"], rows)
    robust = Table("Robust accuracy: before → after (gain in points)", ["eps", *comparison.attacks], [
        [f"{eps:g}", *(_arrow(before.accuracy(a)[j], after.accuracy(a)[j]) for a in comparison.attacks)]
        for j, eps in enumerate(comparison.eps)])
    tables = [summary, robust]
    if comparison.corruptions:
        ces = comparison.corruption_errors
        tables.append(Table("Accuracy under corruptions, mean over severities; CE: the corruption error of "
                            f"{after.name} relative to {before.name} (errors summed over severities)",
                            ["corruption", *names, "change", "CE"],
                            [[c, *_pair(*comparison.corruption_accuracy(c)), _ratio(ces[c])]
                             for c in comparison.corruptions]
                            + [["mean", *_pair(*comparison.mean_corruption_accuracy),
                                _ratio(mean_corruption_error(ces))]]))
    return tables


def _pair(before: float, after: float) -> list[str]:
    return [f"{before:.1%}", f"{after:.1%}", _points(after - before)]


def _arrow(before: float, after: float) -> str:
    return f"{before:.1%} → {after:.1%} ({_points(after - before)})"


def _points(change: float) -> str:
    return f"{100 * change:+.1f}"


def _status(rec: AttackRecord) -> str:
    if rec.masked:
        return "masked: could not run (the model hides its input gradient); no curve, not in the worst case"
    return f"ran; {rec.note}" if rec.note else "ran"


#: The characters that would be Markdown in a name: backslash escapes make them plain text.
_MARKDOWN = re.compile(r"([\\`*_\[\]|~#$])")


def markdown_text(text: str) -> str:
    """``text`` (a name, a message) as Markdown that shows exactly it, on one line: no emphasis,
    link, code, table cell break or math from its characters and no raw HTML (``&<>`` as entities,
    as report.html shows them)."""
    return html.escape(_MARKDOWN.sub(r"\\\1", " ".join(text.splitlines())), quote=False)


def to_markdown(table: Table) -> str:
    """The table in Markdown, every title and cell as plain text."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(map(markdown_text, cells)) + " |"

    return "\n".join([f"### {markdown_text(table.title)}", "", line(table.header), "|" + "---|" * len(table.header),
                      *(line(r) for r in table.rows)])


def header_lines(results: Mapping[str, ModelResult], config: Mapping[str, Any], meta: Mapping[str, Any],
                 counts: Mapping[str, int]) -> list[str]:
    """The lines both reports open with: gradient-masking warnings, the configuration, the
    environment and the check counts (``counts``: passed, failed, skipped)."""
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v and k != "platform")
    masking = [f"Gradient masking on {name}: {', '.join(res.masked)} could not run (no input gradient) and have no "
               "curve; " + "; ".join(f"{a}: {rec.note}" for a, rec in res.attacks.items() if rec.note) + "."
               for name, res in results.items() if res.masked]
    setup = (f"Attacks: {', '.join(config['attacks'])}; norm {config['norm']}; "
             f"eps {', '.join(f'{e:g}' for e in config['eps'])}; {config['n']} samples; seed {config['seed']}; "
             f"{'survivors only' if config['survivors'] else 'every sample at every eps'}"
             f"{', each eps warm-started from the last' if config['warm_start'] else ', fresh starts at each eps'}.")
    suite = f" ({config['corruption_suite']})" if config.get("corruption_suite") else ""
    corruptions = ([f"Corruptions{suite}: {', '.join(config['corruptions'])}; severities 1 to 5; "
                    f"seed {config['seed']}."] if config.get("corruptions") else [])
    return [*masking, setup, *corruptions,
            f"Device: {meta['device_name']}; {versions}; {meta['seconds']:.1f} s; {meta['created']}.",
            f"Sanity checks: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped."]


def unshown_images(section: Mapping[str, Any]) -> list[Path]:
    """The section's images its Markdown does not already show (they follow the text)."""
    shown = {Path(m["src"]).name for m in IMAGE.finditer(section["markdown"])}
    return [p for p in map(Path, section["images"]) if p.name not in shown]
