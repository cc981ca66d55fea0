"""Streamed training (issue 21, item 1): plain training, adversarial training, fine-tuning, augmented
training, the GAN trainer and AdvGAN take a Dataset or a DataLoader and read it a batch at a time through
:class:`advkit.data.Samples`: each step reads exactly the samples of its batch, nothing is read ahead of
need (but the first sample, checked against the model), and the numbers equal those of the same data as
tensors, bit for bit, a resumed streamed run included.

Every run is tiny (an MLP on 8x8 digits, an MLP GAN on 2-D points, AdvGAN on 8x8 noise images).
"""
from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import advkit
from advkit.attacks import AdvGAN
from advkit.batches import BatchOrder, ShardedOrder, batch_stream
from advkit.checkpoints import CheckpointFolder, fingerprint, run_identity, sample_fingerprint
from advkit.core import Hook
from advkit.data import Samples
from advkit.defenses import adversarial_training, augmented_training, finetune
from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator


class Counted(Dataset):
    """``(x[i], y[i])`` items that record every index read, and the step (``self.step``) it was read at."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x, self.y, self.reads, self.step = x, y, [], -1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.reads.append((self.step, i))
        return self.x[i], int(self.y[i])

    def per_step(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for step, _ in self.reads:
            counts[step] = counts.get(step, 0) + 1
        return counts


class Steps(Hook):
    """Tells a :class:`Counted` dataset which training step reads it."""

    def __init__(self, data: Counted):
        self.data = data

    def round_start(self, r: int) -> None:
        self.data.step = r


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor]:
    x, y = advkit.data.load("digits")[0].tensors
    return x[:256], y[:256]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def records(history) -> list[dict]:
    """The history's records without their times, NaN (epoch 0's loss) as None so that records compare."""
    return [{k: None if v != v else v for k, v in {**vars(r), "seconds": 0}.items()} for r in history]


def test_fit_reads_each_batch_at_its_step_and_equals_the_tensor_run(digits):
    x, y = digits
    settings = {"epochs": 2, "batch_size": 32, "device": "cpu", "progress": False, "seed": 3}
    model = mlp()
    losses = advkit.train.fit(model, (x, y), **settings)
    data = Counted(x, y)
    streamed = mlp()
    assert advkit.train.fit(streamed, data, hooks=[Steps(data)], **settings) == losses
    assert same_weights(model, streamed)
    # the first sample before training (the model's number of logits), then exactly one batch a step
    assert data.per_step() == {-1: 1, **{step: 32 for step in range(16)}}
    loader = DataLoader(Counted(x, y), batch_size=7, shuffle=True, num_workers=1)  # read ahead by a worker
    ahead = mlp()
    assert advkit.train.fit(ahead, loader, **settings) == losses and same_weights(model, ahead)


def test_the_order_holds_the_batches_consumed_not_those_read_ahead(digits):
    x, y = digits
    loader = DataLoader(Counted(x, y), num_workers=1, prefetch_factor=4)
    order = BatchOrder(seed=0)
    stream = batch_stream(Samples(loader), 16, order, torch.device("cpu"))
    seen = [next(stream) for _ in range(3)]
    assert order.state_dict() == {"drawn": 3}  # three consumed, whatever the worker has read ahead
    restored = BatchOrder(seed=0)
    restored.load_state_dict({"drawn": 2})
    again = next(batch_stream(Samples((x, y)), 16, restored, torch.device("cpu")))
    assert all(torch.equal(a, b) for a, b in zip(seen[2], again, strict=True))
    order.load_state_dict({"drawn": 1})  # moving the order moves the stream: what was read ahead is dropped
    assert all(torch.equal(a, b) for a, b in zip(next(stream), seen[1], strict=True))


def test_a_rank_reads_only_its_share_of_each_global_batch(digits):
    """Under torchrun each rank walks the same global order and reads its contiguous share of every batch
    (here rank 1 of 3, batches of 16 split 6 + 5 + 5): never the other ranks' samples."""
    x, y = digits
    data = Counted(x, y)
    order = BatchOrder(seed=0)
    stream = batch_stream(Samples(data), 16, ShardedOrder(order, 1, 3), torch.device("cpu"))
    shares = [next(stream)[2] for _ in range(20)]  # past an epoch's end (16 batches of 256)
    walk = BatchOrder(seed=0)
    globals_ = [walk.next_batch(256, 16).tolist() for _ in range(20)]
    assert [s.tolist() for s in shares] == [b[6:11] for b in globals_]
    assert [i for _, i in data.reads] == sum((b[6:11] for b in globals_), [])


