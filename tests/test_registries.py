"""Each idea has one registry, and the commands read it: a registered extra entry shows up in the
command's choices and help, and each registry's name says what it holds."""
from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

import advkit
from advkit.defenses import registry
from advkit.defenses.methods import TRAINING_METHODS
from advkit.gan import losses as gan_losses

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from one_line import fails  # noqa: E402


def help_of(command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """``advkit COMMAND --help`` (run as ``python -m advkit``), its lines joined by single spaces."""
    monkeypatch.setattr(sys, "argv", ["advkit", command, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("advkit", run_name="__main__")
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def choices(text: str, flag: str) -> list[str]:
    """The choices ``--help`` lists for ``flag``."""
    return re.search(re.escape(flag) + r" \{([^}]*)\}", text).group(1).split(",")


def test_defend_offers_the_defenses_registry(capsys, monkeypatch):
    assert choices(help_of("defend", capsys, monkeypatch), "--method") == list(registry.DEFENSES)
    assert set(registry.DEFENSES) == set(TRAINING_METHODS) | {"finetune", "augment", "gaussian"}


def test_a_registered_defense_shows_up_in_defend(capsys, monkeypatch):
    extra = registry.Defense("free", "Shafahi et al.'s free adversarial training", checkpointed=False)
    monkeypatch.setitem(registry.DEFENSES, "free", extra)
    text = help_of("defend", capsys, monkeypatch)
    assert choices(text, "--method") == [*TRAINING_METHODS, "finetune", "augment", "gaussian", "free"]
    assert "free (Shafahi et al.'s free adversarial training)." in text
    assert f"checkpoint the defense ({', '.join([*TRAINING_METHODS, 'finetune'])}) there" in text  # not free


def test_defend_checks_read_the_registry(capsys, monkeypatch):
    line = fails(["defend", "--method", "augment", "--checkpoint-dir", "ckpt"], capsys)
    assert f"--checkpoint-dir and --resume work with --method {', '.join([*TRAINING_METHODS, 'finetune'])}, " \
           f"not augment" in line
    monkeypatch.setitem(registry.DEFENSES, "augment", registry.Defense("augment", "corruptions", adversarial=True))
    line = fails(["defend", "--method", "augment", "--eps", "0"], capsys)
    assert "--eps must be > 0 for --method augment" in line


def test_gan_offers_the_gan_losses_registry(capsys, monkeypatch):
    assert choices(help_of("gan", capsys, monkeypatch), "--loss") == list(gan_losses.GAN_LOSSES)
    monkeypatch.setitem(gan_losses.GAN_LOSSES, "relativistic", gan_losses.GAN_LOSSES["hinge"])
    assert choices(help_of("gan", capsys, monkeypatch), "--loss")[-1] == "relativistic"


def test_each_registry_name_says_what_it_holds():
    assert advkit.attacks.ATTACK_LOSSES is advkit.attacks.losses.ATTACK_LOSSES
    assert set(advkit.attacks.ATTACK_LOSSES) == {"ce", "margin", "dlr"}
    assert advkit.gan.GAN_LOSSES is gan_losses.GAN_LOSSES
    for module in (advkit.attacks, advkit.attacks.losses, advkit.gan, gan_losses, advkit.defenses.methods):
        assert not hasattr(module, "LOSSES") and not hasattr(module, "METHODS"), module.__name__
