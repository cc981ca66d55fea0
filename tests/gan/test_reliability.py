"""Checkpoints, bit-exact resume on CPU, runs that never mix, and the divergence guard (injected NaN, runaway D)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from advkit.checkpoints import CheckpointFolder
from advkit.core import Hook
from advkit.gan import GANTrainer, dcgan
from advkit.gan.checkpointing import CHECKPOINT_PREFIX

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from gan_group import Interrupt  # noqa: E402  (a crash after a given round)

STEPS, EVERY = 8, 3


@pytest.fixture(scope="module")
def tiny_mnist(mnist5k):
    x, y = mnist5k[0].tensors
    return x[:192], y[:192]


def make_trainer(init_seed: int, **kwargs) -> GANTrainer:
    torch.manual_seed(init_seed)
    G, D = dcgan(num_classes=10, width=8, latent_dim=16)
    options = {"loss": "wgan-gp", "n_critic": 2, "conditional": "class", "device": "cpu", "seed": 0}
    return GANTrainer(G, D, **{**options, **kwargs})


def files(directory) -> dict[str, list[int]]:
    """Run id -> the steps of its checkpoints in ``directory``."""
    return {run: [step for step, _ in found]
            for run, found in CheckpointFolder(directory, CHECKPOINT_PREFIX).runs().items()}


def everything(trainer: GANTrainer) -> dict[str, torch.Tensor]:
    """Every tensor of the models, the EMA and both optimizers, flattened into one dict."""
    out = {}
    for name, module in (("G", trainer.G), ("D", trainer.D), ("ema", trainer.ema)):
        out.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d)):
        for i, state in opt.state_dict()["state"].items():
            out.update({f"{name}.{i}.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
    return out


def test_resume_after_interruption_is_bit_exact(tiny_mnist, tmp_path):
    straight = make_trainer(init_seed=1)
    straight.fit(tiny_mnist, steps=STEPS, batch_size=32, progress=False)

    first = make_trainer(init_seed=1)
    with pytest.raises(KeyboardInterrupt):
        first.fit(tiny_mnist, steps=STEPS, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=EVERY,
                  progress=False, hooks=[Interrupt(at=5)])
    resumed = make_trainer(init_seed=2)  # a fresh process: other initial weights, everything comes from the checkpoint
    history = resumed.fit(tiny_mnist, steps=STEPS, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=EVERY,
                          resume=True, progress=False)

    a, b = everything(straight), everything(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert history["g_loss"] == straight.history["g_loss"] and len(history["d_loss"]) == STEPS
    assert files(tmp_path) == {resumed.run_id: [3, 6, 8]}  # one run, its newest three, one at the end too
    assert resumed.run_id == first.run_id
    assert torch.equal(resumed.sample(20, seed=3), straight.sample(20, seed=3))


def test_checkpoint_holds_everything_and_loads_weights_only(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=1)
    trainer.fit(tiny_mnist, steps=3, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)
    state = torch.load(CheckpointFolder(tmp_path, CHECKPOINT_PREFIX).path_for(trainer.run_id, 3), weights_only=True)
    for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "rng", "torch_rng", "step", "batches_drawn",
                "history"):
        assert key in state
    assert state["step"] == 3 and state["batches_drawn"] == 6 and state["run_id"] == trainer.run_id
    assert not list(tmp_path.glob("*.tmp"))


class InjectNaN(Hook):
    """Once, after round ``at``, writes NaN into one weight of ``module``: the failure the guard must catch."""

    def __init__(self, module: torch.nn.Module, at: int, event: str = "round_end"):
        self.module, self.at, self.done = module, at, False
        setattr(self, event, self._fire)

    def _fire(self, r: int, *args) -> None:
        if r + 1 == self.at and not self.done:
            self.done = True
            with torch.no_grad():
                next(self.module.parameters()).view(-1)[0] = float("nan")


def all_finite(state: dict) -> bool:
    tensors = [v for part in ("generator", "discriminator", "ema") for v in state[part].values()]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_divergence_guard_rolls_back_lowers_lr_and_goes_on(tiny_mnist, tmp_path, caplog):
    trainer = make_trainer(init_seed=1, loss="hinge", n_critic=1)
    history = trainer.fit(tiny_mnist, steps=12, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=5,
                          progress=False, hooks=[InjectNaN(trainer.D, at=7)])
    assert trainer.step == 12
    assert history["rollbacks"] == [{"step": 7, "back_to": 5, "reason": "non-finite D loss", "lr_scale": 0.5}]
    for opt, lr in ((trainer.opt_d, trainer.options.lr_d), (trainer.opt_g, trainer.options.lr_g)):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * lr)
    assert all(torch.isfinite(v).all() for v in everything(trainer).values() if v.is_floating_point())
    assert len(history["g_loss"]) == 12 and all(map(torch.isfinite, torch.tensor(history["g_loss"])))
    assert "diverged" in caplog.text
    assert all(all_finite(torch.load(p, weights_only=True)) for p in tmp_path.glob("gan-*.pt"))


def test_checkpoint_never_holds_nan_weights(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=1, loss="hinge", n_critic=1)
    # NaN in G right after its step 5 update, before the checkpoint of step 5 is taken
    history = trainer.fit(tiny_mnist, steps=6, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=5,
                          progress=False, hooks=[InjectNaN(trainer.G, at=5, event="outer_step")])
    assert history["rollbacks"][0]["back_to"] == 0 and trainer.step == 6
    assert all(all_finite(torch.load(p, weights_only=True)) for p in tmp_path.glob("gan-*.pt"))


def test_runaway_discriminator_gives_up_after_max_rollbacks(tiny_mnist):
    trainer = make_trainer(init_seed=1, loss="hinge", n_critic=1, max_abs_logit=1e-6, max_rollbacks=2)
    with pytest.raises(RuntimeError, match="runaway discriminator"):
        trainer.fit(tiny_mnist, steps=4, batch_size=32, progress=False)


class PoisonFrom(Hook):
    """From round ``at`` on, NaN into one weight of ``module`` after every round: a run that keeps diverging."""

    def __init__(self, module: torch.nn.Module, at: int):
        self.module, self.at = module, at

    def round_end(self, r: int) -> None:
        if r + 1 >= self.at:
            with torch.no_grad():
                next(self.module.parameters()).view(-1)[0] = float("nan")


def test_guard_giving_up_leaves_the_last_good_state(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=1, loss="hinge", n_critic=1, max_rollbacks=2)
    with pytest.raises(RuntimeError, match="restored the last good state, step 4"):
        trainer.fit(tiny_mnist, steps=10, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=4, progress=False,
                    hooks=[PoisonFrom(trainer.G, at=6)])
    assert trainer.step == 4 and len(trainer.history["g_loss"]) == 4
    good = torch.load(CheckpointFolder(tmp_path, CHECKPOINT_PREFIX).path_for(trainer.run_id, 4), weights_only=True)
    live = trainer.state_dict()
    for part in ("generator", "discriminator", "ema"):
        assert all(torch.equal(live[part][k], v) for k, v in good[part].items()), part
    assert len(trainer.history["rollbacks"]) == 2  # the rollbacks before giving up stay on record


def test_fresh_run_refuses_a_folder_with_another_runs_checkpoints(tiny_mnist, tmp_path):
    earlier = make_trainer(init_seed=1)
    earlier.fit(tiny_mnist, steps=6, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fresh = make_trainer(init_seed=2)
    with pytest.raises(ValueError, match="another run.*another checkpoint folder.*resume=True.*delete"):
        fresh.fit(tiny_mnist, steps=2, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    # nothing trained or touched
    assert fresh.step == 0 and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # files of older versions (no run id in the name) are another run too
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "gan_0000100.pt").write_bytes(b"old")
    with pytest.raises(ValueError, match=r"holds checkpoints of another run \(gan_0000100\.pt\)"):
        fresh.fit(tiny_mnist, steps=2, batch_size=32, checkpoint_dir=legacy, progress=False)


def test_continuing_fit_of_the_same_run_keeps_only_its_newest_three(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=1, n_critic=1)
    trainer.fit(tiny_mnist, steps=4, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    trainer.fit(tiny_mnist, steps=6, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    assert files(tmp_path) == {trainer.run_id: [4, 5, 6]}


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_resume_skips_a_truncated_newest_checkpoint_with_a_warning(tiny_mnist, tmp_path, caplog):
    first = make_trainer(init_seed=1)
    first.fit(tiny_mnist, steps=6, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)
    folder = CheckpointFolder(tmp_path, CHECKPOINT_PREFIX)
    truncate(folder.path_for(first.run_id, 6))
    straight = make_trainer(init_seed=1)
    straight.fit(tiny_mnist, steps=8, batch_size=32, progress=False)

    resumed = make_trainer(init_seed=2)
    resumed.fit(tiny_mnist, steps=8, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=3, resume=True,
                progress=False)
    assert "skipping unreadable checkpoint" in caplog.text and folder.path_for(first.run_id, 6).name in caplog.text
    assert resumed.run_id == first.run_id and resumed.step == 8
    assert resumed.history["g_loss"] == straight.history["g_loss"]  # went on from step 3, bit-exact
    a, b = everything(straight), everything(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert files(tmp_path) == {first.run_id: [3, 6, 8]}
    rewritten = torch.load(folder.path_for(first.run_id, 6), weights_only=True)  # the truncated file, written anew
    assert rewritten["step"] == 6 and rewritten["run_id"] == first.run_id and all_finite(rewritten)


def test_resume_with_nothing_loadable_is_an_error_not_a_restart(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=2)
    with pytest.raises(FileNotFoundError, match="no gan checkpoint to resume from"):
        trainer.fit(tiny_mnist, steps=2, batch_size=32, checkpoint_dir=tmp_path, resume=True, progress=False)
    first = make_trainer(init_seed=1)
    first.fit(tiny_mnist, steps=6, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)
    for path in tmp_path.glob("gan-*.pt"):
        truncate(path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="none of the 2 checkpoints .* can be loaded"):
        trainer.fit(tiny_mnist, steps=8, batch_size=32, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert trainer.step == 0 and not trainer.history["g_loss"] and sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("option,value", [
    ("lr_g", float("nan")), ("lr_d", 0.0), ("lr_g", float("inf")), ("lr_d", -1e-3), ("ema_decay", float("nan")),
    ("ema_decay", 1.0), ("ema_ramp", 0.0), ("lr_backoff", 1.5), ("lr_backoff", float("nan")),
    ("gp_weight", float("nan")), ("gp_weight", -1.0), ("mode_seeking", float("nan")), ("clip", float("nan")),
    ("clip", 0.0), ("l1_weight", float("inf")), ("max_abs_logit", float("nan")),
    ("n_critic", 0), ("max_rollbacks", -1), ("betas", (0.5, float("nan"))), ("betas", (1.0, 0.9)),
])
def test_trainer_rejects_bad_hyper_parameters_by_name(option, value):
    name, got = (option, repr(value)) if option != "betas" else (r"betas\[[01]\]", r"(nan|1\.0)")
    with pytest.raises(ValueError, match=rf"^{name} must be a finite .*, got {got}$"):
        make_trainer(init_seed=0, **{option: value})


def test_trainer_rejects_wrongly_typed_hyper_parameters():
    with pytest.raises(TypeError, match="lr_g must be a number"):
        make_trainer(init_seed=0, lr_g="fast")
    with pytest.raises(TypeError, match="n_critic must be an integer"):
        make_trainer(init_seed=0, n_critic=2.5)


@pytest.mark.parametrize("option,value",
                         [("checkpoint_every", 0), ("checkpoint_every", -3), ("steps", -1), ("batch_size", 0)])
def test_fit_rejects_bad_counts_before_training(tiny_mnist, tmp_path, option, value):
    trainer = make_trainer(init_seed=0)
    kwargs = {"steps": 2, "batch_size": 32, "checkpoint_dir": tmp_path, "progress": False, option: value}
    with pytest.raises(ValueError, match=f"{option} must be a finite integer >= "):
        trainer.fit(tiny_mnist, **kwargs)
    assert trainer.step == 0 and not list(tmp_path.iterdir())
