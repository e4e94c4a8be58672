"""A float64 sum tree over any number of leaves, updated and sampled in batches.

Layout: a k-ary tree (k = `branching`, 16 by default) stored level by level. `levels[0]` holds the
leaf priorities, each higher level holds the sums of consecutive blocks of k entries of the level
below, and the top level (at most `top_size` entries) is summarised by an inclusive prefix sum, so
the root total is its last element. Every level below the top is padded with zero leaves to a
multiple of k, so any capacity works, not only powers of two or of k.

Why k-ary and a prefix-summed top rather than a binary tree: in numpy the cost is the number of
array operations per level, not the arithmetic. At 15M leaves a binary tree is 24 levels deep; this
layout descends 3 levels after one `searchsorted` on the top prefix sum, which keeps sampling and
updating a 256-item batch near 0.1 ms. The tree itself costs 8 bytes per leaf plus 8/(k-1) for the
inner levels.

A parent is always recomputed from its children (never adjusted by a delta), so there is no drift,
and duplicate indices in one update are harmless: every copy of a parent is written with the same
sum. A zero leaf has no mass and is never returned by sampling.
"""

from __future__ import annotations

import itertools

import numpy as np


class SumTree:
    """Leaf priorities with batched update, prefix-sum search and stratified sampling."""

    def __init__(self, capacity: int, branching: int = 16, top_size: int = 4096):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if branching < 2 or top_size < 1:
            raise ValueError("branching must be >= 2 and top_size >= 1")
        self.capacity = int(capacity)
        self.branching = int(branching)
        sizes = [self.capacity]
        while sizes[-1] > top_size:
            sizes[-1] = -(-sizes[-1] // branching) * branching
            sizes.append(sizes[-1] // branching)
        self.levels: list[np.ndarray] = [np.zeros(size, dtype=np.float64) for size in sizes]
        self._top_cumsum = np.zeros(sizes[-1], dtype=np.float64)
        # Inclusive prefix sums within a block as one BLAS product (block @ upper), several
        # times faster than numpy's row-wise cumsum. Parent sums stay with numpy's sum, whose
        # result for a row does not depend on how many rows are summed at once, so a parent is
        # bit-identical whether it was updated or rebuilt.
        self._upper = np.triu(np.ones((branching, branching), dtype=np.float64))
        self._ones = np.ones(branching, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self._top_cumsum[-1])

    @property
    def leaves(self) -> np.ndarray:
        """The leaf priorities (a read-only view of length `capacity`)."""
        view = self.levels[0][: self.capacity]
        view.flags.writeable = False
        return view

    def get(self, indices) -> np.ndarray:
        return self.levels[0][indices]

    def update(self, indices, priorities) -> None:
        """Set leaves `indices` to `priorities` (same shape); if an index repeats, its last value
        wins. Parents are then recomputed from their children, level by level."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        priorities = np.asarray(priorities, dtype=np.float64).ravel()
        if indices.shape != priorities.shape:
            raise ValueError(f"{indices.size} indices but {priorities.size} priorities")
        if indices.size == 0:
            return
        if indices.size > 1:
            # Keep the last occurrence of each index, deterministically.
            indices, first_in_reversed = np.unique(indices[::-1], return_index=True)
            priorities = priorities[::-1][first_in_reversed]
        if indices[0] < 0 or indices[-1] >= self.capacity:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        if not (priorities.min() >= 0 and priorities.max() < np.inf):
            raise ValueError("priorities must be finite and >= 0")
        self.levels[0][indices] = priorities
        k = self.branching
        for below, above in itertools.pairwise(self.levels):
            indices = indices // k
            above[indices] = np.take(below.reshape(-1, k), indices, axis=0).sum(axis=1)
        np.cumsum(self.levels[-1], out=self._top_cumsum)

    def set_leaves(self, priorities) -> None:
        """Replace every leaf and rebuild all levels (vectorized, one pass per level)."""
        priorities = np.asarray(priorities, dtype=np.float64)
        if priorities.shape != (self.capacity,):
            raise ValueError(f"expected {self.capacity} priorities, got shape {priorities.shape}")
        if not (priorities.min(initial=0.0) >= 0 and priorities.max(initial=0.0) < np.inf):
            raise ValueError("priorities must be finite and >= 0")
        self.levels[0][: self.capacity] = priorities
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute every inner level from the leaves."""
        k = self.branching
        for below, above in itertools.pairwise(self.levels):
            above[: below.size // k] = below.reshape(-1, k).sum(axis=1)
        np.cumsum(self.levels[-1], out=self._top_cumsum)

    def find(self, values) -> np.ndarray:
        """Leaf index whose prefix-sum interval contains each value of `values` (in [0, total)).
        Rounding at interval edges is resolved towards a leaf with positive mass."""
        values = np.asarray(values, dtype=np.float64)
        shape = values.shape
        values = values.ravel()
        top = self.levels[-1]
        node = np.searchsorted(self._top_cumsum, values, side="right")
        past_end = node >= top.size
        if past_end.any():
            node[past_end] = np.flatnonzero(top)[-1]
        values = np.maximum(values - (self._top_cumsum[node] - top[node]), 0.0)
        k = self.branching
        row_start = np.arange(values.size) * k
        for below in reversed(self.levels[:-1]):
            block = np.take(below.reshape(-1, k), node, axis=0)
            inclusive = block @ self._upper
            # Children whose inclusive sum is <= value lie wholly before it (zero-mass children
            # included), so their count is the index of the child that holds the value.
            child = ((inclusive <= values[:, None]).astype(np.float64) @ self._ones).astype(
                np.int64)
            if child.max() >= k:  # rounding put the value past the block: take its last
                overflow = child >= k  # child with positive mass
                child[overflow] = k - 1 - np.argmax(block[overflow][:, ::-1] > 0, axis=1)
            chosen = row_start + child
            values = np.maximum(values - (inclusive.ravel()[chosen] - block.ravel()[chosen]),
                                0.0)
            node = node * k + child
        return node.reshape(shape)

    def sample_stratified(self, rng: np.random.Generator, batch_size: int,
                          num_batches: int = 1) -> np.ndarray:
        """`num_batches` independent stratified batches, shape (num_batches, batch_size): batch b
        splits [0, total) into batch_size equal strata and draws one value uniformly in each."""
        total = self.total
        if not total > 0:
            raise ValueError("cannot sample from a sum tree whose total is 0")
        strata = np.arange(batch_size, dtype=np.float64)
        values = (strata + rng.random((num_batches, batch_size))) * (total / batch_size)
        return self.find(values)
