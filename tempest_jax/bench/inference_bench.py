"""Inference cost: the server's act call and the bare forward pass per batch size.

Each point times, on frames recorded from the simulator: `act`, one `ServerPolicy` call as the
server makes it (host buffers, one jitted forward + action selection, the reply read back), and
`forward`, the jitted network alone on a device-resident batch. `ceiling` is batch / act time:
the frames/s a server could answer if inference were its only cost, the bound on
`bench server` with that many lockstep clients. Rates are the best of three timed rounds.
The network is the config's (default preset: the reference-sized network).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from tempest_jax import protocol as P
from tempest_jax.actor import Inference, ParamStore, ServerPolicy
from tempest_jax.bench.report import best_rate, table
from tempest_jax.bench.server_bench import recorded_frames
from tempest_jax.cli import add_config_arguments, config_from_args
from tempest_jax.learner import make_learner
from tempest_jax.networks import param_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="frames per call (default: 1 4 16 64)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="minimum seconds per timed round (default: 1)")


def _time_point(policy: ServerPolicy, forward, params, batch: P.FrameBatch,
                seconds: float) -> tuple[float, float]:
    """(act ms, forward ms) per call for one batch."""
    n = len(batch)
    ids = np.arange(n)
    obs = jax.device_put(batch.state)

    def act() -> int:
        policy(ids, batch)
        return n

    def forward_only() -> int:
        forward(params, obs).block_until_ready()
        return n

    return n / best_rate(act, seconds) * 1e3, n / best_rate(forward_only, seconds) * 1e3


def measure(args: argparse.Namespace):
    cfg = config_from_args(args)
    learner = make_learner(cfg)
    inference = Inference(learner, cfg.learner.inference_dtype)
    state = learner.init(jax.random.key(0))
    params = inference.params(state.params)
    policy = ServerPolicy(inference, ParamStore(params), cfg.schedule, key=jax.random.key(1))
    forward = jax.jit(inference.network.apply)
    wire = recorded_frames(max(args.batch), ticks=1)
    rows, figures = [], {}
    for batch_size in args.batch:
        batch = P.decode_wire(b"".join(wire[:batch_size]))
        act_ms, forward_ms = _time_point(policy, forward, params, batch, args.seconds)
        figures[f"act_ms_b{batch_size}"] = act_ms
        figures[f"forward_ms_b{batch_size}"] = forward_ms
        figures[f"ceiling_frames_per_s_b{batch_size}"] = batch_size / act_ms * 1e3
        rows.append((batch_size, act_ms, forward_ms, batch_size / act_ms * 1e3))
    count = param_count(state.params)
    settings = {"config": args.config, "overrides": args.overrides, "batch": args.batch,
                "network_params": count, "devices": learner.num_devices,
                "inference_dtype": inference.dtype_name}
    text = table(rows, ("batch", "act ms", "forward ms", "ceiling frames/s"))
    return figures, settings, text + (f"\n(network: {count:,} parameters, "
                                      f"{inference.dtype_name} matmuls)")
