"""100 and 1,000 classes: the DLR loss as the official code computes it, the targeted attacks' target classes
(AutoAttack's top 9 runner-up classes, ties ranked as it ranks them), the attacks inside the ball and the box,
and evaluate with labels beyond 10. Tiny linear models on 3x4x4 images keep it to a few CPU-seconds."""
import pytest
import torch
from torch import nn

import advkit
from advkit.attacks import APGD, APGDT, FAB, AutoAttack
from advkit.attacks.base import AttackRun
from advkit.attacks.losses import dlr


def linear_model(classes: int, seed: int = 0, step: float | None = None) -> nn.Module:
    """A linear classifier of 3x4x4 images into ``classes`` logits; with ``step`` the logits are rounded to
    multiples of it (ties among the classes)."""
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(48, classes)]
    if step is not None:
        layers.append(Rounded(step))
    return nn.Sequential(*layers).eval()


class Rounded(nn.Module):
    def __init__(self, step: float):
        super().__init__()
        self.step = step

    def forward(self, z):
        return z + (torch.round(z / self.step) * self.step - z).detach()  # rounded values, the linear gradient


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def chosen_targets(monkeypatch):
    """The target classes the attacks take from AttackRun.ranked_targets, in order."""
    seen = []
    ranked = AttackRun.ranked_targets

    def spy(self, n):
        for target in ranked(self, n):
            seen.append(target.clone())
            yield target

    monkeypatch.setattr(AttackRun, "ranked_targets", spy)
    return seen


@pytest.mark.parametrize("classes", [5, 100, 1000])
@pytest.mark.parametrize("attack", [lambda m: APGDT(m, eps=1e-6, steps=2), lambda m: FAB(m, eps=1e-6, steps=2)])
def test_the_targets_are_the_classes_ranked_2nd_to_10th_as_autoattack_ranks_them(chosen_targets, classes, attack):
    """APGD-T's and FAB-T's 9 targets (all 4 runner-ups of 5 classes) are the official choice,
    ``output.sort(dim=1)[1][:, -k]`` for k = 2..10 (pyautoattack's autopgd_base and fab_base), with the
    logits rounded so that classes tie."""
    model = linear_model(classes, step=0.25)
    x = images()
    with torch.no_grad():
        out = model(x)
    y = out.argmax(1)
    assert len(out[0].unique()) < classes  # ties among the classes
    attack(model).run(x, y)  # eps 1e-6: nothing is fooled, every target class runs
    official = [out.sort(dim=1)[1][:, -k] for k in range(2, min(9, classes - 1) + 2)]
    assert len(chosen_targets) == len(official) == min(9, classes - 1)
    for ours, theirs in zip(chosen_targets, official, strict=True):
        assert torch.equal(ours, theirs)
    ranked = out.sort(1, descending=True).values
    for k, target in enumerate(chosen_targets, start=1):  # the k+1-th highest logit, whatever the ties
        assert torch.equal(out.gather(1, target[:, None]).squeeze(1), ranked[:, k])


def test_dlr_equals_the_official_formula_on_1000_classes():
    """Untargeted DLR, ``(max_{j != y} z_j - z_y) / (z_pi1 - z_pi3)``, against pyautoattack's dlr_loss."""
    autopgd = pytest.importorskip("pyautoattack.autopgd_base")
    logits = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 999, 500, 3, 42, 7])
    y[0] = logits[0].argmax()  # one sample whose label is the top class, one that is not
    official = autopgd.APGDAttack.dlr_loss(None, logits, y)
    assert torch.allclose(dlr(logits, y, False), official, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("classes,norm,eps", [(100, "l2", 0.21), (1000, "linf", 0.075)])
def test_the_targeted_attacks_and_autoattack_stay_in_the_ball_and_the_box(classes, norm, eps):
    """APGD-CE, APGD-DLR, APGD-T, FAB-T and the standard AutoAttack with 100 and 1,000 classes: inside the
    eps-ball and [0, 1], success exactly where the model's prediction differs from the label. At these eps
    APGD-CE-100 leaves samples that the targeted members break (measured: 3 and 5 of 6 fooled by APGD-CE,
    all 6 by APGD-T-100 and FAB-T-100), so AutoAttack fools all 6 before Square."""
    model = linear_model(classes)
    x = images(6)
    with torch.no_grad():
        y = model(x).argmax(1)
    fooled = {}
    for name, atk in {"apgd-ce": APGD(model, eps, steps=100, norm=norm),
                      "apgd-dlr": APGD(model, eps, steps=10, norm=norm, loss="dlr"),
                      "apgd-t": APGDT(model, eps, steps=10, norm=norm),
                      "fab-t": FAB(model, eps, steps=10, norm=norm),
                      "autoattack": AutoAttack(model, eps, norm=norm, progress=False)}.items():
        res = atk.run(x, y)
        delta = (res.x_adv - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert float(size.max()) <= eps * (1 + 1e-5) + 1e-7, name
        assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1, name
        with torch.no_grad():
            assert torch.equal(res.success, model(res.x_adv).argmax(1) != y), name
        fooled[name] = int(res.success.sum())
    assert fooled["apgd-ce"] < fooled["autoattack"] == 6, fooled


def test_evaluate_takes_a_100_class_model_with_labels_beyond_10():
    """Labels are checked against the model's 100 outputs, not ten classes; the curves and the worst case run
    with the targeted attacks' 9 targets."""
    model = linear_model(100, seed=2)
    x = images(8, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[-1] = 99 if int(y[-1]) != 99 else 98  # one sample the model gets wrong
    assert int((y >= 10).sum()) >= 6
    report = advkit.evaluate(model, (x, y), attacks=["apgd-t-5", "fab-t-5"], eps=[0, 0.05], checks=False,
                             progress=False, examples=0)
    (res,) = report.results.values()
    assert res.num_classes == 100 and res.clean_accuracy == 7 / 8
    for name in ("apgd-t-5", "fab-t-5", "worst"):
        assert res.curve()[name][0] == (0, 7 / 8) and res.curve()[name][1][1] < 7 / 8
    with pytest.raises(ValueError, match=r"data labels must be class indices in \[0, 100\)"):
        advkit.evaluate(model, (x, torch.full_like(y, 100)), attacks=["apgd-t-5"], eps=[0], checks=False,
                        progress=False, examples=0)
