"""The ``advkit`` command: a user's mistake gets one line and exit status 2, any architecture
evaluates (state dict, factory, TorchScript), and real bugs keep their traceback."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import advkit
from advkit.app.cli import build_parser, main
from advkit.models import SmallCNN

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from launch import child_env  # noqa: E402
from one_line import fails  # noqa: E402

#: Cheap evaluation settings: the 8x8 digits, a few samples, one fast attack, no checks, on the CPU
#: (without --device a visible GPU would run them).
FAST = ["--data", "digits", "--attacks", "fgsm", "--n", "40", "--probe", "0", "--no-progress", "--device", "cpu"]

FACTORY_MODULE = '''
import torch
from advkit.models import SmallCNN

def make():
    return SmallCNN(input_size=8)

def broken():
    raise ZeroDivisionError("a bug in the user's factory")

def interrupted():
    raise KeyboardInterrupt
'''


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A folder with a digits-sized SmallCNN as a state dict, as TorchScript, as a whole pickled
    model, a state dict of another width, a garbage file and a factory module (importable)."""
    torch.manual_seed(0)
    model = SmallCNN(input_size=8).eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    torch.save(model, tmp_path / "whole.pt")
    torch.save(SmallCNN(input_size=8, width=8).state_dict(), tmp_path / "narrow.pt")
    (tmp_path / "garbage.pt").write_text("not a checkpoint\n")
    (tmp_path / "userfactory.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ADVKIT_TRACEBACK", raising=False)
    return tmp_path




@pytest.mark.parametrize("args,expected", [
    (["--model", "{d}/missing.pt"], "missing.pt' does not exist"),
    (["--model", "{d}"], "is not a file"),
    (["--model", "{d}/garbage.pt"], "not a state dict written by torch.save"),
    (["--model", "{d}/whole.pt"], "whole pickled model"),
    (["--model", "{d}/narrow.pt"],
     "another architecture than SmallCNN: 5 shape mismatches (conv.0.weight (8, 1, 3, 3) in the file vs (32, 1, 3, 3)"),
    (["--model", "{d}/scripted.pt", "--arch", "smallcnn"], "TorchScript file, which carries its own architecture"),
    (["--model-factory", "nosuchmodule:make"], "no module named 'nosuchmodule'"),
    (["--model-factory", "userfactory:absent"], "has no function 'absent'"),
    (["--model-factory", "userfactory"], "must be 'package.module:function'"),
    ([], "give the model"),
    (["--model", "{d}/model.pt", "--attacks", "fgsm,nosuchattack"], "unknown attack 'nosuchattack'"),
    (["--model", "{d}/model.pt", "--data", "svhn"], "argument --data: invalid choice: 'svhn'"),
    (["--model", "{d}/model.pt", "--eps", "0,-0.1"], "eps must be finite non-negative"),
    (["--model", "{d}/model.pt", "--eps", "1/0"], "got '1/0'"),
    (["--model", "{d}/model.pt", "--eps", "__import__('os')"], "eps must be"),
    (["--model", "{d}/model.pt", "--n", "0"], "argument --n: must be an integer >= 1"),
    (["--model", "{d}/model.pt", "--device", "potato"], "--device 'potato' is not a device name"),
    (["--model", "{d}/model.pt", "--data", "mnist"], "root is required for 'mnist'"),
])
def test_evaluate_answers_each_mistake_in_one_line(files, capsys, args, expected):
    argv = ["evaluate", *FAST, *[a.format(d=files) for a in args]]
    assert expected in fails(argv, capsys)


def test_cuda_without_a_gpu_is_one_line_for_every_subcommand(files, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv in (["evaluate", *FAST, "--model", str(files / "model.pt")], ["demo", "--quick"], ["gan", "--steps", "1"]):
        assert "asks for a CUDA GPU but this machine has none" in fails([*argv, "--device", "cuda"], capsys)


def test_model_from_state_dict_factory_and_torchscript_give_one_report(files, capsys):
    """The same weights through the three ways of naming a model give identical curves; --eps takes fractions."""
    curves = []
    for i, how in enumerate((["--model", "model.pt"], ["--model-factory", "userfactory:make", "--model", "model.pt"],
                             ["--model", "scripted.pt"])):
        how = [str(files / a) if a.endswith(".pt") else a for a in how]
        out = files / f"report{i}"
        assert main(["evaluate", *FAST, *how, "--eps", "0,8/255", "--out", str(out)]) == 0
        saved = json.loads((out / "report.json").read_text())
        assert saved["config"]["eps"] == [0.0, 8 / 255]
        curves.append(saved["models"]["model"]["curves"]["fgsm"])
        assert f"report: {out.resolve()}" in capsys.readouterr().out
    accuracy = [[point["accuracy"] for point in curve] for curve in curves]
    assert accuracy[0] == accuracy[1] == accuracy[2]


def test_verbose_or_the_environment_shows_the_traceback(files, capsys, monkeypatch):
    missing = ["evaluate", *FAST, "--model", str(files / "missing.pt")]
    for argv in ([*missing, "-v"], ["-v", *missing]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "Traceback" in err and err.strip().endswith("missing.pt' does not exist")
    monkeypatch.setenv("ADVKIT_TRACEBACK", "1")
    with pytest.raises(SystemExit):
        main(missing)
    assert "Traceback" in capsys.readouterr().err


def test_real_bugs_keep_their_traceback_and_ctrl_c_exits_130(files, capsys):
    with pytest.raises(ZeroDivisionError, match="a bug in the user's factory"):
        main(["evaluate", *FAST, "--model-factory", "userfactory:broken"])
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *FAST, "--model-factory", "userfactory:interrupted"])
    assert exit_info.value.code == 130 and capsys.readouterr().err == "advkit: interrupted\n"


