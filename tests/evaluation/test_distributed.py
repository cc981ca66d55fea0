"""advkit.distributed's shard arithmetic, and ``evaluate`` sharded over a 2-process gloo group on
the CPU: the same report as one process, each rank forwarding its share, only rank 0 writing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import Square
from advkit.distributed import gather, gather_call, is_distributed, my_shard, rank, shard_bounds, world_size
from advkit.evaluation.report import without_timings

sys.path.insert(0, str(Path(__file__).parents[1]))  # pytest runs with --import-mode=importlib
from launch import child_env, group_script, one_thread, run_group  # noqa: E402
from masked import Detach  # noqa: E402

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("evaluate-group")


def square_50(model: nn.Module) -> Square:
    """A short Square attack: its draws are per batch, so the ranks must split batches, not samples."""
    return Square(model, 0.1, n_queries=50)


#: The evaluations the test runs, in one process and in the group: the first counts forwards
#: (no checks, no examples); the second covers checks, examples, a corruption and an attack that
#: draws per batch, on 8 batches of 16 (each rank forwards its half, checks included); the third a
#: model that hides its gradient (the gradient attack fails on every rank, the added Square keeps the
#: worst case); the fourth a smoothed classifier, certified and attacked, on 4 batches (2 a rank).
#: All on the CPU (gloo).
RUNS = {
    "curves": dict(attacks=["fgsm", "pgd-10"], eps=[0.0, 0.05, 0.1, 0.2], n=101, batch_size=16, progress=False,
                   checks=False, examples=0, device="cpu"),
    "full": dict(attacks={"fgsm": "fgsm", "pgd-10": "pgd-10", "square": square_50}, eps=[0.05, 0.1], n=128,
                 batch_size=16, progress=False, probe=40, queries=50, examples=4, corruptions=["gaussian-noise"],
                 device="cpu"),
    "masked": dict(attacks=["pgd-10"], eps=[0.1], n=101, batch_size=16, progress=False, probe=20, queries=50,
                   examples=2, device="cpu"),
    "smoothed": dict(attacks=["pgd-10"], eps=[0.0, 0.25, 0.5], norm="l2", n=64, batch_size=16, progress=False,
                     checks=False, examples=0, device="cpu",
                     smoothing=dict(sigma=0.25, n0=8, n=64, predict_n=16, eot=2, batch_size=256)),
}

#: What each rank of the group runs (after launch.GROUP_START).
CHILD = """
from test_distributed import RUNS, digits_mlp, evaluate_run
model = digits_mlp()
model.load_state_dict(torch.load(out + "/model.pt", weights_only=True))
forwards = [0]
model.register_forward_hook(lambda m, inputs, output: forwards.__setitem__(0, forwards[0] + len(inputs[0])))
test = advkit.data.load("digits")[1]
reports = {}
for name in RUNS:
    forwards[0] = 0
    report = evaluate_run(model, test, name)
    report.save(out + f"/report-{name}-rank{rank}")
    reports[name] = {"forwards": forwards[0], "report": report.to_dict()}
x, y = test.tensors
try:  # each rank its own samples, as a DistributedSampler would give them
    advkit.evaluate(model, (x[rank::2], y[rank::2]), attacks="fgsm", eps=0.1, progress=False, device="cpu")
except ValueError as err:
    reports["refused"] = str(err)
with open(out + f"/rank{rank}.json", "w") as f:
    json.dump(reports, f)
"""


def digits_mlp() -> nn.Module:
    """A small MLP for the 8x8 digits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate_run(model: nn.Module, test, name: str) -> advkit.evaluation.Report:
    """The evaluation ``RUNS[name]`` of ``model`` (behind a gradient-hiding wrapper for "masked")."""
    return advkit.evaluate(Detach(model) if name == "masked" else model, test, **RUNS[name])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 100, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_tile_the_samples_in_order(n, world):
    """Every sample exactly once, in rank order, sizes within one of each other (n < world too)."""
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert [i for start, stop in bounds for i in range(start, stop)] == list(range(n))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_bounds_refuses_bad_arguments():
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_bounds(10, 2, 2)
    with pytest.raises(ValueError, match="n >= 0"):
        shard_bounds(-1, 0, 1)


