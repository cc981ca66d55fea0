"""The min-max engine: players, one update, and the alternating k:1 loop.

Every loop in advkit that climbs or descends a game runs through :func:`play`: an attack (one
inner player, the perturbation), plain or adversarial training (an outer player, the network),
and a GAN (the discriminator climbs k = n_critic times, then the generator descends once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Optional

import torch
from torch import Tensor

from .constraints import Identity, Projection
from .steps import StepRule

Objective = Callable[[], Optional[Tensor]]


@dataclass
class Player:
    """One side of the game: its parameters, how they step, and the set they must stay in."""

    params: list[Tensor]
    step: StepRule
    project: Projection = field(default_factory=Identity)
    maximize: bool = False

    def update(self, loss: Tensor) -> None:
        """One move: gradients by ``autograd.grad`` (nobody else's ``.grad`` is touched),
        a step up or down, then the projection back onto the feasible set."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        self.move([torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)])

    def move(self, grads: list[Tensor]) -> None:
        """The step up or down along ``grads``, then the projection back onto the feasible set."""
        with torch.no_grad():
            self.step(self.params, grads, self.maximize)
            for p in self.params:
                self.project(p)


class BackwardPlayer(Player):
    """A :class:`Player` whose move takes its gradients from ``backward`` restricted to its own
    parameters: the path on which DistributedDataParallel's hooks average them over the ranks of a
    process group (``autograd.grad`` bypasses them and would leave each rank its own gradient).
    ``.grad`` is cleared before and after, as the plain player leaves it."""

    def update(self, loss: Tensor) -> None:
        for p in self.params:
            p.grad = None
        torch.autograd.backward(loss, inputs=self.params)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        self.move(grads)


Role = Literal["inner", "outer"]


class Hook:
    """Callbacks around the loop; each receives the move's loss detached from its graph.

    ``round_start``, ``inner_step``, ``outer_step`` and ``round_end`` returning True end the game after
    that event. ``before_update`` is the exception: it runs after a player's objective, before its
    move, and returning True there SKIPS that one move (the parameters stay as they are) while the
    game goes on; the move's ``inner_step``/``outer_step`` event still follows, with the same loss.
    """

    def round_start(self, r: int) -> bool | None: ...

    def before_update(self, r: int, role: Role, loss: Tensor) -> bool | None: ...

    def inner_step(self, r: int, i: int, loss: Tensor) -> bool | None: ...

    def outer_step(self, r: int, loss: Tensor) -> bool | None: ...

    def round_end(self, r: int) -> bool | None: ...


def play(
    inner: Player | None = None,
    inner_loss: Objective | None = None,
    outer: Player | None = None,
    outer_loss: Objective | None = None,
    *,
    rounds: int = 1,
    k: int = 1,
    hooks: Iterable[Hook] = (),
    start: int = 0,
) -> int:
    """Play rounds ``start .. rounds-1``: each is ``k`` inner (max) moves, then one outer (min) move.

    An objective returns the scalar to differentiate, or None when its player has nothing left to
    do (every sample of an attack already fooled): the game then ends. ``hooks`` see every event
    (:class:`Hook`) in their order; all of them are called even when one returns True. Returns the number of
    rounds completed (``start`` counts as completed), so an interrupted run resumes from there.
    """
    if (inner is None) != (inner_loss is None) or (outer is None) != (outer_loss is None):
        raise ValueError("each player needs its objective: pass inner with inner_loss, outer with outer_loss")
    if inner is None and outer is None:
        raise ValueError("play needs at least one player")
    if k < 1 or rounds < 0:
        raise ValueError(f"k must be >= 1 and rounds >= 0, got k={k}, rounds={rounds}")
    hooks = list(hooks)

    def fire(event: str, *args) -> bool:
        return any([bool(getattr(h, event)(*args)) for h in hooks])

    def move(player: Player, role: Role, loss: Tensor, r: int) -> Tensor:
        """The player's update unless a hook skips it; the detached loss for the step's event."""
        seen = loss.detach()
        if not fire("before_update", r, role, seen):
            player.update(loss)
        return seen

    for r in range(start, rounds):
        if fire("round_start", r):
            return r
        if inner is not None:
            for i in range(k):
                loss = inner_loss()
                if loss is None:
                    return r
                if fire("inner_step", r, i, move(inner, "inner", loss, r)):
                    return r + 1
        if outer is not None:
            loss = outer_loss()
            if loss is None:
                return r
            if fire("outer_step", r, move(outer, "outer", loss, r)):
                return r + 1
        if fire("round_end", r):
            return r + 1
    return max(rounds, start)


def trainable_params(*modules: torch.nn.Module) -> list[Tensor]:
    """The trainable parameters of ``modules``, in order (what an outer player moves)."""
    return [p for m in modules for p in m.parameters() if p.requires_grad]


__all__ = ["Player", "Hook", "Role", "play", "trainable_params", "Objective"]
