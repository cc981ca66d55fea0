"""``evaluate`` streams: a Dataset, a DataLoader and tensors give the same report, the data is read a
batch at a time (each sample a bounded number of times, only the first ``n``), and a data batch's
results never depend on the other batches."""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import advkit
from advkit.attacks import Square
from advkit.evaluation.evaluate import evaluate_model
from advkit.evaluation.options import EvaluationOptions


class Counted(Dataset):
    """A Dataset that makes each image from its index on read (nothing held) and counts the reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, extra: int = 0):
        self.x, self.y, self.extra = x, y, extra  # ``extra`` items past n that must never be read
        self.reads: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.x) + self.extra

    def __getitem__(self, i: int):
        self.reads[i] += 1
        return self.x[i].clone(), int(self.y[i])


def digits_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = advkit.data.load("digits")[1].tensors
    return x[:n], y[:n]


#: A per-sample attack, a per-batch one (Square: one window draw per call), checks, examples and a
#: corruption: every part of the path that reads data.
OPTIONS = dict(attacks={"fgsm": "fgsm", "square": lambda m: Square(m, 0.1, n_queries=20)}, eps=[0.0, 0.05, 0.1],
               batch_size=16, probe=12, queries=20, examples=3, corruptions=["gaussian-noise"], progress=False,
               device="cpu")


def report(data, **kw) -> dict:
    return advkit.evaluate(digits_model(), data, **{**OPTIONS, **kw}).to_dict(timings=False)


def test_a_dataset_a_loader_and_tensors_give_the_same_report():
    x, y = digits(45)
    expected = report((x, y))
    assert report(TensorDataset(x, y)) == expected
    assert report(Counted(x, y, extra=7), n=45) == expected
    assert report(DataLoader(Counted(x, y), batch_size=5, shuffle=True, num_workers=0)) == expected


def test_each_sample_is_read_a_bounded_number_of_times_and_only_the_first_n():
    """The clean pass and the attack pass read each sample once each; the checks and the example grid
    read only the few they attack or show, never the whole set."""
    x, y = digits(45)
    data = Counted(x, y, extra=20)
    advkit.evaluate(digits_model(), data, n=45, **OPTIONS)
    assert set(data.reads) == set(range(45))  # the 20 samples past n never read
    twice = sum(count == 2 for count in data.reads.values())
    assert twice >= 45 - OPTIONS["probe"] - OPTIONS["examples"] - 3  # the others: the probe, shown, fingerprint
    assert max(data.reads.values()) <= 12, data.reads.most_common(3)


def test_a_data_batch_gives_the_same_results_alone():
    """Batch 1 of 16 evaluated alone (the data starting at sample 16) is rows 16..31 of the whole run,
    for a per-batch attack too: nothing crosses data batches but the indices that seed the samples."""
    x, y = digits(45)
    options = EvaluationOptions(attacks=OPTIONS["attacks"], eps=[0.0, 0.05, 0.1], batch_size=16, checks=False,
                                examples=0, progress=False, device="cpu")
    whole = evaluate_model("m", digits_model(), advkit.data.Samples((x, y)), options)
    alone = evaluate_model("m", digits_model(), advkit.data.Samples((x, y), limit=32), options)
    for name in ("fgsm", "square"):
        assert torch.equal(whole.robust(name)[16:32], alone.robust(name)[16:32])
