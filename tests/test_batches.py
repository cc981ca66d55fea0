"""The one batch stream: a new permutation per epoch, and an exact resume from a saved state."""
import pytest
import torch

from advkit.batches import BatchOrder, batch_stream

N, SIZE = 23, 5  # 4 batches an epoch, 3 samples left out of each


def take(order: BatchOrder, count: int) -> list[list[int]]:
    return [order.next_batch(N, SIZE).tolist() for _ in range(count)]


def test_each_epoch_is_a_new_permutation_in_full_batches():
    batches = take(BatchOrder(seed=0), 12)
    for epoch in range(3):
        seen = sum(batches[4 * epoch:4 * epoch + 4], [])
        assert all(len(b) == SIZE for b in batches) and len(set(seen)) == 4 * SIZE and set(seen) <= set(range(N))
    assert batches[:4] != batches[4:8] != batches[8:]


def test_seeded_order_is_a_function_of_the_seed_and_the_epoch_alone():
    """An epoch's order is the same whether or not the epochs before it were drawn, and no two (seed,
    epoch) pairs share one (as seed + epoch would: seed 0's epoch 1 would be seed 1's epoch 0)."""
    orders = set()
    for seed in range(5):
        straight = take(BatchOrder(seed=seed), 20)  # epochs 0-4
        for epoch in range(5):
            fresh = BatchOrder(seed=seed)
            fresh.load_state_dict({"drawn": 4 * epoch})  # at the epoch's start, nothing drawn before
            assert take(fresh, 4) == straight[4 * epoch:4 * epoch + 4]
            orders.add(str(straight[4 * epoch:4 * epoch + 4]))
    assert len(orders) == 25


def test_an_order_on_a_generator_follows_that_generator():
    """The generator's state alone decides the batches, and drawing them advances it (the caller's other
    draws share the stream, as in train.fit)."""
    first = take(BatchOrder(generator=torch.Generator().manual_seed(7)), 8)
    shared = torch.Generator().manual_seed(7)
    assert take(BatchOrder(generator=shared), 8) == first
    assert not torch.equal(shared.get_state(), torch.Generator().manual_seed(7).get_state())
    assert take(BatchOrder(generator=torch.Generator().manual_seed(8)), 8) != first


@pytest.mark.parametrize("stop", [1, 4, 6, 9])
def test_a_restored_seeded_order_continues_exactly(stop):
    straight = take(BatchOrder(seed=3), 14)
    first = BatchOrder(seed=3)
    take(first, stop)
    state = first.state_dict()
    assert state == {"drawn": stop}
    fresh = BatchOrder(seed=3)
    fresh.load_state_dict(state)
    assert take(fresh, 14 - stop) == straight[stop:]


@pytest.mark.parametrize("stop", [1, 4, 6, 9])
def test_a_restored_generator_order_continues_exactly_with_the_generators_state(stop):
    """The generator also serves other draws between batches (augmentation), as in train.fit."""
    def run(order, gen, count):
        out = []
        for _ in range(count):
            out.append(order.next_batch(N, SIZE).tolist())
            torch.rand(3, generator=gen)  # another user of the same generator
        return out

    gen = torch.Generator().manual_seed(1)
    straight = run(BatchOrder(generator=gen), gen, 14)
    gen = torch.Generator().manual_seed(1)
    first = BatchOrder(generator=gen)
    run(first, gen, stop)
    state, gen_state = first.state_dict(), gen.get_state()
    gen = torch.Generator()
    gen.set_state(gen_state)
    fresh = BatchOrder(generator=gen)
    fresh.load_state_dict(state)
    assert run(fresh, gen, 14 - stop) == straight[stop:]


def test_stream_gathers_aligned_batches_and_follows_a_restored_order():
    x, y = torch.arange(N).float().view(N, 1) * 10, torch.arange(N)
    order = BatchOrder(seed=0)
    stream = batch_stream((x, y), SIZE, order, torch.device("cpu"))
    batches = [next(stream) for _ in range(3)]
    assert all(torch.equal(bx[:, 0], by.float() * 10) and len(by) == SIZE for bx, by in batches)
    order.load_state_dict({"drawn": 1})
    assert torch.equal(next(stream)[1], batches[1][1])  # a rollback of the order rewinds the stream
    assert [len(b) for b in next(batch_stream((y[:3],), SIZE, BatchOrder(seed=0), torch.device("cpu")))] == [3]


def test_order_takes_exactly_one_of_seed_or_generator():
    with pytest.raises(ValueError, match="exactly one of seed .* or generator"):
        BatchOrder()
    with pytest.raises(ValueError, match="exactly one of seed"):
        BatchOrder(seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="seed must be an integer"):
        BatchOrder(seed=1.5)
