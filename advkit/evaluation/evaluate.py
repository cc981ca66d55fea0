"""``advkit.evaluate``: accuracy versus perturbation size, attacking only what is left to attack.

A perturbation that fools the model at eps1 stays valid at every eps2 > eps1 (the ball only
grows), and a sample the model gets wrong needs no attack. So each attack walks the eps grid
upward and, at each eps, attacks only the samples that survived the previous one; the curve is
non-increasing by construction. ``survivors=False`` attacks every sample at every eps instead.

With ``warm_start``, an attack that starts from a point (``warm_starts``: PGD, APGD) starts each
sample at the next eps where its attack at the previous eps ended (the result it returned), which
lies inside the larger ball. A sample's start and seed never depend on the others, so for these
attacks survivors-only equals attacking everyone, and it is never above it for any attack.

The data is read a batch at a time (:class:`advkit.data.Samples`; ``n`` is taken before any read),
so only a few batches of images are held; per-sample results (labels, predictions, survival per
attack and eps) are kept for every sample. The path, in :func:`evaluate_model`:

1. the clean pass (:func:`clean_pass`): each data batch is read, checked and forwarded once;
2. the randomness probe and the attacks as they will run (:func:`attacks_for`);
3. the attack pass (:func:`walk`): each data batch is read again and goes through every attack over
   every eps (:func:`batch_curve`: survivors, warm starts) and the corruptions; then only its
   per-sample results are kept (:class:`~advkit.evaluation.sharding.Walked`). A sample's seeds
   come from its index in the whole data (:func:`advkit.rng.sample_seeds`) and an attack that
   draws per batch draws from its batch's own samples, so a data batch's result never depends on
   the other batches;
4. the example grid and the sanity checks read the samples they need by index.

Inside an initialised process group (torchrun) each rank reads and attacks only its contiguous share
of the data batches (:func:`~advkit.evaluation.sharding.my_batches`), and the per-sample results are
gathered back in order after each pass, so every rank returns the report one process would have made,
for every attack. The sanity checks split their samples among the ranks the same way.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..acceleration import accelerated
from ..attacks import ATTACKS, GradientMaskingError
from ..attacks.autoattack import AutoAttack, Component
from ..attacks.base import Attack, model_dtype
from ..attacks.capabilities import capability, searches_the_model
from ..core import frozen, get_norm
from ..data import Samples
from ..data.corruption_accuracy import corruption_accuracy
from ..data.suites import CorruptionSuite
from ..devices import placed
from ..distributed import check_same_data, gather_call, is_distributed, is_main
from ..smoothing import NoisyClassifier
from .batched import Reader, attack_at, predict
from .certification import smoothed_result
from .checks import EOT_DRAWS, RANDOM_TOLERANCE, check_certified, probe_indices, randomness, run_checks, single_draw
from .construct import by_name, describe
from .options import EvaluationOptions
from .report import Report, check_baseline, run_metadata
from .results import AttackRecord, Cost, Example, ModelResult
from .sharding import Kept, Walked, my_batches
from .smoothed import SmoothingOptions
from .specs import DEFAULT_ATTACKS, check_norm, with_amp, with_progress

log = logging.getLogger(__name__)


def evaluate(
    model: nn.Module | Mapping[str, nn.Module],
    data: Any,
    attacks: Sequence[Any] | Mapping[str, Any] | str = DEFAULT_ATTACKS,
    eps: Sequence[float] | float = (0.0, 0.1, 0.2, 0.3),
    norm: str = "linf",
    n: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    survivors: bool = True,
    warm_start: bool = True,
    checks: bool = True,
    probe: int = 100,
    queries: int = 500,
    examples: int = 8,
    corruptions: bool | str | Sequence[str] | CorruptionSuite = False,
    baseline: str | None = None,
    amp: bool = False,
    channels_last: bool = False,
    compile: bool | dict[str, Any] = False,
    eot: int | None = None,
    smoothing: float | dict[str, Any] | SmoothingOptions | None = None,
) -> Report:
    """Robust accuracy of ``model`` on ``data`` under each attack at each eps, plus the per-sample
    worst case over attacks, sanity checks and a few examples, as a :class:`Report`.

    ``model``: a classifier returning logits on [0, 1] inputs, or a dict name -> model (one report,
    one plot). ``data``: a Dataset, a DataLoader or an ``(x, y)`` pair, read a batch at a time (a few
    batches of images in memory, whatever its size; each sample read twice, the clean pass and the
    attack pass, and a few more times for the probe's samples); ``n`` keeps the first n samples, the
    others never read; labels must be class indices of the model's outputs. ``attacks``: names (see
    :func:`advkit.evaluation.specs.valid_names`; ``"pgd-40"`` sets the steps, ``"pgd"`` is PGD's
    default), attack objects (ours or torchattacks'), or factories ``model -> attack``; a dict
    names them; one name or object alone is a list of one. ``eps``: a number or a list (numpy
    arrays too); it may include 0 (clean accuracy) and is sorted. ``device``: where to compute (default CUDA when
    available); the models are moved there and back. ``survivors=False`` attacks every sample at
    every eps; ``warm_start=False`` starts every attack afresh (a random point) at every eps.
    ``probe`` samples feed the sanity checks (``checks=False`` skips them; ``queries``
    is the budget of their gradient-free attack) and
    ``examples`` samples the report's picture grid. ``corruptions`` (True: all of
    :data:`advkit.defenses.CORRUPTIONS`, or a list of their names) adds each model's accuracy on the
    samples under each corruption at severities 1..5 (see
    :func:`advkit.data.corruption_accuracy.corruption_accuracy`; batches of ``batch_size``, on ``device``,
    seeded with ``seed``): ``report.corruptions`` is ``{name: [(severity, accuracy), ...]}``, keyed
    ``"model/name"`` with several models (``report[model].corruption_accuracy()`` is one model's),
    with a table and a plot in the report. ``corruptions`` may instead name a standard suite
    (:mod:`advkit.data.suites`): ``"imagenet-c"`` (the 15 ImageNet-C corruptions, computed by the
    ``imagecorruptions`` package), ``advkit.data.ImageNetC([...], baseline="alexnet")``, or CIFAR-10-C /
    CIFAR-100-C read from their files, ``advkit.data.CorruptionFiles("cifar10-c", root)`` (the data must be the
    clean test set, in order); with a suite's reference errors, or a ``baseline`` model, the report adds
    each corruption's error relative to it (Hendrycks & Dietterich's CE and mCE). ``baseline`` names the
    model of the dict the others are
    compared with, before and after a defense (``evaluate({"before": m0, "after": m1}, data,
    baseline="before")``): ``report.comparisons`` holds each other model's change in clean
    accuracy and robust-accuracy gain per attack and eps (after minus before; see
    :class:`~advkit.evaluation.comparison.Comparison`), with a plot and tables in every report
    format. Same seed on the CPU, same numbers, whether one process or a torchrun group evaluates
    (see the module's docstring; only rank 0 writes with :meth:`Report.save`). The
    options are checked together, as one :class:`~advkit.evaluation.options.EvaluationOptions`
    (what the report's ``config`` records), before the data is read or a model runs.

    A randomized model (one whose outputs differ between forwards of the same inputs: noise
    injection, random transforms) is detected once, before the curves, on the probe samples
    (:func:`~advkit.evaluation.checks.randomness`); its gradient attacks then run with expectation over
    transformation (copies with ``eot=20``; ``"autoattack"`` runs as its rand version, also available
    by name as ``"autoattack-rand"``), their curves' notes say so, and the ``randomized`` check names it.
    ``checks=False`` skips that probe with the other checks. ``eot`` sizes or turns off that default:
    None (the default) is 20 draws on a model the probe flags and the attacks as built otherwise; an
    integer N sets N forwards per gradient on every attack that averages them (``supports_eot``:
    FGSM, PGD, MIFGSM, APGD, APGD-T, FAB, CW, and AutoAttack's rand version), flagged or not (copies; the objects
    passed are left as they are), and with N > 1 ``"autoattack"`` runs as its rand version; ``eot=1``
    runs single-draw attacks (the standard AutoAttack) even on a randomized model, whose report still
    names it (the curves' notes and a failed ``randomized`` check): ``evaluate(model, data, "apgd",
    eot=5)``; ``checks=False, eot=20`` runs EOT attacks without the probe.

    ``smoothing`` (a noise level sigma, or a dict / :class:`~advkit.evaluation.smoothed.SmoothingOptions` of
    sigma, n0, n, alpha, predict_n, eot, batch_size, empirical; with ``norm="l2"``) adds each model's smoothed
    classifier (Cohen et al. 2019, :func:`advkit.defenses.certify`): its certified accuracy at each eps of the
    grid as an L2 radius, and its empirical accuracy there, the evaluation's attacks run on the model under the
    smoothing noise with ``eot`` draws per gradient and every point judged by PREDICT (an abstention counts
    wrong): ``report[model].smoothed``, in every report format and curve.png; the ``certified`` check fails
    where PREDICT contradicts more certificates than chance allows (:func:`~advkit.evaluation.checks.check_certified`):
    ``evaluate(model, test, ["pgd"], eps=[0, 0.25, 0.5], norm="l2", smoothing=dict(sigma=0.25, n=1000))``.

    A gradient attack that cannot run because the model hides its input gradient
    (:class:`advkit.attacks.GradientMaskingError`) is recorded as masked, without a curve and out
    of the worst case; unless a gradient-free attack (``uses_gradients`` False; a transfer attack
    does not count) is among the attacks, the Square attack (``queries`` queries) is then added so the
    worst case stays an upper bound, and the checks fail, naming gradient masking.

    A defense that preprocesses its input without a gradient (``advkit.defenses.JPEG``, ``BitDepth``)
    fails the gradient checks; evaluate it through BPDA, with the same predictions and a useful gradient:
    ``evaluate(nn.Sequential(advkit.attacks.BPDA(JPEG(50)), model), data)``. A transfer attack crafts on a
    surrogate and only queries the model, and the report names the surrogate:
    ``evaluate(model, data, {"transfer": advkit.attacks.Transfer(model, PGD(surrogate, steps=40))})``.
    L1 budgets: ``evaluate(model, data, ["apgd", "autoattack"], eps=[0, 5, 10], norm="l1")``. A
    minimum-norm attack (``minimum_norm``: CW, HopSkipJump, FAB) runs once, unbounded, on the correctly
    classified samples, and a sample counts as robust at each eps its smallest perturbation found
    exceeds: ``evaluate(model, data, {"hsj": HopSkipJump(model, norm="l2", queries=1000)}, norm="l2")``
    reads only the model's top-1 answers (label-only access).

    The GPU path: ``batch_size=None`` (the default) means 256 off CUDA and, on CUDA, the largest
    batch that fits (from 4096, halved whenever a batch runs out of memory; no sample lost or
    repeated; attacks that draw per sample give the same numbers at any batch size). ``amp`` runs
    the models' forwards under bf16 autocast on CUDA (attack gradients, steps and projections stay
    float32; ignored on the CPU); ``channels_last`` and ``compile`` (True, or torch.compile's
    keyword arguments) apply to the models for the evaluation and are undone after it
    (:mod:`advkit.acceleration`). The report's config records them when set.

    Args:
        model: a classifier (logits for inputs in [0, 1]) or a dict name -> classifier.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair.
        attacks: attack names, attack objects or factories ``model -> attack``, a dict naming them, or
            one alone.
        eps: the budgets, a number or a list (0: clean accuracy).
        norm: the threat model, a name of ``advkit.core.NORMS`` (``"linf"``, ``"l2"``, ``"l1"``).
        n: evaluate the first n samples (None: all).
        batch_size: samples per batch (None: 256 off CUDA, the largest that fits on CUDA).
        device: where to compute (None: CUDA when available).
        seed: seeds the attacks, the checks and the corruptions.
        progress: show progress bars.
        survivors: attack at each eps only the samples that survived the smaller ones.
        warm_start: start each sample's attack where it ended at the smaller eps.
        checks: run the sanity checks.
        probe: samples the sanity checks use.
        queries: the query budget of the checks' gradient-free attack.
        examples: samples shown in the report's picture grid.
        corruptions: False, True (all of advkit's own), names of advkit's corruptions, ``"imagenet-c"`` or a
            :class:`~advkit.data.suites.CorruptionSuite` to measure accuracy under.
        baseline: the name of the dict's model the others are compared with (None: no comparison).
        amp: run the models' forwards under bf16 autocast on CUDA.
        channels_last: store the models' 4-D weights channels_last for the evaluation.
        compile: True or a dict of :func:`torch.compile` keyword arguments: compile the models' calls.
        eot: forwards per gradient of the attacks that average them, an integer >= 1 (None: 20 on a
            model the randomized probe flags, else as built; 1: single draws).
        smoothing: None, or the smoothed classifier to certify and attack (a sigma, a dict, SmoothingOptions).

    Returns:
        The :class:`~advkit.evaluation.report.Report`.
    """
    models = _models(model)
    check_baseline(baseline, list(models))
    options = EvaluationOptions(attacks=attacks, eps=eps, norm=norm, n=n, batch_size=batch_size, device=device,
                                seed=seed, progress=progress, survivors=survivors, warm_start=warm_start, checks=checks,
                                probe=probe, queries=queries, examples=examples, corruptions=corruptions, amp=amp,
                                channels_last=channels_last, compile=compile, eot=eot,
                                smoothing=smoothing)
    if is_distributed() and not is_main():
        options = replace(options, progress=False)
    samples = Samples(data, limit=options.n)
    if is_distributed():  # every rank passes the same data: compared on a fingerprint, three samples and n
        check_same_data(*samples.read(sorted({0, len(samples) // 2, len(samples) - 1})), "evaluate",
                        count=len(samples))
    if options.corruptions:  # a suite that cannot take the data says so before any work (on the first batch)
        options.suite.check_data(*samples.read(torch.arange(min(len(samples), options.batches.start))))
    start = time.perf_counter()
    results = []
    for name, net in models.items():
        with placed(net, options.device), accelerated(net, options.channels_last, options.compile):
            results.append(evaluate_model(name, net, samples, options))
    return Report(results, options.config(len(samples)), run_metadata(options.device, time.perf_counter() - start),
                  baseline=baseline)


def evaluate_model(name: str, model: nn.Module, data: Samples, options: EvaluationOptions) -> ModelResult:
    """One model's curves, checks and examples (``model`` already on ``options.device``), reading
    ``data`` a batch at a time: a clean pass, then each data batch through every attack over every eps."""
    t0 = time.perf_counter()
    read = Reader(data, model_dtype(model, torch.float32))
    labels, clean_pred, num_classes = clean_pass(model, data, read, options)
    clean = clean_pred == labels
    shown = pick_examples(labels, clean, options.examples)
    seconds = {"clean": time.perf_counter() - t0}
    spread = None  # the randomized check's probe, measured before the curves so that they can use EOT
    if options.checks:
        probe = probe_indices(clean, options.probe, options.seed)
        spread = randomness(model, read, probe, options.batches.start, options.device)
    attacks, notes = attacks_for(name, model, num_classes, spread, options)
    start, stop = my_batches(len(data), options.batches.start)  # this rank's samples: what its bar counts
    bar = tqdm(total=len(attacks) * (stop - start), desc=f"evaluate {name}", disable=not options.progress,
               leave=False)
    walked = walk(model, data, read, clean, attacks, shown, options, bar, corruptions=options.corruptions)
    fallback = fallback_name({a: AttackRecord(a, "", None, [], masked=walked.masked.get(a, "")) for a in attacks},
                             attacks)
    if fallback:  # every batch again, through the gradient-free attack alone
        notes[fallback] = (f"added by the evaluation: {', '.join(walked.masked)} could not run (gradient masking), "
                           "so the gradient-free Square attack keeps the worst case an upper bound")
        attacks[fallback] = for_run(by_name(ATTACKS["square"], "square", model, options.norm,
                                            n_queries=options.queries, seed=options.seed), options)
        bar.total += stop - start
        walked.add(walk(model, data, read, clean, {fallback: attacks[fallback]}, shown, options, bar))
    bar.close()
    records = {a: walked.record(a, describe(attack, options.eps), notes.get(a, "")) for a, attack in attacks.items()}
    seconds |= walked.seconds
    result = ModelResult(name, list(options.eps), labels, clean, num_classes, records, seconds=seconds,
                         corrupted=walked.corrupted)
    if options.corruptions:
        result.corruption_suite, result.corruption_baseline = options.suite.name, options.suite.baseline
    shown_adversarials = {a: walked.kept.get(a, {}) for a in attacks if not records[a].masked}
    result.examples = collect_examples(model, read, clean_pred, shown, shown_adversarials, options.device)
    if options.checks:
        t0 = time.perf_counter()
        ran = {a: attack for a, attack in attacks.items() if not records[a].masked}
        result.checks = run_checks(result, model, ran, read, options, spread=spread)
        seconds["checks"] = time.perf_counter() - t0
    if options.smoothing is not None:
        t0 = time.perf_counter()
        result.smoothed = smoothed_result(model, data, read, noisy_attacks(model, num_classes, options),
                                          list(options.eps), options.batches, options.device, options.seed,
                                          options.smoothing, options.amp)
        result.checks.append(replace(check_certified(result.smoothed), model=name))
        seconds["smoothing"] = time.perf_counter() - t0
    for row in zip(options.eps, *(result.accuracy(a) for a in result.names), strict=True):
        log.info("%s eps=%g: %s", name, row[0],
                 ", ".join(f"{a} {acc:.3f}" for a, acc in zip(result.names, row[1:], strict=True)))
    return result


def walk(model: nn.Module, data: Samples, read: Reader, clean: Tensor, attacks: Mapping[str, Any],
         shown: Sequence[int], options: EvaluationOptions, bar: tqdm, corruptions: Sequence[str] = ()) -> Walked:
    """The attack pass: each of this rank's data batches (:func:`~advkit.evaluation.sharding.my_batches`)
    goes through every attack over the whole eps grid (:func:`batch_curve`) and, when asked, the
    ``corruptions`` (:func:`corrupted_masks`); only its per-sample results are kept. The ranks' results
    are gathered in order, so every rank holds the one-process :class:`Walked`."""
    def mine() -> Walked:
        out = Walked()
        for first, xb, yb in data.batches(options.batches.start, *my_batches(len(data), options.batches.start)):
            xb, yb = read.prepare(xb, yb)
            rows = slice(first, first + len(xb))
            for name, attack in attacks.items():
                bar.update(len(xb))
                if name in out.masked:
                    continue
                t0 = time.perf_counter()
                try:
                    out.put(name, *batch_curve(attack, xb, yb, first, clean[rows], options, shown, model))
                except GradientMaskingError as err:
                    log.warning("%s could not run (samples %d onward): %s", name, first, err)
                    out.masked[name] = str(err)
                out.seconds[name] = out.seconds.get(name, 0.0) + time.perf_counter() - t0
            if corruptions:
                t0 = time.perf_counter()
                for corruption, mask in corrupted_masks(model, xb, yb, first // options.batches.start,
                                                        corruptions, options).items():
                    out.corruptions.setdefault(corruption, []).append(mask)
                out.seconds["corruptions"] = out.seconds.get("corruptions", 0.0) + time.perf_counter() - t0
        return out

    return Walked.merge(gather_call(mine))


def batch_curve(attack: Any, x: Tensor, y: Tensor, first: int, clean: Tensor, options: EvaluationOptions,
                shown: Sequence[int] = (), model: nn.Module | None = None) -> tuple[Tensor, list[Cost], Kept]:
    """One data batch (``x``, ``y``: samples ``first`` onward; ``clean``: which the model gets right)
    through ``attack`` over the eps grid, upward. Survivors mode (``options.survivors``) attacks, at
    each eps, only the batch's samples still standing; otherwise every sample at every eps. With
    ``options.warm_start`` (and an attack that ``warm_starts``) each sample starts where its attack at
    the previous eps ended. Returns ``robust`` (batch rows x eps), the cost at each eps, and, for the
    ``shown`` samples in the batch, ``index -> (x_adv, eps, fooled)`` from the first eps that fooled
    them (or the last eps tried). ``model`` (optional) has the fooled samples' logits checked for
    NaN/Inf (``Cost.nonfinite``)."""
    if capability(attack, "minimum_norm"):
        return minimum_norm_batch(attack, x, y, first, clean, options, shown, model)
    eps, index = list(options.eps), torch.arange(first, first + len(x))
    robust = torch.zeros(len(x), len(eps), dtype=torch.bool)
    alive, costs, kept = clean.clone(), [], {}
    reached = x.clone() if options.warm_start and capability(attack, "warm_starts") else None  # where each ended
    starts = None  # no warm start before the first attacked eps
    for j, e in enumerate(eps):
        if e == 0:
            robust[:, j], cost = clean, Cost()
        else:
            todo = alive.nonzero().squeeze(1) if options.survivors else torch.arange(len(x))
            fooled, ends, cost = attack_at(attack, x, y, todo, e, options.batches, options.device, options.seed, j,
                                           starts=starts, model=model, index=index)
            robust[:, j] = alive if options.survivors else clean
            robust[todo[fooled], j] = False
            keep_examples(kept, shown, index[todo], fooled, ends, e, last=j == len(eps) - 1)
            if reached is not None:
                reached[todo] = ends
                starts = reached
        costs.append(cost)
        alive = robust[:, j]
    return robust, costs, kept


def minimum_norm_batch(attack: Any, x: Tensor, y: Tensor, first: int, clean: Tensor, options: EvaluationOptions,
                       shown: Sequence[int] = (), model: nn.Module | None = None) -> tuple[Tensor, list[Cost], Kept]:
    """:func:`batch_curve` for a ``minimum_norm`` attack: one unbounded run (``eps=math.inf``) on the
    batch's correctly classified samples finds each one's smallest adversarial perturbation, and a
    sample is robust at eps exactly when that perturbation's norm exceeds eps (none found: robust at
    every eps). The run's cost is recorded at the first eps above 0; the shown samples keep their
    smallest adversarial example from the first eps it fits in (unfooled: x itself at the last eps)."""
    eps, index = list(options.eps), torch.arange(first, first + len(x))
    todo = clean.nonzero().squeeze(1)
    dist = torch.full((len(x),), math.inf)
    at = next((j for j, e in enumerate(eps) if e > 0), None)
    ends, cost = x[todo], Cost()
    if at is not None:
        fooled, ends, cost = attack_at(attack, x, y, todo, math.inf, options.batches, options.device, options.seed,
                                       at, model=model, index=index)
        found = get_norm(attack.norm).distance(ends - x[todo])
        dist[todo] = torch.where(fooled, found, torch.full_like(found, math.inf))
    robust = torch.stack([clean & (dist > e) for e in eps], 1)
    costs = [cost if j == at else Cost() for j in range(len(eps))]
    kept: Kept = {}
    position = {int(index[i]): k for k, i in enumerate(todo.tolist())}
    positive = [e for e in eps if e > 0]
    for i in shown:
        k = position.get(i)
        if k is not None and positive:
            fits = [e for e in positive if dist[i - first] <= e]
            kept[i] = (ends[k].clone(), fits[0], True) if fits else (x[i - first].clone(), positive[-1], False)
    return robust, costs, kept


def for_run(attack: Any, options: EvaluationOptions) -> Any:
    """``attack`` as this evaluation runs it: under AMP when asked, quiet without progress (a copy
    where that changes it; the caller's object is left as it is)."""
    return with_progress(with_amp(attack, options.amp), options.progress)


def with_eot(attacks: Mapping[str, Any], draws: int, randomized: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The attacks with ``draws`` forwards per gradient (``evaluate``'s ``eot``, or its default on a
    ``randomized`` model): a copy of each attack that averages its gradients (``supports_eot``) at another
    ``eot``, AutoAttack's rand version in place of its standard one when ``draws`` > 1 (its members at
    ``draws``); and, per attack, the report's note saying what ran. On a ``randomized`` model a gradient
    attack left following single draws gets a note saying that it overstates robustness."""
    why = "randomized model" if randomized else f"eot={draws} given"
    out, notes = {}, {}
    for name, attack in attacks.items():
        if isinstance(attack, AutoAttack):
            out[name] = autoattack_with_eot(attack, draws)
            if out[name].version != attack.version:
                notes[name] = (f"{why}: AutoAttack's rand version (APGD-CE and APGD-DLR, eot={draws}) ran in place "
                               "of the standard one")
        else:
            out[name] = eot_copy(attack, draws)
        if name not in notes and out[name] is not attack:
            notes[name] = (f"{why}: each gradient averaged over {draws} forwards" if draws > 1
                           else "eot=1 given: single-draw gradients")
        if randomized and single_draw(out[name]):
            single = "randomized model: this gradient attack follows single draws and overstates robustness"
            notes[name] = f"{notes[name]}; {single}" if name in notes else single
    return out, notes


def eot_copy(attack: Any, draws: int) -> Any:
    """``attack`` with ``eot=draws``: a copy when it averages its gradients (``supports_eot``) at another
    number of forwards, else ``attack`` itself."""
    if not isinstance(attack, Attack) or not attack.supports_eot or attack.eot == draws:
        return attack
    averaged = copy.copy(attack)
    averaged.eot = draws
    return averaged


def autoattack_with_eot(attack: AutoAttack, draws: int) -> AutoAttack:
    """``attack`` with ``draws`` forwards per gradient: the standard version as it is for ``draws`` 1,
    else the rand version (built from the standard one's settings); the members that average their
    gradients set to ``draws`` (a copy of the ensemble where that changes one)."""
    if attack.version == "standard":
        if draws == 1:
            return attack
        attack = AutoAttack(attack.model, attack.eps, attack.norm, "rand", seed=attack.seed, amp=attack.amp,
                            progress=getattr(attack, "progress", True))
    parts = []
    for part in attack.components:
        member = eot_copy(part.attack, draws)
        parts.append(part if member is part.attack else Component(part.name, member, {**part.settings, "eot": draws}))
    if all(new is old for new, old in zip(parts, attack.components, strict=True)):
        return attack
    out = copy.copy(attack)
    out.components = parts
    return out


def attacks_for(name: str, model: nn.Module, num_classes: int, spread: float | None,
                options: EvaluationOptions) -> tuple[dict[str, Any], dict[str, str]]:
    """The attacks as this evaluation runs them on ``model`` (built from ``options.attacks``; with EOT
    when ``options.eot`` is given or the randomness probe's ``spread`` flags the model), and the
    report's note on each one that changed."""
    randomized = spread is not None and spread > RANDOM_TOLERANCE
    draws = options.eot if options.eot is not None else EOT_DRAWS if randomized else None
    if randomized:
        log.warning("%s: its outputs differ between forwards of the same inputs (by up to %.3g): a randomized "
                    "model; its gradient attacks run with eot=%d%s", name, spread, draws,
                    " (given), so single draws overstate its robustness" if draws == 1 else "")
    built = {spec.name: for_run(check_norm(spec.name, spec.build(model, options.norm, num_classes), options.norm),
                                options) for spec in options.attacks}
    return with_eot(built, draws, randomized) if draws is not None else (built, {})


def noisy_attacks(model: nn.Module, num_classes: int, options: EvaluationOptions) -> dict[str, Any]:
    """The evaluation's attacks on ``model`` under the smoothing noise (:class:`~advkit.smoothing.NoisyClassifier`),
    L2, each averaging its gradients over the smoothing's ``eot`` draws (AutoAttack as its rand version)."""
    noisy = NoisyClassifier(model, options.smoothing.sigma)
    built = {spec.name: for_run(check_norm(spec.name, spec.build(noisy, "l2", num_classes), "l2"), options)
             for spec in options.attacks}
    return with_eot(built, options.smoothing.eot, randomized=True)[0]


def clean_pass(model: nn.Module, data: Samples, read: Reader, options: EvaluationOptions) -> tuple[Tensor, Tensor, int]:
    """Every sample's label and clean prediction (on the CPU), and the model's number of classes: each
    rank reads and forwards its data batches (images and labels checked batch by batch), gathered in order."""
    size = options.batches.start

    def mine() -> tuple[list[Tensor], list[Tensor], int]:
        labels, preds, classes = [], [], 0
        for first, xb, yb in data.batches(size, *my_batches(len(data), size)):
            xb, yb = read.prepare(xb, yb)
            pred, classes = predict(model, xb, options.batches, options.device, first, options.amp)
            check_data_labels(yb, classes, first)
            labels.append(yb)
            preds.append(pred)
        return labels, preds, classes

    parts = gather_call(mine)
    return (torch.cat([t for part in parts for t in part[0]]), torch.cat([t for part in parts for t in part[1]]),
            max(part[2] for part in parts))


def corrupted_masks(model: nn.Module, x: Tensor, y: Tensor, batch: int, names: Sequence[str],
                    options: EvaluationOptions) -> dict[str, Tensor]:
    """Per corruption of ``names``, which samples of data batch number ``batch`` (``x``, ``y``) the
    model gets right at each severity; the noise is seeded with the batch's number, so a batch gives
    the same masks on any rank."""
    return corruption_accuracy(model, x, y, names, batch_size=options.batches.start, device=options.device,
                               seed=options.seed, first_batch=batch, suite=options.suite)


def fallback_name(records: Mapping[str, AttackRecord], attacks: Mapping[str, Any]) -> str | None:
    """The name for the gradient-free attack to add when some attack was masked and no gradient-free
    attack of ``attacks`` (the objects behind ``records``; ``uses_gradients`` False, a transfer attack
    not counted: :func:`~advkit.attacks.capabilities.searches_the_model`) ran: ``"square"``, or
    ``"square (added)"`` if the user's attack took that name; None otherwise."""
    if not any(r.masked for r in records.values()) or any(searches_the_model(attacks[n]) and not r.masked
                                                           for n, r in records.items()):
        return None
    return "square" if "square" not in records else "square (added)"


def keep_examples(kept: dict[int, tuple[Tensor, float, bool]], shown: Sequence[int], todo: Tensor, fooled: Tensor,
                  ends: Tensor, eps: float, last: bool) -> None:
    """For the shown samples among ``todo`` (attacked at ``eps``; ``fooled`` and ``ends`` in its
    order): keep ``(x_adv, eps, fooled)`` the first time one is fooled, or at the ``last`` eps."""
    position = {i: k for k, i in enumerate(todo.tolist())}
    for i in shown:
        k = position.get(i)
        if k is not None and (fooled[k] or last) and not kept.get(i, (None, 0.0, False))[2]:
            kept[i] = (ends[k].clone(), eps, bool(fooled[k]))


def pick_examples(y: Tensor, clean: Tensor, k: int) -> list[int]:
    """Up to ``k`` correctly classified samples, one per class first (in class order), then the next ones."""
    correct = clean.nonzero().squeeze(1).tolist()
    firsts = sorted({int(y[i]): i for i in reversed(correct)}.values(), key=lambda i: int(y[i]))
    chosen = set(firsts)
    rest = [i for i in correct if i not in chosen]
    return (firsts + rest)[:k]


@torch.no_grad()
def collect_examples(model: nn.Module, read: Reader, clean_pred: Tensor, shown: list[int],
                     adversarials: Mapping[str, Kept], device: torch.device) -> list[Example]:
    """For each shown sample (read by index), the adversarial image from the smallest fooling eps over
    attacks (ties: the first attack), with the model's prediction on it."""
    if not shown:
        return []
    x, y = read(shown)
    out = []
    for k, i in enumerate(shown):
        ex = Example(i, int(y[k]), int(clean_pred[i]), x[k].clone())
        candidates = [(name, *kept[i]) for name, kept in adversarials.items() if i in kept]
        if candidates:
            ex.attack, ex.x_adv, ex.eps, ex.fooled = min(candidates, key=lambda c: (not c[3], c[2] if c[3] else -c[2]))
            with frozen(model):
                ex.adv_pred = int(model(ex.x_adv[None].to(device)).argmax(1))
        out.append(ex)
    return out


def _models(model: Any) -> dict[str, nn.Module]:
    models = dict(model) if isinstance(model, Mapping) else {"model": model}
    if not models:
        raise ValueError("model: the dict of models is empty")
    for name, net in models.items():
        if not isinstance(net, nn.Module):
            raise TypeError(f"model {name!r} must be a torch.nn.Module, got {type(net).__name__}")
    return models


def check_data_labels(y: Tensor, num_classes: int, first: int = 0) -> None:
    """Labels (of samples ``first`` onward) must index the model's ``num_classes`` outputs: a label out
    of range would count as misclassified and silently lower every accuracy."""
    bad = ((y < 0) | (y >= num_classes)).nonzero().squeeze(1)
    if len(bad):
        raise ValueError(f"data labels must be class indices in [0, {num_classes}) for a model with {num_classes} "
                         f"outputs; {len(bad)} are not (first: label {int(y[bad[0]])} at index {first + int(bad[0])})")