def test_version_and_eps_fractions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith(f"advkit {advkit.__version__} (torch ")
    args = build_parser().parse_args(["evaluate", "--model", "m.pt", "--eps", "0, 2/255,8/255 ,0.1,1e-2"])
    assert args.eps == [0.0, 2 / 255, 8 / 255, 0.1, 0.01]


def test_demo_help_says_what_runs_how_long_and_where(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for part in ("train a SmallCNN", "FGSM and APGD-CE", "sanity checks", "GAN section", "--quick about",
                 "advkit-demo"):
        assert part in text


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    env = child_env()
    env.pop("ADVKIT_TRACEBACK", None)
    done = subprocess.run([sys.executable, "-m", "advkit", "evaluate", *FAST, "--model", str(tmp_path / "nope.pt")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"advkit: error: model file '{tmp_path / 'nope.pt'}' does not exist"]


def test_model_must_fit_the_data(files, capsys):
    """A model for other inputs (a 28x28 SmallCNN on the 8x8 digits) is a one-line error, not a conv traceback."""
    (files / "mnistfactory.py").write_text("from advkit.models import SmallCNN\n\ndef make():\n    return SmallCNN()\n")
    assert "cannot take --data digits's images of shape (1, 8, 8)" in fails(
        ["evaluate", *FAST, "--model-factory", "mnistfactory:make"], capsys)


def test_factory_must_return_a_module(files, capsys):
    (files / "notmodule.py").write_text("def make():\n    return 3\n")
    message = fails(["evaluate", *FAST, "--model-factory", "notmodule:make"], capsys)
    assert "must return a torch.nn.Module, got int" in message
    assert isinstance(advkit.models.from_factory("userfactory:make"), nn.Module)


def test_gpu_flags_reach_the_evaluation_and_change_nothing_on_the_cpu(files, capsys):
    """--amp and --channels-last are recorded in the report and, on the CPU, give the same curve."""
    reports = []
    for i, flags in enumerate(([], ["--amp", "--channels-last"])):
        out = files / f"gpu{i}"
        assert main(["evaluate", *FAST, "--model", str(files / "model.pt"), "--out", str(out), *flags]) == 0
        reports.append(json.loads((out / "report.json").read_text()))
    assert "amp" not in reports[0]["config"]
    assert reports[1]["config"]["amp"] is True and reports[1]["config"]["channels_last"] is True
    accuracies = [[p["accuracy"] for p in r["models"]["model"]["curves"]["fgsm"]] for r in reports]
    assert accuracies[0] == accuracies[1]


def test_evaluate_at_l1_with_eot_writes_an_l1_report(files, capsys):
    """--norm l1 takes L1 budgets (above 1, without L-inf's pixel-units warning) and every curve runs at
    L1; --eot N reaches the attacks that average gradients and the report's config."""
    out = files / "l1"
    argv = ["evaluate", *FAST, "--model", str(files / "model.pt"), "--attacks", "fgsm,apgd-2", "--eps", "0,2,8"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "exceeds the whole [0, 1] pixel range" at L1
        assert main([*argv, "--norm", "l1", "--eot", "3", "--out", str(out)]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["config"]["norm"] == "l1" and saved["config"]["eps"] == [0.0, 2.0, 8.0] and saved["config"]["eot"] == 3
    model = saved["models"]["model"]
    assert [p["eps"] for p in model["curves"]["apgd-2"]] == [0.0, 2.0, 8.0]
    assert all("norm='l1'" in text and "eot=3" in text for text in model["attacks"].values())
    capsys.readouterr()
    assert "argument --eot: must be an integer >= 1, got '0'" in fails([*argv, "--norm", "l1", "--eot", "0"], capsys)
