"""``advkit defend``: it writes the defended model and a before/after report in which the defended model
is the more robust, and it answers each mistake in one line before any training."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import advkit
from advkit.app.cli import main
from advkit.defenses import defense_model
from advkit.defenses.gaussian import GaussianOptions
from advkit.models import SmallCNN

sys.path.insert(0, str(Path(__file__).parent.parent))  # pytest runs with --import-mode=importlib
from one_line import fails  # noqa: E402

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("defend-cli")

#: A cheap run on the 8x8 digits: one PGD-10 curve on 100 test images, no checks.
FAST = ["--data", "digits", "--attacks", "pgd-10", "--eval-eps", "0,0.1,0.2", "--n", "100", "--probe", "0",
        "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    """A standard SmallCNN trained on the digits, saved as a state dict."""
    train, _ = advkit.data.load("digits")
    torch.manual_seed(0)
    model = SmallCNN(input_size=8)
    advkit.train.fit(model, train, epochs=15, seed=0, device="cpu", progress=False)
    path = tmp_path_factory.mktemp("standard") / "standard.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("args,expected", [
    (["--method", "nope"], "argument --method: invalid choice: 'nope'"),
    ([], "the following arguments are required: --method"),
    (["--method", "pgd", "--eps", "-0.1"], "argument --eps: eps must be finite non-negative"),
    (["--method", "pgd", "--eps", "0.3/0"], "got '0.3/0'"),
    (["--method", "trades", "--eps", "0"], "--eps must be > 0 for --method trades"),
    (["--method", "augment", "--checkpoint-dir", "ckpt"], "--checkpoint-dir and --resume work with --method pgd"),
    (["--method", "pgd", "--resume"], "--resume needs the --checkpoint-dir"),
    (["--method", "gaussian", "--sigma", "0"], "argument --sigma: must be a finite number > 0, got '0'"),
    (["--method", "gaussian", "--sigma", "nan"], "argument --sigma: must be a finite number > 0, got 'nan'"),
    (["--method", "gaussian", "--smoothadv-eps", "-1"], "argument --smoothadv-eps: eps must be finite non-negative"),
    (["--method", "pgd", "--sigma", "0.5"], "--sigma: options of --method gaussian, not of --method pgd"),
    (["--method", "gaussian", "--smoothadv-steps", "0"], "argument --smoothadv-steps: must be an integer >= 1"),
    (["--method", "gaussian", "--smoothadv-steps", "2.5"], "argument --smoothadv-steps: must be an integer >= 1"),
    (["--method", "gaussian", "--smoothadv-samples", "0"], "argument --smoothadv-samples: must be an integer >= 1"),
    (["--method", "gaussian", "--smoothadv-samples", "two"], "argument --smoothadv-samples: must be an integer >= 1"),
    (["--method", "gaussian", "--smoothadv-warmup", "1.5"], "argument --smoothadv-warmup: must be a number in [0, 1]"),
    (["--method", "gaussian", "--smoothadv-warmup", "-0.1"], "argument --smoothadv-warmup: must be a number in [0, 1]"),
    (["--method", "gaussian", "--smoothadv-warmup", "nan"], "argument --smoothadv-warmup: must be a number in [0, 1]"),
    (["--method", "pgd", "--smoothadv-steps", "3", "--smoothadv-samples", "4", "--smoothadv-warmup", "0"],
     "--smoothadv-steps and --smoothadv-samples and --smoothadv-warmup: options of --method gaussian, not of "
     "--method pgd"),
    (["--method", "gaussian", "--smoothadv-steps", "3", "--smoothadv-warmup", "0"],
     "--smoothadv-steps and --smoothadv-warmup tune SmoothAdv, which --smoothadv-eps turns on"),
    (["--method", "gaussian", "--smoothadv-eps", "0", "--smoothadv-samples", "4"],
     "--smoothadv-samples tune SmoothAdv, which --smoothadv-eps turns on"),
    (["--method", "pgd", "--attacks", "pgd,nosuchattack"], "unknown attack 'nosuchattack'"),
    (["--method", "pgd", "--epochs", "0"], "argument --epochs: must be an integer >= 1"),
    (["--method", "pgd", "--corruptions", "rain"], "unknown corruption 'rain'"),
    (["--method", "pgd", "--out", "{d}/notes"], "holds no advkit report"),
    (["--method", "finetune", "--model", "{d}/scripted.pt"], "TorchScript file, which advkit cannot train"),
    (["--method", "pgd", "--model", "{d}/missing.pt"], "missing.pt' does not exist"),
    (["--method", "finetune", "--awp"], "--awp works with --method pgd, trades, mart, not finetune"),
    (["--method", "mart", "--ema", "1.5"], "--ema must be a finite number >= 0 and < 1, got 1.5"),
    (["--method", "gaussian", "--ema", "-0.5"], "--ema must be a finite number >= 0 and < 1, got -0.5"),
])
def test_each_mistake_is_one_line_before_any_training(tmp_path, capsys, monkeypatch, args, expected):
    from advkit.app import defend_cli as cli

    for work in ("fit", "defend"):
        monkeypatch.setattr(cli, work, lambda *a, **k: pytest.fail("trained before refusing"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    if any("scripted" in a for a in args):
        torch.jit.save(torch.jit.script(SmallCNN(input_size=8)), tmp_path / "scripted.pt")
    argv = ["defend", *FAST, "--out", str(tmp_path / "out"), *[a.format(d=tmp_path) for a in args]]
    assert expected in fails(argv, capsys)


def robust_gain(out, eps_index: int) -> float:
    comparison = json.loads((out / "report.json").read_text())["comparisons"]["after"]
    return comparison["robust_accuracy"]["worst"]["gain"][eps_index]


@pytest.mark.slow  # two epochs of FGSM-RS on the digits, then both models evaluated: about 15 s
def test_defend_writes_the_model_and_a_report_where_after_is_more_robust(standard, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["defend", "--method", "fgsm-rs", "--eps", "0.2", "--epochs", "2", "--model", str(standard),
                 "--arch", "smallcnn", *FAST, "--n", "360", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["baseline"] == "before" and list(data["models"]) == ["before", "after"]
    # measured: +23 points at eps 0.1 (34% -> 58% on the 360 test digits); 0.1 is 3.7 binomial deviations below
    assert robust_gain(out, 1) > 0.1
    assert "| clean accuracy |" in printed and "| worst case at eps 0.2 |" in printed
    assert data["sections"][0]["title"] == "Defense: fgsm-rs" and "| epoch | eps |" in data["sections"][0]["markdown"]
    assert {p.name for p in out.iterdir()} >= {"after.pt", "report.html", "report.md", "comparison.png"}
    assert not (out / "before.pt").exists()  # the model before is the user's own file
    model = SmallCNN(input_size=8)
    model.load_state_dict(torch.load(out / "after.pt", weights_only=True))
    _, test = advkit.data.load("digits")
    assert advkit.train.accuracy(model, test) == data["models"]["after"]["clean_accuracy"]  # all 360 test digits


@pytest.mark.slow  # one epoch of plain training, one of augmented training, a corruption evaluation: about 20 s
def test_without_a_model_a_standard_one_is_trained_and_saved_and_augment_reports_corruptions(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["defend", "--method", "augment", "--train-epochs", "1", "--epochs", "1", *FAST,
                 "--out", str(out)]) == 0
    assert "(state dicts of advkit.defenses.defense_model(1, 10, 8) (--arch smallcnn-wide))" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    comparison = data["comparisons"]["after"]
    assert set(comparison["corruption_accuracy"]) == {*advkit.defenses.CORRUPTIONS, "mean"}
    assert "### Accuracy under corruptions, mean over severities" in (out / "report.md").read_text()
    _, test = advkit.data.load("digits")
    x, y = test.tensors[0][:100], test.tensors[1][:100]
    for name in ("before", "after"):
        model = defense_model(1, 10, 8)
        model.load_state_dict(torch.load(out / f"{name}.pt", weights_only=True))
        assert advkit.train.accuracy(model, (x, y)) == data["models"][name]["clean_accuracy"]


def test_gaussian_writes_the_model_trained_with_noise_and_its_history(standard, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["defend", "--method", "gaussian", "--sigma", "0.5", "--smoothadv-eps", "0.25", "--epochs", "1",
                 "--smoothadv-steps", "1", "--smoothadv-samples", "3",
                 "--model", str(standard), "--arch", "smallcnn", *FAST, "--eval-eps", "0,0.1", "--n", "50",
                 "--out", str(out)]) == 0
    markdown = json.loads((out / "report.json").read_text())["sections"][0]["markdown"]
    assert ("`advkit defend --method gaussian` at sigma 0.5, SmoothAdv at L2 eps 0.25 (1 PGD step on 3 noise draws) "
            "on digits") in markdown
    assert "| epoch | eps | train_loss | clean_accuracy | seconds |" in markdown
    model = SmallCNN(input_size=8)
    model.load_state_dict(torch.load(out / "after.pt", weights_only=True))
    before = torch.load(standard, weights_only=True)
    assert not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # trained from the model before


@pytest.mark.slow  # needs advkit.defenses.finetune; two short epochs of fine-tuning: about 20 s
def test_finetune_starts_from_the_given_model_and_gains_robustness(standard, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["defend", "--method", "finetune", "--eps", "0.2", "--model", str(standard), "--arch", "smallcnn",
                 *FAST, "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert robust_gain(out, 1) > 0.1
    assert data["comparisons"]["after"]["clean_accuracy"]["change"] > -0.1  # fine-tuning keeps most clean accuracy


@pytest.mark.slow  # two epochs of FGSM-RS on the digits, evaluated twice: about 20 s
def test_defend_resumes_a_checkpointed_run_to_the_same_weights(standard, tmp_path):
    args = ["defend", "--method", "fgsm-rs", "--eps", "0.2", "--epochs", "2", "--model", str(standard),
            "--arch", "smallcnn", *FAST, "--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    assert len(list((tmp_path / "ckpt").iterdir())) >= 1
    assert main([*args, "--resume", "--out", str(tmp_path / "again")]) == 0
    first, again = (torch.load(tmp_path / d / "after.pt", weights_only=True) for d in ("first", "again"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    reports = [json.loads((tmp_path / d / "report.json").read_text())["models"]["after"] for d in ("first", "again")]
    assert reports[0]["clean_accuracy"] == reports[1]["clean_accuracy"]


class Stop(Exception):
    """Raised by :func:`spy`'s stand-ins: the command stops where the training would start."""


