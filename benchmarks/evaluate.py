"""Robustness curve cost: advkit.evaluate (survivors only) versus the torchattacks way (the same
PGD-40 on every sample at every eps), side by side in one process; the curve against its floor;
and what the default sanity checks add to it.

Run (the allocator settings matter on small CPUs, see docs/ARCHITECTURE.md):

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python benchmarks/evaluate.py
    ... python benchmarks/evaluate.py --device cuda --n 1000
    ... python benchmarks/evaluate.py --floor      # measured cost vs the floor, on two models
    ... python benchmarks/evaluate.py --checks     # the sanity checks' cost on top of the curve

Both sides attack the same mnist5k test images with the same cached SmallCNN (see
benchmarks/attacks.py) on a 7-point L-inf grid, with the same PGD-40 (alpha = 2.5 eps / 40).
torchattacks starts each eps from a random point; advkit does at the first eps, then starts each
survivor where its search at the previous eps ended (evaluate's warm_start). Repetitions are
interleaved (ours, theirs, ours, ...) so background load hits both alike; times are medians, and
the verdict uses the median of the per-repetition ratios. The target (issue 3): ours <= 1/3 of the
time, with equal or lower robust accuracy at every eps. ``--full`` adds advkit with
survivors=False and ``--fresh`` advkit with warm_start=False, to show what each saving is worth.

``--floor``: the survivors-only curve is floor-bound, since a sample that resists takes every step
at every eps it survives. The floor at an eps is (samples still standing after it) x STEPS passes,
a pass being one forward and one backward of one image. Measured: the report's per-image counts
(evaluate's Cost) plus the forward that checks each fooled sample's logits for NaN/Inf; the
passes with a backward (``fwd+bwd``) and the forwards without one (each eps's clean forward, the
last iterate's judgement, the NaN check) are shown apart. ``measured/floor`` counts a forward
without backward as the share w of a pass that it takes in time (measured here on one batch,
interleaved; printed), between the bounds ``fwd+bwd/floor`` (w = 0) and ``every fwd/floor``
(w = 1). What lies above the floor is the steps of the samples fooled at that eps (one fooled at
step k paid k passes) and those forwards. Timed: the curve's seconds at each eps against a bare
loop of STEPS forward+backward passes over that eps's survivors in the same batch size, at a
random point of their eps-ball (an attack's iterates cost more than clean images), interleaved.
Models: the cached SmallCNN and a more robust standard one (the same SmallCNN and recipe,
trained on images with Gaussian noise of std 0.3 added; no adversarial training). Goal (issue
11): measured <= 1.15x the floor.

``--checks``: evaluate(..., checks=True) at its defaults (probe 100, Square with 500 queries) on
the same PGD-40 curve; the curve's and the checks' seconds as evaluate records them, and their
per-image forwards and backwards (each check's ``cost``), every one of them counted (a forward
hook on the model confirms the total). Goal (issue 11): checks <= 15% on top of the curve.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import advkit
from advkit.attacks import PGD
from advkit.core import frozen
from advkit.evaluation.results import ModelResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import common_args, floor, load_model, setup  # noqa: E402  (the benchmarks share one cached model)

#: The 7-point MNIST grid of the design notes; eps 0 (clean accuracy) costs each side one forward.
GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
STEPS = 40
#: Std of the Gaussian noise the second, more robust standard model trains on.
NOISE_STD = 0.3


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float], batch_size: int, device: str,
         survivors: bool = True, warm_start: bool = True, checks: bool = False) -> ModelResult:
    """advkit.evaluate's PGD-40 curve (no pictures; no checks unless asked: the curve alone is timed)."""
    rep = advkit.evaluate(model, (x, y), attacks={"pgd": lambda m: PGD(m, steps=STEPS)}, eps=grid,
                          batch_size=batch_size, device=device, progress=False, checks=checks, examples=0,
                          survivors=survivors, warm_start=warm_start)
    return rep["model"]


