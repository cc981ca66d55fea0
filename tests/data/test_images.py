"""Lazy image sets: class-per-folder trees and ImageNet's validation folder, from tiny PNG/JPEG files the
tests write; the standard preprocessing equals torchvision's transforms; clear errors for what is missing."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import advkit
from advkit.app.cli import main
from advkit.data import images

sys.path.insert(0, str(Path(__file__).parents[1]))  # pytest runs with --import-mode=importlib
from one_line import fails  # noqa: E402

RNG = np.random.default_rng(0)


def write_image(path, size=(8, 8), fmt=None) -> np.ndarray:
    """A random RGB image of ``size`` (width, height) at ``path``; returns its pixels (H, W, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


def test_a_folder_tree_is_read_lazily_with_sorted_class_names(tmp_path, monkeypatch):
    pixels = {}
    for name in ("b/one.png", "b/deeper/two.PNG", "a/x.png", "c/y.bmp"):
        pixels[name] = write_image(tmp_path / name)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    train, val = advkit.data.load("folder", root=tmp_path)
    assert train is None and isinstance(val, images.ImageFiles)
    assert val.classes == ("a", "b", "c") and val.num_classes == 3 and val.targets == [0, 1, 1, 2]
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path: opened.append(path) or real_open(path))
    assert val[0][1] == 0 and [p.name for p in opened] == ["x.png"]  # nothing read before: one file per item
    x, y = val[2]  # b/one.png: b/deeper/two.PNG sorts first
    assert y == 1 and [p.name for p in opened] == ["x.png", "one.png"]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8)
    assert torch.equal(x, torch.as_tensor(pixels["b/one.png"]).permute(2, 0, 1).float() / 255)
    bx, by = next(iter(torch.utils.data.DataLoader(val, batch_size=4)))
    assert bx.shape == (4, 3, 8, 8) and by.tolist() == [0, 1, 1, 2]


def test_resize_and_crop_equal_torchvisions_resize_and_centre_crop(tmp_path):
    """Both the standard ImageNet preprocessing (short side then centre crop) and a folder's, on a JPEG
    and a PNG of another aspect ratio: exactly torchvision's Compose([Resize, CenterCrop, ToTensor])."""
    write_image(tmp_path / "cat" / "a.jpg", (12, 9), "JPEG")
    write_image(tmp_path / "dog" / "b.png", (7, 10))
    val = advkit.data.images.image_folder(tmp_path, resize=6, crop=5)
    reference = transforms.Compose([transforms.Resize(6), transforms.CenterCrop(5), transforms.ToTensor()])
    for i, (path, _) in enumerate(val.samples):
        with Image.open(path) as file:
            expected = reference(file.convert("RGB"))
        assert torch.equal(val[i][0], expected)
    assert advkit.data.images.image_folder(tmp_path, resize=6)[0][0].shape == (3, 6, 8)


def test_images_of_several_sizes_without_crop_are_a_clear_error(tmp_path):
    write_image(tmp_path / "a" / "1.png", (8, 8))
    write_image(tmp_path / "a" / "2.png", (8, 6))
    val = advkit.data.images.image_folder(tmp_path)
    assert val[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match=r"2.png gives an image of shape \(3, 6, 8\), \S+1.png one of \(3, 8, 8\): "
                                         r"images of several sizes need crop= \(and resize=\) to make one size"):
        val[1]


def test_missing_folders_and_empty_trees_say_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^folder: no folder \S+nowhere: put one sub-folder per class there"):
        advkit.data.load("folder", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"^imagenet: no folder \S+nowhere: put ImageNet's validation images "
                                                r"there, one folder per class named by its WNID \(n01440764/"):
        advkit.data.load("imagenet", root=tmp_path / "nowhere")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"^no images under \S+empty: .*; found 1 class folders"):
        advkit.data.load("folder", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="^root is required for 'imagenet'"):
        advkit.data.load("imagenet")
    with pytest.raises(ValueError, match=r"^crop must be"):
        advkit.data.images.image_folder(tmp_path / "empty", crop=0)


WNIDS = [f"n{i:08d}" for i in range(1000)]


@pytest.fixture
def imagenet_val(tmp_path):
    """A validation folder with ImageNet's 1,000 WNID folders, images in three of them (under root/val)."""
    val = tmp_path / "imagenet" / "val"
    for wnid in WNIDS:
        (val / wnid).mkdir(parents=True)
    for wnid, name in [(WNIDS[0], "ILSVRC2012_val_00000003.JPEG"), (WNIDS[999], "ILSVRC2012_val_00000001.JPEG"),
                       (WNIDS[500], "ILSVRC2012_val_00000002.JPEG"), (WNIDS[500], "ILSVRC2012_val_00000004.JPEG")]:
        write_image(val / wnid / name, (10, 12), "JPEG")
    return tmp_path / "imagenet"


def test_imagenet_reads_1000_sorted_wnids_with_the_standard_preprocessing(imagenet_val):
    _, val = advkit.data.load("imagenet", root=imagenet_val)
    assert val.num_classes == 1000 and val.classes == tuple(WNIDS) and val.targets == [0, 500, 500, 999]
    assert (val.resize, val.crop) == (256, 224) and val[3][0].shape == (3, 224, 224)
    _, small = advkit.data.load("imagenet", root=imagenet_val / "val", resize=9, crop=8)  # the val folder itself
    assert small[0][0].shape == (3, 8, 8) and small[0][1] == 0
    (imagenet_val / "val" / WNIDS[3]).rmdir()
    with pytest.raises(ValueError, match=r"holds 999 class folders, not ImageNet's 1000: the class indices"):
        advkit.data.load("imagenet", root=imagenet_val)


