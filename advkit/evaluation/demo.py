"""``advkit demo``, the main job: train a SmallCNN on the embedded MNIST-5k, evaluate it, write
the report folder. Later parts add their sections: a module in :data:`SECTION_PROVIDERS` that
defines ``demo_section(out_dir, quick, seed) -> {"title", "markdown", "images"}`` is called and
its section lands in the same report.
"""
from __future__ import annotations

import importlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import load
from ..models import SmallCNN
from ..train import accuracy, default_device, fit
from .evaluate import evaluate
from .report import Report

log = logging.getLogger(__name__)

#: Modules asked for a demo section, in report order (defenses will join the GAN part here).
SECTION_PROVIDERS: tuple[str, ...] = ("advkit.gan",)


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of one demo run: the full one fits 5 minutes on 2 CPU cores, the quick one 1 minute.
    (AutoAttack joins on a GPU only: on a CPU its APGD-T and FAB-T alone take longer than that.)"""

    epochs: int
    n: int
    eps: tuple[float, ...]
    pgd_steps: int
    probe: int
    queries: int


FULL = DemoConfig(epochs=8, n=500, eps=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), pgd_steps=40, probe=64, queries=500)
QUICK = DemoConfig(epochs=2, n=200, eps=(0.0, 0.05, 0.1, 0.2, 0.3), pgd_steps=10, probe=32, queries=200)


def run_demo(out_dir: str | Path, quick: bool = False, seed: int = 0, device: str | torch.device | None = None,
             progress: bool = True) -> Report:
    """Train, evaluate, add the later parts' sections, save into ``out_dir`` (as a whole, see
    :meth:`Report.save`); returns the saved report."""
    cfg = QUICK if quick else FULL
    out = Path(out_dir)
    device = default_device(device)
    t0 = time.perf_counter()
    train, test = load("mnist5k", seed=seed)
    torch.manual_seed(seed)
    model = SmallCNN()
    fit(model, train, epochs=cfg.epochs, seed=seed, device=device, progress=progress)
    log.info("trained SmallCNN in %.1f s: test accuracy %.3f", time.perf_counter() - t0, accuracy(model, test))
    attacks = ["fgsm", f"pgd-{cfg.pgd_steps}"]
    if device.type == "cuda":  # AutoAttack on ~1,000 samples is beyond the CPU time budget
        attacks.append("autoattack")
    report = evaluate({"standard": model}, test, attacks=attacks, eps=cfg.eps, n=cfg.n, device=device, seed=seed,
                      progress=progress, probe=cfg.probe, queries=cfg.queries)
    report.meta["train_seconds"] = time.perf_counter() - t0 - report.meta["seconds"]
    with tempfile.TemporaryDirectory(prefix="advkit-demo-sections-") as scratch:  # the report keeps the images
        for section in extra_sections(Path(scratch), quick, seed):
            report.add_section(section["title"], section["markdown"], section.get("images", ()))
    report.save(out)
    return report


def extra_sections(out: Path, quick: bool, seed: int) -> list[dict[str, Any]]:
    """The sections of every provider module that is installed and defines ``demo_section``; their
    images are written into ``out`` (a scratch folder: the report copies them into its own)."""
    sections = []
    for name in SECTION_PROVIDERS:
        try:
            provider = importlib.import_module(name).demo_section
        except (ImportError, AttributeError):
            log.info("demo: no section from %s", name)
            continue
        sections.append(provider(out, quick, seed))
    return sections
