"""The protocol fuzzer's inputs: valid frames, structure-aware mutations of them, random bytes
and handshakes, as byte streams cut into arbitrary chunks (`generate_case`). Shared by the
reader fuzzer (`bench fuzz`) and the live-server fuzzer (`bench fuzz --server`)."""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.features import STATE_SIZE

POOL_FRAMES = 512
_LENGTH_EDGES = (0, 1, P.HEADER_SIZE - 1, P.HEADER_SIZE, P.HEADER_SIZE + 1, P.PAYLOAD_SIZE - 1,
                 P.PAYLOAD_SIZE, P.PAYLOAD_SIZE + 1, P.FRAME_WIRE_SIZE, 0x7FFF, 0xFFFF)
_COUNT_EDGES = (0, 1, STATE_SIZE - 1, STATE_SIZE + 1, 0x8000, 0xFFFF)
_REWARD_EDGES = (float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -5e-324)
# Big-endian float32 bit patterns: non-finite, just outside [-1, 1], and valid edge values.
_STATE_EDGES = tuple(bytes.fromhex(h) for h in (
    "7fc00000", "ffc00000", "7f800001", "7f800000", "ff800000", "3f800001", "bf800001",
    "40000000", "7f7fffff", "3f800000", "bf800000", "00000001", "80000000", "00000000"))


class Source:
    """Where a generated input's choices come from: a seeded `random.Random` in the bench,
    Hypothesis draws in the tests (so failures shrink)."""

    def __init__(self, integer: Callable[[int, int], int], raw: Callable[[int], bytes]):
        self.int = integer  # int(lo, hi) -> lo..hi inclusive
        self.bytes = raw  # bytes(n) -> n bytes

    @classmethod
    def seeded(cls, seed: int) -> Source:
        rng = random.Random(seed)
        return cls(rng.randint, rng.randbytes)

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]


@dataclasses.dataclass(frozen=True)
class FramePool:
    """Valid frames as wire bytes and as the `Frame`s they must decode to."""

    wire: list[bytes]
    frames: list[P.Frame]

    @classmethod
    def random(cls, n: int = POOL_FRAMES, seed: int = 0) -> FramePool:
        """Frames spanning every header field's legal range, with edge values mixed in."""
        rng = np.random.default_rng(seed)
        reward = rng.normal(size=(2, n)) * 10.0 ** rng.integers(-3, 4, (2, n))
        reward[:, :8] = [[0.0, -0.0, 1e308, -1e308, 5e-324, 1.0, -1000.0, 150.0]] * 2
        header = {
            "subj_reward": reward[0], "obj_reward": reward[1],
            "gamestate": rng.integers(0, 256, n), "game_mode": rng.integers(0, 256, n),
            "done": rng.integers(0, 2, n), "frame": rng.integers(0, 1 << 16, n),
            "score": rng.integers(0, 1 << 32, n), "save_signal": rng.integers(0, 2, n),
            "cmd_fire": rng.integers(0, 2, n), "cmd_zap": rng.integers(0, 2, n),
            "cmd_spinner": rng.integers(P.SPINNER_MIN, P.SPINNER_MAX + 1, n),
            "expert_target": rng.integers(P.NO_TARGET, 16, n),
            "player_seg": rng.integers(0, 16, n), "is_open": rng.integers(0, 2, n),
            "expert_fire": rng.integers(0, 2, n), "expert_zap": rng.integers(0, 2, n),
            "level": rng.integers(0, 256, n),
        }
        state = rng.uniform(-1, 1, (n, STATE_SIZE)).astype(np.float32)
        edges = np.array([1.0, -1.0, 0.0, -0.0, np.float32(1e-45)], dtype=np.float32)
        mask = rng.random((n, STATE_SIZE)) < 0.05
        state[mask] = rng.choice(edges, int(mask.sum()))
        buf = P.encode_frames(header, state)
        wire = [buf[i: i + P.FRAME_WIRE_SIZE] for i in range(0, len(buf), P.FRAME_WIRE_SIZE)]
        frames = [P.Frame(**{name: header[name][i].item() for name in P.HEADER_FIELDS[1:]},
                          state=state[i]) for i in range(n)]
        return cls(wire, frames)


