"""`bench fuzz --server`: a live training server under attack while healthy clients play.

The server is the real training server (`train --env mame`: validation at the edge, batched
inference, replay sink, learner thread, all supervised) in this process. Two client processes
connect to it over loopback:

- healthy: 4 lockstep clients (as MAME plays: one frame, then wait for its reply) sending valid
  frames, recording every frame sent and every reply;
- hostile: threads that send the protocol fuzzer's mutated streams (bit flips, wrong lengths and
  value counts, out-of-range fields, non-finite values, splices, random bytes, malformed and
  token handshakes), each on its own connection, cut into arbitrary chunks and ended by a close
  or a reset; and connection patterns: connect-and-close, resets, half frames left hanging,
  silent connections that never handshake, bursts of connections past the client limit, and
  clients that play valid frames in lockstep before turning bad.

At the end the healthy clients' frames and replies go through a fresh n-step accumulator; every
transition it forms must be in the replay. The bench passes when no healthy reply is missing,
no healthy transition is lost, no healthy client was dropped, and no thread of the run failed
or stalled; otherwise the command exits 1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import multiprocessing
import queue
import random
import socket
import struct
import threading
import time

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.bench.fuzz_inputs import FramePool, Source, generate_case, mutate
from tempest_jax.cli import positive

HEALTHY_CLIENTS = 4
HEALTHY_POOL = 512
HOSTILE_FUZZ_THREADS = 3
STARTUP_LIMIT_S = 600.0  # the client processes' start, on a loaded machine
REPLY_TIMEOUT_S = 60.0  # a healthy reply this late counts as missing (a hang guard)
STALLED_SOCKETS = 8  # half-frame connections the hostile patterns keep open at once
BURST = 48  # connections opened at once by the burst pattern
MUTATED_RUN = 48  # frames in a hostile run at most (below the server's queued-frames limit)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bench fuzz`'s options for --server."""
    server = parser.add_argument_group(
        "--server", "attack a live training server instead: 4 healthy lockstep clients beside "
                    "hostile ones")
    server.add_argument("--server", action="store_true",
                        help="fuzz a live training server over loopback")
    server.add_argument("--seconds", type=positive(float), default=60.0,
                        help="how long the clients play and attack (--server)")
    server.add_argument("--replay-capacity", type=positive(), default=1_000_000,
                        help="replay slots: enough to keep every transition for the check")
    server.add_argument("--config", default="smoke", metavar="PRESET|FILE",
                        help="the server's config (--server; default: smoke)")
    server.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override one config value")


def _send_chunks(sock: socket.socket, data: bytes, cuts) -> None:
    for a, b in zip((0, *cuts), (*cuts, len(data))):
        sock.sendall(data[a:b])


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly shutdown."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class HostileTally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()

    def add(self, **counts: int) -> None:
        with self.lock:
            self.counts.update(counts)


def _mutated_run(src, pool, rng: random.Random) -> tuple[bytes, tuple[int, ...], int, int]:
    """A run of up to MUTATED_RUN frames, each mutated with probability 0.7 (a mutation often
    leaves a frame valid, so the server reads on), after a plain handshake: (stream, cuts,
    frames, mutated frames)."""
    parts, mutated = [], 0
    for _ in range(rng.randint(1, MUTATED_RUN)):
        part = pool.wire[rng.randrange(len(pool.wire))]
        if rng.random() < 0.7:
            part = bytes(mutate(src, bytearray(part), pool))
            mutated += 1
        parts.append(part)
    stream = P.client_handshake() + b"".join(parts)
    cuts = tuple(sorted({rng.randrange(1, len(stream)) for _ in range(rng.randint(0, 6))}))
    return stream, cuts, len(parts), mutated


