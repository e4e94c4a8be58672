"""Prioritized replay: each observation stored once, in float16, in a preallocated ring.

Layout. The buffer has `capacity` slots. Slot i holds one observation (195 float16) and, when a
transition starts at that observation, the transition's fields:

    obs        (C, D) float16   the observation
    action     (C,)   uint8     joint action taken on it
    ret        (C,)   float32   n-step return
    discount   (C,)   float32   γ^h, 0 at a true terminal
    is_expert  (C,)   bool      the action came from the expert
    next_slot  (C,)   int32     slot of the n-step successor observation
    tree leaf  (C,)   float64   priority; 0 = no stored transition starts here

That is 390 + 1 + 4 + 4 + 1 + 4 + 8 = 412 bytes per slot, plus ~0.5 byte for the inner levels of
the sum tree. A slot whose leaf is 0 holds an observation only: a transition not yet complete, or
an observation that is only ever a successor (a terminal frame, the last applied frame before a
truncation).

Observations are numbered by serial (see nstep.py); serial s lives in slot s mod C and
`obs_written` serials have been written, so the slots hold serials [obs_written - C, obs_written).
A transition is written into the slot of its start observation once its n-step return is known,
and its successor always has a larger serial than its start. The ring overwrites the oldest serial
first, so whenever a transition's start is still present its successor is too: the ring boundary
can never leave a stored transition with a stale successor. Overwriting a slot zeroes its leaf.
A transition whose start was overwritten before it completed (a stream stalled for a whole ring)
is dropped on insert.

Sampled indices are serials, not slots: `update_priorities` ignores a serial whose slot has been
overwritten since it was sampled, so a late priority update can never revive or re-weight a
different transition.

Threads: one writer (`add`) and any number of samplers (`sample`, `update_priorities`) may run at
once; a single lock is held only for the array writes and the tree descent of one batch.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from tempest_jax.config import ReplayConfig
from tempest_jax.features import STATE_SIZE
from tempest_jax.replay.nstep import Emission
from tempest_jax.replay.sumtree import SumTree

# A zero leaf marks a slot with no transition, so a stored transition's priority stays positive
# even when priority_eps is configured to 0.
_MIN_PRIORITY = 1e-12


class Batch(NamedTuple):
    """A sampled batch; every array has the same leading shape, (B,) or (K, B)."""

    obs: np.ndarray        # (..., D) float16
    action: np.ndarray     # uint8 joint action
    reward: np.ndarray     # float32 n-step return
    discount: np.ndarray   # float32 γ^h, 0 at a terminal
    next_obs: np.ndarray   # (..., D) float16
    is_expert: np.ndarray  # bool
    weight: np.ndarray     # float32 importance weight, normalised by its batch's maximum
    index: np.ndarray      # int64 serial, for update_priorities


class ReplayBuffer:
    """Proportional prioritized replay over n-step transitions (docs/learning.md, "Replay")."""

    FIELDS = ("obs", "action", "ret", "discount", "is_expert", "next_slot")

    def __init__(self, capacity: int, obs_size: int = STATE_SIZE, *, alpha: float = 0.7,
                 priority_eps: float = 1e-6, new_priority_cap: float = 3.0,
                 death_priority_floor: float = 5.0, pre_death_boost: float = 2.0):
        if not 1 <= capacity <= 1 << 31:
            raise ValueError(f"capacity must be in [1, 2^31], got {capacity}")
        self.capacity = int(capacity)
        self.obs_size = int(obs_size)
        self.alpha = float(alpha)
        self.priority_eps = float(priority_eps)
        self.new_priority_cap = float(new_priority_cap)
        self.death_priority_floor = float(death_priority_floor)
        self.pre_death_boost = float(pre_death_boost)

        # np.zeros maps pages lazily: memory is committed as the ring fills.
        self.obs = np.zeros((capacity, obs_size), dtype=np.float16)
        self.action = np.zeros(capacity, dtype=np.uint8)
        self.ret = np.zeros(capacity, dtype=np.float32)
        self.discount = np.zeros(capacity, dtype=np.float32)
        self.is_expert = np.zeros(capacity, dtype=bool)
        self.next_slot = np.zeros(capacity, dtype=np.int32)
        self.tree = SumTree(capacity)

        self.lock = threading.Lock()
        self._obs_written = 0
        self._size = 0
        self._expert_count = 0
        self._max_priority = 1.0
        self._added = 0
        self._dropped = 0

    @classmethod
    def from_config(cls, cfg: ReplayConfig, obs_size: int = STATE_SIZE) -> ReplayBuffer:
        return cls(cfg.capacity, obs_size, alpha=cfg.alpha, priority_eps=cfg.priority_eps,
                   new_priority_cap=cfg.new_priority_cap,
                   death_priority_floor=cfg.death_priority_floor,
                   pre_death_boost=cfg.pre_death_boost)

    def params(self) -> dict:
        """Constructor keywords other than capacity and obs_size (saved in snapshots)."""
        return {"alpha": self.alpha, "priority_eps": self.priority_eps,
                "new_priority_cap": self.new_priority_cap,
                "death_priority_floor": self.death_priority_floor,
                "pre_death_boost": self.pre_death_boost}

    # ---- counters ----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Transitions that can be sampled now."""
        return self._size

    def __len__(self) -> int:
        return self._size

    @property
    def obs_written(self) -> int:
        """Observations written since the buffer was created (the next observation's serial)."""
        return self._obs_written

    @property
    def added(self) -> int:
        """Transitions inserted since the buffer was created."""
        return self._added

    def stats(self) -> dict:
        with self.lock:
            size, total = self._size, self.tree.total
            return {"size": size, "capacity": self.capacity,
                    "expert_fraction": self._expert_count / size if size else 0.0,
                    "mean_priority": total / size if size else 0.0,
                    "max_priority": self._max_priority, "added": self._added,
                    "dropped_stale": self._dropped, "obs_written": self._obs_written}

    # ---- insert ------------------------------------------------------------------------------

    def add(self, emission: Emission) -> int:
        """Store an accumulator's emission: its observations, its transitions at their new-item
        priority (docs/learning.md), then its pre-death boost. Returns transitions stored."""
        if emission.first_serial != self._obs_written:
            raise ValueError(
                f"emission starts at observation serial {emission.first_serial}, the buffer is "
                f"at {self._obs_written}: one accumulator, created with "
                f"first_serial=buffer.obs_written, must feed the buffer in order")
        if emission.obs.shape[1:] != (self.obs_size,):
            raise ValueError(f"observations must have {self.obs_size} values")
        capacity = self.capacity
        ret = emission.ret.astype(np.float64)
        hint = np.abs(ret)
        hint = np.where(emission.terminal, np.maximum(hint, self.death_priority_floor), hint)
        hint_priority = hint ** self.alpha
        with self.lock:
            written = self._obs_written + emission.num_obs
            leaf_index, leaf_value = [], []
            if emission.num_obs:
                kept = min(emission.num_obs, capacity)
                slots = np.arange(written - kept, written) % capacity
                overwritten = slots[self.tree.get(slots) > 0]
                if overwritten.size:
                    self._size -= overwritten.size
                    self._expert_count -= int(np.count_nonzero(self.is_expert[overwritten]))
                    leaf_index.append(overwritten)
                    leaf_value.append(np.zeros(overwritten.size))
                self.obs[slots] = emission.obs[emission.num_obs - kept:]

            alive = emission.start >= written - capacity
            stored = int(np.count_nonzero(alive))
            self._dropped += emission.num_transitions - stored
            if stored:
                slots = emission.start[alive] % capacity
                self.action[slots] = emission.action[alive]
                self.ret[slots] = emission.ret[alive]
                self.discount[slots] = emission.discount[alive]
                expert = emission.is_expert[alive]
                self.is_expert[slots] = expert
                self.next_slot[slots] = emission.next[alive] % capacity
                priority = self._new_priority(hint_priority[alive])
                leaf_index.append(slots)
                leaf_value.append(priority)
                self._size += stored
                self._expert_count += int(np.count_nonzero(expert))
                self._added += stored
            if leaf_index:
                self.tree.update(np.concatenate(leaf_index), np.concatenate(leaf_value))
            self._obs_written = written
            if emission.boost.size:
                self._boost_locked(emission.boost)
        return stored

    def _new_priority(self, hint_priority: np.ndarray) -> np.ndarray:
        # max priority, capped at new_priority_cap × mean; raised to the hint; capped again.
        cap = self.new_priority_cap * self.tree.total / self._size if self._size else np.inf
        priority = np.minimum(np.maximum(min(self._max_priority, cap), hint_priority), cap)
        priority = np.maximum(priority, max(self.priority_eps, _MIN_PRIORITY))
        self._max_priority = max(self._max_priority, float(priority.max()))
        return priority

    def boost(self, serials) -> None:
        """Multiply the priorities of these transitions (serials) by `pre_death_boost`, uncapped;
        serials that are no longer stored are skipped."""
        with self.lock:
            self._boost_locked(np.asarray(serials, dtype=np.int64).ravel())

    def _boost_locked(self, serials: np.ndarray) -> None:
        serials = np.unique(serials[serials >= self._obs_written - self.capacity])
        slots = serials % self.capacity
        priority = self.tree.get(slots)
        live = priority > 0
        if live.any():
            boosted = priority[live] * self.pre_death_boost
            self.tree.update(slots[live], boosted)
            self._max_priority = max(self._max_priority, float(boosted.max()))

    # ---- sample ------------------------------------------------------------------------------

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator) -> Batch:
        """One stratified batch, arrays of leading shape (batch_size,)."""
        return self._sample(1, batch_size, beta, rng, squeeze=True)

    def sample_many(self, num_batches: int, batch_size: int, beta: float,
                    rng: np.random.Generator) -> Batch:
        """`num_batches` independent stratified batches stacked: leading shape (K, batch_size),
        importance weights normalised within each batch. One lock acquisition for all."""
        return self._sample(num_batches, batch_size, beta, rng, squeeze=False)

    def _sample(self, num_batches, batch_size, beta, rng, squeeze) -> Batch:
        with self.lock:
            if self._size == 0:
                raise ValueError("cannot sample an empty replay buffer")
            slots = self.tree.sample_stratified(rng, batch_size, num_batches)
            priority = self.tree.get(slots)
            total, size, written = self.tree.total, self._size, self._obs_written
            # np.take along axis 0 gathers rows markedly faster than fancy indexing.
            obs = np.take(self.obs, slots, axis=0)
            next_obs = np.take(self.obs, self.next_slot[slots], axis=0)
            action = self.action[slots]
            ret = self.ret[slots]
            discount = self.discount[slots]
            is_expert = self.is_expert[slots]
        # P(i) = p_i / total; w_i = (size · P(i))^-β, normalised by the batch maximum.
        weight = (priority * (size / total)) ** -beta
        weight /= weight.max(axis=-1, keepdims=True)
        serial = written - 1 - (written - 1 - slots) % self.capacity
        batch = Batch(obs, action, ret, discount, next_obs, is_expert,
                      weight.astype(np.float32), serial)
        if squeeze:
            return Batch(*(field[0] for field in batch))
        return batch

    def update_priorities(self, index, loss) -> None:
        """Priority := (loss + ε)^α for sampled serials `index` (any shape); duplicates are
        allowed (the last wins) and serials overwritten since sampling are ignored."""
        index = np.asarray(index, dtype=np.int64).ravel()
        loss = np.asarray(loss, dtype=np.float64).ravel()
        if index.shape != loss.shape:
            raise ValueError(f"index {index.shape} and loss {loss.shape} differ in size")
        priority = np.maximum((np.abs(loss) + self.priority_eps) ** self.alpha, _MIN_PRIORITY)
        if not np.all(priority < np.inf):
            raise ValueError("non-finite loss passed to update_priorities")
        with self.lock:
            current = index >= self._obs_written - self.capacity
            if not current.all():
                index, priority = index[current], priority[current]
            if index.size:
                self.tree.update(index % self.capacity, priority)
                self._max_priority = max(self._max_priority, float(priority.max()))

    # ---- snapshots (replay.snapshot writes and reads them) ----------------------------------

    def _restore(self, obs_written: int, max_priority: float) -> None:
        """Counters after the arrays and leaves were filled by a snapshot load."""
        leaves = self.tree.leaves
        live = leaves > 0
        self._obs_written = int(obs_written)
        self._size = int(np.count_nonzero(live))
        self._expert_count = int(np.count_nonzero(self.is_expert & live))
        self._max_priority = max(float(max_priority), float(leaves.max(initial=0.0)))
