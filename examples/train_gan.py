"""Train a class-conditional GAN on the embedded MNIST-5k and save a sample grid (row i = digit i).

    python examples/train_gan.py --steps 3000 --out out/example_gan
Interrupt it and run it again with --resume to continue bit-exactly from the last checkpoint. A new
run refuses a folder that holds another run's checkpoints: pick another --out, or delete them.
"""
import argparse
from pathlib import Path

import torch

import advkit
from advkit.gan import GANTrainer, dcgan
from advkit.gan.report import save_grid

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--out", default="out/example_gan")
args = parser.parse_args()

train, test = advkit.data.load("mnist5k")
torch.manual_seed(0)
G, D = dcgan(channels=1, size=28, num_classes=10, width=32)      # DCGAN + projection discriminator
trainer = GANTrainer(G, D, loss="hinge", conditional="class", seed=0)
trainer.fit(train, steps=args.steps, checkpoint_dir=Path(args.out) / "checkpoints", resume=args.resume)
grid = save_grid(trainer.sample(labels=torch.arange(10).repeat_interleave(10)), Path(args.out) / "samples.png")
print(f"samples: {grid}; last losses D {trainer.history['d_loss'][-1]:.3f}, G {trainer.history['g_loss'][-1]:.3f}")