def theirs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float], batch_size: int,
           device: str) -> list[float]:
    """torchattacks' PGD-40 on every sample at every eps > 0 (eps 0: the clean images), accuracy
    of the model on the result."""
    import torchattacks

    accs = []
    for eps in grid:
        atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=True)
        correct = 0
        for s in range(0, len(x), batch_size):
            xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
            x_adv = atk(xb, yb) if eps > 0 else xb
            with frozen(model), torch.no_grad():
                correct += int((model(x_adv).argmax(1) == yb).sum())
        accs.append(correct / len(x))
    return accs


def floor_rows(result: ModelResult, attack: str, steps: int) -> list[dict]:
    """Per eps > 0 of ``attack``'s survivors-only curve: samples attacked, survivors (standing after
    that eps), the floor (survivors x ``steps`` forward+backward passes), the measured passes with a
    backward (``fwd_bwd``) and forwards without one (``forward_only``, the NaN check's forward of each
    fooled sample included), and the curve's seconds there."""
    robust, costs = result.robust(attack), result.attacks[attack].costs
    rows = []
    for j, eps in enumerate(result.eps):
        if eps == 0:
            continue
        cost, survivors = costs[j], int(robust[:, j].sum())
        fooled = cost.attacked - survivors
        rows.append({"eps": eps, "attacked": cost.attacked, "survivors": survivors, "floor": survivors * steps,
                     "fwd_bwd": cost.backwards, "forward_only": cost.forwards + fooled - cost.backwards,
                     "seconds": cost.seconds})
    return rows


def total(rows: list[dict]) -> dict:
    """The sum of ``rows`` over the eps (``eps``: "total")."""
    return {"eps": "total", **{key: sum(r[key] for r in rows) for key in rows[0] if key != "eps"}}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "-"


def timed_floor(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, robust: torch.Tensor, eps: list[float],
                batch_size: int, device: torch.device) -> list[float]:
    """Seconds of a bare loop of STEPS forward+backward passes over the survivors of each ``eps``
    (``robust``: the curve's survival mask there), in batches of ``batch_size``, at a random point
    of each one's eps-ball (on this CPU a perturbed image costs more than a clean one, whose
    background is exactly 0: 9% for the SmallCNN)."""
    seconds, run = [], floor(model, STEPS)
    noise = 2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 1
    for j, e in enumerate(eps):
        rows = robust[:, j].nonzero().squeeze(1)
        points = (x[rows] + e * noise[rows]).clamp(0, 1)
        t0 = time.perf_counter()
        for s in range(0, len(rows), batch_size):
            run(points[s:s + batch_size].to(device), y[rows[s:s + batch_size]].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    return seconds


def forward_share(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                  reps: int = 15) -> float:
    """Seconds of a no-grad forward of the batch ``x`` over those of a forward+backward to the input
    (median of ``reps`` interleaved pairs): what a forward without backward costs, in passes."""
    x, y = x.to(device), y.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pairs = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        with frozen(model), torch.no_grad():
            model(x)
        sync()
        t1 = time.perf_counter()
        floor(model, 1)(x, y)
        sync()
        pairs.append((t1 - t0) / (time.perf_counter() - t1))
    return statistics.median(pairs)


def print_floor(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float],
                args: argparse.Namespace, device: torch.device) -> dict:
    """One model's table: counts from one curve (they do not vary), seconds as medians of
    ``args.reps`` interleaved repetitions of the curve and of its floor loop."""
    curve_s, floor_s = [], []
    for _ in range(args.reps):
        result = ours(model, x, y, grid, args.batch_size, args.device)
        rows = floor_rows(result, "pgd", STEPS)
        curve_s.append([r["seconds"] for r in rows])
        attacked = [j for j, e in enumerate(grid) if e > 0]
        floor_s.append(timed_floor(model, x, y, result.robust("pgd")[:, attacked], [grid[j] for j in attacked],
                                   args.batch_size, device))
    for k, r in enumerate(rows):
        r["seconds"] = statistics.median(s[k] for s in curve_s)
        r["floor_seconds"] = statistics.median(s[k] for s in floor_s)
    rows.append(total(rows))
    w = forward_share(model, x[:args.batch_size], y[:args.batch_size], device)
    acc = [f"{a:.1%}" for a in result.accuracy("pgd")]
    print(f"\n{name}: clean {result.clean_accuracy:.1%}, PGD-{STEPS} " + " / ".join(acc[1:]) + f" at eps {grid[1:]}; "
          f"a forward without backward takes w = {w:.2f} of a pass")
    print("| eps | attacked | survivors | floor (fwd+bwd) | fwd+bwd | fwd only | measured/floor | fwd+bwd/floor "
          "| every fwd/floor | s | floor s | s/floor s |")
    print("|---|" + "---|" * 11)
    for r in rows:
        r["measured"] = r["fwd_bwd"] + w * r["forward_only"]
        print(f"| {r['eps']} | {r['attacked']} | {r['survivors']} | {r['floor']} | {r['fwd_bwd']} | "
              f"{r['forward_only']} | {ratio(r['measured'], r['floor'])} | {ratio(r['fwd_bwd'], r['floor'])} | "
              f"{ratio(r['fwd_bwd'] + r['forward_only'], r['floor'])} | {r['seconds']:.2f} | "
              f"{r['floor_seconds']:.2f} | {ratio(r['seconds'], r['floor_seconds']) if r['floor'] else '-'} |")
    return rows[-1]


