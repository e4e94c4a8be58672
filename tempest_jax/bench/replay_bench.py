"""Replay buffer: memory per transition, insert rate, sample + priority-update time.

Fills a buffer of --capacity through the real path (n-step accumulator, then add) and measures:
- bytes_per_transition: growth of this process's resident memory (RSS) from before the buffer
  was created to after every slot was written, divided by capacity (computed: array sizes);
- insert_per_s: transitions stored per second when --streams streams each push one frame per
  call (default 64 frames per batch): n-step accumulation plus ReplayBuffer.add, the path the
  server's replay sink runs; add_per_s is ReplayBuffer.add alone on pre-formed emissions;
- sample_update_ms: one sample(--batch-size) plus one update_priorities(--batch-size).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tempest_jax.bench.report import best_rate, table
from tempest_jax.cli import positive
from tempest_jax.features import NUM_ACTIONS, STATE_SIZE
from tempest_jax.replay import NStepAccumulator, ReplayBuffer

_FILL_STREAMS = 4096
_POOL = 8192


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--capacity", type=positive(), default=1_000_000, help="transitions held")
    parser.add_argument("--streams", type=positive(), default=64,
                        help="frames per insert batch (one per stream)")
    parser.add_argument("--batch-size", type=positive(), default=256, help="sampled batch size")
    parser.add_argument("--seconds", type=positive(float), default=1.0, help="time per timed round")
    parser.add_argument("--seed", type=int, default=0)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Frames:
    """Synthetic frames for `streams` streams: observations from a fixed pool, rare deaths,
    a few ignored frames and actor switches, so every accumulator path runs."""

    def __init__(self, streams: int, rng: np.random.Generator):
        self.rng = rng
        self.ids = np.arange(streams)
        self.pool = rng.uniform(-1, 1, (_POOL, STATE_SIZE)).astype(np.float16)
        self.cursor = 0

    def next(self):
        n, rng = len(self.ids), self.rng
        rows = (self.cursor + np.arange(n)) % _POOL
        self.cursor = (self.cursor + n) % _POOL
        draw = rng.random((4, n))
        return (self.ids, self.pool[rows], rng.integers(0, NUM_ACTIONS, n),
                rng.normal(0, 0.1, n), draw[0] < 0.002, draw[1] < 0.1, draw[2] > 0.005)


def measure(args: argparse.Namespace):
    rng = np.random.default_rng(args.seed)
    # The fill machinery exists before the baseline, so the RSS growth is the buffer's own.
    fill = _Frames(_FILL_STREAMS, rng)
    acc = NStepAccumulator(_FILL_STREAMS)
    rss_before = _rss_bytes()
    buffer = ReplayBuffer(args.capacity)
    start = time.perf_counter()
    while buffer.obs_written < args.capacity:
        buffer.add(acc.push(*fill.next()))
    fill_s = time.perf_counter() - start
    rss_growth = _rss_bytes() - rss_before
    computed = (sum(getattr(buffer, name).nbytes for name in ReplayBuffer.FIELDS)
                + sum(level.nbytes for level in buffer.tree.levels))

    frames = _Frames(args.streams, rng)
    writer = NStepAccumulator(args.streams, first_serial=buffer.obs_written)

    def insert_batch() -> int:
        return buffer.add(writer.push(*frames.next()))

    insert_per_s = best_rate(insert_batch, args.seconds)

    emissions = [writer.push(*frames.next()) for _ in range(2000)]
    start = time.perf_counter()
    added = sum(buffer.add(e) for e in emissions)
    add_per_s = added / (time.perf_counter() - start)
    del emissions

    batch_size = args.batch_size
    loss = rng.random(batch_size)

    def sample_update() -> int:
        batch = buffer.sample(batch_size, 0.5, rng)
        buffer.update_priorities(batch.index, loss)
        return 1

    batch = buffer.sample(batch_size, 0.5, rng)
    sample_update_ms = 1e3 / best_rate(sample_update, args.seconds)
    sample_ms = 1e3 / best_rate(lambda: (buffer.sample(batch_size, 0.5, rng), 1)[1],
                                args.seconds)
    update_ms = 1e3 / best_rate(lambda: (buffer.update_priorities(batch.index, loss), 1)[1],
                                args.seconds)
    sample_many_ms = 1e3 / best_rate(
        lambda: (buffer.sample_many(8, batch_size, 0.5, rng), 1)[1], args.seconds)

    figures = {
        "bytes_per_transition": rss_growth / args.capacity,
        "bytes_per_transition_computed": computed / args.capacity,
        "insert_per_s": insert_per_s,
        "add_per_s": add_per_s,
        "sample_update_ms": sample_update_ms,
        "sample_ms": sample_ms,
        "update_ms": update_ms,
        "sample_many_8_ms": sample_many_ms,
        "fill_s": fill_s,
    }
    settings = {"capacity": args.capacity, "streams": args.streams, "batch_size": batch_size,
                "n_step": acc.n_step, "obs_dtype": "float16", "seconds": args.seconds,
                "insert_path": "NStepAccumulator.push + ReplayBuffer.add"}
    rows = [
        ("bytes per transition (RSS)", figures["bytes_per_transition"], "target <= 450"),
        ("bytes per transition (arrays)", figures["bytes_per_transition_computed"], ""),
        (f"insert/s, n-step + add, {args.streams} frames a batch", insert_per_s,
         "target >= 200k"),
        (f"add/s, {args.streams} frames a batch", add_per_s, ""),
        (f"sample {batch_size} + update {batch_size}, ms", sample_update_ms, "target <= 0.3"),
        (f"sample {batch_size}, ms", sample_ms, ""),
        (f"update {batch_size}, ms", update_ms, ""),
        (f"sample_many 8 x {batch_size}, ms", sample_many_ms, ""),
        (f"fill {args.capacity:,} slots, s", fill_s, ""),
    ]
    return figures, settings, table(rows, ("replay", "value", "note"))
