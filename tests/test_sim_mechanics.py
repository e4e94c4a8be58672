"""Game mechanics of the simulator, each in a small scripted scenario (one game, n = 1)."""

from __future__ import annotations

import numpy as np
import pytest
from sim_scenarios import NOOP, action, game_of, playing, run, with_enemy

from tempest_jax.sim import game as G
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import waves as W
from tempest_jax.sim.ram import ram

pytestmark = pytest.mark.timeout(240)

FIRE = action(fire=1)
ZAP = action(zap=1)


def test_shot_kills_flipper_in_its_lane():
    g = with_enemy(playing(lane=5, pending=1), 6, W.FLIPPER, 5, 0x50)
    g = with_enemy(g, 5, W.FLIPPER, 9, 0x50)          # another lane: must survive
    state, frames = run(g, [FIRE] + [NOOP] * 8)
    end = game_of(state)
    assert end.enemies.along[6] == 0
    assert end.enemies.along[5] > 0
    assert end.score == 150
    assert sum(f.obj_reward for f in frames) == 150


def test_rim_flipper_cannot_be_shot_unless_flipping():
    g = with_enemy(playing(lane=5, pending=1), 6, W.FLIPPER, 5, 0x10, chaser=True, timer=30)
    state, _ = run(g, [FIRE, NOOP])
    assert game_of(state).enemies.along[6] > 0
    # ... and, crouching in the player's lane, it grabs the player.
    assert game_of(state).player_state == G.PLAYER_STATE_GRABBED


def test_shot_tanker_splits_into_two_flippers():
    g = with_enemy(playing(lane=5, pending=1), 6, W.TANKER, 5, 0x60,
                   cargo=W.CARGO_FLIPPERS)
    state, _ = run(g, [FIRE] + [NOOP] * 12)
    e = game_of(state).enemies
    live = e.along > 0
    assert sorted(e.lane[live].tolist()) == [4, 6]
    assert (e.kind[live] == W.FLIPPER).all()
    assert game_of(state).score == 100


def test_tanker_splits_by_itself_near_the_rim():
    g = with_enemy(playing(lane=0, pending=1), 6, W.TANKER, 9, 0x21, cargo=W.CARGO_FLIPPERS)
    state, _ = run(g, [NOOP] * 3)
    e = game_of(state).enemies
    assert sorted(e.lane[e.along > 0].tolist()) == [8, 10]
    assert game_of(state).score == 0


def test_rim_flipper_grabs_the_player():
    g = with_enemy(playing(lane=5, pending=1), 6, W.FLIPPER, 5, 0x10, chaser=True,
                   timer=G.CROUCH_TICKS)
    state, frames = run(g, [NOOP] * 3)
    assert game_of(state).player_state == G.PLAYER_STATE_GRABBED
    assert [f.done for f in frames] == [1, 0, 0]
    assert frames[0].obj_reward == -1000
    assert frames[0].state[6] == 0.0                  # alive feature


def test_enemy_shot_at_the_rim_kills_the_player():
    g = playing(lane=3, pending=1)
    g = g.replace(eshot_pos=g.eshot_pos.at[0].set(0x12 * G.ONE),
                  eshot_lane=g.eshot_lane.at[0].set(3))
    state, frames = run(g, [NOOP])
    assert game_of(state).player_state == G.PLAYER_STATE_KILLED
    assert frames[0].done == 1


def test_fuseball_touch_kills_the_player():
    g = with_enemy(playing(lane=7, pending=1), 4, W.FUSEBALL, 7, 0x10, flipping=True,
                   higher=True, step=3, timer=4)
    state, _ = run(g, [NOOP])
    assert game_of(state).player_state == G.PLAYER_STATE_KILLED


def test_pulsing_pulsar_in_the_players_lane_kills():
    g = with_enemy(playing(level0=16, lane=2, pending=1), 3, W.PULSAR, 2, 0x40, timer=30)
    g = g.replace(pulse_clock=np.int32(3), pulse_inc=np.int32(4))
    state, _ = run(g, [NOOP])
    assert game_of(state).player_state == G.PLAYER_STATE_KILLED
    # Not pulsing: the same pulsar is harmless.
    g = g.replace(pulse_clock=np.int32(-40), pulse_inc=np.int32(4))
    state, _ = run(g, [NOOP])
    assert game_of(state).player_state & 0x80 == 0


def _tube_with(g, n):
    for k in range(n):
        g = with_enemy(g, k, W.FLIPPER, (3 * k) % 16, 0x80 + 8 * k)
    return g


def test_superzapper_first_clears_tube_second_kills_one_third_nothing():
    g = _tube_with(playing(lane=0, pending=1), 6)
    state, frames = run(g, [ZAP] + [NOOP] * 20)
    end = game_of(state)
    assert end.zap_uses == 1
    assert (end.enemies.along == 0).all()
    assert end.score == 6 * 150
    assert max(f.state[10] for f in frames) > 0       # zap-active feature while it ran

    g = _tube_with(playing(lane=0, pending=1), 3).replace(zap_uses=np.int32(1))
    state, _ = run(g, [ZAP] + [NOOP] * 8)
    end = game_of(state)
    assert end.zap_uses == 2
    assert (end.enemies.along > 0).sum() == 2

    g = _tube_with(playing(lane=0, pending=1), 3).replace(zap_uses=np.int32(2))
    state, _ = run(g, [ZAP] + [NOOP] * 8)
    end = game_of(state)
    assert end.zap_uses == 2
    assert (end.enemies.along > 0).sum() == 3


