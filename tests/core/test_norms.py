"""The norm geometries: each one's step, ball, random start, distance, covering radius and least-norm
direction do what the norm means; an unknown name fails in one place, naming the known ones."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advkit.core import NORMS, Box, L1Ball, MomentumStep, Norm, ball, get_norm

#: The exponent p of each norm and that of its dual norm, q (1/p + 1/q = 1).
EXPONENTS = {"linf": (math.inf, 1.0), "l2": (2.0, 2.0), "l1": (1.0, math.inf)}
TOL = 1e-5


def vector_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    return torch.linalg.vector_norm(t.flatten(1), ord=p, dim=1)


def seeded_draw(seed: int, n: int, dtype=torch.float32):
    """A ``draw`` like an attack run's: one row of ``row_shape`` per sample from one generator."""
    g = torch.Generator().manual_seed(seed)
    return lambda row_shape, fill: fill(torch.empty((n, *row_shape), dtype=dtype), g)


def test_the_registry_holds_one_geometry_per_name_and_is_the_only_way_in():
    assert sorted(NORMS) == ["l1", "l2", "linf"]
    for name, geometry in NORMS.items():
        assert isinstance(geometry, Norm) and geometry.name == name
        assert get_norm(name) is geometry and get_norm(geometry) is geometry


@pytest.mark.parametrize("bad", ["l3", "Linf", "", None, 2])
def test_an_unknown_norm_fails_naming_the_known_ones(bad):
    with pytest.raises(ValueError, match=r"^norm must be one of 'linf', 'l2', 'l1'; got "):
        get_norm(bad)


@pytest.mark.parametrize("bad", ["l3", "L2"])
def test_every_norm_argument_rejects_an_unknown_name(bad):
    """Before the geometry, another string silently meant L2 in the momentum step."""
    for build in (lambda: MomentumStep(0.1, norm=bad), lambda: ball(bad, torch.zeros(1, 3), 0.1)):
        with pytest.raises(ValueError, match="norm must be one of 'linf', 'l2', 'l1'"):
            build()


@pytest.mark.parametrize("name", sorted(NORMS))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(1e-3, 2.0))
def test_step_moves_alpha_in_the_norm_along_the_steepest_ascent(name, seed, alpha):
    """Each sample moves by exactly alpha in the norm, and the first-order gain g . d reaches
    alpha * ||g||_q (the dual norm), the most any move of that size can gain (L1: the sparse step
    on one coordinate; the default share is tested below)."""
    geometry, (p, q) = get_norm(name), EXPONENTS[name]
    g = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = torch.full_like(g, 0.5)  # inside the box: every coordinate can move
    (geometry.step(alpha, sparsity=1e-9) if name == "l1" else geometry.step(alpha))([x], [g], ascend=True)
    x -= 0.5
    assert torch.allclose(vector_norm(x, p), torch.full((5,), alpha, dtype=g.dtype), rtol=1e-9)
    gain = (g * x).flatten(1).sum(1)
    assert torch.allclose(gain, alpha * vector_norm(g, q), rtol=1e-9)
    # no random move of the same size gains more
    other = torch.randn(200, *g.shape[1:], generator=torch.Generator().manual_seed(seed + 1), dtype=g.dtype)
    other = other / vector_norm(other, p).view(-1, 1, 1, 1) * alpha
    assert bool(((other.unsqueeze(1) * g).flatten(2).sum(2) <= gain + 1e-9).all())


@pytest.mark.parametrize("name", sorted(NORMS))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 3.0), scale=st.floats(0.0, 4.0))
def test_ball_moves_a_point_to_the_nearer_of_itself_and_the_sphere(name, seed, eps, scale):
    """Projected, a point keeps its distance when inside and ends exactly at eps when outside; in
    the box too, the result is within eps."""
    geometry = get_norm(name)
    gen = torch.Generator().manual_seed(seed)
    center = torch.rand(4, 1, 5, 5, generator=gen)
    point = center + scale * torch.randn(center.shape, generator=gen)
    out = point.clone()
    geometry.ball(center, eps)(out)
    before, after = geometry.distance(point - center), geometry.distance(out - center)
    assert torch.allclose(after, before.clamp_max(eps), atol=TOL)
    boxed = point.clone()
    (geometry.ball(center, eps) & Box(0.0, 1.0))(boxed)
    assert bool((geometry.distance(boxed - center) <= eps + TOL).all()) and 0 <= boxed.min() and boxed.max() <= 1


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("shape", [(64, 1, 6, 6), (64, 20)], ids=["images", "flat"])
def test_random_start_lies_in_the_ball_and_box_and_follows_the_draw(name, shape):
    geometry, eps = get_norm(name), 0.3
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    starts = [geometry.random_start(x, eps, seeded_draw(seed, len(x))) for seed in (1, 1, 2)]
    for start in starts:
        assert start.shape == x.shape and start.dtype == x.dtype
        assert bool((geometry.distance(start - x) <= eps + 1e-6).all())
        assert 0 <= float(start.min()) and float(start.max()) <= 1
    # the draw alone decides the start (no other random source)
    assert torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], starts[2])


