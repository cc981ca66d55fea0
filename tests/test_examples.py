"""The examples run as written and print what their docstrings promise."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import advkit
from advkit.attacks import AdvGAN

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from launch import ROOT, child_env  # noqa: E402


@pytest.mark.slow  # trains a SmallCNN on the digits, one epoch of FGSM-RS, evaluates both: about 30 s
def test_defend_and_compare_prints_the_history_the_comparison_and_the_report(tmp_path):
    env = child_env()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "defend_and_compare.py"), "--data", "digits",
                           "--method", "fgsm-rs", "--eps", "0.2", "--epochs", "1", "--n", "60",
                           "--out", str(tmp_path / "report")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert re.search(r"^epoch 1: clean \d+\.\d%, PGD-10 at eps 0.2 \d+\.\d%$", out, flags=re.MULTILINE), out
    changes = re.findall(r"^worst case at eps ([\d.]+): ([\d.]+)% -> ([\d.]+)% \(([+-][\d.]+) points\)$", out,
                         flags=re.MULTILINE)
    assert [eps for eps, *_ in changes] == ["0", "0.05", "0.1", "0.15", "0.2"]
    for _, before, after, change in changes:
        assert abs(float(after) - float(before) - float(change)) < 0.11  # each printed with one decimal
    assert (tmp_path / "report" / "comparison.png").is_file() and f"report: {tmp_path / 'report'}" in out


@pytest.mark.slow  # trains a SmallCNN for one epoch and an AdvGAN for 20 steps: about 20 s of CPU
def test_advgan_prints_its_accuracy_beside_pgd_and_saves_an_attack_that_loads(tmp_path):
    env = child_env()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "advgan.py"), "--epochs", "1", "--steps", "20",
                           "--n", "100", "--out", str(tmp_path / "advgan.pt")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    found = dict(re.findall(r"^(clean|AdvGAN|PGD-40): accuracy (\d+\.\d)% on 100 unseen images", out, re.MULTILINE))
    assert set(found) == {"clean", "AdvGAN", "PGD-40"}, out
    assert float(found["AdvGAN"]) < float(found["clean"]) - 10, out
    assert re.search(r"^AdvGAN: .* [\d.]+ ms per image$", out, re.MULTILINE), out
    assert f"saved: {tmp_path / 'advgan.pt'}" in out
    loaded = AdvGAN.load(tmp_path / "advgan.pt", advkit.models.SmallCNN())
    assert loaded.trained_steps == 20 and loaded.eps == 0.3
