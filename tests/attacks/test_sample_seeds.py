"""Per-sample seeds: a sample's random start, and so its attack, does not depend on its batch."""
import pytest
import torch

from advkit.attacks import PGD


def test_per_sample_seeds_make_each_result_independent_of_its_batch(trained_cnn, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    seeds = torch.arange(16) + 100
    for norm, eps in (("linf", 0.1), ("l2", 1.5)):
        atk = PGD(trained_cnn, eps=eps, steps=5, norm=norm)
        whole = atk.run(x, y, seed=seeds)
        part = atk.run(x[5:], y[5:], seed=seeds[5:])
        assert torch.equal(whole.success[5:], part.success)
        assert torch.allclose(whole.x_adv[5:], part.x_adv, atol=1e-5)
        other = atk.run(x, y, seed=seeds + 1)  # other seeds, other starts
        assert not torch.allclose(whole.x_adv, other.x_adv)


def test_per_sample_seeds_must_match_the_batch(trained_cnn, test_batch):
    x, y = test_batch[0][:4], test_batch[1][:4]
    with pytest.raises(ValueError, match="seed must be"):
        PGD(trained_cnn, eps=0.1, steps=2).run(x, y, seed=torch.arange(3))
