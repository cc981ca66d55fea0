"""The engine: ascent climbs, descent falls, the k:1 schedule, stopping, and no stray .grad."""
import pytest
import torch

from advkit.core import Hook, L2Step, LinfBall, MomentumStep, OptimizerStep, Player, SignStep, frozen, play


def quadratic(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Concave objective with its maximum at ``target``: -||p - target||^2."""
    return -((p - target) ** 2).sum()


@pytest.mark.parametrize("make_step", [lambda p: SignStep(0.01), lambda p: L2Step(0.05), lambda p: MomentumStep(0.01),
                                       lambda p: OptimizerStep(torch.optim.SGD([p], lr=0.05))])
def test_ascent_raises_and_descent_lowers_the_objective(make_step):
    target = torch.tensor([[0.3, -0.2, 0.5]])
    for maximize in (True, False):
        p = torch.zeros(1, 3, requires_grad=True)
        player = Player([p], make_step(p), maximize=maximize)
        before = quadratic(p, target).item()
        play(player, lambda p=p: quadratic(p, target), k=5)
        after = quadratic(p, target).item()
        assert (after > before) if maximize else (after < before)
        assert p.grad is None


def test_projection_keeps_the_player_feasible_every_step():
    x = torch.full((2, 4), 0.5)
    p = x.clone().requires_grad_(True)
    seen = []

    class Spy(Hook):
        def inner_step(self, r, i, loss):
            seen.append((p.detach() - x).abs().max().item())

    play(Player([p], SignStep(0.3), LinfBall(x, 0.1), maximize=True), lambda: (p * 3).sum(), k=4, hooks=[Spy()])
    assert len(seen) == 4 and max(seen) <= 0.1 + 1e-7


def test_schedule_runs_exactly_k_inner_moves_per_outer_move():
    a = torch.zeros(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    calls: list[str] = []

    def inner_loss():
        calls.append("inner")
        return (a * b - a ** 2).sum()

    def outer_loss():
        calls.append("outer")
        return (a * b + b ** 2).sum()

    done = play(Player([a], SignStep(0.1), maximize=True), inner_loss,
                Player([b], SignStep(0.1)), outer_loss, rounds=3, k=5)
    assert done == 3
    assert calls == (["inner"] * 5 + ["outer"]) * 3


def test_outer_player_alone_and_resume_from_a_round():
    b = torch.ones(1, requires_grad=True)
    calls = []
    done = play(outer=Player([b], SignStep(0.1)), outer_loss=lambda: calls.append(1) or (b ** 2).sum(),
                rounds=5, start=2)
    assert done == 5 and len(calls) == 3
    assert torch.allclose(b.detach(), torch.tensor([0.7]))


def test_game_ends_when_an_objective_returns_none_or_a_hook_says_stop():
    p = torch.zeros(1, requires_grad=True)
    budget = iter(range(3))
    played = play(Player([p], SignStep(1.0), maximize=True),
                  lambda: p.sum() if next(budget, None) is not None else None, rounds=10)
    assert played == 3 and p.item() == 3.0

    class StopAfterTwo(Hook):
        def round_end(self, r):
            return r == 1

    q = torch.zeros(1, requires_grad=True)
    assert play(Player([q], SignStep(1.0), maximize=True), lambda: q.sum(), rounds=10, hooks=[StopAfterTwo()]) == 2
    assert q.item() == 2.0


def test_play_rejects_a_player_without_objective():
    p = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="^each player needs its objective: pass inner with inner_loss, outer with"):
        play(Player([p], SignStep(1.0)))
    with pytest.raises(ValueError, match="^play needs at least one player$"):
        play()


def test_zero_gradient_gives_zero_l2_and_momentum_steps():
    for step in (L2Step(0.5), MomentumStep(0.5, norm="l2")):
        p = torch.ones(2, 3)
        step([p], [torch.zeros(2, 3)], ascend=True)
        assert torch.equal(p, torch.ones(2, 3))


def test_frozen_restores_modes_and_flags_even_on_error():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout())
    model.train()
    model[0].bias.requires_grad_(False)
    with pytest.raises(RuntimeError, match="^boom$"):
        with frozen(model):
            assert not model.training and not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("boom")
    assert all(m.training for m in model.modules())
    assert model[0].weight.requires_grad and not model[0].bias.requires_grad
