"""The Lua client (plain lua5.3 and lua5.4) drives simulated cabinets through whole cycles:
attract → coin → start → level select to the configured level → play → game over → high-score
check (and initials) → attract → coin → start again.

The cabinets (`sim.cabinet_step`) run at the real game's RAM codes; one jitted scan plays them
with the client's game control in JAX (`sim.cabinet`). The production Lua client (client.lua with
its extraction, connection and control.lua) then reads every RAM image of every cabinet, with the
server's reply to each frame, as MAME's frame callback would: the frames it sends must be byte-
identical to the simulator's, and the inputs it applies (buttons, spinner byte, RAM writes)
identical to the inputs the cabinet received, tick by tick. So the run is the one the Lua client
drives. The cycles themselves are then checked against the game's rules: each input is one the
game needs at that moment and has its effect there.
"""

from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest
from luarun import INTERPRETERS, REPO, TOOL, interpreter

pytest.importorskip("tempest_jax.sim")

from sim_cabinet_cycles import INPUT_NAMES, LUA_OUTPUT_DTYPE, Cabinet, run
from sim_ram_streams import first_difference

from tempest_jax import features as F
from tempest_jax.sim import cabinet as C
from tempest_jax.sim import game as G
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import waves as W

pytestmark = pytest.mark.timeout(600)

# The servers: every start level the level select offers, some it does not offer (the client
# rounds them down), two asking for the highest level offered. A few have the expert play the
# first level until it scores (or clears it: level 3's start bonus); the others let the game run
# out.
PLAY_UNTIL = {1: 300, 3: 1_000_000, 5: 300, 11: 300, 20: 300, 49: 300}
CABINETS = [
    *(Cabinet(int(level) + 1, play_until=PLAY_UNTIL.get(int(level) + 1, 0))
      for level in W.START_LEVELS),
    Cabinet(2), Cabinet(14), Cabinet(50), Cabinet(1, start_advanced=True),
    Cabinet(13, start_advanced=True),
]
# Scores above 250 make the table (the last entry) and ask for initials.
HIGH_SCORES = [9_000, 5_000, 3_000, 2_000, 1_000, 800, 500, 250]
STEPS = 1200


@pytest.fixture(scope="module")
def cycles():
    return run(CABINETS, STEPS, seed=7, high_scores=HIGH_SCORES)


