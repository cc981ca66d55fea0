"""advkit.data.Samples: tensors, Datasets and DataLoaders read by index, the limit taken before any read."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from advkit.data import Samples


class Counted(Dataset):
    """A lazily made dataset that records which items were read."""

    def __init__(self, n: int):
        self.n, self.read = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.read.append(i)
        return np.full((1, 2, 2), i / self.n, dtype=np.float32), i % 3


def test_a_dataset_is_read_only_where_asked_and_the_limit_comes_first():
    data = Counted(1000)
    samples = Samples(data, limit=10)
    assert len(samples) == 10 and data.read == []
    x, y = samples.read(torch.tensor([7, 2]))
    assert data.read == [7, 2]
    assert torch.equal(y, torch.tensor([1, 2])) and x.dtype == torch.float32 and x[0, 0, 0, 0] == pytest.approx(0.007)
    with pytest.raises(IndexError, match=r"sample index out of range \[0, 10\): \[10\]"):
        samples.read([10])


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_of_a_dataloader_equal_the_tensors_in_order_whatever_its_sampler(workers):
    x, y = torch.rand(23, 1, 2, 2), torch.randint(0, 10, (23,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, num_workers=workers)
    got = list(Samples(loader, limit=21).batches(5, start=3))
    assert [b for b, _, _ in got] == [3, 8, 13, 18]
    assert torch.equal(torch.cat([bx for _, bx, _ in got]), x[3:21])
    assert torch.equal(torch.cat([by for _, _, by in got]), y[3:21])


def test_tensors_and_numpy_pairs_are_read_without_a_copy_of_the_whole():
    x = np.random.default_rng(0).random((6, 1, 2, 2))
    samples = Samples((x, np.arange(6)))
    assert samples.in_memory and len(samples) == 6
    bx, by = samples.read([5])
    assert bx.dtype == torch.float32 and torch.allclose(bx, torch.as_tensor(x[5:], dtype=torch.float32))
    assert by.tolist() == [5]


def test_what_cannot_be_read_by_index_is_refused_with_what_to_do():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(1, 2, 2), 0

    with pytest.raises(TypeError, match="an IterableDataset cannot be read by index; wrap its samples in a map-style"):
        Samples(DataLoader(Stream()))
    with pytest.raises(ValueError, match="data images and labels differ in number: 3 images, 2 labels"):
        Samples((torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match="limit"):
        Samples(Counted(3), limit=0)


def test_a_large_batch_read_from_a_dataset_hands_the_freed_memory_back(monkeypatch):
    """The items of a batch of 16 MiB or more are freed once stacked: the read releases them (glibc's
    malloc_trim where it exists), which a small batch, or tensors already in memory, never asks for."""
    import advkit.data.samples as samples_module

    calls = []
    monkeypatch.setattr(samples_module, "release_freed_memory", lambda: calls.append(1))

    class Large(Dataset):
        def __len__(self) -> int:
            return 30

        def __getitem__(self, i: int):
            return torch.zeros(3, 224, 224), 0  # 602,112 bytes: 28 make 16 MiB

    samples = Samples(Large())
    samples.read(torch.arange(27))
    assert calls == []
    samples.read(torch.arange(28))
    assert calls == [1]
    Samples((torch.zeros(30, 3, 224, 224), torch.zeros(30, dtype=torch.long))).read(torch.arange(30))
    assert calls == [1]
