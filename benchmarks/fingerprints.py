"""SHA-256 fingerprints of what advkit computes: every attack's output, every training method's
weights, GAN and AdvGAN weights, and an evaluation's curves, on small fixed-seed problems.

A refactor that must not change behaviour compares two runs of this script (before and after):

    OMP_NUM_THREADS=1 python benchmarks/fingerprints.py > before.json
    OMP_NUM_THREADS=1 python benchmarks/fingerprints.py --compare before.json

Fingerprints depend on the CPU and the thread count, so compare runs on one machine only.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.data import TensorDataset

import advkit
from advkit.checkpoints import fingerprint
from advkit.gan.tasks import RING_RECIPE, paired, ring_of_gaussians


def weights(model: torch.nn.Module) -> str:
    return fingerprint(*model.state_dict().values())


def subset(data, n: int) -> TensorDataset:
    x, y = advkit.data.as_tensors(data)
    return TensorDataset(x[:n], y[:n])


def classifier(train, epochs: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    model = advkit.models.SmallCNN(width=8, hidden=32)
    advkit.train.fit(model, train, epochs=epochs, seed=0, device="cpu", progress=False)
    return model.eval()


def attack_prints(model, x, y) -> dict[str, str]:
    a = advkit.attacks
    cases = {
        "fgsm-linf": a.FGSM(model, eps=0.2),
        "fgsm-l2": a.FGSM(model, eps=1.5, norm="l2"),
        "pgd-linf": a.PGD(model, eps=0.2, steps=10),
        "pgd-l2-restarts": a.PGD(model, eps=1.5, norm="l2", steps=10, restarts=2),
        "pgd-targeted": a.PGD(model, eps=0.2, steps=10, targeted="random"),
        "mifgsm": a.MIFGSM(model, eps=0.2, steps=10),
        "cw": a.CW(model, steps=20),
        "apgd-linf": a.APGD(model, eps=0.2, steps=20),
        "apgd-l2-dlr": a.APGD(model, eps=1.5, norm="l2", steps=20, loss="dlr"),
        "apgd-t": a.APGDT(model, eps=0.2, steps=10),
        "fab-t": a.FAB(model, eps=0.2, steps=10),
        "square-linf": a.Square(model, eps=0.2, n_queries=100),
        "square-l2": a.Square(model, eps=1.5, norm="l2", n_queries=100),
        "autoattack": a.AutoAttack(model, eps=0.2, version="standard"),
    }
    prints = {}
    for name, attack in cases.items():
        torch.manual_seed(0)
        prints[f"attack/{name}"] = fingerprint(attack(x, y))
    return prints


def advgan_prints(model, train, x, y) -> dict[str, str]:
    prints = {}
    for norm, eps in (("linf", 0.2), ("l2", 1.5)):
        torch.manual_seed(0)
        atk = advkit.attacks.AdvGAN(model, eps=eps, norm=norm)
        atk.fit(subset(train, 256), steps=6, batch_size=64, progress=False)
        prints[f"advgan/{norm}/generator"] = weights(atk.generator)
        prints[f"advgan/{norm}/output"] = fingerprint(atk(x, y))
    return prints


def defense_prints(train, test) -> dict[str, str]:
    d, prints = advkit.defenses, {}
    small = subset(train, 1024)
    for method in ("pgd", "fgsm-rs", "trades"):
        torch.manual_seed(0)
        model = advkit.models.SmallCNN(width=8, hidden=32)
        d.adversarial_training(model, small, method=method, eps=0.2, epochs=1, seed=0, device="cpu",
                               progress=False)
        prints[f"defense/{method}"] = weights(model)
    model = classifier(small)
    d.finetune(model, small, eps=0.2, epochs=1, seed=0, progress=False, device="cpu")
    prints["defense/finetune"] = weights(model)
    torch.manual_seed(0)
    model = advkit.models.SmallCNN(width=8, hidden=32)
    d.augmented_training(model, small, epochs=1, seed=0, progress=False, device="cpu")
    prints["defense/augmented"] = weights(model)
    return prints


def gan_prints(train) -> dict[str, str]:
    gan, prints = advkit.gan, {}
    ring = ring_of_gaussians(512, seed=0)
    for loss in gan.GAN_LOSSES:
        torch.manual_seed(0)
        G, D = gan.MLPGenerator(), gan.MLPDiscriminator()
        recipe = {**RING_RECIPE, "loss": loss}
        trainer = gan.GANTrainer(G, D, seed=0, device="cpu", **recipe)
        trainer.fit(ring, steps=20, batch_size=64, progress=False)
        prints[f"gan/ring/{loss}"] = fingerprint(*G.state_dict().values(), *D.state_dict().values())
    torch.manual_seed(0)
    G, D = gan.Generator(latent_dim=16, num_classes=10, width=8), gan.Discriminator(num_classes=10, width=8)
    trainer = gan.GANTrainer(G, D, loss="hinge", conditional="class", seed=0, device="cpu")
    trainer.fit(subset(train, 256), steps=4, batch_size=32, progress=False)
    prints["gan/class"] = fingerprint(*G.state_dict().values(), trainer.sample(8))
    torch.manual_seed(0)
    pairs = paired(subset(train, 128), "edges")
    G, D = gan.Translator(width=8), gan.Discriminator(cond_channels=1, width=8)
    trainer = gan.GANTrainer(G, D, loss="lsgan", conditional="image", seed=0, device="cpu")
    trainer.fit(pairs, steps=3, batch_size=16, progress=False)
    prints["gan/pix2pix"] = fingerprint(*G.state_dict().values())
    return prints


def evaluation_prints(model, test) -> dict[str, str]:
    report = advkit.evaluate(model, subset(test, 64), eps=[0, 0.1, 0.2], seed=0, progress=False, device="cpu")
    checks = {c.name: c.passed for c in report.checks}
    return {"evaluate/curves": json.dumps(report.curve, sort_keys=True), "evaluate/checks": json.dumps(checks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", help="a previous run's JSON: print the differences, exit 1 on any")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    train, test = advkit.data.load("mnist5k")
    model = classifier(subset(train, 2000), epochs=3)
    x, y = advkit.data.as_tensors(test)
    x, y = x[:32], y[:32]
    prints = {"fit": weights(model)}
    prints |= attack_prints(model, x, y)
    prints |= advgan_prints(model, train, x, y)
    prints |= defense_prints(train, test)
    prints |= gan_prints(train)
    prints |= evaluation_prints(model, test)
    if not args.compare:
        print(json.dumps(prints, indent=1, sort_keys=True))
        return 0
    with open(args.compare) as handle:
        before = json.load(handle)
    changed = sorted(k for k in before.keys() | prints.keys() if before.get(k) != prints.get(k))
    for key in changed:
        print(f"CHANGED {key}")
    print(f"{len(prints) - len(changed)}/{len(prints)} fingerprints unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
