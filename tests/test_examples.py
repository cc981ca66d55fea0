"""The examples run as written and print what their docstrings promise."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # trains a SmallCNN on the digits, one epoch of FGSM-RS, evaluates both: about 30 s
def test_defend_and_compare_prints_the_history_the_comparison_and_the_report(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # one thread, as conftest gives each worker
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
