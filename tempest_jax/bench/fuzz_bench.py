"""Fuzzing of the wire-format reader: arbitrary byte streams may only raise typed errors.
(With --server: a live training server under attack, see `server_fuzz`.)

Each input is one client byte stream: valid frames, structure-aware mutations of valid frames
(bit flips, inserted, deleted and overwritten bytes, truncation, wrong or oversized length
prefixes, wrong value counts, out-of-range header fields, NaN/inf rewards and state values,
spliced frames) and random bytes, cut into arbitrary recv-sized chunks. It goes through
`FrameSplitter` chunk by chunk, every payload through `parse_payload`, the whole stream through
`decode_payloads` and `decode_wire`, a random slice through `parse_frame`; a handshake (plain,
with a token, malformed or none) followed by the stream goes through `read_handshake` as its
prefixes arrive, as the server reads it, and its first bytes through `parse_handshake`.
Checked on every input:

- nothing but a `ProtocolError` subclass ever escapes;
- after every chunk the splitter holds less than one wire frame (`pending` < 821 bytes), and
  the handshake reader never waits for more than a whole handshake;
- framing equals an independent reference framer: the same payloads, the same error
  (`FrameLengthError` in the chunk that completes the first bad prefix, `TruncatedStreamError`
  at a mid-frame end);
- every intact valid frame still aligned in the stream decodes exactly to the frame encoded,
  and a well-formed handshake to what was sent;
- the scalar parser and the vectorised decoders agree on every payload (valid or not, and the
  decoded values).

Any violation is reported with the input's hex and chunk cuts, and the command exits 1.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import resource
import struct
import time
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.bench.report import table
from tempest_jax.features import STATE_SIZE

POOL_FRAMES = 512
BULK_ROWS = 256
KEPT_FAILURES = 5
BUFFER_BOUND = P.FRAME_WIRE_SIZE - 1  # the most a splitter may hold between chunks
# The most bytes a handshake can take: value, token length, the longest token.
HANDSHAKE_BOUND = P.HANDSHAKE_SIZE + 2 + P.MAX_TOKEN_BYTES

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


class FuzzFailure(Exception):
    """A property violated on one input."""

    def __init__(self, kind: str, detail: str, case: StreamCase):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.case = kind, detail, case

    def record(self) -> dict:
        return {"kind": self.kind, "detail": self.detail, **self.case.reproducer()}


@dataclasses.dataclass
class Tally:
    inputs: int = 0
    bytes_fed: int = 0
    chunks_fed: int = 0
    payloads: int = 0
    frames_decoded: int = 0
    intact_frames_checked: int = 0
    bulk_rows_checked: int = 0
    max_buffered_bytes: int = 0
    slowest_input_ms: float = 0.0
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    stream_endings: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: int = 0
    failure_kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failure_records: list = dataclasses.field(default_factory=list)

    def fail(self, failure: FuzzFailure) -> None:
        self.failures += 1
        self.failure_kinds[failure.kind] += 1
        if len(self.failure_records) < KEPT_FAILURES:
            self.failure_records.append(failure.record())


# --- input generation ---------------------------------------------------------------------------

def _field_slot(name: str) -> tuple[int, np.dtype]:
    """Wire offset (length prefix included) and dtype of a header field."""
    dtype, offset = P.WIRE_DTYPE.fields[name][:2]
    return offset, dtype


def _put(b: bytearray, offset: int, data: bytes) -> None:
    """Overwrite bytes at `offset`, clipped to the (possibly already shortened) frame."""
    b[offset: offset + len(data)] = data[: max(0, len(b) - offset)]


def _mutate(src: Source, b: bytearray, pool: FramePool) -> bytearray:
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
                part = _mutate(src, part, pool)
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


# --- the checks -------------------------------------------------------------------------------

def reference_framing(stream: bytes) -> tuple[list[tuple[int, int]], int | None, bool]:
    """An independent framer: payload spans, the offset of the first bad length prefix (None if
    there is none), and whether the stream ends inside a frame."""
    spans, pos = [], 0
    while len(stream) - pos >= P.LENGTH_PREFIX_SIZE:
        length = stream[pos] << 8 | stream[pos + 1]
        if not P.HEADER_SIZE <= length <= P.PAYLOAD_SIZE:
            return spans, pos, False
        end = pos + P.LENGTH_PREFIX_SIZE + length
        if end > len(stream):
            break
        spans.append((pos + P.LENGTH_PREFIX_SIZE, end))
        pos = end
    return spans, None, pos < len(stream)


class BulkCheck:
    """Scalar parsing against the vectorised decoders, a batch of rows at a time."""

    def __init__(self, tally: Tally, rows: int = BULK_ROWS):
        self.tally, self.rows = tally, rows
        self.payloads: list[tuple[bytes, P.Frame | None, StreamCase]] = []
        self.windows: list[tuple[bytes, bool, StreamCase]] = []

    def add_payload(self, payload: bytes, frame: P.Frame | None, case: StreamCase) -> None:
        self.payloads.append((payload, frame, case))
        if len(self.payloads) >= self.rows:
            self._check_payloads()

    def add_window(self, wire: bytes, valid: bool, case: StreamCase) -> None:
        self.windows.append((wire, valid, case))
        if len(self.windows) >= self.rows:
            self._check_windows()

    def flush(self) -> None:
        self._check_payloads()
        self._check_windows()

    def _check_payloads(self) -> None:
        rows, self.payloads = self.payloads, []
        if not rows:
            return
        batch = P.decode_payloads(b"".join(p for p, _, _ in rows))
        self.tally.bulk_rows_checked += len(rows)
        for i, (payload, frame, case) in enumerate(rows):
            if bool(batch.valid[i]) != (frame is not None):
                self.tally.fail(FuzzFailure(
                    "scalar/vectorised disagreement", f"payload {payload.hex()}: parse_payload "
                    f"{'accepts' if frame else 'rejects'} it, decode_payloads valid="
                    f"{bool(batch.valid[i])}", case))
            elif frame is not None:
                wrong = [name for name in P.HEADER_FIELDS[1:]
                         if batch.header[name][i] != getattr(frame, name)]
                if wrong or not np.array_equal(batch.state[i], frame.state):
                    self.tally.fail(FuzzFailure(
                        "scalar/vectorised disagreement", f"payload {payload.hex()}: values "
                        f"differ in {wrong or ['state']}", case))

    def _check_windows(self) -> None:
        rows, self.windows = self.windows, []
        if not rows:
            return
        batch = P.decode_wire(b"".join(w for w, _, _ in rows))
        self.tally.bulk_rows_checked += len(rows)
        for i, (wire, valid, case) in enumerate(rows):
            if bool(batch.valid[i]) != valid:
                self.tally.fail(FuzzFailure(
                    "scalar/vectorised disagreement", f"wire frame {wire.hex()}: parse_frame "
                    f"{'accepts' if valid else 'rejects'} it, decode_wire valid="
                    f"{bool(batch.valid[i])}", case))


def _split(case: StreamCase, tally: Tally) -> tuple[list[bytes], BaseException | None, int]:
    """Feed the stream chunk by chunk; the payloads, the error that ended it and the index of
    the chunk that raised it (len(chunks) for one raised by close())."""
    splitter = P.FrameSplitter()
    bounds = (0, *case.cuts, len(case.stream))
    payloads = []
    for index, (a, b) in enumerate(pairwise(bounds)):
        try:
            payloads += splitter.feed(case.stream[a:b])
        except P.ProtocolError as e:
            return payloads, e, index
        finally:
            tally.chunks_fed += 1
        tally.max_buffered_bytes = max(tally.max_buffered_bytes, splitter.pending)
        if splitter.pending > BUFFER_BOUND:
            raise FuzzFailure("unbounded buffer", f"{splitter.pending} bytes pending after "
                              f"chunk {index} (bound {BUFFER_BOUND})", case)
    try:
        splitter.close()
    except P.ProtocolError as e:
        return payloads, e, len(bounds) - 1
    return payloads, None, len(bounds) - 1


def check_stream(case: StreamCase, tally: Tally, bulk: BulkCheck) -> None:
    """Every check on one input; raises FuzzFailure on a violated property. Any exception
    other than a ProtocolError propagates (the caller reports it as unexpected)."""
    stream = case.stream
    tally.inputs += 1
    tally.bytes_fed += len(stream)
    payloads, error, error_chunk = _split(case, tally)

    spans, bad_prefix_at, truncated = reference_framing(stream)
    bounds = (0, *case.cuts, len(stream))
    if bad_prefix_at is not None:
        expected_error = P.FrameLengthError
        # The prefix is checked in the chunk that completes it; payloads completed in that same
        # chunk are lost with the exception (the server drops the client anyway).
        raising = next(i for i in range(len(bounds) - 1)
                       if bounds[i + 1] >= bad_prefix_at + P.LENGTH_PREFIX_SIZE)
        spans = [s for s in spans if s[1] <= bounds[raising]]
    else:
        expected_error = P.TruncatedStreamError if truncated else None
        raising = len(bounds) - 1
    if type(error) is not (expected_error or type(None)) or (
            error is not None and error_chunk != raising):
        raise FuzzFailure("framing differs from the reference", f"got {error!r} at chunk "
                          f"{error_chunk}, expected {expected_error} at chunk {raising}", case)
    tally.stream_endings[type(error).__name__ if error else "clean"] += 1
    if error is not None:
        tally.errors[f"FrameSplitter: {type(error).__name__}"] += 1
    if len(payloads) != len(spans) or any(p != stream[a:b] for p, (a, b) in zip(payloads,
                                                                               spans)):
        raise FuzzFailure("framing differs from the reference", f"{len(payloads)} payloads, "
                          f"reference {len(spans)}", case)

    for payload, (start, _) in zip(payloads, spans):
        tally.payloads += 1
        try:
            frame = P.parse_payload(payload)
            tally.frames_decoded += 1
        except P.ProtocolError as e:
            tally.errors[f"parse_payload: {type(e).__name__}"] += 1
            frame = None
        expected = case.intact.get(start - P.LENGTH_PREFIX_SIZE)
        if expected is not None:
            tally.intact_frames_checked += 1
            if frame != expected:
                raise FuzzFailure("valid frame not decoded exactly",
                                  f"at offset {start - P.LENGTH_PREFIX_SIZE}: got {frame}, "
                                  f"encoded {expected}", case)
        if len(payload) == P.PAYLOAD_SIZE:
            bulk.add_payload(payload, frame, case)

    _probe_whole_stream(case, tally, bulk)


def _probe_whole_stream(case: StreamCase, tally: Tally, bulk: BulkCheck) -> None:
    stream = case.stream
    a, b = case.frame_slice
    try:
        P.parse_frame(stream[a:b])
    except P.ProtocolError as e:
        tally.errors[f"parse_frame: {type(e).__name__}"] += 1
    if len(stream) >= P.FRAME_WIRE_SIZE:
        window = stream[a: a + P.FRAME_WIRE_SIZE].ljust(P.FRAME_WIRE_SIZE, b"\x00")
        try:
            P.parse_frame(window)
            valid = True
        except P.ProtocolError:
            valid = False
        bulk.add_window(window, valid, case)
    _check_handshake(case, tally)
    for decode, size in ((P.decode_payloads, P.PAYLOAD_SIZE), (P.decode_wire, P.FRAME_WIRE_SIZE)):
        try:
            rows = len(decode(stream))
            if rows * size != len(stream):
                raise FuzzFailure("bulk decoder row count", f"{decode.__name__} gave {rows} "
                                  f"rows for {len(stream)} bytes", case)
        except P.ProtocolError as e:
            tally.errors[f"{decode.__name__}: {type(e).__name__}"] += 1


def _read_handshake(data: bytes):
    """read_handshake's outcome: its result, None (incomplete) or the error class."""
    try:
        return P.read_handshake(data)
    except P.ProtocolError as e:
        return type(e)


