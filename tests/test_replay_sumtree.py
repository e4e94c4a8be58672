"""Sum tree: parent/child invariants under random operations, sampling frequencies, edges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tempest_jax.replay import SumTree


def assert_consistent(tree: SumTree):
    k = tree.branching
    for below, above in zip(tree.levels[:-1], tree.levels[1:]):
        sums = below.reshape(-1, k).sum(axis=1)
        np.testing.assert_array_equal(above[: sums.size], sums)
        assert not above[sums.size:].any()
    np.testing.assert_allclose(tree.total, tree.levels[-1].sum(), rtol=1e-12)
    assert not tree.levels[0][tree.capacity:].any()


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 3000), branching=st.sampled_from([2, 3, 16]),
       top_size=st.sampled_from([1, 7, 4096]), seed=st.integers(0, 2**32 - 1),
       rounds=st.integers(1, 12))
def test_parents_equal_sum_of_children_after_random_updates(capacity, branching, top_size,
                                                            seed, rounds):
    rng = np.random.default_rng(seed)
    tree = SumTree(capacity, branching=branching, top_size=top_size)
    mirror = np.zeros(capacity)
    for _ in range(rounds):
        size = int(rng.integers(1, 64))
        index = rng.integers(0, capacity, size)  # duplicates likely at small capacity
        value = rng.choice([0.0, 1e-9, 1.0, 1e6], size) * rng.random(size)
        tree.update(index, value)
        for i, v in zip(index, value):  # last write wins
            mirror[i] = v
        np.testing.assert_array_equal(tree.leaves, mirror)
        assert_consistent(tree)
    rebuilt = SumTree(capacity, branching=branching, top_size=top_size)
    rebuilt.set_leaves(mirror)
    for a, b in zip(tree.levels, rebuilt.levels):
        np.testing.assert_array_equal(a, b)


def test_duplicate_indices_in_one_update():
    tree = SumTree(1000)
    tree.update([5, 5, 5, 900, 5], [1.0, 2.0, 3.0, 4.0, 7.0])
    assert tree.get(5) == 7.0 and tree.total == 11.0
    tree.update(np.full(300, 900), np.arange(300.0))
    assert tree.get(900) == 299.0
    assert_consistent(tree)


@pytest.mark.parametrize("capacity", [1000, 4097 * 3])
def test_sampling_frequencies_match_priorities(capacity):
    rng = np.random.default_rng(0)
    tree = SumTree(capacity, top_size=64)
    priority = rng.exponential(size=capacity) * (rng.random(capacity) < 0.8)
    tree.set_leaves(priority)
    draws = tree.sample_stratified(rng, 512, num_batches=400).ravel()
    assert priority[draws].min() > 0  # zero-priority leaves are never drawn
    counts = np.bincount(draws, minlength=capacity)
    expected = priority / priority.sum() * draws.size
    live = expected > 0
    if capacity == 1000:  # enough draws per leaf for a chi-square test
        chi2 = ((counts[live] - expected[live]) ** 2 / expected[live]).sum()
        dof = live.sum() - 1
        assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    assert np.corrcoef(counts[live], expected[live])[0, 1] > 0.9


def test_stratified_batches_cover_the_mass():
    tree = SumTree(8, branching=2, top_size=1)
    tree.set_leaves([1, 0, 1, 0, 1, 0, 1, 0])
    rng = np.random.default_rng(1)
    batch = tree.sample_stratified(rng, 4, num_batches=3)
    assert batch.shape == (3, 4)
    for row in batch:  # one value per quarter of the mass: each live leaf exactly once
        assert sorted(row) == [0, 2, 4, 6]


def test_find_at_edges_returns_positive_leaves():
    tree = SumTree(50, branching=4, top_size=2)
    priority = np.zeros(50)
    priority[[3, 17, 31]] = [0.1, 0.2, 0.3]
    tree.set_leaves(priority)
    values = np.array([0.0, 0.1, 0.1 - 1e-17, 0.3, tree.total, tree.total * (1 + 1e-12)])
    assert set(tree.find(values).tolist()) <= {3, 17, 31}
    assert tree.find(np.array([0.0]))[0] == 3 and tree.find(np.array([tree.total]))[0] == 31


def test_rejects_bad_input():
    tree = SumTree(10)
    with pytest.raises(IndexError):
        tree.update([10], [1.0])
    with pytest.raises(ValueError):
        tree.update([1], [np.nan])
    with pytest.raises(ValueError):
        tree.update([1], [-1.0])
    with pytest.raises(ValueError, match="total is 0"):
        tree.sample_stratified(np.random.default_rng(0), 4)
