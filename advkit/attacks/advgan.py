"""AdvGAN (Xiao et al. 2018): a generator learns to perturb, so an attack is one forward pass.

The generator ``G(x) -> delta`` is trained by a :class:`advkit.gan.GANTrainer` on :func:`advkit.core.play`:
a discriminator tells real images from ``x + delta`` (the GAN loss keeps the perturbed images looking
real), and the generator's loss adds the frozen classifier's attack loss and a hinge penalty on
``||delta||_2``. This is the one module of ``advkit.attacks`` that imports ``advkit.gan``
(docs/ARCHITECTURE.md, Layout); ``advkit.attacks`` loads it only when ``AdvGAN`` is asked for.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import run_identity
from ..core import Norm, check_number, frozen, get_norm
from ..data import Samples
from ..devices import model_device
from ..files import load_tensors, save_tensors
from ..gan import GANTrainer
from ..gan.losses import GAN_LOSSES
from ..gan.sharding import global_loss
from ..validation import check_choice, check_images, check_logits, fits_model, options_from
from .advgan_nets import Critic, PerturbationNet
from .base import TARGET_SOURCES, Attack, AttackRun, TargetMode
from .losses import sample_loss, succeeded

log = logging.getLogger(__name__)

FORMAT = "advkit.AdvGAN/1"


@dataclass(frozen=True)
class AdvGANOptions:
    """How :class:`AdvGAN` builds and trains its generator (see there for each setting's meaning),
    validated when built; the settings every attack has (eps, norm, targeted, loss, early_stop, amp)
    are the :class:`~advkit.attacks.base.Attack`'s. A bad setting raises ``ValueError``/``TypeError``
    naming it; ``dataclasses.replace`` checks again. :meth:`AdvGAN.save` and the training checkpoints
    record every field.
    """

    gan_loss: str = "lsgan"
    adv_weight: float = 10.0
    gan_weight: float = 1.0
    norm_weight: float = 1.0
    hinge_bound: float = 0.5
    kappa: float = 0.0
    lr: float = 1e-3
    n_critic: int = 1
    width: int = 8
    blocks: int = 2

    def __post_init__(self) -> None:
        check_choice(self.gan_loss, tuple(GAN_LOSSES), "gan_loss")
        for name in ("adv_weight", "gan_weight", "norm_weight", "hinge_bound", "kappa"):
            check_number(getattr(self, name), name, low_open=False)
        check_number(self.lr, "lr")
        for name in ("n_critic", "width", "blocks"):
            check_number(getattr(self, name), name, low=1, low_open=False, integer=True)
        for name in ("adv_weight", "gan_weight", "norm_weight", "hinge_bound", "kappa", "lr"):
            object.__setattr__(self, name, float(getattr(self, name)))


class AdvGAN(Attack):
    """A perturbation generator trained against ``model``; after :meth:`fit`, ``atk(x, y)`` is one
    forward of the generator plus the base class's guarantees (ball and [0, 1], model untouched,
    success checked on the returned tensor).

    The generator's output is squashed into the unit ball of ``norm`` (:meth:`advkit.core.Norm.squash`:
    ``tanh`` per pixel for ``"linf"``; ``h·tanh(||h||)/||h||`` for ``"l2"``) and scaled by eps, so a
    call at another eps (``run(..., eps=e)``, evaluate's grid) rescales the learned perturbation to e.

    Training (:meth:`fit`) minimises, for the generator,
    ``gan_weight·L_GAN + adv_weight·L_adv + norm_weight·mean(max(0, ||delta||_2 - c))``:
    ``L_GAN`` the generator's side of ``gan_loss`` (names of ``advkit.gan.GAN_LOSSES``; least squares as in
    the paper), ``L_adv`` minus the attack loss on ``model`` (``"margin"``: the C&W margin capped at
    ``kappa``, so a sample fooled by ``kappa`` stops pulling; ``"ce"``: cross-entropy), ``c`` =
    ``hinge_bound`` times the largest L2 norm in the ball (eps·sqrt(pixels) for L-inf, eps for L2).
    Untargeted, the generator pushes each image away from the model's own prediction (as ``run(x)``
    with ``y=None``). Targeted (``targeted="random"`` or ``"least-likely"``), it learns one-hot
    target codes stacked on the image, trained on uniformly random targets, so it serves every
    target choice at the call (``target=`` too); an untargeted generator refuses ``target=``.

    ``generator``: a module mapping images ``(N, C, H, W)`` (and, targeted, one-hot targets
    ``(N, num_classes)``) to an unbounded tensor of the images' shape; ``discriminator``: a module
    mapping images to one logit each. None builds :class:`~advkit.attacks.advgan_nets.PerturbationNet`
    and :class:`~advkit.attacks.advgan_nets.Critic` of ``width`` (and ``blocks``) for the data's shape
    at the first fit. ``lr`` is Adam's (betas 0.5, 0.999) for both; ``n_critic`` discriminator steps per
    generator step. The classifier is borrowed frozen and never changed.
    """

    losses = ("margin", "ce")
    needs_training = True  # fit(data) first; adapt(x, steps) keeps up with a changing model
    settings = ("trained_steps",)

    def __init__(self, model: nn.Module, eps: float = 0.3, *, norm: str = "linf", targeted: TargetMode = False,
                 loss: str = "margin", generator: nn.Module | None = None, discriminator: nn.Module | None = None,
                 gan_loss: str = AdvGANOptions.gan_loss, adv_weight: float = AdvGANOptions.adv_weight,
                 gan_weight: float = AdvGANOptions.gan_weight, norm_weight: float = AdvGANOptions.norm_weight,
                 hinge_bound: float = AdvGANOptions.hinge_bound, kappa: float = AdvGANOptions.kappa,
                 lr: float = AdvGANOptions.lr, n_critic: int = AdvGANOptions.n_critic, width: int = AdvGANOptions.width,
                 blocks: int = AdvGANOptions.blocks, early_stop: bool = True, amp: bool = False,
                 options: AdvGANOptions | None = None):
        """An untrained attack: :meth:`fit` trains its generator.

        Args:
            model: the classifier attacked (logits for inputs in [0, 1]); borrowed frozen, never changed.
            eps: the budget the generator's output is scaled to.
            norm: a name of ``advkit.core.NORMS`` (``"linf"``, ``"l2"``, ``"l1"``).
            targeted: False, ``"random"`` or ``"least-likely"``: a targeted generator learns target codes.
            loss: the attack loss of the generator, ``"margin"`` or ``"ce"``.
            generator: a network of your own (None: a :class:`~advkit.attacks.advgan_nets.PerturbationNet`).
            discriminator: a network of your own (None: a :class:`~advkit.attacks.advgan_nets.Critic`).
            gan_loss: the GAN loss, a name of ``advkit.gan.GAN_LOSSES``.
            adv_weight: the attack loss's weight in the generator's loss.
            gan_weight: the GAN loss's weight.
            norm_weight: the hinge penalty's weight.
            hinge_bound: the hinge's bound, a share of the largest L2 norm in the ball.
            kappa: the cap of the margin loss (a sample fooled by kappa stops pulling).
            lr: Adam's learning rate for both networks.
            n_critic: discriminator steps per generator step.
            width: the default networks' width.
            blocks: the default generator's residual blocks.
            early_stop: see :class:`~advkit.attacks.base.Attack`.
            amp: see :class:`~advkit.attacks.base.Attack`.
            options: ``gan_loss`` to ``blocks`` as one :class:`AdvGANOptions`, instead of keywords (a keyword
                beside it is a TypeError); read back as ``atk.options`` (or ``atk.kappa``, ...).
        """
        self.targets = TARGET_SOURCES if targeted else ()  # a targeted generator takes any target
        super().__init__(model, eps, norm=norm, loss=loss, targeted=targeted, early_stop=early_stop, amp=amp)
        for name, module in (("generator", generator), ("discriminator", discriminator)):
            if module is not None and not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module or None, got {type(module).__name__}")
        self.options = options_from(AdvGANOptions, options, {
            "gan_loss": gan_loss, "adv_weight": adv_weight, "gan_weight": gan_weight, "norm_weight": norm_weight,
            "hinge_bound": hinge_bound, "kappa": kappa, "lr": lr, "n_critic": n_critic, "width": width,
            "blocks": blocks})
        self.generator, self.discriminator = generator, discriminator
        self._custom = generator is not None or discriminator is not None
        self._trainer: _Trainer | None = None
        self._shape: tuple[int, ...] | None = None
        self._num_classes = self._seed = 0

    # ---- training ---------------------------------------------------------------------------------

    def fit(self, data, steps: int = 500, batch_size: int = 128, checkpoint_dir: str | Path | None = None,
            resume: bool = False, seed: int = 0, progress: bool = True) -> dict[str, list]:
        """Train the generator on the images of ``data`` (a Dataset, DataLoader or ``(x, y)`` pair, read a
        batch at a time; the labels are not used) until ``steps`` generator steps in total; returns the
        trainer's history (``fooled``: the share of each generator batch the model got wrong).

        ``checkpoint_dir``, ``resume``: as :meth:`advkit.gan.GANTrainer.fit` (a resumed run is
        bit-exact on the CPU). Each checkpoint records the attack's settings (those :meth:`save` keeps),
        ``seed``, ``batch_size``, fingerprints of the images and of the classifier's weights and the
        shapes of the generator, the discriminator and the classifier; a resume that differs in any is
        refused with a ValueError naming the differences. ``seed`` fixes the first fit's initial
        weights, batch order and targets; a later fit continues the same run (another seed is a
        ValueError).
        """
        check_number(steps, "steps", low_open=False, integer=True)
        check_number(batch_size, "batch_size", low=1, low_open=False, integer=True)
        check_number(seed, "seed", low=None, integer=True)
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        samples = Samples(data)
        x = check_images(samples.read([0])[0], "data")  # the first image: the networks' shape
        if x.ndim != 4 and (self.generator is None or self.discriminator is None):
            raise ValueError(f"the default networks need images (N, C, H, W); got data of shape "
                             f"{(len(samples), *x.shape[1:])}: pass generator= and discriminator= for other data")
        if self._trainer is None:
            self._build(tuple(x.shape[1:]), self._classes(x), seed)
        elif seed != self._seed:
            raise ValueError(f"seed={seed} differs from this generator's run (seed {self._seed}); a later fit "
                             "continues that run: pass its seed, or build a new AdvGAN")
        if tuple(x.shape[1:]) != self._shape:
            raise ValueError(f"data holds images of shape {tuple(x.shape[1:])} but the generator was built for "
                             f"{self._shape}")

        def pairs(x: Tensor, y: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
            x = check_images(x, "data")
            return x, x  # the trainer's image-conditional pairs: real and condition are the clean batch

        with frozen(self.model):
            history = self._trainer.fit(samples.map(pairs), steps, batch_size, checkpoint_dir=checkpoint_dir,
                                        resume=resume, progress=progress)
        fooled = history["fooled"][-50:]
        if fooled:
            log.info("AdvGAN at step %d: %.1f%% of the last batches fooled", self.trained_steps,
                     100 * sum(fooled) / len(fooled))
        return history

    def adapt(self, x: Tensor, steps: int = 1) -> None:
        """Train the generator (and its discriminator) ``steps`` more steps on the images ``x`` against the
        model's current weights, one batch of all of ``x`` per step: keeps a fitted generator strong
        while the model changes (adversarial fine-tuning). Continues the run's RNG streams."""
        self._check_fitted()
        check_number(steps, "steps", low=1, low_open=False, integer=True)
        x = check_images(x)
        if tuple(x.shape[1:]) != self._shape:
            raise ValueError(f"x holds images of shape {tuple(x.shape[1:])} but the generator was built for "
                             f"{self._shape}")
        with frozen(self.model):
            self._trainer.fit((x, x), self._trainer.step + steps, len(x), progress=False)

    @property
    def trained_steps(self) -> int:
        """Generator steps trained so far (0 before :meth:`fit`)."""
        return 0 if self._trainer is None else self._trainer.step

    def _classes(self, x: Tensor) -> int:
        with frozen(self.model), torch.no_grad(), fits_model(x, "data"):
            return check_logits(self.model(x[:1].to(model_device(self.model))), 1).shape[1]

    def _build(self, shape: tuple[int, ...], num_classes: int, seed: int) -> None:
        """The networks (default ones where not given, initialised from ``seed``) and their trainer."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.generator is None:
                self.generator = PerturbationNet(shape[0], num_classes if self.targeted else None, self.width,
                                                 self.blocks)
            if self.discriminator is None:
                self.discriminator = Critic(shape[0], self.width)
        self._shape, self._num_classes, self._seed = shape, num_classes, seed
        example_gen = _ExampleGenerator(self.generator, self.norm, self.eps, num_classes if self.targeted else None)
        self._trainer = _Trainer(self, example_gen, self.discriminator, seed, model_device(self.model))

    def _check_fitted(self) -> None:
        if self._trainer is None:
            raise RuntimeError("AdvGAN has no trained generator yet: call fit(data, steps=...) first "
                               "(or AdvGAN.load(path, model))")

    # ---- attacking --------------------------------------------------------------------------------

    def perturb(self, run: AttackRun) -> None:
        """One forward of the generator from x (with the run's targets when targeted)."""
        self._check_fitted()
        run.forward_clean()
        example_gen = self._trainer.G
        if next(example_gen.parameters()).device != run.x.device:
            example_gen.to(run.x.device)
        code = F.one_hot(run.labels, self._num_classes) if run.targeted else None
        with frozen(example_gen), torch.no_grad():
            x_adv = (run.x + example_gen.delta(run.x, code, run.eps)).clamp(0.0, 1.0)
        run.finish(x_adv, evaluate=False)

    # ---- saving -----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the trained attack (settings, networks, optimiser and RNG states) to ``path`` atomically."""
        self._check_fitted()
        config = {name: getattr(self, name) for name in _CONFIG}
        state = {"format": FORMAT, "config": config, "shape": list(self._shape), "num_classes": self._num_classes,
                 "seed": self._seed, "custom": self._custom, "trainer": self._trainer.state_dict()}
        return save_tensors(state, path)

    @classmethod
    def load(cls, path: str | Path, model: nn.Module, generator: nn.Module | None = None,
             discriminator: nn.Module | None = None) -> AdvGAN:
        """The attack :meth:`save` wrote, bound to ``model``; it attacks exactly as the saved one did and
        can keep training. Networks of your own must be passed again (built as before)."""
        state: dict[str, Any] = load_tensors(path, "an AdvGAN file", advice="save one with AdvGAN.save(path)")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{path} is not an AdvGAN file (saved by AdvGAN.save)")
        if state["custom"] and (generator is None or discriminator is None):
            raise ValueError(f"{path} holds networks of your own: pass generator= and discriminator= built as "
                             "before")
        atk = cls(model, generator=generator, discriminator=discriminator, **state["config"])
        atk._build(tuple(state["shape"]), state["num_classes"], state["seed"])
        atk._trainer.load_state_dict(state["trainer"])  # its RNG streams are its own: the caller's stay as they are
        return atk


#: The generator's options, read-only attributes of the attack (``atk.kappa`` is ``atk.options.kappa``).
_OPTIONS = tuple(f.name for f in fields(AdvGANOptions))
for _name in _OPTIONS:
    setattr(AdvGAN, _name, property(lambda self, name=_name: getattr(self.options, name),
                                    doc=f"``options.{_name}`` (:class:`AdvGANOptions`)."))
#: The constructor settings :meth:`AdvGAN.save` keeps and the training checkpoints record.
_CONFIG = ("eps", "norm", "targeted", "loss", *_OPTIONS, "early_stop")


class _ExampleGenerator(nn.Module):
    """What the GAN trainer calls its generator: ``forward(z, x) = clip(x + delta, 0, 1)``. Untargeted,
    the noise z (``latent_dim`` 1) is ignored; targeted, ``argmax(z)`` is the target class (uniform for
    the trainer's Gaussian noise), given to the network as a one-hot code."""

    output_range = (0.0, 1.0)

    def __init__(self, net: nn.Module, norm: str | Norm, eps: float, num_classes: int | None):
        super().__init__()
        self.net, self.geometry, self.eps, self.num_classes = net, get_norm(norm), eps, num_classes
        self.latent_dim = num_classes or 1

    def delta(self, x: Tensor, code: Tensor | None, eps: float) -> Tensor:
        """The perturbation of ``x`` at ``eps`` (toward the one-hot targets ``code``, when targeted): the
        network's output squashed into the norm's unit ball (:meth:`advkit.core.Norm.squash`), times eps."""
        dtype = next(self.net.parameters()).dtype
        h = self.net(x.to(dtype)) if code is None else self.net(x.to(dtype), code.to(dtype))
        return (eps * self.geometry.squash(h)).to(x.dtype)

    def targets(self, z: Tensor) -> Tensor:
        return z.argmax(1)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        code = None if self.num_classes is None else F.one_hot(self.targets(z), self.num_classes)
        return (x + self.delta(x, code, self.eps)).clamp(0.0, 1.0)


class _Trainer(GANTrainer):
    """The GAN trainer with AdvGAN's generator loss. Data are ``(x, x)`` pairs in the trainer's
    image-conditional mode: ``real`` and ``cond`` are both the clean batch, the fake is ``x + delta``.
    Overrides :meth:`judge` (the discriminator sees images alone) and :meth:`g_loss`."""

    def __init__(self, attack: AdvGAN, example_gen: _ExampleGenerator, discriminator: nn.Module, seed: int,
                 device: torch.device):
        super().__init__(example_gen, discriminator, loss=attack.gan_loss, n_critic=attack.n_critic, lr_g=attack.lr,
                         lr_d=attack.lr, betas=(0.5, 0.999), conditional="image", ema_decay=None, device=device,
                         seed=seed)
        self.attack = attack
        self.history["fooled"] = []

    def judge(self, x: Tensor, cond: Tensor | None, model: nn.Module | None = None) -> Tensor:
        return super().judge(x, None, model)

    def identity(self, samples: Samples, batch_size: int) -> dict[str, Any]:
        """AdvGAN's run: its settings (the GAN trainer's derive from them), the images and the classifier it
        attacks (weights and shapes) beside the generator's and discriminator's shapes."""
        atk, seed = self.attack, self.options.seed
        settings = {**{name: getattr(atk, name) for name in _CONFIG}, "seed": seed, "batch_size": batch_size}
        classifier = [v for v in atk.model.state_dict().values() if isinstance(v, Tensor)]
        return run_identity(settings, {"images": samples, "classifier weights": classifier},
                            {"generator": self.G, "discriminator": self.D, "classifier": atk.model})

    def g_loss(self, real: Tensor, cond: Tensor | None, rows: tuple[int, int] | None = None,
               batch_cond: Tensor | None = None) -> tuple[Tensor, None]:
        """AdvGAN's generator loss on fresh perturbations of the batch (see :class:`AdvGAN`); ``rows`` as in
        :meth:`GANTrainer.d_loss`: in a process group the noise is the global batch's, sliced, and the
        loss the global batch's mean."""
        atk = self.attack
        start, total = rows or (0, len(real))
        z = self.noise(total)[start:start + len(real)]
        fake = self.generate(z, real)
        logits = atk.model(fake)
        if atk.targeted:
            labels = self.G.targets(z)
        else:
            with torch.no_grad():
                labels = atk.model(real).argmax(1)
        score = sample_loss(atk.loss)(logits, labels, bool(atk.targeted))
        if atk.loss == "margin":
            score = score.clamp_max(atk.kappa)
        size = (fake - real).flatten(1).norm(dim=1)
        largest = atk.eps * atk.geometry.l2_radius(real[0].numel())
        hinge = F.relu(size - atk.hinge_bound * largest).mean()
        loss = atk.gan_weight * self.loss.g(self.judge(fake, real)) - atk.adv_weight * score.mean() \
            + atk.norm_weight * hinge
        fooled = succeeded(logits.detach(), labels, bool(atk.targeted)).float().mean()
        loss, (fooled,) = global_loss(loss, len(real), total, [float(fooled)])
        self.history["fooled"].append(fooled)
        return loss, None
