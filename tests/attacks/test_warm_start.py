"""Warm starts: ``run(x_init=...)`` starts the search there (projected into the ball), for the
attacks that start from a point, and is refused by the others."""
import pytest
import torch

from advkit.attacks import APGD, APGDT, FGSM, PGD


@pytest.mark.parametrize("make", [lambda m: PGD(m, steps=10), lambda m: APGD(m, steps=10)], ids=["pgd", "apgd"])
def test_a_fooling_start_is_kept_after_one_gradient_pass(trained_cnn, test_batch, make):
    x, y = test_batch[0][:32], test_batch[1][:32]
    atk = make(trained_cnn)
    small = atk.run(x, y, eps=0.15, seed=0)
    fooled = small.success & (trained_cnn(x).argmax(1) == y)
    assert int(fooled.sum()) >= 5
    xs, ys, starts = x[fooled], y[fooled], small.x_adv[fooled]
    res = atk.run(xs, ys, eps=0.2, x_init=starts)
    assert bool(res.success.all())
    assert torch.equal(res.x_adv, starts)  # inside the larger ball already: nothing moved
    assert res.backwards == len(xs)  # the start is judged by the first step's forward, then everyone stops


def test_a_start_outside_the_ball_is_projected_and_replaces_the_random_start(trained_cnn, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    atk = PGD(trained_cnn, steps=3)
    far = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    res = atk.run(x, y, eps=0.05, x_init=far, check_success=False)
    assert float((res.x_adv - x).abs().max()) <= 0.05 + 1e-6
    assert 0 <= float(res.x_adv.min()) and float(res.x_adv.max()) <= 1
    # the start decides the result: different starts, different results, whatever the seed
    again = atk.run(x, y, eps=0.05, x_init=far, seed=123, check_success=False)
    fresh = atk.run(x, y, eps=0.05, check_success=False)
    assert torch.equal(res.x_adv, again.x_adv)
    assert not torch.equal(res.x_adv, fresh.x_adv)


def test_warm_start_errors_name_the_argument(trained_cnn, test_batch):
    x, y = test_batch[0][:4], test_batch[1][:4]
    for atk in (FGSM(trained_cnn), APGDT(trained_cnn, steps=2)):
        with pytest.raises(ValueError, match="x_init: .* does not start from a point"):
            atk.run(x, y, eps=0.1, x_init=x)
    with pytest.raises(ValueError, match="x_init must have x's shape"):
        PGD(trained_cnn, steps=2).run(x, y, eps=0.1, x_init=x[:3])
    with pytest.raises(ValueError, match=r"x_init must lie in \[0, 1\]"):
        PGD(trained_cnn, steps=2).run(x, y, eps=0.1, x_init=x + 2)