def test_random_delta_fills_the_ball():
    """Before clipping: L-inf coordinates uniform in [-eps, eps] (mean |d| = eps/2); L2 radii uniform
    in [0, eps] (mean eps/2) along a uniform direction (mean of each coordinate 0)."""
    eps, n = 0.5, 4000
    x = torch.full((n, 1, 4, 4), 0.5)
    linf = get_norm("linf").random_delta(x, eps, seeded_draw(0, n))
    assert float(linf.abs().max()) <= eps and abs(float(linf.abs().mean()) - eps / 2) < 0.01
    l2 = get_norm("l2").random_delta(x, eps, seeded_draw(0, n))
    radii = vector_norm(l2, 2)
    assert float(radii.max()) <= eps + 1e-6 and abs(float(radii.mean()) - eps / 2) < 0.015  # sd eps/sqrt(12n) = 0.002
    assert float(l2.flatten(1).mean(0).abs().max()) < 0.01


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (6, 17)], ids=["images", "flat"])
def test_distance_is_the_per_sample_norm(name, shape):
    delta = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(get_norm(name).distance(delta), vector_norm(delta, EXPONENTS[name][0]))


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("dim", [1, 10, 784])
def test_covering_radius_reaches_the_far_corner_of_the_box_and_no_further(name, dim):
    geometry = get_norm(name)
    x = torch.rand(100, dim, generator=torch.Generator().manual_seed(dim))
    far = (x < 0.5).to(x.dtype)  # the corner farthest from each point
    assert bool((geometry.distance(far - x) <= geometry.covering_radius(dim) + 1e-6).all())
    corner = torch.zeros(1, dim)
    assert math.isclose(float(geometry.distance(1 - corner)), geometry.covering_radius(dim), rel_tol=1e-6)


def test_only_a_size_free_covering_radius_is_a_whole_range_eps():
    assert get_norm("linf").whole_range_eps == get_norm("linf").covering_radius(3) == 1.0
    assert get_norm("l2").whole_range_eps is None


@pytest.mark.parametrize("name", sorted(NORMS))
def test_least_norm_direction_reaches_a_hyperplane_with_the_least_norm(name):
    """Without the box, the least-norm d with w . d = c has norm |c| / ||w||_q: moving along
    sign(w) * least_norm_direction(|w|) reaches the plane at exactly that norm."""
    geometry, (_, q) = get_norm(name), EXPONENTS[name]
    gen = torch.Generator().manual_seed(0)
    w, c = torch.randn(50, 30, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen, dtype=torch.float64)
    profile = torch.sign(w) * geometry.least_norm_direction(w.abs())
    d = profile * (c / (w * profile).sum(1))[:, None]
    assert torch.allclose((w * d).sum(1), c)
    assert torch.allclose(geometry.distance(d), c.abs() / vector_norm(w, q))


def test_momentum_step_takes_a_geometry_or_its_name():
    g = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    for name in NORMS:
        by_name, by_geometry = torch.zeros(3, 8), torch.zeros(3, 8)
        MomentumStep(0.1, norm=name)([by_name], [g], ascend=True)
        MomentumStep(0.1, norm=get_norm(name))([by_geometry], [g], ascend=True)
        assert torch.equal(by_name, by_geometry)
        assert torch.allclose(get_norm(name).distance(by_name), torch.full((3,), 0.1))


@pytest.mark.parametrize("name", sorted(NORMS))
def test_squash_maps_smoothly_onto_the_open_unit_ball_keeping_the_direction(name):
    """AdvGAN's output layer: h lands inside the unit ball (strictly, until tanh rounds to 1), small
    h is nearly kept (tanh(t) ~ t), a large one reaches the sphere, the direction of each sample stays."""
    geometry = get_norm(name)
    h = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for scale in (1e-4, 1.0, 1e3):
        out = geometry.squash(h * scale)
        # strictly inside while tanh is below 1 (L1 norms of h are about 26: tanh rounds to 1 at scale 1)
        strict = scale < 1 or name != "l1"
        inside = geometry.distance(out) < 1 if strict and scale <= 1 else geometry.distance(out) <= 1 + 1e-12
        assert inside.all() and torch.equal(torch.sign(out), torch.sign(h))
    assert torch.allclose(geometry.squash(h * 1e-4), h * 1e-4, rtol=1e-6)
    assert torch.allclose(geometry.distance(geometry.squash(h * 1e3)), torch.ones(6, dtype=h.dtype))
    if name == "l2":  # one sample's direction is kept whole: a positive multiple of h
        ratio = geometry.squash(h).flatten(1) / h.flatten(1)
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))


@pytest.mark.parametrize("name", sorted(NORMS))
def test_l2_radius_is_the_largest_l2_norm_in_the_unit_ball(name):
    """A point of the unit ball with the largest L2 norm (a cube's corner; a sphere's point) has L2
    norm l2_radius, and random points of the ball never exceed it."""
    geometry, dim = get_norm(name), 12
    toward = torch.full((1, dim), 1e3, dtype=torch.float64)  # towards a corner of the cube
    if name == "l1":
        toward[0, 1:] = 0  # towards a vertex of the L1 ball
    far = geometry.squash(toward)
    assert math.isclose(float(vector_norm(far, 2.0)), geometry.l2_radius(dim), rel_tol=1e-9)
    inside = geometry.random_delta(torch.zeros(200, dim), 1.0, seeded_draw(0, 200))
    assert (vector_norm(inside, 2.0) <= geometry.l2_radius(dim) + TOL).all()


