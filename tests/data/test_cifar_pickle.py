"""CIFAR-10's python batches are read without running code: crafted files are refused, real ones load."""
import builtins
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
import torch

import advkit
from advkit.app.cli import main
from advkit.models import SmallCNN
from advkit.safe_pickle import load as safe_load

NAMES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes (SHORT_BINSTRING / BINSTRING), as the official batches
    were pickled by Python 2's cPickle with protocol 2: read with latin-1 they come back as ``str``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def batch(n: int, seed: int) -> dict:
    """A batch in the official layout: bytes keys, uint8 (n, 3072) data, a list of int labels."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_batches(folder, dump) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate(NAMES):
        written[name] = batch(3 if name != "test_batch" else 4, i)
        with open(folder / name, "wb") as f:
            dump(written[name], f)
    return written


DUMPS = {
    "python2 cPickle (the official files)": lambda obj, f: Py2Pickler(f, protocol=2).dump(obj),
    "protocol 2": lambda obj, f: pickle.dump(obj, f, protocol=2),
    "latest protocol": lambda obj, f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL),
}


@pytest.mark.parametrize("how", list(DUMPS))
def test_real_format_batches_load_exactly(tmp_path, how):
    written = write_batches(tmp_path / "cifar-10-batches-py", DUMPS[how])
    train, test = advkit.data.load("cifar10", root=tmp_path)
    x, y = test.tensors
    expected = written["test_batch"]
    assert torch.equal(x, torch.as_tensor(expected[b"data"].reshape(-1, 3, 32, 32) / 255.0, dtype=torch.float32))
    assert y.tolist() == expected[b"labels"]
    assert train.tensors[1].tolist() == sum((written[n][b"labels"] for n in NAMES[:5]), [])


class Shell:
    """Runs a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


class Popen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


class ObjectArray:
    """A numpy array of Python objects (here: one that runs code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return np.array, ([Shell(self.marker)], object)


@pytest.fixture(params=[Shell, Exec, Popen])
def crafted_root(request, tmp_path):
    """A root whose test_batch runs code writing ``marker`` when unpickled by plain pickle."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "root" / "cifar-10-batches-py"
    write_batches(folder, DUMPS["protocol 2"])
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": request.param(marker), b"labels": [0]}, f, protocol=2)
    return folder.parent, marker


def test_crafted_batches_are_refused_without_running(crafted_root):
    root, marker = crafted_root
    with pytest.raises(ValueError, match=r"refusing to unpickle \S+ from \S+test_batch: CIFAR-10 batches hold only "
                                         r"dicts, lists, strings, bytes, numbers and numpy arrays of numbers"):
        advkit.data.load("cifar10", root=root)
    assert not marker.exists()


def test_the_crafted_file_would_run_code_with_plain_pickle(crafted_root):
    """The fixture's files are real threats: plain pickle runs them (so the refusal above means something)."""
    root, marker = crafted_root
    with open(root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        ran = pickle.load(f)[b"data"]
    if isinstance(ran, subprocess.Popen):
        ran.wait()
    assert marker.exists()


def test_object_arrays_and_codecs_other_than_latin1_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "objects"
    path.write_bytes(pickle.dumps({"data": ObjectArray(marker)}, protocol=2))
    with pytest.raises(ValueError, match=r"refusing to unpickle numpy.array from \S+objects: "):
        safe_load(path, "CIFAR-10 batches")
    assert not marker.exists()
    plain = np.array([1, 2], dtype=object)
    path.write_bytes(pickle.dumps(plain, protocol=2))
    with pytest.raises(ValueError, match=r"refusing to unpickle numpy.dtype\('\|O'\) \(an object dtype\) from"):
        safe_load(path, "CIFAR-10 batches")
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.")
    with pytest.raises(ValueError, match=r"refusing to unpickle _codecs.encode with encoding 'zlib'"):
        safe_load(path, "CIFAR-10 batches")


def test_numbers_strings_and_nesting_load_as_written(tmp_path):
    value = {"a": [1, 2.5, "x", b"y", None, True, (3, 4)], b"n": np.int64(7), "f": np.arange(6.0).reshape(2, 3)}
    path = tmp_path / "plain"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        loaded = safe_load(path, "CIFAR-10 batches")
        assert loaded["a"] == value["a"] and loaded[b"n"] == 7 and np.array_equal(loaded["f"], value["f"])


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps({"data": [1] * 100}, protocol=2)[:30]],
                         ids=["empty", "text", "torn"])
def test_garbage_and_torn_batches_are_a_one_line_error(tmp_path, content):
    path = tmp_path / "test_batch"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"test_batch is not one of the CIFAR-10 batches \(not a pickle, or cut short"):
        safe_load(path, "CIFAR-10 batches")


def test_a_batch_without_its_entries_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_batches(folder, DUMPS["protocol 2"])
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch is not a CIFAR-10 batch: it has no 'data' entry"):
        advkit.data.load("cifar10", root=tmp_path)


def test_evaluate_command_refuses_a_crafted_batch_in_one_line(crafted_root, capsys, monkeypatch):
    root, marker = crafted_root
    monkeypatch.delenv("ADVKIT_TRACEBACK", raising=False)
    model = root / "model.pt"
    torch.save(SmallCNN(in_channels=3, input_size=32).state_dict(), model)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(model), "--data", "cifar10", "--root", str(root), "--attacks", "fgsm",
              "--eps", "0", "--n", "2", "--no-progress", "--out", str(root / "report")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advkit: error: refusing to unpickle "), lines
    assert "test_batch" in lines[0]
    assert not marker.exists()
