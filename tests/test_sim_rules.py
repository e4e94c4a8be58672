"""Rules of the real game the simulator follows, each stated in its test's docstring and
checked in a small scripted scenario (one game, n = 1)."""

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


def test_pulse_clock_runs_on_every_wave():
    """'Pulse clock (global): a signed byte starting at -1 at each wave/life start; every tick
    it adds an increment (+4 on waves 1-48) ... on 7 ticks, off 33 (period 40). The first pulse
    starts on the first tick of the wave.' Wave 1 has no pulsars; the clock runs all the same."""
    from tempest_jax.sim import ram_map as M
    from tempest_jax.sim.ram import ram

    g = G.new_game(np.uint32(3), 0)
    state, _ = run(g, [NOOP] * 3)                     # 0x00, 0x02, 0x1E
    g = game_of(state)
    assert g.gamestate == G.GS_DELAY and g.pulse_clock == -1 and g.pulse_inc == 4
    g = g.replace(countdown=np.int32(0), next_state=np.int32(G.GS_PLAYING),
                  pending_vid=np.full(G.NUM_PENDING, 0xF0, np.int32))   # nothing hatches
    state, _ = run(g, [NOOP])                         # the delay ends
    clock = []
    for _ in range(80):
        g = game_of(state)
        assert g.gamestate == G.GS_PLAYING
        state, _ = run(g, [NOOP])
        image = np.asarray(ram(game_of(state)))
        clock.append(int(image[M.PULSING].astype(np.int8)))
        assert image[M.PULSE_BEAT] in (4, 0xFC)
    on = [c >= 0 for c in clock]
    assert on == ([True] * 7 + [False] * 33) * 2
    assert clock[:8] == [3, 7, 11, 15, 11, 7, 3, -1]


@pytest.mark.parametrize(("clock", "inc", "flips"), [
    (-9, 4, False),      # off now, but on again within 4 ticks
    (-17, 4, True),      # off now and 4 ticks ahead (-1)
    (-1, -4, True),      # just switched off, falling
    (3, 4, False),       # pulsing
])
def test_pulsar_flips_only_while_the_clock_stays_off(clock, inc, flips):
    """'Flipping: moves for D ticks, then waits (still moving) until the pulse clock is off and
    will still be off 4 ticks ahead, then flips one lane toward the player.'"""
    g = with_enemy(playing(level0=16, lane=2, pending=1), 3, W.PULSAR, 9, 0x80, timer=0)
    g = g.replace(pulse_clock=np.int32(clock), pulse_inc=np.int32(inc))
    state, _ = run(g, [NOOP])
    e = game_of(state).enemies
    assert bool(e.flipping[3]) == flips
    assert (e.along[3] < 0x80 * G.ONE) == (not flips), "it keeps moving while it waits"


def test_death_slide_takes_enemies_out_of_their_slots():
    """'Each tick every active enemy is pushed 0x0F deeper (removed when it reaches >= 0xF0) ...
    Then gamestate becomes 0x06; enemies_pending becomes (enemies in tube + on top + pending)':
    the slots empty during the slide while the counters keep the enemies for the queue."""
    from tempest_jax.sim import ram_map as M
    from tempest_jax.sim.ram import ram

    g = with_enemy(playing(lane=5, pending=2), 6, W.FLIPPER, 5, 0x10, chaser=True, timer=1)
    g = with_enemy(g, 2, W.FLIPPER, 9, 0x90)
    g = with_enemy(g, 1, W.FLIPPER, 12, 0xC0)
    images, states = [], []
    state = None
    for _ in range(60):
        state, frames = run(g if state is None else game_of(state), [NOOP])
        images.append(np.asarray(ram(game_of(state))))
        states.append(frames[0].gamestate)
    death = states.index(G.GS_DEATH)
    along = np.stack([im[M.ENEMY_ALONG:M.ENEMY_ALONG + 7] for im in images])
    counters = np.stack([im[[M.NUM_ENEMIES_IN_TUBE, M.NUM_ENEMIES_ON_TOP]] for im in images])
    live = (along > 0).sum(axis=1)
    assert live[0] == 3 and live[death - 1] == 0, "the slide empties the slots before 0x06"
    assert (np.diff(live[:death]) <= 0).all()
    assert len(set(live[:death].tolist())) == 4, "one enemy after another leaves"
    assert (counters[:death + 1] == [2, 1]).all(), "the counters keep all three"
    # The tick in 0x06 puts them back in the queue.
    assert (counters[death + 1] == 0).all()
    assert images[death + 1][M.ENEMIES_PENDING] == 2 + 3


