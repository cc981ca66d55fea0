"""GAN training as a game on :func:`advkit.core.play`: the discriminator is the inner (max) player
with ``n_critic`` optimizer steps per round, the generator the outer (min) player with one step.

The trainer owns what makes a long run dependable: its own ``torch.Generator`` for noise and
gradient-penalty weights and a seeded batch order (so a checkpoint can restore them and a resumed
run is bit-exact on CPU), atomic checkpoints holding every stateful thing, an EMA of the generator
(:mod:`advkit.gan.ema`), and a divergence guard (:class:`advkit.core.DivergenceGuard`) that rolls
back to the last good state with lower learning rates.

In an initialised process group (torchrun) ``fit`` shards each global batch among the ranks and
trains G and D through DistributedDataParallel (:mod:`advkit.gan.sharding`): the same run, within
float tolerance, as one process with the same global batch, whose checkpoints (rank 0 writes them)
resume in any number of processes.
"""
from __future__ import annotations

import copy
import io
import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..acceleration import accelerated, autocast, compile_options
from ..batches import BatchOrder, batch_stream
from ..checkpoints import CheckpointFolder, new_run_id, run_identity
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
    frozen,
    play,
    trainable_params,
)
from ..data import as_tensors
from ..devices import default_device
from ..distributed import (
    broadcast,
    broadcast_buffers,
    data_parallel,
    gather,
    gather_call,
    gather_shards,
    is_distributed,
    is_main,
    rank,
    world_size,
)
from ..progress import ProgressHook
from ..rng import RunRNG
from .ema import EMA
from .losses import flat_logits, gan_loss, gradient_penalty
from .sharding import ShardedOrder, global_loss

log = logging.getLogger(__name__)

CONDITIONS = (None, "class", "image")
CHECKPOINT_PREFIX = "gan"


