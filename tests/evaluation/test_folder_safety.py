"""A report save never loses or hides a user's file: only advkit's own manifest is trusted, a
save that cannot complete is refused before anything moves, links and "." are handled, what a
killed save leaves is recovered by the next one, and two saves into one folder do not interleave."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import advkit
from advkit.evaluation import folder
from advkit.evaluation.folder import MARKER, FolderError, manifest, write_folder


@pytest.fixture(scope="module")
def rep():
    """A cheap one-model report with an example grid."""
    torch.manual_seed(0)
    model = advkit.models.SmallCNN().eval()
    x = torch.rand(8, 1, 28, 28)
    y = model(x).argmax(1)  # every sample correct: the grid has pictures
    return advkit.evaluate({"m": model}, (x, y), attacks=["fgsm"], eps=[0, 0.1], progress=False, checks=False,
                           device="cpu", examples=2)


def writer(generation: str):
    """A stand-in report for write_folder: ``a.txt`` (its generation) and the manifest."""
    names = ["a.txt", MARKER]

    def write(stage):
        (stage / "a.txt").write_text(generation)
        (stage / MARKER).write_text(json.dumps({"generation": generation, **manifest(stage, names)}))

    return write, names


def snapshot(path):
    """Every file under ``path`` (relative name -> bytes)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def hidden(parent):
    """The hidden entries a save can leave beside its folder (stages, old folders, the lock)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def a_report_with_notes(tmp_path, rep):
    out = tmp_path / "rep"
    rep.save(out)
    (out / "notes.txt").write_text("my notes")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1,2")
    return out


# -- whose files: only advkit's own manifest is trusted -------------------------------------------

@pytest.mark.parametrize("marker", [
    {"format": 1},  # a report.json of the shape advkit wrote before the marker, or another tool's
    {"advkit_report": 2},  # a manifest version this advkit does not know
    {"advkit_report": True},
])
def test_a_foreign_report_json_listing_files_makes_the_save_delete_nothing(rep, tmp_path, marker):
    out = tmp_path / "work"
    out.mkdir()
    (out / "thesis.tex").write_text("chapter 1")
    (out / "data.csv").write_text("1,2")
    (out / MARKER).write_text(json.dumps({**marker, "files": ["thesis.tex", "data.csv", MARKER], "sha256": {}}))
    before = snapshot(out)
    with pytest.raises(FolderError, match="is not empty and holds no advkit report"):
        rep.save(out)
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_manifest_naming_paths_is_not_trusted(tmp_path):
    out = tmp_path / "rep"
    write_folder(out, *writer("1"))
    data = json.loads((out / MARKER).read_text())
    for bad in ("../a.txt", "sub/a.txt", "", ".."):
        (out / MARKER).write_text(json.dumps({**data, "files": ["a.txt", bad, MARKER]}))
        assert folder.report_files(out) is None, bad
    (out / MARKER).write_text(json.dumps(data))
    assert folder.report_files(out) == {"a.txt", MARKER}


@pytest.mark.parametrize("name", ["report.md", "curve.png"])
def test_a_folder_holding_only_the_users_own_file_of_a_report_name_is_refused(rep, tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_bytes(b"my own " + name.encode())
    with pytest.raises(FolderError, match=rf"holds {name}, which advkit did not write .* move or rename them"):
        rep.save(out)
    assert snapshot(out) == {name: b"my own " + name.encode()} and hidden(tmp_path) == []


def test_a_report_file_the_user_edited_is_not_replaced(rep, tmp_path):
    out = a_report_with_notes(tmp_path, rep)
    with open(out / "report.md", "a", encoding="utf-8") as handle:
        handle.write("\nMy conclusions.\n")
    before = snapshot(out)
    with pytest.raises(FolderError, match="holds report.md, which advkit did not write \\(or which changed since"):
        rep.save(out)
    assert snapshot(out) == before and hidden(tmp_path) == []
    (out / "report.md").rename(tmp_path / "conclusions.md")  # what the message says to do
    rep.save(out)
    assert (out / "notes.txt").read_text() == "my notes" and (out / "data" / "x.csv").read_text() == "1,2"


def test_the_manifest_lists_the_files_with_their_digests(rep, tmp_path):
    out = tmp_path / "rep"
    rep.save(out)
    data = json.loads((out / MARKER).read_text())
    assert data["advkit_report"] == 1 and data["files"][-1] == MARKER
    assert set(data["sha256"]) == set(data["files"]) - {MARKER} == {p.name for p in out.iterdir()} - {MARKER}
    assert folder.report_files(out) == set(data["files"])
    (out / "curve.png").write_bytes(b"changed")
    assert folder.report_files(out) == set(data["files"]) - {"curve.png"}


# -- a save that cannot complete moves nothing -----------------------------------------------------

@pytest.mark.parametrize("denied", ["rep", ".", "rep/data"], ids=["folder", "parent", "users-subfolder"])
def test_a_folder_that_is_not_writable_is_refused_before_anything_moves(rep, tmp_path, monkeypatch, denied):
    """The probe (os.access; root writes through a chmod, so the test denies it the way a read-only
    folder would) refuses the save when the report folder, its parent or a user's folder in it (a
    folder moved to another folder rewrites its '..') is not writable: the old report and the
    user's files stay where they were, and nothing is left beside them."""
    out = a_report_with_notes(tmp_path, rep)
    before, path = snapshot(out), (tmp_path / denied).resolve()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if p == path else access(p, mode, **kw))
    with pytest.raises(PermissionError, match=f"{path} is not writable .* nothing was changed"):
        rep.save(out)
    assert snapshot(out) == before and hidden(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the probe test above denies it instead")
def test_a_read_only_report_folder_is_refused(rep, tmp_path):
    out = a_report_with_notes(tmp_path, rep)
    before = snapshot(out)
    out.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="is not writable"):
            rep.save(out)
    finally:
        out.chmod(0o755)
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_rename_that_fails_in_the_swap_is_undone(rep, tmp_path, monkeypatch):
    """Moving the user's second entry out of the old folder fails (as a read-only folder or entry
    would): the renames done are undone, the old report and every user file are back in place."""
    out = a_report_with_notes(tmp_path, rep)
    before = snapshot(out)
    rename, moved = os.rename, []

    def failing(source, target):
        if os.path.basename(source) == "notes.txt" and os.path.basename(os.path.dirname(source)).startswith(".rep."):
            raise PermissionError(13, "Permission denied", str(source))
        rename(source, target)
        moved.append(os.path.basename(source))

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(PermissionError, match="Permission denied"):
        rep.save(out)
    assert moved[:3] == ["rep", moved[1], "data"] and moved[1].startswith(".rep.new-")  # then undone
    assert snapshot(out) == before and hidden(tmp_path) == []


