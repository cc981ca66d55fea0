"""report.md and report.html are two renderings of one page model: for a fixed report (two models, a
baseline, corruptions, checks, examples, a demo section with pictures and text that needs escaping) both
stay byte for byte what they were before the page model (tests/evaluation/golden/)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advkit.evaluation.report import Report
from advkit.evaluation.results import AttackRecord, Check, Cost, Example, ModelResult

GOLDEN = Path(__file__).parent / "golden"
EPS = [0.0, 0.1, 0.2]
META = {"versions": {"advkit": "0", "torch": "2", "torchattacks": None, "python": "3", "platform": "x"},
        "device": "cpu", "device_name": "cpu (2 cores, 1 threads)", "seconds": 12.5, "created": "2026-01-01T00:00:00"}
CONFIG = {"attacks": ["pgd-10", "fgsm"], "norm": "linf", "eps": EPS, "n": 8, "seed": 0, "survivors": True,
          "warm_start": False, "corruptions": ["gaussian_noise", "fog"]}


def result(name: str, shift: int) -> ModelResult:
    n = 8
    g = torch.Generator().manual_seed(shift)
    clean = torch.arange(n) % 4 != shift
    robust = lambda: clean[:, None] & (torch.rand(n, len(EPS), generator=g) > 0.3)  # noqa: E731
    costs = [Cost(), Cost(6, 60, 54, 0.25), Cost(4, 40, 36, 0.5)]
    attacks = {"pgd-10": AttackRecord("pgd-10", "PGD(eps=..., steps=10)", robust(), costs),
               "fgsm": AttackRecord("fgsm", {"steps": 1, "why": "a <b> & c"}, robust(), costs, note="added *here*"),
               "cw": AttackRecord("cw", "CW()", None, [], masked="no input gradient")}
    checks = [Check("clean accuracy", True, "ok", model=name), Check("stronger attack", False, "pgd-100 < pgd_10 |x|",
                                                                     model=name),
              Check("gradient-free", True, "skipped: no budget", skipped=True, model=name)]
    examples = [Example(0, 1, 1, torch.zeros(1, 2, 2), torch.ones(1, 2, 2), 3, "pgd-10", 0.1, True)]
    corrupted = {c: torch.rand(n, 5, generator=g) > 0.4 for c in CONFIG["corruptions"]}
    return ModelResult(name, EPS, torch.arange(n) % 3, clean, 3, attacks, checks, examples, {}, corrupted)


@pytest.fixture
def report(tmp_path):
    rep = Report([result("before", 0), result("after <v2>", 1)], CONFIG, META, baseline="before")
    picture = tmp_path / "src" / "fig.png"
    picture.parent.mkdir()
    picture.write_bytes(b"section picture")
    (tmp_path / "src" / "curve.png").write_bytes(b"clashes with the report's curve")
    rep.add_section("Defense: *pgd*", "Trained <b>well</b>: `a<b`, **strong**, _em_.\n\n- one\n- two\n\n"
                    "| a | b |\n|---|---|\n| 1 | 2 |\n\n![the fig](fig.png)", [picture, tmp_path / "src" / "curve.png"])
    rep.add_section("Plain", "1. first\n2. second\n\n## Sub\n\ntext", [])
    return rep


def pictures(report: Report, folder: Path) -> Path:
    """The report's picture files in ``folder``, each holding its name's bytes (stand-ins for the plots)."""
    folder.mkdir()
    names = [n for n in report.file_names() if not n.startswith("report.")]
    files = {name: data for s in report.saved_sections() for name, data in s["files"].items()}
    for name in names:
        (folder / name).write_bytes(files.get(name, name.encode()))
    return folder


def test_markdown_is_unchanged(report):
    assert report.markdown() == (GOLDEN / "report.md").read_text(encoding="utf-8")


def test_html_is_unchanged(report, tmp_path):
    folder = pictures(report, tmp_path / "out")
    assert report.html(folder) == (GOLDEN / "report.html").read_text(encoding="utf-8")
