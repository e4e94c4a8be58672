"""Server frames/s and reply latency with lockstep clients, real inference, learning off and on.

The server is the real training server (`train --env mame`: batched inference with the configured
network, n-step accumulator and replay sink; with learning on, the learner thread too). Its
clients run in a separate process and replay pre-recorded simulator frames in lockstep (each
waits for its reply before sending the next), so they cost little CPU; on a 2-core machine they
still share the cores with the server. Latency is measured by the clients: send to whole reply.
The server compiles every padded batch size before it accepts clients, and the learner takes
its first step (its compilation) before the learning-on points, so no point times a
compilation.

Before each learning-off point, with no client connected, the run's own network answers
batches of that many recorded frames through an act call like the server's (`bench
inference`'s act) for `--ceiling-seconds`: `ceiling_frames_per_s_cN` is N / its median time,
the frames/s the server could answer if inference were its only cost, measured in the same
process a moment before the point, and `ceiling_share_cN` the point's frames/s over it. The
share stays well below 1 with lockstep clients: every batch waits for the act call, then for
the server's replies, the clients' turnaround and the server's reads of the next frames, none
of which overlap the call, and on a small machine the clients share the server's cores.

That serving cost is measured too, before each learning-off point: the same clients against a
server of the run's settings whose policy costs nothing (every reply a no-op, no replay sink)
for `--server-only-seconds`: `server_only_frames_per_s_cN`. A lockstep batch costs its act
call plus that serving, one after the other, so `serial_bound_frames_per_s_cN`, 1 / (1 /
ceiling + 1 / server-only), is about the most the point can serve; the point falls short of it
by what the bound leaves out, mainly the replay sink's work on the server thread and the act
call slowed by that work beside it. The share of the ceiling that lockstep serving can reach
is at most server-only / (ceiling + server-only).
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import threading
import time

import jax
import numpy as np

from tempest_jax import cli, sim
from tempest_jax import protocol as P
from tempest_jax.actor import ServerPolicy
from tempest_jax.bench.report import alternating_times, table
from tempest_jax.cli import non_negative, positive
from tempest_jax.clients import ClientPool, run_lockstep
from tempest_jax.config import ServerConfig
from tempest_jax.policy import PolicyOutput
from tempest_jax.server import GameServer
from tempest_jax.simclient import frame_wire_bytes

RECORDED_TICKS = 400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_config_arguments(parser)
    parser.add_argument("--clients", type=positive(), nargs="+", default=[1, 4, 16],
                        help="lockstep client counts, one point each (default: 1 4 16)")
    parser.add_argument("--seconds", type=positive(float), default=3.0,
                        help="measured time per point")
    parser.add_argument("--learning", choices=("off", "on", "both"), default="both",
                        help="points with the learner paused, running, or both phases in turn "
                             "(default: both)")
    parser.add_argument("--ceiling-seconds", type=non_negative(float), default=1.0,
                        help="seconds of act calls that measure each learning-off point's "
                             "inference ceiling (0: none)")
    parser.add_argument("--server-only-seconds", type=non_negative(float), default=1.0,
                        help="seconds of lockstep clients against a server whose policy costs "
                             "nothing, before each learning-off point (0: none)")


def recorded_frames(games: int, ticks: int = RECORDED_TICKS, seed: int = 0) -> list[bytes]:
    """Wire frames of `games` simulator games played by the expert, game-major."""
    state, frame = sim.reset(jax.random.key(seed), games)
    per_tick = []
    for _ in range(ticks):
        per_tick.append(frame_wire_bytes(frame))
        state, frame = sim.step(state, sim.expert_actions(frame))
    return [per_tick[t][g] for g in range(games) for t in range(ticks)]


def _warm_up_learner(trainer, frames: list[bytes], clients: int = 4,
                     timeout: float = 600.0) -> float:
    """Serve frames until the learner has taken a step, so the learning-on points measure
    learning rather than the first update's compilation. Returns the seconds it took."""
    start, updates = time.monotonic(), trainer.updates
    clients = min(clients, len(frames) // RECORDED_TICKS)
    pool = ClientPool(trainer.server.address, clients, timeout=60.0)
    try:
        tick = 0
        while trainer.updates == updates:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"the learner took no step in {timeout:.0f} s")
            pool.exchange([frames[g * RECORDED_TICKS + tick % RECORDED_TICKS]
                           for g in range(clients)])
            tick += 1
    finally:
        pool.close()
    return time.monotonic() - start


def act_call(policy: ServerPolicy, batch: P.FrameBatch):
    """One act call as the server makes it, on `batch`."""
    ids = np.arange(len(batch))
    return lambda: policy(ids, batch)


def _ceiling_frames_per_s(policy: ServerPolicy, frames: list[bytes], clients: int,
                          seconds: float) -> float:
    """`clients` / the median time of `policy`'s act call on that many recorded frames."""
    batch = P.decode_wire(b"".join(frames[g * RECORDED_TICKS] for g in range(clients)))
    ms = alternating_times([act_call(policy, batch)], seconds)
    return clients / float(np.median(ms)) * 1e3


def _clients_process(address, frames, clients, seconds, out):
    out.put(run_lockstep(tuple(address), frames, clients, seconds))


