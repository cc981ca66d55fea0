"""Resume refuses what it cannot continue (issue 18, item 5): every checkpoint records what defines its
run (settings, a fingerprint of the data, the networks' shapes), and a resume that differs is refused
with one ValueError naming the differences, for the GAN trainer, AdvGAN, adversarial training and
fine-tuning alike, a finished run included. A checkpoint written before identities were recorded is
resumed with a warning, its networks' shapes still checked.

Every run here is tiny (an MLP GAN on 2-D points, an MLP on 64 of the 8x8 digits, AdvGAN on 8x8
noise images): a fraction of a CPU second each.
"""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import AdvGAN
from advkit.checkpoints import IDENTITY, CheckpointFolder, check_resume, fingerprint, run_identity
from advkit.defenses import adversarial_training, finetune
from advkit.gan import GANTrainer, MLPDiscriminator, MLPGenerator


def points(seed: int, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)), torch.zeros(n, dtype=torch.long)


def images(seed: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)), torch.zeros(n, dtype=torch.long)


def digits(part: int) -> tuple[torch.Tensor, torch.Tensor]:
    """64 of the 8x8 digits: part 0 or part 1, the same size, other images."""
    x, y = advkit.data.load("digits")[0].tensors
    return x[64 * part:64 * (part + 1)], y[64 * part:64 * (part + 1)]


def mlp(hidden: int = 32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()


# ---- one run of each trainer, with what may change --------------------------------------------------

def gan(folder, resume=False, steps=2, loss="hinge", batch_size=16, data=0, hidden=8):
    torch.manual_seed(0)
    trainer = GANTrainer(MLPGenerator(latent_dim=2, hidden=hidden, depth=1), MLPDiscriminator(hidden=hidden, depth=1),
                         loss=loss, device="cpu")
    trainer.fit(points(data), steps=steps, batch_size=batch_size, checkpoint_dir=folder, resume=resume,
                progress=False)
    return trainer.G


def advgan(folder, resume=False, steps=2, gan_loss="lsgan", batch_size=16, data=0, width=4, classifier=0):
    atk = AdvGAN(cnn(classifier), eps=0.2, width=width, blocks=1, gan_loss=gan_loss)
    atk.fit(images(data), steps=steps, batch_size=batch_size, checkpoint_dir=folder, resume=resume, progress=False)
    return atk.generator


def adversarial(folder, resume=False, method="pgd", batch_size=32, data=0, hidden=32):
    model, _ = adversarial_training(mlp(hidden), digits(data), method=method, eps=0.2, epochs=1, lr=1e-2,
                                    batch_size=batch_size, eval_size=8, checkpoint_dir=folder, resume=resume,
                                    device="cpu", progress=False, **({"steps": 2} if method == "pgd" else {}))
    return model


def finetuned(folder, resume=False, mix=0.5, batch_size=32, data=0, hidden=32, attack="fgsm"):
    model, _ = finetune(mlp(hidden), digits(data), eps=0.2, attack=attack, epochs=1, mix=mix, batch_size=batch_size,
                        checkpoint_dir=folder, resume=resume, device="cpu", progress=False)
    return model


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [v.clone() for v in model.state_dict().values()]


REFUSALS = [
    (gan, {"steps": 4, "loss": "wgan-gp"}, "it was written with other settings (loss='hinge', now 'wgan-gp')"),
    (gan, {"steps": 4, "batch_size": 8}, "other settings (batch_size=16, now 8)"),
    (gan, {"steps": 4, "data": 1}, "data differ (fingerprint"),
    (gan, {"steps": 4, "hidden": 16}, "the generator's architecture differs (net.0.weight (8, 2) then, (16, 2) now"),
    (gan, {"data": 1}, "data differ (fingerprint"),  # the run there has finished: still not another data's
    (advgan, {"steps": 4, "gan_loss": "hinge"}, "other settings (gan_loss='lsgan', now 'hinge')"),
    (advgan, {"steps": 4, "batch_size": 8}, "other settings (batch_size=16, now 8)"),
    (advgan, {"steps": 4, "data": 1}, "images differ (fingerprint"),
    (advgan, {"steps": 4, "width": 8}, "other settings (width=4, now 8)"),
    (advgan, {"steps": 4, "classifier": 1}, "classifier weights differ (fingerprint"),
    (advgan, {"data": 1}, "images differ (fingerprint"),
    (adversarial, {"method": "trades"}, "other settings (method='pgd', now 'trades'"),
    (adversarial, {"batch_size": 16}, "batch_size=32, now 16"),
    (adversarial, {"data": 1}, "data differ (fingerprint"),  # the same size: the old check let it pass
    (adversarial, {"hidden": 48}, "the model's architecture differs (1.weight (32, 64) then, (48, 64) now"),
    (finetuned, {"mix": 0.25}, "'mix': 0.5, 'ema': 0.0}, now {"),
    (finetuned, {"batch_size": 16}, "batch_size=32, now 16"),
    (finetuned, {"data": 1}, "data differ (fingerprint"),
    (finetuned, {"hidden": 48}, "the model's architecture differs (1.weight (32, 64) then, (48, 64) now"),
    (finetuned, {"attack": "pgd"}, "attack='fgsm', now 'pgd'"),
]


@pytest.mark.parametrize("run,change,message", REFUSALS, ids=[
    f"{run.__name__}-{'-'.join(k for k in change if k != 'steps')}{'' if 'steps' in change else '-finished'}"
    for run, change, _ in REFUSALS])
def test_a_resume_that_differs_is_refused_naming_the_difference(tmp_path, run, change, message):
    run(tmp_path)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="cannot resume from") as error:
        run(tmp_path, resume=True, **change)
    assert message in str(error.value)
    assert "Pass the same settings, data and networks" in str(error.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # nothing trained, nothing written


@pytest.mark.parametrize("run", [gan, advgan, adversarial, finetuned])
def test_the_same_run_resumes_and_a_finished_one_comes_back_unchanged(tmp_path, run):
    first = weights(run(tmp_path))
    again = weights(run(tmp_path, resume=True))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_every_difference_is_named_at_once(tmp_path):
    gan(tmp_path)
    with pytest.raises(ValueError) as error:
        gan(tmp_path, resume=True, steps=4, loss="lsgan", batch_size=8, data=1, hidden=16)
    text = str(error.value)
    assert "loss='hinge', now 'lsgan'; batch_size=16, now 8)" in text
    assert "; data differ" in text and "the generator's architecture" in text and "the discriminator's" in text
    assert len(text.splitlines()) == 1


def test_a_checkpoint_without_an_identity_resumes_with_a_warning_and_its_shapes_checked(tmp_path, caplog):
    gan(tmp_path, steps=2)
    for path in tmp_path.glob("gan-*.pt"):  # as written before checkpoints recorded their run
        state = torch.load(path, weights_only=True)
        del state[IDENTITY]
        torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="advkit.checkpoints"):
        gan(tmp_path, resume=True, steps=3, loss="lsgan")  # nothing says the loss was another: accepted
    assert "was written before checkpoints recorded their run" in caplog.text
    with pytest.raises(ValueError, match=r"the discriminator's architecture differs \(net.0.weight \(8, 2\) then, "
                                         r"\(16, 2\) now"):
        gan(tmp_path, resume=True, steps=4, hidden=16)  # not torch's raw size-mismatch RuntimeError


