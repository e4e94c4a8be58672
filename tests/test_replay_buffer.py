"""Replay buffer: ring wrap-around, priorities, importance weights, threads, prefetch."""

import threading

import numpy as np
import pytest
from replay_streams import frame_obs, obs_key, push_tick, random_schedule, reference_transitions

from tempest_jax.replay import (
    NStepAccumulator,
    Prefetcher,
    ReplayBuffer,
    ReplayRatioLimiter,
)


def assert_batch_matches(batch, want):
    """Every sampled row is the reference transition named by its observation."""
    for i in range(len(batch.index)):
        w = want[obs_key(batch.obs[i])]
        assert obs_key(batch.next_obs[i]) == w.next
        assert int(batch.action[i]) == w.action and bool(batch.is_expert[i]) == w.expert
        assert batch.reward[i] == pytest.approx(w.ret, rel=1e-5, abs=1e-5)
        assert batch.discount[i] == pytest.approx(w.discount, rel=1e-6)


def assert_tree_matches_counts(buffer):
    live = buffer.tree.leaves > 0
    assert live.sum() == len(buffer)


@pytest.mark.parametrize("capacity,seed", [(61, 0), (128, 1), (500, 2)])
def test_ring_wraparound_never_yields_stale_successor(capacity, seed):
    rng = np.random.default_rng(seed)
    schedule = random_schedule(rng, num_streams=6, ticks=500,
                               idle_streams={0: range(100, 160)})  # stream 0 stalls
    want = reference_transitions(schedule, 12, 0.99, True)
    buffer = ReplayBuffer(capacity)
    acc = NStepAccumulator(6, first_serial=buffer.obs_written)
    for events in schedule:
        for emission in push_tick(acc, events):
            buffer.add(emission)
        if len(buffer):
            batch = buffer.sample(32, 0.5, rng)
            assert_batch_matches(batch, want)
            # Serials name slots that still hold them.
            assert (batch.index >= buffer.obs_written - capacity).all()
    assert buffer.obs_written > 3 * capacity
    assert_tree_matches_counts(buffer)
    # Every stored transition (not only sampled ones) points at its true successor.
    for slot in np.flatnonzero(buffer.tree.leaves > 0):
        w = want[obs_key(buffer.obs[slot])]
        assert obs_key(buffer.obs[buffer.next_slot[slot]]) == w.next


def test_stalled_stream_transitions_are_dropped_not_stale():
    buffer = ReplayBuffer(20)
    acc = NStepAccumulator(2, n_step=12, lookback=0)
    def push(ids, t):
        return buffer.add(acc.push(ids, np.stack([frame_obs(s, t) for s in ids]),
                                   [0] * len(ids), [1.0] * len(ids), [False] * len(ids),
                                   [False] * len(ids), [True] * len(ids)))
    for t in range(3):
        push([0, 1], t)
    for t in range(3, 40):  # stream 0 is silent while stream 1 wraps the ring twice
        push([1], t)
    push([0], 3)
    buffer.add(acc.truncate([0, 1]))
    assert buffer.stats()["dropped_stale"] == 3  # stream 0's starts at t=0..2 were overwritten
    for slot in np.flatnonzero(buffer.tree.leaves > 0):
        start, nxt = obs_key(buffer.obs[slot]), obs_key(buffer.obs[buffer.next_slot[slot]])
        assert nxt[0] == start[0] and nxt[1] > start[1]


def filled_buffer(capacity=1000, transitions=300, seed=0, **kw):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(capacity, **kw)
    acc = NStepAccumulator(4, n_step=3, lookback=0)
    t = 0
    while len(buffer) < transitions:
        buffer.add(acc.push(np.arange(4), rng.random((4, 195)), rng.integers(0, 44, 4),
                            rng.normal(size=4), np.zeros(4), rng.random(4) < 0.3, np.ones(4)))
        t += 1
    return buffer, acc, rng


def test_new_item_priority_rule():
    buffer = ReplayBuffer(100, alpha=0.5, new_priority_cap=3.0, death_priority_floor=5.0)
    acc = NStepAccumulator(3, n_step=1, gamma=0.9, lookback=0)
    obs = np.zeros((3, 195))
    buffer.add(acc.push([0, 1, 2], obs, [0, 0, 0], [0, 0, 0], [False] * 3, [False] * 3,
                        [True] * 3))
    # Empty buffer: max priority 1.0, raised to |hint|^α (no cap yet); a terminal hint is
    # floored at 5.0.
    buffer.add(acc.push([0, 1, 2], obs, [0, 0, 0], [0.0, 16.0, -1.0], [False, False, True],
                        [False] * 3, [True] * 3))
    leaves = buffer.tree.leaves
    np.testing.assert_allclose(sorted(leaves[leaves > 0]), [1.0, 5 ** 0.5, 4.0])
    mean = leaves.sum() / 3
    # Then: max priority (4.0) capped at 3 × mean; a large hint raises it, but only to the cap.
    emission = acc.push([0, 1], obs[:2], [0, 0], [0.0, 1e6], [False, False], [False] * 2,
                        [True] * 2)
    buffer.add(emission)
    np.testing.assert_allclose(buffer.tree.get(emission.start % 100),
                               [min(4.0, 3 * mean), 3 * mean])