def _run_clients(ctx, address, frames: list[bytes], clients: int, seconds: float) -> dict:
    """`run_lockstep` in a separate process (the clients' CPU is not this process's). A client
    process that dies (its traceback is on stderr) or hangs ends the point with an error."""
    out = ctx.Queue()
    proc = ctx.Process(target=_clients_process, args=(address, frames, clients, seconds, out))
    proc.start()
    deadline = time.monotonic() + seconds + 300
    try:
        while proc.is_alive() and time.monotonic() < deadline:
            try:
                return out.get(timeout=1.0)
            except queue.Empty:
                pass
        try:
            return out.get(timeout=1.0)  # what it put just before it exited
        except queue.Empty:
            state = ("still running" if proc.is_alive()
                     else f"exited with code {proc.exitcode}")
            raise RuntimeError(f"bench server: the process of {clients} lockstep clients "
                               f"reported nothing ({state})") from None
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _no_op_policy(client_ids: np.ndarray, batch: P.FrameBatch) -> PolicyOutput:
    """A policy that costs nothing: every reply the no-op action (as the network's)."""
    rows = len(client_ids)
    return PolicyOutput(joint=np.zeros(rows, np.int64), is_expert=np.zeros(rows, bool))


def _server_only_frames_per_s(cfg: ServerConfig, ctx, frames: list[bytes], clients: int,
                              seconds: float) -> float:
    """Frames/s of `clients` lockstep clients against a server of `cfg` (on a free loopback
    port) whose policy costs nothing and which has no replay sink: the serving alone."""
    server = GameServer(cfg, _no_op_policy)
    thread = threading.Thread(target=server.serve_forever, name="bench-server-only",
                              daemon=True)
    thread.start()
    try:
        return _run_clients(ctx, server.address, frames, clients, seconds)["frames_per_s"]
    finally:
        server.stop()
        thread.join()


def measure(args: argparse.Namespace):
    from tempest_jax.bench.served import ServedRun

    frames = recorded_frames(max(args.clients))
    phases = {"off": [False], "on": [True], "both": [False, True]}[args.learning]
    cfg = cli.config_from_args(args).replace(replay={"capacity": 1_000_000, "min_size": 2_000})
    ctx = multiprocessing.get_context("spawn")
    rows, figures = [], {}
    learner_warmup_s = None
    with ServedRun(cfg, training=False) as run:
        # The ceiling's own policy on the run's network and parameters (the server's is left
        # alone), made once: it compiles each padded batch size once.
        trainer = run.trainer
        ceiling_policy = ServerPolicy(trainer.inference, trainer.params, run.cfg.schedule,
                                      key=jax.random.key(1), max_clients=max(args.clients))
        for learning in phases:
            if learning:
                trainer.controls.set_training(True)
                learner_warmup_s = _warm_up_learner(trainer, frames)
            for clients in args.clients:
                tag = f"c{clients}_learn_{'on' if learning else 'off'}"
                ceiling = server_only = None
                if not learning and args.ceiling_seconds > 0:
                    ceiling = _ceiling_frames_per_s(ceiling_policy, frames, clients,
                                                    args.ceiling_seconds)
                    figures[f"ceiling_frames_per_s_c{clients}"] = ceiling
                if not learning and args.server_only_seconds > 0:
                    server_only = _server_only_frames_per_s(
                        run.cfg.server, ctx, frames, clients, args.server_only_seconds)
                    figures[f"server_only_frames_per_s_c{clients}"] = server_only
                    if ceiling is not None:
                        figures[f"serial_bound_frames_per_s_c{clients}"] = 1.0 / (
                            1.0 / ceiling + 1.0 / server_only)
                updates_before = trainer.updates
                result = _run_clients(ctx, run.address, frames, clients, args.seconds)
                updates = trainer.updates - updates_before
                share = None if ceiling is None else result["frames_per_s"] / ceiling
                if share is not None:
                    figures[f"ceiling_share_c{clients}"] = share
                figures[f"frames_per_s_{tag}"] = result["frames_per_s"]
                figures[f"latency_ms_p50_{tag}"] = result["latency_ms_p50"]
                figures[f"latency_ms_p99_{tag}"] = result["latency_ms_p99"]
                figures[f"updates_{tag}"] = updates
                rows.append((clients, "on" if learning else "off", result["frames_per_s"],
                             result["latency_ms_p50"], result["latency_ms_p99"], updates,
                             "" if ceiling is None else ceiling,
                             "" if share is None else f"{share:.0%}",
                             "" if server_only is None else server_only))
    if run.errors:
        raise RuntimeError("; ".join(run.errors))
    figures["frames_per_s"] = max(r[2] for r in rows)
    best = max(rows, key=lambda r: r[2])
    figures["latency_ms_p50"], figures["latency_ms_p99"] = best[3], best[4]
    settings = {"clients": args.clients, "seconds": args.seconds, "learning": args.learning,
                "network_params": trainer.param_count, "batch_wait_ms":
                run.cfg.server.batch_wait_ms, "devices": len(jax.local_devices()),
                "learner_warmup_s": learner_warmup_s, "ceiling_seconds": args.ceiling_seconds,
                "server_only_seconds": args.server_only_seconds,
                "inference_dtype": trainer.inference.dtype_name,
                "clients_share_cores_with_server": True}
    text = table(rows, ("clients", "learning", "frames/s", "p50 ms", "p99 ms", "updates",
                        "ceiling frames/s", "share", "server-only frames/s"))
    return figures, settings, text + (f"\n(network: {trainer.param_count:,} parameters, "
                                      f"{trainer.inference.dtype_name} matmuls)")
