"""One way to configure the defenses: each takes its settings as keywords or as one frozen options
object, validated once with the defaults in one place, and records them in its checkpoints and its
History."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import advkit
from advkit.checkpoints import IDENTITY
from advkit.defenses import (
    AugmentOptions,
    FinetuneOptions,
    GaussianOptions,
    TrainingOptions,
    adversarial_training,
    augmented_training,
    finetune,
    gaussian_training,
)

#: Each defense, its options class, and its parameters that are not settings (inputs, where it writes).
DEFENSES = [
    (adversarial_training, TrainingOptions, {"model", "data", "attack", "eval_data", "checkpoint_dir", "resume"}),
    (finetune, FinetuneOptions, {"model", "data", "attack", "eval_data", "checkpoint_dir", "resume"}),
    (augmented_training, AugmentOptions, {"model", "data", "eval_data"}),
    (gaussian_training, GaussianOptions, {"model", "data", "eval_data"}),
]


@pytest.fixture(scope="module")
def digits():
    x, y = advkit.data.load("digits")[0].tensors
    return x[:128], y[:128]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def untimed(history) -> list[dict]:
    """The records without their wall seconds, NaN (fine-tuning's epoch 0 loss) as a string."""
    return [{k: "nan" if v != v else v for k, v in {**vars(r), "seconds": 0}.items()} for r in history]


@pytest.mark.parametrize("defense, options, inputs", DEFENSES, ids=lambda v: getattr(v, "__name__", ""))
def test_each_keyword_is_a_setting_with_the_options_default(defense, options, inputs):
    parameters = dict(inspect.signature(defense).parameters)
    assert parameters.pop("options").default is None
    parameters.pop("method_options", None)  # adversarial_training's **method_options: its method's options
    settings = {name: p.default for name, p in parameters.items() if name not in inputs}
    assert settings == {f.name: f.default for f in dataclasses.fields(options) if f.name in settings}
    assert set(settings) | {"method_options"} >= {f.name for f in dataclasses.fields(options)}


def test_training_options_are_normalised_read_only_and_checked_again_on_replace():
    options = TrainingOptions(method="trades", eps=0.1, method_options={"beta": 3})
    assert (options.epochs, options.lr) == (20, 3e-3)  # the method's defaults
    assert options.method_options == {"warmup": 0.25, "shift": 0, "weight_decay": 5e-4, "eval_size": 256, "ema": 0.0,
                                      "steps": 10, "beta": 3, "awp": 0.0}
    assert options.config(100) == {"method": "trades", "eps": 0.1, "norm": "linf", "epochs": 20, "lr": 3e-3,
                                   "batch_size": 128, "seed": 0, "train_size": 100,
                                   "options": options.method_options}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.eps = 0.2
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        dataclasses.replace(options, method_options={"beta": -1})
    with pytest.raises(TypeError, match="method 'pgd' has no option beta"):
        TrainingOptions(method_options={"beta": 1.0})
    with pytest.raises(TypeError, match="method_options must be a dict of the method's options, got list"):
        TrainingOptions(method_options=[1])
    assert FinetuneOptions().lr == 5e-3 and FinetuneOptions(mix=1).mix == 1
    assert AugmentOptions(corruptions="fog").corruptions == ("fog",)
    assert AugmentOptions().corruptions == tuple(advkit.defenses.CORRUPTIONS)


@pytest.mark.parametrize("defense, options", [
    (adversarial_training, TrainingOptions(eps=0.2, epochs=1, batch_size=64, progress=False, device="cpu",
                                           method_options={"steps": 2, "eval_size": 8})),
    (finetune, FinetuneOptions(eps=0.2, epochs=1, batch_size=64, progress=False, device="cpu")),
    (augmented_training, AugmentOptions(corruptions=["fog"], epochs=1, batch_size=64, progress=False, device="cpu")),
    (gaussian_training, GaussianOptions(sigma=0.5, smoothadv_eps=0.25, epochs=1, batch_size=64, progress=False,
                                        device="cpu")),
], ids=["adversarial_training", "finetune", "augmented_training", "gaussian_training"])
def test_options_object_runs_as_its_keywords_and_the_history_records_it(digits, defense, options):
    keywords = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    keywords.update(keywords.pop("method_options", {}))
    if defense is augmented_training:
        keywords["corruptions"] = list(keywords["corruptions"])
    a, history_a = defense(mlp(), digits, **keywords)
    b, history_b = defense(mlp(), digits, options=options)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert untimed(history_a) == untimed(history_b) and history_a.config == history_b.config
    unsized = defense in (augmented_training, gaussian_training)  # their config does not hold the data's size
    expected = options.config() if unsized else options.config(len(digits[0]))
    assert history_b.config == expected


def test_a_keyword_beside_options_or_another_options_type_is_refused(digits):
    model = mlp()
    both = r"^pass the settings as keywords or in options=, not both: "
    with pytest.raises(TypeError, match=both + "eps, method_options given"):
        adversarial_training(model, digits, eps=0.1, steps=3, options=TrainingOptions())
    with pytest.raises(TypeError, match=r"^options must be a FinetuneOptions, got TrainingOptions"):
        finetune(model, digits, options=TrainingOptions())
    with pytest.raises(TypeError, match="not both: share given beside options="):
        augmented_training(model, digits, share=0.1, options=AugmentOptions())


def test_the_options_are_built_once(digits, monkeypatch):
    built, post_init = [], TrainingOptions.__post_init__

    def counted(self):
        built.append(self)
        post_init(self)

    monkeypatch.setattr(TrainingOptions, "__post_init__", counted)
    adversarial_training(mlp(), digits, eps=0.2, epochs=1, batch_size=64, steps=2, eval_size=8, progress=False,
                         device="cpu")
    assert len(built) == 1


def test_checkpoints_record_the_options_and_a_resume_keeps_them(digits, tmp_path):
    options = TrainingOptions(eps=0.2, epochs=2, batch_size=64, progress=False, device="cpu", seed=3,
                              method_options={"steps": 2, "eval_size": 8})
    _, history = adversarial_training(mlp(), digits, checkpoint_dir=tmp_path, options=options)
    state = torch.load(sorted(tmp_path.glob("advtrain-*.pt"))[-1], weights_only=True)
    assert state["config"] == history.config == options.config(len(digits[0]))
    assert state["history"]["config"] == history.config
    assert {k: v for k, v in state[IDENTITY]["settings"].items() if k != "attack"} == history.config
    _, resumed = adversarial_training(mlp(), digits, checkpoint_dir=tmp_path, resume=True, options=options)
    assert resumed.config == history.config and untimed(resumed) == untimed(history)
    with pytest.raises(ValueError, match=r"other settings \(seed=3, now 4\)"):
        adversarial_training(mlp(), digits, checkpoint_dir=tmp_path, resume=True,
                             options=dataclasses.replace(options, seed=4))