def test_imagenet_subsets_keep_the_lists_order_from_a_file_or_the_robustbench_package(imagenet_val, tmp_path,
                                                                                      monkeypatch):
    listed = [f"{WNIDS[999]}/ILSVRC2012_val_00000001.JPEG", f"{WNIDS[0]}/ILSVRC2012_val_00000003.JPEG"]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(listed))
    _, val = advkit.data.load("imagenet", root=imagenet_val, subset=ids)
    assert [p.name for p, _ in val.samples] == [line.split("/")[1] for line in listed] and val.targets == [999, 0]
    monkeypatch.setitem(sys.modules, "robustbench", None)  # as if not installed
    with pytest.raises(FileNotFoundError, match=r"subset='robustbench' reads the list of RobustBench's 5,000 images "
                                                r"from the robustbench package's helper_files/imagenet_test_image_ids"):
        advkit.data.load("imagenet", root=imagenet_val, subset="robustbench")
    package = tmp_path / "site" / "robustbench"  # an installed package's layout, found without importing it
    (package / "helper_files").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('advkit must not import robustbench to read a list')")
    (package / "helper_files" / "imagenet_test_image_ids.txt").write_text(ids.read_text())
    monkeypatch.delitem(sys.modules, "robustbench")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _, bench = advkit.data.load("imagenet", root=imagenet_val, subset="robustbench")
    assert bench.samples == val.samples
    ids.write_text(f"{listed[0]}\n{WNIDS[1]}/ILSVRC2012_val_00000009.JPEG\n")
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 images listed in \S+ids.txt are missing under \S+val, "
                                                r"the first n00000001/ILSVRC2012_val_00000009.JPEG"):
        advkit.data.load("imagenet", root=imagenet_val, subset=ids)
    ids.write_text("n99999999/a.JPEG\n")
    with pytest.raises(ValueError, match=r"'n99999999/a.JPEG' is not 'WNID/file name' with a WNID among the class"):
        advkit.data.load("imagenet", root=imagenet_val, subset=ids)


def test_the_installed_robustbench_list_names_5000_images_of_distinct_wnid_folders():
    """Where the robustbench package is installed, its list is the subset read: 5,000 lines 'WNID/file name'."""
    try:
        path = images._subset_file("robustbench")
    except FileNotFoundError:
        pytest.skip("the robustbench package is not installed")
    lines = path.read_text().split()
    assert len(lines) == len(set(lines)) == 5000 and all(len(line.split("/")) == 2 for line in lines)


FACTORY = """
import torch
from advkit.models import SmallCNN

def make():
    torch.manual_seed(0)
    return SmallCNN(in_channels=3, num_classes=3, input_size=6)
"""


def test_the_evaluate_command_reads_a_folder_with_resize_and_crop(tmp_path, monkeypatch, capsys):
    for i, name in enumerate(["ant/1.png", "ant/2.png", "bee/3.jpg", "cow/4.png", "cow/5.png"]):
        write_image(tmp_path / "tree" / name, (8 + i, 9))  # several sizes: --resize and --crop make one
    (tmp_path / "treefactory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "report"
    fast = ["--attacks", "fgsm", "--eps", "0,0.1", "--probe", "0", "--no-progress", "--device", "cpu"]
    assert main(["evaluate", "--data", "folder", "--root", str(tmp_path / "tree"), "--resize", "7", "--crop", "6",
                 "--model-factory", "treefactory:make", *fast, "--out", str(out)]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["models"]["model"]["num_classes"] == 3 and len(saved["models"]["model"]["curves"]["fgsm"]) == 2
    capsys.readouterr()
    assert "--crop: options of --data imagenet (and folder, but for --subset), not --data digits" in fails(
        ["evaluate", "--data", "digits", "--crop", "6", "--model-factory", "treefactory:make", *fast], capsys)


def test_a_library_models_preprocessing_sizes_the_images_and_the_flags_override_it(tmp_path):
    """evaluate's image options: the model's resize, crop and interpolation (bicubic here, equal to
    torchvision's), then --crop over them; a data set of tensors takes none."""
    import argparse

    from advkit.app.evaluate_cli import image_options
    from advkit.models import External, Preprocessing

    write_image(tmp_path / "a" / "1.png", (9, 11))
    library = External(torch.nn.Flatten(), preprocessing=Preprocessing((3, 6, 6), 7, "bicubic"))
    args = argparse.Namespace(data="folder", resize=None, crop=None, subset=None)
    options = image_options(args, library)
    assert options == {"crop": 6, "resize": 7, "interpolation": "bicubic"}
    x = advkit.data.load("folder", root=tmp_path, **options)[1][0][0]
    bicubic = transforms.Compose([transforms.Resize(7, transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(6),
                                  transforms.ToTensor()])
    with Image.open(tmp_path / "a" / "1.png") as file:
        assert torch.equal(x, bicubic(file.convert("RGB")))
    args.crop = 5
    assert image_options(args, library) == {"crop": 5, "resize": 7, "interpolation": "bicubic"}
    assert image_options(argparse.Namespace(data="folder", resize=None, crop=None, subset=None), None) == {}
    assert image_options(argparse.Namespace(data="digits", resize=None, crop=None, subset=None), library) == {}
    with pytest.raises(ValueError, match="^interpolation must be one of nearest, .*; got 'cubic'"):
        advkit.data.load("folder", root=tmp_path, interpolation="cubic")