def test_zap_needs_a_new_press():
    g = _tube_with(playing(lane=0, pending=1), 2)
    state, _ = run(g, [ZAP] * 30)
    assert game_of(state).zap_uses == 1


@pytest.mark.parametrize(("level0", "start", "spinner", "expected"), [
    (7, 0x08, 12, 0x00),        # open (V): clamped at the low end
    (7, 0xE8, -12, 0xEF),       # open: clamped at lane 14
    (0, 0x04, 12, 0xE0),        # closed (circle): wraps below 0
    (0, 0xF8, -12, 0x1C),       # closed: wraps above 0xFF
])
def test_open_tube_clamps_closed_tube_wraps(level0, start, spinner, expected):
    g = playing(level0=level0, pending=1).replace(position=np.int32(start))
    state, frames = run(g, [action(spinner=spinner)] * 3)
    end = game_of(state)
    assert end.position == expected
    assert end.player_lane == expected >> 4
    assert frames[-1].is_open == (level0 == 7)


def test_zoom_into_a_spike_kills():
    g = playing(level0=9, lane=4).replace(
        gamestate=np.int32(G.GS_ZOOM), zoom_speed=np.int32(G.ZOOM_START_SPEED),
        spikes=np.where(np.arange(16) == 4, 0x40, 0).astype(np.int32))
    state, frames = run(g, [NOOP] * 40)
    assert game_of(state).player_state == G.PLAYER_STATE_KILLED
    assert sum(f.done for f in frames) == 1
    # The same zoom on a spike-free lane reaches the far end and the next level.
    g = g.replace(spikes=np.where(np.arange(16) == 9, 0x40, 0).astype(np.int32))
    state, frames = run(g, [NOOP] * 40)
    assert sum(f.done for f in frames) == 0
    assert game_of(state).level == 10
    assert game_of(state).gamestate == G.GS_ZOOM_ONTO_NEW


def test_level_advances_when_clear():
    g = playing(level0=0, lane=5)                     # nothing pending, no enemies, no spikes
    state, frames = run(g, [NOOP] * 200)
    states = [f.gamestate for f in frames]
    assert states[0] == G.GS_ZOOM
    assert G.GS_ZOOM_OFF_END in states and G.GS_ZOOM_ONTO_NEW in states
    assert states[-1] == G.GS_PLAYING
    assert game_of(state).level == 1
    assert frames[-1].level == 1
    assert game_of(state).player_lane == 5            # the lane is kept between levels


def test_avoid_spikes_delay_before_the_zoom_on_early_levels():
    g = playing(level0=3, lane=5)                     # level 4 starts with spikes
    _, frames = run(g, [NOOP] * 3)
    assert frames[0].gamestate == G.GS_DELAY


def test_score_is_bcd_in_ram_and_decoded_in_the_frame():
    g = playing(pending=1).replace(score=np.int32(123_456))
    image = np.asarray(ram(g))
    assert image[M.P1_SCORE_L:M.P1_SCORE_H + 1].tolist() == [0x56, 0x34, 0x12]
    _, frames = run(g, [NOOP])
    assert frames[0].score == 123_456


def test_bonus_life_every_20000_points():
    g = with_enemy(playing(lane=5, pending=1), 6, W.FLIPPER, 5, 0x50)
    g = g.replace(score=np.int32(19_900))
    state, _ = run(g, [FIRE] + [NOOP] * 6)
    assert game_of(state).score == 20_050
    assert game_of(state).lives == G.START_LIVES + 1


def test_death_respawn_and_game_over():
    g = with_enemy(playing(lane=5, pending=1), 6, W.FLIPPER, 5, 0x10, chaser=True,
                   timer=1).replace(lives=np.int32(1))
    state, frames = run(g, [NOOP] * 80)
    states = [f.gamestate for f in frames]
    assert G.GS_DEATH in states
    assert G.GS_GAME_OVER in states
    over = states.index(G.GS_GAME_OVER)
    assert frames[over].game_mode & 0x80 == 0         # game over: not a real game any more
    assert states[over + 1] == G.GS_NEW_GAME          # auto-reset: a new game starts
    assert states[over + 2] == G.GS_LEVEL_STARTUP
    assert frames[over + 2].game_mode & 0x80          # Start pressed: a real game again
    assert frames[-1].score == 0 and game_of(state).lives == G.START_LIVES
    assert sum(f.done for f in frames) == 1


def test_lost_life_puts_enemies_back_in_the_queue():
    g = with_enemy(playing(lane=5, pending=2), 6, W.FLIPPER, 5, 0x10, chaser=True, timer=1)
    g = with_enemy(g, 2, W.FLIPPER, 9, 0x90)
    state, frames = run(g, [NOOP] * 60)
    states = [f.gamestate for f in frames]
    death = states.index(G.GS_DEATH)
    assert game_of(state).lives == G.START_LIVES - 1
    assert frames[death + 1].state[75] * 63 == pytest.approx(4)     # 2 pending + 2 alive
