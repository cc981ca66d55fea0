"""report.md: the report's tables in Markdown, with the plot and pictures linked."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .plot import examples_file
from .tables import model_tables, to_markdown

if TYPE_CHECKING:
    from .report import Report

#: A Markdown image, ``![alt](source)``.
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def unshown_images(section: dict) -> list[Path]:
    """The section's images its Markdown does not already show (they follow the text)."""
    shown = {Path(m["src"]).name for m in IMAGE.finditer(section["markdown"])}
    return [p for p in map(Path, section["images"]) if p.name not in shown]


def header_lines(report: Report) -> list[str]:
    """Configuration, environment and check counts: the lines both the Markdown and HTML reports open with."""
    cfg, meta, counts = report.config, report.meta, report.check_counts
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v and k != "platform")
    masking = [f"Gradient masking on {name}: {', '.join(res.masked)} could not run (no input gradient) and have no "
               "curve; " + "; ".join(f"{a}: {rec.note}" for a, rec in res.attacks.items() if rec.note) + "."
               for name, res in report.results.items() if res.masked]
    return [*masking,
        (f"Attacks: {', '.join(cfg['attacks'])}; norm {cfg['norm']}; eps {', '.join(f'{e:g}' for e in cfg['eps'])}; "
        f"{cfg['n']} samples; seed {cfg['seed']}; {'survivors only' if cfg['survivors'] else 'every sample at every eps'}"
        f"{', each eps warm-started from the last' if cfg['warm_start'] else ', fresh starts at each eps'}."),
        f"Device: {meta['device_name']}; {versions}; {meta['seconds']:.1f} s; {meta['created']}.",
        f"Sanity checks: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped.",
    ]


def render(report: Report) -> str:
    out = ["# advkit robustness report", "", *header_lines(report), "", "![accuracy versus eps](curve.png)", ""]
    for name, res in report.results.items():
        out += [f"## {name}: clean accuracy {res.clean_accuracy:.1%}", ""]
        for table in model_tables(res):
            out += [to_markdown(table), ""]
        if res.examples:
            out += [f"![examples]({examples_file(name)})", ""]
    for section in report.sections:
        out += [f"## {section['title']}", "", section["markdown"], ""]
        out += [f"![{p.name}]({p.name})" for p in unshown_images(section)] + [""]
    return "\n".join(out)