def test_each_eligible_enemy_gets_its_own_chance_to_fire():
    """'Chance when eligible, per tick, depends on how many enemy shots are already on screen:
    0 shots: always; 1: 32/256; 2: 16/256; 3: 6/256; 4: 1/256', up to the wave's maximum: every
    eligible enemy draws, and a shot fired this tick counts for the enemies after it."""
    level0 = 8                                        # wave 9: up to 4 enemy shots
    max_shots = int(W.WAVE_TABLE[level0, W.COL["max_shots"]])
    lanes = {6: 2, 4: 6, 3: 10, 1: 13}               # slot -> lane, away from the player
    multi = 0
    for seed in range(48):
        g = playing(level0=level0, lane=0, pending=1, seed=seed)
        for slot, lane in lanes.items():
            g = with_enemy(g, slot, W.FLIPPER, lane, 0x80, can_fire=True, holdoff=0)
        r = np.asarray(G.draws(np.uint32(seed), np.int32(0)))
        expected, n = [], 0
        for slot in sorted(lanes, reverse=True):      # the highest slot first
            if n < max_shots and r[32 + slot] < G.ENEMY_FIRE_CHANCE[n]:
                expected.append(lanes[slot])
                n += 1
        state, _ = run(g, [NOOP])
        end = game_of(state)
        live = end.eshot_pos > 0
        assert end.eshot_lane[live].tolist() == expected, f"seed {seed}"
        fired = [s for s in lanes if end.enemies.holdoff[s] > 0]
        assert sorted(lanes[s] for s in fired) == sorted(expected)
        multi += len(expected) > 1
    assert multi >= 3, "several enemies fired in one tick"


@pytest.mark.parametrize(("marker", "marker_lane", "pushed"), [
    (5, 3, True),        # a later entry in the zone on the mirrored lane (3 = 15 - 12)
    (5, 12, True),       # ... or on the same lane
    (5, 4, False),       # another lane
    (1, 3, False),       # an earlier entry: the game's scan (63 down to 0) has not marked it
    (None, 0, False),    # nothing in the zone
])
def test_hatch_queue_lane_exclusion(marker, marker_lane, pushed):
    """'Countdown 0x20..0x3F is an exclusion zone: a lane holding a pending enemy in that zone
    is marked off-limits; a pending enemy entering the zone (countdown reaching 0x3F) on a lane
    already marked is pushed back by one. The marks are an 8-bit mask where lane L and lane
    15-L share one bit' (and the check only sees marks made earlier in the scan, 63 down)."""
    g = playing(lane=0, pending=0)
    vid = np.zeros(G.NUM_PENDING, np.int32)
    seg = np.zeros(G.NUM_PENDING, np.int32)
    vid[2], seg[2] = 0x40, 12
    vid[9] = 0xF0                                     # keeps the wave from ending
    if marker is not None:
        vid[marker], seg[marker] = 0x31, marker_lane
    g = g.replace(pending_vid=vid, pending_seg=seg)
    state, _ = run(g, [NOOP])
    end = game_of(state)
    assert end.timectr & 1 == 1, "no lane rotation this tick"
    assert end.pending_seg[2] == 12
    assert end.pending_vid[2] == (0x40 if pushed else 0x3F)
    if marker is not None:
        assert end.pending_vid[marker] == 0x30


def _cleared_level(g):
    """Step a game in play with nothing left to kill through the zoom and the next level's
    start: (the game at the end, the frames)."""
    g = g.replace(spikes=np.zeros(16, np.int32))
    state, frames = run(g, [NOOP] * 110)
    return game_of(state), frames


@pytest.mark.parametrize(("level", "entry", "bonus"), [(13, 6, 94_000), (3, 1, 6_000),
                                                       (2, 0, 0), (1, 0, 0)])
def test_start_level_bonus_is_paid_when_the_first_level_is_cleared(level, entry, bonus):
    """'The bonus for the chosen start level is awarded once, when the player completes that
    first wave ... kept if the player dies during the starting wave.' A game started directly
    on a level the level select offers pays that entry's bonus; level 2 is not offered."""
    from tempest_jax.sim import ram_map as M
    from tempest_jax.sim.ram import ram

    g = playing(level0=level - 1, lane=5).replace(score=np.int32(1_000))
    assert np.asarray(ram(g))[M.START_BONUS_ENTRY] == entry
    end, frames = _cleared_level(g.replace(lives=np.int32(2)))
    states = [f.gamestate for f in frames]
    off = states.index(G.GS_ZOOM_ONTO_NEW)            # the frame after the 0x0E tick
    assert [f.score for f in frames[:off]] == [1_000] * off
    assert all(f.score == 1_000 + bonus for f in frames[off:])
    assert frames[off].obj_reward == bonus
    assert frames[off].level == level
    # A bonus of 20,000 or more crosses a bonus-life multiple: one more life.
    assert end.lives == 2 + (bonus >= 20_000)
    assert end.start_bonus == 0


def test_start_level_bonus_survives_a_death_on_the_first_level():
    g = with_enemy(playing(level0=12, lane=5, pending=1), 6, W.FLIPPER, 5, 0x10, chaser=True,
                   timer=1)
    state, frames = run(g, [NOOP] * 80)
    assert G.GS_DEATH in [f.gamestate for f in frames]
    assert game_of(state).start_bonus == 6
    assert frames[-1].score == 0
