"""Figures for reports, drawn with matplotlib's object API (no pyplot state, no display needed).

Names (models, attacks, corruptions) are shown as they are: every text that can hold one is drawn
without matplotlib's math parsing (a ``$`` is a dollar sign), and legend entries are passed
explicitly (a name that starts with ``_`` is not hidden)."""
from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from ..figures import new_figure
from .results import WORST, Example, ModelResult

if TYPE_CHECKING:  # matplotlib is imported when the first figure is drawn, not with advkit
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

_STYLES = ("-", "--", ":", "-.")
#: The file name of the report's plot of accuracy under corruptions.
CORRUPTIONS_FILE = "corruptions.png"
#: The file name of the report's before/after plot (a report with a baseline).
COMPARISON_FILE = "comparison.png"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def curve_figure(results: Sequence[ModelResult], norm: str) -> Figure:
    """Accuracy versus eps: one colour and marker per attack, one line style per model; the worst
    case underneath as a broad translucent black line with its 95% Wilson band (so an attack
    that equals it stays visible on top), and each model's clean accuracy as a grey level. Every
    element is in the legend, the clean levels too (no labels on the plot to collide)."""
    fig = new_figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    attacks = list(dict.fromkeys(a for r in results for a in r.ran))
    colours = {a: f"C{i}" for i, a in enumerate(attacks)}
    markers = {a: _MARKERS[i % len(_MARKERS)] for i, a in enumerate(attacks)}
    legend: list[Artist] = []
    for m, res in enumerate(results):
        style, prefix = _STYLES[m % len(_STYLES)], f"{res.name}: " if len(results) > 1 else ""
        worst = res.points(WORST)
        legend += [ax.fill_between(res.eps, [p["ci95"][0] for p in worst], [p["ci95"][1] for p in worst],
                                   color="black", alpha=0.10, lw=0, zorder=1,
                                   label=prefix + "worst case, 95% interval"),
                   *ax.plot(res.eps, [p["accuracy"] for p in worst], style, color="black", lw=5, alpha=0.3, zorder=2,
                            label=prefix + "worst case"),
                   ax.axhline(res.clean_accuracy, ls=style, color="grey", lw=0.8, zorder=1,
                              label=f"{prefix}clean {res.clean_accuracy:.1%}")]
        for attack in res.ran:
            legend += ax.plot(res.eps, res.accuracy(attack), style, marker=markers[attack], ms=4, lw=1.3,
                              color=colours[attack], zorder=3, label=prefix + attack)
        legend += smoothing_lines(ax, res, style, prefix)
    return _finish(fig, ax, f"eps ({norm})", "Robust accuracy versus perturbation size", "upper right", legend)


def smoothing_lines(ax, res: ModelResult, style: str, prefix: str) -> list[Artist]:
    """The smoothed classifier's certified accuracy at each radius and its
    empirical accuracy under attack, when the model was evaluated with smoothing."""
    if res.smoothed is None:
        return []
    sigma = res.smoothed.options.sigma
    radii, certified = zip(*res.smoothed.certified_curve(), strict=True)
    lines = ax.plot(radii, certified, style, marker="*", ms=7, lw=1.8, color="darkgreen", zorder=4,
                    label=f"{prefix}smoothed sigma={sigma:g}, certified")
    empirical = res.smoothed.empirical_curve()
    if empirical is not None:
        lines += ax.plot(radii, [a for _, a in empirical], style, marker="x", ms=6, lw=1.5, color="purple", zorder=4,
                         label=f"{prefix}smoothed sigma={sigma:g}, attacked")
    return lines


def comparison_figure(before: ModelResult, afters: Sequence[ModelResult], norm: str) -> Figure:
    """Worst-case accuracy versus eps of the baseline ``before`` and of each model in ``afters`` on one
    plot: one colour per model, each with its 95% Wilson band and its clean accuracy as a dashed level,
    and the area between the baseline's curve and each other's hatched (the robust gain)."""
    fig = new_figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    base = [p["accuracy"] for p in before.points(WORST)]
    legend: list[Artist] = []
    for m, res in enumerate([before, *afters]):
        colour, worst = f"C{m}", res.points(WORST)
        accuracy = [p["accuracy"] for p in worst]
        ax.fill_between(res.eps, [p["ci95"][0] for p in worst], [p["ci95"][1] for p in worst], color=colour,
                        alpha=0.12, lw=0, zorder=1)
        if m:
            legend.append(ax.fill_between(res.eps, base, accuracy, facecolor="none", edgecolor=colour, hatch="///",
                                          alpha=0.4, lw=0, zorder=1, label=f"gain of {res.name} over {before.name}"))
        legend += [*ax.plot(res.eps, accuracy, "-", marker=_MARKERS[m % len(_MARKERS)], ms=4, lw=2, color=colour,
                            zorder=3, label=f"{res.name}: worst case (95% band)"),
                   ax.axhline(res.clean_accuracy, ls="--", color=colour, lw=0.8, zorder=2,
                              label=f"{res.name}: clean {res.clean_accuracy:.1%}")]
    return _finish(fig, ax, f"eps ({norm})", "Before and after: worst-case accuracy versus perturbation size",
                   "lower left", legend)


