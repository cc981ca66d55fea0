"""Output paths are checked before the work, and finished work is never lost (issue 18, item 4); the
``gan`` command refuses ``--steps 0`` and a resume of another run (items 6 and 5), all in one line.

Every refusal is asserted to come before any training or attacking: the functions that would do the
work are replaced by ones that fail the test. The tests run as root, whom permissions do not stop, so
"cannot be written" is a path under a regular file, or ``os.access`` answering no. A write that fails
at the end (disk full, permissions changed during the run) is a monkeypatched write that raises.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

import advkit
from advkit import outputs
from advkit.app.cli import main
from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator
from advkit.models import SmallCNN
from advkit.outputs import OutputError, check_folder

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from one_line import fails  # noqa: E402

EVAL = ["--data", "digits", "--attacks", "fgsm", "--n", "20", "--probe", "0", "--no-progress"]
DEFEND = ["--data", "digits", "--attacks", "fgsm", "--eval-eps", "0,0.1", "--n", "20", "--probe", "0",
          "--device", "cpu", "--no-progress"]
GAN = ["--data", "digits", "--steps", "2", "--width", "4", "--latent-dim", "4", "--batch-size", "32",
       "--no-progress", "--device", "cpu"]




@pytest.fixture
def place(tmp_path, monkeypatch):
    """A folder with a digits-sized SmallCNN state dict, a regular file and a report-less folder of the
    user's; the current folder is ``tmp_path/work`` and rescued work lands in ``tmp_path/tmp``."""
    torch.manual_seed(0)
    torch.save(SmallCNN(input_size=8).state_dict(), tmp_path / "model.pt")
    (tmp_path / "somefile").write_text("mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    (tmp_path / "work").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.delenv("ADVKIT_TRACEBACK", raising=False)
    return tmp_path


def no_work(monkeypatch, *targets: tuple[object, str]) -> None:
    def work(*args, **kwargs):
        pytest.fail("the work started before the refusal")

    for module, name in targets:
        monkeypatch.setattr(module, name, work)


def unwritable(monkeypatch, *paths: Path) -> None:
    """``os.access`` says no for writing into ``paths`` (what a read-only folder or file system answers)."""
    real, denied = os.access, {Path(p).absolute() for p in paths}
    monkeypatch.setattr(outputs.os, "access", lambda p, mode, **k: Path(p).absolute() not in denied and real(p, mode))


# ---- checked before the work ----------------------------------------------------------------------

OUT_REFUSALS = [
    ("{d}/somefile", "--out {d}/somefile is a file; name a folder"),
    (".", "--out . is the current folder; name a folder for the report (e.g. --out advkit-report)"),
    ("..", "--out .. is above the current folder"),
    ("{d}/somefile/sub", "--out {d}/somefile/sub cannot be created: {d}/somefile is a file"),
    ("{d}/notes", "--out {d}/notes is a folder that holds no advkit report"),
    ("{d}/locked/report", "--out {d}/locked/report cannot be written: {d}/locked is not writable"),
]


@pytest.mark.parametrize("out,expected", OUT_REFUSALS, ids=[o for o, _ in OUT_REFUSALS])
def test_evaluate_refuses_an_output_it_cannot_write_before_evaluating(place, capsys, monkeypatch, out, expected):
    from advkit.app import evaluate_cli as cli

    no_work(monkeypatch, (cli, "load"), (cli, "evaluate"))
    (place / "locked").mkdir()
    unwritable(monkeypatch, place / "locked")
    argv = ["evaluate", "--model", str(place / "model.pt"), *EVAL, "--out", out.format(d=place)]
    assert fails(argv, capsys).startswith(f"advkit: error: {expected.format(d=place)}")


@pytest.mark.parametrize("out,expected", OUT_REFUSALS[:4], ids=[o for o, _ in OUT_REFUSALS[:4]])
def test_demo_refuses_an_output_it_cannot_write_before_training(place, capsys, monkeypatch, out, expected):
    from advkit.app import demo

    no_work(monkeypatch, (demo, "run_demo"))
    line = fails(["demo", "--quick", "--out", out.format(d=place)], capsys)
    assert line.startswith(f"advkit: error: {expected.format(d=place)}")


@pytest.mark.parametrize("args,expected", [
    (["--out", "{d}/somefile/sub"], "--out {d}/somefile/sub cannot be created: {d}/somefile is a file"),
    (["--out", "."], "--out . is the current folder"),
    (["--checkpoint-dir", "{d}/somefile"], "--checkpoint-dir {d}/somefile is a file; name a folder"),
    (["--checkpoint-dir", "{d}/somefile/ckpt"], "--checkpoint-dir {d}/somefile/ckpt cannot be created"),
    (["--checkpoint-dir", "{d}/locked"], "--checkpoint-dir {d}/locked cannot be written: {d}/locked is not writable"),
    (["--checkpoint-dir", "{d}/used"], "{d}/used holds checkpoints of another run"),
    (["--checkpoint-dir", "{d}/empty", "--resume"], "resume=True but {d}/empty holds no advtrain checkpoint"),
])
@pytest.mark.parametrize("method", ["pgd", "finetune"])
def test_defend_refuses_outputs_and_checkpoint_folders_before_training(place, capsys, monkeypatch, args, expected,
                                                                       method):
    from advkit.app import defend_cli as cli

    no_work(monkeypatch, (cli, "fit"), (cli, "defend"), (cli, "load"))
    (place / "locked").mkdir()
    unwritable(monkeypatch, place / "locked")
    (place / "used").mkdir()
    (place / "used" / "advtrain-0123456789ab-0000010.pt").write_bytes(b"")
    (place / "empty").mkdir()
    argv = ["defend", "--method", method, *DEFEND, "--out", str(place / "out"), *[a.format(d=place) for a in args]]
    assert expected.format(d=place) in fails(argv, capsys)


@pytest.mark.parametrize("args,expected", [
    (["--out", "{d}/somefile"], "--out {d}/somefile is a file"),
    (["--out", "{d}/somefile/run"], "--out {d}/somefile/run cannot be created: {d}/somefile is a file"),
    (["--out", "{d}/clash"], "--out's checkpoints folder {d}/clash/checkpoints is a file"),
    (["--out", "{d}/locked"], "--out {d}/locked cannot be written"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--steps", "-3"], "--steps must be an integer >= 1, got -3"),
])
def test_gan_refuses_outputs_and_no_steps_before_training(place, capsys, monkeypatch, args, expected):
    from advkit.app import gan_cli as cli

    no_work(monkeypatch, (cli.datasets, "load"), (cli.GANTrainer, "fit"))
    (place / "clash").mkdir()
    (place / "clash" / "checkpoints").write_text("a file")
    (place / "locked").mkdir()
    unwritable(monkeypatch, place / "locked")
    argv = ["gan", *GAN, "--out", str(place / "run"), *[a.format(d=place) for a in args]]
    assert expected.format(d=place) in fails(argv, capsys)


def test_what_dot_means_per_command(place):
    check_folder(".", "--out")  # gan writes named files into a folder: the current one is fine
    check_folder(".", "--checkpoint-dir")
    with pytest.raises(ValueError, match="is the current folder"):
        check_folder(".", "--out", report=True)  # a report folder is replaced as a whole
    assert not list((place / "work").iterdir())  # checking creates nothing


def test_a_report_folder_needs_its_parent_writable(place, monkeypatch):
    (place / "old").mkdir()
    unwritable(monkeypatch, place)
    check_folder(place / "old", "--out")
    with pytest.raises(ValueError, match=f"cannot be written: {place} is not writable"):
        check_folder(place / "old", "--out", report=True)


# ---- finished work is never lost ------------------------------------------------------------------

def failing_under(folder: Path, real):
    """``real`` (a write function taking the path second or first), failing with ENOSPC inside ``folder``."""
    def write(*args, **kwargs):
        path = next(Path(a) for a in args if isinstance(a, (str, Path)))
        if folder in (path, *path.parents):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(*args, **kwargs)
    return write


def test_defend_saves_the_defended_model_elsewhere_when_its_folder_fails_at_the_end(place, capsys, monkeypatch,
                                                                                   caplog):
    from advkit.app import defend_cli as cli

    out = place / "out"
    monkeypatch.setattr(cli, "save_tensors", failing_under(out, cli.save_tensors))
    argv = ["defend", "--method", "finetune", "--epochs", "1", "--eps", "0.2", "--model", str(place / "model.pt"),
            "--arch", "smallcnn", *DEFEND, "--out", str(out)]
    with caplog.at_level(logging.ERROR, logger="advkit.outputs"):
        line = fails(argv, capsys)
    (rescued,) = (place / "tmp").glob("advkit-rescued-defense-*")
    assert line == (f"advkit: error: cannot write the defended model (after.pt) and its report into {out} (OSError: "
                    f"[Errno 28] No space left on device: '{out}/after.pt'); the defended model (after.pt) and its "
                    f"report is saved in {rescued} instead: move it where it belongs")
    assert str(rescued) in caplog.text
    after = torch.load(rescued / "after.pt", weights_only=True)
    SmallCNN(input_size=8).load_state_dict(after)
    assert (rescued / "report.json").is_file() and (rescued / "report.html").is_file()


def test_evaluate_saves_the_report_elsewhere_when_its_folder_fails_at_the_end(place, capsys, monkeypatch):
    from advkit.evaluation import report

    out = place / "out"
    monkeypatch.setattr(report, "write_folder", failing_under(out, report.write_folder))
    line = fails(["evaluate", "--model", str(place / "model.pt"), *EVAL, "--out", str(out)], capsys)
    (rescued,) = (place / "tmp").glob("advkit-rescued-report-*")
    assert line.endswith(f"the report is saved in {rescued} instead: move it where it belongs")
    assert "No space left on device" in line and (rescued / "report.json").is_file()


def test_when_the_rescue_fails_too_both_failures_are_named(place, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", full_disk)
    with pytest.raises(OutputError, match=r"cannot write the thing into .*; writing it elsewhere failed too \(no "
                                          r"folder to rescue the thing in"):
        outputs.save_or_rescue(place / "out", failing_under(place, lambda p: p), "the thing", "thing")


def tiny_gan() -> GANTrainer:
    torch.manual_seed(0)
    return GANTrainer(MLPGenerator(latent_dim=2, hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1), device="cpu")


def test_a_checkpoint_that_cannot_be_written_is_rescued_and_resumes_from_there(place, monkeypatch):
    from advkit import checkpoints

    data = (torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(64, dtype=torch.long))
    straight = tiny_gan()
    straight.fit(data, steps=4, batch_size=16, progress=False)
    folder = place / "ckpt"
    monkeypatch.setattr(checkpoints, "save_tensors", failing_under(folder, checkpoints.save_tensors))
    with pytest.raises(OutputError) as error:
        tiny_gan().fit(data, steps=4, batch_size=16, checkpoint_dir=folder, checkpoint_every=2, progress=False)
    (rescued,) = (place / "tmp").glob("advkit-rescued-gan-*")
    assert "the checkpoint gan-" in str(error.value) and f"-0000002.pt is saved in {rescued}" in str(error.value)
    resumed = tiny_gan()
    resumed.fit(data, steps=4, batch_size=16, checkpoint_dir=rescued, resume=True, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(straight.G.state_dict().values(), resumed.G.state_dict().values(),
                                                 strict=True))


def test_gan_says_the_trained_run_is_safe_when_its_metrics_cannot_be_written(place, capsys, monkeypatch):
    from advkit.app import gan_cli as cli

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "write_results", full_disk)
    out = place / "run"
    line = fails(["gan", *GAN, "--out", str(out)], capsys)
    assert f"the trained run is safe in {out / 'checkpoints'}" in line and "with --resume" in line
    assert list((out / "checkpoints").glob("gan-*-0000002.pt"))


# ---- the gan command refuses a resume of another run ---------------------------------------------------

@pytest.mark.parametrize("change,expected", [
    (["--loss", "wgan-gp"], "it was written with other settings (loss='hinge', now 'wgan-gp')"),
    (["--width", "8"], "the generator's architecture differs (project.0.weight"),
    (["--batch-size", "16"], "batch_size=32, now 16"),
])
def test_gan_resume_of_another_run_is_one_line(place, capsys, monkeypatch, change, expected):
    from advkit.app import gan_cli as cli

    monkeypatch.setattr(cli, "write_results", lambda *a, **k: 0)  # the metrics are not what this is about
    out = str(place / "run")
    assert main(["gan", *GAN, "--out", out]) == 0
    line = fails(["gan", *GAN, "--steps", "4", "--resume", "--out", out, *change], capsys)
    assert line.startswith("advkit: error: cannot resume from gan-") and expected in line


def test_the_metrics_file_of_a_checked_run_is_written(place, monkeypatch):
    """The checks change nothing of a run that can write: the folder gets its files."""
    from advkit.app import gan_cli as cli

    monkeypatch.setattr(cli, "reference_classifier", lambda *a, **k: SmallCNN(input_size=8).eval())
    monkeypatch.setattr(cli, "quality", lambda *a, **k: {"fid": 1.0})
    assert main(["gan", *GAN, "--out", "."]) == 0  # --out . is allowed for gan
    assert (place / "work" / "metrics.json").is_file() and (place / "work" / "samples_final.png").is_file()
    assert advkit.checkpoints.CheckpointFolder(place / "work" / "checkpoints", "gan").runs()


@pytest.mark.parametrize("trainer", ["gan", "adversarial_training"])
def test_the_library_refuses_a_checkpoint_folder_it_cannot_write_before_training(place, monkeypatch, trainer):
    from advkit.defenses import training

    no_work(monkeypatch, (GANTrainer, "_play"), (training.TrainingGame, "play"))
    folder = place / "somefile" / "ckpt"
    with pytest.raises(ValueError, match=f"checkpoint_dir {folder} cannot be created: {place / 'somefile'} is a file"):
        if trainer == "gan":
            tiny_gan().fit((torch.randn(32, 2), torch.zeros(32, dtype=torch.long)), steps=2, batch_size=16,
                           checkpoint_dir=folder, progress=False)
        else:
            x, y = advkit.data.load("digits")[0].tensors
            torch.manual_seed(0)
            advkit.defenses.adversarial_training(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
                                                 (x[:64], y[:64]), eps=0.1, epochs=1, checkpoint_dir=folder,
                                                 device="cpu", progress=False)


def test_the_api_keeps_steps_zero_as_a_no_op():
    """Only the command refuses --steps 0 (its metrics would judge an untrained generator); fit(steps=0)
    trains nothing, as fit up to the steps done does on a resumed run."""
    trainer = tiny_gan()
    before = [v.clone() for v in trainer.G.state_dict().values()]
    history = trainer.fit((torch.randn(32, 2), torch.zeros(32, dtype=torch.long)), steps=0, batch_size=16,
                          progress=False)
    assert trainer.step == 0 and history["g_loss"] == []
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.G.state_dict().values(), strict=True))
