"""Every public load path reads with weights_only=True through advkit.files.load_tensors: a file that
would run code when unpickled is a one-line ValueError naming the file, and the code never runs."""
import logging
import os
import zipfile

import pytest
import torch

import advkit
from advkit.app.cli import main
from advkit.attacks import AdvGAN
from advkit.checkpoints import CheckpointFolder
from advkit.files import load_tensors
from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator
from advkit.gan.report import reference_classifier
from advkit.gan.tasks import ring_of_gaussians
from advkit.models import SmallCNN, load_state_dict


class Shell:
    """Runs ``touch marker`` when unpickled by a plain unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted(tmp_path):
    """(a torch.save file holding a Shell among tensors, the marker it would create)."""
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.pt"
    torch.save({"weight": torch.zeros(2), "hook": Shell(marker)}, path)
    return path, marker


REFUSED = r"crafted\.pt holds Python objects besides tensors \(posix\.system\); advkit reads {what} with weights_only"


def one_line(message: str) -> str:
    assert "\n" not in message, message
    return message


def test_the_crafted_file_runs_code_when_loaded_without_weights_only(crafted):
    path, marker = crafted
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_tensors_refuses_in_one_line_and_reads_what_torch_save_wrote(crafted, tmp_path):
    path, marker = crafted
    with pytest.raises(ValueError, match=REFUSED.format(what="a checkpoint")) as err:
        load_tensors(path)
    one_line(str(err.value))
    assert not marker.exists()
    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(3), "step": 4, "name": "x"}, good)
    loaded = load_tensors(good)
    assert torch.equal(loaded["w"], torch.arange(3)) and loaded["step"] == 4 and loaded["name"] == "x"


@pytest.mark.parametrize("content,kind", [(b"", "EOFError"), (b"not a checkpoint\n", "UnpicklingError"),
                                          ("torn", "RuntimeError")])
def test_load_tensors_names_damaged_files(tmp_path, content, kind):
    path = tmp_path / "bad.pt"
    if content == "torn":
        torch.save({"w": torch.ones(100)}, path)
        content = path.read_bytes()[:80]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"bad\.pt is not an AdvGAN file written by torch\.save, or it is damaged "
                                         rf"\({kind}\); do this"):
        load_tensors(path, "an AdvGAN file", advice="do this")
    with pytest.raises(FileNotFoundError, match=r"a checkpoint was expected at '\S+missing.pt', which does not exist"):
        load_tensors(tmp_path / "missing.pt")


def test_models_load_state_dict(crafted):
    path, marker = crafted
    with pytest.raises(ValueError, match=REFUSED.format(what="a state dict") + r".*not a whole pickled model"):
        load_state_dict(SmallCNN(), path)
    assert not marker.exists()


def test_advgan_load(crafted):
    path, marker = crafted
    with pytest.raises(ValueError, match=REFUSED.format(what="an AdvGAN file") + r".*AdvGAN\.save"):
        AdvGAN.load(path, SmallCNN())
    assert not marker.exists()


def resume_gan(directory):
    trainer = GANTrainer(MLPGenerator(hidden=8), MLPDiscriminator(hidden=8), loss="hinge")
    trainer.fit(ring_of_gaussians(64), steps=6, batch_size=16, checkpoint_dir=directory, resume=True, progress=False)


def resume_adversarial_training(directory):
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    advkit.defenses.adversarial_training(SmallCNN(input_size=8), (x, y), method="fgsm-rs", eps=0.1, epochs=1,
                                         checkpoint_dir=directory, resume=True, progress=False)


@pytest.mark.parametrize("prefix,resume", [("gan", resume_gan), ("advtrain", resume_adversarial_training)])
def test_checkpoint_resume_refuses_and_says_why_in_one_line(crafted, tmp_path, caplog, prefix, resume):
    path, marker = crafted
    folder = CheckpointFolder(tmp_path / "ckpt", prefix)
    folder.directory.mkdir()
    path.rename(folder.path_for("aaaaaaaaaaaa", 5))
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="none of the 1 checkpoints of run "
                                                                            "aaaaaaaaaaaa .* can be loaded"):
        resume(folder.directory)
    warned = [r.getMessage() for r in caplog.records if "skipping unreadable checkpoint" in r.getMessage()]
    assert len(warned) == 1 and "holds Python objects besides tensors (posix.system)" in one_line(warned[0])
    assert not marker.exists()


def test_reference_classifier_cache(crafted):
    path, marker = crafted
    with pytest.raises(ValueError, match=REFUSED.format(what="a state dict")):
        reference_classifier((torch.rand(4, 1, 8, 8), torch.arange(4)), cache=path)
    assert not marker.exists()


@pytest.fixture
def disguised(crafted, tmp_path):
    """The crafted file with a ``constants.pkl`` entry added, so it passes for a TorchScript archive."""
    path, marker = crafted
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("crafted/constants.pkl", b"")
    assert advkit.models.is_torchscript(path)
    return path, marker


@pytest.mark.parametrize("which", ["crafted", "disguised"])
def test_evaluate_command_model(request, which, capsys, monkeypatch):
    path, marker = request.getfixturevalue(which)
    monkeypatch.delenv("ADVKIT_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(path), "--data", "digits", "--attacks", "fgsm", "--eps", "0", "--n", "2",
              "--no-progress", "--out", str(path.parent / "report")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advkit: error: "), lines
    expected = ("holds Python objects besides tensors (posix.system)" if which == "crafted"
                else "is not a readable TorchScript archive")
    assert expected in lines[0] and "crafted.pt" in lines[0]
    assert not marker.exists()
