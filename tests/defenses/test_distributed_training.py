"""Adversarial training sharded over a 2-process gloo group on the CPU: the same weights as one
process with the same global batch (float tolerance), FGSM's per-sample memory in sync, checkpoints
that resume across numbers of processes, only rank 0 writing; and the GPU path's switches (amp,
channels_last, compile), which must leave CPU results as they are.

The group trains a small MLP on 700 of the 8x8 digits (shifted by up to a pixel) in global batches
of 75, which the two ranks split 38/37; 700 = 9 x 75 + 25 leaves a partial batch that every epoch
drops (fgsm-rs holds 70 samples out for its guard: 630 = 8 x 75 + 30). Two epochs take its clean
test accuracy from 10% to about 50%.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import advkit
from advkit.acceleration import is_channels_last
from advkit.attacks import PGD
from advkit.checkpoints import CheckpointFolder
from advkit.defenses.adversaries import AttackAdversary, FastAdversary, KLAdversary
from advkit.defenses.training import CHECKPOINT_PREFIX, adversarial_training
from advkit.models import SmallCNN
from advkit.rng import sample_seeds

sys.path.insert(0, str(Path(__file__).parents[1]))  # pytest runs with --import-mode=importlib
from launch import child_env, group_script, one_thread, run_group  # noqa: E402

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("advtrain-group")


N, BATCH, EPOCHS, HELD_OUT = 700, 75, 2, 70
SHARES = (38, 37)  # rank 0's and rank 1's rows of each global batch of 75
#: Float tolerance between a 2-process and a 1-process run: the loss and gradient sums are taken in
#: another order, which moves weights by a few float32 ulps per step.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
#: The runs the group repeats, with their data size N (default: N) and epochs (default: EPOCHS).
#: TRADES forwards twice through DDP before one backward. Its KL ascent starts 1e-3 from x, where the
#: gradient is a difference of nearly equal probabilities: the last-bit differences of two
#: processes flip some of its signs from the second step on (measured: weights 3e-3 apart after
#: two steps, 1e-8 after one), so its run is one step, 100 = 75 + 25 samples for one epoch.
RUNS = {
    "pgd": {"method": "pgd", "steps": 3, "shift": 1},
    "fgsm-rs": {"method": "fgsm-rs", "start": "previous", "noise": 0.5, "shift": 1},
    "trades": {"method": "trades", "steps": 2, "n": 100, "epochs": 1},
    # AWP's perturbation from the global batch's gradient, the same on every rank; each rank's average
    "pgd-awp-ema": {"method": "pgd", "steps": 3, "shift": 1, "awp": 0.01, "ema": 0.9},
}

#: What each rank of the group runs (after launch.GROUP_START).
CHILD = """
from advkit.checkpoints import CheckpointFolder
from advkit.defenses import adversarial_training
from test_distributed_training import RUNS, digits_mlp, run
saves, save = [], CheckpointFolder.save
CheckpointFolder.save = lambda self, *args: (saves.append(args[-1]), save(self, *args))[1]
results = {}
for name, folder, resume in [(name, name + "-group", False) for name in RUNS] + [
        ("pgd", "pgd-single-resumed-in-group", True)]:
    rows = []
    model, history = run(name, out + "/" + folder, resume, rows)
    torch.save(model.state_dict(), out + f"/{folder}-rank{rank}.pt")
    results[folder] = {"history": history, "rows": sorted(set(rows))}
results["saves"] = saves
x, y = advkit.data.load("digits")[0].tensors
try:  # each rank its own samples, as a DistributedSampler would give them
    adversarial_training(digits_mlp(), (x[rank::2], y[rank::2]), eps=0.1, epochs=1, progress=False, device="cpu")
except ValueError as err:
    results["refused"] = str(err)
with open(out + f"/rank{rank}.json", "w") as f:
    json.dump(results, f)
