"""The GPU path measured in one run: attack throughput, an evaluation curve, an adversarial-training epoch.

Run (about five minutes on one H100; on a machine without CUDA the same script runs on the CPU,
with a SmallCNN on MNIST-shaped input and smaller sizes, in about as long on 2 cores):

    python benchmarks/gpu.py                  # --device cpu forces the CPU, --quick shrinks every part

1. PGD-10 images/s, PreAct-ResNet-18 on CIFAR-shaped input (3x32x32) at batch 512: advkit's PGD
   (``early_stop=False``: the same work as the others), torchattacks' PGD and the floor (10 x
   forward + backward to the input, nothing else), in float32 and under bf16 autocast (ours with
   its ``amp`` flag, the others inside ``torch.autocast``), eager and ``torch.compile`` d; random
   weights and inputs (throughput does not depend on them). Repetitions are interleaved (ours,
   theirs, floor, ...); cells are medians. Goals: ours >= 1.5x torchattacks' images/s with bf16 or
   compile, and ours <= 1.1x the floor's time in float32.
2. ``advkit.evaluate`` on mnist5k (a PreAct-ResNet-18 trained here for 2 epochs): FGSM and PGD-40
   on a 7-point grid, its batch size chosen by evaluate (CUDA), float32 and ``amp=True``.
3. One epoch of ``advkit.defenses.adversarial_training`` (PGD, eps 0.3) on mnist5k, float32 and amp.
4. A CIFAR-10-size WideResNet-28-10 (RobustBench's architecture, ``pip install 'advkit[robustbench]'``;
   random weights, labels its own predictions so that every image is attacked): part 1's PGD-10 table
   at batch 256; ``advkit.evaluate`` (PGD-10, eps 0 and 8/255, no checks) with its automatic batch size
   (the batch it chose and images/s); and ``"autoattack"`` against the official AutoAttack
   (``pyautoattack``, standard version, L-inf 8/255) on the same model and images: time and robust
   count of each, alternated, medians. Goal: ours <= 0.5x the official time.
5. An ImageNet-size ResNet-50 (torchvision's architecture through ``advkit.models.load``, with its
   normalisation; random weights): part 1's table at batch 128 on 3x224x224, and ``advkit.evaluate``
   (PGD-10, eps 0 and 4/255) with its automatic batch size on a lazily generated Dataset (each
   224x224 image drawn from its index's seed when read; labels the model's predictions), with the
   peak GPU memory and the process's peak resident memory.
On the CPU parts 4 and 5 run at smoke-test size (a WideResNet-10-1, a ResNet-18 on 64x64 images,
a few images): they check that the code runs; their figures say nothing of a GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import advkit
from advkit.attacks import PGD
from advkit.defenses import adversarial_training
from advkit.models import PreActResNet18, SmallCNN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import floor, timed  # noqa: E402  (the attack benchmark's floor and timer)

GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
STEPS = 10


def sizes(device: torch.device, quick: bool) -> dict:
    """What each part runs: CIFAR-shaped PreAct-ResNet-18 on CUDA, MNIST-shaped SmallCNN on the CPU; parts
    4 and 5 at full size on CUDA, at smoke-test size on the CPU."""
    if device.type == "cuda":
        return dict(arch="preact-resnet-18", shape=(3, 32, 32), batch=512, batches=2 if quick else 4,
                    reps=2 if quick else 3, eval_n=500 if quick else 1000, train_n=1000 if quick else 4000,
                    wrn=(28, 10), wrn_batch=256, wrn_eval_n=1000 if quick else 5000, aa_n=200 if quick else 500,
                    imagenet=("resnet50", 224), imagenet_batch=128, imagenet_n=1000 if quick else 5000)
    return dict(arch="smallcnn", shape=(1, 28, 28), batch=128, batches=1 if quick else 2, reps=2 if quick else 3,
                eval_n=100 if quick else 300, train_n=256 if quick else 1000,
                wrn=(10, 1), wrn_batch=8, wrn_eval_n=16, aa_n=8, imagenet=("resnet18", 64), imagenet_batch=4,
                imagenet_n=16)


def new_model(device: torch.device, in_channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = PreActResNet18(in_channels=in_channels) if device.type == "cuda" else SmallCNN(in_channels=in_channels)
    return model.to(device)


def throughput(device: torch.device, size: dict, model: torch.nn.Module | None = None, part: int = 1) -> None:
    """Part 1 (and the tables of parts 4 and 5, which pass their model and sizes): PGD-10 images/s of ours,
    torchattacks' and the floor, per (autocast, compile)."""
    import torchattacks

    model = (new_model(device, size["shape"][0]) if model is None else model).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(size["batch"], *size["shape"], generator=g).to(device),
                torch.randint(0, 10, (size["batch"],), generator=g).to(device)) for _ in range(size["batches"])]
    n = size["batch"] * size["batches"]
    eps = 8 / 255
    print(f"\n{part}. PGD-{STEPS}, {size['arch']} on {tuple(size['shape'])} inputs, batch {size['batch']}, {n} images "
          f"per repetition, {size['reps']} interleaved repetitions (medians)")
    head = f"{'autocast':<10}{'compile':<9}{'ours img/s':>11}{'theirs img/s':>13}{'floor img/s':>12}" \
           f"{'ours/theirs':>12}{'ours/floor':>11}"
    print(head + "\n" + "-" * len(head))
    for compiled in (False, True):
        net = model
        if compiled:
            try:
                net = torch.compile(model)
                timed(floor(net, 1), batches[:1], False)  # compile outside the timings
            except Exception as err:  # noqa: BLE001 - a machine without a working compiler: say so, go on
                print(f"{'-':<10}{'on':<9}torch.compile unavailable here: {type(err).__name__}: {err}"[:200])
                continue
        for amp in (False, True) if device.type == "cuda" else (False,):
            columns: dict[str, tuple[Callable, bool]] = {
                "ours": (PGD(net, eps, steps=STEPS, alpha=2.5 * eps / STEPS, early_stop=False, amp=amp), False),
                "theirs": (torchattacks.PGD(net, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS), amp),
                "floor": (floor(net, STEPS), amp)}
            for fn, autocast in columns.values():  # warm-up (and any recompilation) outside the timings
                timed(fn, batches[:1], autocast)
            times: dict[str, list[float]] = {k: [] for k in columns}
            for _ in range(size["reps"]):
                for key, (fn, autocast) in columns.items():
                    times[key].append(timed(fn, batches, autocast)[0])
            t = {k: statistics.median(v) for k, v in times.items()}
            print(f"{'bf16' if amp else 'off':<10}{'on' if compiled else 'off':<9}{n / t['ours']:>11.0f}"
                  f"{n / t['theirs']:>13.0f}{n / t['floor']:>12.0f}{t['theirs'] / t['ours']:>11.2f}x"
                  f"{t['ours'] / t['floor']:>11.2f}")
    print("ours/theirs: speed-up over torchattacks (goal >= 1.5x with bf16 or compile); "
          "ours/floor: time over the floor (goal <= 1.1 in float32)")