def test_update_priorities_formula_duplicates_and_stale_serials():
    buffer, acc, rng = filled_buffer(capacity=64, transitions=60, alpha=0.7, priority_eps=0.01)
    batch = buffer.sample(16, 0.4, rng)
    index = np.r_[batch.index, batch.index[:3]]
    loss = np.r_[np.linspace(0, 2, 16), [5.0, 6.0, 7.0]]
    buffer.update_priorities(index, loss)
    final = dict(zip(index.tolist(), ((loss + 0.01) ** 0.7).tolist()))  # last wins
    for serial, p in final.items():
        assert buffer.tree.get(serial % 64) == pytest.approx(p)
    # Overwrite the whole ring: the old serials must not touch the new occupants.
    while buffer.obs_written < batch.index.max() + 64 + 1:
        buffer.add(acc.push(np.arange(4), rng.random((4, 195)), np.zeros(4), np.zeros(4),
                            np.zeros(4), np.zeros(4), np.ones(4)))
    before = buffer.tree.leaves.copy()
    buffer.update_priorities(batch.index, np.full(16, 1e6))
    np.testing.assert_array_equal(buffer.tree.leaves, before)
    with pytest.raises(ValueError, match="non-finite"):
        buffer.update_priorities(batch.index[:1], [np.nan])


def test_importance_weights_and_sample_many():
    buffer, _, rng = filled_buffer()
    batches = buffer.sample_many(5, 64, 0.6, rng)
    assert batches.obs.shape == (5, 64, 195) and batches.obs.dtype == np.float16
    assert batches.weight.shape == (5, 64) and batches.index.dtype == np.int64
    p = buffer.tree.get(batches.index % buffer.capacity)
    w = (len(buffer) * p / buffer.tree.total) ** -0.6
    np.testing.assert_allclose(batches.weight, w / w.max(axis=1, keepdims=True), rtol=1e-6)
    assert (batches.weight.max(axis=1) == 1.0).all()
    single = buffer.sample(64, 0.6, rng)
    assert single.obs.shape == (64, 195) and single.action.dtype == np.uint8


def test_pre_death_boost_multiplies_recent_priorities():
    buffer = ReplayBuffer(1000, pre_death_boost=2.0)
    acc = NStepAccumulator(2, n_step=1, lookback=3)
    def push(done):
        return acc.push([0, 1], np.zeros((2, 195)), [0, 0], [0.0, 0.0], [done, False],
                        [False, False], [True, True])
    for _ in range(6):
        buffer.add(push(False))
    before = buffer.tree.leaves.copy()
    emission = push(True)
    assert emission.boost.size == 3
    buffer.add(emission)
    after = buffer.tree.leaves
    boosted = emission.boost % 1000
    # The terminal transition itself is among the last 3 of stream 0; the other two were 1.0.
    np.testing.assert_allclose(after[boosted[:2]], 2 * before[boosted[:2]])
    changed = np.flatnonzero(after != before)
    assert set(changed) - set(boosted) == set(emission.start[emission.stream == 1] % 1000)
    assert buffer.stats()["max_priority"] >= after.max()


def test_writer_and_sampler_threads():
    buffer = ReplayBuffer(3000)
    acc = NStepAccumulator(64, n_step=4, lookback=20)
    rng = np.random.default_rng(0)
    stop = threading.Event()
    errors = []

    def writer():
        try:
            while not stop.is_set():
                buffer.add(acc.push(np.arange(64), rng.random((64, 195)),
                                    rng.integers(0, 44, 64), rng.normal(size=64),
                                    rng.random(64) < 0.01, rng.random(64) < 0.2,
                                    rng.random(64) < 0.95))
        except Exception as e:
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    sampled = 0
    sampler_rng = np.random.default_rng(1)
    # Until the writer has wrapped the ring three times and many batches were drawn meanwhile
    # (counts, not seconds: a loaded machine only makes it take longer).
    while (buffer.obs_written <= 3 * 3000 or sampled <= 10) and thread.is_alive():
        if len(buffer) < 256:
            continue
        batch = buffer.sample_many(2, 128, 0.4, sampler_rng)
        buffer.update_priorities(batch.index, sampler_rng.random(batch.index.shape))
        assert (batch.discount >= 0).all() and (batch.weight > 0).all()
        sampled += 1
    stop.set()
    thread.join()
    assert not errors and sampled > 10 and buffer.obs_written > 3 * 3000
    assert_tree_matches_counts(buffer)
    k = buffer.tree.branching
    for below, above in zip(buffer.tree.levels[:-1], buffer.tree.levels[1:]):
        np.testing.assert_array_equal(above[: below.size // k], below.reshape(-1, k).sum(1))


def test_prefetcher_with_limiter():
    buffer, _, _ = filled_buffer(capacity=2000, transitions=100)
    limiter = ReplayRatioLimiter(replay_ratio=2.0, min_size=50, slack=64, size=len(buffer))
    with Prefetcher(buffer, 32, lambda: 0.4, num_batches=2, limiter=limiter) as prefetch:
        batch = prefetch.get(timeout=60)
        assert batch.obs.shape == (2, 32, 195)
        with pytest.raises(TimeoutError):  # 64 slack used; no inserts, so no more samples
            prefetch.get(timeout=0.3)
        limiter.on_insert(64, len(buffer))  # 2 × 64 = 128 more samples allowed
        assert prefetch.get(timeout=60).index.shape == (2, 32)
    assert limiter.sampled <= 2 * 64 + 64


def test_add_rejects_foreign_emission():
    buffer = ReplayBuffer(100)
    acc = NStepAccumulator(1, first_serial=5)
    with pytest.raises(ValueError, match="serial"):
        buffer.add(acc.push([0], np.zeros((1, 195)), [0], [0], [0], [0], [1]))
