"""Soak: the training server, learning on, serving sim clients for minutes; memory must stay flat.

The server is the real training server (`train --env mame`: batched inference, n-step
accumulator, replay sink, learner thread, periodic checkpoints) in this process, on a free
loopback port; the clients run in one child process, in lockstep as MAME plays: simulator games
(`tempest-jax sim-client`, compiled before they connect), or with --client-frames synthetic
pre-generated random valid frames (no JAX in the client: for a quick check). The soak's clock
starts at the first frame served. Every --sample-s the resident memory (RSS) of the server
process and of the client process tree is sampled, with frames served and transitions stored.

Warm-up ends at --warmup-s or once the replay ring is full, whichever is later: the replay
commits its preallocated pages as it fills, so its capacity (--replay-capacity, default small)
is chosen to fill during warm-up. The soak passes when the end RSS is at most the warm-up RSS
plus --growth-limit percent, for the server and for the clients, and nothing failed: no
dropped client, no client error, no learner error.

The configuration defaults to the `smoke` preset (a small network), so a 2-core machine runs it;
the trainer's terminal rows go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import sys
import time

from tempest_jax import cli
from tempest_jax.bench.report import descendants, rss_bytes, table

MB = 1 << 20
STARTUP_LIMIT_S = 300.0  # trainer start, client process start and first frame
DEFAULT_WARMUP_S = 60.0
SYNTHETIC_FRAMES = 4096
GAMESTATE_PLAYING, GAME_MODE_REAL = 0x04, 0x80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_config_arguments(parser)
    parser.set_defaults(config="smoke")
    parser.add_argument("--clients", type=cli.positive(), default=16,
                        help="sim client games (TCP clients)")
    parser.add_argument("--client-frames", choices=("sim", "synthetic"), default="sim",
                        help="what the clients send: simulator games, or random valid frames")
    parser.add_argument("--minutes", type=cli.positive(float), default=10.0, help="soak duration")
    parser.add_argument("--seconds", type=cli.positive(float), default=None,
                        help="soak duration in seconds (instead of --minutes)")
    parser.add_argument("--warmup-s", type=cli.non_negative(float), default=None,
                        help=f"warm-up before the memory baseline (default {DEFAULT_WARMUP_S:.0f}"
                             " s, at most a quarter of the duration)")
    parser.add_argument("--sample-s", type=cli.positive(float), default=5.0,
                        help="seconds between samples")
    parser.add_argument("--replay-capacity", type=cli.positive(), default=8192,
                        help="replay slots; small, so the ring fills during warm-up")
    parser.add_argument("--growth-limit", type=float, default=5.0,
                        help="allowed RSS growth after warm-up, percent")


def _play(client_frames: str, clients: int, seconds: float, inbox, out, played) -> None:
    """The client process: gets ready, waits for the server's address, plays; sets `played`
    before it starts to wind down, then reports its run or its error."""
    try:
        if client_frames == "sim":
            import jax
            import numpy as np

            from tempest_jax import sim
            from tempest_jax.simclient import run_sim_clients

            # Compile the simulator before connecting, so the server sees a steady client.
            state, _ = sim.reset(jax.random.key(0), clients, 1)
            jax.block_until_ready(sim.step(state, np.zeros(clients, np.int64)))
            address = inbox.get()
            run = run_sim_clients(tuple(address), clients, seconds=seconds)
            result = {"frames": run.frames, "seconds": run.seconds}
        else:
            from tempest_jax.clients import run_lockstep

            frames = synthetic_frames(SYNTHETIC_FRAMES)
            address = inbox.get()
            run = run_lockstep(tuple(address), frames, clients, seconds, warmup_s=0.0)
            result = {"frames": run["frames"], "seconds": run["seconds"]}
    except Exception as e:  # reported by the bench as a client error
        result = {"error": f"{type(e).__name__}: {e}"}
    played.set()
    out.put(result)


def synthetic_frames(n: int, seed: int = 0) -> list[bytes]:
    """n random valid frames (wire bytes) of a game in play: its actions are applied, so
    every frame makes a transition, and an episode ends about every 500 frames."""
    import numpy as np

    from tempest_jax import protocol as P
    from tempest_jax.bench.protocol_bench import random_wire_frames

    records = np.frombuffer(random_wire_frames(n, seed), dtype=P.WIRE_DTYPE).copy()
    records["gamestate"], records["game_mode"] = GAMESTATE_PLAYING, GAME_MODE_REAL
    records["done"] = np.random.default_rng(seed).random(n) < 1 / 500
    return [r.tobytes() for r in records]


def _growth(baseline: float, end: float) -> float:
    return (end - baseline) / baseline * 100.0 if baseline else 0.0


def measure(args: argparse.Namespace):
    from tempest_jax.bench.served import ServedRun

    duration = args.seconds if args.seconds is not None else args.minutes * 60.0
    warmup_s = args.warmup_s if args.warmup_s is not None else min(DEFAULT_WARMUP_S,
                                                                    duration / 4)
    sample_s = min(args.sample_s, duration / 10)
    base = cli.config_from_args(args)
    cfg = base.replace(server={"max_clients": args.clients},
                       replay={"capacity": args.replay_capacity,
                               "min_size": min(base.replay.min_size, args.replay_capacity // 4)})
    # The clients get ready (compile) while the trainer starts.
    ctx = multiprocessing.get_context("spawn")
    inbox, out, played = ctx.Queue(), ctx.Queue(), ctx.Event()
    clients = ctx.Process(target=_play, name="soak-clients",
                          args=(args.client_frames, args.clients, duration, inbox, out, played))
    clients.start()
    client_result: dict = {}
    try:
        with contextlib.redirect_stdout(sys.stderr), ServedRun(cfg, log_interval_s=10.0) as run:
            samples = _soak(run, clients, inbox, played, duration, sample_s)
            with contextlib.suppress(queue.Empty):
                client_result = out.get(timeout=30)
    finally:
        if clients.is_alive():
            clients.terminate()
        clients.join(timeout=30)
    errors = run.errors
    if "error" in client_result:
        errors.append(f"clients: {client_result['error']}")
    elif not client_result:
        errors.append(f"the client process ended without a result (exit code "
                      f"{clients.exitcode})")
    return _report(args, run.cfg, run.trainer, samples, run.trainer.server.stats.snapshot(),
                   client_result, errors, duration, warmup_s, sample_s)


def _soak(run, clients, inbox, played, duration: float, sample_s: float) -> list[dict]:
    """Hand the clients the server's address, then sample until they have played.

    A sample counts only if the clients were still playing when it ended: a process that is
    winding down (or has exited, unreaped) reads as a fraction of its memory, or 0 MB."""
    server = run.trainer.server
    first_frames = server.stats.frames
    inbox.put(run.address)
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while server.stats.frames == first_frames:
        if not (run.alive and clients.is_alive()):
            raise RuntimeError(f"the soak did not start: {run.errors or 'clients exited'}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no frame served within {STARTUP_LIMIT_S:.0f} s")
        time.sleep(0.05)
    samples = []
    start = next_sample = time.monotonic()
    while not played.is_set() and clients.is_alive() and run.alive:
        if time.monotonic() > start + duration + STARTUP_LIMIT_S:
            run.errors.append(f"clients still running {STARTUP_LIMIT_S:.0f} s after the soak")
            break
        if time.monotonic() >= next_sample:
            sample = _sample(run.trainer, clients.pid, time.monotonic() - start)
            if not played.is_set():
                samples.append(sample)
            next_sample += sample_s
        time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
    return samples


def _sample(trainer, clients_pid: int, t: float) -> dict:
    me = os.getpid()
    client_tree = [clients_pid, *descendants(clients_pid)]
    return {"t_s": round(t, 2),
            "server_rss_mb": rss_bytes() / MB,
            "clients_rss_mb": sum(rss_bytes(p) for p in client_tree) / MB,
            "tree_rss_mb": (rss_bytes() + sum(rss_bytes(p) for p in descendants(me))) / MB,
            "frames": trainer.server.stats.frames,
            "transitions": trainer.replay.transitions,
            "replay_size": len(trainer.replay.buffer),
            "replay_written": trainer.replay.buffer.obs_written,
            "updates": trainer.updates}


def _report(args, cfg, trainer, samples, stats, client_result, errors, duration, warmup_s,
            sample_s):
    if not samples:
        errors.append("no samples taken: the clients never played")
        samples = [_sample(trainer, os.getpid(), 0.0)]
    capacity = cfg.replay.capacity
    # Full once the ring has wrapped: every slot's pages are committed.
    full_at = next((s["t_s"] for s in samples if s["replay_written"] >= capacity), None)
    warm_from = max(warmup_s, full_at if full_at is not None else warmup_s)
    warm = next((s for s in samples if s["t_s"] >= warm_from), samples[-1])
    last = samples[-1]
    after = [s for s in samples if s["t_s"] >= warm["t_s"]]
    limit = 1.0 + args.growth_limit / 100.0
    server_flat = last["server_rss_mb"] <= warm["server_rss_mb"] * limit
    clients_flat = last["clients_rss_mb"] <= warm["clients_rss_mb"] * limit
    drops = stats["drops"]
    if drops:
        errors.append(f"server dropped clients: {stats['drops_by_reason']}")
    threads = trainer.supervisor.health()
    unhealthy = {name: t["state"] for name, t in threads.items()
                 if t["state"] in ("failed", "stalled")}
    if unhealthy:
        errors.append(f"threads failed or stalled: {unhealthy}")
    passed = server_flat and clients_flat and not errors
    seconds = last["t_s"] or 1e-9
    figures = {
        "passed": passed, "server_flat": server_flat, "clients_flat": clients_flat,
        "seconds": last["t_s"],
        "warmup_end_s": warm["t_s"], "replay_full_at_s": full_at,
        "server_rss_mb_start": samples[0]["server_rss_mb"],
        "server_rss_mb_warm": warm["server_rss_mb"],
        "server_rss_mb_peak": max(s["server_rss_mb"] for s in after),
        "server_rss_mb_end": last["server_rss_mb"],
        "server_growth_percent": _growth(warm["server_rss_mb"], last["server_rss_mb"]),
        "clients_rss_mb_warm": warm["clients_rss_mb"],
        "clients_rss_mb_peak": max(s["clients_rss_mb"] for s in after),
        "clients_rss_mb_end": last["clients_rss_mb"],
        "clients_growth_percent": _growth(warm["clients_rss_mb"], last["clients_rss_mb"]),
        "tree_rss_mb_warm": warm["tree_rss_mb"], "tree_rss_mb_end": last["tree_rss_mb"],
        "tree_growth_percent": _growth(warm["tree_rss_mb"], last["tree_rss_mb"]),
        "frames_served": stats["frames"], "frames_per_s": last["frames"] / seconds,
        "client_frames": client_result.get("frames", 0),
        "transitions_stored": trainer.replay.transitions, "updates": trainer.updates,
        "drops": drops, "drops_by_reason": stats["drops_by_reason"],
        "thread_failures": len(unhealthy), "threads": threads,
        "errors": errors, "samples": samples,
    }
    note = ("warm-up ends at the later of --warmup-s and the replay filling"
            if full_at is not None else
            "the replay never filled: warm-up ended at --warmup-s; pages the replay committed "
            "later count as growth")
    settings = {"clients": args.clients, "client_frames": args.client_frames,
                "duration_s": duration, "warmup_s": warmup_s,
                "sample_s": sample_s, "growth_limit_percent": args.growth_limit,
                "replay_capacity": capacity, "replay_min_size": cfg.replay.min_size,
                "config": args.config, "network_params": trainer.param_count,
                "learning": True, "note": note}
    thread_states = ", ".join(f"{name} {t['state']}" for name, t in sorted(threads.items()))
    step = max(1, len(samples) // 12)
    shown = samples[::step] + ([last] if (len(samples) - 1) % step else [])
    text = table([(s["t_s"], s["server_rss_mb"], s["clients_rss_mb"], s["frames"],
                   s["transitions"], s["replay_size"], s["updates"]) for s in shown],
                 ("t s", "server MB", "clients MB", "frames", "transitions", "replay",
                  "updates"))
    text += (f"\n\n{'PASS' if passed else 'FAIL'}: server RSS {warm['server_rss_mb']:.1f} MB "
             f"after warm-up ({warm['t_s']:.0f} s) -> {last['server_rss_mb']:.1f} MB at the end "
             f"({figures['server_growth_percent']:+.2f} %, peak "
             f"{figures['server_rss_mb_peak']:.1f} MB); clients {warm['clients_rss_mb']:.1f} -> "
             f"{last['clients_rss_mb']:.1f} MB ({figures['clients_growth_percent']:+.2f} %); "
             f"limit +{args.growth_limit:g} %\n"
             f"{stats['frames']:,} frames served ({figures['frames_per_s']:,.0f}/s), "
             f"{trainer.replay.transitions:,} transitions stored, {trainer.updates:,} updates, "
             f"{drops} drops\n"
             f"threads: {thread_states}\n({note})")
    for error in errors:
        text += f"\nERROR: {error}"
    return figures, settings, text