def _check_handshake(case: StreamCase, tally: Tally) -> None:
    """The server's handshake parsing over the first bytes, as they arrive in chunks: each
    prefix gives None or the whole stream's outcome; a result takes exactly its own bytes; a
    well-formed handshake parses back to what was sent; it never waits for more than
    HANDSHAKE_BOUND bytes."""
    data = (case.handshake + case.stream)[:HANDSHAKE_BOUND + 8]
    head = data[: case.handshake_len]
    try:
        value = P.parse_handshake(head)
        if len(head) != P.HANDSHAKE_SIZE or value != int.from_bytes(head, "big"):
            raise FuzzFailure("handshake misparsed", f"{head.hex()} -> {value}", case)
    except P.ProtocolError as e:
        tally.errors[f"parse_handshake: {type(e).__name__}"] += 1
    outcome = _read_handshake(data)
    if isinstance(outcome, type):
        tally.errors[f"read_handshake: {outcome.__name__}"] += 1
    if outcome is None and len(data) >= HANDSHAKE_BOUND:
        raise FuzzFailure("handshake buffers unboundedly", f"no outcome after {len(data)} "
                          "bytes", case)
    if case.handshake_sent is not None and outcome != (*case.handshake_sent,
                                                       len(case.handshake)):
        raise FuzzFailure("handshake misparsed", f"sent {case.handshake_sent}, read "
                          f"{outcome}", case)
    prefixes = {k for k in case.cuts if k < len(data)}
    if isinstance(outcome, tuple):
        prefixes |= {outcome[2] - 1, outcome[2]}
    for k in sorted(prefixes):
        partial = _read_handshake(data[:k])
        if (partial is not None and partial != outcome) or (
                partial is None and isinstance(outcome, tuple) and k >= outcome[2]):
            raise FuzzFailure("handshake prefix disagrees", f"first {k} bytes read as "
                              f"{partial}, all {len(data)} as {outcome}", case)


