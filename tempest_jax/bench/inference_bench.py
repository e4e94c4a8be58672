"""Inference cost: the server's act call and the bare forward pass per batch size.

Each point times, on frames recorded from the simulator: `act`, one `ServerPolicy` call as the
server makes it (the packed host input, one jitted forward pass + action selection, the packed
reply read back); `forward`, the jitted network alone on a device-resident batch; and `greedy`,
the network and its greedy action (the softmax over each action's return atoms and the argmax
of expected Q that every act needs), device-resident too. The three are called in turn for
`--seconds` per batch size, so a busy machine slows them alike; times are per-call medians, and
`overhead` (act − forward, what the act call adds to the bare forward pass) and
`over_greedy` (act − greedy: the host's packing and transfers, the random draws and the action
choice) are medians over adjacent calls. `ceiling` is batch / act time: the frames/s a server
could answer if inference were its only cost, the bound on `bench server` with that many
lockstep clients. The network is the config's: by default the sim preset's smaller one;
`--config gpu` measures the reference-sized default network."""

from __future__ import annotations

import argparse

import jax
import numpy as np

from tempest_jax import protocol as P
from tempest_jax.actor import Inference, ParamStore, ServerPolicy, greedy
from tempest_jax.bench.report import alternating_times, table
from tempest_jax.bench.server_bench import act_call, recorded_frames
from tempest_jax.cli import add_config_arguments, config_from_args, positive
from tempest_jax.learner import make_learner
from tempest_jax.networks import param_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--batch", type=positive(), nargs="+", default=[1, 4, 16, 64],
                        help="frames per call (default: 1 4 16 64)")
    parser.add_argument("--seconds", type=positive(float), default=3.0,
                        help="seconds of alternating calls per batch size (default: 3)")


def device_call(function, params, batch: P.FrameBatch):
    """A jitted function of the parameters and `batch`'s observations, already on the
    device."""
    obs = jax.device_put(batch.state)
    return lambda: function(params, obs).block_until_ready()


def measure(args: argparse.Namespace):
    cfg = config_from_args(args)
    learner = make_learner(cfg)
    inference = Inference(learner, cfg.learner.inference_dtype)
    state = learner.init(jax.random.key(0))
    params = inference.params(state.params)
    policy = ServerPolicy(inference, ParamStore(params), cfg.schedule, key=jax.random.key(1),
                          max_clients=max(args.batch))
    forward = jax.jit(inference.network.apply)
    greedy_action = jax.jit(lambda p, obs: greedy(inference.network.apply, p, obs,
                                                  inference.support))
    wire = recorded_frames(max(args.batch), ticks=1)
    rows, figures = [], {}
    for batch_size in args.batch:
        batch = P.decode_wire(b"".join(wire[:batch_size]))
        ms = alternating_times([act_call(policy, batch), device_call(forward, params, batch),
                                device_call(greedy_action, params, batch)], args.seconds)
        act_ms, forward_ms, greedy_ms = (float(m) for m in np.median(ms, axis=0))
        overhead_ms = float(np.median(ms[:, 0] - ms[:, 1]))
        over_greedy_ms = float(np.median(ms[:, 0] - ms[:, 2]))
        ceiling = batch_size / act_ms * 1e3
        figures[f"act_ms_b{batch_size}"] = act_ms
        figures[f"forward_ms_b{batch_size}"] = forward_ms
        figures[f"greedy_ms_b{batch_size}"] = greedy_ms
        figures[f"act_overhead_ms_b{batch_size}"] = overhead_ms
        figures[f"act_over_greedy_ms_b{batch_size}"] = over_greedy_ms
        figures[f"ceiling_frames_per_s_b{batch_size}"] = ceiling
        rows.append((batch_size, act_ms, forward_ms, greedy_ms, overhead_ms, over_greedy_ms,
                     ceiling))
    count = param_count(state.params)
    settings = {"config": args.config, "overrides": args.overrides, "batch": args.batch,
                "seconds": args.seconds, "network_params": count, "devices": learner.num_devices,
                "inference_dtype": inference.dtype_name}
    text = table(rows, ("batch", "act ms", "forward ms", "greedy ms", "act − forward ms",
                        "act − greedy ms", "ceiling frames/s"))
    return figures, settings, text + (f"\n(network: {count:,} parameters, "
                                      f"{inference.dtype_name} matmuls; per-call medians)")
