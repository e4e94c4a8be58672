"""Replay-ratio limiter: holds samples drawn per transition inserted near a target.

Learning starts once the buffer holds `min_size` transitions. From then on the sampler may have
drawn at most `replay_ratio × (transitions inserted since learning started) + slack` samples;
`slack` (typically one dispatch, K × batch) lets the first update run at once and absorbs the
granularity of batched sampling. `replay_ratio = 0` means no limit once `min_size` is reached.
Inserts are never blocked: actors must not stall on the learner.
"""

from __future__ import annotations

import sys
import threading
import time

from tempest_jax.config import ReplayConfig


class ReplayRatioLimiter:
    """Counts inserts and samples; says (or waits until) how many samples may be drawn."""

    def __init__(self, replay_ratio: float, min_size: int, slack: int = 0, size: int = 0):
        if replay_ratio < 0 or min_size < 0 or slack < 0:
            raise ValueError("replay_ratio, min_size and slack must be >= 0")
        self.replay_ratio = float(replay_ratio)
        self.min_size = int(min_size)
        self.slack = int(slack)
        self._cond = threading.Condition()
        self._inserted = 0
        self._sampled = 0
        self._base = 0 if size >= min_size else None

    @classmethod
    def from_config(cls, cfg: ReplayConfig, slack: int = 0, size: int = 0) -> ReplayRatioLimiter:
        return cls(cfg.replay_ratio, cfg.min_size, slack=slack, size=size)

    @property
    def started(self) -> bool:
        return self._base is not None

    @property
    def inserted(self) -> int:
        return self._inserted

    @property
    def sampled(self) -> int:
        return self._sampled

    def ratio(self) -> float:
        """Samples drawn per transition inserted since learning started (0 before)."""
        with self._cond:
            since = self._inserted - self._base if self._base is not None else 0
            return self._sampled / since if since else 0.0

    def on_insert(self, count: int, size: int) -> None:
        """The writer inserted `count` transitions; the buffer now holds `size`."""
        with self._cond:
            self._inserted += count
            if self._base is None and size >= self.min_size:
                self._base = self._inserted
            self._cond.notify_all()

    def allowed(self) -> int:
        """Samples that may be drawn now."""
        with self._cond:
            return self._allowed()

    def _allowed(self) -> int:
        if self._base is None:
            return 0
        if self.replay_ratio == 0:
            return sys.maxsize
        budget = int(self.replay_ratio * (self._inserted - self._base)) + self.slack
        return max(0, budget - self._sampled)

    def try_acquire(self, count: int) -> bool:
        """Count `count` samples as drawn if the ratio allows them now."""
        with self._cond:
            if self._allowed() < count:
                return False
            self._sampled += count
            return True

    def acquire(self, count: int, timeout: float | None = None) -> bool:
        """Wait (up to `timeout` seconds; None: forever) until `count` samples are allowed, then
        count them as drawn. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._allowed() < count:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._sampled += count
            return True
