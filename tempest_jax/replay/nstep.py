"""n-step transitions formed at insert time, for many frame streams at once.

One `NStepAccumulator` serves S streams (the in-process trainer's G simulator games, or the TCP
server's clients), each with a ring of its last n one-step items, all held in (S, n) numpy arrays.
`push` takes one frame from each of a set of streams and returns an `Emission`: the observations
that need a replay slot and the n-step transitions that were completed, as arrays.

Per stream, frame t carries s_t, the reward r_t of the step into it, done_t, and the action a_t
chosen on it with its source (expert or network) and whether the game applies it (`applied`,
`features.action_applied`). As docs/extraction.md and docs/learning.md describe:

- The one-step item (s_{t-1}, a_{t-1}, r_t, s_t) is formed when frame t arrives, if frame t-1 was
  an applied, non-terminal frame of this stream.
- done_t ends the chain as terminal: every pending item is emitted with the return summed up to
  r_t and discount 0; s_t (the terminal observation) is stored only as their successor.
- applied_t = False (attract mode, death animation, level select, initials entry) ends the chain as
  truncated: the pending items are emitted bootstrapped from s_{t-1}, the last applied
  observation, and nothing from frame t (neither r_t nor s_t) is stored.
- With `cut_at_actor_change`, a frame whose action source differs from the previous action's
  ends the chain as truncated at s_t, so no return mixes expert and network actions.
- Otherwise, once n items are pending, the oldest is emitted with horizon n and successor s_t.
- `truncate` (a client disconnects, play is interrupted) emits the pending items bootstrapped from
  the stream's last observation.

The return of an item with horizon h is R = Σ_{i<h} γ^i r_i and its discount γ^h, 0 at a true
terminal; h counts the rewards summed (1 <= h <= n).

Observations are numbered by a serial (the count of observations this accumulator has asked to
store). An observation is stored when it can start or end a transition: applied non-terminal
frames, and a terminal frame that ends a transition. The buffer writes observation serial s into
slot s mod capacity, so serials double as the buffer's indices; a transition names its start and
successor observations by serial. The accumulator must therefore be the only writer of its buffer
and start at `first_serial = buffer.obs_written`.

The accumulator also remembers, per stream, the serials of the last `lookback` transitions it
emitted; a terminal hands them to the buffer as the pre-death boost (docs/learning.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tempest_jax.config import ReplayConfig, RewardConfig
from tempest_jax.features import STATE_SIZE


def scaled_reward(obj, subj, reward_cfg: RewardConfig) -> np.ndarray:
    """Per-frame reward the learner sees: clip(obj·obj_scale + subj·subj_scale, ±clip)."""
    raw = (np.asarray(obj, dtype=np.float64) * reward_cfg.obj_scale
           + np.asarray(subj, dtype=np.float64) * reward_cfg.subj_scale)
    return np.clip(raw, -reward_cfg.clip, reward_cfg.clip)


@dataclass(frozen=True)
class Emission:
    """What one push (or truncate) produced, in the order the buffer must apply it.

    `obs[i]` is observation serial `first_serial + i`. Transition j starts at observation
    `start[j]` and bootstraps from `next[j]` (both serials). `boost` lists serials of earlier
    transitions whose priority the pre-death boost multiplies (streams that hit a terminal).
    Within a stream, transitions appear oldest first.
    """

    first_serial: int
    obs: np.ndarray        # (M, D) float16
    start: np.ndarray      # (K,) int64
    next: np.ndarray       # (K,) int64
    action: np.ndarray     # (K,) uint8
    ret: np.ndarray        # (K,) float32, the n-step return
    discount: np.ndarray   # (K,) float32, γ^h, 0 at a terminal
    horizon: np.ndarray    # (K,) uint8
    is_expert: np.ndarray  # (K,) bool
    terminal: np.ndarray   # (K,) bool
    stream: np.ndarray     # (K,) int64
    boost: np.ndarray      # (P,) int64

    @property
    def num_obs(self) -> int:
        return len(self.obs)

    @property
    def num_transitions(self) -> int:
        return len(self.start)

    @property
    def next_serial(self) -> int:
        return self.first_serial + len(self.obs)

    @classmethod
    def concatenate(cls, emissions: list[Emission]) -> Emission:
        """Join consecutive emissions of one accumulator into one (for batched inserts)."""
        if not emissions:
            raise ValueError("nothing to concatenate")
        for before, after in itertools.pairwise(emissions):
            if after.first_serial != before.next_serial:
                raise ValueError(f"emissions are not consecutive: serial {before.next_serial} "
                                 f"expected, got {after.first_serial}")
        fields = {name: np.concatenate([getattr(e, name) for e in emissions])
                  for name in ("obs", "start", "next", "action", "ret", "discount", "horizon",
                               "is_expert", "terminal", "stream", "boost")}
        return cls(first_serial=emissions[0].first_serial, **fields)


class NStepAccumulator:
    """n-step returns for `num_streams` streams, vectorized over the streams of each push."""

    def __init__(self, num_streams: int, obs_size: int = STATE_SIZE, n_step: int = 12,
                 gamma: float = 0.99, cut_at_actor_change: bool = True, lookback: int = 120,
                 first_serial: int = 0):
        if num_streams < 1 or n_step < 1 or lookback < 0:
            raise ValueError("need num_streams >= 1, n_step >= 1 and lookback >= 0")
        self.num_streams = num_streams
        self.obs_size = obs_size
        self.n_step = n_step
        self.gamma = gamma
        self.cut_at_actor_change = cut_at_actor_change
        self.lookback = lookback
        self._next_serial = int(first_serial)

        s, n = num_streams, n_step
        # The chain head: the last stored observation of the stream and the action taken on it.
        self._has_last = np.zeros(s, dtype=bool)
        self._last_serial = np.full(s, -1, dtype=np.int64)
        self._last_action = np.zeros(s, dtype=np.uint8)
        self._last_expert = np.zeros(s, dtype=bool)
        # Ring of pending one-step items, oldest at _head.
        self._start = np.zeros((s, n), dtype=np.int64)
        self._action = np.zeros((s, n), dtype=np.uint8)
        self._expert = np.zeros((s, n), dtype=bool)
        self._reward = np.zeros((s, n), dtype=np.float64)
        self._head = np.zeros(s, dtype=np.int64)
        self._count = np.zeros(s, dtype=np.int64)
        # Serials of the last `lookback` emitted transitions per stream (-1: none).
        self._recent = np.full((s, lookback), -1, dtype=np.int64)
        self._recent_next = np.zeros(s, dtype=np.int64)

        self._steps = np.arange(n)
        self._gamma_pow = gamma ** np.arange(n + 1, dtype=np.float64)
        # returns = rewards @ _return_matrix: column j sums γ^(i-j)·r_i over i >= j.
        exponent = self._steps[:, None] - self._steps[None, :]
        self._return_matrix = np.where(exponent >= 0, gamma ** np.maximum(exponent, 0), 0.0)

    @classmethod
    def from_config(cls, cfg: ReplayConfig, num_streams: int, obs_size: int = STATE_SIZE,
                    first_serial: int = 0) -> NStepAccumulator:
        return cls(num_streams, obs_size=obs_size, n_step=cfg.n_step, gamma=cfg.gamma,
                   cut_at_actor_change=cfg.cut_at_actor_change,
                   lookback=cfg.pre_death_lookback, first_serial=first_serial)

    @property
    def next_serial(self) -> int:
        """Serial the next stored observation will get."""
        return self._next_serial

    def pending(self, stream_ids) -> np.ndarray:
        """Number of one-step items waiting in each stream's chain."""
        return self._count[np.asarray(stream_ids, dtype=np.int64)].copy()

    def push(self, stream_ids, obs, action, reward, done, is_expert, applied) -> Emission:
        """One frame for each of `stream_ids` (distinct). Arrays have one row per stream: obs
        (m, D), action (m,) chosen on this frame, reward (m,) of the step into this frame,
        done (m,), is_expert (m,) source of `action`, applied (m,) whether the game executes
        `action` on this frame."""
        ids = self._ids(stream_ids)
        m = ids.size
        obs = np.asarray(obs)
        if obs.shape != (m, self.obs_size):
            raise ValueError(f"obs must have shape ({m}, {self.obs_size}), got {obs.shape}")
        action = np.asarray(action).astype(np.uint8, copy=False)
        reward = np.asarray(reward, dtype=np.float64)
        done = np.asarray(done, dtype=bool)
        is_expert = np.asarray(is_expert, dtype=bool)
        applied = np.asarray(applied, dtype=bool)
        for name, arr in (("action", action), ("reward", reward), ("done", done),
                          ("is_expert", is_expert), ("applied", applied)):
            if arr.shape != (m,):
                raise ValueError(f"{name} must have shape ({m},), got {arr.shape}")

        has_last = self._has_last[ids]
        last_serial = self._last_serial[ids]
        continues = applied & ~done
        stored = continues | (done & has_last)
        first_serial = self._next_serial
        serial = np.where(stored, first_serial + np.cumsum(stored) - 1, -1)
        new_obs = obs[stored].astype(np.float16)
        self._next_serial += len(new_obs)

        # The one-step item (s_{t-1}, a_{t-1}, r_t) joins the chain unless frame t is ignored.
        joins = has_last & (done | applied)
        rows = ids[joins]
        slot = (self._head[rows] + self._count[rows]) % self.n_step
        self._start[rows, slot] = self._last_serial[rows]
        self._action[rows, slot] = self._last_action[rows]
        self._expert[rows, slot] = self._last_expert[rows]
        self._reward[rows, slot] = reward[joins]
        self._count[rows] += 1

        terminal = has_last & done
        truncated = has_last & ~done & ~applied
        flush = terminal | truncated
        if self.cut_at_actor_change:
            flush |= has_last & continues & (is_expert != self._last_expert[ids])
        oldest_due = joins & ~flush & (self._count[ids] == self.n_step)
        successor = np.where(truncated, last_serial, serial)
        out = self._emit(ids, flush, oldest_due, successor, terminal)

        self._has_last[ids] = continues
        self._last_serial[ids] = serial
        self._last_action[ids] = action
        self._last_expert[ids] = is_expert
        boost = self._take_recent(ids[terminal])
        return Emission(first_serial=first_serial, obs=new_obs, boost=boost, **out)

    def truncate(self, stream_ids) -> Emission:
        """End these streams' chains as truncated (bootstrapped from their last observation),
        e.g. when a client disconnects, and forget their pre-death history."""
        ids = self._ids(stream_ids)
        has_last = self._has_last[ids]
        out = self._emit(ids, has_last, np.zeros_like(has_last), self._last_serial[ids],
                         np.zeros_like(has_last))
        self._has_last[ids] = False
        self._take_recent(ids)
        return Emission(first_serial=self._next_serial,
                        obs=np.zeros((0, self.obs_size), dtype=np.float16),
                        boost=np.zeros(0, dtype=np.int64), **out)

    def reset(self, stream_ids) -> None:
        """Drop these streams' pending items and history without emitting anything."""
        ids = self._ids(stream_ids)
        self._has_last[ids] = False
        self._count[ids] = 0
        self._head[ids] = 0
        self._take_recent(ids)

    def _ids(self, stream_ids) -> np.ndarray:
        ids = np.asarray(stream_ids, dtype=np.int64).ravel()
        if ids.size:
            ordered = np.sort(ids)
            if (ordered[1:] == ordered[:-1]).any():
                raise ValueError("a stream may appear only once per call")
            if ordered[0] < 0 or ordered[-1] >= self.num_streams:
                raise IndexError(f"stream id out of range [0, {self.num_streams})")
        return ids

    def _emit(self, ids, flush, oldest_due, successor, terminal) -> dict[str, np.ndarray]:
        """Transitions of streams whose chain ends (`flush`: all pending items) or whose oldest
        item has n rewards (`oldest_due`: that item only), bootstrapping from `successor`."""
        emitting = flush | oldest_due
        rows = ids[emitting]
        count = self._count[rows]
        order = (self._head[rows][:, None] + self._steps) % self.n_step
        pending = self._steps < count[:, None]
        rewards = np.where(pending, self._reward[rows[:, None], order], 0.0)
        returns = rewards @ self._return_matrix
        flushing = flush[emitting]
        take = pending & (flushing[:, None] | (self._steps == 0))
        # The emitted items, in row-major order: their row (stream) and step in the chain.
        row, step = np.nonzero(take)
        stream, item = rows[row], order[row, step]
        horizon = count[row] - step
        is_terminal = terminal[emitting][row]
        start = self._start[stream, item]

        ended = rows[flushing]
        self._count[ended] = 0
        self._head[ended] = 0
        advanced = rows[~flushing]
        self._head[advanced] = (self._head[advanced] + 1) % self.n_step
        self._count[advanced] -= 1
        self._remember(stream, start)
        return {
            "start": start,
            "next": successor[emitting][row],
            "action": self._action[stream, item],
            "ret": returns[row, step].astype(np.float32),
            "discount": np.where(is_terminal, 0.0, self._gamma_pow[horizon]).astype(np.float32),
            "horizon": horizon.astype(np.uint8),
            "is_expert": self._expert[stream, item],
            "terminal": is_terminal,
            "stream": stream,
        }

    def _remember(self, stream: np.ndarray, start: np.ndarray) -> None:
        """Append emitted serials to their streams' pre-death history rings. Each stream's
        transitions are contiguous in `stream`; only its last `lookback` are kept."""
        if self.lookback == 0 or stream.size == 0:
            return
        opens = np.flatnonzero(np.concatenate(([True], stream[1:] != stream[:-1])))
        lengths = np.concatenate((opens[1:], [stream.size])) - opens
        group = np.repeat(np.arange(opens.size), lengths)
        rank = np.arange(stream.size) - opens[group]
        keep = rank >= (lengths - self.lookback)[group]
        kept_streams = stream[keep]
        position = (self._recent_next[kept_streams] + rank[keep]) % self.lookback
        self._recent[kept_streams, position] = start[keep]
        heads = stream[opens]
        self._recent_next[heads] = (self._recent_next[heads] + lengths) % self.lookback

    def _take_recent(self, streams: np.ndarray) -> np.ndarray:
        if self.lookback == 0 or streams.size == 0:
            return np.zeros(0, dtype=np.int64)
        serials = self._recent[streams].ravel()
        self._recent[streams] = -1
        self._recent_next[streams] = 0
        return serials[serials >= 0]
