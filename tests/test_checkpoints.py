"""advkit.checkpoints: one run's files only, atomic saves, weights-only loads, clear errors."""
from __future__ import annotations

import pytest
import torch

from advkit.checkpoints import CheckpointFolder, new_run_id


def state(step: int) -> dict:
    return {"step": step, "weights": torch.full((3,), float(step))}


def steps_of(folder: CheckpointFolder) -> dict[str, list[int]]:
    return {run: [s for s, _ in files] for run, files in folder.runs().items()}


def test_run_ids_are_distinct_hex():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 12 and int(i, 16) >= 0 for i in ids)


def test_pruning_keeps_this_runs_newest_and_never_touches_another_run(tmp_path):
    folder = CheckpointFolder(tmp_path, "ckpt", keep=3)
    for step in (100, 200, 300, 400):  # an earlier run with higher steps
        folder.save(state(step), "aaaa", step)
    for step in range(1, 6):
        folder.save(state(step), "bbbb", step)
    assert steps_of(folder) == {"aaaa": [200, 300, 400], "bbbb": [3, 4, 5]}
    loaded, path = folder.load_latest("bbbb")
    assert loaded["step"] == 5 and loaded["run_id"] == "bbbb" and path == folder.path_for("bbbb", 5)
    assert not list(tmp_path.glob("*.tmp"))


def test_steps_sort_as_numbers_not_names(tmp_path):
    folder = CheckpointFolder(tmp_path, "ckpt", keep=2)
    for step in (9, 10_000_000, 99):  # 10,000,000 has eight digits: a name sort would put it first
        folder.save(state(step), "aaaa", step)
    assert steps_of(folder) == {"aaaa": [99, 10_000_000]}


def test_claim_refuses_other_runs_and_says_what_to_do(tmp_path):
    folder = CheckpointFolder(tmp_path, "ckpt")
    folder.claim("aaaa")  # an empty (even missing) folder is free
    folder.save(state(1), "aaaa", 1)
    folder.claim("aaaa")  # its own run may go on
    with pytest.raises(ValueError,
                       match="another run .*ckpt-aaaa-0000001.pt.*another checkpoint folder.*resume=True.*delete"):
        folder.claim("bbbb")
    CheckpointFolder(tmp_path, "other").claim("bbbb")  # other prefixes are other tools' files


def test_load_latest_falls_back_past_corrupt_and_foreign_files(tmp_path, caplog):
    folder = CheckpointFolder(tmp_path, "ckpt")
    for step in (1, 2, 3):
        folder.save(state(step), "aaaa", step)
    folder.path_for("aaaa", 3).write_bytes(folder.path_for("aaaa", 3).read_bytes()[:40])  # torn write
    torch.save({**state(2), "run_id": "bbbb"}, folder.path_for("aaaa", 2))  # a file renamed from another run
    loaded, _ = folder.load_latest("aaaa")
    assert loaded["step"] == 1
    assert "skipping unreadable checkpoint" in caplog.text and "does not hold a checkpoint of run aaaa" in caplog.text


def test_load_refuses_pickled_code(tmp_path):
    folder = CheckpointFolder(tmp_path, "ckpt")
    torch.save({"run_id": "aaaa", "hook": print}, folder.path_for("aaaa", 1))  # weights_only refuses arbitrary objects
    with pytest.raises(ValueError, match="none of the 1 checkpoints of run aaaa .* can be loaded"):
        folder.load_latest("aaaa")


def test_resumable_run(tmp_path):
    folder = CheckpointFolder(tmp_path, "ckpt")
    with pytest.raises(FileNotFoundError, match="no ckpt checkpoint to resume from"):
        folder.resumable_run("aaaa")
    folder.save(state(1), "bbbb", 1)
    assert folder.resumable_run("aaaa") == "bbbb"  # a fresh process adopts the only run there
    folder.save(state(1), "cccc", 1)
    assert folder.resumable_run("cccc") == "cccc"  # its own run first
    with pytest.raises(ValueError, match="several runs"):
        folder.resumable_run("aaaa")


@pytest.mark.parametrize("prefix,keep,message", [
    ("bad-prefix", 3, "^prefix must be letters, digits or '_'; got 'bad-prefix'$"),
    ("", 3, "^prefix must be letters, digits or '_'; got ''$"), ("ckpt", 0, "^keep must be an integer >= 1; got 0$")])
def test_bad_arguments(tmp_path, prefix, keep, message):
    with pytest.raises(ValueError, match=message):
        CheckpointFolder(tmp_path, prefix, keep)
