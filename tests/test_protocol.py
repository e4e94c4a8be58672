"""Wire format: round trips, the reference's worked example, every validation error, chunking."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tempest_jax import features as F
from tempest_jax import protocol as P

FLOAT32_UNIT = st.floats(-1.0, 1.0, width=32, allow_nan=False)


def frames():
    return st.builds(
        lambda state, **h: P.Frame(state=np.asarray(state, dtype=np.float32), **h),
        state=st.lists(FLOAT32_UNIT, min_size=195, max_size=195),
        subj_reward=st.floats(allow_nan=False, allow_infinity=False),
        obj_reward=st.floats(allow_nan=False, allow_infinity=False),
        gamestate=st.integers(0, 255), game_mode=st.integers(0, 255), done=st.integers(0, 1),
        frame=st.integers(0, 65535), score=st.integers(0, 2**32 - 1),
        save_signal=st.integers(0, 1), cmd_fire=st.integers(0, 1), cmd_zap=st.integers(0, 1),
        cmd_spinner=st.integers(-32, 31), expert_target=st.integers(-1, 15),
        player_seg=st.integers(0, 15), is_open=st.integers(0, 1),
        expert_fire=st.integers(0, 1), expert_zap=st.integers(0, 1), level=st.integers(0, 255))


def example_frame(**changes) -> P.Frame:
    """The worked example of the original Tempest AI protocol's documentation (values it does
    not give are 0)."""
    state = np.zeros(195, dtype=np.float32)
    L = F.LAYOUT
    state[0], state[1], state[2], state[3] = 4 / 36, 128 / 255, 0.0, 3 / 6
    state[4], state[5], state[6], state[7], state[8] = 12 / 98, 3 / 15, 1.0, 4 / 15, 0x10 / 255
    state[L["shots_remaining"].start] = 0.75
    state[L["player_shot_depth"].slice][:2] = (0x30 / 256, 0x58 / 256)
    state[L["player_shot_rel_lane"].slice] = [0.0, 0.0] + [-1.0] * 6
    state[L["level_number"].start], state[L["level_shape"].start] = 12 / 98, 0.8
    fields = dict(subj_reward=5.0, obj_reward=150.0, gamestate=4, game_mode=0x80, done=0,
                  frame=1234, score=12550, save_signal=0, cmd_fire=1, cmd_zap=0,
                  cmd_spinner=-12, expert_target=5, player_seg=3, is_open=0, expert_fire=1,
                  expert_zap=0, level=12, state=state)
    return P.Frame(**(fields | changes))


EXAMPLE_HEADER_HEX = (
    "00 C3 40 14 00 00 00 00 00 00 40 62 C0 00 00 00 00 00 04 80 "
    "00 04 D2 00 00 31 06 00 01 00 FF F4 00 05 03 00 01 00 0C")
EXAMPLE_FIRST_VALUES_HEX = ("3D E3 8E 39", "3F 00 80 81", "00 00 00 00", "3F 00 00 00",
                            "3D FA C6 88", "3E 4C CC CD", "3F 80 00 00", "3E 88 88 89",
                            "3D 80 80 81")


def test_sizes_match_reference():
    assert (P.HEADER_SIZE, P.PAYLOAD_SIZE, P.FRAME_WIRE_SIZE, P.REPLY_SIZE) == (39, 819, 821, 5)


def test_worked_example_golden_bytes():
    wire = P.encode_frame(example_frame())
    assert len(wire) == 821
    assert wire[:2] == bytes.fromhex("03 33")
    assert wire[2:41] == bytes.fromhex(EXAMPLE_HEADER_HEX)
    for i, hex_value in enumerate(EXAMPLE_FIRST_VALUES_HEX):
        assert wire[41 + 4 * i: 45 + 4 * i] == bytes.fromhex(hex_value), i
    assert P.parse_frame(wire) == example_frame()


def test_worked_example_replies():
    settings_bytes = dict(start_advanced=1, start_level_min=13)
    network = F.action_of_joint(32)
    assert (network.fire, network.zap, network.spinner) == (1, 0, -12)
    reply = P.Reply(network.fire, network.zap, network.spinner, **settings_bytes)
    assert P.encode_reply(reply) == bytes.fromhex("01 00 F4 01 0D")
    # Our expert fix: target 5 from lane 3 executes exactly the stored joint action 32.
    assert F.expert_joint_action(5, 3, 0, 1, 0) == 32
    assert P.encode_reply(P.Reply(0, 0, 0, **settings_bytes)) == bytes.fromhex("00 00 00 01 0D")
    assert P.parse_reply(bytes.fromhex("01 00 F4 01 0D")) == reply


@settings(max_examples=200, deadline=None)
@given(frames())
def test_frame_round_trip(frame):
    wire = P.encode_frame(frame)
    assert len(wire) == P.FRAME_WIRE_SIZE
    assert P.parse_frame(wire) == frame
    batch = P.decode_wire(wire)
    assert batch.valid.tolist() == [True]
    np.testing.assert_array_equal(batch.state[0], frame.state)
    for name in P.HEADER_FIELDS[1:]:
        assert batch.header[name][0] == getattr(frame, name), name


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(-128, 127),
       st.integers(0, 255), st.integers(0, 255))
def test_reply_validation_matches_ranges(fire, zap, spinner, adv, level):
    data = struct.pack("BBbBB", fire, zap, spinner, adv, level)
    in_range = (fire <= 1 and zap <= 1 and -32 <= spinner <= 31 and adv <= 1
                and 1 <= level <= 81)
    if in_range:
        assert P.encode_reply(P.parse_reply(data)) == data
    else:
        with pytest.raises(P.ReplyError):
            P.parse_reply(data)


def test_reply_wrong_size():
    for data in (b"", b"\x00" * 3, b"\x00" * 6):
        with pytest.raises(P.ReplyError, match="expected 5"):
            P.parse_reply(data)


def test_vectorised_replies_equal_scalar():
    joints = np.arange(F.NUM_ACTIONS)
    buf = P.encode_replies(F.JOINT_FIRE[joints], F.JOINT_ZAP[joints], F.JOINT_SPINNER[joints],
                           1, 13)
    for j in joints:
        a = F.action_of_joint(int(j))
        assert buf[5 * j: 5 * j + 5] == P.encode_reply(P.Reply(a.fire, a.zap, a.spinner, 1, 13))


def test_handshake():
    assert P.encode_handshake() == b"\x00\x00"
    assert P.parse_handshake(b"\x00\x00") == 0
    with pytest.raises(P.HandshakeError):
        P.parse_handshake(b"\x00")


# --- validation errors -------------------------------------------------------------------------

def _payload(frame=None) -> bytearray:
    return bytearray(P.encode_frame(frame or example_frame())[2:])


def test_wrong_value_count():
    payload = _payload()
    struct.pack_into(">H", payload, 0, 194)
    with pytest.raises(P.ValueCountError, match="194 values, expected 195") as e:
        P.parse_payload(payload)
    assert e.value.field == "num_values"
    short = _payload()[: P.HEADER_SIZE + 4 * 100]
    struct.pack_into(">H", short, 0, 100)
    with pytest.raises(P.ValueCountError):
        P.parse_payload(short)


def test_length_prefix_too_small_and_too_large():
    with pytest.raises(P.FrameLengthError, match="smaller than the 39-byte header"):
        P.FrameSplitter().feed(struct.pack(">H", 38))
    with pytest.raises(P.FrameLengthError, match="exceeds"):
        P.FrameSplitter().feed(struct.pack(">H", 820))
    with pytest.raises(P.FrameLengthError, match="exceeds"):
        P.FrameSplitter().feed(b"\xff\xff")


def test_length_disagrees_with_value_count():
    payload = _payload()[:-4]  # 195 values announced, 194 present
    with pytest.raises(P.FrameLengthError, match="does not match"):
        P.parse_payload(payload)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1.0000001, -1.5])
def test_bad_state_value_names_the_feature(bad):
    state = example_frame().state.copy()
    index = F.LAYOUT["enemy_depth"].start + 2
    state[index] = bad
    raw = bytearray(_payload())
    raw[P.HEADER_SIZE:] = state.astype(">f4").tobytes()
    with pytest.raises(P.StateValueError, match=r"enemy_depth\[2\]") as e:
        P.parse_payload(raw)
    assert e.value.field == f"state[{index}]"
    assert not P.decode_payloads(bytes(raw)).valid[0]
    with pytest.raises(P.StateValueError):
        P.encode_frame(example_frame(state=state))


@pytest.mark.parametrize("field,value", [("done", 2), ("player_seg", 16), ("expert_target", -2),
                                         ("cmd_spinner", 31 + 1), ("is_open", 7),
                                         ("subj_reward", float("nan")),
                                         ("obj_reward", float("inf"))])
def test_bad_header_value(field, value):
    with pytest.raises(P.HeaderValueError, match=field):
        P.encode_frame(example_frame(**{field: value}))
    records = np.frombuffer(P.encode_frame(example_frame()), dtype=P.WIRE_DTYPE).copy()
    records[field] = value
    with pytest.raises(P.HeaderValueError, match=field):
        P.parse_frame(records.tobytes())
    assert not P.decode_wire(records.tobytes()).valid[0]


def test_truncated_stream():
    wire = P.encode_frame(example_frame())
    for cut in (1, 2, 100, len(wire) - 1):
        splitter = P.FrameSplitter()
        assert splitter.feed(wire[:cut]) == []
        with pytest.raises(P.TruncatedStreamError, match="stream ended inside a frame"):
            splitter.close()
    with pytest.raises(P.TruncatedStreamError):
        P.parse_frame(wire[:-1])
    P.FrameSplitter().close()  # an empty stream ends cleanly


# --- incremental framing -----------------------------------------------------------------------

def test_every_split_point_of_two_frames():
    a, b = example_frame(), example_frame(frame=1235, done=1, score=99)
    stream = P.encode_frame(a) + P.encode_frame(b)
    for cut in range(len(stream) + 1):
        reader = P.FrameReader()
        got = reader.feed_frames(stream[:cut]) + reader.feed_frames(stream[cut:])
        assert got == [a, b], cut
        reader.close()


def test_one_byte_at_a_time():
    frames_in = [example_frame(frame=i) for i in range(3)]
    stream = b"".join(P.encode_frame(f) for f in frames_in)
    reader = P.FrameReader()
    got = []
    for i in range(len(stream)):
        got += reader.feed_frames(stream[i: i + 1])
        assert reader.pending < P.FRAME_WIRE_SIZE
    assert got == frames_in


def test_bulk_decode_matches_scalar_parse():
    rng = np.random.default_rng(0)
    frames_in = [example_frame(frame=i, state=rng.uniform(-1, 1, 195).astype(np.float32))
                 for i in range(50)]
    payloads = P.FrameSplitter().feed(b"".join(P.encode_frame(f) for f in frames_in))
    batch = P.decode_payloads(b"".join(payloads))
    assert batch.valid.all() and len(batch) == 50
    np.testing.assert_array_equal(batch.state, np.stack([f.state for f in frames_in]))
    np.testing.assert_array_equal(batch.frame, np.arange(50))
    with pytest.raises(P.FrameLengthError):
        P.decode_payloads(b"\x00" * 10)
    # The server's path for payloads it validated as they arrived: the same columns.
    checked = P.decode_valid_payloads(b"".join(payloads))
    assert checked.valid.all() and len(checked) == 50
    np.testing.assert_array_equal(checked.state, batch.state)
    for name in P.HEADER_FIELDS:
        assert checked.header[name].dtype == batch.header[name].dtype, name
        np.testing.assert_array_equal(checked.header[name], batch.header[name], name)
    with pytest.raises(P.FrameLengthError):
        P.decode_valid_payloads(b"\x00" * 10)


def test_encode_frames_equals_scalar_encoding():
    frames_in = [example_frame(frame=i) for i in range(4)]
    header = {name: np.array([getattr(f, name) for f in frames_in]) for name in
              P.HEADER_FIELDS[1:]}
    buf = P.encode_frames(header, np.stack([f.state for f in frames_in]))
    assert buf == b"".join(P.encode_frame(f) for f in frames_in)
