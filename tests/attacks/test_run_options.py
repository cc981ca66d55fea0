"""Options of every attack call that nothing else runs: ``amp`` (a no-op on the CPU),
``early_stop=False`` (every sample keeps moving; each keeps its best iterate), the margin loss
(against its formula) and ``restarts > 1`` (never weaker than one restart; only survivors restart)."""
from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import APGD, ATTACKS, PGD
from advkit.attacks.losses import margin


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def batch(n: int = 16):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 10


def cheap(name: str, **kwargs):
    cls = ATTACKS[name]
    params = inspect.signature(cls.__init__).parameters
    budget = {k: v for k, v in {"steps": 4, "n_queries": 30, "binary_steps": 2}.items() if k in params}
    norm = "linf" if "linf" in cls.norms else "l2"
    return cls(net(), eps=0.1 if norm == "linf" else 1.0, norm=norm, **budget, **kwargs)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_amp_is_a_no_op_on_the_cpu(name):
    x, y = batch()
    plain, amp = cheap(name).run(x, y), cheap(name, amp=True).run(x, y)
    assert torch.equal(plain.x_adv, amp.x_adv) and torch.equal(plain.success, amp.success)
    assert (plain.forwards, plain.backwards) == (amp.forwards, amp.backwards)


class Recorder:
    """Every forward's input and output, in order."""

    def __init__(self, model: nn.Module):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        model.register_forward_hook(lambda m, inp, out: self.calls.append((inp[0].detach().clone(), out.detach())))


def test_without_early_stop_every_sample_moves_every_step_and_keeps_its_best_iterate():
    """APGD with early_stop=False: each of the ``steps`` forwards sees all samples (fooled ones keep
    moving); the last iterate of the samples never fooled is judged once more; each sample returns
    its highest-loss fooling iterate, or its highest-loss iterate when none fooled the model."""
    torch.manual_seed(0)
    model, (x, y), steps = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), batch(), 6
    rec = Recorder(model)
    res = APGD(model, eps=0.05, steps=steps, early_stop=False).run(x, y, check_success=False)
    assert res.backwards == len(x) * steps
    iterates = rec.calls[:1 + steps]  # the clean forward, then one per step
    assert all(len(inp) == len(x) for inp, _ in iterates)
    xs = torch.stack([inp for inp, _ in iterates])  # (1 + steps, N, ...)
    losses = torch.stack([F.cross_entropy(out, y, reduction="none") for _, out in iterates])
    losses[0] = float("-inf")  # x itself is kept only where the model already errs and no step fools it
    fooled = torch.stack([out.argmax(1) != y for _, out in iterates])
    never = ~fooled.any(0)
    if never.any():  # the finish forward: the last iterate of the samples never fooled
        (last_x, last_out), = rec.calls[1 + steps:]
        extra_x, extra_loss = xs[-1].clone(), torch.full_like(losses[0], float("-inf"))
        extra_x[never], extra_loss[never] = last_x, F.cross_entropy(last_out, y[never], reduction="none")
        extra_fooled = torch.zeros_like(never)
        extra_fooled[never] = last_out.argmax(1) != y[never]
        xs, losses = torch.cat([xs, extra_x[None]]), torch.cat([losses, extra_loss[None]])
        fooled = torch.cat([fooled, extra_fooled[None]])
    score = torch.where(fooled, losses.double() + 1e6, losses.double())  # fooling beats not fooling, then the loss
    best = score.argmax(0)
    expected = xs[best, torch.arange(len(x))]
    assert torch.equal(res.x_adv, expected)
    first = fooled[1:steps].float().argmax(0) + 1  # the first step that fooled each sample
    early = fooled[1:steps].any(0) & ~fooled[0]
    moved_on = (xs[steps] != xs[first, torch.arange(len(x))]).flatten(1).any(1)
    assert early.any() and bool(moved_on[early].all())  # fooled samples kept moving


def test_early_stop_stops_the_fooled_samples():
    x, y = batch()
    res = APGD(net(), eps=0.15, steps=6).run(x, y)
    assert res.backwards < len(x) * 6


def test_margin_loss_matches_its_formula():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0], [1.0, 1.0, 4.0]])
    labels = torch.tensor([0, 2, 2])
    # untargeted: max_{j != y} z_j - z_y
    assert margin(logits, labels, False).tolist() == [2.0 - 3.0, 5.0 - (-1.0), 1.0 - 4.0]
    # targeted (labels are targets): z_t - max_{j != t} z_j
    assert margin(logits, labels, True).tolist() == [3.0 - 2.0, -1.0 - 5.0, 4.0 - 1.0]


def test_margin_loss_attack_fools_like_ce(trained_cnn, test_batch):
    x, y = test_batch[0][:100], test_batch[1][:100]
    ce = PGD(trained_cnn, eps=0.3, steps=20).run(x, y).success
    mg = PGD(trained_cnn, eps=0.3, steps=20, loss="margin").run(x, y).success
    assert mg.float().mean() >= 0.95 and ce.float().mean() >= 0.95  # both break a standard model at 0.3
    with torch.no_grad():
        assert torch.equal(mg, trained_cnn(PGD(trained_cnn, eps=0.3, steps=20, loss="margin")(x, y)).argmax(1) != y)


@pytest.mark.parametrize("make", [lambda m, r, s: PGD(m, eps=0.08, steps=5, restarts=r, seed=s),
                                  lambda m, r, s: APGD(m, eps=0.08, steps=5, restarts=r, seed=s)], ids=["pgd", "apgd"])
def test_restarts_never_weaker_and_only_survivors_restart(trained_cnn, test_batch, make):
    """The first restart is the single-restart run (same seed, same start), so each sample fooled
    with 1 restart is fooled with 3; the later restarts cost at most steps x the samples left."""
    x, y = test_batch[0][:100], test_batch[1][:100]
    for seed in (0, 1, 2):
        one, three = make(trained_cnn, 1, seed).run(x, y), make(trained_cnn, 3, seed).run(x, y)
        assert bool((three.success | ~one.success).all()), "a sample fooled by 1 restart survived 3"
        survivors = int((~one.success).sum())
        assert 0 < survivors < len(x)  # eps chosen so that restarts have something to do
        extra = three.backwards - one.backwards
        assert 0 < extra <= 2 * 5 * survivors