def _fuzz_streams(address, seed: int, stop: threading.Event, tally: HostileTally) -> None:
    """The fuzzer's streams (varied handshakes, framing faults, random bytes) and long runs of
    mutated frames, one connection each, ended by a close or a reset."""
    pool = FramePool.random(seed=seed)
    src = Source.seeded(seed)
    rng = random.Random(seed)
    while not stop.is_set():
        if rng.random() < 0.5:
            case = generate_case(src, pool)
            handshake, stream, cuts = case.handshake, case.stream, case.cuts
            segments = (case.segments, case.segments - len(case.intact))
        else:
            stream, cuts, *segments = _mutated_run(src, pool, rng)
            handshake = b""
        try:
            sock = socket.create_connection(address, timeout=2.0)
        except OSError:
            tally.add(connect_failed=1)
            continue
        try:
            sock.sendall(handshake)
            _send_chunks(sock, stream, cuts)
            tally.add(connections=1, frames=segments[0], mutated_frames=segments[1])
            if rng.random() < 0.2:
                with contextlib.suppress(OSError):
                    sock.recv(4096)  # read what the server says, if anything
        except OSError:  # the server dropped it mid-stream: what a bad client earns
            tally.add(connections=1, frames=segments[0], mutated_frames=segments[1],
                      closed_by_server=1)
        finally:
            if rng.random() < 0.5:
                _reset(sock)
            else:
                sock.close()


def _patterns(address, seed: int, stop: threading.Event, tally: HostileTally) -> None:
    pool = FramePool.random(seed=seed)
    rng = random.Random(seed)
    stalled: collections.deque = collections.deque()
    handshake = P.client_handshake()
    while not stop.is_set():
        pattern = rng.randrange(6)
        try:
            if pattern == 0:  # connect, then close at once (with or without the handshake)
                sock = socket.create_connection(address, timeout=2.0)
                if rng.random() < 0.5:
                    sock.sendall(handshake)
                sock.close()
            elif pattern == 1:  # a reset in the middle of a frame
                sock = socket.create_connection(address, timeout=2.0)
                frame = pool.wire[rng.randrange(len(pool.wire))]
                sock.sendall(handshake + frame[:rng.randrange(1, len(frame))])
                _reset(sock)
                tally.add(frames=1, mutated_frames=1)
            elif pattern == 2:  # half a frame, then silence (the stall timeout ends it)
                sock = socket.create_connection(address, timeout=2.0)
                frame = pool.wire[rng.randrange(len(pool.wire))]
                sock.sendall(handshake + frame[:rng.randrange(1, len(frame))])
                stalled.append(sock)
                tally.add(frames=1, mutated_frames=1)
            elif pattern == 3:  # a connection that never says anything
                stalled.append(socket.create_connection(address, timeout=2.0))
            elif pattern == 4:  # a burst of connections past the client limit
                burst = []
                for _ in range(BURST):
                    with contextlib.suppress(OSError):
                        burst.append(socket.create_connection(address, timeout=2.0))
                for sock in burst:
                    sock.close()
                tally.add(connections=len(burst) - 1)
            else:  # valid lockstep play, then a bad frame
                _good_then_bad(address, pool, rng, tally)
            tally.add(connections=1, patterns=1)
        except OSError:
            tally.add(pattern_errors=1)
        while len(stalled) > STALLED_SOCKETS:
            stalled.popleft().close()
        time.sleep(0.001)
    for sock in stalled:
        sock.close()


def _good_then_bad(address, pool, rng: random.Random, tally: HostileTally) -> None:
    sock = socket.create_connection(address, timeout=REPLY_TIMEOUT_S)
    try:
        sock.sendall(P.client_handshake())
        for _ in range(rng.randrange(1, 12)):
            sock.sendall(pool.wire[rng.randrange(len(pool.wire))])
            reply = b""
            while len(reply) < P.REPLY_SIZE:
                chunk = sock.recv(P.REPLY_SIZE - len(reply))
                if not chunk:
                    raise ConnectionError("closed")
                reply += chunk
            tally.add(frames=1)
        src = Source.seeded(rng.randrange(1 << 30))
        bad = bytes(mutate(src, bytearray(pool.wire[rng.randrange(len(pool.wire))]), pool))
        sock.sendall(bad)
        tally.add(frames=1, mutated_frames=1)
    finally:
        sock.close()


