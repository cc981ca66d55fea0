"""Models of other libraries (advkit.models.load): each kind built offline from weights the test writes,
giving the library model's own logits after the normalisation its configuration names, with the
preprocessing its configuration names; the CLI's --arch LIBRARY:NAME; the one-line errors."""
from __future__ import annotations

import sys

import pytest
import torch

from advkit import models
from advkit.app.cli import build_parser, main
from advkit.app.defend_cli import weights_of
from advkit.app.evaluate_cli import cli_model, image_sizes, library_model
from advkit.app.usage import UsageError
from advkit.models import External, Normalize, Preprocessing

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def timm_resnet(tmp_path_factory):
    """A timm resnet18 with 10 classes (random weights) and its state dict's file."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).eval()
    path = tmp_path_factory.mktemp("timm") / "resnet18.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_timm_model_by_name_with_a_weights_file(timm_resnet, images, tmp_path):
    reference, path = timm_resnet
    model = models.load("timm:resnet18", path, num_classes=10)
    assert isinstance(model, External) and not model.training and model.source == "timm:resnet18"
    # resnet18's pretrained_cfg: ImageNet mean and std, 224 crop of a 224/0.95 = 235 resize, bicubic
    assert model.preprocessing == Preprocessing((3, 224, 224), 235, "bicubic")
    assert models.input_size(model) == (3, 224, 224) and models.input_size(reference) is None
    assert image_sizes(model) == {"crop": 224, "resize": 235} and image_sizes(reference) == {}
    with torch.no_grad():
        assert torch.equal(model(images), reference(Normalize(IMAGENET_MEAN, IMAGENET_STD)(images)))
    # the same weights as safetensors; the weights `advkit defend` saves (the library's module) load again
    from safetensors.torch import save_file

    save_file(reference.state_dict(), tmp_path / "resnet18.safetensors")
    torch.save(weights_of(model).state_dict(), tmp_path / "again.pt")
    for file in (tmp_path / "resnet18.safetensors", tmp_path / "again.pt"):
        with torch.no_grad():
            assert torch.equal(models.load("timm:resnet18", file, num_classes=10)(images), model(images))
    with pytest.raises(ValueError, match=r"resnet18\.pt is a state dict of another architecture than ResNet: 2 shape "
                                         r"mismatches \(fc\.weight \(10, 512\) in the file vs \(1000, 512\)"):
        models.load("timm:resnet18", path)


def test_torchvision_model_by_name_with_a_weights_file(images, tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    torch.save(reference.state_dict(), tmp_path / "mobilenet.pt")
    model = models.load("torchvision:mobilenet_v3_small", tmp_path / "mobilenet.pt", num_classes=10)
    # the transforms of its published weights: resize 256, crop 224, bilinear, ImageNet mean and std
    assert model.preprocessing == Preprocessing((3, 224, 224), 256, "bilinear")
    with torch.no_grad():
        assert torch.equal(model(images), reference(Normalize(IMAGENET_MEAN, IMAGENET_STD)(images)))
    with pytest.raises(ValueError, match="^torchvision has no architecture 'resnet7' "):
        models.load("torchvision:resnet7")


def test_hugging_face_classifier_from_its_save_pretrained_folder(images, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=5)
    vit = transformers.ViTForImageClassification(config).eval()
    vit.save_pretrained(tmp_path / "vit")
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.6)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=mean,
                                   image_std=std).save_pretrained(tmp_path / "vit")
    model = models.load(f"hf:{tmp_path / 'vit'}")
    assert model.preprocessing == Preprocessing((3, 32, 32), (32, 32), "bilinear")
    with torch.no_grad():  # the .logits of its output, after the processor's normalisation
        assert torch.equal(model(images), vit(pixel_values=Normalize(mean, std)(images)).logits)
    # a ResNet whose processor resizes the short side to 28 / crop_pct and crops 28, bicubic
    resnet = transformers.ResNetForImageClassification(
        transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4))
    resnet.save_pretrained(tmp_path / "resnet")
    transformers.ConvNextImageProcessor(size={"shortest_edge": 28}, crop_pct=0.875).save_pretrained(tmp_path / "resnet")
    model = models.load(f"hf:{tmp_path / 'resnet'}")
    assert model.preprocessing == Preprocessing((3, 28, 28), 32, "bicubic") and model(images).shape == (2, 4)
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        models.load(f"hf:{tmp_path}")


@pytest.fixture(scope="module")
def robustbench_entry(tmp_path_factory):
    """RobustBench's CIFAR-10 corruptions entry Hendrycks2020AugMix_WRN (a WRN-40-2, 2.2M weights), built
    with random weights and written where robustbench.utils.load_model looks: model_dir/cifar10/corruptions."""
    models.require_robustbench("the test")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    reference = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.corruptions]["Hendrycks2020AugMix_WRN"]["model"]()
    model_dir = tmp_path_factory.mktemp("robustbench")
    (model_dir / "cifar10" / "corruptions").mkdir(parents=True)
    torch.save(reference.state_dict(), model_dir / "cifar10" / "corruptions" / "Hendrycks2020AugMix_WRN.pt")
    return reference.eval(), model_dir


def test_robustbench_entry_through_robustbench_with_a_local_model_dir(robustbench_entry, images, tmp_path,
                                                                      monkeypatch):
    import robustbench.utils

    def offline(*args):
        raise AssertionError("robustbench tried to download")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)
    reference, model_dir = robustbench_entry
    name = "robustbench:Hendrycks2020AugMix_WRN"
    model = models.load(name, model_dir, dataset="cifar10", threat_model="corruptions")
    assert model.preprocessing == Preprocessing((3, 32, 32)) and isinstance(model.normalize, torch.nn.Identity)
    with torch.no_grad():  # it normalises inside
        assert torch.equal(model(images), reference(images))
    # an ImageNet entry's preprocessing (its weights are too large to write here): RobustBench's Res256Crop224
    assert models.robustbench_preprocessing("Salman2020Do_R50", "imagenet", "Linf") == Preprocessing((3, 224, 224),
                                                                                                     256, "bilinear")
    with pytest.raises(FileNotFoundError, match=f"^{name}: no weights file at {tmp_path}/cifar10/corruptions/"
                                                "Hendrycks2020AugMix_WRN.pt "):
        models.load(name, tmp_path, dataset="cifar10", threat_model="corruptions")
    with pytest.raises(ValueError, match=r"^RobustBench has no cifar10/Linf entry 'Nobody2020' "):
        models.load("robustbench:Nobody2020", model_dir, dataset="cifar10", threat_model="Linf")
    with pytest.raises(ValueError, match="^robustbench:X needs dataset among cifar10, cifar100, imagenet; got 'mnist'"):
        models.load("robustbench:X", model_dir, dataset="mnist", threat_model="Linf")


@pytest.mark.parametrize(("spec", "options", "message"), [
    ("keras:resnet", {}, "spec must be 'LIBRARY:NAME' with LIBRARY one of timm, torchvision, hf, robustbench; "
                         "got 'keras:resnet'"),
    ("timm:", {}, "spec must be 'LIBRARY:NAME'"),
    ("timm:resnet18", {"num_classes": 0}, "num_classes must be a positive int, got 0"),
    ("hf:folder", {"num_classes": 3}, "num_classes is not taken by hf: models"),
    ("hf:folder", {"weights": "w.pt"}, "weights is not taken by hf: models"),
    ("timm:resnet18", {"dataset": "cifar10"}, "dataset and threat_model are taken by robustbench: models only"),
])
def test_load_refuses_bad_arguments_before_any_work(spec, options, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        models.load(spec, **options)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails as where it is not installed
    with pytest.raises(ImportError, match=r"^timm:resnet18 needs the timm package: pip install 'advkit\[timm\]'$"):
        models.load("timm:resnet18")


def test_evaluate_command_with_a_timm_model(timm_resnet, images, tmp_path, monkeypatch, capsys):
    reference, path = timm_resnet
    args = build_parser().parse_args(["evaluate", "--arch", "timm:resnet18", "--weights", str(path),
                                      "--num-classes", "10"])
    model = cli_model(args, images[0], library_model(args))
    with torch.no_grad():
        assert torch.equal(model(images), reference(Normalize(IMAGENET_MEAN, IMAGENET_STD)(images)))
    # the whole command, on eight RGB images standing in for a data set
    labels = torch.arange(8) % 10
    monkeypatch.setattr("advkit.app.evaluate_cli.load", lambda *a, **k: (None, (images.repeat(4, 1, 1, 1), labels)))
    assert main(["evaluate", "--arch", "timm:resnet18", "--weights", str(path), "--num-classes", "10", "--data",
                 "cifar10", "--attacks", "fgsm", "--eps", "0,1/255", "--probe", "0", "--no-progress",
                 "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.json").is_file()
    for argv, message in [
        (["--arch", "keras:x"], "argument --arch: choose from preactresnet18, smallcnn, smallcnn-wide or LIBRARY:NAME "
                                "with LIBRARY one of timm, torchvision, hf, robustbench; got 'keras:x'"),
        (["--model", str(path), "--num-classes", "10"], "--num-classes is an option of --arch LIBRARY:NAME"),
        (["--arch", "timm:resnet18", "--threat-model", "L2"], "--threat-model is an option of --arch robustbench:NAME"),
    ]:
        with pytest.raises(UsageError, match=f"^{message}"):
            library_model(build_parser().parse_args(["evaluate", *argv]))
