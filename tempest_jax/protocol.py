"""Wire format between a game client (MAME + our Lua, or a sim client) and the server.

Byte for byte the original Tempest AI's protocol: after a 2-byte handshake the client sends frames,
each a big-endian uint16 length prefix (819) then a 39-byte header `>HddBBBHIBBBhhBBBBB` and 195
big-endian float32 state values (821 bytes on the wire); the server answers every frame with a
5-byte reply `bbbBB` (fire, zap, spinner, start_advanced, start_level_min).

Three levels of API:
- typed objects (`Frame`, `Reply`) with `encode_*` / `parse_*` and validation that raises a
  specific `ProtocolError` subclass naming the field;
- `FrameSplitter` / `FrameReader`: incremental framing of a byte stream fed in arbitrary chunks;
- `decode_payloads` / `decode_valid_payloads` / `encode_replies`: vectorised numpy paths for
  the server's hot loop.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from dataclasses import dataclass

import numpy as np

from tempest_jax.features import STATE_SIZE, describe_index

HEADER_FORMAT = ">HddBBBHIBBBhhBBBBB"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 39
PAYLOAD_SIZE = HEADER_SIZE + 4 * STATE_SIZE  # 819
LENGTH_PREFIX_SIZE = 2
FRAME_WIRE_SIZE = LENGTH_PREFIX_SIZE + PAYLOAD_SIZE  # 821
REPLY_SIZE = 5
HANDSHAKE_SIZE = 2
PLAIN_HANDSHAKE = 0  # the reference's handshake: `00 00`, nothing follows
# Our extension: `00 01`, a uint16 BE token length n (1..MAX_TOKEN_BYTES), then n token bytes.
# A reference client only ever sends the plain handshake, so it is unaffected.
TOKEN_HANDSHAKE = 1
MAX_TOKEN_BYTES = 256

HEADER_FIELDS = ("num_values", "subj_reward", "obj_reward", "gamestate", "game_mode", "done",
                 "frame", "score", "save_signal", "cmd_fire", "cmd_zap", "cmd_spinner",
                 "expert_target", "player_seg", "is_open", "expert_fire", "expert_zap", "level")
_HEADER_CODES = (">u2", ">f8", ">f8", "u1", "u1", "u1", ">u2", ">u4", "u1", "u1", "u1", ">i2",
                 ">i2", "u1", "u1", "u1", "u1", "u1")
PAYLOAD_DTYPE = np.dtype([*zip(HEADER_FIELDS, _HEADER_CODES), ("state", ">f4", (STATE_SIZE,))])
WIRE_DTYPE = np.dtype([("length", ">u2")] + [(n, PAYLOAD_DTYPE.fields[n][0])
                                             for n in PAYLOAD_DTYPE.names])
REPLY_DTYPE = np.dtype([("fire", "i1"), ("zap", "i1"), ("spinner", "i1"),
                        ("start_advanced", "u1"), ("start_level_min", "u1")])
assert PAYLOAD_DTYPE.itemsize == PAYLOAD_SIZE and WIRE_DTYPE.itemsize == FRAME_WIRE_SIZE

SPINNER_MIN, SPINNER_MAX = -32, 31
START_LEVEL_MIN, START_LEVEL_MAX = 1, 81
NO_TARGET = -1

# (field, lowest, highest) of header integers whose meaning limits them below their type's range.
_HEADER_RANGES = (
    ("done", 0, 1), ("save_signal", 0, 1), ("cmd_fire", 0, 1), ("cmd_zap", 0, 1),
    ("cmd_spinner", SPINNER_MIN, SPINNER_MAX), ("expert_target", NO_TARGET, 15),
    ("player_seg", 0, 15), ("is_open", 0, 1), ("expert_fire", 0, 1), ("expert_zap", 0, 1),
)


class ProtocolError(ValueError):
    """Base of every wire-format error; `field` names the offending part."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class HandshakeError(ProtocolError):
    """The 2-byte handshake was missing, short or not accepted."""


