"""Adversarial training as one game on :func:`advkit.core.play`: each round the inner player (the
attack, its own k-step game) crafts the batch's adversarial examples against the current weights,
then the outer player (the network, an optimizer step) descends the method's loss.

Attacks are crafted with the model in eval mode and the loss is computed in train mode (TRADES'
reference code does the same; Madry et al.'s MNIST model has no BatchNorm or dropout, so there the
choice does not matter): the inner player is then the very attack the model meets at test time,
and k attack steps do not drag BatchNorm's running statistics towards adversarial batches.

A run is reproducible and resumable: batch order, augmentation and attack seeds are pure functions
of the seed, the epoch, the step and the sample, and a checkpoint at the end of every epoch holds the
model, the optimizer, the torch RNG state and the history (the learning rate is a function of the step).

Inside an initialised process group (torchrun) the run is sharded. Every rank draws the same global
batch (the batch order and the image shifts come from the same seeded generator) and takes its
contiguous share of it (:func:`advkit.distributed.shard_bounds`: no sample lost or repeated); the
adversary attacks that share on the unwrapped model, whose draws are per sample (seeded by the step
and the sample's number), so each sample meets the attack one process would make; the network trains
through DistributedDataParallel, each rank's mean loss weighted by its share of the global batch, so
the averaged gradient is that of the global batch's mean loss. Per-sample state (FGSM's memory) is
gathered at the end of every epoch; the per-epoch evaluation is split by whole batches and gathered,
so every rank records the same numbers and takes the same decisions. Only rank 0 writes checkpoints,
which hold the unwrapped model and nothing that depends on the number of ranks: a run checkpointed
with one number of processes resumes with another. What equals one process: the batches, each
sample's attack draws and the loss; the weights up to float rounding (sums taken in another order),
for models whose outputs do not couple the rows of a batch (BatchNorm normalises each rank's share
unless converted to SyncBatchNorm; dropout draws from each rank's own torch RNG). TRADES' KL ascent,
which starts 1e-3 from x, amplifies that rounding into other sign steps after its first step.
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..acceleration import accelerated, autocast, compile_options
from ..attacks import PGD
from ..batches import BatchOrder, ShardedOrder, batch_stream
from ..checkpoints import CheckpointFolder, new_run_id, run_identity, sample_fingerprint
from ..core import BackwardPlayer, Hook, OptimizerStep, Player, check_number, frozen, get_norm, play, trainable_params
from ..data import Samples
from ..devices import default_device
from ..distributed import (
    barrier,
    broadcast,
    data_parallel,
    gather,
    gather_call,
    is_distributed,
    is_main,
    my_shard,
    rank,
    world_size,
)
from ..models import SmallCNN, wide_smallcnn
from ..progress import ProgressHook
from ..rng import RunRNG, derived_seed, sample_seeds
from ..train import checked_samples, one_cycle, random_shift
from ..validation import UNRECORDED, check_eps, check_flag, options_from, recorded
from .adversaries import LayerScaledStep, Restoring, WeightAdversary, resolve_attack
from .ema import Averaging, WeightAverage
from .history import EpochRecord, History
from .methods import Method, get_method

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "advtrain"
#: PGD steps of the per-epoch robust accuracy and of the overfitting guard's check.
EVAL_STEPS = 10
#: Images per forward of the per-epoch clean accuracy.
EVAL_BATCH = 1000
_STREAM, _ATTACK, _RANK_RNG = 1, 2, 3  # purposes of derived seeds


def defense_model(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> SmallCNN:
    """The model advkit's defenses train by default (benchmark, CLI, demo): :func:`advkit.models.wide_smallcnn`,
    a SmallCNN with 1,024 hidden units. Robustness needs capacity (Madry et al. 2018); the wider layer
    costs little on a CPU, as the convolutions dominate.

    Args:
        in_channels: channels of the input images.
        num_classes: logits returned.
        input_size: the side of the square input images.
    """
    return wide_smallcnn(in_channels, num_classes, input_size)


@dataclass(frozen=True)
class TrainingOptions:
    """The settings of :func:`adversarial_training` (see there for their meaning), validated when built.

    Kept normalised: ``epochs`` and ``lr`` are the method's defaults where None, ``method_options``
    holds every option of the method (:mod:`.methods`: those common to all methods and the method's
    own, such as TRADES' ``beta``) with its defaults filled in, ``device`` is a ``torch.device``
    (None: CUDA when available). A bad setting raises ``ValueError``/``TypeError`` naming it;
    ``dataclasses.replace`` checks again. :meth:`config` is what the checkpoints and the
    :class:`History` record (``device``, ``progress`` and the GPU switches change no number on the CPU
    and are left out).
    """

    method: str = "pgd"
    eps: float = 0.3
    norm: str = "linf"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 128
    seed: int = 0
    method_options: Mapping[str, Any] = field(default_factory=dict)
    device: str | torch.device | None = field(default=None, metadata=UNRECORDED)
    progress: bool = field(default=True, metadata=UNRECORDED)
    amp: bool = field(default=False, metadata=UNRECORDED)
    channels_last: bool = field(default=False, metadata=UNRECORDED)
    compile: bool | dict[str, Any] = field(default=False, metadata=UNRECORDED)

    def __post_init__(self) -> None:
        spec = get_method(self.method)
        if not isinstance(self.method_options, Mapping):
            raise TypeError(f"method_options must be a dict of the method's options, got "
                            f"{type(self.method_options).__name__}")
        settings = spec.resolve(dict(self.method_options))
        norm, eps = check_threat(self.norm, self.eps)
        check_number(self.batch_size, "batch_size", low=1, low_open=False, integer=True)
        check_number(self.seed, "seed", low=None, integer=True)
        epochs = spec.epochs if self.epochs is None else check_number(self.epochs, "epochs", low=1, low_open=False,
                                                                      integer=True)
        lr = spec.lr if self.lr is None else check_number(self.lr, "lr")
        for name in ("amp", "channels_last"):
            check_flag(getattr(self, name), name)
        compile_options(self.compile)
        for name, value in (("method_options", settings), ("norm", norm), ("eps", eps), ("epochs", epochs),
                            ("lr", lr), ("device", default_device(self.device))):
            object.__setattr__(self, name, value)

    def config(self, train_size: int) -> dict[str, Any]:
        """The run's recorded settings for ``train_size`` training samples, its method's options under
        ``"options"``: what checkpoints check a resume against and the history keeps."""
        settings = recorded(self)
        options = settings.pop("method_options")
        return {**settings, "train_size": train_size, "options": dict(options)}


def adversarial_training(
    model: nn.Module,
    data,
    method: str = TrainingOptions.method,
    eps: float = TrainingOptions.eps,
    norm: str = TrainingOptions.norm,
    attack: Any = None,
    epochs: int | None = TrainingOptions.epochs,
    lr: float | None = TrainingOptions.lr,
    batch_size: int = TrainingOptions.batch_size,
    eval_data=None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = TrainingOptions.seed,
    device: str | torch.device | None = TrainingOptions.device,
    progress: bool = TrainingOptions.progress,
    amp: bool = TrainingOptions.amp,
    channels_last: bool = TrainingOptions.channels_last,
    compile: bool | dict[str, Any] = TrainingOptions.compile,
    options: TrainingOptions | None = None,
    **method_options: Any,
) -> tuple[nn.Module, History]:
    """Train ``model`` in place to resist attacks of size ``eps`` under ``norm``; returns it in eval
    mode with its :class:`History` (one record per epoch; ``history.config`` the run's settings).

    ``method``: ``"pgd"`` (Madry et al. 2018: descend the cross-entropy of PGD examples),
    ``"trades"`` (Zhang et al. 2019: cross-entropy of clean examples plus ``beta`` times the KL
    divergence to the examples that maximise it) or ``"fgsm-rs"`` (fast adversarial training, Wong et
    al. 2020: one FGSM step of ``step``·eps per batch; by default each sample starts from its own
    perturbation of the previous epoch (``start="previous"``), Wong et al.'s uniform random start is
    ``start="random", step=1.25, noise=1``; a guard runs PGD on a held-out batch of the training data
    after each epoch, stops when its accuracy falls ``guard_drop`` below the best seen (catastrophic
    overfitting), and the run ends with the weights of the best epoch) or ``"mart"`` (Wang et al. 2020:
    PGD on the cross-entropy, then the boosted cross-entropy of its examples plus ``beta`` times their KL
    divergence from the clean prediction, weighted by how badly the clean image is classified).

    ``awp=gamma`` (``"pgd"``, ``"trades"``, ``"mart"``; Wu et al. 2020's 5e-3) adds adversarial weight
    perturbation once the eps has warmed up: each step the loss and its gradient are taken at weights
    perturbed by ``gamma`` times their norm, layer by layer, up the loss; the optimizer then steps from
    the unperturbed weights. ``ema=decay`` (every method) keeps an exponential moving average of the
    weights (:class:`advkit.defenses.ema.WeightAverage`): each epoch evaluates it (and the raw weights,
    ``raw_*`` in the records), the checkpoints keep it, and the run ends with it in ``model``.

    ``attack`` replaces the method's attack: a name from ``advkit.attacks.ATTACKS``, an advkit or
    torchattacks attack on ``model``, or a factory ``model -> attack`` called for each batch; its eps
    is the training eps of the step. The training eps ramps linearly from 0 to ``eps`` over the first
    ``warmup`` share of the steps; AdamW follows a one-cycle learning rate peaking at ``lr``
    (:func:`one_cycle`). ``epochs`` and ``lr`` default to the method's. Method options
    (``method_options``): see ``advkit.defenses.methods``.

    After each epoch: clean accuracy on ``eval_data`` (default: the training data) and PGD accuracy
    at ``eps`` on its first ``eval_size`` images, then a checkpoint in ``checkpoint_dir`` when given.
    ``resume=True`` continues the run checkpointed there and ends with the same weights as an
    uninterrupted run (bit-identical on the CPU). The checkpoints record what defines the run
    (:func:`run_record`: :meth:`TrainingOptions.config`, the attack; fingerprints of ``data`` and
    ``eval_data``; the model's shapes): a resume that differs is refused with a ValueError naming the
    differences, also when that run has finished. Same ``seed``, same numbers on the CPU. torch's
    global RNG (dropout, torchattacks' draws) is the run's own stream, seeded with ``seed`` and kept
    in the checkpoints; the caller's is left as it was.

    Under torchrun (an initialised process group; every rank passes the same arguments and data) the
    run is sharded (see the module's docstring): each rank attacks and trains on its share of every
    global batch of ``batch_size`` through DistributedDataParallel, ends with the weights one process
    would reach (up to float rounding) and returns them with the same history; only rank 0 writes
    checkpoints, and a checkpoint resumes under any number of processes.

    Args:
        model: the network to train, a module with trainable parameters, returning logits.
        data: the training data: a Dataset, a DataLoader or an ``(x, y)`` pair of images in [0, 1]
            and class indices; a Dataset or DataLoader is read a batch at a time (each rank its share),
            checked as it is read.
        method: ``"pgd"``, ``"trades"``, ``"fgsm-rs"`` or ``"mart"`` (a name of
            ``advkit.defenses.methods.TRAINING_METHODS``).
        eps: the training budget, > 0.
        norm: the threat model, a name of ``advkit.core.NORMS`` (``"linf"``, ``"l2"``, ``"l1"``).
        attack: None (the method's own attack), an attack name, an attack on ``model`` or a factory
            ``model -> attack``.
        epochs: passes over the data (None: the method's).
        lr: the peak learning rate of the one-cycle schedule (None: the method's).
        batch_size: samples per optimizer step (the global batch under torchrun).
        eval_data: the data of the per-epoch accuracies (None: the training data), read in batches.
        checkpoint_dir: a folder for a checkpoint after every epoch (None: none).
        resume: continue the run checkpointed in ``checkpoint_dir``.
        seed: seeds the batch order, the shifts, the attacks' draws and torch's RNG for the run.
        device: where to train (None: CUDA when available).
        progress: show a progress bar.
        amp: run the forwards under bf16 autocast on CUDA (the loss, the attack's gradients, steps and
            projections in float32; an attack object or factory passed as ``attack`` keeps its own ``amp``).
        channels_last: store the model's 4-D weights channels_last for the run.
        compile: True or a dict of :func:`torch.compile` keyword arguments: compile the model's calls
            for the run. ``channels_last`` and ``compile`` are undone at the end
            (:func:`advkit.acceleration.accelerated`); none of the three changes a CPU result.
        options: all of the settings above (``method`` to ``compile``) and the method options as one
            :class:`TrainingOptions`, instead of keywords (a keyword beside it is a TypeError).
        **method_options: the method's options, e.g. ``steps``, ``beta``, ``warmup``, ``eval_size``, ``awp``,
            ``ema``.

    Returns:
        ``(model, history)``: the trained model in eval mode and its :class:`History`.
    """
    settings = options_from(TrainingOptions, options, {
        "method": method, "eps": eps, "norm": norm, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
        "method_options": method_options, "device": device, "progress": progress, "amp": amp,
        "channels_last": channels_last, "compile": compile})
    check_model(model)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir to resume from")
    spec, opts, device = get_method(settings.method), settings.method_options, settings.device
    model.to(device)
    samples = checked_samples(model, data, device, images=True)
    given = {"data": samples, "eval_data": None}
    held_out = None
    if spec.guard:
        samples, held_out = _hold_out(samples, settings.batch_size, settings.seed)
    evaluation = samples if eval_data is None else checked_samples(model, eval_data, device, images=True,
                                                                   name="eval_data")
    if eval_data is not None:
        given["eval_data"] = evaluation
    adversary = resolve_attack(attack, model, settings.norm,
                               spec.adversary(model, settings.norm, opts, len(samples), settings.amp), settings.amp)
    config = settings.config(len(samples))
    history = History(settings.method, settings.eps, "training data" if eval_data is None else "eval_data",
                      config=config)
    game = TrainingGame(model, spec, opts, adversary, samples, evaluation, held_out, config, history, device,
                        amp=settings.amp, channels_last=settings.channels_last,
                        compile=compile_options(settings.compile))
    folder = None
    if checkpoint_dir is not None:
        folder = CheckpointFolder(checkpoint_dir, CHECKPOINT_PREFIX, identity=run_record(config, attack, model, given))
    game.start(folder, resume)
    game.play(settings.progress)
    model.eval()
    return model, game.history


def run_record(config: dict[str, Any], attack: Any, model: nn.Module, data: dict[str, Any]) -> dict[str, Any]:
    """What defines a run of the training game, for its checkpoints (:func:`advkit.checkpoints.run_identity`):
    its ``config`` and ``attack`` (by name, or an object's or factory's type), the fingerprints of
    ``data`` (name -> tensors or None) and the model's shapes."""
    if attack is None or isinstance(attack, str):
        described = attack
    elif isinstance(attack, (Tensor, torch.utils.data.Dataset)):
        described = "a fixed set of adversarial examples"
    else:  # a factory (function or class) by its name, an attack object by its class
        kind = attack if hasattr(attack, "__qualname__") else type(attack)
        described = f"{kind.__module__}.{kind.__qualname__}"
    return run_identity({**config, "attack": described}, data, {"model": model})


def check_threat(norm: str, eps: float) -> tuple[str, float]:
    """``(norm, eps)`` checked for training against attacks (eps > 0); errors name the argument."""
    norm = get_norm(norm).name  # every geometry of the registry: the adversaries step and project through it
    eps = check_eps(eps, norm=norm)
    if eps == 0:
        raise ValueError("eps must be > 0 for adversarial training (eps=0 is plain training: advkit.train.fit)")
    return norm, eps


def check_model(model: nn.Module) -> None:
    """TypeError unless ``model`` is a module, ValueError unless it has trainable parameters."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not trainable_params(model):
        raise ValueError("model has no trainable parameters (all have requires_grad=False)")


def check_shares(samples: Samples, batch_size: int) -> None:
    """In a process group every rank must pass the same training data (their sizes and
    :func:`~advkit.checkpoints.sample_fingerprint` compared: ValueError otherwise) and get a sample of each
    batch (ValueError for a batch_size below the number of processes)."""
    if not is_distributed():
        return
    seen = gather((len(samples), sample_fingerprint(samples)))
    if any(other != seen[0] for other in seen):
        sizes = ", ".join(f"rank {r}: {n}" for r, (n, _) in enumerate(seen))
        raise ValueError(f"data: the ranks of the process group passed different samples ({sizes} samples); "
                         f"give every rank the same data in the same order, without a DistributedSampler: "
                         f"adversarial training splits the samples among the ranks itself")
    batch = min(batch_size, len(samples))
    if batch < world_size():
        raise ValueError(f"batch_size: batches of {batch} cannot be shared among {world_size()} processes (each "
                         f"needs at least one sample); use a batch_size of at least {world_size()}")


class TrainingGame(Hook):
    """The state of one run (what a checkpoint holds) and the hooks that drive its rounds."""

    def __init__(self, model: nn.Module, spec: Method, opts: dict[str, Any], adversary, samples: Samples,
                 evaluation: Samples, held_out: Samples | None, config: dict[str, Any], history: History,
                 device: torch.device, amp: bool = False, channels_last: bool = False,
                 compile: dict[str, Any] | None = None):
        self.model, self.spec, self.opts, self.adversary = model, spec, opts, adversary
        self.samples, self.evaluation, self.held_out = samples, evaluation, held_out
        self.config, self.history, self.device = config, history, device
        check_shares(samples, config["batch_size"])
        self.amp, self.channels_last, self.compile = amp, channels_last, compile
        self.seed, self.eps = config["seed"], config["eps"]
        self.per_epoch = max(1, len(samples) // config["batch_size"])
        self.total = config["epochs"] * self.per_epoch
        self.global_rng = RunRNG(self.seed)  # torch's global RNG while the game plays: the run's own stream
        self.optimizer = torch.optim.AdamW(trainable_params(model), lr=config["lr"], weight_decay=opts["weight_decay"])
        self.network: nn.Module = model  # what the loss forwards through: DDP's wrapper in a process group
        self.run_id = broadcast(new_run_id())
        self.step, self.stopped = 0, False
        self.best: dict[str, Any] | None = None  # the guard's best weights and held-out accuracy
        self.folder: CheckpointFolder | None = None
        self.batches = self.epoch_gen = self.order = None
        self.losses: list[Tensor] = []
        self.epoch_start = 0.0
        self.ema = WeightAverage(model, opts["ema"]) if opts.get("ema") else None
        self.weights: WeightAdversary | None = None  # AWP's perturbation of the weights, while the game plays

    # ---- the game ------------------------------------------------------------------------------

    def start(self, folder: CheckpointFolder | None, resume: bool) -> None:
        """Where the game's checkpoints go: ``resume`` continues the run in ``folder`` (refused unless it is
        this one's, :meth:`CheckpointFolder.resume`); a new run claims the folder."""
        self.folder = folder
        if resume:
            self.resume(folder)
        elif folder is not None:
            gather_call(lambda: folder.claim(self.run_id) if is_main() else None)

    def play(self, progress: bool) -> None:
        """Play the rounds left (with the run's global RNG), then, under a guard, go back to the weights of
        its best epoch; with an average of the weights, end with it."""
        if not self.stopped and self.step < self.total:
            with self.global_rng.active(), accelerated(self.model, self.channels_last, self.compile):
                self.network = data_parallel(self.model)
                kind = Player if self.network is self.model else BackwardPlayer
                params, step = trainable_params(self.model), OptimizerStep(self.optimizer)
                if self.opts.get("awp"):
                    self.weights = WeightAdversary(self.model, kind(params, LayerScaledStep(self.opts["awp"]),
                                                                    maximize=True))
                    step = Restoring(step, self.weights)
                outer = kind(params, step, maximize=False)
                title = f"adversarial training ({self.spec.name})"
                bar = ProgressHook(self.total - self.step, title, progress and is_main())
                averaging = [] if self.ema is None else [Averaging(self.model, self.ema)]
                try:
                    play(outer=outer, outer_loss=self.objective, rounds=self.total, start=self.step,
                         hooks=[*averaging, self, bar])
                finally:
                    if self.weights is not None:
                        self.weights.restore()
                    self.network, self.weights = self.model, None
        if self.best is not None:
            self.model.load_state_dict(self.best["model"])
            self.history.best_epoch = self.best["epoch"]
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.model.state_dict())

    def eps_at(self, step: int) -> float:
        """The training eps of ``step``: a linear ramp over the first ``warmup`` share of the steps."""
        ramp = self.opts["warmup"] * self.total
        return self.eps if ramp == 0 else self.eps * min(1.0, (step + 1) / ramp)

    def objective(self) -> Tensor:
        """The round's loss: this rank's share of the next global batch (the only samples it reads), its
        adversarial examples, the method's loss in train mode, weighted by the share's size (1 in one process)."""
        epoch, j = divmod(self.step, self.per_epoch)
        if j == 0 or self.batches is None:
            self.epoch_gen = torch.Generator().manual_seed(derived_seed(self.seed, _STREAM, epoch))
            self.order = ShardedOrder(BatchOrder(generator=self.epoch_gen), rank(), world_size())
            self.batches = batch_stream(self.samples, self.config["batch_size"], self.order, self.device)
            self.losses.clear()
            self.epoch_start = time.perf_counter()
            if rank() > 0:  # rank 0 keeps the stream it checkpoints; the others' start afresh each epoch
                self.global_rng.reseed(derived_seed(self.seed, _RANK_RNG, epoch, rank()))
        bx, by, index = next(self.batches)
        index = index.to(self.device)
        if self.opts["shift"] and bx.ndim == 4:
            bx = random_shift(bx, self.opts["shift"], self.epoch_gen, rows=self.order.rows)
        weight = len(bx) * world_size() / self.order.rows[1]
        seeds = sample_seeds(derived_seed(self.seed, _ATTACK, self.step), index)
        eps = self.eps_at(self.step)
        x_adv = self.adversary(bx, by, eps, seeds, index)

        def batch_loss() -> Tensor:
            self.network.train()
            with autocast(self.device, self.amp):
                loss = self.spec.loss(self.forward, bx, x_adv, by, self.opts)
            # DDP averages the ranks' gradients: the weight makes the average the global batch's
            return loss * weight if weight != 1 else loss

        if self.weights is not None and eps == self.eps:  # AWP, once the eps has warmed up
            self.weights.perturb(batch_loss)
        loss = batch_loss()
        self.losses.append(loss.detach())
        return loss

    def forward(self, x: Tensor) -> Tensor:
        """The network's training forward, its logits in float32."""
        return self.network(x).float()

    def round_start(self, r: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = one_cycle(r, self.total, self.config["lr"])

    def round_end(self, r: int) -> bool:
        self.step = r + 1
        if self.step % self.per_epoch:
            return False
        self.end_epoch()
        return self.stopped

    # ---- epochs: evaluation, guard, checkpoint ----------------------------------------------------

    def end_epoch(self) -> None:
        epoch = self.step // self.per_epoch
        if hasattr(self.adversary, "synchronize"):
            self.adversary.synchronize()
        self.model.eval()
        evaluated = self.evaluated
        record = EpochRecord(
            epoch=epoch, eps=self.eps_at(self.step - 1), train_loss=self.epoch_loss(),
            clean_accuracy=self.clean_accuracy(self.evaluation, evaluated),
            robust_accuracy=self.robust_accuracy(self.evaluation, self.opts["eval_size"], evaluated), seconds=0.0)
        if self.ema is not None:
            record.raw_clean_accuracy = self.clean_accuracy(self.evaluation)
            record.raw_robust_accuracy = self.robust_accuracy(self.evaluation, self.opts["eval_size"])
        if self.held_out is not None:
            record.guard_accuracy = self.robust_accuracy(self.held_out, model=evaluated)
            self.guard(record)
        record.seconds = time.perf_counter() - self.epoch_start
        self.history.records.append(record)
        if is_main():
            log.info("epoch %d: eps %.3g, loss %.4f, clean %.3f, robust %.3f (%.1f s)", epoch, record.eps,
                     record.train_loss, record.clean_accuracy, record.robust_accuracy, record.seconds)
        self.batches = None
        if self.folder is not None:
            if is_main():
                path = self.folder.save(self.state_dict(), self.run_id, self.step)
                log.info("checkpoint at epoch %d: %s", epoch, path)
            barrier()

    def epoch_loss(self) -> float:
        """The mean over the epoch's steps of the global batches' mean losses (gathered from the ranks)."""
        if not self.losses:
            return float("nan")
        steps = torch.stack(self.losses).cpu()
        if is_distributed():
            steps = torch.stack(gather(steps)).sum(0) / world_size()
        return float(steps.mean())

    @property
    def evaluated(self) -> nn.Module:
        """The network each epoch evaluates and the run returns: the average of the weights where there is one."""
        return self.model if self.ema is None else self.ema.model

    def clean_accuracy(self, samples: Samples, model: nn.Module | None = None) -> float:
        """Top-1 accuracy of ``model`` (None: the trained one) on ``samples``, read in batches of :data:`EVAL_BATCH`."""
        model = self.model if model is None else model

        def correct(i: int, j: int) -> int:
            x, y = (t.to(self.device) for t in samples.read(torch.arange(i, j)))
            with frozen(model), torch.no_grad():
                return int((model(x).argmax(1) == y).sum())

        return count_by_batches(correct, len(samples), EVAL_BATCH) / len(samples)

    def robust_accuracy(self, samples: Samples, size: int | None = None, model: nn.Module | None = None) -> float:
        """Accuracy of ``model`` (None: the trained one) under PGD (``EVAL_STEPS`` steps, a fixed seed) at the
        full eps on the first ``size`` of ``samples`` (None: all), read in batches."""
        atk = PGD(self.model if model is None else model, self.eps, steps=EVAL_STEPS, norm=self.config["norm"],
                  seed=self.seed)
        n = len(samples) if size is None else min(size, len(samples))

        def fooled(i: int, j: int) -> int:
            return int(atk.run(*(t.to(self.device) for t in samples.read(torch.arange(i, j)))).success.sum())

        return 1.0 - count_by_batches(fooled, n, self.config["batch_size"]) / n

    def guard(self, record: EpochRecord) -> None:
        """Remember the weights of the best held-out robust accuracy (the run ends with them); on a fall of
        ``guard_drop`` below it (catastrophic overfitting), stop."""
        acc = record.guard_accuracy
        if self.best is None or acc >= self.best["accuracy"]:
            self.best = {"accuracy": acc, "epoch": record.epoch, "model": copy.deepcopy(self.evaluated.state_dict())}
        elif acc < self.best["accuracy"] - self.opts["guard_drop"]:
            self.history.guard_fired = record.epoch
            self.stopped = True
            if is_main():
                log.warning("adversarial training (%s): held-out PGD accuracy fell from %.3f to %.3f at epoch %d "
                            "(catastrophic overfitting): stopped, the model keeps epoch %d's weights", self.spec.name,
                            self.best["accuracy"], acc, record.epoch, self.best["epoch"])

    # ---- checkpoints -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                **self.global_rng.state_dict(),
                "step": self.step, "stopped": self.stopped, "history": self.history.to_dict(),
                "best": self.best or {}, "config": self.config, "adversary": self.adversary_state(),
                "ema": {} if self.ema is None else self.ema.model.state_dict()}

    def adversary_state(self) -> dict[str, Any]:
        """What the inner player carries from step to step (FGSM's per-sample memory), else nothing."""
        return self.adversary.state_dict() if hasattr(self.adversary, "state_dict") else {}

    def resume(self, folder: CheckpointFolder) -> None:
        """Load the newest valid checkpoint of the run in ``folder`` (read by rank 0, sent to the others);
        ValueError when it was written by a run with other settings, data or model (every rank raises)."""
        self.run_id, state, path = gather_call(lambda: folder.resume(self.run_id) if is_main() else None)[0]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_rng.load_state_dict(state)
        self.step, self.stopped, self.best = state["step"], state["stopped"], state["best"] or None
        if hasattr(self.adversary, "load_state_dict"):
            self.adversary.load_state_dict(state["adversary"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state["ema"])
        self.history = History.from_dict({"config": self.config, **state["history"]})
        log.info("resumed run %s from %s at step %d of %d", self.run_id, path, self.step, self.total)


def count_by_batches(count: Callable[[int, int], int], n: int, size: int) -> int:
    """The sum of ``count(i, j)`` over the batches ``[i, j)`` of ``size`` that cut ``n`` samples in order.
    In a process group each rank counts a contiguous run of those batches and every rank gets the
    total: the one-process number, as no batch is cut differently."""
    first, last = my_shard(-(-n // size))
    parts = gather_call(lambda: sum(count(b * size, min(n, (b + 1) * size)) for b in range(first, last)))
    return sum(parts)


def _hold_out(samples: Samples, size: int, seed: int) -> tuple[Samples, Samples]:
    """Split off a seeded held-out batch of ``size`` samples (at most a tenth of the data) for the guard."""
    n = min(size, max(1, len(samples) // 10))
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))
    keep, out = order[n:].sort().values, order[:n].sort().values
    return samples.subset(keep), samples.subset(out)


__all__ = ["EpochRecord", "History", "TrainingOptions", "adversarial_training"]