def corruption_figure(results: Sequence[ModelResult]) -> Figure:
    """Accuracy versus corruption severity (0: clean): one colour and marker per corruption, one line
    style per model, and each model's mean over the corruptions as a broad translucent black line."""
    fig = new_figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(c for r in results for c in r.corrupted))
    legend: list[Artist] = []
    for m, res in enumerate(r for r in results if r.corrupted):
        style, prefix = _STYLES[m % len(_STYLES)], f"{res.name}: " if len(results) > 1 else ""
        means = res.corruption_means()
        severities = [0, *(s for s, _ in means)]
        legend += ax.plot(severities, [res.clean_accuracy, *(a for _, a in means)], style, color="black", lw=5,
                          alpha=0.3, zorder=2, label=prefix + "mean")
        for name, points in res.corruption_accuracy().items():
            k = names.index(name)
            legend += ax.plot(severities, [res.clean_accuracy, *(a for _, a in points)], style,
                              marker=_MARKERS[k % len(_MARKERS)], ms=4, lw=1.3, color=f"C{k}", zorder=3,
                              label=prefix + name)
    return _finish(fig, ax, "severity (0: clean)", "Accuracy under corruptions", "lower left", legend)


def examples_figure(examples: Sequence[Example], title: str) -> Figure:
    """Columns of samples; rows: clean image, adversarial image, perturbation amplified to the full
    grey range (mid-grey = unchanged), each framed and captioned with the model's prediction (red where
    the attack fooled it). The grid is one image on one axes, far quicker to draw than a grid of axes."""
    from matplotlib.patches import Rectangle

    cols = max(1, len(examples))
    rows = [[], [], []]
    captions, red = [], []
    for ex in examples:
        adv = ex.x if ex.x_adv is None else ex.x_adv
        delta = adv - ex.x
        amplified = (0.5 + delta / (2 * float(delta.abs().max()))) if bool(delta.any()) else torch.full_like(delta, 0.5)
        verdict = ("not attacked" if ex.x_adv is None
                   else (f"{ex.attack} {ex.eps:g}" if ex.fooled else f"robust {ex.eps:g}"))
        for row, img in zip(rows, (ex.x, adv, amplified), strict=True):
            row.append(_pixels(img))
        captions.append((f"y={ex.label} pred {ex.clean_pred}", f"pred {ex.adv_pred}\n{verdict}", "perturbation"))
        red.append(ex.fooled)
    fig = new_figure(figsize=(1.3 * cols, 4.4), dpi=100)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
    ax.axis("off")
    if examples:
        h, w = rows[0][0].shape[:2]
        gap_x, gap_y = round(0.15 * max(h, w)), round(0.45 * max(h, w))  # the captions sit in the gaps above
        grid = torch.ones(3 * (h + gap_y) + gap_x, cols * (w + gap_x), *rows[0][0].shape[2:])  # white around
        for r, row in enumerate(rows):
            for c, img in enumerate(row):
                top, left = r * (h + gap_y) + gap_y, c * (w + gap_x) + gap_x // 2
                grid[top:top + h, left:left + w] = img
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, lw=0.6, edgecolor="black"))
                ax.text(left + w / 2, top - 0.08 * gap_y, captions[c][r], ha="center", va="bottom", fontsize=7,
                        color="crimson" if r == 1 and red[c] else "black", parse_math=False)
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    fig.suptitle(title, fontsize=9, parse_math=False)
    return fig


def _pixels(img: torch.Tensor) -> torch.Tensor:
    """``img`` in [0, 1] as ``imshow`` takes it: (H, W) grey, (H, W, 3) colour, or a row for a flat input."""
    arr = img.detach().float().cpu().clamp(0, 1)
    if arr.ndim == 3:
        return arr[0] if arr.shape[0] == 1 else arr.permute(1, 2, 0)
    return arr.view(1, -1)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def example_files(models: Iterable[str]) -> dict[str, str]:
    """The file name of each model's example grid: ``examples_<name>.png`` with the name made
    file-safe (letters, digits and ``_.-``, at most 60 of them) and, where that gives two models
    one name (``"a b"`` and ``"a_b"``; also names that differ only in case, one file on a
    case-insensitive disk), ``-2``, ``-3``, ... added in the models' order."""
    files: dict[str, str] = {}
    taken: set[str] = set()
    for model in models:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[:60]
        file, k = f"examples_{stem}.png", 1
        while file.casefold() in taken:
            k += 1
            file = f"examples_{stem}-{k}.png"
        taken.add(file.casefold())
        files[model] = file
    return files


def _finish(fig: Figure, ax, xlabel: str, title: str, loc: str, legend: Sequence[Artist]) -> Figure:
    """The accuracy axes' common dressing (labels, range, grid, the ``legend`` entries with their
    labels shown literally) and layout."""
    ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.grid(alpha=0.3)
    for text in ax.legend(legend, [artist.get_label() for artist in legend], fontsize=7, loc=loc).get_texts():
        text.set_parse_math(False)
    fig.tight_layout()
    return fig
