"""Enemy-shot depth limits compare the full 8.8 depth (docs/extraction.md, "Enemy-shot depth"):
shots exactly at, just below and just above (same position byte, nonzero fraction byte) the
expert's flee limit 0x60 and the lane-safety reward's limit 0x80, through the JAX extraction and
the Lua one (lua5.3 and lua5.4), which must also agree byte for byte.

Each RAM image is a fresh connection's first frame of a real game in play on a closed tube:
player in lane 5, no enemies or spikes, one enemy shot in lane 6 (one lane up). Within 0x60 the
expert flees down to lane 4, else it stays (nothing to hunt). Within 0x80 lane 6 is threatened:
subj = 2·(1 + 0.5 + 0.25 + 0.25) − 2·0.5 = 3.0 (the lane changed from the initial 0, scale 1),
else every scanned lane is safe: 5.0.
"""

from __future__ import annotations

import subprocess

import jax
import numpy as np
import pytest
from luarun import INTERPRETERS, REPO, TOOL, interpreter

pytest.importorskip("tempest_jax.sim")

from sim_ram_streams import LUA_OUTPUT_DTYPE, RECORD_HEADER_DTYPE, first_difference

from tempest_jax import protocol as P
from tempest_jax.sim import extract as X
from tempest_jax.sim import ram_map as M

pytestmark = pytest.mark.timeout(300)

PLAYER_LANE, SHOT_LANE = 5, 6
FLEE_TARGET = 4
THREATENED_SUBJ, SAFE_SUBJ = 3.0, 5.0

# (position byte, fraction byte, within 0x60: the expert flees, within 0x80: lane threatened)
CASES = [
    (0x5F, 0xFF, True, True),      # just below the flee limit
    (0x60, 0x00, True, True),      # exactly at it
    (0x60, 0x01, False, True),     # just above it: same position byte
    (0x60, 0xFF, False, True),
    (0x7F, 0xFF, False, True),     # just below the reward limit
    (0x80, 0x00, False, True),     # exactly at it
    (0x80, 0x01, False, False),    # just above it
    (0x80, 0x30, False, False),
    (0x80, 0xFF, False, False),
    (0x00, 0x80, False, False),    # position byte 0: inactive, whatever the fraction
]


def shot_images() -> np.ndarray:
    images = np.zeros((len(CASES), M.RAM_SIZE), np.uint8)
    images[:, M.GAMESTATE] = 0x04                 # playing
    images[:, M.GAME_MODE] = 0x80                 # a real game
    images[:, M.TIMECTR] = 1
    images[:, M.P1_LIVES] = 3
    images[:, M.CURLEVEL] = images[:, M.P1_LEVEL] = 12
    images[:, M.PLAYER_SEG] = PLAYER_LANE
    images[:, M.PLAYER_STATE] = PLAYER_LANE + 1   # bit 7 clear: alive
    images[:, M.PLAYER_ALONG] = 0x10
    for i, (pos, lsb, _, _) in enumerate(CASES):
        images[i, M.ENEMY_SHOT_POSITIONS] = pos
        images[i, M.ENM_SHOT_LSB] = lsb
        images[i, M.ENEMY_SHOT_SEGMENTS] = SHOT_LANE
    return images


def expected():
    target = np.array([FLEE_TARGET if flees else PLAYER_LANE for _, _, flees, _ in CASES])
    subj = np.array([THREATENED_SUBJ if bad else SAFE_SUBJ for _, _, _, bad in CASES])
    return target, subj


@pytest.fixture(scope="module")
def jax_wire() -> np.ndarray:
    """Each image as the first frame of a fresh carried state, encoded as a client sends it."""
    _, frames = jax.vmap(lambda image: X.extract(X.initial_carry(), image))(shot_images())
    header = {name: np.asarray(getattr(frames, name)) for name in P.HEADER_FIELDS[1:]}
    return np.frombuffer(P.encode_frames(header, np.asarray(frames.state)),
                         dtype=P.WIRE_DTYPE)


def assert_limits(frames: np.ndarray):
    target, subj = expected()
    cases = [f"{pos:#04x}+{lsb:#04x}/256" for pos, lsb, _, _ in CASES]
    assert dict(zip(cases, frames["expert_target"].tolist())) == dict(zip(cases, target.tolist()))
    assert dict(zip(cases, frames["subj_reward"].tolist())) == dict(zip(cases, subj.tolist()))
    np.testing.assert_array_equal(frames["player_seg"], PLAYER_LANE)


def test_jax_extraction_compares_the_full_shot_depth(jax_wire):
    assert_limits(jax_wire)


@pytest.mark.parametrize("lua_name", INTERPRETERS)
def test_lua_extraction_compares_the_full_shot_depth(jax_wire, lua_name, tmp_path):
    lua = interpreter(lua_name)
    images = shot_images()
    records = np.empty(len(images), dtype=[("header", RECORD_HEADER_DTYPE),
                                           ("ram", "u1", (M.RAM_SIZE,))])
    records["header"] = np.zeros(len(images), RECORD_HEADER_DTYPE)
    records["header"]["flags"] = 1                # every image starts over
    records["header"]["frame"] = 1
    records["ram"] = images
    records_path, output_path = tmp_path / "ram.bin", tmp_path / "frames.bin"
    records_path.write_bytes(records.tobytes())
    proc = subprocess.run([lua, str(TOOL), "extract_stream", str(records_path),
                           str(output_path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    ours = np.frombuffer(output_path.read_bytes(), dtype=LUA_OUTPUT_DTYPE)
    assert len(ours) == len(images) and ours["violations"].sum() == 0
    assert_limits(np.frombuffer(ours["wire"].tobytes(), dtype=P.WIRE_DTYPE))
    for i in range(len(images)):
        assert ours["wire"][i].tobytes() == jax_wire[i].tobytes(), (
            CASES[i], first_difference(ours["wire"][i].tobytes(), jax_wire[i].tobytes()))