def spy(monkeypatch, *functions: str) -> dict:
    """The defend command with ``fit`` (the standard model's training) a no-op and each of ``functions``
    replaced by a stand-in that records its keywords into the returned dict and raises :class:`Stop`."""
    from advkit.app import defend_cli as cli

    seen = {}

    def training(model, data, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(cli, "fit", lambda *a, **k: None)
    for name in functions:
        monkeypatch.setattr(cli, name, training)
    return seen


def test_awp_and_ema_reach_the_training(tmp_path, monkeypatch):
    seen = spy(monkeypatch, "adversarial_training", "finetune", "augmented_training", "gaussian_training")
    with pytest.raises(Stop):
        main(["defend", "--method", "mart", "--awp", "--ema", "0.99", "--out", str(tmp_path / "out"), *FAST])
    assert (seen["method"], seen["awp"], seen["ema"]) == ("mart", 5e-3, 0.99)
    for method in ("finetune", "augment", "gaussian"):  # every method takes --ema
        seen.clear()
        with pytest.raises(Stop):
            main(["defend", "--method", method, "--ema", "--out", str(tmp_path / method), *FAST])
        assert seen["ema"] == 0.995, method


def test_smoothadv_flags_reach_gaussian_training_and_only_those_given(tmp_path, monkeypatch):
    seen = spy(monkeypatch, "gaussian_training")
    with pytest.raises(Stop):
        main(["defend", "--method", "gaussian", "--smoothadv-eps", "0.5", "--smoothadv-steps", "3",
              "--smoothadv-samples", "4", "--smoothadv-warmup", "0", "--out", str(tmp_path / "all"), *FAST])
    assert {k: seen[k] for k in ("smoothadv_eps", "smoothadv_steps", "smoothadv_samples", "smoothadv_warmup")} == {
        "smoothadv_eps": 0.5, "smoothadv_steps": 3, "smoothadv_samples": 4, "smoothadv_warmup": 0.0}
    seen.clear()
    with pytest.raises(Stop):
        main(["defend", "--method", "gaussian", "--smoothadv-eps", "0.5", "--smoothadv-samples", "8", "--out",
              str(tmp_path / "one"), *FAST])
    assert (seen["smoothadv_eps"], seen["smoothadv_samples"]) == (0.5, 8)
    assert not {"sigma", "smoothadv_steps", "smoothadv_warmup"} & set(seen)  # gaussian_training's own defaults


def test_the_defense_names_smoothadvs_steps_and_draws_only_when_it_is_on():
    from advkit.app import defend_cli as cli
    from advkit.app.cli import build_parser

    def strength(*flags):
        return cli.strength(build_parser().parse_args(["defend", "--method", "gaussian", "--sigma", "0.5", *flags]))

    assert strength("--smoothadv-eps", "0.5", "--smoothadv-steps", "3", "--smoothadv-samples", "4") == (
        "at sigma 0.5, SmoothAdv at L2 eps 0.5 (3 PGD steps on 4 noise draws)")
    defaults = GaussianOptions()
    assert strength("--smoothadv-eps", "0.5") == (f"at sigma 0.5, SmoothAdv at L2 eps 0.5 ({defaults.smoothadv_steps} "
                                                  f"PGD steps on {defaults.smoothadv_samples} noise draws)")
    assert strength() == "at sigma 0.5"