def test_without_a_group_everything_is_one_process():
    assert (is_distributed(), rank(), world_size(), my_shard(7)) == (False, 0, 1, (0, 7))
    assert gather({"a": 1}) == [{"a": 1}] and gather_call(lambda: 3) == [3]
    with pytest.raises(KeyError, match="boom"):
        gather_call(lambda: {}["boom"])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A trained digits MLP (saved for the group) and its one-process reports and forward counts."""
    out = tmp_path_factory.mktemp("dist")
    with one_thread():
        train, test = advkit.data.load("digits")
        x, y = train.tensors
        torch.manual_seed(0)
        model = digits_mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        torch.save(model.state_dict(), out / "model.pt")
        forwards = [0]
        model.register_forward_hook(lambda m, inputs, output: forwards.__setitem__(0, forwards[0] + len(inputs[0])))
        reports = {}
        for name in RUNS:
            forwards[0] = 0
            reports[name] = {"report": evaluate_run(model, test, name).to_dict(), "forwards": forwards[0]}
    return out, reports


@pytest.fixture(scope="module")
def group(single):
    """The same evaluations in a 2-process gloo group: each rank's reports and forward counts."""
    out, _ = single
    run_group(group_script(out, Path(__file__).parent, CHILD))
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_distributed_report_equals_one_process(single, group, run):
    """Both ranks return exactly the one-process report (timings aside)."""
    expected = without_timings(single[1][run]["report"])
    assert expected["models"]["model"]["clean_accuracy"] > 0.5
    assert bool(expected["models"]["model"]["masked"]) == (run == "masked")
    if run == "smoothed":  # certified and attacked where the batches split over the ranks
        curve = expected["models"]["model"]["smoothing"]["curve"]
        assert curve[0]["certified"] > 0.5 and curve[1]["empirical"] > 0, curve
    for got in group[1]:
        assert without_timings(got[run]["report"]) == expected


@pytest.mark.slow
@pytest.mark.parametrize("run", ["curves", "smoothed"])
def test_each_rank_forwards_its_share(single, group, run):
    """The ranks' forwards add up to one process's exactly, and each did 30-70% of them (curves: rank 0
    holds 51 samples, rank 1 holds 50, their attacks stop early on different samples; smoothed: two
    batches of 16 each, the certificates' draws and the attacks on the noisy model)."""
    total = single[1][run]["forwards"]
    counts = [got[run]["forwards"] for got in group[1]]
    assert sum(counts) == total
    assert all(0.3 * total <= c <= 0.7 * total for c in counts), (counts, total)


@pytest.mark.slow
def test_each_rank_forwards_at_most_0_55_of_one_process_checks_included(single, group):
    """With the sanity checks, examples and a corruption (the "full" run: 8 batches, 4 per rank), each rank
    forwards at most 0.55 of what one process forwards: the checks split like the curve."""
    total = single[1]["full"]["forwards"]
    counts = [got["full"]["forwards"] for got in group[1]]
    assert max(counts) <= 0.55 * total, (counts, total)


@pytest.mark.slow
def test_ranks_with_different_data_are_refused(group):
    """Every rank says which ranks passed what, rather than evaluating a mix."""
    n = len(advkit.data.load("digits")[1])
    sizes = [len(range(r, n, 2)) for r in range(2)]
    for got in group[1]:
        assert f"rank 0: {sizes[0]}, rank 1: {sizes[1]} samples" in got.get("refused", "")


@pytest.mark.slow
def test_only_rank_0_writes(group):
    """Each rank saved to a folder of its own: only rank 0's exists, holding its report."""
    out, ranks = group
    for run in RUNS:
        saved = json.loads((out / f"report-{run}-rank0" / "report.json").read_text())
        listed = {key: saved[key] for key in ("advkit_report", "files")}  # the folder's manifest
        assert without_timings(saved) == without_timings({**ranks[0][run]["report"], **listed})
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(f"report-{run}-rank0" for run in RUNS)


@pytest.mark.slow  # the evaluate command on 101 digits, once alone and once under torchrun: about 20 s
def test_the_evaluate_command_under_torchrun_writes_the_report_of_one_process(tmp_path, capsys):
    """`torchrun -m advkit evaluate` joins the group torchrun describes: both ranks share the work, rank 0
    alone prints and writes, and the report equals the one a single process (this one) writes."""
    from advkit.app.cli import main

    torch.manual_seed(0)
    torch.save(advkit.models.SmallCNN(input_size=8).state_dict(), tmp_path / "model.pt")
    args = ["evaluate", "--model", str(tmp_path / "model.pt"), "--arch", "smallcnn", "--data", "digits",
            "--attacks", "fgsm,pgd-10", "--eps", "0,0.1,0.2", "--n", "101", "--batch-size", "16", "--probe", "20",
            "--device", "cpu", "--no-progress"]
    with one_thread():  # as each rank runs: the same float sums in any pytest mode
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = capsys.readouterr().out
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    # "--" keeps torchrun from reading advkit's options as abbreviations of its own (--n: --nnodes?)
    two = subprocess.run([sys.executable, *torchrun, "-m", "advkit", "--", *args, "--out", str(tmp_path / "two")],
                         env=child_env(), capture_output=True, text=True, timeout=600, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    reports = [without_timings(json.loads((tmp_path / name / "report.json").read_text())) for name in ("one", "two")]
    assert reports[0] == reports[1]
    assert one.count("report: ") == two.stdout.count("report: ") == 1