def run_floor(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              grid: list[float], device: torch.device) -> None:
    def noise(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return (batch + NOISE_STD * torch.randn(batch.shape, generator=generator)).clamp(0, 1)

    noisy = load_model(args.noisy_model, device, augment=noise)
    print(f"PGD-{STEPS} survivors-only curve vs its floor on {len(x)} mnist5k test images, device {args.device}, "
          f"{torch.get_num_threads()} threads, seconds: median of {args.reps}")
    verdicts = []
    for name, net in (("SmallCNN (benchmarks/attacks.py)", model),
                      (f"SmallCNN trained on Gaussian noise (std {NOISE_STD})", noisy)):
        t = print_floor(name, net, x, y, grid, args, device)
        verdicts.append(t["measured"] / t["floor"])
    print(f"\n{'PASS' if max(verdicts) <= 1.15 else 'FAIL'}: measured/floor " + ", ".join(f"{v:.3f}" for v in verdicts)
          + " (target <= 1.15)")


def run_checks(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               grid: list[float]) -> None:
    """Interleaved repetitions of evaluate with its default checks; counts from the model's forward
    hook and from the records, seconds as evaluate measured them."""
    forwards = [0]
    hook = model.register_forward_hook(lambda m, inputs, out: forwards.__setitem__(0, forwards[0] + len(inputs[0])))
    share = []
    for rep in range(args.reps):
        forwards[0] = 0
        result = ours(model, x, y, grid, args.batch_size, args.device, checks=True)
        share.append(result.seconds["checks"] / result.seconds["pgd"])
        seconds = result.seconds
        print(f"rep {rep + 1}/{args.reps}: curve {seconds['pgd']:.2f} s, checks {seconds['checks']:.2f} s", flush=True)
    hook.remove()
    costs = result.attacks["pgd"].costs
    fooled = int(result.clean.sum()) - int(result.robust("pgd")[:, -1].sum())  # each had one NaN-check forward
    curve_f, curve_b = sum(c.forwards for c in costs) + fooled, sum(c.backwards for c in costs)
    check_f, check_b = sum(c.cost.forwards for c in result.checks), sum(c.cost.backwards for c in result.checks)
    counted = len(x) + curve_f + check_f  # the clean forward of every sample, the curve, the checks
    print(f"\nPGD-{STEPS} curve on {len(x)} mnist5k test images, {len(grid)} eps, default checks (probe 100, "
          f"Square 500 queries), device {args.device}, {torch.get_num_threads()} threads; last repetition's counts "
          f"(per-image forwards and backwards; all {counted} forwards counted: "
          f"{'matches' if counted == forwards[0] else 'DIFFERS from'} the model's forward hook, {forwards[0]})\n")
    print("| part | forwards | backwards | seconds |")
    print("|---|---|---|---|")
    print(f"| curve | {curve_f} | {curve_b} | {result.seconds['pgd']:.2f} |")
    for c in result.checks:
        print(f"| check {c.name} | {c.cost.forwards} | {c.cost.backwards} | {c.cost.seconds:.2f} |")
    print(f"| checks | {check_f} | {check_b} | {result.seconds['checks']:.2f} |")
    by_count = (check_f + check_b) / (curve_f + curve_b)
    by_time = statistics.median(share)
    print(f"\nchecks / curve: {by_count:.1%} by count (forwards + backwards), forwards alone {check_f / curve_f:.1%}, "
          f"backwards alone {check_b / curve_b:.1%}; {by_time:.1%} by time (median of {args.reps} repetitions)")
    print(f"{'PASS' if by_count <= 0.15 and by_time <= 0.15 else 'FAIL'}: target <= 15% on top of the curve")


def compare(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
            grid: list[float], device: torch.device) -> None:
    """ours vs torchattacks (and the optional variants of ours), interleaved."""
    def curve(**kwargs) -> list[float]:
        return ours(model, x, y, grid, args.batch_size, args.device, **kwargs).accuracy("pgd")

    sides = {"advkit (survivors)": curve,
             "torchattacks (every eps)": lambda: theirs(model, x, y, grid, args.batch_size, args.device)}
    if args.full:
        sides["advkit (every eps)"] = lambda: curve(survivors=False)
    if args.fresh:
        sides["advkit (survivors, fresh starts)"] = lambda: curve(warm_start=False)
    times: dict[str, list[float]] = {name: [] for name in sides}
    curves: dict[str, list[float]] = {}
    for rep in range(args.reps):
        for name, fn in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            curves[name] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)

    names = list(sides)
    ref = "torchattacks (every eps)"
    print(f"\nPGD-{STEPS} curve on {args.n} mnist5k test images, {len(grid)} eps, device {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.reps}\n")
    print("| eps | " + " | ".join(names) + " | ours <= theirs |")
    print("|---|" + "---|" * (len(names) + 1))
    for j, eps in enumerate(grid):
        ok = curves[names[0]][j] <= curves[ref][j]
        print(f"| {eps:g} | " + " | ".join(f"{curves[n][j]:.1%}" for n in names) + f" | {'yes' if ok else 'NO'} |")
    print("\n| side | median s | / torchattacks |")
    print("|---|---|---|")
    med = {n: statistics.median(t) for n, t in times.items()}
    for n in names:
        print(f"| {n} | {med[n]:.2f} | {med[n] / med[ref]:.3f} |")
    # each repetition's ours/theirs ratio is measured back to back: its median resists load drifting between reps
    share = statistics.median(a / b for a, b in zip(times[names[0]], times[ref], strict=True))
    strength = all(curves[names[0]][j] <= curves[ref][j] for j in range(len(grid)))
    verdict = "PASS" if share <= 1 / 3 and strength else "FAIL"
    print(f"\n{verdict}: median per-repetition time ratio {share:.3f} (target <= 0.333), "
          f"ours never above torchattacks: {strength}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(parser, n=500, batch_size=256)
    parser.add_argument("--grid", type=lambda t: [float(e) for e in t.split(",")], default=GRID,
                        help="comma-separated eps grid (default: %(default)s)")
    parser.add_argument("--full", action="store_true", help="also time advkit with survivors=False")
    parser.add_argument("--fresh", action="store_true", help="also time advkit with warm_start=False")
    parser.add_argument("--floor", action="store_true", help="instead: the curve's cost against its floor, two models")
    parser.add_argument("--checks", action="store_true", help="instead: what the default sanity checks add")
    parser.add_argument("--noisy-model", type=Path,
                        default=Path(tempfile.gettempdir()) / "advkit_bench_smallcnn_noise_mnist5k.pt",
                        help="where the second (--floor) model is cached")
    args = parser.parse_args()
    model, x, y, device = setup(args)
    grid = sorted(args.grid)
    if args.floor:
        run_floor(args, model, x, y, grid, device)
    elif args.checks:
        run_checks(args, model, x, y, grid)
    else:
        compare(args, model, x, y, grid, device)


if __name__ == "__main__":
    main()
