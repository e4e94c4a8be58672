"""Learner throughput: jitted C51 updates per second at each batch size and K.

Each point runs `Learner.update_many` (K updates per dispatch, `lax.scan`) on host batches in
the replay's format (float16 observations), so the host-to-device copy is part of the time,
and blocks on the returned priorities as the trainer does. The rate is the best of three
timed rounds. Compile time is the first dispatch's time minus a steady-state dispatch.
The network is the config's: by default the sim preset's smaller one; `--config gpu` measures
the reference-sized default network.

`--devices 1,2,4` measures each device count (the batch split over that many devices, one
data-parallel update). On a CPU host without that many devices each count runs in its own
process with XLA_FLAGS=--xla_force_host_platform_device_count=N: fake devices share the same
cores, so the figure documents the overhead of the sharded update, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

from tempest_jax.bench.report import best_rate, progress, table
from tempest_jax.cli import add_config_arguments, config_from_args, positive
from tempest_jax.features import NUM_ACTIONS, STATE_SIZE
from tempest_jax.learner import Batch, make_learner
from tempest_jax.networks import param_count

# Distinct batches cycled through, so no point reuses one input buffer back to back.
BATCH_POOL = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--batch", type=positive(), nargs="+", default=[256, 768],
                        help="batch sizes (default: 256 768)")
    parser.add_argument("--k", type=positive(), nargs="+", default=[1, 8, 32],
                        help="updates per dispatch (default: 1 8 32)")
    parser.add_argument("--devices", type=_device_counts, default=None, metavar="N[,N...]",
                        help="device counts to split each batch over, e.g. 1,2,4 (default: all "
                             "local devices); fake CPU devices where a host has fewer")
    parser.add_argument("--seconds", type=positive(float), default=2.0,
                        help="minimum seconds per timed round (default: 2)")


def _device_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected device counts like 1,2,4, got {text!r}") from None
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"device counts must be positive, got {text!r}")
    return counts


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


def _measure_devices(cfg, devices, args) -> tuple[dict, list[tuple]]:
    """Figures and table rows (batch, K, updates/s, ...) on `devices`."""
    learner = make_learner(cfg, devices=devices)
    state = learner.init(jax.random.key(cfg.learner.seed))
    rng = np.random.default_rng(0)
    figures: dict[str, float] = {"params": param_count(state.params)}
    rows = []
    for batch in args.batch:
        for k in args.k:
            pool = [_batches(rng, k, batch) for _ in range(BATCH_POOL)]
            state, rate, compile_s = _measure_point(learner, state, pool, args.seconds)
            point = f"b{batch}_k{k}"
            figures[f"updates_per_s_{point}"] = round(rate, 2)
            figures[f"compile_s_{point}"] = round(compile_s, 2)
            rows.append((batch, k, rate, rate * batch, 1e3 / rate, compile_s))
            progress("learner", f"batch {batch} K {k}: {rate:,.1f} updates/s, compile "
                                f"{compile_s:.1f} s")
    figures["updates_per_s"] = max(r[2] for r in rows)
    figures["compile_s"] = max(r[5] for r in rows)
    return figures, rows


def _measure_in_subprocess(args, count: int) -> tuple[dict, list[tuple]]:
    """One device count in a fresh process with that many fake CPU devices."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
    argv = [sys.executable, "-m", "tempest_jax.cli", "bench", "learner", "--json",
            "--devices", str(count), "--seconds", str(args.seconds), "--config", args.config,
            "--batch", *map(str, args.batch), "--k", *map(str, args.k)]
    for override in args.overrides:
        argv += ["--set", override]
    done = subprocess.run(argv, env=dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"learner bench on {count} devices failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["figures"], [tuple(r) for r in result["settings"]["rows"]]


def measure(args: argparse.Namespace) -> tuple[dict, dict, str]:
    cfg = config_from_args(args)
    local = jax.local_devices()
    counts = args.devices or [len(local)]
    figures: dict[str, float] = {}
    rows = []
    for count in counts:
        if count <= len(local):
            point_figures, point_rows = _measure_devices(cfg, local[:count], args)
        elif local[0].platform == "cpu":
            point_figures, point_rows = _measure_in_subprocess(args, count)
        else:
            raise SystemExit(f"bench learner: {count} devices asked for, this host has "
                             f"{len(local)} {local[0].platform} devices")
        rows += [(count, *r) for r in point_rows]
        if len(counts) == 1:
            figures = point_figures
        else:
            figures["params"] = point_figures["params"]
            figures.update({f"{name}_d{count}": value for name, value in point_figures.items()
                            if name != "params"})
    if len(counts) > 1:
        base = figures[f"updates_per_s_d{counts[0]}"]
        figures["updates_per_s"] = max(figures[f"updates_per_s_d{c}"] for c in counts)
        figures.update({f"scaling_d{c}": round(figures[f"updates_per_s_d{c}"] / base, 3)
                        for c in counts})
    settings = {"config": args.config, "overrides": args.overrides, "batch": args.batch,
                "k": args.k, "devices": counts, "platform": local[0].platform,
                "network_dtype": cfg.network.dtype, "seconds": args.seconds,
                "rows": [list(r[1:]) for r in rows]}
    text = table(rows, ("devices", "batch", "K", "updates/s", "samples/s", "ms/update",
                        "compile s"))
    text += (f"\n\nparameters: {figures['params']:,}   platform: {local[0].platform}   network "
             f"dtype: {cfg.network.dtype}")
    if len(counts) > 1:
        text += f"   updates/s relative to {counts[0]} device(s): " + ", ".join(
            f"{c}: {figures[f'scaling_d{c}']:.2f}x" for c in counts)
    return figures, settings, text