class FrameLengthError(ProtocolError):
    """The length prefix is too small, too large, or disagrees with the value count."""


class ValueCountError(ProtocolError):
    """The header's num_values is not 195."""


class HeaderValueError(ProtocolError):
    """A header field is non-finite or outside its meaning's range."""


class StateValueError(ProtocolError):
    """A state value is non-finite or outside [-1, 1]."""


class TruncatedStreamError(ProtocolError):
    """The stream ended in the middle of a frame."""


class ReplyError(ProtocolError):
    """A reply has the wrong size or a value outside its range."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One client → server frame: header fields and the 195-value state."""

    subj_reward: float
    obj_reward: float
    gamestate: int
    game_mode: int
    done: int
    frame: int
    score: int
    save_signal: int
    cmd_fire: int
    cmd_zap: int
    cmd_spinner: int
    expert_target: int
    player_seg: int
    is_open: int
    expert_fire: int
    expert_zap: int
    level: int
    state: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name)
                   for f in dataclasses.fields(self) if f.name != "state") and bool(
            np.array_equal(self.state, other.state))

    __hash__ = None


@dataclass(frozen=True)
class Reply:
    """One server → client reply."""

    fire: int
    zap: int
    spinner: int
    start_advanced: int
    start_level_min: int


_HEADER_STRUCT = struct.Struct(HEADER_FORMAT)
_REPLY_STRUCT = struct.Struct("bbbBB")
_LENGTH_STRUCT = struct.Struct(">H")


# Positions in the unpacked header tuple of the fields checked there.
_FLOAT_FIELD_INDEX = tuple((HEADER_FIELDS.index(n), n) for n in ("subj_reward", "obj_reward"))
_RANGE_FIELD_INDEX = tuple((HEADER_FIELDS.index(n), n, lo, hi) for n, lo, hi in _HEADER_RANGES)
# |x| <= 1 for a float32 exactly when its bits without the sign are at most those of 1.0 (NaN
# and infinity have larger ones), so the state check needs no float conversion.
_MAGNITUDE_BITS = 0x7FFFFFFF
_ONE_BITS = 0x3F800000


def _check_header(values: tuple) -> None:
    """`values`: the header as unpacked (num_values first)."""
    for i, name in _FLOAT_FIELD_INDEX:
        if not math.isfinite(values[i]):
            raise HeaderValueError(f"header field {name} is not finite ({values[i]!r})", name)
    for i, name, lo, hi in _RANGE_FIELD_INDEX:
        if not lo <= values[i] <= hi:
            raise HeaderValueError(f"header field {name} = {values[i]} outside {lo}..{hi}", name)


def _check_state(state: np.ndarray) -> None:
    if state.shape != (STATE_SIZE,):
        raise ValueCountError(f"state has {state.size} values, expected {STATE_SIZE}",
                              "num_values")
    bad = ~(np.abs(state) <= 1.0)  # NaN compares false, so it lands here too
    if bad.any():
        i = int(np.argmax(bad))
        kind = "not finite" if not np.isfinite(state[i]) else "outside [-1, 1]"
        raise StateValueError(f"state value {i} ({describe_index(i)}) = {state[i]!r} is {kind}",
                              f"state[{i}]")


def validate_frame(frame: Frame) -> None:
    """Raise the specific ProtocolError for the first thing wrong with `frame`."""
    _check_header((STATE_SIZE, *(getattr(frame, name) for name in HEADER_FIELDS[1:])))
    _check_state(np.asarray(frame.state))


def encode_frame(frame: Frame) -> bytes:
    """A validated frame as its 821 wire bytes (length prefix included)."""
    validate_frame(frame)
    header = _HEADER_STRUCT.pack(
        STATE_SIZE, frame.subj_reward, frame.obj_reward, frame.gamestate, frame.game_mode,
        frame.done, frame.frame, frame.score, frame.save_signal, frame.cmd_fire, frame.cmd_zap,
        frame.cmd_spinner, frame.expert_target, frame.player_seg, frame.is_open,
        frame.expert_fire, frame.expert_zap, frame.level)
    state = np.asarray(frame.state, dtype=">f4").tobytes()
    return _LENGTH_STRUCT.pack(PAYLOAD_SIZE) + header + state


