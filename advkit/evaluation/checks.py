"""Sanity checks on every report, after Carlini et al. 2019 ("On Evaluating Adversarial Robustness").

Each check looks for a sign that the attacks, not the model, are the weak side (gradient masking,
unconverged or broken attacks). They run on a seeded probe of correctly classified samples (the
stronger-attack check on more, within a share of the curves' passes), with fresh attacks where the
curve alone cannot tell (survivors mode makes the curve monotone by construction, so monotonicity
is also tested by re-attacking fooled samples at the next eps).
Every comparison is between integer counts of samples, with slack for the attacks' randomness.

The checks cost a fraction of the curve they judge: each re-attacks only the samples that can
change its verdict, reuses what the curves already measured, and records its passes
(:attr:`~advkit.evaluation.results.Check.cost`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attacks import APGD, APGDT, PGD, GradientMaskingError
from ..attacks.autoattack import RAND_EOT, square
from ..attacks.capabilities import capability, gradient_free, gradients_only, members, searches_the_model
from ..core import frozen, get_norm
from ..distributed import gather_call
from .batched import Reader, attack_at
from .options import EvaluationOptions
from .results import WORST, Check, Cost, ModelResult
from .sharding import my_rows, summed, total_cost
from .smoothed import SmoothedResult
from .specs import DEFAULT_ATTACKS, parse_name, stronger

#: How many already-fooled samples per (attack, eps pair) the monotonicity check re-attacks.
REATTACK = 32
#: Share of re-attacked samples a fresh attack at the larger eps may fail on.
MONOTONE_SLACK = 0.10
#: Share of the probe a stronger or gradient-free attack may add before a check fails.
SLACK = 0.02
#: Standard deviations of the sign test between two randomized attacks on the same samples: a
#: stronger attack's survivors may exceed the curve's by this many sqrt(disagreements) by chance.
SIGN_TEST_Z = 3.0
#: At most this many probe samples left standing by the gradient attacks go to the Square attack,
SQUARE_ROWS = 50
#: the first this many of them first; the others only when Square fools one of the first.
SQUARE_FIRST = 5
#: Share of probe samples allowed an exactly-zero input gradient.
ZERO_GRAD_SLACK = 0.01
#: Steps of the stronger-attack check's attack, APGD-DLR (the DLR loss, momentum and APGD's step-size
#: schedule: built unlike PGD and APGD with cross-entropy). Per pass it fooled more of the samples
#: PGD-40 left standing on an FGSM-RS model than APGD-T with 1 or 2 target classes or APGD-CE did,
#: 50 steps no more than 25, and 20 told the same verdicts as 25 for 20% fewer passes
#: (benchmarks/README.md, issue 23).
STRONGER_STEPS = 20
#: Share of its samples the stronger-attack check's APGD-DLR may fool beyond the curves: behind FGSM +
#: APGD-CE it fooled 0-0.5% of them on adversarially trained models, behind FGSM + PGD-40 1.5-4%
#: (benchmarks/README.md: alone it finds about half of the curves' gap to AutoAttack).
STRONGER_SLACK = 0.005
#: Standard deviations of the binomial slack over STRONGER_SLACK: how far the share of its samples the
#: stronger attack fools may exceed STRONGER_SLACK by chance before the check fails.
BINOMIAL_Z = 2.0
#: The stronger-attack check's samples: at most this many of the correctly classified (a seeded choice),
#: not the probe: a 100-sample probe cannot tell a 3-point overstatement from the slack.
STRONGER_SAMPLES = 1000
#: Share of the curves' passes the stronger-attack check may spend (about 2 STRONGER_STEPS + 2 per
#: sample it attacks), beyond it fewer samples: at most the checks' whole budget, which it needs where the
#: curves are cheap (PGD-40 on adversarially trained models: 9-11%; on the default attacks 3.5-4.5%).
STRONGER_BUDGET = 0.15
#: The stronger-attack check's eps: the largest of the grid at which the worst case keeps at least this
#: share of the clean accuracy.
STRONGER_STANDING = 0.1
#: Attacks (these classes and their subclasses) at least as strong as the stronger-attack check's: a
#: curve whose attack is one, or an ensemble with one among its members (AutoAttack), answers the check.
STRONGER_ATTACKS = (APGDT,)
#: Forwards of the same probe inputs the randomness detection compares (the official check's 5).
RANDOM_DRAWS = 5
#: The largest L2 distance between two forwards' L2-normalised logits of a sample that still counts as
#: the same output (the official check's 1e-4; float noise of a deterministic model is far below it).
RANDOM_TOLERANCE = 1e-4
#: Forwards per gradient (``eot``) of the attacks ``evaluate`` runs on a randomized model: the official
#: rand version's.
EOT_DRAWS = RAND_EOT


log = logging.getLogger(__name__)


def run_checks(result: ModelResult, model: nn.Module, attacks: dict[str, Any], read: Reader,
               options: EvaluationOptions, spread: float | None = None) -> list[Check]:
    """All sanity checks for one evaluated model (``attacks``: the objects that made its curves;
    attacks that could not run are in ``result.masked``) on ``options.probe`` samples, one
    progress step per check; ``read`` gives the samples they attack by index (never the whole set).
    ``spread``: :func:`randomness` on the probe, when the caller measured it already (``evaluate``
    does, before the curves)."""
    idx = probe_indices(result.clean, options.probe, options.seed)
    ctx = _Context(result, model, attacks, read, idx, options, spread=spread)
    checks = []
    with tqdm(CHECKS.items(), desc=f"checks {result.name}", disable=not options.progress, leave=False) as bar:
        for name, check in bar:
            bar.set_postfix_str(name)
            log.info("%s: sanity check %s on %d probe samples", result.name, name, len(idx))
            checks.append(_one(name, check, ctx))
    for check in checks:
        check.model = result.name
    return checks


def _one(name: str, check: Any, ctx: _Context) -> Check:
    """One check, with the passes and seconds it spent as its ``cost``; a check whose own attack
    the model's hidden gradient stops fails, saying so."""
    if len(ctx.idx) == 0:
        return Check(name, True, "skipped: no correctly classified sample to probe", skipped=True)
    ctx.spent, t0 = Cost(), time.perf_counter()
    try:
        result = check(ctx)
    except GradientMaskingError as err:
        result = Check(name, False, f"the check's gradient attack could not run: {err}", details={"masked": True})
    ctx.spent.seconds = time.perf_counter() - t0
    result.cost = ctx.spent
    log.info("%s: check %s spent %d forwards and %d backwards (per image) in %.2f s", ctx.result.name, name,
             ctx.spent.forwards, ctx.spent.backwards, ctx.spent.seconds)
    return result