def fuzz_case(case: StreamCase, tally: Tally, bulk: BulkCheck) -> None:
    """check_stream, with every failure (an unexpected exception included) counted in the
    tally instead of raised."""
    started = time.perf_counter()
    try:
        check_stream(case, tally, bulk)
    except FuzzFailure as failure:
        tally.fail(failure)
    except Exception as e:  # the property under test: nothing but ProtocolError escapes
        tally.fail(FuzzFailure("unexpected exception", f"{type(e).__name__}: {e}", case))
    tally.slowest_input_ms = max(tally.slowest_input_ms, (time.perf_counter() - started) * 1e3)


def run_fuzz(inputs: int, seed: int, progress: Callable[[Tally], None] | None = None) -> Tally:
    pool = FramePool.random(seed=seed)
    src = Source.seeded(seed)
    tally = Tally()
    bulk = BulkCheck(tally)
    for i in range(inputs):
        fuzz_case(generate_case(src, pool), tally, bulk)
        if progress is not None and (i + 1) % 100_000 == 0:
            progress(tally)
    bulk.flush()
    return tally


# --- the bench --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", type=int, default=1_000_000, help="byte streams to try")
    parser.add_argument("--seed", type=int, default=0)
    server = parser.add_argument_group(
        "--server", "attack a live training server instead (see tempest_jax/bench/server_fuzz.py"
                    "): 4 healthy lockstep clients beside hostile ones")
    server.add_argument("--server", action="store_true",
                        help="fuzz a live training server over loopback")
    server.add_argument("--seconds", type=float, default=60.0,
                        help="how long the clients play and attack (--server)")
    server.add_argument("--replay-capacity", type=int, default=1_000_000,
                        help="replay slots: enough to keep every transition for the check")
    server.add_argument("--config", default="smoke", metavar="PRESET|FILE",
                        help="the server's config (--server; default: smoke)")
    server.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override one config value")