def _hostile_process(inbox, out, seconds: float, seed: int) -> None:
    try:
        address = tuple(inbox.get())
        stop = threading.Event()
        tally = HostileTally()
        threads = [threading.Thread(target=_fuzz_streams, args=(address, seed + i, stop, tally),
                                    daemon=True) for i in range(HOSTILE_FUZZ_THREADS)]
        threads.append(threading.Thread(target=_patterns, args=(address, seed + 99, stop, tally),
                                        daemon=True))
        for t in threads:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in threads:
            t.join()
        out.put(dict(tally.counts))
    except BaseException as e:
        out.put({"error": f"{type(e).__name__}: {e}"})


def healthy_wire_frames(seed: int) -> bytes:
    """HEALTHY_POOL valid frames of a real game in play with the player alive (so each one forms
    a transition), with random states and rewards and a death now and then."""
    from tempest_jax import features as F

    rng = np.random.default_rng(seed)
    n = HEALTHY_POOL
    header = {
        "subj_reward": rng.normal(size=n), "obj_reward": rng.choice([0.0, 50.0, 150.0], n),
        "gamestate": np.full(n, F.GAMESTATE_PLAYING), "game_mode": np.full(n, 0xC0),
        "done": rng.random(n) < 0.02, "frame": np.arange(n), "score": rng.integers(0, 10**5, n),
        "save_signal": np.zeros(n), "cmd_fire": rng.integers(0, 2, n),
        "cmd_zap": np.zeros(n), "cmd_spinner": rng.integers(-32, 32, n),
        "expert_target": rng.integers(0, 16, n), "player_seg": rng.integers(0, 16, n),
        "is_open": rng.integers(0, 2, n), "expert_fire": rng.integers(0, 2, n),
        "expert_zap": np.zeros(n), "level": rng.integers(1, 17, n),
    }
    state = rng.uniform(-1, 1, (n, F.STATE_SIZE)).astype(np.float32)
    state[:, F.LAYOUT["alive"].start] = np.where(header["done"], 0.0, 1.0)  # dead only at death
    return P.encode_frames(header, state)


def _healthy_process(inbox, out, seconds: float, seed: int) -> None:
    """4 lockstep clients; reports the frame indices sent and the joint actions received."""
    try:
        from tempest_jax.clients import ClientPool
        from tempest_jax.simclient import joint_of_replies

        wire = healthy_wire_frames(seed)
        frames = [wire[i:i + P.FRAME_WIRE_SIZE] for i in range(0, len(wire), P.FRAME_WIRE_SIZE)]
        rng = np.random.default_rng(seed)
        address = tuple(inbox.get())
        pool = ClientPool(address, HEALTHY_CLIENTS, timeout=REPLY_TIMEOUT_S)
        sent, received, missing, error = [], [], 0, ""
        out.put("connected")
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                index = rng.integers(0, HEALTHY_POOL, HEALTHY_CLIENTS)
                try:
                    replies = pool.exchange([frames[i] for i in index])
                except (TimeoutError, ConnectionError) as e:
                    missing, error = HEALTHY_CLIENTS, f"{type(e).__name__}: {e}"
                    break
                sent.append(index)
                received.append(joint_of_replies(b"".join(replies)))
        finally:
            pool.close()
        out.put({"sent": np.asarray(sent).reshape(-1, HEALTHY_CLIENTS),
                 "received": np.asarray(received).reshape(-1, HEALTHY_CLIENTS),
                 "missing": missing, "error": error})
    except BaseException as e:
        out.put({"missing": HEALTHY_CLIENTS, "error": f"{type(e).__name__}: {e}",
                 "sent": np.zeros((0, HEALTHY_CLIENTS), int),
                 "received": np.zeros((0, HEALTHY_CLIENTS), int)})


