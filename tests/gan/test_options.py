"""GANOptions: the GAN trainer's one options object, built from keywords or passed whole, validated
once, frozen, and written into the checkpoints' run record and the GAN report."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from advkit.checkpoints import IDENTITY, CheckpointFolder
from advkit.gan import GANOptions, GANTrainer, MLPDiscriminator, MLPGenerator
from advkit.gan.checkpointing import CHECKPOINT_PREFIX
from advkit.gan.options import DEFAULTS
from advkit.gan.report import run_summary

POINTS = (torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(64))


def trainer(**keywords) -> GANTrainer:
    torch.manual_seed(0)
    return GANTrainer(MLPGenerator(latent_dim=2, hidden=8, depth=1), MLPDiscriminator(hidden=8, depth=1), **keywords)


def test_keywords_build_the_options_and_options_can_be_passed_whole():
    by_keywords = trainer(loss="wgan-gp", n_critic=5, device="cpu")
    assert by_keywords.options == GANOptions(loss="wgan-gp", n_critic=5, device="cpu")
    assert by_keywords.options.n_critic == 5 and by_keywords.options.device == torch.device("cpu")
    whole = GANOptions(loss="lsgan", seed=3, device="cpu")
    assert trainer(options=whole).options == whole
    assert trainer(options=whole, n_critic=4).options == dataclasses.replace(whole, n_critic=4)


def test_the_options_are_frozen_and_checked_again_when_replaced():
    options = GANOptions(device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.lr_g = 1.0
    with pytest.raises(ValueError, match=r"^lr_g must be a finite number > 0, got 0.0$"):
        dataclasses.replace(options, lr_g=0.0)
    with pytest.raises(ValueError, match="^mode_seeking pairs samples of one condition"):
        dataclasses.replace(options, conditional="image", mode_seeking=0.1)


def test_mode_seeking_stays_as_given_and_its_weight_follows_the_conditioning():
    options = GANOptions(device="cpu")
    assert options.mode_seeking is None and options.mode_seeking_weight == 0.005
    image = dataclasses.replace(options, conditional="image")  # None follows the new conditioning
    assert image.mode_seeking is None and image.mode_seeking_weight == 0.0
    assert GANOptions(mode_seeking=0.5, device="cpu").mode_seeking_weight == 0.5


def test_a_wrong_options_object_or_an_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="^options must be a GANOptions; got dict$"):
        trainer(options={"loss": "hinge"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'learning_rate'"):
        trainer(learning_rate=0.1)


def test_the_run_settings_are_the_options_that_shape_the_trajectory():
    settings = GANOptions(betas=[0.5, 0.9], device="cpu").settings(batch_size=32)
    assert list(settings) == ["loss", "n_critic", "lr_g", "lr_d", "betas", "conditional", "l1_weight",
                              "mode_seeking", "gp_weight", "clip", "ema_decay", "ema_ramp", "max_abs_logit",
                              "lr_backoff", "seed", "batch_size"]
    assert settings["betas"] == (0.5, 0.9) and settings["mode_seeking"] == 0.005 and settings["batch_size"] == 32


def test_a_checkpoint_records_every_option_beside_the_compared_settings(tmp_path):
    recorded = GANOptions(device="cpu", compile={"backend": len}).record()  # plain values only
    assert recorded["compile"] == {"backend": repr(len)} and recorded["device"] == "cpu"
    gan = trainer(device="cpu", max_rollbacks=3)
    gan.fit(POINTS, steps=2, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    path = CheckpointFolder(tmp_path, CHECKPOINT_PREFIX).path_for(gan.run_id, 2)
    identity = torch.load(path, weights_only=True)[IDENTITY]
    assert identity["options"] == gan.options.record() == {**DEFAULTS, "device": "cpu", "max_rollbacks": 3,
                                                           "mode_seeking": 0.005}
    assert identity["settings"] == gan.options.settings(16)


def test_the_report_summary_carries_the_options():
    gan = trainer(device="cpu", loss="lsgan")
    gan.fit(POINTS, steps=1, batch_size=16, progress=False)
    summary = run_summary(gan, {"fid": 1.0})
    assert summary["options"]["loss"] == "lsgan" and summary["options"] == gan.options.record()
    assert summary["steps"] == 1 and summary["metrics"] == {"fid": 1.0} and len(summary["final_g_loss"]) == 1
