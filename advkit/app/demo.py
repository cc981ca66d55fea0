"""``advkit demo``, the main job: train a SmallCNN on the embedded MNIST-5k, defend a copy of it with
fast adversarial training, evaluate both in one report (the standard model as the baseline, so the
curves share a plot and the report shows the robust gain), write the report folder. Later parts add
their sections: a module in :data:`SECTION_PROVIDERS` that
defines ``demo_section(out_dir, quick, seed, progress) -> {"title", "markdown", "images"}`` is called
and its section lands in the same report.
Each long phase announces itself and its result on one line (``[2/3] ...``).
"""
from __future__ import annotations

import copy
import importlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import load
from ..defenses import adversarial_training
from ..devices import default_device
from ..evaluation.evaluate import evaluate
from ..evaluation.report import Report
from ..evaluation.results import ModelResult
from ..evaluation.specs import DEFAULT_ATTACKS, with_steps
from ..models import SmallCNN
from ..outputs import save_or_rescue
from ..train import accuracy, fit

log = logging.getLogger(__name__)

#: Modules asked for a demo section, in report order (the defense is part of the main job: it needs its model).
SECTION_PROVIDERS: tuple[str, ...] = ("advkit.app.gan_demo",)


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of one demo run: the full one fits 5 minutes on 2 CPU cores, the quick one 1 minute.
    (AutoAttack joins on a GPU only: on a CPU its APGD-T and FAB-T alone take longer than that.)
    The defense is ``defense_epochs`` of FGSM-RS at ``defense_eps``, starting from the standard model. The
    curves are the default attacks (:data:`~advkit.evaluation.specs.DEFAULT_ATTACKS`), with
    ``attack_steps`` steps where set (the quick run's); ``pgd_steps`` is the PGD that AdvGAN is set beside;
    AdvGAN trains ``advgan_steps`` steps of ``advgan_batch`` images."""

    epochs: int
    n: int
    eps: tuple[float, ...]
    pgd_steps: int
    probe: int
    queries: int
    defense_epochs: int = 2
    defense_eps: float = 0.2
    advgan_steps: int = 300
    advgan_batch: int = 128
    attack_steps: int | None = None


FULL = DemoConfig(epochs=8, n=500, eps=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), pgd_steps=40, probe=64, queries=500)
QUICK = DemoConfig(epochs=2, n=200, eps=(0.0, 0.05, 0.1, 0.2, 0.3), pgd_steps=10, probe=32, queries=200,
                   defense_epochs=1, advgan_steps=60, advgan_batch=64, attack_steps=10)
#: The names of the two models in the demo's report.
STANDARD, DEFENDED = "standard", "defended"


def run_demo(out_dir: str | Path, quick: bool = False, seed: int = 0, device: str | torch.device | None = None,
             progress: bool = True) -> Report:
    """Train, evaluate, add the later parts' sections, save into ``out_dir`` (as a whole, see
    :meth:`Report.save`; when that fails, into a rescue folder, and :class:`advkit.outputs.OutputError`
    says where); returns the saved report. With ``progress`` each phase prints a start and an
    end line (through tqdm, beside its bars) on stderr; without, the lines are logged at INFO."""
    cfg = QUICK if quick else FULL
    out = Path(out_dir)
    device = default_device(device)
    providers = section_providers()
    phases = PhaseLog(4 + len(providers), progress)
    t0 = time.perf_counter()
    phases.start(f"training a SmallCNN on mnist5k ({cfg.epochs} epochs, {device.type})")
    train, test = load("mnist5k", seed=seed)
    torch.manual_seed(seed)
    model = SmallCNN()
    fit(model, train, epochs=cfg.epochs, seed=seed, device=device, progress=progress)
    phases.end(f"trained: test accuracy {accuracy(model, test):.1%}")
    phases.start(f"defending a copy: fast adversarial training (FGSM-RS) at eps {cfg.defense_eps:g}, "
                 f"{cfg.defense_epochs} epochs")
    defended = defend(model, train, cfg, seed, device, progress)
    phases.end(f"defended: test accuracy {accuracy(defended, test):.1%}")
    attacks = with_steps(DEFAULT_ATTACKS, cfg.attack_steps)
    if device.type == "cuda":  # AutoAttack on ~1,000 samples is beyond the CPU time budget
        attacks.append("autoattack")
    phases.start(f"robustness curves of both: {', '.join(attacks)} at {len(cfg.eps)} eps on {cfg.n} test digits, "
                 f"then the sanity checks on {cfg.probe}")
    report = evaluate({STANDARD: model, DEFENDED: defended}, test, attacks=attacks, eps=cfg.eps, n=cfg.n,
                      device=device, seed=seed, progress=progress, probe=cfg.probe, queries=cfg.queries,
                      baseline=STANDARD)
    statuses = [c.status for c in report.checks]
    grid = report.config["eps"]
    shown = max(0, sum(e <= cfg.defense_eps for e in grid) - 1)  # the largest eps of the grid up to the defense's
    gain = report.comparisons[DEFENDED].robust_gain()[shown]
    phases.end(f"evaluated: worst case at eps {grid[shown]:g} {100 * gain:+.0f} points after the defense "
               f"({set_by(report[DEFENDED], shown)}); "
               f"{statuses.count('pass')} checks passed, {statuses.count('FAIL')} failed, "
               f"{statuses.count('skip')} skipped")
    report.meta["train_seconds"] = time.perf_counter() - t0 - report.meta["seconds"]
    eps = max(report.config["eps"])
    phases.start(f"AdvGAN: a generator trained {cfg.advgan_steps} steps to attack the standard model at eps {eps:g}")
    section = advgan_section(model, train, test, cfg, eps, seed, device, progress)
    report.add_section(section["title"], section["markdown"])
    phases.end(section["summary"])
    with tempfile.TemporaryDirectory(prefix="advkit-demo-sections-") as scratch:  # the report keeps the images
        for name, provider in providers:
            phases.start(f"{name.rsplit('.', 1)[-1].upper()} section ({name}.demo_section)")
            section = provider(Path(scratch), quick, seed, progress=progress)
            report.add_section(section["title"], section["markdown"], section.get("images", ()))
            phases.end(f"{section['title']}: done")
    save_or_rescue(out, report.save, "the demo's report", "demo")
    return report


def set_by(result: ModelResult, j: int) -> str:
    """Which attack sets ``result``'s worst case at grid point ``j``: the one with the lowest accuracy
    there (the first on ties), with each attack's accuracy, ``"set by apgd: apgd 57.6%, fgsm 80.2%"``."""
    accuracy = {name: result.accuracy(name)[j] for name in result.ran}
    return f"set by {result.set_by(j)[0]}: " + ", ".join(f"{name} {100 * accuracy[name]:.1f}%"
                                                        for name in sorted(accuracy, key=accuracy.get))