def _digest(obs: bytes, action: int, ret: float, discount: float, next_obs: bytes) -> bytes:
    return hashlib.blake2b(obs + struct.pack("<Bff", action, ret, discount) + next_obs,
                           digest_size=16).digest()


def stored_digests(buffer) -> collections.Counter:
    slots = np.flatnonzero(buffer.tree.leaves > 0)
    return collections.Counter(
        _digest(buffer.obs[s].tobytes(), int(buffer.action[s]), float(buffer.ret[s]),
                float(buffer.discount[s]), buffer.obs[buffer.next_slot[s]].tobytes())
        for s in slots)


def expected_digests(cfg, sent: np.ndarray, received: np.ndarray,
                     seed: int) -> collections.Counter:
    """The healthy clients' transitions, formed from their frames and replies as the replay
    writer forms them (a fresh accumulator, one stream per client, disconnects at the end)."""
    from tempest_jax import features as F
    from tempest_jax.replay import Emission, NStepAccumulator, scaled_reward

    pool = P.decode_wire(healthy_wire_frames(seed))
    acc = NStepAccumulator.from_config(cfg.replay, HEALTHY_CLIENTS)
    streams = np.arange(HEALTHY_CLIENTS)
    emissions = []
    for index, joint in zip(sent, received):
        done = pool.done[index] != 0
        emissions.append(acc.push(
            streams, pool.state[index].astype(np.float16), np.where(done, 0, joint),
            scaled_reward(pool.obj_reward[index], pool.subj_reward[index], cfg.reward), done,
            np.zeros(HEALTHY_CLIENTS, bool),
            F.action_applied(pool.gamestate[index], pool.game_mode[index], pool.state[index])))
    emissions.append(acc.truncate(streams))
    e = Emission.concatenate(emissions)
    obs = {e.first_serial + i: row.tobytes() for i, row in enumerate(e.obs)}
    return collections.Counter(_digest(obs[s], int(a), float(r), float(d), obs[n])
                               for s, n, a, r, d in zip(e.start, e.next, e.action, e.ret,
                                                        e.discount))


@dataclasses.dataclass
class Attack:
    """What a fuzz run left: the clients' reports and the server's state at the end."""

    healthy: dict
    hostile: dict
    seconds: float
    stats: dict
    threads: dict
    stored: collections.Counter
    wrapped: bool
    errors: list[str]


def _attack(cfg, seconds: float, seed: int) -> Attack:
    """The healthy and hostile client processes against a served run, to their end."""
    from tempest_jax.bench.served import ServedRun

    ctx = multiprocessing.get_context("spawn")
    healthy_in, healthy_out, hostile_in, hostile_out = (ctx.Queue() for _ in range(4))
    processes = [ctx.Process(target=_healthy_process, name="fuzz-healthy",
                             args=(healthy_in, healthy_out, seconds, seed)),
                 ctx.Process(target=_hostile_process, name="fuzz-hostile",
                             args=(hostile_in, hostile_out, seconds, seed))]
    for process in processes:
        process.start()
    healthy: dict = {}
    hostile: dict = {}
    try:
        with ServedRun(cfg) as run:
            healthy_in.put(run.address)
            if healthy_out.get(timeout=STARTUP_LIMIT_S) != "connected":
                raise RuntimeError("the healthy clients did not connect")
            hostile_in.put(run.address)
            started = time.monotonic()
            with contextlib.suppress(queue.Empty):
                healthy = healthy_out.get(timeout=seconds + STARTUP_LIMIT_S)
            with contextlib.suppress(queue.Empty):
                hostile = hostile_out.get(timeout=STARTUP_LIMIT_S)
            elapsed = time.monotonic() - started
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    buffer = run.trainer.replay.buffer
    return Attack(healthy, hostile, elapsed, run.trainer.server.stats.snapshot(),
                  run.trainer.supervisor.health(), stored_digests(buffer),
                  buffer.obs_written > buffer.capacity, run.errors)