def probe_indices(clean: Tensor, probe: int, seed: int) -> Tensor:
    """A seeded random subset (at most ``probe``) of the correctly classified samples, sorted."""
    return seeded_order(clean, seed)[:probe].sort().values


def seeded_order(clean: Tensor, seed: int) -> Tensor:
    """The correctly classified samples in a random order drawn from ``seed``."""
    correct = clean.nonzero().squeeze(1)
    return correct[torch.randperm(len(correct), generator=torch.Generator().manual_seed(seed))]


@dataclass
class _Context:
    """What every check needs (``read``: samples by index; ``idx``: the probe rows; ``options``: the
    evaluation's), and fresh attacks on probe rows."""

    result: ModelResult
    model: nn.Module
    attacks: dict[str, Any]
    read: Reader
    idx: Tensor
    options: EvaluationOptions
    fooled: int = 0  # samples the checks' own attacks fooled,
    nonfinite: int = 0  # and on how many of those the model's logits were NaN/Inf
    spent: Cost = field(default_factory=Cost)  # the running check's per-image passes
    spread: float | None = None  # randomness() on the probe, when measured before the checks

    @property
    def norm(self) -> str:
        """The evaluation's norm."""
        return self.options.norm

    def survived(self, attack: Any, rows: Tensor, eps: float) -> Tensor:
        """Fresh attack on ``rows`` at ``eps``: survival mask over ``rows``. Its passes count in
        :attr:`spent`, the forward that checks the fooled rows' logits for NaN/Inf included."""
        opts = self.options

        def mine() -> tuple[Tensor, Cost]:  # this rank's share, a batch read at a time
            fooled, cost = torch.zeros(0, dtype=torch.bool), Cost()
            part = my_rows(rows, opts.batches.start, bool(capability(attack, "per_sample")))
            for chunk in part.split(opts.batches.start) if len(part) else ():
                hit, _, spent = attack_at(attack, *self.read(chunk), torch.arange(len(chunk)), eps, opts.batches,
                                          opts.device, opts.seed, model=self.model, index=chunk)
                fooled, cost = torch.cat([fooled, hit]), summed(cost, spent)
            return fooled, cost

        parts = gather_call(mine)
        fooled, cost = torch.cat([f for f, _ in parts]), total_cost([c for _, c in parts])
        self.fooled, self.nonfinite = self.fooled + int(fooled.sum()), self.nonfinite + cost.nonfinite
        self.spent.attacked += len(rows)
        self.spent.forwards += cost.forwards + int(fooled.sum())
        self.spent.backwards += cost.backwards
        self.spent.nonfinite += cost.nonfinite
        return ~fooled

    @property
    def probe_point(self) -> tuple[int, float] | None:
        """The grid point (index, eps > 0) where the worst-case accuracy is nearest half the clean
        accuracy, where stronger attacks have the most room to differ; on ties the largest eps
        (a flat curve, the mark of masking, is probed where the budget is largest)."""
        acc, half = self.result.accuracy(WORST), self.result.clean_accuracy / 2
        points = [(abs(a - half), -j) for j, (e, a) in enumerate(zip(self.result.eps, acc, strict=True)) if e > 0]
        if not points:
            return None
        j = -min(points)[1]
        return j, self.result.eps[j]