def test_adversarial_training_streams_its_data_and_eval_data_and_resumes_exactly(digits, tmp_path):
    x, y = digits
    settings = {"eps": 0.2, "epochs": 2, "lr": 1e-2, "batch_size": 64, "steps": 3, "eval_size": 16,
                "progress": False, "device": "cpu", "seed": 1}
    model, history = adversarial_training(mlp(), (x, y), eval_data=(x[:48], y[:48]), **settings)
    data, held = Counted(x, y), Counted(x[:48], y[:48])
    streamed, streamed_history = adversarial_training(mlp(), data, eval_data=held, checkpoint_dir=tmp_path / "a",
                                                      **settings)
    assert same_weights(model, streamed) and records(history) == records(streamed_history)
    # the first sample, the fingerprint's 64, then 4 batches of 64 an epoch
    assert len(data.reads) == 1 + 64 + 2 * 4 * 64
    assert len(held.reads) == 1 + 48 + 2 * (48 + 16)  # first sample, fingerprint, per epoch: clean + PGD batches
    resumed_data = Counted(x, y)
    advkit_run = adversarial_training(mlp(seed=5), resumed_data, eval_data=held, checkpoint_dir=tmp_path / "a",
                                      resume=True, **{**settings, "epochs": 2})
    assert same_weights(model, advkit_run[0]) and len(resumed_data.reads) == 1 + 64  # finished: nothing trained
    with pytest.raises(ValueError, match="cannot resume .*: data differ"):
        adversarial_training(mlp(), Counted(x.flip(0), y.flip(0)), eval_data=held, checkpoint_dir=tmp_path / "a",
                             resume=True, **settings)


def test_an_interrupted_streamed_run_resumes_to_the_same_weights(digits, tmp_path):
    x, y = digits
    settings = {"eps": 0.2, "lr": 1e-2, "batch_size": 64, "eval_size": 8, "progress": False, "device": "cpu",
                "seed": 2, "method": "fgsm-rs"}
    reference, history = adversarial_training(mlp(), (x, y), epochs=3, **settings)
    adversarial_training(mlp(), Counted(x, y), epochs=3, checkpoint_dir=tmp_path, **settings)
    for path in sorted(tmp_path.glob("advtrain-*.pt"))[1:]:  # keep the checkpoint of epoch 1 only
        path.unlink()
    resumed, resumed_history = adversarial_training(mlp(seed=9), Counted(x, y), epochs=3, checkpoint_dir=tmp_path,
                                                    resume=True, **settings)
    assert same_weights(reference, resumed) and records(history) == records(resumed_history)


def test_finetune_and_augmented_training_stream_their_data(digits):
    x, y = digits
    tuned, history = finetune(mlp(), (x, y), eps=0.1, epochs=1, batch_size=64, eval_data=(x[:32], y[:32]),
                              progress=False, device="cpu")
    streamed, streamed_history = finetune(mlp(), Counted(x, y), eps=0.1, epochs=1, batch_size=64,
                                          eval_data=Counted(x[:32], y[:32]), progress=False, device="cpu")
    assert same_weights(tuned, streamed) and records(history) == records(streamed_history)
    images = x.view(-1, 1, 8, 8)
    settings = {"corruptions": ["gaussian-noise"], "epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"}
    model, history = augmented_training(mlp(), (images, y), eval_data=(images[:40], y[:40]), **settings)
    data, held = Counted(images, y), Counted(images[:40], y[:40])
    streamed, streamed_history = augmented_training(mlp(), data, eval_data=held, **settings)
    assert same_weights(model, streamed) and records(history) == records(streamed_history)
    assert len(data.reads) == 1 + 4 * 64 and len(held.reads) == 2 * 40  # clean and corrupted, a batch at a time