def test_an_old_adversarial_checkpoint_still_has_its_config_checked(tmp_path, caplog):
    adversarial(tmp_path)
    for path in tmp_path.glob("advtrain-*.pt"):
        state = torch.load(path, weights_only=True)
        del state[IDENTITY]
        torch.save(state, path)
    with pytest.raises(ValueError, match=r"other settings \(batch_size=32, now 16\)"):
        adversarial(tmp_path, resume=True, batch_size=16)
    with caplog.at_level(logging.WARNING, logger="advkit.checkpoints"):
        adversarial(tmp_path, resume=True, data=1)  # its data were never recorded: resumed on trust
    assert "its data and settings cannot be checked" in caplog.text


def test_fingerprint_covers_every_byte_dtype_and_shape():
    x = torch.rand(3, 4)
    y = x.clone()
    y[2, 3] = torch.nextafter(y[2, 3], torch.tensor(2.0))  # one ulp in the last element
    assert fingerprint(x) == fingerprint(x.clone()) == fingerprint(x.t().contiguous().t())
    assert len({fingerprint(x), fingerprint(y), fingerprint(x.double()), fingerprint(x.view(4, 3)),
                fingerprint(x, None), fingerprint(None, x)}) == 6


def test_check_resume_names_added_and_removed_settings_and_layers():
    net = nn.Linear(2, 3)
    saved = {IDENTITY: run_identity({"a": 1}, {}, {"net": net})}
    now = run_identity({"b": 2}, {}, {"net": nn.Sequential(net)})
    with pytest.raises(ValueError) as error:
        check_resume(saved, now, "x.pt")
    assert "(b=unset, now 2; a=1, now unset)" in str(error.value)
    assert "the net's architecture differs (weight only then; bias only then; 2 more)" in str(
        error.value)


def test_the_folder_records_the_identity_it_was_given(tmp_path):
    identity = run_identity({"lr": 0.1}, {"data": torch.ones(2)}, {})
    CheckpointFolder(tmp_path, "run", identity=identity).save({"step": 1}, "ab12", 1)
    run, state, _ = CheckpointFolder(tmp_path, "run", identity=identity).resume()
    assert run == "ab12" and state[IDENTITY] == identity
    other = run_identity({"lr": 0.1}, {"data": torch.zeros(2)}, {})
    with pytest.raises(ValueError, match=r"cannot resume from run-ab12-0000001.pt: data differ"):
        CheckpointFolder(tmp_path, "run", identity=other).resume()