def check_monotone(ctx: _Context) -> Check:
    """Accuracy is non-increasing in eps: on every curve, and for fresh attacks at the next eps on
    samples the attack fooled at the smaller one (a larger ball contains the smaller one)."""
    res = ctx.result
    bumps = [name for name in res.names if any(b > a + 1e-12 for a, b in pairwise(res.accuracy(name)))]
    tested = missed = 0
    for name, attack in ctx.attacks.items():
        robust = res.robust(name)
        for j in range(1, len(res.eps)):
            if res.eps[j - 1] == 0:
                continue
            rows = ctx.idx[~robust[ctx.idx, j - 1]][:REATTACK]
            tested, missed = tested + len(rows), missed + int(ctx.survived(attack, rows, res.eps[j]).sum())
    allowed = max(1, math.floor(MONOTONE_SLACK * tested))
    passed = not bumps and missed <= allowed
    msg = (("accuracy rises with eps on " + ", ".join(bumps) + "; ") if bumps
           else "every curve is non-increasing in eps; ")
    msg += (f"fresh attacks at the next eps fooled {tested - missed}/{tested} samples they fooled at the smaller eps"
            if tested else "no eps pair to re-attack")
    if missed > allowed:
        msg += " (an attack that fails on a larger ball is not converging: check step sizes and steps)"
    return Check("monotone", passed, msg, details={"increasing": bumps, "reattacked": tested, "missed": missed})


def check_large_eps(ctx: _Context) -> Check:
    """At a budget covering the whole [0, 1] box (L-inf 1.0; L2 the box's diagonal) any input is
    reachable, so accuracy must fall to chance or below."""
    eps = get_norm(ctx.norm).covering_radius(ctx.read(ctx.idx[:1])[0][0].numel())
    attack = PGD(ctx.model, eps=eps, steps=20, norm=ctx.norm, seed=ctx.options.seed)
    n = len(ctx.idx)
    left = int(ctx.survived(attack, ctx.idx, eps).sum())
    acc, chance = left / n, 1.0 / ctx.result.num_classes
    passed = left * ctx.result.num_classes <= n  # accuracy <= chance, in integers
    msg = f"PGD-20 at {ctx.norm} eps={eps:g} leaves {left}/{n} samples correct ({acc:.1%}; chance {chance:.1%})"
    if not passed:
        msg += ": an attack that cannot reach any image is broken, or the model hides its gradients"
    return Check("large-eps", passed, msg, details={"eps": eps, "accuracy": acc, "chance": chance})


