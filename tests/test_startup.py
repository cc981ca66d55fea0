"""What a fresh advkit process imports: each module below costs about a second of every process that
imports it (an advkit command, a torchrun rank, a test's child), so the common path must not need it."""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from launch import child_env  # noqa: E402

HEAVY = ("sklearn", "sympy", "scipy", "matplotlib", "torchvision")


def test_the_embedded_data_and_a_smallcnn_gradient_import_no_heavy_module():
    """Loading mnist5k and digits (their stored splits, their CSVs read directly) and a SmallCNN's input
    gradient (its pooling's backward calls aten's unpooling, not F.max_unpool2d's sympy-based size check)."""
    code = ("import sys, torch, advkit; x, y = advkit.data.load('mnist5k')[1].tensors; advkit.data.load('digits'); "
            "x = x[:4].requires_grad_(); torch.nn.functional.cross_entropy(advkit.models.SmallCNN()(x), y[:4])"
            f".backward(); print(x.grad.abs().sum() > 0, *(name for name in {HEAVY!r} if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["tensor(True)"], done.stdout