# -- links and "." -------------------------------------------------------------------------------------

def test_a_symlinked_report_folder_is_saved_into_the_folder_it_points_to(rep, tmp_path):
    real = a_report_with_notes(tmp_path, rep)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert rep.save(link) == link / "report.html"
    assert link.is_symlink() and link.resolve() == real
    assert (real / "notes.txt").read_text() == "my notes" and (real / "data" / "x.csv").read_text() == "1,2"
    assert folder.report_files(real) == set(json.loads((real / MARKER).read_text())["files"])
    assert hidden(tmp_path) == []


def test_a_link_to_nothing_is_refused_and_leaves_nothing(rep, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing")
    with pytest.raises(FolderError, match="is a symbolic link to .*missing, which does not exist"):
        rep.save(link)
    assert sorted(os.listdir(tmp_path)) == ["link"]


@pytest.mark.parametrize("where", [".", ""])
def test_saving_into_the_current_folder_is_refused_cleanly(rep, tmp_path, monkeypatch, where):
    out = a_report_with_notes(tmp_path, rep)
    before = snapshot(out)
    monkeypatch.chdir(out)
    with pytest.raises(FolderError, match="is the current folder or the root: .* choose a folder inside it"):
        rep.save(where)
    assert snapshot(out) == before and hidden(tmp_path) == [] and hidden(out) == []


# -- what a killed save leaves, the next save recovers -----------------------------------------------------

KILLED_SAVE = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    from advkit.evaluation.folder import MARKER, manifest, write_folder

    out, kill_after = Path(sys.argv[1]), int(sys.argv[2])
    rename, count = os.rename, [0]

    def rename_then_die(source, target):
        rename(source, target)
        count[0] += 1
        if count[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    os.rename = rename_then_die
    names = ["a.txt", MARKER]

    def write(stage):
        (stage / "a.txt").write_text("2")
        (stage / MARKER).write_text(json.dumps(manifest(stage, names)))

    write_folder(out, write, names)
""")


@pytest.mark.parametrize("kill_after", [1, 2, 3], ids=["old-aside", "new-in-place", "one-user-entry-moved"])
def test_the_next_save_recovers_what_a_save_killed_in_the_swap_left(tmp_path, kill_after):
    """kill -9 after the swap's first, second or third rename (old folder aside; new one in place;
    one of the user's two entries moved): the next save brings every user file back into the
    report folder and leaves no hidden folder."""
    out = tmp_path / "rep"
    write_folder(out, *writer("1"))
    (out / "notes.txt").write_text("my notes")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1,2")
    source = str(Path(advkit.__file__).parents[1])  # this checkout's advkit
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(out), str(kill_after)], env=env, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert any(".rep.old-" in name for name in hidden(tmp_path))  # killed inside the swap
    write_folder(out, *writer("3"))
    assert sorted(os.listdir(out)) == ["a.txt", "data", "notes.txt", MARKER]
    assert (out / "a.txt").read_text() == "3" and (out / "notes.txt").read_text() == "my notes"
    assert (out / "data" / "x.csv").read_text() == "1,2" and hidden(tmp_path) == []


def test_an_unfinished_report_of_a_killed_save_is_removed(tmp_path):
    out = tmp_path / "rep"
    write_folder(out, *writer("1"))
    stale = tmp_path / ".rep.new-x1y2"
    stale.mkdir()
    (stale / "a.txt").write_text("half")
    (tmp_path / ".other.new-x1y2").mkdir()  # another folder's: not this save's business
    write_folder(out, *writer("2"))
    assert hidden(tmp_path) == [".other.new-x1y2"] and (out / "a.txt").read_text() == "2"


# -- two saves at once ---------------------------------------------------------------------------------

def test_a_second_save_into_a_folder_being_saved_is_refused(tmp_path):
    """Thread A holds the folder (its report is being written) when the main thread saves into it:
    a clear error for the second, then A's report complete and nothing hidden left."""
    out = tmp_path / "rep"
    write_folder(out, *writer("0"))
    (out / "notes.txt").write_text("my notes")
    inside, go, errors = threading.Event(), threading.Event(), []
    write_a, names = writer("A")

    def slow_write(stage):
        inside.set()
        go.wait(30)
        write_a(stage)

    def save_a():
        try:
            write_folder(out, slow_write, names)
        except Exception as err:  # reported to the main thread
            errors.append(err)

    thread = threading.Thread(target=save_a)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(FolderError, match="another save is writing into .*rep right now: wait until it ends"):
            write_folder(out, *writer("B"))
    finally:
        go.set()
        thread.join(30)
    assert errors == [] and (out / "a.txt").read_text() == "A" and (out / "notes.txt").read_text() == "my notes"
    assert folder.report_files(out) == {"a.txt", MARKER} and hidden(tmp_path) == []
    write_folder(out, *writer("C"))  # the lock went with the save
    assert (out / "a.txt").read_text() == "C"



def test_a_new_report_folder_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    """The folder is built in a mkdtemp stage (0700); the report must not become private by that."""
    write, names = writer("one")
    umask = os.umask(0o022)
    try:
        write_folder(tmp_path / "new", write, names)
    finally:
        os.umask(umask)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o755
    (tmp_path / "new").chmod(0o750)
    write_folder(tmp_path / "new", writer("two")[0], names)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "new" / "a.txt").read_text() == "two"