def check_more_budget(ctx: _Context) -> Check:
    """Twice the steps must not raise accuracy: the stronger attack runs fresh on the probe samples
    the curve fooled and is compared with the curve there, sample by sample. Only those samples can
    show it (a sample the stronger attack leaves standing that the curve fooled); the curve's
    survivors count as standing for both, which never hides a failure: the stronger attack could
    only fool some of them, and each would lower its accuracy and widen the slack. Both are
    randomized, so the stronger one may leave a few more standing by chance: it fails only when its
    extra survivors exceed ``SIGN_TEST_Z`` sqrt(disagreements) and a ``SLACK`` share of the probe
    (a sign test on integer counts)."""
    point = ctx.probe_point
    pairs = [(name, attack, stronger(attack)) for name, attack in ctx.attacks.items()]
    pairs = [(name, a, s) for name, a, s in pairs if s is not None]
    if point is None or not pairs:
        return Check("more-budget", True, "skipped: needs an eps > 0 and a multi-step attack with a `steps` setting",
                     skipped=True)
    j, eps = point
    n = len(ctx.idx)
    rows, failed, drops = [], [], {}
    for name, _attack, more in pairs:
        base = ctx.result.robust(name)[ctx.idx, j]
        fooled = ctx.idx[~base]
        only_strong = int(ctx.survived(more, fooled, eps).sum())
        allowed = sign_test_slack(only_strong, n)
        rows.append(f"{name} {int(base.sum())}/{n} -> {int(base.sum()) + only_strong}/{n} "
                    f"(re-attacked the {len(fooled)} it fooled)")
        drops[name] = {"base": int(base.sum()), "stronger": int(base.sum()) + only_strong, "allowed": allowed,
                       "reattacked": len(fooled)}
        if only_strong > allowed:
            failed.append(name)
    msg = f"2x steps at eps={eps:g} on {n} samples, survivors: " + ", ".join(rows)
    if failed:
        msg += f"; more steps raised accuracy for {', '.join(failed)}: the attack is erratic (step size, masking)"
    return Check("more-budget", not failed, msg, details={"eps": eps, "failed": failed, "counts": drops})


def sign_test_slack(disagreements: int, n: int) -> int:
    """How many more samples one of two equally strong randomized attacks may leave standing than
    the other on the same ``n`` samples, when they disagree on ``disagreements`` of them: the sign
    test's ``SIGN_TEST_Z`` standard deviations, and at least a ``SLACK`` share of ``n`` (at least 1)."""
    return max(1, math.ceil(SLACK * n), math.ceil(SIGN_TEST_Z * math.sqrt(disagreements)))


def check_gradient_free(ctx: _Context) -> Check:
    """A gradient-free attack must not find adversarial examples the gradient attacks missed: if it
    does, gradients are misleading (masked, obfuscated) and the gradient curves overstate robustness.

    The gradient attacks are those whose every member follows the gradient (``uses_gradients``; an
    ensemble with a gradient-free member, such as AutoAttack, is neither kind). A curve of a
    gradient-free attack the evaluation ran (Square, or any attack whose class declares
    ``uses_gradients = False``, but not a transfer attack: ``transfer``, crafted on a surrogate, it tells
    nothing of the model's own gradients) answers this on every probe sample at no cost. Otherwise
    Square (``queries`` queries) attacks the probe samples every gradient attack left standing: the
    first ``SQUARE_FIRST``, and the rest (up to ``SQUARE_ROWS``) only when it fools one of them, so a
    sound model costs ``SQUARE_FIRST`` searches. First come the samples that also stand at the most
    larger eps (ties in the probe's random order): masking shows as samples the gradient attacks
    cannot move at any budget, while a sound model's samples that stand everywhere are its most
    robust, where Square fails too. A model on which Square beats the gradient attacks on a share p
    of those first samples passes the first stage with probability (1 - p)^SQUARE_FIRST (5% at
    p = 0.45; a masked model's curve stays high, so the middle eps is a large one, where Square
    fools most samples); past it, the verdict is the one all the rows give."""
    point, res = ctx.probe_point, ctx.result
    if res.masked:
        return Check("gradient-free", False, "gradient masking: " + ", ".join(res.masked) + " could not run (the "
                     "model's output has no gradient with respect to its input); only gradient-free attacks "
                     "measure this model, and the worst case comes from them", details={"masked": list(res.masked)})
    gradient = [name for name, attack in ctx.attacks.items() if gradients_only(attack)]
    if point is None or not gradient:
        return Check("gradient-free", True, "skipped: needs an eps > 0 and a gradient attack", skipped=True)
    j, eps = point
    standing = torch.stack([res.robust(name)[:, j] for name in gradient]).all(0)
    allowed = max(1, math.ceil(SLACK * len(ctx.idx)))
    curves = [name for name, attack in ctx.attacks.items() if searches_the_model(attack)]
    if curves:
        rows = ctx.idx[standing[ctx.idx]]
        beaten = ~torch.stack([res.robust(name)[rows, j] for name in curves]).all(0)
        extra, attacked, what = int(beaten.sum()), len(rows), f"the {', '.join(curves)} curve"
    else:
        rows = most_resistant_first(res, gradient, ctx.idx[standing[ctx.idx]], j)[:SQUARE_ROWS]
        attack = square(ctx.model, ctx.norm, ctx.options.queries).attack
        attack.progress = ctx.options.progress
        extra = int((~ctx.survived(attack, rows[:SQUARE_FIRST], eps)).sum())
        attacked = min(len(rows), SQUARE_FIRST)
        if extra:
            extra += int((~ctx.survived(attack, rows[SQUARE_FIRST:], eps)).sum())
            attacked = len(rows)
        what = f"Square ({ctx.options.queries} queries)"
    passed = extra <= allowed
    msg = (f"{what} at eps={eps:g} fooled {extra} of the {attacked} probe samples (of {len(ctx.idx)}) that every "
           f"gradient attack ({', '.join(gradient)}) missed")
    if attacked < len(rows):
        msg += f" (the other {len(rows) - attacked} go to Square only when it fools one of the first {attacked})"
    if not passed:
        msg += ": gradients mislead the attacks (gradient masking); trust the gradient-free or AutoAttack numbers"
    return Check("gradient-free", passed, msg,
                 details={"eps": eps, "extra": extra, "standing": len(rows), "attacked": attacked})


