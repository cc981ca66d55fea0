"""GANTrainer.fit sharded over a 2-process gloo group on the CPU: the same weights as one process with
the same global batch, checkpoints that resume across process counts, only rank 0 writing; and the
GPU path's options (amp, channels_last, compile) as the CPU sees them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import advkit
from advkit.acceleration import is_channels_last
from advkit.core import Hook
from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator, dcgan

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # pytest runs with --import-mode=importlib
from gan_group import BATCH, CONFIGS, EVERY, STEPS, data, interrupted, make_trainer, resumed, state  # noqa: E402
from launch import child_env, run_group  # noqa: E402

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("gan-group")

#: Float32 sums over 18 + 19 samples instead of 37, through a few Adam steps.
TOL = dict(rtol=1e-4, atol=1e-5)


def single_run(name: str) -> dict:
    trainer = make_trainer(name)
    trainer.fit(data(), STEPS, BATCH, progress=False)
    return state(trainer)


def assert_same_run(got: dict, expected: dict) -> None:
    """Same step, weights and EMA within float tolerance, and the same loss history."""
    assert got["step"] == expected["step"] == STEPS
    for part in ("G", "D", "ema"):
        assert got[part].keys() == expected[part].keys()
        for key, value in expected[part].items():
            torch.testing.assert_close(got[part][key], value, **TOL, msg=f"{part}.{key}")
    for key in ("d_loss", "g_loss"):
        torch.testing.assert_close(torch.tensor(got["history"][key]), torch.tensor(expected["history"][key]), **TOL)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """The 2-process runs of gan_group.py; beforehand, a one-process run interrupted in ``single/``."""
    out = tmp_path_factory.mktemp("gan-group")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        interrupted(out / "single")
    finally:
        torch.set_num_threads(threads)
    run_group(HERE / "gan_group.py", args=(str(out),))
    return out


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_processes_train_as_one_with_the_same_global_batch(group, name):
    """Batches of 37 split 19 + 18, networks initialised differently on the ranks (rank 0's win):
    both ranks end with one process's G, D, EMA and losses (hinge with mode seeking, WGAN-GP's
    penalty through DDP, class-conditional pairs)."""
    expected = single_run(name)
    ranks = [load(group / f"{name}-rank{r}.pt") for r in range(2)]
    for got in ranks:
        assert_same_run(got, expected)
    for part in ("G", "D", "ema"):  # and the ranks agree exactly
        for key, value in ranks[0][part].items():
            assert torch.equal(ranks[1][part][key], value)


@pytest.mark.slow
def test_a_group_checkpoint_resumes_in_two_processes_and_in_one(group):
    """A 2-process run stopped at step 3 (checkpoint at step 2) resumes, in the group and in this single
    process, to the weights of an uninterrupted run; a one-process checkpoint resumes in the group."""
    expected = single_run("hinge")
    for r in range(2):
        assert_same_run(load(group / f"resumed-rank{r}.pt"), expected)
        assert_same_run(load(group / f"from-single-rank{r}.pt"), expected)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = resumed(group / "interrupted")
    finally:
        torch.set_num_threads(threads)
    assert_same_run(state(alone), expected)


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints(group):
    """Rank 0 saved each checkpoint of the group's runs (steps 2 of the interrupted run, 4 and 6 of each
    resumption), rank 1 none; the folder holds one run's files."""
    saves = [json.loads((group / f"saves-rank{r}.json").read_text()) for r in range(2)]
    assert saves == [1 + 2 + 2, 0]
    names = sorted(p.name for p in (group / "group").iterdir())
    assert len(names) == 3 and len({n.split("-")[1] for n in names}) == 1, names
    assert [int(n.split("-")[2][:-3]) for n in names] == [2, 4, 6]
    assert EVERY == 2


def small_trainer(**options) -> GANTrainer:
    torch.manual_seed(0)
    return GANTrainer(MLPGenerator(hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1), loss="wgan-gp",
                      device="cpu", seed=0, **options)


def weights(trainer: GANTrainer) -> list[torch.Tensor]:
    return [*trainer.G.state_dict().values(), *trainer.D.state_dict().values()]


