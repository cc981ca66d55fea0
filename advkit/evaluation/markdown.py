"""report.md: the report's tables in Markdown, with the plot and pictures linked."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .plot import examples_file
from .tables import model_tables, to_markdown

if TYPE_CHECKING:
    from .report import Report


def header_lines(report: "Report") -> list[str]:
    """Configuration, environment and check counts: the lines both the Markdown and HTML reports open with."""
    cfg, meta, counts = report.config, report.meta, report.check_counts
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v and k != "platform")
    return [
        f"Attacks: {', '.join(cfg['attacks'])}; norm {cfg['norm']}; eps {', '.join(f'{e:g}' for e in cfg['eps'])}; "
        f"{cfg['n']} samples; seed {cfg['seed']}; {'survivors only' if cfg['survivors'] else 'every sample at every eps'}"
        f"{', each eps warm-started from the last' if cfg['warm_start'] else ', fresh starts at each eps'}.",
        f"Device: {meta['device_name']}; {versions}; {meta['seconds']:.1f} s; {meta['created']}.",
        f"Sanity checks: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped.",
    ]


def render(report: "Report") -> str:
    out = ["# advkit robustness report", "", *header_lines(report), "", "![accuracy versus eps](curve.png)", ""]
    for name, res in report.results.items():
        out += [f"## {name}: clean accuracy {res.clean_accuracy:.1%}", ""]
        for table in model_tables(res):
            out += [to_markdown(table), ""]
        if res.examples:
            out += [f"![examples]({examples_file(name)})", ""]
    for section in report.sections:
        out += [f"## {section['title']}", "", section["markdown"], ""]
        out += [f"![{p.name}]({p.name})" for p in map(Path, section["images"])] + [""]
    return "\n".join(out)