def trained_model(device: torch.device, train) -> torch.nn.Module:
    """The mnist5k classifier parts 2 and 3 use: a PreAct-ResNet-18 on CUDA, a SmallCNN on the CPU (2 epochs)."""
    model = new_model(device, 1)
    advkit.train.fit(model, train, epochs=2, seed=0, device=device, progress=False)
    return model.eval()


def curve(device: torch.device, size: dict, model: torch.nn.Module, test) -> None:
    """Part 2: an accuracy-versus-eps curve by ``advkit.evaluate``, float32 and amp."""
    x, y = test.tensors
    print(f"\n2. advkit.evaluate, {size['arch']} trained 2 epochs on mnist5k, FGSM + PGD-40, "
          f"{size['eval_n']} test images, eps {GRID}")
    for amp in (False, True) if device.type == "cuda" else (False,):
        start = time.perf_counter()
        rep = advkit.evaluate(model, (x[:size["eval_n"]], y[:size["eval_n"]]), attacks=["fgsm", "pgd-40"], eps=GRID,
                              device=device, progress=False, amp=amp)
        seconds = time.perf_counter() - start
        worst = " ".join(f"{100 * a:.1f}" for _, a in rep.curve["worst"])
        spent = next(iter(rep.results.values())).seconds
        print(f"  {'bf16' if amp else 'fp32'}: {seconds:.1f} s (of which checks {spent.get('checks', 0):.1f} s), "
              f"batch size {rep.config['batch_size']}, worst-case accuracy % {worst}, checks "
              f"{'passed' if all(c.passed for c in rep.checks) else 'FAILED'}")