def points(n: int = 48) -> tuple[Tensor, Tensor]:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(n, dtype=torch.long)


def gan(data, steps: int, folder=None, resume: bool = False) -> GANTrainer:
    torch.manual_seed(0)
    trainer = GANTrainer(MLPGenerator(latent_dim=2, hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1),
                         loss="wgan-gp", n_critic=2, device="cpu")
    trainer.fit(data, steps=steps, batch_size=16, checkpoint_dir=folder, checkpoint_every=3, resume=resume,
                progress=False)
    return trainer


def test_the_gan_trainer_streams_and_resumes_exactly(tmp_path):
    straight = gan(points(), 6)
    data = Counted(*points())
    streamed = gan(data, 3, tmp_path)
    assert len(data.reads) == 48 + 2 + 3 * 2 * 16  # the fingerprint's items, the first two, 2 D batches a step
    resumed = gan(Counted(*points()), 6, tmp_path, resume=True)
    assert streamed.history["d_loss"] == straight.history["d_loss"][:3]
    assert resumed.history == straight.history and same_weights(resumed.G, straight.G)


def test_advgan_fits_on_a_stream_as_on_tensors():
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(32, dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    histories = []
    for data in ((x, y), Counted(x, y)):
        atk = AdvGAN(model, 0.1, width=4, blocks=1)
        histories.append(atk.fit(data, steps=3, batch_size=16, progress=False))
    assert histories[0] == histories[1]
    assert len(data.reads) == 1 + 2 + 3 * 16  # its first image, the trainer's first two, one batch a step


def test_the_data_fingerprint_reads_a_fixed_sample_and_tells_data_apart():
    x, y = torch.rand(1000, 3), torch.arange(1000) % 10
    data = Counted(x, y)
    print_ = sample_fingerprint(Samples(data))
    assert len(data.reads) == 64 and print_ == sample_fingerprint(Samples((x, y)))
    assert sample_fingerprint(Samples((x[:999], y[:999]))) != print_  # another size
    small = Samples((x[:50], y[:50]))  # fewer than 64 samples: every one is read, a change anywhere tells
    changed = x[:50].clone()
    changed[17, 1] += 1e-3
    assert sample_fingerprint(Samples((changed, y[:50]))) != sample_fingerprint(small)


def test_a_version_1_checkpoint_resumes_without_comparing_its_data(tmp_path, caplog):
    """Version 1 hashed every byte of the data: its fingerprints cannot be compared with sampled ones."""
    x, y = torch.rand(10, 3), torch.zeros(10, dtype=torch.long)
    now = run_identity({"lr": 0.1}, {"data": Samples((x, y))}, {})
    old = {**now, "version": 1, "data": {"data": fingerprint(x, y)}}
    CheckpointFolder(tmp_path, "run", identity=old).save({"step": 1}, "ab12", 1)
    with caplog.at_level(logging.WARNING, logger="advkit.checkpoints"):
        CheckpointFolder(tmp_path, "run", identity=now).resume()
    assert "fingerprints of version 1 (now 2), which cannot be compared" in caplog.text
    with pytest.raises(ValueError, match=r"other settings \(lr=0.1, now 0.2\)"):  # its settings still are
        CheckpointFolder(tmp_path, "run", identity={**now, "settings": {"lr": 0.2}}).resume()
