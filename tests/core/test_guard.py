"""The divergence guard: what stops a game, what it snapshots and restores, skipping, and giving up."""
import math

import pytest
import torch
from torch import nn

from advkit.core import DivergenceGuard, Hook, Limit, OptimizerStep, Player, play, trainable_params


class Run:
    """A model and its optimizer as one stateful thing, as a trainer would hold them."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.1)
        self.x = torch.randn(8, 3)

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def weights(self):
        return torch.cat([p.detach().flatten() for p in self.model.parameters()])

    def play(self, guard, rounds, poison_at=None, start=0):
        """Descend the mean output; the loss is NaN in round ``poison_at``."""
        current = [start]

        def loss():
            out = self.model(self.x).mean()
            return out * math.nan if current[0] == poison_at else out

        class Clock(Hook):  # tells the objective the round
            def round_start(self, r):
                current[0] = r

        player = Player(trainable_params(self.model), OptimizerStep(self.opt))
        return play(outer=player, outer_loss=loss, rounds=rounds, hooks=[Clock(), guard], start=start)


def test_a_non_finite_loss_ends_the_game_and_rollback_restores_the_snapshot():
    run = Run()
    guard = DivergenceGuard(run, [run.model], roles={"inner": "D", "outer": "G"})
    start, adam_state = run.weights(), run.opt.state_dict()["state"]
    assert run.play(guard, rounds=5, poison_at=2) == 3  # the game ends after the bad move of round 2
    assert guard.reason == "non-finite G loss" and torch.isnan(run.weights()).all()
    assert guard.rollback(step=3) == 0
    assert guard.reason is None and guard.rollbacks == 1
    assert torch.equal(run.weights(), start) and run.opt.state_dict()["state"] == adam_state == {}


def test_remember_takes_finite_states_only():
    run = Run()
    guard = DivergenceGuard(run, [run.model])
    run.play(guard, rounds=2)
    good = guard.remember(step=2)
    assert good is not None and torch.equal(good["model"]["weight"], run.model.weight.detach())
    after_two = run.weights()
    run.play(guard, rounds=3, start=2)
    with torch.no_grad():
        run.model.bias.fill_(math.inf)
    assert guard.remember(step=3) is None and guard.reason == "non-finite weights"
    assert guard.rollback(step=3) == 2 and torch.equal(run.weights(), after_two)


def test_a_limit_names_the_reading_and_holds_for_its_role_only():
    run = Run()
    reading = [0.5]
    limit = Limit("runaway output", "mean |out|", lambda: reading[0], high=1.0, role="outer")
    guard = DivergenceGuard(run, [run.model], limits=[limit])
    assert run.play(guard, rounds=2) == 2 and guard.reason is None  # at the limit or below: goes on
    reading[0] = 2.5
    assert run.play(guard, rounds=4, start=2) == 3
    assert guard.reason == "runaway output (mean |out| 2.5)"
    inner_only = DivergenceGuard(run, [run.model], limits=[Limit("x", "y", lambda: 2.5, high=1.0, role="inner")])
    assert run.play(inner_only, rounds=6, start=3) == 6 and inner_only.reason is None  # no inner player here


def test_skip_nonfinite_skips_the_bad_move_and_keeps_playing():
    run = Run()
    guard = DivergenceGuard(run, [run.model], skip_nonfinite=True)
    seen = []

    class Watch(Hook):
        def outer_step(self, r, loss):
            seen.append(run.weights())

    player = Player(trainable_params(run.model), OptimizerStep(run.opt))
    scales = iter([1.0, math.nan, 1.0])
    assert play(outer=player, outer_loss=lambda: run.model(run.x).mean() * next(scales), rounds=3,
                hooks=[guard, Watch()]) == 3
    assert guard.skipped == 1 and guard.reason is None and guard.rollbacks == 0
    assert torch.equal(seen[1], seen[0]) and not torch.equal(seen[2], seen[1])  # round 1 did not move
    assert torch.isfinite(run.weights()).all()


def test_the_guard_gives_up_after_max_rollbacks_with_the_last_good_state_restored():
    run = Run()
    guard = DivergenceGuard(run, [run.model], max_rollbacks=2, name="toy training")
    start = run.weights()
    for attempt in range(3):
        run.play(guard, rounds=4, poison_at=1)
        if attempt < 2:
            assert guard.rollback(step=2) == 0
    message = r"toy training diverged 3 times \(non-finite outer loss\); gave up at step 2 and restored the last good"
    with pytest.raises(RuntimeError, match=message + r" state, step 0"):
        guard.rollback(step=2)
    assert torch.equal(run.weights(), start)


def test_the_guard_rejects_bad_settings_and_a_rollback_without_divergence():
    run = Run()
    with pytest.raises(ValueError, match="max_rollbacks must be a finite integer >= 0"):
        DivergenceGuard(run, max_rollbacks=-1)
    with pytest.raises(RuntimeError, match="saw no divergence"):
        DivergenceGuard(run).rollback(step=0)
