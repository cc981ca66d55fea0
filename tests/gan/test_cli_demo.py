"""``advkit gan`` run in-process with tiny settings, and the GAN section of ``advkit demo``."""
from __future__ import annotations

import argparse
import json
import re

import pytest

from advkit.app import cli as advkit_cli
from advkit.app import gan_cli as cli
from advkit.app import gan_demo as demo

#: The tiny run's options, on the CPU (without --device a visible GPU would run it).
TINY_OPTIONS = {"--data": "digits", "--steps": "4", "--width": "4", "--latent-dim": "4", "--batch-size": "32",
                "--checkpoint-every": "2", "--device": "cpu"}


def tiny(**changes: str) -> list[str]:
    """The tiny run's command line, options changed by keyword (``steps="6"`` for ``--steps 6``)."""
    options = {**TINY_OPTIONS, **{"--" + k.replace("_", "-"): v for k, v in changes.items()}}
    return [*(part for item in options.items() for part in item), "--no-progress"]


TINY = tiny()


def gan_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["gan", *argv])


def test_gan_command_defaults_are_the_trainer_options():
    from advkit.gan.options import DEFAULTS  # the one place the trainer's defaults are written

    args = gan_args()
    defaults = {"loss": args.loss, "n_critic": args.n_critic, "lr_g": args.lr_g, "lr_d": args.lr_d,
                "seed": args.seed, "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile}
    assert defaults == {name: DEFAULTS[name] for name in defaults}


def test_gan_command_writes_samples_metrics_and_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    assert advkit_cli.main(["gan", *TINY, "--conditional", "class", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["steps"] == 4 and len(report["final_d_loss"]) == 1
    assert report["options"]["conditional"] == "class" and report["options"]["device"] == "cpu"
    metrics = report["metrics"]
    assert (0 <= metrics["conditional_accuracy"] <= 1 and metrics["classes_covered"] <= 10
            and metrics["spread_ratio"] > 0)
    assert json.loads(capsys.readouterr().out) == metrics  # stdout carries the metrics as JSON, nothing else
    for name in ("samples_0000002.png", "samples_0000004.png", "samples_final.png", "losses.png", "classifier.pt"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(int(p.stem.rsplit("-", 1)[1]) for p in (out / "checkpoints").glob("gan-*.pt")) == [2, 4]

    # the same folder again: a fresh run refuses it; --resume continues the run there
    with pytest.raises(ValueError, match=r"holds checkpoints of another run \(gan-.*\.pt\); a new run will not"):
        cli.run(gan_args(*TINY, "--conditional", "class", "--out", str(out)))
    assert cli.run(gan_args(*tiny(steps="6"), "--conditional", "class", "--resume", "--out", str(out))) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6


@pytest.mark.parametrize("change,message", [
    ({"width": "0"}, "width must be a positive integer"),
    ({"latent_dim": "0"}, "latent_dim must be a positive integer"),
    ({"checkpoint_every": "0"}, "checkpoint_every must be a finite integer >= 1"),
    ({"steps": "-1"}, "--steps must be an integer >= 1, got -1"), ({"steps": "0"}, "--steps must be an integer >= 1"),
    ({"lr_g": "nan"}, "lr_g must be a finite number > 0"),
])
def test_gan_command_mistakes_are_value_errors(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        cli.run(gan_args(*tiny(**change), "--out", str(tmp_path / "run")))
    assert not list(tmp_path.rglob("*.pt"))  # refused before any training


def test_gan_command_resume_with_nothing_to_resume(tmp_path):
    with pytest.raises(FileNotFoundError, match="no gan checkpoint to resume from"):
        cli.run(gan_args(*TINY, "--resume", "--out", str(tmp_path / "run")))


@pytest.mark.slow  # the ring GAN's 2,000 steps
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quick_demo_section_shows_the_ring_with_its_modes(tmp_path, seed):
    """The recipe's GAN (RING_RECIPE, non-saturating) covers the ring of 8 Gaussians, and the section shows
    it. Measured over seeds 0-5 (the demo seeds its data too): 8 modes covered, 87-95% of the samples on a
    mode, so the bars hold for any seed with a wide margin. (Hinge with the same learning rates collapses
    on 3 of 10 seeds; it has its formula, reliability and sharding tests.)"""
    section = demo.demo_section(tmp_path, quick=True, seed=seed, progress=False)
    assert section["title"] == demo.TITLE
    assert all((tmp_path / name).stat().st_size > 0 for name in ("gan_ring.png", "gan_losses.png"))
    assert section["images"] == [str(tmp_path / "gan_ring.png"), str(tmp_path / "gan_losses.png")]
    covered = int(re.search(r"modes covered: (\d) of 8", section["markdown"]).group(1))
    on_mode = float(re.search(r"samples on a mode: ([\d.]+)%", section["markdown"]).group(1))
    assert covered >= 7 and on_mode >= 70, (covered, on_mode)
    assert "![" not in section["markdown"]  # the report shows the images; the text does not link them again


@pytest.mark.slow
def test_full_demo_section_reports_its_quality_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DIGIT_STEPS", 3)  # the structure of the full section, not its quality
    monkeypatch.setattr(demo, "JUDGE_EPOCHS", 1)
    monkeypatch.setattr(demo, "DIGIT_WIDTH", 4)
    section = demo.demo_section(tmp_path, quick=False, seed=0, progress=False)
    text = section["markdown"]
    for pattern in (r"reads the digit asked for in [\d.]+% of the samples", r"classes covered: \d+ of 10",
                    r"within-class spread .*: [\d.]+x that of real test digits",
                    r"classifier-FID: [\d.]+ against [\d.]+", r"test accuracy [\d.]+%", r"for 3 generator steps"):
        assert re.search(pattern, text), pattern
    assert all((tmp_path / name).stat().st_size > 0 for name in ("gan_samples.png", "gan_losses.png"))
