"""Learner throughput: jitted C51 updates per second at each batch size and K.

Each point runs `Learner.update_many` (K updates per dispatch, `lax.scan`) on host batches in
the replay's format (float16 observations), so the host-to-device copy is part of the time,
and blocks on the returned priorities as the trainer does. The rate is the best of three
timed rounds. Compile time is the first dispatch's time minus a steady-state dispatch.
The network is the config's (default preset: the reference-sized network).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from tempest_jax.bench.report import best_rate, table
from tempest_jax.cli import add_config_arguments, config_from_args
from tempest_jax.features import NUM_ACTIONS, STATE_SIZE
from tempest_jax.learner import Batch, make_learner

# Distinct batches cycled through, so no point reuses one input buffer back to back.
BATCH_POOL = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 768],
                        help="batch sizes (default: 256 768)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 8, 32],
                        help="updates per dispatch (default: 1 8 32)")
    parser.add_argument("--devices", type=int, default=None,
                        help="local devices to split each batch over (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="minimum seconds per timed round (default: 2)")


def _batches(rng: np.random.Generator, k: int, batch: int) -> Batch:
    shape = (k, batch)
    return Batch(obs=rng.uniform(0, 1, (*shape, STATE_SIZE)).astype(np.float16),
                 action=rng.integers(0, NUM_ACTIONS, shape).astype(np.int32),
                 reward=rng.normal(0, 0.1, shape).astype(np.float32),
                 discount=np.where(rng.random(shape) < 0.02, 0.0, 0.99 ** 12).astype(np.float32),
                 next_obs=rng.uniform(0, 1, (*shape, STATE_SIZE)).astype(np.float16),
                 is_expert=rng.random(shape) < 0.1,
                 weight=rng.uniform(0.3, 1.0, shape).astype(np.float32))


def _measure_point(learner, state, pool: list[Batch], seconds: float):
    """(state, updates/s, compile seconds) of `update_many` on the batches in `pool`."""
    k = pool[0].obs.shape[0]
    turn = 0

    def dispatch() -> int:
        nonlocal state, turn
        state, _, priorities = learner.update_many(state, pool[turn % len(pool)], 0.1)
        priorities.block_until_ready()
        turn += 1
        return k

    start = time.perf_counter()
    dispatch()
    first = time.perf_counter() - start
    rate = best_rate(dispatch, min_seconds=seconds)
    return state, rate, max(first - k / rate, 0.0)


def measure(args: argparse.Namespace) -> tuple[dict, dict, str]:
    cfg = config_from_args(args)
    devices = jax.local_devices()[:args.devices] if args.devices else jax.local_devices()
    learner = make_learner(cfg, devices=devices)
    state = learner.init(jax.random.key(cfg.learner.seed))
    rng = np.random.default_rng(0)

    figures: dict[str, float] = {"params": learner.param_count(state)}
    rows = []
    for batch in args.batch:
        for k in args.k:
            pool = [_batches(rng, k, batch) for _ in range(BATCH_POOL)]
            state, rate, compile_s = _measure_point(learner, state, pool, args.seconds)
            point = f"b{batch}_k{k}"
            figures[f"updates_per_s_{point}"] = round(rate, 2)
            figures[f"compile_s_{point}"] = round(compile_s, 2)
            rows.append((batch, k, rate, rate * batch, 1e3 / rate, compile_s))

    figures["updates_per_s"] = max(r[2] for r in rows)
    figures["compile_s"] = max(r[5] for r in rows)
    settings = {"config": args.config, "overrides": args.overrides, "batch": args.batch,
                "k": args.k, "devices": [str(d) for d in devices],
                "network_dtype": cfg.network.dtype, "seconds": args.seconds}
    text = table(rows, ("batch", "K", "updates/s", "samples/s", "ms/update", "compile s"))
    text += (f"\n\nparameters: {figures['params']:,}   devices: {len(devices)} x "
             f"{devices[0].platform}   network dtype: {cfg.network.dtype}")
    return figures, settings, text
