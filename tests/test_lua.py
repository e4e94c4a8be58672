"""The Lua scripts for MAME (`tempest_jax/lua/`) under plain Lua 5.3 and 5.4.

- the plain-Lua suite (`tests/lua/run.lua`: extraction, expert, rewards, serialization, partial
  and empty socket reads, reconnection, game control, the MAME API shims, main.lua) on both;
- `features.lua` and `ram_map.lua` equal `tempest_jax/features.py` and
  `tempest_jax/sim/ram_map.py`, table by table;
- wire compatibility: a frame our Lua encodes parses unchanged in the server's protocol module,
  every reply the server can send (all 44 actions) parses unchanged in our Lua, `protocol.lua`
  has `protocol.py`'s constants, and both build the same handshake for a token.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess

import numpy as np
import pytest
from luarun import INTERPRETERS, LUA_TESTS_DIR, REPO, interpreter, run_tool, tool_json

from tempest_jax import features as F
from tempest_jax import protocol as P

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=INTERPRETERS)
def lua(request) -> str:
    return interpreter(request.param)


def test_plain_lua_suite(lua):
    proc = subprocess.run([lua, str(LUA_TESTS_DIR / "run.lua")], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert proc.returncode == 0 and not failures, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout.splitlines()[-1]


def test_feature_contract_matches_features_py(lua):
    lua_side = tool_json(lua, "contract")
    assert lua_side["fields"] == [[f.name, f.start, f.size] for f in F.FIELDS]
    assert lua_side["spinner_levels"] == list(F.SPINNER_LEVELS)
    assert lua_side["enemy_info_names"] == list(F.ENEMY_INFO_NAMES)
    for fire, zap, sp, joint in lua_side["joints"]:
        assert (fire, zap, sp) == tuple(int(x) for x in F.decode_joint(joint))
        assert F.joint_index(fire, zap, sp) == joint
    assert len(lua_side["joints"]) == F.NUM_ACTIONS
    for player, target, is_open, rel in lua_side["relative_lane"]:
        assert int(F.relative_lane(player, target, is_open)) == rel, (player, target, is_open)
    for target, player, is_open, fire, zap, joint in lua_side["expert_joint_action"]:
        expected = int(F.expert_joint_action(target, player, is_open, fire, zap))
        assert joint == expected, (target, player, is_open, fire, zap)
    py_constants = {name: value for name, value in vars(F).items()
                    if name.isupper() and type(value) is int}
    assert lua_side["constants"] == py_constants


def test_ram_map_matches_the_simulators(lua):
    ram_map = pytest.importorskip("tempest_jax.sim.ram_map")
    py_addresses = {name: value for name, value in vars(ram_map).items()
                    if name.isupper() and type(value) is int}
    lua_addresses = tool_json(lua, "contract")["ram_map"]
    missing = sorted(set(py_addresses) - set(lua_addresses))
    extra = sorted(set(lua_addresses) - set(py_addresses))
    assert not missing and not extra, (
        f"tempest_jax/lua/ram_map.lua must mirror tempest_jax/sim/ram_map.py: missing {missing}, "
        f"not in ram_map.py {extra}")
    differ = {n: (hex(py_addresses[n]), hex(lua_addresses[n])) for n in py_addresses
              if py_addresses[n] != lua_addresses[n]}
    assert not differ, f"addresses differ (ram_map.py, ram_map.lua): {differ}"


def test_lua_frame_parses_in_the_server_unchanged(lua):
    """The original protocol's worked example frame (see test_protocol) as our Lua encodes it."""
    wire = bytes.fromhex(run_tool(lua, "example_frame").strip())
    assert len(wire) == P.FRAME_WIRE_SIZE
    frame = P.parse_frame(wire)
    assert P.encode_frame(frame) == wire
    expected_header = dict(subj_reward=5.0, obj_reward=150.0, gamestate=0x04, game_mode=0x80,
                           done=0, frame=1234, score=12550, save_signal=0, cmd_fire=1, cmd_zap=0,
                           cmd_spinner=-12, expert_target=5, player_seg=3, is_open=0,
                           expert_fire=1, expert_zap=0, level=12)
    assert {k: getattr(frame, k) for k in expected_header} == expected_header
    s = frame.state
    np.testing.assert_array_equal(
        s[:9], np.array([4 / 36, 128 / 255, 0, 0.5, 12 / 98, 0.2, 1, 4 / 15, 16 / 255],
                        dtype=np.float32))
    assert s[F.LAYOUT["enemy_delta_depth"].start] == np.float32(-2 / 128)
    # the server's incremental reader accepts it split anywhere
    splitter = P.FrameReader()
    frames = [f for i in range(0, len(wire), 97) for f in splitter.feed_frames(wire[i:i + 97])]
    assert frames == [frame]


def test_every_server_reply_parses_in_lua_unchanged(lua):
    replies = []
    for joint in range(F.NUM_ACTIONS):
        action = F.action_of_joint(joint)
        start_advanced, start_level_min = joint % 2, 1 + (joint * 7) % 81
        replies.append(P.Reply(action.fire, action.zap, action.spinner, start_advanced,
                               start_level_min))
    # the server's vectorised encoder produces the same bytes as the single-reply one
    joints = np.arange(F.NUM_ACTIONS)
    bulk = P.encode_replies(F.JOINT_FIRE[joints], F.JOINT_ZAP[joints], F.JOINT_SPINNER[joints],
                            1, 13)
    assert bulk == b"".join(P.encode_reply(dataclasses.replace(r, start_advanced=1,
                                                               start_level_min=13))
                            for r in replies)
    stdin = "".join(P.encode_reply(r).hex() + "\n" for r in replies)
    parsed = tool_json(lua, "parse_replies", stdin=stdin)
    assert [tuple(p) for p in parsed] == [
        (r.fire, r.zap, r.spinner, bool(r.start_advanced), r.start_level_min) for r in replies]


def test_protocol_constants_match_protocol_py(lua):
    lua_side = tool_json(lua, "protocol_constants")
    assert {"PLAIN_HANDSHAKE", "TOKEN_HANDSHAKE", "MAX_TOKEN_BYTES", "REPLY_SIZE",
            "FRAME_WIRE_SIZE"} <= set(lua_side)
    assert lua_side == {name: getattr(P, name, None) for name in lua_side}


def test_lua_builds_token_handshakes_like_python(lua):
    """The handshake main.lua sends for $TEMPEST_TOKEN is the one the server reads, byte for
    byte, for tokens of every length the handshake allows (and both refuse one byte more)."""
    tokens = [b"", b"s", b"s3cret", "t\u00f6k\u00e9n".encode(), b"\xff\xferaw env bytes",
              b"t" * P.MAX_TOKEN_BYTES, b"t" * (P.MAX_TOKEN_BYTES + 1)]
    lua_side = tool_json(lua, "handshakes", stdin="".join(t.hex() + "\n" for t in tokens))
    for raw, lua_hex in zip(tokens, lua_side, strict=True):
        token = os.fsdecode(raw)  # as os.environ holds an environment variable's bytes
        if len(raw) > P.MAX_TOKEN_BYTES:
            assert lua_hex is False
            with pytest.raises(P.HandshakeError):
                P.client_handshake(token)
            continue
        wire = P.client_handshake(token)
        assert bytes.fromhex(lua_hex) == wire, raw
        assert P.read_handshake(wire + b"\x03\x33") == (
            P.TOKEN_HANDSHAKE if raw else P.PLAIN_HANDSHAKE, raw, len(wire))
