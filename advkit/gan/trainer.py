"""GAN training as a game on :func:`advkit.core.play`: the discriminator is the inner (max) player
with ``n_critic`` optimizer steps per round, the generator the outer (min) player with one step.

The trainer holds the game's state: the networks and their optimizers, an EMA of the generator
(:mod:`advkit.gan.ema`), its own ``torch.Generator`` for noise and gradient-penalty weights, a seeded
batch order, torch's global RNG during ``fit`` (:class:`advkit.rng.RunRNG`), counters and history,
so that a checkpoint restores all of it and a resumed run is bit-exact on CPU. A divergence guard
(:class:`advkit.core.DivergenceGuard`) rolls back to the last good state with lower learning rates.
The rest lives beside it: the options (:mod:`advkit.gan.options`), the data checks
(:mod:`advkit.gan.inputs`), the run record and resume (:mod:`advkit.gan.checkpointing`), sampling
(:mod:`advkit.gan.sampling`) and the split of each batch among the ranks of a process group
(:mod:`advkit.gan.sharding`).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..acceleration import accelerated, autocast, full_precision, uncompiled
from ..batches import BatchOrder, batch_stream
from ..checkpoints import CheckpointFolder, new_run_id
from ..core import (
    BackwardPlayer,
    DivergenceGuard,
    Hook,
    Identity,
    Limit,
    OptimizerStep,
    Player,
    WeightClip,
    check_number,
    play,
    trainable_params,
)
from ..data import Samples
from ..distributed import broadcast_buffers, data_parallel, gather_shards, is_distributed, is_main, rank, world_size
from ..progress import ProgressHook
from ..rng import RunRNG
from . import checkpointing, sampling
from .ema import EMA
from .inputs import prepare
from .losses import flat_logits, gan_loss, gradient_penalty
from .options import GANOptions
from .sharding import ShardedOrder, adopt_main_state, check_same_run, global_loss, sharded_mode_seeking

log = logging.getLogger(__name__)


class GANTrainer:
    """Train ``generator`` against ``discriminator`` with the options of :class:`~advkit.gan.options.GANOptions`,
    e.g. ``GANTrainer(G, D, loss="wgan-gp", n_critic=5)``; the options are :attr:`options`.

    Args:
        generator: an ``nn.Module`` with an integer attribute ``latent_dim`` mapping noise of shape
            ``(N, latent_dim)`` (plus labels or a condition image, when conditional) to samples.
        discriminator: an ``nn.Module`` mapping samples (plus the condition) to one logit per sample.
        options: the run's options (default: GANOptions' defaults).
        **keywords: options by name, e.g. ``loss="hinge"``; with ``options``, they replace its fields.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, options: GANOptions | None = None,
                 **keywords: Any):
        if options is not None and not isinstance(options, GANOptions):
            raise TypeError(f"options must be a GANOptions; got {type(options).__name__}")
        self.options = GANOptions(**keywords) if options is None else replace(options, **keywords)
        self.loss = gan_loss(self.options.loss)
        latent_dim = getattr(generator, "latent_dim", None)
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool):
            raise TypeError("generator must have an integer attribute latent_dim (the noise size)")
        if latent_dim < 1:
            raise ValueError(f"generator.latent_dim must be >= 1; got {latent_dim}")
        o = self.options
        self.G, self.D = generator.to(o.device), discriminator.to(o.device)
        self._train_g, self._train_d = self.G, self.D  # what the moves train through: DDP wrappers in a group
        self.ema = EMA(self.G, o.ema_decay, o.ema_ramp) if o.ema_decay else None
        g_params = trainable_params(self.G)  # none: G is fixed and only D learns (theory checks)
        self.opt_g = torch.optim.Adam(g_params, lr=o.lr_g, betas=o.betas) if g_params else None
        self.opt_d = torch.optim.Adam(trainable_params(self.D), lr=o.lr_d, betas=o.betas)
        self.rng = torch.Generator().manual_seed(o.seed)
        self.global_rng = RunRNG(o.seed)  # torch's global RNG during fit (dropout in the models): the run's own
        self.order = BatchOrder(seed=o.seed)  # which real samples each D step takes
        self.run_id = new_run_id()  # names this run's checkpoints; a resumed run takes its checkpoint's
        self.step, self.lr_scale = 0, 1.0
        self.history: dict[str, list] = {"d_loss": [], "g_loss": [], "l1": [], "rollbacks": []}
        self.num_classes: int | None = getattr(generator, "num_classes", None)

    # ---- the game ------------------------------------------------------------------------------

    def fit(self, data, steps: int, batch_size: int = 64, checkpoint_dir: str | Path | None = None,
            checkpoint_every: int | None = None, resume: bool = False, progress: bool = True,
            hooks: Iterable[Hook] = ()) -> dict[str, list]:
        """Play until ``steps`` rounds (generator steps) in total; returns the history (``d_loss``,
        ``g_loss``, ``l1`` per step and the guard's ``rollbacks``). When the divergence guard gives up
        (RuntimeError), the trainer is left at its last good state. torch's global RNG is the run's own
        stream, kept in the checkpoints; the caller's is left exactly as it was. In a process group
        (torchrun) every rank passes the same data and arguments and trains its share of each batch
        (:mod:`advkit.gan.sharding`); only rank 0 writes checkpoints and shows progress.

        Args:
            data: a Dataset, DataLoader or ``(x, y)`` pair, read as ``conditional`` says
                (:func:`advkit.gan.inputs.prepare`); a Dataset or DataLoader is read a batch at a time
                (ahead by a DataLoader's workers), each rank reading only its share of every batch.
            steps: the total of rounds to reach; the steps done already (0 for a new trainer) train nothing.
            batch_size: the (global) batch of each D step.
            checkpoint_dir: a folder for this run's checkpoints (:mod:`advkit.gan.checkpointing`), written
                every ``checkpoint_every`` rounds and at the end; one holding another run's is refused.
            checkpoint_every: rounds between checkpoints (default: a tenth of ``steps``).
            resume: first load the newest valid checkpoint of the run in ``checkpoint_dir`` (an error when
                none loads, or when its settings, data or networks differ from this call's).
            progress: show a progress bar.
            hooks: extra core hooks (round numbers are global steps); they run on every rank.
        """
        check_number(steps, "steps", low_open=False, integer=True)
        check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
        if checkpoint_every is not None:
            check_number(checkpoint_every, "checkpoint_every", low=1, low_open=False, integer=True)
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        samples = prepare(self, data)
        check_same_run(samples, steps, min(batch_size, len(samples)), checkpoint_every, resume, self.options.seed)
        folder = None
        if checkpoint_dir is not None:
            folder = CheckpointFolder(checkpoint_dir, checkpointing.CHECKPOINT_PREFIX,
                                      identity=self.identity(samples, batch_size))
        with self.global_rng.active():
            self._fit(samples, steps, batch_size, folder, checkpoint_every, resume, progress, hooks)
        return self.history

    def _fit(self, samples: Samples, steps: int, batch_size: int, folder: CheckpointFolder | None,
             checkpoint_every: int | None, resume: bool, progress: bool, hooks: Iterable[Hook]) -> None:
        """``fit`` once its arguments are checked, with the run's global RNG."""
        checkpointing.start(self, folder, resume)
        adopt_main_state(self)
        every = checkpoint_every or max(1, steps // 10)
        self.G.train(), self.D.train()
        fast = self.options.channels_last, self.options.compile
        with accelerated(self.G, *fast), accelerated(self.D, *fast):
            self._train_g = data_parallel(self.G) if self.opt_g else self.G
            self._train_d = data_parallel(self.D)
            try:
                self._play(samples, steps, batch_size, every, folder, progress and is_main(), hooks)
            finally:
                self._train_g, self._train_d = self.G, self.D

    def identity(self, samples: Samples, batch_size: int) -> dict[str, Any]:
        """What defines this run, recorded in its checkpoints and compared on resume
        (:func:`advkit.gan.checkpointing.run_record`).

        Args:
            samples: the samples D calls real and their conditions, as ``fit`` prepared them.
            batch_size: the batch size ``fit`` was called with.
        """
        return checkpointing.run_record(self, samples, batch_size)

    def _play(self, samples: Samples, steps: int, batch_size: int, every: int, folder: CheckpointFolder | None,
              progress: bool, hooks: Iterable[Hook]) -> None:
        """The rounds of ``fit`` up to ``steps``, rolling back when the guard stops them, and the final checkpoint."""
        objectives = _FitObjectives(self, samples, batch_size)
        guard = self._guard(objectives)
        player = BackwardPlayer if is_distributed() else Player
        while self.step < steps:
            inner = player(trainable_params(self.D), OptimizerStep(self.opt_d),
                           WeightClip(self.options.clip) if self.loss.clip else Identity(), maximize=True)
            outer = player(trainable_params(self.G), OptimizerStep(self.opt_g), maximize=False) if self.opt_g else None
            game_hooks = [guard, _EMAStepCheckpointHook(self, objectives, guard, every, folder),
                          ProgressHook(steps - self.step, "gan", progress), *hooks]
            play(inner, objectives.d_objective, outer, objectives.g_objective if outer else None, rounds=steps,
                 k=self.options.n_critic, hooks=game_hooks, start=self.step)
            if guard.reason is None:
                break
            self._rollback(guard)
        checkpointing.finish(self, guard, folder)

    def _guard(self, objectives: _FitObjectives) -> DivergenceGuard:
        """The divergence guard of one ``fit``: non-finite losses, a runaway discriminator and non-finite
        weights at a checkpoint stop the game; its first good state is the one ``fit`` starts from."""
        runaway = Limit("runaway discriminator", "mean |logit|", lambda: objectives.logit_scale,
                        self.options.max_abs_logit, role="inner")
        weights = [self.G, self.D] + ([self.ema.model] if self.ema is not None else [])
        return DivergenceGuard(self, weights, limits=[runaway], max_rollbacks=self.options.max_rollbacks,
                               step=self.step, roles={"inner": "D", "outer": "G"}, name="GAN training")

    def _rollback(self, guard: DivergenceGuard) -> None:
        """Back to the guard's last good state, both learning rates times ``lr_backoff``, logged in the
        history. When the guard gives up (its RuntimeError), the restored state keeps the record of the
        rollbacks made before."""
        failed_at, reason, scale = self.step, guard.reason, self.lr_scale * self.options.lr_backoff
        events = self.history["rollbacks"]
        try:
            guard.rollback(failed_at)
        except RuntimeError:
            self.history["rollbacks"] = events
            raise
        self.lr_scale = scale
        for opt, lr in ((self.opt_g, self.options.lr_g), (self.opt_d, self.options.lr_d)):
            for group in opt.param_groups if opt else ():
                group["lr"] = lr * scale
        event = {"step": failed_at, "back_to": self.step, "reason": reason, "lr_scale": scale}
        self.history["rollbacks"] = events + [event]
        log.warning("GAN diverged at step %d (%s): restored step %d, learning rates x%.3g",
                    failed_at, reason, self.step, scale)

    # ---- moves -------------------------------------------------------------------------------------

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` standard normal noise, drawn on the CPU from ``generator`` (default: the
        trainer's), on the trainer's device.

        Args:
            n: the number of noise vectors.
            generator: the random generator to draw from.
        """
        return torch.randn(n, self.G.latent_dim, generator=generator or self.rng).to(self.options.device)

    def judge(self, x: Tensor, cond: Tensor | None, model: nn.Module | None = None) -> Tensor:
        """D's (or ``model``'s) float32 logits for ``x`` (with its condition), shape (N,).

        Args:
            x: the samples.
            cond: their conditions, or None.
            model: the discriminator to call (default: D).
        """
        return flat_logits(self._forward(model or self.D, x, cond))

    def generate(self, z: Tensor, cond: Tensor | None, model: nn.Module | None = None) -> Tensor:
        """``G(z)`` or ``G(z, cond)`` (or ``model``'s), in float32.

        Args:
            z: the noise.
            cond: the conditions, or None.
            model: the generator to call (default: G).
        """
        return self._forward(model or self.G, z, cond)

    def _forward(self, model: nn.Module, x: Tensor, cond: Tensor | None) -> Tensor:
        """``model(x)`` or ``model(x, cond)`` under the run's autocast, in float32."""
        with autocast(self.options.device, self.options.amp):
            out = model(x) if cond is None else model(x, cond)
        return full_precision(out)

    def d_loss(self, real: Tensor, cond: Tensor | None, rows: tuple[int, int] | None = None) -> tuple[Tensor, float]:
        """The discriminator's loss on one real batch and as many fresh fakes (plus its penalty), and the
        larger of its mean |logit| on the real and on the fake samples (what the guard watches).

        Args:
            real: the real batch (this rank's share of it in a process group).
            cond: its conditions, or None.
            rows: ``(start, total)``: ``real`` is a share of a global batch of ``total`` from row ``start``;
                the noise and penalty weights are drawn for the whole batch and sliced, and the loss and
                logit scale are the global batch's (:func:`advkit.gan.sharding.global_loss`).
        """
        start, total = rows or (0, len(real))
        share = slice(start, start + len(real))
        with torch.no_grad():
            fake = self.generate(self.noise(total)[share], cond)
        logits_real, logits_fake = self.judge(real, cond, self._train_d), self.judge(fake, cond, self._train_d)
        scales = [float(logits.detach().abs().mean()) for logits in (logits_real, logits_fake)]
        loss = self.loss.d(logits_real, logits_fake)
        if self.loss.penalty:
            alpha = torch.rand(total, generator=self.rng)[share]
            with uncompiled(self.D):  # torch.compile's autograd has no double backward
                penalty = gradient_penalty(lambda t: self.judge(t, cond, self._train_d), real, fake, alpha=alpha)
            loss = loss + self.options.gp_weight * penalty
        loss, scales = global_loss(loss, len(real), total, scales)
        return loss, max(scales)

    def g_loss(self, real: Tensor, cond: Tensor | None, rows: tuple[int, int] | None = None,
               batch_cond: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The generator's loss on fresh fakes with the conditions of the last real batch, and its L1 term.

        With mode seeking, the second half of the batch repeats the first half's labels and the loss
        adds ``mode_seeking / (ratio + 1e-5)``, ratio = mean |G(z1, y) - G(z2, y)| / mean |z1 - z2| over
        those pairs (MSGAN, Mao et al. 2019): two noises for one label must give different samples.

        Args:
            real: the last real batch (the L1 term's targets).
            cond: its conditions, or None.
            rows: as in :meth:`d_loss`.
            batch_cond: the global batch's conditions (default ``cond``): the mode-seeking pairs are the
                global batch's, whichever ranks hold them.
        """
        weight = self.options.mode_seeking_weight
        start, total = rows or (0, len(real))
        share, half = slice(start, start + len(real)), total // 2
        noise = self.noise(total)
        z = noise[share]
        if weight and half and cond is not None:
            pairs = torch.arange(total, device=self.options.device)
            pairs[half:2 * half] -= half
            cond = (cond if batch_cond is None else batch_cond)[pairs[share]]
        fake = self.generate(z, cond, self._train_g)
        loss = self.loss.g(self.judge(fake, cond))
        l1 = F.l1_loss(fake, real) if self.options.conditional == "image" else None
        if l1 is not None:
            loss = loss + self.options.l1_weight * l1
        diversity = 0.0
        if weight and half:
            if is_distributed():
                diversity, surrogate = sharded_mode_seeking(weight, fake, noise, share, half)
                loss = loss + surrogate
            else:
                ratio = (fake[:half] - fake[half:2 * half]).abs().mean() / (z[:half] - z[half:2 * half]).abs().mean()
                loss = loss + weight / (ratio + 1e-5)
        loss, l1_mean = global_loss(loss, len(real), total, [] if l1 is None else [float(l1.detach())], diversity)
        return loss, (l1 if l1 is None or not is_distributed() else torch.tensor(l1_mean[0]))

    def sample(self, n: int | None = None, labels: Tensor | None = None, condition: Tensor | None = None,
               seed: int | None = None, ema: bool = True, batch_size: int = 500) -> Tensor:
        """``n`` samples from the generator (its EMA when kept and ``ema``), in eval mode, on the CPU;
        the noise never moves the training's random streams.

        Args:
            n: the number of samples (image-conditional: default the number of ``condition`` images).
            labels: class-conditional: one label per sample (default 0, 1, ..., cycling over the classes).
            condition: image-conditional: the condition images.
            seed: seeds the noise (default: the trainer's seed).
            ema: sample from the EMA of the generator when one is kept.
            batch_size: the samples generated per forward pass.
        """
        return sampling.sample(self, n, labels, condition, seed, ema, batch_size)

    # ---- state -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: models, EMA, optimizers, RNG states, counters, history."""
        return {
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "opt_g": self.opt_g.state_dict() if self.opt_g else {}, "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(), **self.global_rng.state_dict(),
            "step": self.step, "batches_drawn": self.order.drawn, "lr_scale": self.lr_scale,
            "num_classes": self.num_classes or 0, "history": self.history, "run_id": self.run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (tensors are copied into the live models).

        Args:
            state: a :meth:`state_dict`, e.g. a checkpoint's.
        """
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.opt_g is not None:
            self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"])
        self.global_rng.load_state_dict(state)
        self.step, self.order.drawn, self.lr_scale = state["step"], state["batches_drawn"], state["lr_scale"]
        self.num_classes = state["num_classes"] or self.num_classes
        self.run_id = state.get("run_id", self.run_id)
        self.history = copy.deepcopy(state["history"])


class _FitObjectives:
    """The two objectives of one ``fit``: each D move takes (this rank's share of) the next real batch
    of the trainer's batch order; the G move reuses the last batch's conditions (and targets, for L1).
    Each round's D losses are averaged into the history; the latest D move's mean |logit| is kept for
    the guard."""

    def __init__(self, trainer: GANTrainer, samples: Samples, batch_size: int):
        self.trainer, self.conditional = trainer, trainer.options.conditional is not None
        self.order = ShardedOrder(trainer.order, rank(), world_size())
        self.batches = batch_stream(samples, batch_size, self.order, trainer.options.device)
        self.last: tuple[Tensor, Tensor | None] | None = None
        self.d_losses: list[float] = []
        self.logit_scale = 0.0

    def d_objective(self) -> Tensor:
        """What D climbs: minus its loss."""
        real, cond, _ = next(self.batches)
        self.last = real, cond if self.conditional else None
        loss, self.logit_scale = self.trainer.d_loss(*self.last, rows=self.order.rows)
        self.d_losses.append(float(loss.detach()))
        return -loss

    def g_objective(self) -> Tensor:
        """What G descends."""
        trainer, batch_cond = self.trainer, None
        if is_distributed() and self.conditional and trainer.options.mode_seeking_weight:
            batch_cond = gather_shards(self.last[1], self.order.rows[1])  # the global batch's, from every rank
        loss, l1 = trainer.g_loss(*self.last, rows=self.order.rows, batch_cond=batch_cond)
        trainer.history["g_loss"].append(float(loss.detach()))
        if l1 is not None:
            trainer.history["l1"].append(float(l1.detach()))
        return loss

    def start_round(self) -> None:
        """A round starts with no D losses (a round the guard cut short leaves some)."""
        self.d_losses = []

    def end_round(self) -> None:
        """The round's mean D loss goes into the history."""
        self.trainer.history["d_loss"].append(sum(self.d_losses) / len(self.d_losses))


class _EMAStepCheckpointHook(Hook):
    """Keeps the trainer's state in step with the game: after each G move the ranks' buffers and the
    EMA; after each round the mean D loss, the step counter and, every ``every`` steps, a checkpoint."""

    def __init__(self, trainer: GANTrainer, objectives: _FitObjectives, guard: DivergenceGuard, every: int,
                 folder: CheckpointFolder | None):
        self.trainer, self.objectives, self.guard, self.every, self.folder = trainer, objectives, guard, every, folder

    def round_start(self, r: int) -> None:
        self.objectives.start_round()

    def outer_step(self, r: int, loss: Tensor) -> None:
        trainer = self.trainer
        broadcast_buffers(trainer.G), broadcast_buffers(trainer.D)  # the ranks' BatchNorm statistics: rank 0's
        if self.guard.reason is None and trainer.ema is not None:
            trainer.ema.update(trainer.G, r)

    def round_end(self, r: int) -> bool:
        self.objectives.end_round()
        self.trainer.step = r + 1
        if self.trainer.step % self.every == 0:
            checkpointing.checkpoint(self.trainer, self.guard, self.folder)
        return self.guard.reason is not None
