"""generate(): an attacked copy of a dataset, batch by batch, reproducible."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from advkit.attacks import PGD, generate, generate_batches
from advkit.models import SmallCNN
from advkit.rng import batch_seed


def tiny_model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(input_size=8, width=4, hidden=16).eval()


@pytest.fixture
def data():
    return torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(4)), torch.arange(20) % 10


def test_generates_a_dataset_in_order_inside_the_ball(data):
    x, y = data
    atk = PGD(tiny_model(), eps=0.1, steps=2)
    out = generate(atk, data, batch_size=8, progress=False)
    assert isinstance(out, TensorDataset)
    x_adv, y_out = out.tensors
    assert x_adv.shape == x.shape and torch.equal(y_out, y) and x_adv.device.type == "cpu"
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    first = atk.run(x[:8], y[:8], seed=batch_seed(atk.seed, 0)).x_adv
    assert torch.equal(x_adv[:8], first)


def test_same_result_from_pairs_datasets_and_loaders(data):
    atk = PGD(tiny_model(), eps=0.1, steps=2)
    results = [generate(atk, d, batch_size=8, progress=False).tensors[0]
               for d in (data, TensorDataset(*data), DataLoader(TensorDataset(*data), batch_size=3))]
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_batches_get_distinct_deterministic_seeds():
    seeds = [batch_seed(0, i) for i in range(100)] + [batch_seed(1, i) for i in range(100)]
    assert len(set(seeds)) == 200 and seeds[:3] == [batch_seed(0, i) for i in range(3)]


def test_accepts_a_torchattacks_attack(data):
    torchattacks = pytest.importorskip("torchattacks")
    out = generate(torchattacks.FGSM(tiny_model(), eps=0.1), data, batch_size=16, progress=False)
    assert len(out) == 20


@pytest.mark.parametrize("atk,batch_size,error,message", [
    ("pgd", 8, TypeError, "^atk must be an advkit Attack or a torchattacks attack, got str$"),
    (None, 0, ValueError, "^batch_size must be >= 1, got 0$")])
def test_bad_arguments(data, atk, batch_size, error, message):
    attack = atk if isinstance(atk, str) else PGD(tiny_model(), eps=0.1)
    with pytest.raises(error, match=message):
        generate(attack, data, batch_size=batch_size, progress=False)


def test_generate_batches_reads_one_batch_at_a_time_and_only_the_first_n(data):
    """generate_batches reads a batch when asked for it, never past ``n``; its batches are generate's."""
    x, y = data
    reads = []

    class Counted(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            reads.append(i)
            return x[i], int(y[i])

    atk = PGD(tiny_model(), eps=0.1, steps=2)
    stream = generate_batches(atk, Counted(), batch_size=8, progress=False, n=13)
    assert reads == []
    first = next(stream)
    assert reads == list(range(8)) and first[0].shape == (8, 1, 8, 8)
    rest = list(stream)
    assert reads == list(range(13)) and [len(b) for b, _ in rest] == [5]
    whole = generate(atk, (x, y), batch_size=8, progress=False, n=13).tensors[0]
    assert torch.equal(torch.cat([first[0], rest[0][0]]), whole)