def most_resistant_first(result: ModelResult, attacks: list[str], rows: Tensor, j: int) -> Tensor:
    """``rows`` ordered by how many grid points after ``j`` every one of ``attacks`` left them
    standing at, most first; ties keep their order."""
    later = torch.stack([result.robust(name)[rows, j + 1:] for name in attacks]).all(0).sum(1)
    return rows[torch.argsort(later, descending=True, stable=True)]


def check_stronger_attack(ctx: _Context) -> Check:
    """A stronger, differently built attack must not fool the samples the curves' attacks left
    standing: APGD-DLR (``STRONGER_STEPS`` steps) attacks every one of them at :func:`stronger_eps`,
    not only the probe's, among the correctly classified samples in a seeded order: the first
    ``STRONGER_SAMPLES``, fewer where their standing ones would cost more than ``STRONGER_BUDGET``
    of the curves' passes (so its samples stay a random sample and the binomial slack holds).
    What it fools, the worst case counted as robust, so its share is the overstatement there. PGD
    with cross-entropy on an adversarially trained model is such a weak judge without any gradient
    masking (the gradient checks pass). The check fails when the overstatement exceeds a
    ``STRONGER_SLACK`` share by more than the binomial slack (``BINOMIAL_Z`` standard deviations at
    that share), and names the attacks to add. A curve of one of :data:`STRONGER_ATTACKS` (APGD-T, or
    an ensemble with one, AutoAttack) answers it from the curves at no cost."""
    res = ctx.result
    point = stronger_eps(res)
    if point is None or res.masked or not ctx.attacks or res.num_classes < 3:
        why = ("no gradient masking (see gradient-free)" if res.masked else
               "3 classes or more (the DLR loss)" if res.num_classes < 3 else "an eps > 0 and an attack that ran")
        return Check("stronger-attack", True, f"skipped: needs {why}", skipped=True)
    j, eps = point
    curves = [name for name, attack in ctx.attacks.items() if runs_stronger_attack(attack)]
    others = [name for name in ctx.attacks if name not in curves]
    if not others:
        return Check("stronger-attack", True, f"skipped: the curves are {', '.join(curves)} themselves", skipped=True)
    samples = seeded_order(res.clean, ctx.options.seed)[:STRONGER_SAMPLES]
    standing = torch.stack([res.robust(name)[samples, j] for name in others]).all(0)
    if not curves:  # the first samples of the seeded order whose standing ones fit in the budget
        budget = STRONGER_BUDGET * res.curve_passes()
        keep = int((standing.cumsum(0) <= max(1, budget // (2 * STRONGER_STEPS + 2))).sum())
        samples, standing = samples[:keep], standing[:keep]
    n = len(samples)
    rows = samples[standing].sort().values
    if curves:
        extra = int((~torch.stack([res.robust(name)[rows, j] for name in curves]).all(0)).sum())
        what = f"the {', '.join(curves)} curve"
    else:
        attack = APGD(ctx.model, eps, steps=STRONGER_STEPS, norm=ctx.norm, loss="dlr", seed=ctx.options.seed)
        extra = int((~ctx.survived(attack, rows, eps)).sum())
        what = f"APGD-DLR ({STRONGER_STEPS} steps)"
    allowed = binomial_slack(n)
    points = 100 * res.clean_accuracy * extra / n  # of the accuracy over all samples
    passed = extra <= allowed
    msg = (f"{what} at eps={eps:g} fooled {extra} of the {len(rows)} samples (of {n} correctly classified) that "
           f"{', '.join(others)} left standing (allowed {allowed})")
    if not passed and curves:  # the worst case takes the stronger curve; the other attacks alone fall short
        msg += (f": {', '.join(others)} alone would overstate robustness by at least {points:.1f} points at "
                f"eps={eps:g} (the worst case, which takes {what}, does not)")
    elif not passed:
        msg += (f": the worst case overstates robustness by at least {points:.1f} points at eps={eps:g}; "
                f"add {stronger_advice(ctx.attacks)} to the attacks (or use 'autoattack')")
    return Check("stronger-attack", passed, msg,
                 details={"eps": eps, "extra": extra, "standing": len(rows), "samples": n, "allowed": allowed,
                          "overstatement": points / 100})


def stronger_advice(attacks: dict[str, Any]) -> str:
    """The default attacks missing from ``attacks`` (read by report name; a default run with fewer
    steps, e.g. ``apgd-10``, is named with them), or APGD-T when every default ran in full."""
    steps = {}
    for name in attacks:
        try:
            base, count = parse_name(name)
        except ValueError:  # a label of the user's own
            continue
        steps[base] = count
    advice = [repr(d) if d not in steps else f"{d!r} at its full steps (here {d}-{steps[d]})"
              for d in DEFAULT_ATTACKS if steps.get(d, 0) is not None]
    return ", ".join(advice) or "'apgd-t'"


def runs_stronger_attack(attack: Any) -> bool:
    """True when ``attack`` is, or has among its members, one of :data:`STRONGER_ATTACKS`: its curve
    already holds what the stronger-attack check's own attack would find."""
    return any(isinstance(member, STRONGER_ATTACKS) for member in members(attack))


def stronger_eps(result: ModelResult) -> tuple[int, float] | None:
    """The grid point (index, eps > 0) of the stronger-attack check: the largest eps at which the worst
    case keeps a ``STRONGER_STANDING`` share of the clean accuracy (an overstatement grows with eps
    while samples stand to show it: 0, 0, 2, 5 of 200 along an FGSM-RS model's grid; and the fewer
    stand, the less the check costs), else the smallest eps > 0."""
    acc, floor = result.accuracy(WORST), STRONGER_STANDING * result.clean_accuracy
    points = [(j, e) for j, e in enumerate(result.eps) if e > 0]
    if not points:
        return None
    standing = [(j, e) for j, e in points if acc[j] >= floor]
    return standing[-1] if standing else points[0]


def binomial_slack(n: int) -> int:
    """How many of ``n`` samples a stronger attack may fool beyond the curves' attacks before the worst
    case counts as overstated: a ``STRONGER_SLACK`` share plus ``BINOMIAL_Z`` binomial standard
    deviations at that share, at least 1."""
    return max(1, math.floor(STRONGER_SLACK * n + BINOMIAL_Z * math.sqrt(n * STRONGER_SLACK * (1 - STRONGER_SLACK))))


def check_gradients(ctx: _Context) -> Check:
    """Input gradients of the cross-entropy must be finite and non-zero; zero gradients mean a
    quantised input or a saturated softmax, and NaN/Inf a numerically broken model."""
    batch_size, device = ctx.options.batches.start, ctx.options.device

    def mine() -> tuple[int, int, bool, int]:  # this rank's share: zero, non-finite, masked, forwards
        zero = bad = forwards = 0
        part = my_rows(ctx.idx, batch_size, by_sample=True)
        with frozen(ctx.model), torch.enable_grad():
            for rows in part.split(batch_size) if len(part) else ():
                xb, yb = ctx.read(rows)
                xb = xb.to(device).requires_grad_(True)
                loss = F.cross_entropy(ctx.model(xb).float(), yb.to(device), reduction="sum")
                forwards += len(rows)
                if not loss.requires_grad:
                    return 0, 0, True, forwards
                (grad,) = torch.autograd.grad(loss, xb)
                flat = grad.flatten(1)
                finite = torch.isfinite(flat).all(1)
                bad += int((~finite).sum())
                zero += int((finite & (flat == 0).all(1)).sum())
        return zero, bad, False, forwards

    parts = gather_call(mine)
    n = len(ctx.idx)
    ctx.spent.forwards += sum(part[3] for part in parts)
    if any(part[2] for part in parts):
        return Check("gradients", False, f"gradient masking: the model's output has no gradient with respect "
                     f"to its input on any of the {n} samples (torch.no_grad, detach or argmax inside forward)",
                     details={"zero": n, "non_finite": 0, "n": n, "masked": True})
    ctx.spent.backwards += n
    zero, bad = sum(part[0] for part in parts), sum(part[1] for part in parts)
    passed = bad == 0 and zero <= math.floor(ZERO_GRAD_SLACK * n)
    msg = f"input gradients on {n} samples: {zero} exactly zero, {bad} non-finite"
    if not passed:
        msg += ": the model masks its gradients (quantised input, saturated softmax, non-differentiable layer)"
        msg += ("; a non-differentiable preprocessing step (JPEG, bit-depth reduction) is attacked through "
                "advkit.attacks.BPDA (its forward, a differentiable stand-in backward)")
    return Check("gradients", passed, msg, details={"zero": zero, "non_finite": bad, "n": n})


def check_finite_logits(ctx: _Context) -> Check:
    """Every adversarial input counted as fooled (on the curves and in the checks above) must get
    finite logits: NaN or Inf off the data manifold counts as a misclassification without a real
    wrong class, so the accuracies would be lowered by a numerical fault, not by the attacks."""
    curves = sum(c.nonfinite for rec in ctx.result.attacks.values() for c in rec.costs)
    bad = curves + ctx.nonfinite
    msg = (f"NaN/Inf logits on {curves} of the adversarial inputs that fooled the model on the curves and on "
           f"{ctx.nonfinite} of the {ctx.fooled} that fooled it in the checks above")
    if bad:
        msg += (": the model returns NaN/Inf off the data manifold and those samples count as misclassified; "
                "the accuracies are not a robustness measure until the model is numerically stable there")
    return Check("finite-logits", bad == 0, msg,
                 details={"curves": curves, "checks": ctx.nonfinite, "checks_fooled": ctx.fooled})


def randomness(model: nn.Module, read: Reader, rows: Tensor, batch_size: int, device: torch.device | str) -> float:
    """How far ``RANDOM_DRAWS`` forwards of the same inputs (samples ``rows``, read by ``read``) disagree:
    the largest L2 distance, over samples and pairs of draws, between their L2-normalised logits (0 for
    a deterministic model; above ``RANDOM_TOLERANCE``, a randomized one). Costs ``RANDOM_DRAWS``
    forwards per sample, split among the ranks of a process group."""
    def mine() -> float:
        spread = 0.0
        part = my_rows(rows, batch_size, by_sample=True)
        with frozen(model), torch.no_grad():
            for chunk in part.split(batch_size) if len(part) else ():
                xb = read(chunk)[0].to(device)
                outs = [F.normalize(model(xb).float().flatten(1), dim=1) for _ in range(RANDOM_DRAWS)]
                for a in range(RANDOM_DRAWS):
                    for b in range(a + 1, RANDOM_DRAWS):
                        spread = max(spread, float((outs[a] - outs[b]).norm(dim=1).max()))
        return spread

    return max(gather_call(mine))


def check_randomized(ctx: _Context) -> Check:
    """The model's outputs must be the same on every forward of the same inputs: a model whose forward
    is random (noise injection, random transforms, stochastic layers) gives each attack step one draw's
    gradient, and attacks that follow single draws overstate its robustness. Measured by
    :func:`randomness` on the probe (by ``evaluate`` before the curves, which then ran its attacks with
    ``eot``); the fix is expectation over transformation."""
    spread = ctx.spread
    if spread is None:
        spread = randomness(ctx.model, ctx.read, ctx.idx, ctx.options.batches.start, ctx.options.device)
    ctx.spent.forwards += RANDOM_DRAWS * len(ctx.idx)  # the check's cost, wherever it was measured
    n = len(ctx.idx)
    randomized = spread > RANDOM_TOLERANCE
    single = [name for name, attack in ctx.attacks.items() if single_draw(attack)]
    msg = (f"{RANDOM_DRAWS} forwards of the same {n} probe inputs differ by up to {spread:.3g} "
           f"(normalised logits; allowed {RANDOM_TOLERANCE:g})")
    if randomized:
        msg += (": the model is randomized, and attacks that follow one draw's gradient overstate its robustness; "
                f"evaluate it with 'autoattack-rand' or gradient attacks with eot={EOT_DRAWS} "
                f"(e.g. APGD(model, eps, eot={EOT_DRAWS}))")
        if single:
            msg += f"; single-draw gradient attacks here: {', '.join(single)}"
    return Check("randomized", not randomized or not single, msg,
                 details={"spread": spread, "draws": RANDOM_DRAWS, "randomized": randomized, "single_draw": single})


def single_draw(attack: Any) -> bool:
    """True when a member of ``attack`` follows the gradient of one forward at a time (``eot`` 1)."""
    return any(not gradient_free(m) and getattr(m, "eot", 1) == 1 for m in members(attack))


CHECKS = {"randomized": check_randomized, "monotone": check_monotone,
          "large-eps": check_large_eps, "more-budget": check_more_budget,
          "gradient-free": check_gradient_free, "stronger-attack": check_stronger_attack,
          "gradients": check_gradients, "finite-logits": check_finite_logits}


def check_certified(smoothed: SmoothedResult) -> Check:
    """A certificate can never exceed what an attack achieves: where CERTIFY certified a sample's label at a
    radius, PREDICT must not name another class on a point an attack found within it. Either can err, each
    with probability at most alpha per call, independently across samples (fresh noise), so a sample's
    contradiction has probability at most ``p0 = alpha * (1 + calls)`` (a union bound over CERTIFY and the
    sample's PREDICT calls) and their count over N samples at most a Binomial(N, p0)'s. The check fails at a
    radius where more samples are contradicted than that binomial reaches with probability alpha (its
    slack: the least k with P(Binomial(N, p0) >= k) <= alpha): certified accuracy lies above empirical
    accuracy there by more than chance allows. An abstention does not contradict (the certified class may
    win by too little for PREDICT's draws), so empirical accuracy, which counts it wrong, may lie below
    certified accuracy without failing the check."""
    if smoothed.empirical is None:
        return Check("certified", True, "skipped: the smoothed classifier was certified but not attacked",
                     skipped=True)
    from scipy.stats import binom

    n, alpha = len(smoothed.certified), smoothed.options.alpha
    p0 = min(1.0, alpha * (1 + smoothed.predictions))
    slack = int(binom.isf(alpha, n, p0)) + 1  # the least k with P(X >= k) <= alpha
    contradicted = (smoothed.certified & smoothed.refuted).sum(0).tolist()
    over = [(r, k) for r, k in zip(smoothed.radii, contradicted, strict=True) if k >= slack]
    gaps = [c - e for (_, c), (_, e) in zip(smoothed.certified_curve(), smoothed.empirical_curve(), strict=True)]
    details = {"contradicted": contradicted, "slack": slack, "p0": p0, "samples": n,
               "certified_minus_empirical": gaps}
    if over:
        r, k = over[0]
        return Check("certified", False,
                     f"at L2 radius {r:g}, PREDICT named another class on an attack's point within the certified "
                     f"radius of {k} of {n} certified samples; chance allows fewer than {slack} (alpha={alpha:g}): "
                     "the certificates or the attack's judge are wrong", details=details)
    return Check("certified", True,
                 f"no radius has {slack} or more of {n} certificates contradicted by PREDICT on an attack's point "
                 f"(most: {max(contradicted)}; certified minus empirical accuracy up to {max(gaps):.1%}, "
                 "abstentions counted wrong)", details=details)
