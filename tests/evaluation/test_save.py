"""Report.save writes a report folder as a whole: the old report or the new one, never a mix, no
stale files of an earlier report, no stray temporary folders, and never a user's unrelated files."""
from __future__ import annotations

import json
import os
import signal

import pytest
from torch import nn

import advkit
from advkit.evaluation import folder, report


@pytest.fixture(scope="module")
def reports(trained_cnn, test_batch):
    """Two cheap reports: models "a" and "b" in one, model "c" in the other (each with an example grid)."""
    x, y = test_batch[0][:16], test_batch[1][:16]
    kwargs = {"attacks": ["fgsm"], "eps": [0, 0.1], "progress": False, "checks": False, "device": "cpu", "examples": 2}
    two = advkit.evaluate({"a": trained_cnn, "b": nn.Sequential(trained_cnn)}, (x, y), **kwargs)
    one = advkit.evaluate({"c": trained_cnn}, (x, y), **kwargs)
    return two, one


def snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def strays(parent, out):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_a_second_save_leaves_no_stale_file_and_keeps_the_users_files(reports, tmp_path):
    two, one = reports
    out = tmp_path / "rep"
    two.save(out)
    assert {"examples_a.png", "examples_b.png", "report.json"} <= set(os.listdir(out))
    (out / "notes.txt").write_text("mine")
    one.save(out)
    names = set(os.listdir(out))
    assert names == {"curve.png", "examples_c.png", "report.json", "report.md", "report.html", "notes.txt"}
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "report.json").read_text())["files"] == sorted(names - {"notes.txt"}, key=[
        "curve.png", "examples_c.png", "report.md", "report.html", "report.json"].index)
    assert strays(tmp_path, out) == []


@pytest.mark.parametrize("writer", ["render_html", "png_bytes"])
def test_an_interrupt_while_writing_leaves_the_old_report_intact(reports, tmp_path, monkeypatch, writer):
    two, one = reports
    out = tmp_path / "rep"
    two.save(out)
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, writer, interrupted)
    with pytest.raises(KeyboardInterrupt):
        one.save(out)
    assert snapshot(out) == before
    assert strays(tmp_path, out) == [] and sorted(os.listdir(tmp_path)) == ["rep"]


def test_ctrl_c_during_the_swap_is_delivered_after_it(reports, tmp_path, monkeypatch):
    """SIGINT arriving between the renames waits for the swap to finish: the new report is whole."""
    two, one = reports
    out = tmp_path / "rep"
    two.save(out)
    swap = folder._swap

    def swap_with_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        swap(*args, **kwargs)

    monkeypatch.setattr(folder, "_swap", swap_with_ctrl_c)
    # Ctrl-C's usual handler, whatever an earlier test in this worker left installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            one.save(out)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "examples_c.png" in os.listdir(out) and "examples_a.png" not in os.listdir(out)
    assert list(json.loads((out / "report.json").read_text())["models"]) == ["c"]
    assert strays(tmp_path, out) == []


def test_a_folder_that_is_not_a_report_is_refused(reports, tmp_path):
    _, one = reports
    work = tmp_path / "thesis"
    work.mkdir()
    (work / "thesis.tex").write_text("chapter 1")
    with pytest.raises(FileExistsError, match="not empty and holds no advkit report"):
        one.save(work)
    assert os.listdir(work) == ["thesis.tex"] and strays(tmp_path, work) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        one.save(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one.save(empty) == empty / "report.html" and (empty / "examples_c.png").is_file()
    nested = tmp_path / "a" / "b"
    assert one.save(nested).is_file()


def test_pictures_put_in_the_folder_before_saving_are_not_in_the_way(reports, tmp_path):
    """A section whose picture was written into the report folder itself (no report there yet)."""
    import matplotlib.image
    import torch

    _, one = reports
    out = tmp_path / "rep"
    out.mkdir()
    matplotlib.image.imsave(out / "gan.png", torch.rand(4, 4).numpy())
    rep = advkit.evaluation.Report(list(one.results.values()), one.config, one.meta)
    rep.add_section("GAN", "![GAN samples](gan.png)", [out / "gan.png"])
    rep.save(out)
    assert "gan.png" in json.loads((out / "report.json").read_text())["files"]
    assert (out / "report.md").read_text().count("(gan.png)") == 1
