"""Small GAN runs that tests/gan/test_distributed.py makes in one process and, through this file run
as a script in each process of a local gloo group (tests/launch.run_group), in two.

``python gan_group.py OUT`` in a group writes into OUT: each config's final state per rank
(``{name}-rank{r}.pt``), a run interrupted at step ``STOP`` (its checkpoints copied to
``interrupted/`` as they were then) and resumed in the group, the resumption of the one-process
checkpoints in ``single/``, and how many checkpoints each rank wrote (``saves-rank{r}.json``).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from advkit.checkpoints import CheckpointFolder
from advkit.core import Hook
from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator

#: Steps of every run, the global batch (203 samples: 5 batches an epoch; 37 = 19 + 18 in two ranks),
#: checkpoints every EVERY steps and the step an interrupted run stops at.
STEPS, BATCH, EVERY, STOP = 6, 37, 2, 3

#: One loss with the default mode-seeking term (pairs across the ranks' shares), WGAN-GP's penalty,
#: and class-conditional training whose mode-seeking pairs share labels.
CONFIGS = {
    "hinge": dict(loss="hinge"),
    "wgan-gp": dict(loss="wgan-gp", mode_seeking=0.0, n_critic=3),
    "class": dict(loss="non-saturating", conditional="class", mode_seeking=0.05),
}
RESUMED = "hinge"


class ClassMLP(nn.Module):
    """``net(cat(input, one-hot label))``: a class-conditional generator or discriminator for 2-D points."""

    def __init__(self, net: nn.Module, latent_dim: int | None = None, num_classes: int = 3):
        super().__init__()
        self.net, self.num_classes = net, num_classes
        if latent_dim is not None:
            self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, nn.functional.one_hot(y, self.num_classes).to(x.dtype)], 1))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """203 points of three Gaussian blobs in the plane, with their blob as the label."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (203,), generator=g)
    centers = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]])
    return centers[y] + 0.1 * torch.randn(203, 2, generator=g), y


def make_trainer(name: str, seed: int = 0) -> GANTrainer:
    """The trainer of ``CONFIGS[name]``; ``seed`` initialises the networks (the trainer's seed is 0)."""
    torch.manual_seed(seed)
    G, D = MLPGenerator(latent_dim=2, hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2)
    if CONFIGS[name].get("conditional") == "class":
        G = ClassMLP(MLPGenerator(latent_dim=5, hidden=16, depth=2).net, latent_dim=2)
        D = ClassMLP(MLPDiscriminator(dim=5, hidden=16, depth=2).net)
    return GANTrainer(G, D, device="cpu", seed=0, **CONFIGS[name])


def state(trainer: GANTrainer) -> dict:
    """What the tests compare: G, D and the EMA's weights, the step and the history."""
    return {"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "ema": trainer.ema.state_dict(),
            "step": trainer.step, "history": trainer.history}


class Interrupt(Hook):
    """Stops a run (KeyboardInterrupt) after round ``at``."""

    def __init__(self, at: int):
        self.at = at

    def round_end(self, r: int) -> None:
        if r + 1 == self.at:
            raise KeyboardInterrupt


def interrupted(folder: Path) -> None:
    """A run of RESUMED stopped at step STOP, its checkpoints in ``folder``."""
    try:
        make_trainer(RESUMED).fit(data(), STEPS, BATCH, checkpoint_dir=folder, checkpoint_every=EVERY,
                                  progress=False, hooks=[Interrupt(STOP)])
    except KeyboardInterrupt:
        return
    raise AssertionError("the run was not interrupted")


def resumed(folder: Path) -> GANTrainer:
    """RESUMED continued from the checkpoints in ``folder`` to STEPS (a trainer initialised differently)."""
    trainer = make_trainer(RESUMED, seed=1)
    trainer.fit(data(), STEPS, BATCH, checkpoint_dir=folder, checkpoint_every=EVERY, resume=True, progress=False)
    return trainer


def main(out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    saves = [0]
    save = CheckpointFolder.save

    def counted(self, *args, **kwargs):
        saves[0] += 1
        return save(self, *args, **kwargs)

    CheckpointFolder.save = counted
    for name in CONFIGS:
        trainer = make_trainer(name, seed=rank)  # rank 0's initial weights win
        trainer.fit(data(), STEPS, BATCH, progress=False)
        torch.save(state(trainer), out / f"{name}-rank{rank}.pt")
    interrupted(out / "group")
    if rank == 0:
        shutil.copytree(out / "group", out / "interrupted")
    dist.barrier()
    torch.save(state(resumed(out / "group")), out / f"resumed-rank{rank}.pt")
    torch.save(state(resumed(out / "single")), out / f"from-single-rank{rank}.pt")
    (out / f"saves-rank{rank}.json").write_text(json.dumps(saves[0]))
    dist.barrier()  # no rank leaves the group while another still talks to it (a rank that did aborted at exit)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
