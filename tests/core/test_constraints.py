"""Projections land inside their set and are idempotent (property tests)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advkit.core import Box, L2Ball, LinfBall, WeightClip, ball

TOL = 1e-5


def tensors(seed: int, shape=(4, 1, 5, 5), scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(shape, generator=g)
    point = center + scale * torch.randn(shape, generator=g)
    return center, point


def project(proj, t):
    out = t.clone()
    proj(out)
    return out


@pytest.mark.parametrize("norm,radius", [("linf", 2.0), ("l2", 5.0)])
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0), scale=st.floats(0.0, 5.0))
def test_ball_and_box_lands_inside_and_is_idempotent(norm, radius, seed, frac, scale):
    center, point = tensors(seed, scale=scale)
    eps = frac * radius
    proj = ball(norm, center, eps) & Box(0.0, 1.0)
    once = project(proj, point)
    dist = (once - center).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)
    assert (dist <= eps + TOL).all()
    assert once.min() >= 0 and once.max() <= 1
    twice = project(proj, once)
    assert torch.equal(twice, once) if norm == "linf" else torch.allclose(twice, once, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_linf_projection_is_the_nearest_point(seed):
    """Clamping is the exact Euclidean projection onto a box: no sampled feasible point is closer."""
    center, point = tensors(seed, shape=(1, 6))
    proj = LinfBall(center, 0.2) & Box(0.0, 1.0)
    best = project(proj, point)
    g = torch.Generator().manual_seed(seed + 1)
    candidates = project(proj, center + 0.2 * (2 * torch.rand(200, 6, generator=g) - 1))
    assert (candidates - point).norm(dim=1).min() >= (best - point).norm() - 1e-6


def test_per_sample_eps_bounds_each_sample_by_its_own_radius():
    center, point = tensors(0, scale=10.0)
    eps = torch.tensor([0.0, 0.1, 0.5, 2.0])
    for norm in ("linf", "l2"):
        out = project(ball(norm, center, eps), point)
        dist = (out - center).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)
        assert torch.allclose(dist, eps, atol=1e-5), norm


def test_l2_ball_at_zero_radius_returns_center_without_nan():
    center, point = tensors(1)
    out = project(L2Ball(center, 0.0), center.clone())
    assert torch.equal(out, center)
    assert torch.isfinite(project(L2Ball(center, 0.0), point)).all()


def test_weight_clip_and_unknown_norm():
    w = torch.tensor([-1.0, -0.005, 0.2])
    WeightClip(0.01)(w)
    assert torch.equal(w, torch.tensor([-0.01, -0.005, 0.01]))
    with pytest.raises(ValueError, match="^norm must be one of 'linf', 'l2', 'l1'; got 'l3'$"):
        ball("l3", w, 1.0)
