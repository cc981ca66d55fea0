"""``advkit certify``: a saved model's certified curve as a report folder; mistakes are one line."""
import json
import sys
from pathlib import Path

import pytest
import torch

from advkit.app.cli import main
from advkit.models import SmallCNN

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from one_line import fails  # noqa: E402

#: Cheap settings: the 8x8 digits, ten images, few draws, on the CPU.
FAST = ["--data", "digits", "--limit", "10", "--n0", "5", "--n", "50", "--predict-n", "20", "--eot", "1",
        "--radii", "0,0.5", "--no-progress", "--device", "cpu"]


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    torch.save(SmallCNN(input_size=8).state_dict(), tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_certify_writes_a_report_with_the_certified_curve(weights, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["certify", *FAST, "--model", str(weights), "--sigma", "0.25", "--out", str(out)]) == 0
    saved = json.loads((out / "report.json").read_text())
    smoothing = saved["models"]["model"]["smoothing"]
    assert smoothing["settings"]["sigma"] == 0.25 and smoothing["settings"]["n"] == 50
    assert [p["radius"] for p in smoothing["curve"]] == [0.0, 0.5] and "empirical" in smoothing["curve"][0]
    assert saved["config"]["norm"] == "l2" and saved["config"]["n"] == 10
    assert {"curve.png", "report.md", "report.html"} <= {p.name for p in out.iterdir()}
    printed = capsys.readouterr().out
    assert "Randomized smoothing, sigma=0.25" in printed and "certified" in printed
    again = tmp_path / "amp"  # bf16 autocast is CUDA's: on the CPU the same report, with amp recorded
    assert main(["certify", *FAST, "--model", str(weights), "--sigma", "0.25", "--amp", "--out", str(again)]) == 0
    with_amp = json.loads((again / "report.json").read_text())
    assert with_amp["config"]["amp"] is True and "amp" not in saved["config"]
    assert with_amp["models"]["model"]["smoothing"]["curve"] == smoothing["curve"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--sigma", "0"], "smoothing sigma must be"), ([], "the following arguments are required: --sigma"),
    (["--sigma", "0.25", "--alpha", "2"], "smoothing alpha must be"),
    (["--sigma", "0.25", "--attacks", "nosuch"], "unknown attack 'nosuch'")])
def test_certify_answers_mistakes_in_one_line(weights, capsys, args, expected):
    assert expected in fails(["certify", *FAST, "--model", str(weights), *args], capsys)