def test_amp_on_the_cpu_changes_nothing():
    """bf16 autocast applies on CUDA only: a CPU run with amp=True is bit-identical to amp=False."""
    runs = []
    for amp in (False, True):
        trainer = small_trainer(amp=amp)
        trainer.fit(data(), 3, 16, progress=False)
        runs.append(weights(trainer))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_compile_routes_g_and_d_through_torch_compile_for_the_fit():
    """With a recording torch.compile backend on AOTAutograd (which has no double backward), G's and D's
    calls go through torch.compile during fit, WGAN-GP's penalty still trains D, the models leave
    uncompiled, and the weights match an eager run's."""
    shapes = []

    def backend(gm, example_inputs):  # records each compiled graph's input shapes, runs it through AOTAutograd
        shapes.append({tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)})
        return aot_autograd(fw_compiler=lambda graph, _: make_boxed_func(graph.forward))(gm, example_inputs)

    seen = []

    class Watch(Hook):
        def round_end(self, r):
            seen.append((trainer.G._compiled_call_impl is not None, trainer.D._compiled_call_impl is not None))

    trainer = small_trainer(compile={"backend": backend})
    trainer.fit(data(), 2, 16, progress=False, hooks=[Watch()])
    eager = small_trainer()
    eager.fit(data(), 2, 16, progress=False)
    assert seen == [(True, True)] * 2
    assert trainer.G._compiled_call_impl is None and trainer.D._compiled_call_impl is None
    # G's last layer maps 8 features to 2, D's to 1: each model's weights fed a compiled graph
    assert any((2, 8) in graph for graph in shapes) and any((1, 8) in graph for graph in shapes), shapes
    for a, b in zip(weights(trainer), weights(eager), strict=True):
        torch.testing.assert_close(a, b)


def test_channels_last_holds_for_the_fit_only():
    """DCGAN's convolution weights are channels_last while fit trains (same weights as a plain run,
    within float tolerance) and contiguous again afterwards."""
    x, _ = advkit.data.load("digits")[0].tensors
    runs, seen = [], []

    class Watch(Hook):
        def round_end(self, r):
            seen.append((is_channels_last(trainer.G), is_channels_last(trainer.D)))

    for channels_last in (True, False):
        torch.manual_seed(0)
        trainer = GANTrainer(*dcgan(1, 8, latent_dim=4, width=4), device="cpu", channels_last=channels_last)
        trainer.fit((x[:64], torch.zeros(64)), 2, 16, progress=False, hooks=[Watch()])
        assert not is_channels_last(trainer.G) and not is_channels_last(trainer.D)
        runs.append(weights(trainer))
    assert seen == [(True, True)] * 2 + [(False, False)] * 2
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("amp", "yes", "amp must be True or False"),
    ("channels_last", 1, "channels_last must be True or False"),
    ("compile", "max-autotune", "compile must be True, False or a dict"),
])
def test_bad_gpu_options_raise_type_errors_naming_them(option, value, message):
    with pytest.raises(TypeError, match=message):
        small_trainer(**{option: value})


@pytest.mark.slow  # torchrun starts two processes that train 4 steps; rank 0 then trains the metrics' classifier
def test_the_gan_command_under_torchrun_writes_one_folder(tmp_path):
    """`torchrun -m advkit -- gan` trains sharded (the checkpoint counts 4 steps of 2 global batches each)
    and rank 0 alone writes the grids, checkpoints, curve and metrics, and prints the metrics once."""
    out = tmp_path / "gan"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "advkit", "--", "gan", "--data", "digits", "--steps", "4", "--batch-size", "33",
                          "--checkpoint-every", "2", "--width", "8", "--latent-dim", "8", "--device", "cpu",
                          "--no-progress", "--out", str(out)], env=child_env(), capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count('"inception_score"') == 1, run.stdout
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "classifier.pt", "losses.png", "metrics.json",
                                                    "samples_0000002.png", "samples_0000004.png", "samples_final.png"]
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and len({p.name.split("-")[1] for p in checkpoints}) == 1
    last = torch.load(checkpoints[-1], weights_only=True)
    assert (last["step"], last["batches_drawn"], len(last["history"]["g_loss"])) == (4, 8, 4)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
