"""The engine's events: before_update can skip one move and the game goes on; hooks see detached losses."""
import torch

from advkit.core import Hook, Player, SignStep, play


class Recorder(Hook):
    """Records every event with its loss; skips the moves listed in ``skip`` as (round, role)."""

    def __init__(self, skip=()):
        self.skip, self.events = set(skip), []

    def before_update(self, r, role, loss):
        self.events.append(("before", r, role, loss))
        return (r, role) in self.skip

    def inner_step(self, r, i, loss):
        self.events.append(("inner", r, "inner", loss))

    def outer_step(self, r, loss):
        self.events.append(("outer", r, "outer", loss))


def two_player_game(hook: Hook, rounds: int = 3):
    """a climbs a.sum() (+0.1 a move), b descends b.sum() (-0.1 a move); returns a, b and the rounds played,
    recording the values each player had after every move."""
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    after = []

    class After(Hook):
        def inner_step(self, r, i, loss):
            after.append(("a", r, round(a.item(), 6)))

        def outer_step(self, r, loss):
            after.append(("b", r, round(b.item(), 6)))

    played = play(Player([a], SignStep(0.1), maximize=True), lambda: a.sum() * 2, Player([b], SignStep(0.1)),
                  lambda: b.sum() * 3, rounds=rounds, hooks=[hook, After()])
    return a, b, played, after


def test_before_update_true_skips_that_move_and_the_game_goes_on():
    a, b, played, after = two_player_game(Recorder(skip={(1, "inner"), (2, "outer")}))
    assert played == 3
    # a moves in rounds 0 and 2 only, b in rounds 0 and 1 only; every move's event still fires
    assert after == [("a", 0, 0.1), ("b", 0, -0.1), ("a", 1, 0.1), ("b", 1, -0.2), ("a", 2, 0.2), ("b", 2, -0.2)]
    assert round(a.item(), 6) == 0.2 and round(b.item(), 6) == -0.2


def test_before_update_sees_each_move_first_with_its_role():
    hook = Recorder()
    two_player_game(hook, rounds=2)
    order = [(kind, r, role) for kind, r, role, _ in hook.events]
    assert order == [("before", 0, "inner"), ("inner", 0, "inner"), ("before", 0, "outer"), ("outer", 0, "outer"),
                     ("before", 1, "inner"), ("inner", 1, "inner"), ("before", 1, "outer"), ("outer", 1, "outer")]


def test_events_receive_detached_losses_with_the_objectives_values():
    hook = Recorder()
    two_player_game(hook, rounds=2)
    assert hook.events and all(loss.requires_grad is False and loss.grad_fn is None for *_, loss in hook.events)
    # the loss is taken before the move: a = 0.1 r and b = -0.1 r at the start of round r's moves
    values = [(kind, r, round(loss.item(), 6)) for kind, r, _, loss in hook.events]
    assert values == [("before", 0, 0.0), ("inner", 0, 0.0), ("before", 0, 0.0), ("outer", 0, 0.0),
                      ("before", 1, 0.2), ("inner", 1, 0.2), ("before", 1, -0.3), ("outer", 1, -0.3)]


def test_a_skipped_move_leaves_no_gradient_anywhere():
    p = torch.zeros(2, requires_grad=True)

    class SkipAll(Hook):
        def before_update(self, r, role, loss):
            return True

    assert play(Player([p], SignStep(1.0), maximize=True), lambda: (p * 2).sum(), rounds=4, hooks=[SkipAll()]) == 4
    assert torch.equal(p.detach(), torch.zeros(2)) and p.grad is None