class GANTrainer:
    """Train ``generator`` against ``discriminator`` with a named loss (see ``advkit.gan.losses.GAN_LOSSES``).

    ``conditional``: None (data ``(x, _)``, x the samples), ``"class"`` (data ``(x, y)``, G and D take
    the labels), ``"image"`` (pix2pix: data ``(x, y)`` with x the condition image and y the target;
    D sees ``(y, x)`` pairs and G adds ``l1_weight * |y - G(z, x)|``). ``clip`` is WGAN's weight
    clip (used by ``"wgan"`` only), ``gp_weight`` WGAN-GP's penalty weight (``"wgan-gp"`` only).
    ``mode_seeking`` weighs MSGAN's diversity term (see :meth:`g_loss`); None means 0.005, or 0 for
    ``conditional="image"``; it keeps the samples of one class varied from the first steps on.
    ``ema_decay`` keeps an exponential moving average of G for sampling (None turns it off); its decay
    ramps up with the step count t as ``min(ema_decay, 1 - 1/(ema_ramp * (t + 1)))``, so the EMA
    averages about the last ``ema_ramp`` share of the steps done (StyleGAN2's ramp-up), never mostly
    the untrained generators of a short run.
    The optimiser defaults are SNGAN's for hinge + spectral norm (Adam betas (0, 0.9), two D steps
    per G step) at twice its learning rate; benchmarks/gan_mnist.py measures why.
    The divergence guard rolls back when a loss is non-finite or the mean |logit| of D passes
    ``max_abs_logit`` (a runaway discriminator), multiplying both learning rates by ``lr_backoff``;
    after ``max_rollbacks`` rollbacks in one ``fit`` it gives up with a RuntimeError.

    The GPU path: ``amp`` runs G's and D's forward passes under bf16 autocast on CUDA (nothing on the
    CPU), with the losses and the gradient penalty's input gradient in float32; ``channels_last`` and
    ``compile`` (True or a dict of :func:`torch.compile` keyword arguments) apply to G and D for the
    duration of ``fit`` (:func:`advkit.acceleration.accelerated`). All three are off by default.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: str = "hinge",
        n_critic: int = 2,
        lr_g: float = 4e-4,
        lr_d: float = 4e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        conditional: str | None = None,
        l1_weight: float = 0.0,
        mode_seeking: float | None = None,
        gp_weight: float = 10.0,
        clip: float = 0.01,
        ema_decay: float | None = 0.999,
        ema_ramp: float = 0.2,
        max_abs_logit: float = 1e4,
        lr_backoff: float = 0.5,
        max_rollbacks: int = 5,
        device: str | torch.device | None = None,
        seed: int = 0,
        amp: bool = False,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
    ):
        self.loss = gan_loss(loss)
        for name, value in (("amp", amp), ("channels_last", channels_last)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False; got {value!r}")
        self.compile = compile_options(compile, "compile")
        if conditional not in CONDITIONS:
            raise ValueError(f"conditional must be one of {CONDITIONS}; got {conditional!r}")
        latent_dim = getattr(generator, "latent_dim", None)
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool):
            raise TypeError("generator must have an integer attribute latent_dim (the noise size)")
        if latent_dim < 1:
            raise ValueError(f"generator.latent_dim must be >= 1; got {latent_dim}")
        if mode_seeking is None:
            mode_seeking = 0.0 if conditional == "image" else 0.005
        check_number(n_critic, "n_critic", low=1, low_open=False, integer=True)
        check_number(max_rollbacks, "max_rollbacks", low_open=False, integer=True)
        for name, value in (("lr_g", lr_g), ("lr_d", lr_d), ("clip", clip), ("ema_ramp", ema_ramp)):
            check_number(value, name)
        for name, value in (("l1_weight", l1_weight), ("gp_weight", gp_weight), ("mode_seeking", mode_seeking)):
            check_number(value, name, low_open=False)
        check_number(lr_backoff, "lr_backoff", high=1.0, high_open=True)
        if max_abs_logit != math.inf:  # inf turns the runaway-discriminator check off
            check_number(max_abs_logit, "max_abs_logit")
        if ema_decay is not None:
            check_number(ema_decay, "ema_decay", high=1.0, high_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        for i, beta in enumerate(betas):
            check_number(beta, f"betas[{i}]", low_open=False, high=1.0, high_open=True)
        if mode_seeking and conditional == "image":
            raise ValueError("mode_seeking pairs samples of one condition; "
                             "it is not available with conditional='image'")
        self.loss_name, self.n_critic, self.conditional, self.mode_seeking = loss, n_critic, conditional, mode_seeking
        self.l1_weight, self.gp_weight, self.clip = l1_weight, gp_weight, clip
        self.betas, self.ema_decay, self.ema_ramp = tuple(betas), ema_decay, ema_ramp
        self.max_abs_logit, self.lr_backoff, self.max_rollbacks = max_abs_logit, lr_backoff, max_rollbacks
        self.base_lr = {"g": lr_g, "d": lr_d}
        self.device, self.seed = default_device(device), seed
        self.amp, self.channels_last = amp, channels_last
        self.G, self.D = generator.to(self.device), discriminator.to(self.device)
        self._train_g, self._train_d = self.G, self.D  # what the moves train through: DDP wrappers in a group
        self.ema = EMA(self.G, ema_decay, ema_ramp) if ema_decay else None
        g_params = trainable_params(self.G)  # none: G is fixed and only D learns (theory checks)
        self.opt_g = torch.optim.Adam(g_params, lr=lr_g, betas=betas) if g_params else None
        self.opt_d = torch.optim.Adam(trainable_params(self.D), lr=lr_d, betas=betas)
        self.rng = torch.Generator().manual_seed(seed)
        self.global_rng = RunRNG(seed)  # torch's global RNG during fit (dropout in the models): the run's own
        self.order = BatchOrder(seed=seed)  # which real samples each D step takes
        self.run_id = new_run_id()  # names this run's checkpoints; a resumed run takes its checkpoint's
        self.step, self.lr_scale = 0, 1.0
        self.history: dict[str, list] = {"d_loss": [], "g_loss": [], "l1": [], "rollbacks": []}
        self.num_classes: int | None = getattr(generator, "num_classes", None)

    # ---- the game ------------------------------------------------------------------------------

    def fit(self, data, steps: int, batch_size: int = 64, checkpoint_dir: str | Path | None = None,
            checkpoint_every: int | None = None, resume: bool = False, progress: bool = True,
            hooks: Iterable[Hook] = ()) -> dict[str, list]:
        """Play until ``steps`` rounds (generator steps) in total; returns the history.

        Checkpoints go to ``checkpoint_dir`` every ``checkpoint_every`` rounds (default: a tenth of
        ``steps``) and at the end, named by this run's id (:mod:`advkit.checkpoints`); the newest three
        of this run are kept. A folder holding another run's checkpoints is refused unless
        ``resume=True``, which first loads the newest valid checkpoint of the run there (an error when
        none loads). Each checkpoint records what defines the run (:meth:`identity`); a resume with
        other settings, data or networks is refused with a ValueError naming the differences, also when
        the run there has finished. ``steps`` may be the steps done already (0 for a new trainer):
        nothing is trained then. ``hooks`` are extra core hooks (round numbers are global steps). When
        the divergence guard gives up, the trainer is left at its last good state.

        torch's global RNG (dropout in the models) is the run's own stream, seeded with ``seed`` and kept
        in the checkpoints; the caller's global RNG is left exactly as it was.

        In a process group every rank passes the same data and arguments; each global batch of
        ``batch_size`` is split among the ranks (contiguous shares, sizes within one), the noise and
        penalty weights are drawn for the whole batch on every rank and sliced, and DDP averages the
        gradients weighted by share, so the run matches one process's within float tolerance (BatchNorm
        layers normalise each rank's share; their buffers follow rank 0's). Every rank starts from rank
        0's state (or the checkpoint rank 0 loads) and ends with the same one; only rank 0 writes
        checkpoints and shows progress (``hooks`` run on every rank: write files from rank 0 only).
        """
        check_number(steps, "steps", low_open=False, integer=True)
        check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
        if checkpoint_every is not None:
            check_number(checkpoint_every, "checkpoint_every", low=1, low_open=False, integer=True)
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        real, cond = self._prepare(data)
        self._check_same_run(real, steps, min(batch_size, len(real)), checkpoint_every, resume)
        folder = None
        if checkpoint_dir is not None:
            folder = CheckpointFolder(checkpoint_dir, CHECKPOINT_PREFIX, identity=self.identity(real, cond, batch_size))
        with self.global_rng.active():
            self._fit(real, cond, steps, batch_size, folder, checkpoint_every, resume, progress, hooks)
        return self.history

    def _fit(self, real: Tensor, cond: Tensor | None, steps: int, batch_size: int, folder: CheckpointFolder | None,
             checkpoint_every: int | None, resume: bool, progress: bool, hooks: Iterable[Hook]) -> None:
        """``fit`` once its arguments are checked, with the run's global RNG."""
        if resume:
            gather_call(lambda: self._resume(folder) if is_main() else None)
        elif folder is not None:
            gather_call(lambda: folder.claim(self.run_id) if is_main() else None)
        self._take_main_state()
        every = checkpoint_every or max(1, steps // 10)
        self.G.train(), self.D.train()
        with accelerated(self.G, self.channels_last, self.compile), accelerated(self.D, self.channels_last,
                                                                               self.compile):
            self._train_g = data_parallel(self.G) if self.opt_g else self.G
            self._train_d = data_parallel(self.D)
            try:
                self._play(real, cond, steps, batch_size, every, folder, progress and is_main(), hooks)
            finally:
                self._train_g, self._train_d = self.G, self.D

    def identity(self, real: Tensor, cond: Tensor | None, batch_size: int) -> dict[str, Any]:
        """What defines this run, recorded in its checkpoints and compared on resume
        (:func:`advkit.checkpoints.run_identity`): :meth:`run_settings`, the fingerprint of the samples and
        conditions ``fit`` prepared, and the shapes of G's and D's weights."""
        return run_identity(self.run_settings(batch_size), {"data": (real, cond)},
                            {"generator": self.G, "discriminator": self.D})

    def run_settings(self, batch_size: int) -> dict[str, Any]:
        """The settings that shape the run's trajectory. Left out, so free to change on resume: ``steps``
        (train further), ``checkpoint_dir``, ``checkpoint_every``, ``progress``, ``hooks``, ``max_rollbacks``
        (how many more tries), and how the run computes: ``device``, ``amp``, ``channels_last``,
        ``compile`` and the number of processes."""
        return {"loss": self.loss_name, "n_critic": self.n_critic, "lr_g": self.base_lr["g"], "lr_d": self.base_lr["d"],
                "betas": self.betas, "conditional": self.conditional, "l1_weight": self.l1_weight,
                "mode_seeking": self.mode_seeking, "gp_weight": self.gp_weight, "clip": self.clip,
                "ema_decay": self.ema_decay, "ema_ramp": self.ema_ramp, "max_abs_logit": self.max_abs_logit,
                "lr_backoff": self.lr_backoff, "seed": self.seed, "batch_size": batch_size}

    def _play(self, real: Tensor, cond: Tensor | None, steps: int, batch_size: int, every: int,
              folder: CheckpointFolder | None, progress: bool, hooks: Iterable[Hook]) -> None:
        """The rounds of ``fit`` up to ``steps``, rolling back when the guard stops them, and the final checkpoint."""
        objectives = _Objectives(self, real, cond, batch_size)
        guard = self._guard(objectives)
        player = BackwardPlayer if is_distributed() else Player
        while self.step < steps:
            inner = player(trainable_params(self.D), OptimizerStep(self.opt_d),
                           WeightClip(self.clip) if self.loss.clip else Identity(), maximize=True)
            outer = player(trainable_params(self.G), OptimizerStep(self.opt_g), maximize=False) if self.opt_g else None
            game_hooks = [guard, _Bookkeeper(self, objectives, guard, every, folder),
                          ProgressHook(steps - self.step, "gan", progress), *hooks]
            play(inner, objectives.d_objective, outer, objectives.g_objective if outer else None, rounds=steps,
                 k=self.n_critic, hooks=game_hooks, start=self.step)
            if guard.reason is None:
                break
            self._rollback(guard)
        if folder is not None and broadcast(not folder.path_for(self.run_id, self.step).exists()):
            self._checkpoint(guard, folder)

    def _check_same_run(self, real: Tensor, steps: int, batch: int, every: int | None, resume: bool) -> None:
        """In a process group: ValueError on every rank unless all ranks passed the same data and
        arguments, or when the (global) batch has fewer samples than there are ranks."""
        if not is_distributed():
            return
        mine = (tuple(real.shape), float(real.sum(dtype=torch.float64)), steps, batch, every, resume, self.seed)
        seen = gather(mine)
        if any(other != seen[0] for other in seen):
            ranks = "; ".join(f"rank {r}: {s[0][0]} samples, steps={s[2]}, batch_size={s[3]}, seed={s[6]}"
                              for r, s in enumerate(seen))
            raise ValueError(f"data: the ranks of the process group passed different data or arguments to fit "
                             f"({ranks}); give every rank the same data, without a DistributedSampler: fit splits "
                             f"each batch among the ranks itself")
        if batch < world_size():
            raise ValueError(f"batch_size: a batch of {batch} samples cannot be split among {world_size()} ranks; "
                             f"use batch_size >= {world_size()}")

    def _take_main_state(self) -> None:
        """In a process group, every rank continues from rank 0's state (models, EMA, optimizers, RNGs,
        counters and run id), sent as one serialised checkpoint."""
        if not is_distributed():
            return
        buffer = io.BytesIO()
        if is_main():
            torch.save(self.state_dict(), buffer)
        payload = broadcast(buffer.getvalue())
        if not is_main():
            self.load_state_dict(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True))

    def _guard(self, objectives: _Objectives) -> DivergenceGuard:
        """The divergence guard of one ``fit``: non-finite losses, a runaway discriminator and non-finite
        weights at a checkpoint stop the game; its first good state is the one ``fit`` starts from."""
        runaway = Limit("runaway discriminator", "mean |logit|", lambda: objectives.logit_scale, self.max_abs_logit,
                        role="inner")
        weights = [self.G, self.D] + ([self.ema.model] if self.ema is not None else [])
        return DivergenceGuard(self, weights, limits=[runaway], max_rollbacks=self.max_rollbacks, step=self.step,
                               roles={"inner": "D", "outer": "G"}, name="GAN training")

    def _prepare(self, data) -> tuple[Tensor, Tensor | None]:
        """(samples D must call real, condition or None), checked against the models, on the CPU."""
        x, y = as_tensors(data)
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(f"data must hold as many samples as targets, at least one; got {len(x)} and {len(y)}")
        if not x.is_floating_point():
            raise TypeError(f"data samples must be floating point (images in [0, 1]); got {x.dtype}")
        if not torch.isfinite(x).all() or (y.is_floating_point() and not torch.isfinite(y).all()):
            raise ValueError("data holds NaN or Inf values")
        if self.conditional is None:
            real, cond = x, None
        elif self.conditional == "class":
            if y.is_floating_point() or y.ndim != 1 or y.min() < 0:
                raise ValueError("conditional='class' needs non-negative integer labels of shape (N,)")
            classes = [n for n in (getattr(self.G, "num_classes", None), getattr(self.D, "num_classes", None)) if n]
            if classes and int(y.max()) >= min(classes):
                raise ValueError(f"data has label {int(y.max())} but the models know {min(classes)} classes (labels "
                                 f"0..{min(classes) - 1}); build them with num_classes={int(y.max()) + 1} "
                                 "or relabel the data")
            self.num_classes = self.num_classes or int(y.max()) + 1
            real, cond = x, y
        else:
            if not y.is_floating_point() or y.ndim != x.ndim:
                raise ValueError("conditional='image' needs data of (condition image, target image) pairs")
            real, cond = y, x
        self._check_models_fit(real, cond)
        return real, cond

    def _check_models_fit(self, real: Tensor, cond: Tensor | None) -> None:
        """ValueError, before training, when G's samples differ in shape from the data's, the data leave
        the range G can produce (its ``output_range`` attribute, when it has one) or D cannot judge them."""
        low, high = getattr(self.G, "output_range", (-math.inf, math.inf))
        tol = 1e-4
        if float(real.min()) < low - tol or float(real.max()) > high + tol:
            raise ValueError(f"the data's samples lie in [{float(real.min()):.3g}, {float(real.max()):.3g}] "
                             f"but the generator produces values in [{low}, {high}]; rescale the data to that range "
                             "(images in [0, 1])")
        c = None if cond is None else cond[:2].to(self.device)
        with frozen(self.G), frozen(self.D), torch.no_grad():
            try:
                fake = self.generate(torch.zeros(len(real[:2]), self.G.latent_dim, device=self.device), c)
            except (RuntimeError, IndexError) as err:
                raise ValueError(f"the generator fails on the data's conditions (shape {tuple(cond.shape[1:])}): "
                                 f"{err}") from err
            if fake.shape[1:] != real.shape[1:]:
                raise ValueError(f"the generator makes samples of shape {tuple(fake.shape[1:])} but the data's "
                                 f"samples have shape {tuple(real.shape[1:])}; build the models for the data (e.g. "
                                 f"dcgan(channels=..., size=...)) or resize the data")
            try:
                self.judge(real[:2].to(self.device), c)
            except (RuntimeError, IndexError) as err:
                raise ValueError(f"the discriminator fails on the data's samples (shape {tuple(real.shape[1:])}): "
                                 f"{err}") from err

    # ---- moves -------------------------------------------------------------------------------------

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` standard normal noise, drawn on the CPU from the trainer's generator."""
        return torch.randn(n, self.G.latent_dim, generator=generator or self.rng).to(self.device)

    def judge(self, x: Tensor, cond: Tensor | None, model: nn.Module | None = None) -> Tensor:
        """D's (or ``model``'s) float32 logits for ``x`` (with its condition), shape (N,)."""
        model = model or self.D
        with autocast(self.device, self.amp):
            logits = model(x) if cond is None else model(x, cond)
        return flat_logits(_full_precision(logits))

    def generate(self, z: Tensor, cond: Tensor | None, model: nn.Module | None = None) -> Tensor:
        """``G(z)`` or ``G(z, cond)`` (or ``model``'s), in float32."""
        model = model or self.G
        with autocast(self.device, self.amp):
            out = model(z) if cond is None else model(z, cond)
        return _full_precision(out)

    def d_loss(self, real: Tensor, cond: Tensor | None, rows: tuple[int, int] | None = None) -> tuple[Tensor, float]:
        """The discriminator's loss on one real batch and as many fresh fakes (plus its penalty), and the
        larger of its mean |logit| on the real and on the fake samples (what the guard watches).

        ``rows = (start, total)``: ``real`` is this rank's share of a global batch of ``total``, from row
        ``start``; the noise and penalty weights are drawn for the whole batch and sliced, and the loss
        and logit scale are the global batch's (:func:`advkit.gan.sharding.global_loss`)."""
        start, total = rows or (0, len(real))
        share = slice(start, start + len(real))
        with torch.no_grad():
            fake = self.generate(self.noise(total)[share], cond)
        logits_real, logits_fake = self.judge(real, cond, self._train_d), self.judge(fake, cond, self._train_d)
        scales = [float(logits.detach().abs().mean()) for logits in (logits_real, logits_fake)]
        loss = self.loss.d(logits_real, logits_fake)
        if self.loss.penalty:
            alpha = torch.rand(total, generator=self.rng)[share]
            with _uncompiled(self.D):  # torch.compile's autograd has no double backward
                penalty = gradient_penalty(lambda t: self.judge(t, cond, self._train_d), real, fake, alpha=alpha)
            loss = loss + self.gp_weight * penalty
        loss, scales = global_loss(loss, len(real), total, scales)
        return loss, max(scales)

    def g_loss(self, real: Tensor, cond: Tensor | None, rows: tuple[int, int] | None = None,
               batch_cond: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The generator's loss on fresh fakes with the conditions of the last real batch, and its L1 term.

        With ``mode_seeking``, the second half of the batch repeats the first half's labels and the loss
        adds ``mode_seeking / (ratio + 1e-5)``, ratio = mean |G(z1, y) - G(z2, y)| / mean |z1 - z2| over
        those pairs (MSGAN, Mao et al. 2019): two noises for one label must give different samples.
        ``rows`` as in :meth:`d_loss`, ``batch_cond`` the global batch's conditions (default ``cond``):
        the pairs are the global batch's, whichever ranks hold them."""
        start, total = rows or (0, len(real))
        share, half = slice(start, start + len(real)), total // 2
        noise = self.noise(total)
        z = noise[share]
        if self.mode_seeking and half and cond is not None:
            pairs = torch.arange(total, device=self.device)
            pairs[half:2 * half] -= half
            cond = (cond if batch_cond is None else batch_cond)[pairs[share]]
        fake = self.generate(z, cond, self._train_g)
        loss = self.loss.g(self.judge(fake, cond))
        l1 = F.l1_loss(fake, real) if self.conditional == "image" else None
        if l1 is not None:
            loss = loss + self.l1_weight * l1
        diversity = 0.0
        if self.mode_seeking and half:
            if is_distributed():
                diversity, surrogate = self._sharded_mode_seeking(fake, noise, share, half)
                loss = loss + surrogate
            else:
                ratio = (fake[:half] - fake[half:2 * half]).abs().mean() / (z[:half] - z[half:2 * half]).abs().mean()
                loss = loss + self.mode_seeking / (ratio + 1e-5)
        loss, l1_mean = global_loss(loss, len(real), total, [] if l1 is None else [float(l1.detach())], diversity)
        return loss, (l1 if l1 is None or not is_distributed() else torch.tensor(l1_mean[0]))

    def _sharded_mode_seeking(self, fake: Tensor, noise: Tensor, share: slice, half: int) -> tuple[float, Tensor]:
        """The mode-seeking term of a global batch whose pairs may lie on different ranks: its value
        ``w / (ratio + 1e-5)`` (the same on every rank), and a zero-valued term whose gradient, summed
        over the ranks and divided by this rank's share of the batch, is that term's gradient.

        ratio = A / B with A = mean |f_i - f_j| over the pairs (i, j = i + half); each rank
        differentiates |f_k - f_partner| for its own rows k against the partner's gathered (detached)
        sample, which sums over the ranks to dA."""
        everyone = gather_shards(fake, len(noise))
        spread = (noise[:half] - noise[half:2 * half]).abs().mean()
        ratio = float((everyone[:half] - everyone[half:2 * half]).abs().mean() / spread)
        rows = torch.arange(share.start, share.stop, device=fake.device)
        paired = rows < 2 * half
        partners = torch.where(rows < half, rows + half, rows - half)[paired]
        mine = (fake[paired] - everyone[partners]).abs().sum() / (half * fake[0].numel() * float(spread))
        slope = -self.mode_seeking / (ratio + 1e-5) ** 2
        weight = len(rows) / len(noise)  # global_loss scales this rank's loss by its share; undo that here
        return self.mode_seeking / (ratio + 1e-5), slope * (mine - mine.detach()) / weight

    # ---- sampling ----------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int | None = None, labels: Tensor | None = None, condition: Tensor | None = None,
               seed: int | None = None, ema: bool = True, batch_size: int = 500) -> Tensor:
        """``n`` samples from the generator (its EMA when kept and ``ema``), in eval mode, on the CPU.

        Class-conditional: ``labels`` (default: 0, 1, ..., cycling over the classes). Image-conditional:
        ``condition`` images (n defaults to their number). The noise comes from its own generator
        seeded with ``seed`` (default: the trainer's seed), so sampling never shifts the training RNG.
        """
        cond = self._sample_condition(n, labels, condition)
        n = len(cond) if cond is not None else n
        if n is None or n < 0:
            raise ValueError(f"n must be a non-negative number of samples; got {n}")
        rng = torch.Generator().manual_seed(self.seed if seed is None else seed)
        model = self.ema.model if (ema and self.ema is not None) else self.G
        with frozen(model):
            parts = [self.generate(self.noise(min(batch_size, n - i), rng),
                                   None if cond is None else cond[i:i + batch_size].to(self.device), model).cpu()
                     for i in range(0, n, batch_size)]
        return torch.cat(parts) if parts else torch.empty(0)

    def _sample_condition(self, n: int | None, labels: Tensor | None, condition: Tensor | None) -> Tensor | None:
        if self.conditional == "class":
            if labels is None:
                if n is None or not self.num_classes:
                    raise ValueError("pass labels (or n, once the number of classes is known)")
                labels = torch.arange(n) % self.num_classes
            if n is not None and len(labels) != n:
                raise ValueError(f"labels must have n={n} entries; got {len(labels)}")
            return torch.as_tensor(labels, dtype=torch.long)
        if self.conditional == "image":
            if condition is None:
                raise ValueError("an image-conditional generator needs condition images")
            return condition
        return None

    # ---- state, checkpoints, rollback --------------------------------------------------------------

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
        """Restore what :meth:`state_dict` saved (tensors are copied into the live models)."""
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

    def _checkpoint(self, guard: DivergenceGuard, folder: CheckpointFolder | None) -> None:
        """The current state becomes the guard's last good one (and is written) unless a weight is non-finite."""
        good = guard.remember(self.step)
        if good is not None and folder is not None:  # rank 0 writes, the others wait for it
            path = gather_call(lambda: folder.save(good, self.run_id, self.step) if is_main() else None)[0]
            log.info("checkpoint at step %d: %s", self.step, path)

    def _resume(self, folder: CheckpointFolder) -> None:
        """Load the newest valid checkpoint of this trainer's run in ``folder`` (or of the only run there),
        once it is a checkpoint of this run's settings, data and networks."""
        _, state, path = folder.resume(self.run_id)
        self.load_state_dict(state)
        log.info("resumed run %s from %s at step %d", self.run_id, path, self.step)

    def _rollback(self, guard: DivergenceGuard) -> None:
        """Back to the guard's last good state, both learning rates times ``lr_backoff``, logged in the
        history. When the guard gives up (its RuntimeError), the restored state keeps the record of the
        rollbacks made before."""
        failed_at, reason, scale = self.step, guard.reason, self.lr_scale * self.lr_backoff
        events = self.history["rollbacks"]
        try:
            guard.rollback(failed_at)
        except RuntimeError:
            self.history["rollbacks"] = events
            raise
        self.lr_scale = scale
        for opt, key in ((self.opt_g, "g"), (self.opt_d, "d")):
            for group in opt.param_groups if opt else ():
                group["lr"] = self.base_lr[key] * scale
        event = {"step": failed_at, "back_to": self.step, "reason": reason, "lr_scale": scale}
        self.history["rollbacks"] = events + [event]
        log.warning("GAN diverged at step %d (%s): restored step %d, learning rates x%.3g",
                    failed_at, reason, self.step, scale)


@contextmanager
def _uncompiled(model: nn.Module) -> Iterator[None]:
    """``model``'s calls run eagerly for the block when ``compile`` made them go through torch.compile."""
    compiled = getattr(model, "_compiled_call_impl", None)
    model._compiled_call_impl = None
    try:
        yield
    finally:
        model._compiled_call_impl = compiled


def _full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 when autocast made it bf16 or fp16; otherwise ``t`` itself."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class _Objectives:
    """The two objectives of one ``fit``: each D move takes (this rank's share of) the next real batch
    of the trainer's batch order; the G move reuses the last batch's conditions (and targets, for L1).
    Each round's D losses are averaged into the history; the latest D move's mean |logit| is kept for
    the guard."""

    def __init__(self, trainer: GANTrainer, real: Tensor, cond: Tensor | None, batch_size: int):
        self.t, self.cond = trainer, cond
        tensors = (real,) if cond is None else (real, cond)
        self.order = ShardedOrder(trainer.order, rank(), world_size())
        self.batches = batch_stream(tensors, batch_size, self.order, trainer.device)
        self.last: tuple[Tensor, Tensor | None] | None = None
        self.d_losses: list[float] = []
        self.logit_scale = 0.0

    def d_objective(self) -> Tensor:
        """What D climbs: minus its loss."""
        real, *cond = next(self.batches)
        self.last = real, cond[0] if cond else None
        loss, self.logit_scale = self.t.d_loss(*self.last, rows=self.order.rows)
        self.d_losses.append(float(loss.detach()))
        return -loss

    def g_objective(self) -> Tensor:
        """What G descends."""
        batch_cond = None
        if is_distributed() and self.cond is not None and self.t.mode_seeking:
            batch_cond = self.cond[self.order.batch].to(self.t.device)
        loss, l1 = self.t.g_loss(*self.last, rows=self.order.rows, batch_cond=batch_cond)
        self.t.history["g_loss"].append(float(loss.detach()))
        if l1 is not None:
            self.t.history["l1"].append(float(l1.detach()))
        return loss

    def start_round(self) -> None:
        """A round starts with no D losses (a round the guard cut short leaves some)."""
        self.d_losses = []

    def end_round(self) -> None:
        """The round's mean D loss goes into the history."""
        self.t.history["d_loss"].append(sum(self.d_losses) / len(self.d_losses))


class _Bookkeeper(Hook):
    """After each G move: the EMA update; after each round: the mean D loss, the step counter and checkpoints."""

    def __init__(self, trainer: GANTrainer, objectives: _Objectives, guard: DivergenceGuard, every: int,
                 folder: CheckpointFolder | None):
        self.t, self.objectives, self.guard, self.every, self.folder = trainer, objectives, guard, every, folder

    def round_start(self, r: int) -> None:
        self.objectives.start_round()

    def outer_step(self, r: int, loss: Tensor) -> None:
        broadcast_buffers(self.t.G), broadcast_buffers(self.t.D)  # the ranks' BatchNorm statistics: rank 0's
        if self.guard.reason is None and self.t.ema is not None:
            self.t.ema.update(self.t.G, r)

    def round_end(self, r: int) -> bool:
        self.objectives.end_round()
        self.t.step = r + 1
        if self.t.step % self.every == 0:
            self.t._checkpoint(self.guard, self.folder)
        return self.guard.reason is not None
