"""Checkpoints, bit-exact resume on CPU and the divergence guard (injected NaN, runaway D)."""
from __future__ import annotations

import pytest
import torch

from advkit.core import Hook
from advkit.gan import GANTrainer, dcgan
from advkit.gan import checkpoint as ckpt

STEPS, EVERY = 8, 3


@pytest.fixture(scope="module")
def tiny_mnist(mnist5k):
    x, y = mnist5k[0].tensors
    return x[:192], y[:192]


def make_trainer(init_seed: int, **kwargs) -> GANTrainer:
    torch.manual_seed(init_seed)
    G, D = dcgan(num_classes=10, width=8, latent_dim=16)
    options = dict(loss="wgan-gp", n_critic=2, conditional="class", device="cpu", seed=0)
    return GANTrainer(G, D, **{**options, **kwargs})


class Interrupt(Hook):
    """Simulates a crash after round ``at``."""

    def __init__(self, at: int):
        self.at = at

    def round_end(self, r: int) -> None:
        if r + 1 == self.at:
            raise KeyboardInterrupt


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
    assert ckpt.path_for(tmp_path, STEPS).exists()  # a checkpoint at the end too
    assert torch.equal(resumed.sample(20, seed=3), straight.sample(20, seed=3))


def test_checkpoint_holds_everything_and_loads_weights_only(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=1)
    trainer.fit(tiny_mnist, steps=3, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)
    state = torch.load(ckpt.path_for(tmp_path, 3), weights_only=True)
    for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "rng", "torch_rng", "step", "batches_drawn", "history"):
        assert key in state
    assert state["step"] == 3 and state["batches_drawn"] == 6
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
    for opt, key in ((trainer.opt_d, "d"), (trainer.opt_g, "g")):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * trainer.base_lr[key])
    assert all(torch.isfinite(v).all() for v in everything(trainer).values() if v.is_floating_point())
    assert len(history["g_loss"]) == 12 and all(map(torch.isfinite, torch.tensor(history["g_loss"])))
    assert "diverged" in caplog.text
    assert all(all_finite(torch.load(p, weights_only=True)) for p in tmp_path.glob("gan_*.pt"))


def test_checkpoint_never_holds_nan_weights(tiny_mnist, tmp_path):
    trainer = make_trainer(init_seed=1, loss="hinge", n_critic=1)
    # NaN in G right after its step 5 update, before the checkpoint of step 5 is taken
    history = trainer.fit(tiny_mnist, steps=6, batch_size=32, checkpoint_dir=tmp_path, checkpoint_every=5,
                          progress=False, hooks=[InjectNaN(trainer.G, at=5, event="outer_step")])
    assert history["rollbacks"][0]["back_to"] == 0 and trainer.step == 6
    assert all(all_finite(torch.load(p, weights_only=True)) for p in tmp_path.glob("gan_*.pt"))


def test_runaway_discriminator_gives_up_after_max_rollbacks(tiny_mnist):
    trainer = make_trainer(init_seed=1, loss="hinge", n_critic=1, max_abs_logit=1e-6, max_rollbacks=2)
    with pytest.raises(RuntimeError, match="runaway discriminator"):
        trainer.fit(tiny_mnist, steps=4, batch_size=32, progress=False)