def measure(args: argparse.Namespace):
    from tempest_jax import cli

    cfg = cli.config_from_args(args).replace(
        server={"stall_timeout_s": 1.0, "handshake_timeout_s": 1.0},
        # The expert never acts (the clients cannot see who did), and the replay holds every
        # transition of the run (nothing is overwritten before the check).
        schedule={"expert_start": 0.0, "expert_end": 0.0},
        replay={"capacity": args.replay_capacity})
    attack = _attack(cfg, args.seconds, args.seed)
    errors = list(attack.errors)
    sent = attack.healthy.get("sent", np.zeros((0, HEALTHY_CLIENTS), int))
    expected = expected_digests(cfg, sent, attack.healthy.get("received", sent), args.seed)
    lost = sum((expected - attack.stored).values())
    if attack.wrapped:
        errors.append(f"the replay wrapped (capacity {cfg.replay.capacity:,}): raise "
                      "--replay-capacity so every transition can be checked")
    if attack.healthy.get("error"):
        errors.append(f"healthy clients: {attack.healthy['error']}")
    if "error" in attack.hostile:
        errors.append(f"hostile clients: {attack.hostile['error']}")
    elif not attack.hostile:
        errors.append("the hostile clients sent no report")
    unhealthy = {n: t["state"] for n, t in attack.threads.items()
                 if t["state"] in ("failed", "stalled")}
    missing = int(attack.healthy.get("missing", HEALTHY_CLIENTS))
    healthy_frames = int(sent.size)
    passed = not errors and missing == 0 and lost == 0 and not unhealthy and healthy_frames > 0
    figures = {
        "passed": passed, "seconds": round(attack.seconds, 2),
        "healthy_frames_served": healthy_frames,
        "healthy_frames_per_s": healthy_frames / max(attack.seconds, 1e-9),
        "replies_missing": missing, "transitions_expected": sum(expected.values()),
        "transitions_lost": lost, "thread_deaths": len(unhealthy),
        "hostile_connections": attack.hostile.get("connections", 0),
        "hostile_frames_sent": attack.hostile.get("frames", 0),
        "hostile_mutated_frames_sent": attack.hostile.get("mutated_frames", 0),
        "hostile_closed_by_server": attack.hostile.get("closed_by_server", 0),
        "frames_served": attack.stats["frames"],
        "drops_by_reason": attack.stats["drops_by_reason"], "threads": attack.threads,
        "errors": errors,
    }
    settings = {"seconds": args.seconds, "healthy_clients": HEALTHY_CLIENTS,
                "hostile_threads": HOSTILE_FUZZ_THREADS + 1, "seed": args.seed,
                "config": args.config, "replay_capacity": cfg.replay.capacity}
    return figures, settings, _text(figures)


def _text(figures: dict) -> str:
    from tempest_jax.bench.report import table

    rows = [("healthy frames served", figures["healthy_frames_served"]),
            ("healthy replies missing", figures["replies_missing"]),
            ("healthy transitions expected", figures["transitions_expected"]),
            ("healthy transitions lost", figures["transitions_lost"]),
            ("thread deaths or stalls", figures["thread_deaths"]),
            ("hostile connections", figures["hostile_connections"]),
            ("hostile frames sent", figures["hostile_frames_sent"]),
            ("hostile mutated frames sent", figures["hostile_mutated_frames_sent"]),
            ("frames served (all clients)", figures["frames_served"])]
    drops = ", ".join(f"{reason} {count:,}" for reason, count in
                      sorted(figures["drops_by_reason"].items(), key=lambda kv: -kv[1]))
    text = table(rows, ("", "count")) + f"\nserver drops: {drops or 'none'}"
    text += f"\n{'PASS' if figures['passed'] else 'FAIL'} in {figures['seconds']:.1f} s"
    for error in figures["errors"]:
        text += f"\nERROR: {error}"
    return text