@dataclasses.dataclass(frozen=True)
class StreamCase:
    """One fuzz input: a byte stream, where it is cut into chunks, and probes of it."""

    stream: bytes
    cuts: tuple[int, ...] = ()  # chunk boundaries, increasing, inside (0, len)
    intact: dict[int, P.Frame] = dataclasses.field(default_factory=dict)  # prefix offset -> frame
    segments: int = 0  # frames, mutated frames and random byte runs, intact ones included
    frame_slice: tuple[int, int] = (0, 0)  # given to parse_frame
    handshake: bytes = b""  # what the client sent before the stream
    handshake_sent: tuple[int, bytes] | None = None  # (value, token) of a well-formed handshake
    handshake_len: int = 2  # first bytes given to parse_handshake

    def reproducer(self) -> dict:
        return {"stream_hex": self.stream.hex(), "cuts": list(self.cuts),
                "frame_slice": list(self.frame_slice), "handshake_hex": self.handshake.hex(),
                "handshake_len": self.handshake_len}


# --- input generation ---------------------------------------------------------------------------

def _field_slot(name: str) -> tuple[int, np.dtype]:
    """Wire offset (length prefix included) and dtype of a header field."""
    dtype, offset = P.WIRE_DTYPE.fields[name][:2]
    return offset, dtype


def _put(b: bytearray, offset: int, data: bytes) -> None:
    """Overwrite bytes at `offset`, clipped to the (possibly already shortened) frame."""
    b[offset: offset + len(data)] = data[: max(0, len(b) - offset)]


def mutate(src: Source, b: bytearray, pool: FramePool) -> bytearray:
    op, n = src.int(0, 12), len(b)
    if op == 0 and n:  # flip one bit
        b[src.int(0, n - 1)] ^= 1 << src.int(0, 7)
    elif op == 1 and n:  # overwrite one byte
        b[src.int(0, n - 1)] = src.int(0, 255)
    elif op == 2:  # insert bytes
        at = src.int(0, n)
        b[at:at] = src.bytes(src.int(1, 16))
    elif op == 3 and n:  # delete bytes
        at = src.int(0, n - 1)
        del b[at: at + src.int(1, 16)]
    elif op == 4:  # truncate
        del b[src.int(0, n):]
    elif op == 5:  # a wrong length prefix, payload unchanged
        value = src.choice(_LENGTH_EDGES) if src.int(0, 1) else src.int(0, 0xFFFF)
        _put(b, 0, struct.pack(">H", value))
    elif op == 6:  # a shorter payload with a matching prefix
        length = src.int(P.HEADER_SIZE, P.PAYLOAD_SIZE)
        b = bytearray(struct.pack(">H", length)) + b[2: 2 + length]
    elif op == 7:  # a wrong num_values, lengths unchanged
        value = src.choice(_COUNT_EDGES) if src.int(0, 1) else src.int(0, 0xFFFF)
        _put(b, _field_slot("num_values")[0], struct.pack(">H", value))
    elif op == 8:  # k values, announced and framed consistently (k > 195 overflows the frame)
        k = src.int(0, STATE_SIZE + 4)
        length = P.HEADER_SIZE + 4 * k
        body = bytes(b[2: 2 + length]).ljust(length, b"\x00")
        b = bytearray(struct.pack(">HH", length, k) + body[2:])
    elif op == 9:  # a header field outside its meaning's range
        name, lo, hi = src.choice(P._HEADER_RANGES)
        offset, dtype = _field_slot(name)
        info = np.iinfo(dtype)
        edges = [v for v in (lo - 1, hi + 1) if info.min <= v <= info.max]
        value = src.choice(edges) if src.int(0, 1) else src.int(int(info.min), int(info.max))
        _put(b, offset, np.array(value, dtype=dtype).tobytes())
    elif op == 10:  # a non-finite (or extreme but finite) reward
        offset, _ = _field_slot(src.choice(("subj_reward", "obj_reward")))
        _put(b, offset, struct.pack(">d", src.choice(_REWARD_EDGES)))
    elif op == 11:  # a state value: non-finite, just outside [-1, 1], or a valid edge
        index = src.int(0, STATE_SIZE - 1)
        _put(b, P.LENGTH_PREFIX_SIZE + P.HEADER_SIZE + 4 * index, src.choice(_STATE_EDGES))
    elif op == 12:  # splice: the tail of another frame
        other = pool.wire[src.int(0, len(pool.wire) - 1)]
        at = src.int(0, n)
        b = b[:at] + bytearray(other[at:])
    return b