def check_length_prefix(length: int) -> None:
    """Reject a length prefix before its payload is read (bounds what a peer can make us buffer)."""
    if length < HEADER_SIZE:
        raise FrameLengthError(f"length prefix {length} is smaller than the {HEADER_SIZE}-byte "
                               "header", "length")
    if length > PAYLOAD_SIZE:
        raise FrameLengthError(f"length prefix {length} exceeds the {PAYLOAD_SIZE}-byte "
                               f"frame payload ({STATE_SIZE} values)", "length")


def validate_payload(payload: bytes | bytearray | memoryview) -> tuple:
    """Check one payload (the bytes after the length prefix) completely: length, value count,
    header ranges, finite and in-range values. Raises the specific ProtocolError naming the
    field; returns the unpacked header (num_values first). The server runs it on every frame
    while the frame is still its client's, so only valid payloads reach a batch."""
    length = len(payload)
    check_length_prefix(length)
    values = _HEADER_STRUCT.unpack_from(payload)
    if values[0] != STATE_SIZE:
        raise ValueCountError(f"frame carries {values[0]} values, expected {STATE_SIZE}",
                              "num_values")
    if length != PAYLOAD_SIZE:
        raise FrameLengthError(f"length prefix {length} does not match {STATE_SIZE} values "
                               f"({PAYLOAD_SIZE} bytes)", "length")
    _check_header(values)
    bits = np.frombuffer(payload, dtype=">u4", count=STATE_SIZE, offset=HEADER_SIZE)
    if int((bits & _MAGNITUDE_BITS).max()) > _ONE_BITS:
        _check_state(np.frombuffer(payload, dtype=">f4", count=STATE_SIZE,
                                   offset=HEADER_SIZE).astype(np.float32))
    return values


def parse_payload(payload: bytes | bytearray | memoryview) -> Frame:
    """One payload (the bytes after the length prefix) as a validated Frame."""
    values = validate_payload(payload)
    state = np.frombuffer(payload, dtype=">f4", count=STATE_SIZE, offset=HEADER_SIZE)
    return Frame(*values[1:], state=state.astype(np.float32))


def parse_frame(data: bytes | bytearray | memoryview) -> Frame:
    """One whole frame including its length prefix."""
    if len(data) < LENGTH_PREFIX_SIZE:
        raise TruncatedStreamError("frame shorter than its 2-byte length prefix", "length")
    (length,) = _LENGTH_STRUCT.unpack_from(data)
    check_length_prefix(length)
    if len(data) != LENGTH_PREFIX_SIZE + length:
        raise TruncatedStreamError(f"length prefix says {length} payload bytes, got "
                                   f"{len(data) - LENGTH_PREFIX_SIZE}", "length")
    return parse_payload(memoryview(data)[LENGTH_PREFIX_SIZE:])


class FrameSplitter:
    """Splits a byte stream fed in arbitrary chunks into raw frame payloads.

    Only framing is checked here (the length prefix); payload contents are validated by
    `parse_payload` or, in bulk, `decode_payloads`. Memory held is bounded by one frame.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._need: int | None = None  # payload length once the prefix is read

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Append `data`; return the payloads it completed (possibly none)."""
        buf = self._buffer
        buf += data
        payloads = []
        while True:
            if self._need is None:
                if len(buf) < LENGTH_PREFIX_SIZE:
                    break
                (length,) = _LENGTH_STRUCT.unpack_from(buf)
                check_length_prefix(length)
                self._need = length
            end = LENGTH_PREFIX_SIZE + self._need
            if len(buf) < end:
                break
            payloads.append(bytes(buf[LENGTH_PREFIX_SIZE:end]))
            del buf[:end]
            self._need = None
        return payloads

    def close(self) -> None:
        """Declare the end of the stream; raise if it stopped inside a frame."""
        if self._buffer:
            raise TruncatedStreamError(
                f"stream ended inside a frame ({len(self._buffer)} bytes of "
                f"{LENGTH_PREFIX_SIZE + (self._need or PAYLOAD_SIZE)} received)", "length")


