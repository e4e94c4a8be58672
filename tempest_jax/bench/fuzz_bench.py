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
import resource
import time
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from tempest_jax import protocol as P
from tempest_jax.bench.fuzz_inputs import POOL_FRAMES, FramePool, Source, StreamCase, generate_case
from tempest_jax.bench.report import table
from tempest_jax.cli import positive

BULK_ROWS = 256
KEPT_FAILURES = 5
BUFFER_BOUND = P.FRAME_WIRE_SIZE - 1  # the most a splitter may hold between chunks
# The most bytes a handshake can take: value, token length, the longest token.
HANDSHAKE_BOUND = P.HANDSHAKE_SIZE + 2 + P.MAX_TOKEN_BYTES

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
    parser.add_argument("--inputs", type=positive(), default=1_000_000, help="byte streams to try")
    parser.add_argument("--seed", type=int, default=0)
    from tempest_jax.bench import server_fuzz
    server_fuzz.add_arguments(parser)


def measure(args: argparse.Namespace):
    if args.server:
        from tempest_jax.bench import server_fuzz
        return server_fuzz.measure(args)
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