def measure(args: argparse.Namespace):
    if args.server:
        from tempest_jax.bench import server_fuzz
        return server_fuzz.measure(args)
    if args.inputs < 1:
        raise SystemExit("bench fuzz: --inputs must be at least 1")
    start = time.perf_counter()
    tally = run_fuzz(args.inputs, args.seed)
    seconds = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    passed = tally.failures == 0 and tally.max_buffered_bytes <= BUFFER_BOUND
    figures = {
        "passed": passed, "inputs": tally.inputs, "seconds": seconds,
        "inputs_per_s": tally.inputs / seconds, "bytes_fed": tally.bytes_fed,
        "chunks_fed": tally.chunks_fed, "payloads_framed": tally.payloads,
        "frames_decoded": tally.frames_decoded,
        "intact_frames_checked": tally.intact_frames_checked,
        "bulk_rows_checked": tally.bulk_rows_checked,
        "typed_errors": dict(sorted(tally.errors.items())),
        "stream_endings": dict(sorted(tally.stream_endings.items())),
        "failures": tally.failures,
        "unexpected_exceptions": tally.failure_kinds["unexpected exception"],
        "failures_by_kind": dict(tally.failure_kinds),
        "failure_examples": tally.failure_records,
        "max_buffered_bytes": tally.max_buffered_bytes, "buffer_bound_bytes": BUFFER_BOUND,
        "slowest_input_ms": tally.slowest_input_ms, "peak_rss_mb": peak_rss_mb,
    }
    settings = {"inputs": args.inputs, "seed": args.seed, "pool_frames": POOL_FRAMES}
    rows = [("result", "PASS" if passed else "FAIL"), ("inputs", tally.inputs),
            ("seconds", seconds), ("inputs/s", tally.inputs / seconds),
            ("bytes fed", tally.bytes_fed), ("chunks fed", tally.chunks_fed),
            ("payloads framed", tally.payloads), ("frames decoded", tally.frames_decoded),
            ("intact frames checked exactly", tally.intact_frames_checked),
            ("rows checked scalar vs vectorised", tally.bulk_rows_checked)]
    rows += [(f"typed error {name}", count) for name, count in sorted(tally.errors.items())]
    rows += [(f"stream ended: {name}", count)
             for name, count in sorted(tally.stream_endings.items())]
    rows += [("failures", tally.failures),
             ("max buffered bytes (bound)", f"{tally.max_buffered_bytes} ({BUFFER_BOUND})"),
             ("slowest input ms", tally.slowest_input_ms), ("peak RSS MB", peak_rss_mb)]
    text = table(rows, ("", "value"))
    for record in tally.failure_records:
        text += f"\n\nFAILURE {record['kind']}: {record['detail']}\n  reproducer: {record}"
    return figures, settings, text
