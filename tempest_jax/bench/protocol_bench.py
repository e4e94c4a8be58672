"""Frames parsed per second: bulk vectorised decode, framing + decode, and scalar parsing.

The bulk figure (`frames_per_s`) is the server's hot path: whole frames decoded into column
arrays and validated in one numpy pass. `frames_per_s_stream` adds the incremental framing of a
client's byte stream fed in socket-sized chunks; `frames_per_s_scalar` parses one Frame object
at a time.
"""

from __future__ import annotations

import argparse

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.bench.report import best_rate, table
from tempest_jax.cli import positive
from tempest_jax.features import STATE_SIZE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=positive(), default=4096, help="frames per bulk decode")
    parser.add_argument("--chunk", type=positive(), default=65536, help="bytes per stream read")
    parser.add_argument("--seconds", type=positive(float), default=1.0,
                        help="time per measurement round")


def random_wire_frames(n: int, seed: int = 0) -> bytes:
    """n valid frames with random header values and states, as wire bytes."""
    rng = np.random.default_rng(seed)
    header = {
        "subj_reward": rng.normal(size=n), "obj_reward": rng.normal(size=n) * 100,
        "gamestate": rng.integers(0, 0x25, n), "game_mode": rng.integers(0, 256, n),
        "done": rng.integers(0, 2, n), "frame": np.arange(n) % 65536,
        "score": rng.integers(0, 1_000_000, n), "save_signal": np.zeros(n),
        "cmd_fire": rng.integers(0, 2, n), "cmd_zap": rng.integers(0, 2, n),
        "cmd_spinner": rng.integers(-32, 32, n), "expert_target": rng.integers(0, 16, n),
        "player_seg": rng.integers(0, 16, n), "is_open": rng.integers(0, 2, n),
        "expert_fire": rng.integers(0, 2, n), "expert_zap": rng.integers(0, 2, n),
        "level": rng.integers(0, 99, n),
    }
    return P.encode_frames(header, rng.uniform(-1, 1, (n, STATE_SIZE)).astype(np.float32))


def measure(args: argparse.Namespace):
    n = args.frames
    wire = random_wire_frames(n)
    assert P.decode_wire(wire).valid.all()

    def bulk() -> int:
        return len(P.decode_wire(wire))

    def stream() -> int:
        splitter = P.FrameSplitter()
        view = memoryview(wire)
        count = 0
        for start in range(0, len(wire), args.chunk):
            payloads = splitter.feed(view[start: start + args.chunk])
            if payloads:
                count += len(P.decode_payloads(b"".join(payloads)))
        return count

    scalar_frames = P.FrameSplitter().feed(wire[: 256 * P.FRAME_WIRE_SIZE])

    def scalar() -> int:
        for payload in scalar_frames:
            P.parse_payload(payload)
        return len(scalar_frames)

    rates = {name: best_rate(fn, args.seconds) for name, fn in
             (("bulk", bulk), ("stream", stream), ("scalar", scalar))}
    figures = {"frames_per_s": rates["bulk"], "frames_per_s_stream": rates["stream"],
               "frames_per_s_scalar": rates["scalar"],
               "mb_per_s": rates["bulk"] * P.FRAME_WIRE_SIZE / 1e6}
    settings = {"frames": n, "chunk": args.chunk, "seconds": args.seconds}
    text = table([("bulk decode (vectorised)", rates["bulk"]),
                  (f"stream: framing in {args.chunk}-byte chunks + decode", rates["stream"]),
                  ("scalar parse_payload", rates["scalar"])],
                 ("path", "frames/s"))
    return figures, settings, text