def bisection_l1_box(x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """A slow reference for the projection of y onto the L1 ball around x and [0, 1]: soft thresholding
    clipped to the box, its threshold found by 200 bisections (float64)."""
    d = y - x
    a, room = d.abs(), torch.where(d > 0, 1 - x, x)
    rows = []
    for ai, ri in zip(a, room, strict=True):
        shrink = lambda lam, ai=ai, ri=ri: (ai - lam).clamp_min(0).minimum(ri)  # noqa: E731
        lo, hi = 0.0, float(ai.max())
        if float(shrink(0.0).sum()) <= eps:
            hi = 0.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float(shrink(mid).sum()) > eps else (lo, mid)
        rows.append(shrink(hi))
    return x + torch.sign(d) * torch.stack(rows)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 6.0), scale=st.floats(0.0, 3.0), dim=st.integers(1, 12))
def test_l1_projection_with_the_box_is_exact(seed, eps, scale, dim):
    """L1Ball & Box matches a bisection reference, lands in both sets, and no feasible point is closer."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(6, dim, generator=gen, dtype=torch.float64)
    x[:, : dim // 3] = 0.0  # pixels at the bounds, where the box cuts a move off
    y = x + scale * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    out = y.clone()
    (get_norm("l1").ball(x, eps) & Box(0.0, 1.0))(out)
    assert torch.allclose(out, bisection_l1_box(x, y, eps), atol=1e-9)
    assert bool(((out - x).abs().sum(1) <= eps * (1 + 1e-12) + 1e-12).all()) and 0 <= out.min() and out.max() <= 1
    # optimality: feasible points drawn around the projection are never closer to y
    near = out.unsqueeze(1) + 0.3 * torch.randn(6, 300, dim, generator=gen, dtype=torch.float64)
    flat = near.reshape(-1, dim)
    (L1Ball(x.repeat_interleave(300, 0), eps) & Box(0.0, 1.0))(flat)
    others = flat.view(6, 300, dim)
    assert bool(((others - y.unsqueeze(1)).norm(dim=2) >= (out - y).norm(dim=1, keepdim=True) - 1e-9).all())


def test_l1_projection_takes_per_sample_eps_and_images():
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    y = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    eps = torch.tensor([0.0, 0.5, 2.0, 100.0])
    out = y.clone()
    (get_norm("l1").ball(x, eps) & Box(0.0, 1.0))(out)
    dist = get_norm("l1").distance(out - x)
    assert torch.equal(out[0], x[0]) and torch.allclose(dist[1:3], eps[1:3], rtol=1e-5)
    assert torch.allclose(out[3], y[3].clamp(0, 1))  # inside the ball: only the box acts


def test_l1_default_step_moves_alpha_on_the_largest_share_of_coordinates():
    """PGD's L1 step: alpha in L1, spread evenly over the sparsity share of largest |g| (2% by default)."""
    g = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.full_like(g, 0.5)
    get_norm("l1").step(0.7)([x], [g], ascend=True)
    x -= 0.5
    moved = x != 0
    assert moved.sum(1).tolist() == [20, 20, 20]
    assert torch.allclose(x.abs().sum(1), torch.full((3,), 0.7, dtype=g.dtype))
    assert bool((g.abs()[moved].view(3, 20).amin(1) >= g.abs().masked_fill(moved, 0).amax(1)).all())
    assert torch.equal(torch.sign(x[moved]), torch.sign(g[moved]))


@pytest.mark.parametrize("ascend", [True, False])
def test_the_l1_step_moves_only_coordinates_the_box_lets_move(ascend):
    """A coordinate on a face of [0, 1] whose step points out of the box is passed over: the step's
    share goes to the largest gradients that can move (without the box it would be spent on the
    two largest, then projected away)."""
    g = torch.tensor([[5.0, -4.0, 3.0, -2.0, 1.0]], dtype=torch.float64)
    sign = 1 if ascend else -1
    x = torch.tensor([[1.0, 0.0, 0.5, 0.5, 0.5]] if ascend else [[0.0, 1.0, 0.5, 0.5, 0.5]], dtype=torch.float64)
    start = x.clone()
    get_norm("l1").step(0.2, sparsity=0.4)([x], [g], ascend=ascend)  # two coordinates move
    assert torch.allclose(x - start, torch.tensor([[0, 0, 0.1 * sign, -0.1 * sign, 0]], dtype=g.dtype))
    y = start.clone()
    get_norm("l1").step(0.2, sparsity=0.4)([y], [-g], ascend=ascend)  # the same faces, now allowed inward
    assert torch.allclose(y - start, torch.tensor([[-0.1 * sign, 0.1 * sign, 0, 0, 0]], dtype=g.dtype))
