"""Adversarial fine-tuning: an already trained network is trained on for a few epochs on batches in
which a share ``mix`` of the images is replaced by adversarial examples.

It is the game of adversarial training (:mod:`.training`: the attack as inner player, the network as
outer player, one :func:`advkit.core.play`), with the adversary wrapped so that it attacks only the
first ``mix`` share of each (shuffled) batch, no eps warm-up and no image shifts. The attack may be
made once in advance (``advkit.attacks.generate``) and served from a fixed set: augmentation with
attack data.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..checkpoints import CheckpointFolder
from ..core import check_number
from ..core.norms import get_norm
from ..data import Samples, as_tensors
from ..devices import default_device
from ..train import accuracy, checked_samples
from ..validation import UNRECORDED, check_images, options_from, recorded
from .adversaries import Adversary, resolve_attack
from .ema import check_ema
from .history import EpochRecord, History
from .methods import TRAINING_METHODS, Method
from .training import CHECKPOINT_PREFIX, TrainingGame, check_model, check_threat, run_record

log = logging.getLogger(__name__)

__all__ = ["FinetuneOptions", "FixedAdversary", "MixedAdversary", "finetune"]

#: The defaults of fine-tuning: AdamW's peak learning rate (one-cycle), its weight decay, and how many
#: evaluation images the per-epoch PGD accuracy attacks.
LR = 5e-3
OPTIONS = {"warmup": 0.0, "shift": 0, "weight_decay": 5e-4, "eval_size": 256}


class MixedAdversary:
    """Attacks the first ``round(mix * len(x))`` rows of each batch with ``adversary`` and leaves the others
    clean (batches are shuffled, so which samples are attacked is random). ``mix=0`` runs nothing."""

    def __init__(self, adversary: Adversary, mix: float):
        self.adversary, self.mix = adversary, mix

    def __call__(self, x: Tensor, y: Tensor, eps: float, seeds: Tensor, index: Tensor) -> Tensor:
        k = int(self.mix * len(x) + 0.5)
        if k == 0:
            return x
        x_adv = self.adversary(x[:k], y[:k], eps, seeds[:k], index[:k])
        return x_adv if k == len(x) else torch.cat([x_adv, x[k:]])


class FixedAdversary:
    """Serves adversarial examples made in advance: row ``i`` of ``x_adv`` for training sample ``i``."""

    def __init__(self, x_adv: Tensor):
        self.x_adv = x_adv

    def __call__(self, x: Tensor, y: Tensor, eps: float, seeds: Tensor, index: Tensor) -> Tensor:
        return self.x_adv[index.to(self.x_adv.device)].to(x.device, x.dtype)


@dataclass(frozen=True)
class FinetuneOptions:
    """The settings of :func:`finetune` (see there for their meaning), validated when built.

    Kept normalised: ``lr`` is :data:`LR` where None, ``device`` a ``torch.device`` (None: CUDA when
    available). A bad setting raises ``ValueError``/``TypeError`` naming it; ``dataclasses.replace``
    checks again. :meth:`config` is what the checkpoints and the :class:`History` record.
    """

    eps: float = 0.2
    norm: str = "linf"
    epochs: int = 2
    lr: float | None = None
    batch_size: int = 128
    seed: int = 0
    mix: float = 0.5
    ema: float = 0.0
    device: str | torch.device | None = field(default=None, metadata=UNRECORDED)
    progress: bool = field(default=True, metadata=UNRECORDED)

    def __post_init__(self) -> None:
        norm, eps = check_threat(self.norm, self.eps)
        check_number(self.batch_size, "batch_size", low=1, low_open=False, integer=True)
        check_number(self.seed, "seed", low=None, integer=True)
        check_number(self.epochs, "epochs", low=1, low_open=False, integer=True)
        mix = check_number(self.mix, "mix", low=0, low_open=False, high=1)
        lr = LR if self.lr is None else check_number(self.lr, "lr")
        for name, value in (("norm", norm), ("eps", eps), ("mix", mix), ("lr", lr), ("ema", check_ema(self.ema)),
                            ("device", default_device(self.device))):
            object.__setattr__(self, name, value)

    def config(self, train_size: int) -> dict[str, Any]:
        """The run's recorded settings for ``train_size`` training samples, the fixed training options
        (:data:`OPTIONS`), ``mix`` and ``ema`` under ``"options"``."""
        settings = recorded(self)
        chosen = {"mix": settings.pop("mix"), "ema": settings.pop("ema")}
        return {"method": "finetune", **settings, "train_size": train_size, "options": {**OPTIONS, **chosen}}


def finetune(
    model: nn.Module,
    data: Any,
    eps: float = FinetuneOptions.eps,
    attack: Any = "pgd",
    epochs: int = FinetuneOptions.epochs,
    mix: float = FinetuneOptions.mix,
    lr: float | None = FinetuneOptions.lr,
    seed: int = FinetuneOptions.seed,
    progress: bool = FinetuneOptions.progress,
    *,
    norm: str = FinetuneOptions.norm,
    batch_size: int = FinetuneOptions.batch_size,
    device: str | torch.device | None = FinetuneOptions.device,
    ema: float = FinetuneOptions.ema,
    eval_data: Any = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    options: FinetuneOptions | None = None,
) -> tuple[nn.Module, History]:
    """Fine-tune the trained ``model`` in place on ``data`` for ``epochs`` epochs, a share ``mix`` of
    every batch replaced by adversarial examples of size ``eps`` under ``norm`` (0: plain training on
    clean data, no attack runs; 1: adversarial examples only); returns the model in eval mode and its
    :class:`History` (``history.config``: the run's settings).

    ``attack``: a name from ``advkit.attacks.ATTACKS`` (default ``"pgd"``: 10 steps of 2.5·eps/10 from
    a random start), an advkit or torchattacks attack on ``model``, or a factory ``model -> attack``
    called for every batch (so the attack always meets the current weights); the attack runs at
    ``eps``. A fitted :class:`advkit.attacks.AdvGAN` keeps training its generator one step per batch
    against the current weights before it crafts (three players: the model descends, the generator
    and its discriminator climb). Or a fixed set of adversarial examples of ``data``, made once: what
    ``advkit.attacks.generate(atk, data)`` returns, or a tensor of the same shape as data's images,
    row for row, within ``eps`` of them; no attack runs while training then.

    The network descends the cross-entropy of the mixed batch with AdamW (weight decay 5e-4) under a
    one-cycle learning rate peaking at ``lr`` (default :data:`LR`). ``history[0]`` (epoch 0, no loss: NaN) holds
    the accuracies before fine-tuning, then one record per epoch: clean accuracy on ``eval_data``
    (default: the training data) and PGD-10 accuracy at ``eps`` on its first 256 images (with ``ema``, of the
    average of the weights, which the model ends with). Same
    ``seed``, same weights on the CPU. Bad arguments raise a ``ValueError``/``TypeError`` naming them
    before any work. ``checkpoint_dir`` and ``resume``: checkpoints after every epoch and an exact resume,
    as :func:`~advkit.defenses.adversarial_training`'s (a resume with other settings, data, fixed set or
    model is refused, naming the differences); the caller's global torch RNG is left as it was. Under
    torchrun it shards as :func:`~advkit.defenses.adversarial_training` does,
    the ``mix`` share taken from each rank's share of the batch.

    Args:
        model: the trained network to fine-tune, a module with trainable parameters, returning logits.
        data: the training data: a Dataset, a DataLoader or an ``(x, y)`` pair of images in [0, 1]
            and class indices; a Dataset or DataLoader is read a batch at a time (each rank its share),
            checked as it is read.
        eps: the attack's budget, > 0.
        attack: an attack name, an attack on ``model``, a factory ``model -> attack``, or a fixed set of
            adversarial examples of ``data`` (a tensor or a dataset).
        epochs: passes over the data.
        mix: the share of every batch replaced by adversarial examples, in [0, 1].
        lr: the peak learning rate of the one-cycle schedule (None: :data:`LR`).
        seed: seeds the batch order, the attacks' draws and torch's RNG for the run.
        progress: show a progress bar.
        norm: the threat model, a name of ``advkit.core.NORMS`` (``"linf"``, ``"l2"``, ``"l1"``).
        batch_size: samples per optimizer step (the global batch under torchrun).
        device: where to train (None: CUDA when available).
        ema: the decay of an exponential moving average of the weights, updated after every step, that
            each epoch evaluates and the model ends with (0: none; as ``adversarial_training``'s ``ema``).
        eval_data: the data of the per-epoch accuracies (None: the training data), read in batches.
        checkpoint_dir: a folder for a checkpoint after every epoch (None: none).
        resume: continue the run checkpointed in ``checkpoint_dir``.
        options: the settings ``eps``, ``norm``, ``epochs``, ``lr``, ``batch_size``, ``seed``, ``mix``,
            ``ema``, ``device`` and ``progress`` as one :class:`FinetuneOptions`, instead of keywords (a keyword
            beside it is a TypeError).

    Returns:
        ``(model, history)``: the fine-tuned model in eval mode and its :class:`History`.
    """
    settings = options_from(FinetuneOptions, options, {
        "eps": eps, "norm": norm, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "mix": mix,
        "ema": ema, "device": device, "progress": progress})
    check_model(model)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir to resume from")
    device = settings.device
    model.to(device)
    samples = checked_samples(model, data, device, images=True)
    evaluation = samples if eval_data is None else checked_samples(model, eval_data, device, images=True,
                                                                   name="eval_data")
    given = {"data": samples, "eval_data": None if eval_data is None else evaluation}
    if _is_fixed_set(attack):
        fixed = _fixed_set(attack, samples, settings.eps, settings.norm)
        given["adversarial set"] = fixed
        adversary: Adversary = FixedAdversary(fixed.to(device))
    else:
        adversary = resolve_attack("pgd" if attack is None else attack, model, settings.norm, default=None)
    spec = Method("finetune", epochs=settings.epochs, lr=settings.lr, adversary=lambda *_: adversary,
                  loss=TRAINING_METHODS["pgd"].loss)
    config = settings.config(len(samples))
    history = History("finetune", settings.eps, "training data" if eval_data is None else "eval_data", config=config)
    game = TrainingGame(model, spec, {**OPTIONS, "ema": settings.ema}, MixedAdversary(adversary, settings.mix),
                        samples, evaluation, None, config, history, device)
    folder = None
    if checkpoint_dir is not None:
        folder = CheckpointFolder(checkpoint_dir, CHECKPOINT_PREFIX, identity=run_record(config, attack, model, given))
    game.start(folder, resume)
    if not resume:  # a resumed run's history holds its epoch 0
        with game.global_rng.active():
            history.records.append(_before(game))
    game.play(settings.progress)
    model.eval()
    return model, game.history


def _before(game: TrainingGame) -> EpochRecord:
    """Epoch 0: the model's accuracies before fine-tuning, measured as every epoch's are."""
    start = time.perf_counter()
    record = EpochRecord(epoch=0, eps=game.eps, train_loss=float("nan"),
                         clean_accuracy=accuracy(game.model, game.evaluation, device=game.device),
                         robust_accuracy=game.robust_accuracy(game.evaluation, game.opts["eval_size"]), seconds=0.0)
    record.seconds = time.perf_counter() - start
    log.info("before fine-tuning: clean %.3f, robust %.3f", record.clean_accuracy, record.robust_accuracy)
    return record


def _is_fixed_set(attack: Any) -> bool:
    return isinstance(attack, (Tensor, Dataset))


def _fixed_set(attack: Tensor | Dataset, samples: Samples, eps: float, norm: str) -> Tensor:
    """The adversarial images of a fixed set, once they match ``data`` row for row: the same shape, the
    same labels (for a dataset) and each within ``eps`` of its clean image under ``norm`` (``data`` read
    a batch at a time; the fixed set is held whole)."""
    how = "make it with advkit.attacks.generate(atk, data) on the very data fine-tuned on"
    y_adv = None
    if isinstance(attack, Dataset):
        try:
            x_adv, y_adv = as_tensors(attack)
        except (TypeError, ValueError) as err:
            raise type(err)(f"attack (a fixed adversarial set): {err}") from None
    else:
        x_adv = attack
    x_adv = check_images(x_adv.detach(), "attack (the adversarial images)")
    shape = (len(samples), *samples.read([0])[0].shape[1:])
    if y_adv is not None and len(y_adv) != len(samples):
        raise ValueError(f"attack: the adversarial set's labels do not match data's ({len(y_adv)} vs {len(samples)} "
                         f"samples); {how}")
    if tuple(x_adv.shape) != shape:
        raise ValueError(f"attack: the adversarial images have shape {tuple(x_adv.shape)}, data's {shape}; {how}")
    distance = 0.0
    for i, x, y in samples.batches(1000):
        if y_adv is not None and not torch.equal(y_adv[i:i + len(y)].cpu().long(), y.cpu().long()):
            raise ValueError(f"attack: the adversarial set's labels do not match data's ({len(y_adv)} vs "
                             f"{len(samples)} samples); {how}")
        delta = x_adv[i:i + len(x)].cpu().to(x.dtype) - x.cpu()
        distance = max(distance, float(get_norm(norm).distance(delta).max()))
    if distance > eps + 1e-5:
        raise ValueError(f"attack: the adversarial images lie up to {distance:.4g} from data's under norm={norm!r}, "
                         f"beyond eps={eps:g}; pass the eps they were made at, or {how}")
    return x_adv