@pytest.fixture(scope="module", params=INTERPRETERS)
def lua(request, cycles, tmp_path_factory):
    """The Lua client's output on every record: LUA_OUTPUT_DTYPE[cabinet, tick]."""
    lua = interpreter(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    records, output = folder / "cabinets.bin", folder / "out.bin"
    records.write_bytes(cycles.records())
    proc = subprocess.run([lua, str(TOOL), "cabinet_stream", str(records), str(output)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = np.frombuffer(output.read_bytes(), dtype=LUA_OUTPUT_DTYPE)
    return out.reshape(len(CABINETS), STEPS)


def test_lua_client_sends_the_frames_and_gives_the_inputs(cycles, lua):
    assert lua["violations"].sum() == 0, "no value needed clamping"
    for c in range(len(CABINETS)):
        ours = lua[c]
        wire = cycles.wire(c)
        bad = np.flatnonzero((ours["wire"] != wire).any(axis=1)
                             | (ours["expert_joint"] != _expert_joint(cycles, c)))
        if bad.size:
            t = int(bad[0])
            pytest.fail(f"cabinet {c} tick {t} (gamestate {cycles.frames['gamestate'][t, c]:#x}):"
                        f" Lua vs JAX frame: "
                        f"{first_difference(ours['wire'][t].tobytes(), wire[t].tobytes())}")
        for name in (*INPUT_NAMES, "applied"):
            theirs = cycles.applied[:, c] if name == "applied" else cycles.inputs[name][:, c]
            bad = np.flatnonzero(ours[name].astype(np.int64) != theirs.astype(np.int64))
            assert bad.size == 0, (
                f"cabinet {c} tick {bad[0]} (gamestate "
                f"{cycles.frames['gamestate'][bad[0], c]:#x}): Lua {name} {ours[name][bad[0]]}, "
                f"the cabinet got {theirs[bad[0]]}")


def _expert_joint(cycles, c):
    f = cycles.frames
    return np.asarray(F.expert_joint_action(f["expert_target"][:, c], f["player_seg"][:, c],
                                            f["is_open"][:, c] != 0, f["expert_fire"][:, c],
                                            f["expert_zap"][:, c]))


def _rising(x):
    """Ticks where a 0/1 input is pressed anew."""
    x = np.asarray(x) != 0
    return np.flatnonzero(x & ~np.concatenate([[False], x[:-1]]))


def _expected_start_level(cab: Cabinet, last_level: int) -> int:
    """The 0-based level the client selects: the highest entry offered when it asks for the
    advanced start, else the last entry at or below its start level (level 1: the cursor
    stays at entry 0)."""
    floor = cab.start_level_min - 1
    if cab.start_advanced:
        offered = int(C.start_index(max(floor, last_level)))
        return int(W.START_LEVELS[max(offered, G.MIN_START_ENTRY)])
    if cab.start_level_min > 1:
        return int(W.START_LEVELS[int(C.start_index(floor))])
    return 0


def test_cabinets_go_round_whole_cycles(cycles):
    """Per cabinet: attract mode; one coin buys a credit; one start press begins a real game;
    the level select takes the configured level on the client's one fire press; the game is
    played to game over; the high-score check asks for initials exactly when the score makes
    the table (three fire presses, one letter each); back in attract mode the client gives no
    input but the coin and start that begin the next cycle (and the level floor at $0126)."""
    f, images, inputs = cycles.frames, cycles.images, cycles.inputs
    complete, initials_asked, bonuses, levels = 0, 0, 0, set()
    for c, cab in enumerate(CABINETS):
        gs, real = f["gamestate"][:, c], (f["game_mode"][:, c] & 0x80) != 0
        credits = images[:, c, M.CREDITS]
        starts = np.flatnonzero((gs == G.GS_NEW_GAME) & real)
        assert len(starts) >= 2, f"cabinet {c}: a cycle and the next game's start"
        assert not real[:starts[0]].any(), "attract mode until the first start"
        table, last_level, previous_end = list(HIGH_SCORES), 0, 0
        for begin, end in itertools.pairwise(starts):
            for start in (begin, end):
                # Attract mode before it: one coin bought the credit, the start press used it.
                attract = slice(previous_end if start == begin else begin, start)
                coins = _rising(inputs["coin"][attract, c]) + attract.start
                assert len(coins) == 1 and credits[coins[0]] == 0 and credits[coins[0] + 1] == 1
                assert inputs["start"][start - 1, c] == 1 and credits[start] == 0
                assert _rising(inputs["start"][attract, c]).size == 1
            # Level select: 10 frames of cursor writes, one fire press, the configured level.
            select = np.flatnonzero(gs[begin:end] == G.GS_LEVEL_SELECT) + begin
            assert len(select) == C.LEVEL_SELECT_SETTLE_FRAMES + 1
            assert _rising(inputs["fire"][select, c]).tolist() == [
                C.LEVEL_SELECT_SETTLE_FRAMES]
            after = select[-1] + 1
            assert gs[after] == G.GS_LEVEL_STARTUP
            expected = _expected_start_level(cab, last_level)
            assert f["level"][after, c] == expected, f"cabinet {c}"
            assert images[after, c, M.START_BONUS_ENTRY] == W.START_ENTRY_OF_LEVEL[expected]
            levels.add(expected)
            # Played to game over (completing the first level pays the start bonus), then the
            # high-score check.
            assert G.GS_PLAYING in gs[begin:end]
            zoomed_off = np.flatnonzero(gs[begin:end] == G.GS_ZOOM_OFF_END) + begin
            if zoomed_off.size:
                t = zoomed_off[0]
                bonus = W.START_BONUS[W.START_ENTRY_OF_LEVEL[expected]]
                assert f["score"][t + 1, c] - f["score"][t, c] == bonus
                bonuses += bonus > 0
            over = np.flatnonzero(gs[begin:end] == G.GS_HIGH_SCORE_CHECK) + begin
            assert len(over) == 1, f"cabinet {c}: one game over per cycle"
            score = int(f["score"][over[0], c])
            last_level = int(f["level"][over[0], c])
            entry = np.flatnonzero(gs[begin:end] == G.GS_ENTER_INITIALS) + begin
            if score > table[-1]:
                initials_asked += 1
                table = sorted([*table, score], reverse=True)[:G.NUM_HIGH_SCORES]
                assert gs[over[0] + 1] == G.GS_HIGH_SCORE_EFFECT
                presses = _rising(inputs["fire"][entry, c]) + entry[0]
                assert len(presses) == G.INITIALS_LETTERS, "three letters"
                assert cycles.initials[presses, c].tolist() == [1, 2, 3]
                assert presses[-1] == entry[-1], "the third letter ends the entry"
            else:
                assert entry.size == 0 and gs[over[0] + 1] == G.GS_ATTRACT
            # Back in attract mode.
            idle = np.flatnonzero(~real[begin:end]) + begin
            assert idle.size and gs[idle[0] - 1] == G.GS_ATTRACT
            for name in ("fire", "zap", "spinner", "max_start", "cursor"):
                unused = -1 if name in ("max_start", "cursor") else 0
                assert (inputs[name][idle, c] == unused).all(), f"cabinet {c}: {name}"
            floor_writes = inputs["last_level"][idle, c]
            assert ((floor_writes == -1) | (images[idle, c, M.LAST_COMPLETED_LEVEL]
                                            < cab.start_level_min - 1)).all()
            previous_end = over[0]
            complete += 1
    assert complete >= 20
    assert len(levels) >= 20, "different start levels"
    assert initials_asked >= 3
    assert bonuses >= 1