"""


def digits_mlp() -> nn.Module:
    """A small MLP for the 8x8 digits (no BatchNorm: its outputs do not couple a batch's rows)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def training_rows(model: nn.Module, rows: list[int]) -> None:
    """Record in ``rows`` the batch size of each of ``model``'s train-mode forwards."""
    model.register_forward_hook(lambda m, inputs, output: rows.append(len(inputs[0])) if m.training else None)


def run(name: str, folder: str | Path, resume: bool = False, rows: list[int] | None = None, **speed):
    """``RUNS[name]`` on the first N training digits, checkpointed in ``folder``; the model and its
    history as plain values (timings left out)."""
    x, y = advkit.data.load("digits")[0].tensors
    test = advkit.data.load("digits")[1]
    model = digits_mlp()
    if rows is not None:
        training_rows(model, rows)
    settings = {"n": N, "epochs": EPOCHS, **RUNS[name]}
    n = settings.pop("n")
    model, history = adversarial_training(model, (x[:n], y[:n]), eps=0.1, lr=3e-2, batch_size=BATCH, eval_data=test,
                                          eval_size=160, warmup=0.5, seed=5, device="cpu", progress=False,
                                          checkpoint_dir=folder, resume=resume, **settings, **speed)
    records = [{k: v for k, v in vars(r).items() if k != "seconds"} for r in history]
    return model, {"records": records, "best_epoch": history.best_epoch, "guard_fired": history.guard_fired}


def per_epoch(name: str) -> int:
    """Steps per epoch (fgsm-rs holds HELD_OUT of the N samples out for its guard)."""
    return (RUNS[name].get("n", N) - HELD_OUT * (name == "fgsm-rs")) // BATCH


def epochs(name: str) -> int:
    return RUNS[name].get("epochs", EPOCHS)


def checkpoint(folder: Path, step: int | None = None) -> dict:
    """The state in ``folder``'s only run's checkpoint of ``step`` (default: its newest)."""
    files = CheckpointFolder(folder, CHECKPOINT_PREFIX).runs()
    assert len(files) == 1, files
    steps = dict(next(iter(files.values())))
    return torch.load(steps[max(steps) if step is None else step], weights_only=True)


def keep_first_epoch(source: Path, target: Path) -> None:
    """``target``: a copy of ``source`` holding only its run's first checkpoint (a run stopped after epoch 1)."""
    files = next(iter(CheckpointFolder(source, CHECKPOINT_PREFIX).runs().values()))
    target.mkdir()
    shutil.copy(files[0][1], target / files[0][1].name)


def assert_same_weights(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **(tolerance or TOLERANCE), msg=lambda m, k=key: f"{k}: {m}")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """Both runs in this process (one thread, as each rank has), and a copy of the PGD run's folder
    cut after epoch 1 for the group to resume."""
    out = tmp_path_factory.mktemp("advtrain")
    results = {}
    with one_thread():
        for name in RUNS:
            rows: list[int] = []
            model, history = run(name, out / f"{name}-single", rows=rows)
            results[name] = {"weights": model.state_dict(), "history": history, "rows": sorted(set(rows))}
    keep_first_epoch(out / "pgd-single", out / "pgd-single-resumed-in-group")
    return out, results


@pytest.fixture(scope="module")
def group(single):
    """The same runs in a 2-process gloo group, and the PGD run resumed there from one process's epoch 1."""
    out, _ = single
    run_group(group_script(out, Path(__file__).parent, CHILD), timeout=300)
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def group_weights(out: Path, folder: str, rank: int) -> dict:
    return torch.load(out / f"{folder}-rank{rank}.pt", weights_only=True)


@pytest.mark.slow  # the group's four runs, started in two processes: about 20 s together
@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_end_with_the_weights_of_one(single, group, name):
    """After each epoch (rank 0's checkpoints) and at the end, the group's weights are one process's
    within float tolerance; both ranks hold the same weights and the same history."""
    out, ranks = group
    steps = per_epoch(name) * torch.arange(1, epochs(name) + 1)
    for step in steps.tolist():
        assert_same_weights(checkpoint(out / f"{name}-group", step)["model"],
                            checkpoint(out / f"{name}-single", step)["model"])
    final = [group_weights(out, f"{name}-group", r) for r in range(2)]
    assert_same_weights(final[0], final[1], rtol=0, atol=0)
    assert_same_weights(final[0], single[1][name]["weights"])
    histories = [got[f"{name}-group"]["history"] for got in ranks]
    assert histories[0] == histories[1]
    expected = single[1][name]["history"]
    assert len(histories[0]["records"]) == len(expected["records"]) == epochs(name)
    for got, want in zip(histories[0]["records"], expected["records"], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["eps"] == want["eps"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_each_rank_trains_on_its_share_of_every_global_batch(single, group, name):
    _, ranks = group
    assert single[1][name]["rows"] == [BATCH]
    assert [got[f"{name}-group"]["rows"] for got in ranks] == [[SHARES[0]], [SHARES[1]]]


@pytest.mark.slow
def test_fgsm_memory_is_in_sync_across_ranks(single, group):
    """Rank 0's checkpoint holds every sample's perturbation: one process's, within float tolerance."""
    out, _ = group
    got, expected = checkpoint(out / "fgsm-rs-group")["adversary"], checkpoint(out / "fgsm-rs-single")["adversary"]
    assert torch.equal(got["seen"], expected["seen"]) and int(got["seen"].sum()) > per_epoch("fgsm-rs") * BATCH
    torch.testing.assert_close(got["memory"], expected["memory"], **TOLERANCE)


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_in_one_process(single, group, tmp_path):
    out, _ = group
    keep_first_epoch(out / "pgd-group", tmp_path / "cut")
    model, history = run("pgd", tmp_path / "cut", resume=True)
    assert_same_weights(model.state_dict(), single[1]["pgd"]["weights"])
    assert [r["epoch"] for r in history["records"]] == [1, 2]


@pytest.mark.slow
def test_a_one_process_checkpoint_resumes_in_two(single, group):
    out, ranks = group
    for r in range(2):
        assert_same_weights(group_weights(out, "pgd-single-resumed-in-group", r), single[1]["pgd"]["weights"])
    assert [rec["epoch"] for rec in ranks[0]["pgd-single-resumed-in-group"]["history"]["records"]] == [1, 2]


@pytest.mark.slow
def test_ranks_with_different_data_are_refused(group):
    """Every rank says which ranks passed what, rather than training on a mix."""
    sizes = [len(range(r, 1437, 2)) for r in range(2)]
    for got in group[1]:
        assert f"rank 0: {sizes[0]}, rank 1: {sizes[1]} samples" in got.get("refused", "")
        assert "adversarial training splits the samples among the ranks itself" in got["refused"]


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints(single, group):
    """Rank 0 saved at the end of each epoch (the runs of :data:`RUNS` in order, then the resumed run: its second
    epoch only); rank 1 never."""
    out, ranks = group
    assert ranks[0]["saves"] == [9, 18, 8, 16, 1, 9, 18, 18] and ranks[1]["saves"] == []
    for folder in [name + "-group" for name in RUNS]:
        assert len(CheckpointFolder(out / folder, CHECKPOINT_PREFIX).runs()) == 1


# ---- per-sample draws: a sample's attack does not depend on its batch ----------------------------

ADVERSARIES = {
    "pgd": lambda model: AttackAdversary(lambda eps: PGD(model, 0.0, steps=3, early_stop=False)),
    "trades": lambda model: KLAdversary(model, "linf", steps=3),
    "fgsm-rs": lambda model: FastAdversary(model, "linf", step=0.5, noise=0.5, start="previous", size=100),
}


@pytest.mark.parametrize("kind", list(ADVERSARIES))
def test_each_sample_meets_the_same_attack_in_any_batch(kind):
    """Split 5/7, a batch gets the adversarial examples it gets whole (what lets the ranks share a
    batch); other step seeds give other examples."""
    model = digits_mlp()
    x, y = (t[:12] for t in advkit.data.load("digits")[1].tensors)
    index = torch.arange(12) * 7
    seeds = sample_seeds(11, index)
    whole = ADVERSARIES[kind](model)(x, y, 0.1, seeds, index)
    split = ADVERSARIES[kind](model)
    parts = torch.cat([split(x[:5], y[:5], 0.1, seeds[:5], index[:5]), split(x[5:], y[5:], 0.1, seeds[5:], index[5:])])
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-6)
    other = ADVERSARIES[kind](model)(x, y, 0.1, sample_seeds(12, index), index)
    assert (other - whole).flatten(1).abs().amax(1).min() > 1e-3


# ---- the GPU path's switches on the CPU ------------------------------------------------------------

def short_run(model: nn.Module, method: str = "pgd", **kwargs):
    """One epoch of ``method`` on 300 training digits (4 steps of 75)."""
    x, y = advkit.data.load("digits")[0].tensors
    options = {"steps": 2} if method != "fgsm-rs" else {}
    return adversarial_training(model, (x[:300], y[:300]), method=method, eps=0.1, epochs=1, lr=3e-2, batch_size=75,
                                eval_size=16, seed=1, device="cpu", progress=False, **options, **kwargs)


@pytest.mark.parametrize("method", ["pgd", "trades", "fgsm-rs"])
def test_amp_changes_nothing_on_the_cpu(method):
    """bf16 autocast is for CUDA only: on the CPU amp=True trains bit for bit the weights of amp=False."""
    weights = [short_run(digits_mlp(), method, amp=amp)[0].state_dict() for amp in (False, True)]
    assert_same_weights(weights[0], weights[1], rtol=0, atol=0)


def test_channels_last_trains_the_same_weights_and_is_undone():
    def cnn() -> SmallCNN:  # both runs start from the same weights (training leaves the global RNG as it was)
        torch.manual_seed(0)
        return SmallCNN(input_size=8, width=8, hidden=32)

    models = [short_run(cnn(), channels_last=flag)[0] for flag in (False, True)]
    assert_same_weights(models[1].state_dict(), models[0].state_dict())
    assert not is_channels_last(models[1])


@pytest.mark.slow  # tracing by torch.compile: about 5 s
def test_compile_runs_the_training_forward_through_torch_compile():
    """Every training forward (the graphs traced with parameters that need gradients) runs compiled, the
    attacks' too; the weights are eager's within float tolerance and the model is left uncompiled."""
    runs: list[bool] = []

    def backend(gm, example_inputs):  # a torch.compile backend that records each run of what it compiled
        trains = any(t.requires_grad for t in example_inputs if isinstance(t, torch.Tensor) and t.ndim == 2)

        def run_graph(*args):
            runs.append(trains)
            return gm.forward(*args)

        return run_graph

    torch.manual_seed(0)
    compiled, _ = short_run(digits_mlp(), compile={"backend": backend})
    assert runs.count(True) == 4 and runs.count(False) > 4  # 4 training steps; the attacks' forwards
    assert getattr(compiled, "_compiled_call_impl", None) is None
    assert_same_weights(compiled.state_dict(), short_run(digits_mlp())[0].state_dict())


@pytest.mark.parametrize("kwargs, message", [
    ({"amp": "yes"}, "amp must be True or False"),
    ({"channels_last": 1}, "channels_last must be True or False"),
    ({"compile": "max-autotune"}, "compile must be True, False or a dict"),
])
def test_bad_speed_options_are_refused_before_any_work(kwargs, message):
    model = digits_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match=message):
        short_run(model, **kwargs)
    assert_same_weights(model.state_dict(), before, rtol=0, atol=0)


# ---- the defend command under torchrun --------------------------------------------------------------

@pytest.mark.slow  # the defend command twice, alone (in this process) and under torchrun: about 25 s
def test_the_defend_command_under_torchrun_trains_sharded_and_only_rank_0_writes(tmp_path, capsys):
    """`torchrun -m advkit defend`: the ranks share the training (each checkpointed epoch equals one
    process's within float tolerance), rank 0 alone prints and writes the same files as one process."""
    from advkit.app.cli import main

    torch.manual_seed(0)
    torch.save(SmallCNN(input_size=8).state_dict(), tmp_path / "model.pt")
    args = ["defend", "--method", "pgd", "--eps", "0.1", "--epochs", "1", "--model", str(tmp_path / "model.pt"),
            "--arch", "smallcnn", "--data", "digits", "--attacks", "pgd-10", "--eval-eps", "0,0.1", "--n", "100",
            "--probe", "0", "--device", "cpu", "--no-progress"]
    outputs = {name: ["--out", str(tmp_path / name), "--checkpoint-dir", str(tmp_path / f"checkpoints-{name}")]
               for name in ("one", "two")}
    with one_thread():  # as each rank runs: the same float sums in any pytest mode
        assert main([*args, *outputs["one"]]) == 0
    one = capsys.readouterr().out
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([sys.executable, *torchrun, "-m", "advkit", "--", *args, *outputs["two"]], env=child_env(),
                         capture_output=True, text=True, timeout=600, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    files = [sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("one", "two")]
    assert files[0] == files[1] and "after.pt" in files[0]
    assert one.count("report: ") == two.stdout.count("report: ") == 1
    assert one.count("weights: ") == two.stdout.count("weights: ") == 1
    assert_same_weights(checkpoint(tmp_path / "checkpoints-two")["model"],
                        checkpoint(tmp_path / "checkpoints-one")["model"])
    assert_same_weights(torch.load(tmp_path / "two" / "after.pt", weights_only=True),
                        torch.load(tmp_path / "one" / "after.pt", weights_only=True))
