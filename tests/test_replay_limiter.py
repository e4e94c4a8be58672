"""Replay-ratio limiter: min_size gating, ratio, slack, blocking acquire."""

import threading
import time

from tempest_jax.config import ReplayConfig
from tempest_jax.replay import ReplayRatioLimiter


def test_gating_ratio_and_slack():
    limiter = ReplayRatioLimiter(replay_ratio=4.0, min_size=100, slack=10)
    limiter.on_insert(60, size=60)
    assert limiter.allowed() == 0 and not limiter.try_acquire(1)
    limiter.on_insert(50, size=110)  # learning starts here: the budget counts from now
    assert limiter.started and limiter.allowed() == 10
    assert limiter.try_acquire(10) and not limiter.try_acquire(1)
    limiter.on_insert(25, size=135)
    assert limiter.allowed() == 100
    assert limiter.try_acquire(100)
    assert limiter.ratio() == 110 / 25


def test_zero_ratio_is_unlimited_after_min_size():
    limiter = ReplayRatioLimiter.from_config(ReplayConfig(capacity=1000, replay_ratio=0.0,
                                                          min_size=5), size=5)
    assert limiter.started and limiter.try_acquire(10**12)


def test_held_near_ratio_over_a_run():
    limiter = ReplayRatioLimiter(replay_ratio=8.0, min_size=0, slack=256)
    for _ in range(1000):
        limiter.on_insert(64, size=10**6)
        while limiter.try_acquire(256):
            pass
    assert abs(limiter.ratio() - 8.0) < 0.01


def test_acquire_blocks_until_inserts_then_times_out():
    limiter = ReplayRatioLimiter(replay_ratio=1.0, min_size=10, size=10)
    start = time.monotonic()
    assert not limiter.acquire(5, timeout=0.1)
    assert time.monotonic() - start >= 0.09

    def insert_later():
        time.sleep(0.05)
        limiter.on_insert(5, size=15)

    thread = threading.Thread(target=insert_later)
    thread.start()
    assert limiter.acquire(5, timeout=5)
    thread.join()
    assert limiter.sampled == 5