def training_epoch(device: torch.device, size: dict, train) -> None:
    """Part 3: one epoch of PGD adversarial training (eps 0.3), float32 and amp."""
    x, y = train.tensors
    data = (x[:size["train_n"]], y[:size["train_n"]])
    print(f"\n3. one epoch of adversarial_training(method='pgd', eps=0.3), {size['arch']}, "
          f"{size['train_n']} mnist5k images, batch 128")
    for amp in (False, True) if device.type == "cuda" else (False,):
        model = new_model(device, 1)
        start = time.perf_counter()
        _, history = adversarial_training(model, data, method="pgd", epochs=1, device=device, progress=False,
                                          amp=amp)
        seconds = time.perf_counter() - start
        last = history.records[-1]
        print(f"  {'bf16' if amp else 'fp32'}: {seconds:.1f} s ({size['train_n'] / seconds:.0f} images/s with the "
              f"per-epoch evaluation), clean {100 * last.clean_accuracy:.1f}%, "
              f"PGD-10 {100 * last.robust_accuracy:.1f}%")


def wide_resnet(device: torch.device, size: dict) -> None:
    """Part 4: WideResNet-28-10 on CIFAR-10-size input: the PGD-10 table, evaluate's automatic batch size,
    ``"autoattack"`` against the official AutoAttack."""
    advkit.models.require_robustbench("part 4 (RobustBench's WideResNet)")
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    depth, width = size["wrn"]
    torch.manual_seed(0)
    model = WideResNet(depth=depth, widen_factor=width).to(device).eval()
    arch = f"WideResNet-{depth}-{width} (random weights)"
    throughput(device, {**size, "arch": arch, "shape": (3, 32, 32), "batch": size["wrn_batch"]}, model, part=4)
    x = torch.rand(size["wrn_eval_n"], 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labelled = (x, predictions(model, x, device, size["wrn_batch"]))
    automatic_batch(model, labelled, [0.0, 8 / 255], device, f"{arch}, {len(x)} 32x32 images (tensors)")
    versus_official(model, *(t[:size["aa_n"]] for t in labelled), 8 / 255, device, size)


class LazyImages(torch.utils.data.Dataset):
    """``n`` random RGB images of ``side`` x ``side``, each drawn from its index's seed when read (nothing
    is held), labelled by ``labels`` (the model's predictions, computed once by :func:`predictions`).

    Args:
        n: images.
        side: their height and width.
        labels: one label per image, or None (0 for every image, to compute the predictions).
    """

    def __init__(self, n: int, side: int, labels: torch.Tensor | None = None):
        self.n, self.side, self.labels = n, side, labels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.rand(3, self.side, self.side, generator=torch.Generator().manual_seed(i))
        return image, int(self.labels[i]) if self.labels is not None else 0


def predictions(model: torch.nn.Module, data, device: torch.device, batch: int) -> torch.Tensor:
    """The model's predicted class of every image of ``data`` (a tensor or a Dataset), read in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            rows = range(start, min(start + batch, len(data)))
            x = data[start:rows.stop] if torch.is_tensor(data) else torch.stack([data[i][0] for i in rows])
            out.append(model(x.to(device)).argmax(1).cpu())
    return torch.cat(out)


def automatic_batch(model: torch.nn.Module, data, eps: list[float], device: torch.device, what: str) -> None:
    """``advkit.evaluate`` with PGD-10 and its automatic batch size (``batch_size=None``): the batch it chose,
    images/s, the worst-case accuracies, the peak GPU memory and the process's peak resident memory."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    rep = advkit.evaluate(model, data, attacks=["pgd-10"], eps=eps, device=device, progress=False, checks=False)
    seconds = time.perf_counter() - start
    n = len(data[0]) if isinstance(data, tuple) else len(data)
    cuda = device.type == "cuda"
    gpu = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if cuda else ""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux
    worst = " ".join(f"{100 * a:.1f}" for _, a in rep.curve["worst"])
    print(f"  evaluate, {what}, PGD-10 at eps {', '.join(f'{e:.4g}' for e in eps)}: batch size "
          f"{rep.config['batch_size']} (automatic), {seconds:.1f} s, {n / seconds:.0f} images/s; worst-case "
          f"accuracy % {worst}{gpu}, peak resident memory {rss:.1f} GiB")


def versus_official(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, device: torch.device,
                    size: dict) -> None:
    """``"autoattack"`` against the official AutoAttack on the same model and images (benchmarks/autoattack.py's
    runners), alternated ``reps`` times; medians of wall time (CUDA synchronised) and robust counts."""
    runners = _benchmark("autoattack")  # loaded by path: the name autoattack is the official package's here
    x, y = x.to(device), y.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    runs: dict[str, list[tuple[int, float]]] = {"advkit": [], "official": []}
    for _ in range(size["reps"]):
        for name, run in (("advkit", lambda: runners.ours(model, x, y, eps)),
                          ("official", lambda: runners.official(model, x, y, eps, size["wrn_batch"]))):
            sync()
            start = time.perf_counter()
            robust = run()
            sync()
            runs[name].append((int(robust.sum()), time.perf_counter() - start))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(t for _, t in v)) for k, v in runs.items()}
    print(f"  AutoAttack standard, L-inf eps {eps:.4g}, {len(x)} images labelled by the model, medians of "
          f"{size['reps']}: advkit {med['advkit'][1]:.1f} s (robust {med['advkit'][0]:.0f}), official "
          f"{med['official'][1]:.1f} s (robust {med['official'][0]:.0f}): {med['advkit'][1] / med['official'][1]:.2f}x "
          "its time (goal <= 0.5)")


