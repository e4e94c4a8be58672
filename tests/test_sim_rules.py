"""Rules of the real game the simulator follows, each checked in a small scripted scenario
(one game, n = 1): the rules sheets' wording is quoted in the docstrings."""

from __future__ import annotations

import numpy as np
import pytest
from sim_scenarios import NOOP, game_of, playing, run, with_enemy

from tempest_jax.sim import game as G
from tempest_jax.sim import waves as W

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("seed", range(6))
def test_new_flippers_start_turning_clockwise(seed):
    """'Flippers start at depth 0xF0 moving up, rotation bit = CW': on a spiral wave every
    hatched flipper keeps flipping toward the lower lane."""
    level0 = 2                                        # wave 3: spiral climbers
    assert W.WAVE_TABLE[level0, W.COL["pattern"]] == W.PATTERN_SPIRAL
    # A deep tanker fills the wave's one tanker place and, with its cargo, two of the four
    # flipper places: the two hatches are flippers.
    g = with_enemy(playing(level0=level0, lane=0, seed=seed), 0, W.TANKER, 8, 0xE8,
                   cargo=W.CARGO_FLIPPERS)
    vid = np.zeros(G.NUM_PENDING, np.int32)
    vid[:2] = [1, 2]
    seg = np.zeros(G.NUM_PENDING, np.int32)
    seg[:2] = [3, 10]
    g = g.replace(pending_vid=vid, pending_seg=seg)
    state, _ = run(g, [NOOP] * 2)
    e = game_of(state).enemies
    hatched = (e.along > 0) & (e.kind == W.FLIPPER)
    assert hatched.sum() == 2
    assert not e.higher[hatched].any(), "rotation bit clear (clockwise) at the start"
    lanes = [e.lane[hatched]]
    for _ in range(30):
        state, _ = run(game_of(state), [NOOP])
        lanes.append(game_of(state).enemies.lane[hatched])
    steps = np.diff(np.stack(lanes), axis=0) % 16
    assert set(steps.ravel().tolist()) == {0, 15}, "only moves to the next lower lane"
    assert ((steps == 15).sum(axis=0) >= 1).all(), "every flipper completed a flip"


def _runs_of(states, code):
    """Lengths of the runs of consecutive frames in gamestate `code`."""
    runs, n = [], 0
    for gs in [*states, None]:
        if gs == code:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_delays_last_their_countdown_in_ticks():
    """'0x1E starts a 20-tick delay (state 0x0A, $0004 := 0x14)', 'AVOID SPIKES: the delay
    state 0x0A with a 30-tick countdown' and, after a death, '0x0A (countdown 0, so 1 tick)'."""
    # Level 4 starts with spikes: the level ends at once into the avoid-spikes delay.
    _, frames = run(playing(level0=3, lane=5), [NOOP] * 40)
    states = [f.gamestate for f in frames]
    assert states[0] == G.GS_DELAY
    assert _runs_of(states, G.GS_DELAY)[0] == G.AVOID_SPIKES_TICKS == 30
    assert states[30] == G.GS_ZOOM
    # A life lost: 0x06, one tick of 0x0A, then the life start and its 20-tick delay.
    g = with_enemy(playing(lane=5, pending=1), 6, W.FLIPPER, 5, 0x10, chaser=True, timer=1)
    _, frames = run(g, [NOOP] * 80)
    states = [f.gamestate for f in frames]
    death = states.index(G.GS_DEATH)
    after = states[death:]
    assert after[:4] == [G.GS_DEATH, G.GS_DELAY, G.GS_LEVEL_STARTUP, G.GS_DELAY_THEN_PLAY]
    assert _runs_of(after, G.GS_DELAY) == [1, G.START_DELAY_TICKS]
    assert after[4 + G.START_DELAY_TICKS] == G.GS_PLAYING
