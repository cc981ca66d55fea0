"""The trainers leave the caller's global torch RNG exactly as it was (issue 18, item 6): train.fit,
adversarial_training, finetune, GANTrainer.fit (fresh, resumed, and AdvGAN's) draw dropout from their
own stream, seeded with their seed and kept in their checkpoints, so a caller's next ``torch.rand`` is
what it would have been, a run does not depend on the caller's RNG, and a resume stays bit-exact.

Every model here has dropout, so a run that drew from the caller's RNG would show it.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import AdvGAN
from advkit.core import Hook
from advkit.defenses import adversarial_training, finetune
from advkit.gan import GANTrainer, MLPGenerator
from advkit.rng import RunRNG


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = advkit.data.load("digits")[0].tensors
    return x[:128], y[:128]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))


def critic() -> nn.Module:
    """A 2-D discriminator with dropout."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(16, 1))


def gan_trainer() -> GANTrainer:
    torch.manual_seed(0)
    return GANTrainer(MLPGenerator(latent_dim=2, hidden=8, depth=1), critic(), device="cpu", seed=3)


POINTS = (torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(64, dtype=torch.long))


def caller_rng_untouched(work) -> None:
    """Run ``work()`` between two looks at the caller's RNG: its state and its next draw are unchanged."""
    torch.manual_seed(1234)
    torch.rand(5)  # somewhere in the caller's stream, not at a seed
    state = torch.get_rng_state()
    expected = torch.rand(3)
    torch.set_rng_state(state)
    work()
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)


def prepared(name: str, tmp):
    """The run ``name``, its models built (they seed torch's RNG themselves): a call that trains."""
    model, data = mlp(), digits()
    if name == "train.fit":
        return lambda: advkit.train.fit(model, data, epochs=2, batch_size=16, device="cpu", progress=False)
    if name.startswith("adversarial_training"):
        again = mlp()
        options = {"eps": 0.2, "epochs": 1, "batch_size": 32, "eval_size": 8, "device": "cpu", "progress": False}
        if name.endswith("resumed"):
            return lambda: [adversarial_training(m, data, method="fgsm-rs", checkpoint_dir=tmp, resume=r, **options)
                            for m, r in ((model, False), (again, True))]
        return lambda: adversarial_training(model, data, method="trades", steps=2, **options)
    if name == "finetune":
        return lambda: finetune(model, data, eps=0.2, attack="fgsm", epochs=1, batch_size=32, device="cpu",
                                progress=False, checkpoint_dir=tmp)
    if name == "AdvGAN.fit":
        atk = AdvGAN(model.eval(), eps=0.2, width=4, blocks=1)
        return lambda: atk.fit((data[0].view(-1, 1, 8, 8), data[1]), steps=2, batch_size=16, progress=False)
    first, second = gan_trainer(), gan_trainer()
    if name.endswith("resumed"):
        return lambda: [t.fit(POINTS, steps=steps, batch_size=16, checkpoint_dir=tmp, resume=steps > 2, progress=False)
                        for t, steps in ((first, 2), (second, 4))]
    return lambda: first.fit(POINTS, steps=3, batch_size=16, progress=False)


RUNS = ["train.fit", "adversarial_training", "adversarial_training resumed", "finetune", "GANTrainer.fit",
        "GANTrainer.fit resumed", "AdvGAN.fit"]


@pytest.mark.parametrize("name", RUNS)
def test_training_leaves_the_callers_global_rng_as_it_was(tmp_path, name):
    caller_rng_untouched(prepared(name, tmp_path))


def test_a_gan_run_draws_its_dropout_from_its_own_seeded_stream():
    runs = []
    for caller_seed in (0, 1):
        trainer = gan_trainer()
        torch.manual_seed(caller_seed)  # the caller's RNG differs between the two runs
        trainer.fit(POINTS, steps=3, batch_size=16, progress=False)
        runs.append([v.clone() for v in trainer.D.state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


class Interrupt(Hook):
    def round_end(self, r: int) -> None:
        if r + 1 == 3:
            raise KeyboardInterrupt


def test_a_gan_with_dropout_resumes_bit_exactly(tmp_path):
    straight = gan_trainer()
    straight.fit(POINTS, steps=5, batch_size=16, progress=False)
    with pytest.raises(KeyboardInterrupt):
        gan_trainer().fit(POINTS, steps=5, batch_size=16, checkpoint_dir=tmp_path, checkpoint_every=1,
                          progress=False, hooks=[Interrupt()])
    torch.manual_seed(99)  # another process: its own global RNG state
    resumed = gan_trainer()
    resumed.fit(POINTS, steps=5, batch_size=16, checkpoint_dir=tmp_path, resume=True, progress=False)
    for a, b in zip(straight.D.state_dict().values(), resumed.D.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history["d_loss"] == straight.history["d_loss"]


def test_run_rng_continues_its_stream_across_blocks_and_restores_after_an_error():
    rng, whole = RunRNG(7), RunRNG(7)
    with whole.active():
        expected = torch.rand(6)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    with rng.active():
        first = torch.rand(3)
    with pytest.raises(RuntimeError, match="boom"), rng.active():
        second = torch.rand(3)
        raise RuntimeError("boom")
    assert torch.equal(torch.cat([first, second]), expected)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(RunRNG(7).state_dict()["torch_rng"], torch.Generator().manual_seed(7).get_state())
    with pytest.raises(RuntimeError, match="inside its active"):
        rng.reseed(1)
