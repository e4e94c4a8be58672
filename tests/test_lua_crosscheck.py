"""The Lua extraction (tempest_jax/lua/, run by plain lua5.3 and lua5.4) against the simulator's
JAX extraction: over 10,000 simulator RAM images the Lua side must produce byte-identical frames
(header with rewards and expert advice, all 195 state values) and the same expert action.

The RAM sequences span every tube shape, open and closed tubes, all five enemy types (also
between lanes), enemy shots, spikes, deaths, zooms and the game states between levels; the test
checks that coverage before comparing, so a simulator change cannot quietly shrink it.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from luarun import INTERPRETERS, REPO, TOOL, interpreter

pytest.importorskip("tempest_jax.sim")

from sim_ram_streams import LUA_OUTPUT_DTYPE, first_difference, generate

from tempest_jax import protocol as P
from tempest_jax.sim import ram_map as M

pytestmark = pytest.mark.timeout(900)

# Start levels (1-based): every shape (1-16), then later waves for pulsars, fuseballs and
# faster enemies; a second pass on a few early shapes with other random draws.
START_LEVELS = [*range(1, 17), 17, 20, 27, 33, 40, 49, 65, 81, 3, 5, 9, 13]
STEPS = 360  # per game after its reset frame: 28 * 361 = 10,108 frames


@pytest.fixture(scope="module")
def streams():
    return generate(START_LEVELS, STEPS, seed=0)


def test_streams_cover_the_game(streams):
    images = streams.images
    frames = np.frombuffer(streams.wire.tobytes(), dtype=P.WIRE_DTYPE)
    assert len(streams) >= 10_000
    assert set(images[:, M.CURLEVEL] % 16) == set(range(16)), "every tube shape"
    assert len(set(images[:, M.CURLEVEL])) >= 20, "many levels"
    assert {0, 0xFF} <= set(images[:, M.OPEN_LEVEL]), "open and closed tubes"
    along = images[:, M.ENEMY_ALONG:M.ENEMY_ALONG + 7]
    type_info = images[:, M.ENEMY_TYPE_INFO:M.ENEMY_TYPE_INFO + 7]
    assert set((type_info & 7)[along > 0]) == set(range(5)), "all five enemy types"
    assert (type_info[along > 0] & 0x80).any(), "enemies between lanes"
    assert (along == 0x10).any(), "enemies at the rim"
    assert (images[:, M.ENEMY_SHOT_POSITIONS:M.ENEMY_SHOT_POSITIONS + 4] > 0).any()
    assert (images[:, M.LANE_SPIKE_HEIGHT:M.LANE_SPIKE_HEIGHT + 16] > 0).any(), "spikes"
    assert frames["done"].sum() >= 10, "deaths"
    assert (frames["expert_zap"] == 1).any(), "superzapper advice"
    assert (frames["obj_reward"] > 0).any() and (frames["obj_reward"] < 0).any()
    gamestates = set(images[:, M.GAMESTATE])
    assert {0x00, 0x02, 0x04, 0x06, 0x0A, 0x18, 0x1E, 0x20} <= gamestates, sorted(gamestates)


@pytest.mark.parametrize("lua_name", INTERPRETERS)
def test_lua_frames_are_byte_identical_to_jax(streams, lua_name, tmp_path):
    lua = interpreter(lua_name)
    records, output = tmp_path / "ram.bin", tmp_path / "frames.bin"
    records.write_bytes(streams.records())
    proc = subprocess.run([lua, str(TOOL), "extract_stream", str(records), str(output)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    ours = np.frombuffer(output.read_bytes(), dtype=LUA_OUTPUT_DTYPE)
    assert len(ours) == len(streams)
    assert ours["violations"].sum() == 0, "no value needed clamping"
    differs = np.flatnonzero((ours["wire"] != streams.wire).any(axis=1)
                             | (ours["expert_joint"] != streams.expert_joint))
    if differs.size:
        i = int(differs[0])
        what = first_difference(ours["wire"][i].tobytes(), streams.wire[i].tobytes()) or (
            f"expert joint action {ours['expert_joint'][i]} vs {streams.expert_joint[i]}")
        pytest.fail(f"{differs.size} of {len(streams)} frames differ; first: frame {i} (game "
                    f"{streams.game[i]}, step {streams.step[i]}, Lua vs JAX): {what}")