def _benchmark(name: str):
    """The module benchmarks/NAME.py, loaded under another name (``bench_NAME``)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imagenet_resnet(device: torch.device, size: dict) -> None:
    """Part 5: an ImageNet-size ResNet-50 with its normalisation: the PGD-10 table, and evaluate on a lazily
    generated Dataset with the automatic batch size."""
    arch, side = size["imagenet"]
    torch.manual_seed(0)
    model = advkit.models.load(f"torchvision:{arch}").to(device)
    label = f"{arch} (torchvision, random weights, ImageNet normalisation)"
    throughput(device, {**size, "arch": label, "shape": (3, side, side), "batch": size["imagenet_batch"]}, model,
               part=5)
    unlabelled = LazyImages(size["imagenet_n"], side)
    data = LazyImages(size["imagenet_n"], side, predictions(model, unlabelled, device, size["imagenet_batch"]))
    automatic_batch(model, data, [0.0, 4 / 255], device, f"{arch}, {len(data)} {side}x{side} images (a lazy Dataset)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: CUDA when available)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--parts", default="1,2,3,4,5", help="which parts to run (default: %(default)s)")
    args = parser.parse_args()
    device = advkit.devices.default_device(args.device)
    size = sizes(device, args.quick)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"advkit benchmarks/gpu.py on {name}; torch {torch.__version__}")
    parts = {int(p) for p in args.parts.split(",")}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if 1 in parts:
        throughput(device, size)
    if parts & {2, 3}:
        train, test = advkit.data.load("mnist5k")
        if 2 in parts:
            curve(device, size, trained_model(device, train), test)
        if 3 in parts:
            training_epoch(device, size, train)
    if 4 in parts:
        wide_resnet(device, size)
    if 5 in parts:
        imagenet_resnet(device, size)


if __name__ == "__main__":
    main()