def _random_length(src: Source) -> int:
    return src.int(0, src.choice((3, 64, 2 * P.FRAME_WIRE_SIZE)))


def _cuts(src: Source, n: int) -> tuple[int, ...]:
    mode = src.int(0, 9)
    if n < 2 or mode < 3:
        return ()
    if mode < 8:
        return tuple(sorted({src.int(1, n - 1) for _ in range(src.int(1, min(12, n - 1)))}))
    size = src.choice((1, 2, 3, 5, 64, P.FRAME_WIRE_SIZE - 1, P.FRAME_WIRE_SIZE,
                       P.FRAME_WIRE_SIZE + 1, 4096, 1 << 16))
    size = max(size, n // 512 + 1)  # recv-sized pieces, at most ~512 of them
    return tuple(range(size, n, size))


def _handshake(src: Source) -> tuple[bytes, tuple[int, bytes] | None]:
    """Handshake bytes: plain, with a token, malformed, or none at all."""
    kind = src.int(0, 7)
    if kind < 2:
        return P.client_handshake(), (P.PLAIN_HANDSHAKE, b"")
    if kind < 4:
        size = src.choice((1, P.MAX_TOKEN_BYTES, src.int(1, P.MAX_TOKEN_BYTES)))
        token = src.bytes(size)
        # surrogateescape: any bytes survive the round trip through a str token
        return (P.client_handshake(token.decode("utf-8", "surrogateescape")),
                (P.TOKEN_HANDSHAKE, token))
    if kind == 4:
        return struct.pack(">H", src.int(0, 0xFFFF)) + src.bytes(src.int(0, 4)), None
    if kind == 5:
        size = src.choice((0, P.MAX_TOKEN_BYTES + 1, 0xFFFF, src.int(0, 0xFFFF)))
        return struct.pack(">HH", P.TOKEN_HANDSHAKE, size) + src.bytes(src.int(0, 8)), None
    return b"", None


def generate_case(src: Source, pool: FramePool) -> StreamCase:
    """One stream of 1-4 segments (now and then a long run of mostly intact frames)."""
    long_run = src.int(0, 63) == 0
    segments = src.int(8, 80) if long_run else src.int(1, 4)
    parts, intact, offset = [], {}, 0
    for _ in range(segments):
        kind = src.int(0, 99)
        if long_run:
            kind = 0 if kind < 85 else 50
        if kind < 30:
            i = src.int(0, len(pool.wire) - 1)
            part = pool.wire[i]
            intact[offset] = pool.frames[i]
        elif kind < 85:
            part = bytearray(pool.wire[src.int(0, len(pool.wire) - 1)])
            for _ in range(src.int(1, 3)):
                part = mutate(src, part, pool)
            part = bytes(part)
        else:
            part = src.bytes(_random_length(src))
        parts.append(part)
        offset += len(part)
    stream = b"".join(parts)
    n = len(stream)
    start = src.int(0, n)
    handshake, sent = _handshake(src)
    return StreamCase(stream, _cuts(src, n), intact, segments, (start, src.int(start, n)),
                      handshake, sent, src.int(0, 3))