def defend(model: torch.nn.Module, train, cfg: DemoConfig, seed: int, device: torch.device,
           progress: bool) -> torch.nn.Module:
    """A copy of ``model`` trained from its weights by FGSM-RS (fast adversarial training, with its
    overfitting guard) at ``cfg.defense_eps`` for ``cfg.defense_epochs``; ``model`` is untouched."""
    defended, _ = adversarial_training(copy.deepcopy(model), train, method="fgsm-rs", eps=cfg.defense_eps,
                                       epochs=cfg.defense_epochs, seed=seed, device=device, progress=progress)
    return defended


def advgan_section(model: torch.nn.Module, train, test, cfg: DemoConfig, eps: float, seed: int,
                   device: torch.device, progress: bool) -> dict[str, str]:
    """AdvGAN (a perturbation generator, one forward pass per attack) trained against ``model``, then its
    accuracy and crafting time per image on the first ``cfg.n`` test digits beside PGD's: the report
    section (``title``, ``markdown``) and a one-line ``summary``."""
    from ..attacks import PGD, AdvGAN

    x, y = (t[:cfg.n].to(device) for t in test.tensors)
    atk = AdvGAN(model.to(device), eps=eps)
    started = time.perf_counter()
    atk.fit(train, steps=cfg.advgan_steps, batch_size=cfg.advgan_batch, seed=seed, progress=progress)
    trained = time.perf_counter() - started
    rows = []
    for name, attack in ((f"AdvGAN ({cfg.advgan_steps} steps)", atk),
                         (f"PGD-{cfg.pgd_steps}", PGD(model, eps, steps=cfg.pgd_steps, seed=seed)),
                         (f"PGD-{cfg.pgd_steps}, every step", PGD(model, eps, steps=cfg.pgd_steps, seed=seed,
                                                                  early_stop=False))):
        started = time.perf_counter()
        fooled = attack.run(x, y).success
        rows.append((name, 1 - float(fooled.float().mean()), (time.perf_counter() - started) / len(x)))
    table = "\n".join(["| attack | accuracy | ms per image | vs AdvGAN |", "|---|---|---|---|"] +
                      [f"| {n} | {100 * a:.1f}% | {1e3 * s:.2f} | {s / rows[0][2]:.1f}x |" for n, a, s in rows])
    markdown = (f"AdvGAN (Xiao et al. 2018) trains a generator `G(x) -> delta` against the standard model with "
                f"the GAN trainer ({cfg.advgan_steps} steps, {trained:.0f} s here); an attack is then one "
                f"forward pass. On the first {len(x)} test digits (never seen in training), at eps {eps:g}:\n\n"
                + table)
    summary = (f"AdvGAN leaves {100 * rows[0][1]:.1f}% accuracy ({rows[1][0]}: {100 * rows[1][1]:.1f}%), "
               f"crafting {rows[2][2] / rows[0][2]:.0f}x faster than {rows[2][0]}")
    return {"title": "AdvGAN: an attack in one forward pass", "markdown": markdown, "summary": summary}


class PhaseLog:
    """Numbered one-line announcements of a run's long phases and how long each took."""

    def __init__(self, total: int, enabled: bool, say: Callable[[str], None] | None = None):
        self.total, self.index, self.started = total, 0, time.perf_counter()
        self.say = say or ((lambda line: tqdm.write(line, file=sys.stderr)) if enabled else log.info)

    def start(self, what: str) -> None:
        self.index += 1
        self.started = time.perf_counter()
        self.say(f"[{self.index}/{self.total}] {what} ...")

    def end(self, result: str) -> None:
        self.say(f"[{self.index}/{self.total}] {result} ({time.perf_counter() - self.started:.0f} s)")


def section_providers() -> list[tuple[str, Callable[..., dict[str, Any]]]]:
    """``(module name, demo_section)`` of every provider module that is installed and defines it."""
    found = []
    for name in SECTION_PROVIDERS:
        try:
            found.append((name, importlib.import_module(name).demo_section))
        except (ImportError, AttributeError):
            log.info("demo: no section from %s", name)
    return found