class FrameReader(FrameSplitter):
    """Incremental reader yielding validated `Frame`s from arbitrary chunks."""

    def feed_frames(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        return [parse_payload(p) for p in self.feed(data)]


@dataclass(frozen=True)
class FrameBatch:
    """Many frames as column arrays (the server's hot path). `valid[i]` is False for a frame
    that `parse_payload` would reject; call it on that payload for the specific error."""

    header: dict[str, np.ndarray]
    state: np.ndarray  # (n, 195) float32
    valid: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.valid)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.header[name]
        except KeyError:
            raise AttributeError(name) from None


# Each header field's dtype in this machine's byte order: the decoded batch's columns.
_NATIVE_HEADER_DTYPES = {name: PAYLOAD_DTYPE.fields[name][0].newbyteorder("=")
                         for name in HEADER_FIELDS}


def _decode_columns(records: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    header = {name: records[name].astype(dtype) for name, dtype in _NATIVE_HEADER_DTYPES.items()}
    return header, records["state"].astype(np.float32)


def _decode_records(records: np.ndarray) -> FrameBatch:
    header, state = _decode_columns(records)
    valid = (header["num_values"] == STATE_SIZE) & np.all(np.abs(state) <= 1.0, axis=1)
    valid &= np.isfinite(header["subj_reward"]) & np.isfinite(header["obj_reward"])
    for name, lo, hi in _HEADER_RANGES:
        valid &= (header[name] >= lo) & (header[name] <= hi)
    return FrameBatch(header=header, state=state, valid=valid)


def _payload_records(buf: bytes | bytearray | memoryview) -> np.ndarray:
    if len(buf) % PAYLOAD_SIZE:
        raise FrameLengthError(f"{len(buf)} bytes is not a whole number of {PAYLOAD_SIZE}-byte "
                               "payloads", "length")
    return np.frombuffer(buf, dtype=PAYLOAD_DTYPE)


def decode_payloads(buf: bytes | bytearray | memoryview) -> FrameBatch:
    """Decode concatenated 819-byte payloads (as `FrameSplitter` returns them) in one pass."""
    return _decode_records(_payload_records(buf))


def decode_valid_payloads(buf: bytes | bytearray | memoryview) -> FrameBatch:
    """Decode concatenated payloads that each passed `validate_payload` (the server checks
    every frame as it arrives), without checking them again: `valid` is all True."""
    records = _payload_records(buf)
    header, state = _decode_columns(records)
    return FrameBatch(header=header, state=state, valid=np.ones(len(records), bool))


def decode_wire(buf: bytes | bytearray | memoryview) -> FrameBatch:
    """Decode concatenated whole 821-byte frames (length prefixes included) in one pass."""
    if len(buf) % FRAME_WIRE_SIZE:
        raise FrameLengthError(f"{len(buf)} bytes is not a whole number of {FRAME_WIRE_SIZE}-"
                               "byte frames", "length")
    records = np.frombuffer(buf, dtype=WIRE_DTYPE)
    batch = _decode_records(records)
    return dataclasses.replace(batch, valid=batch.valid & (records["length"] == PAYLOAD_SIZE))


def encode_frames(header: dict[str, np.ndarray], state: np.ndarray) -> bytes:
    """Vectorised encoding of n frames (no validation: used by sim clients and benchmarks on
    values they produced themselves). `header` maps field names (except num_values) to arrays."""
    n = len(state)
    records = np.zeros(n, dtype=WIRE_DTYPE)
    records["length"] = PAYLOAD_SIZE
    records["num_values"] = STATE_SIZE
    for name in HEADER_FIELDS[1:]:
        records[name] = header[name]
    records["state"] = state
    return records.tobytes()


def encode_reply(reply: Reply) -> bytes:
    validate_reply(reply)
    return _REPLY_STRUCT.pack(reply.fire, reply.zap, reply.spinner, reply.start_advanced,
                              reply.start_level_min)


def validate_reply(reply: Reply) -> None:
    for name, lo, hi in (("fire", 0, 1), ("zap", 0, 1), ("spinner", SPINNER_MIN, SPINNER_MAX),
                         ("start_advanced", 0, 1),
                         ("start_level_min", START_LEVEL_MIN, START_LEVEL_MAX)):
        value = getattr(reply, name)
        if not lo <= value <= hi:
            raise ReplyError(f"reply field {name} = {value} outside {lo}..{hi}", name)


def parse_reply(data: bytes | bytearray | memoryview) -> Reply:
    if len(data) != REPLY_SIZE:
        raise ReplyError(f"reply is {len(data)} bytes, expected {REPLY_SIZE}", "length")
    reply = Reply(*_REPLY_STRUCT.unpack(bytes(data)))
    validate_reply(reply)
    return reply


def encode_replies(fire: np.ndarray, zap: np.ndarray, spinner: np.ndarray,
                   start_advanced: int, start_level_min: int) -> bytes:
    """n replies as one buffer of 5·n bytes (reply i at [5i, 5i + 5))."""
    records = np.empty(len(fire), dtype=REPLY_DTYPE)
    records["fire"], records["zap"], records["spinner"] = fire, zap, spinner
    records["start_advanced"], records["start_level_min"] = start_advanced, start_level_min
    return records.tobytes()


def encode_handshake(value: int = PLAIN_HANDSHAKE) -> bytes:
    return _LENGTH_STRUCT.pack(value)


def parse_handshake(data: bytes | bytearray | memoryview) -> int:
    if len(data) != HANDSHAKE_SIZE:
        raise HandshakeError(f"handshake is {len(data)} bytes, expected {HANDSHAKE_SIZE}",
                             "handshake")
    return _LENGTH_STRUCT.unpack(bytes(data))[0]


def token_bytes(token: str) -> bytes:
    """A token as it travels: the bytes of the environment variable or config string."""
    return token.encode("utf-8", "surrogateescape")


def client_handshake(token: str = "") -> bytes:
    """What a client sends first: the plain handshake without a token, else the token one."""
    if not token:
        return encode_handshake(PLAIN_HANDSHAKE)
    raw = token_bytes(token)
    if len(raw) > MAX_TOKEN_BYTES:
        raise HandshakeError(f"token is {len(raw)} bytes; the handshake carries at most "
                             f"{MAX_TOKEN_BYTES}", "token")
    return encode_handshake(TOKEN_HANDSHAKE) + _LENGTH_STRUCT.pack(len(raw)) + raw


def read_handshake(data: bytes | bytearray) -> tuple[int, bytes, int] | None:
    """The handshake at the start of `data` as (value, token, bytes it took), with token b""
    for the plain handshake; None while incomplete. Raises HandshakeError for an unknown value
    or a token length outside 1..MAX_TOKEN_BYTES."""
    if len(data) < HANDSHAKE_SIZE:
        return None
    value = parse_handshake(data[:HANDSHAKE_SIZE])
    if value == PLAIN_HANDSHAKE:
        return value, b"", HANDSHAKE_SIZE
    if value != TOKEN_HANDSHAKE:
        raise HandshakeError(f"unsupported handshake value {value} (expected {PLAIN_HANDSHAKE} "
                             f"or {TOKEN_HANDSHAKE})", "handshake")
    start = HANDSHAKE_SIZE + _LENGTH_STRUCT.size
    if len(data) < start:
        return None
    (length,) = _LENGTH_STRUCT.unpack(bytes(data[HANDSHAKE_SIZE:start]))
    if not 1 <= length <= MAX_TOKEN_BYTES:
        raise HandshakeError(f"token length {length} outside 1..{MAX_TOKEN_BYTES}",
                             "token length")
    if len(data) < start + length:
        return None
    return value, bytes(data[start:start + length]), start + length
