"""Extraction: value ranges, agreement with the features.py layout, exact float32 values,
header fields, determinism and a type-stable step (no recompiles)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sim_scenarios import NOOP, action, batch, game_of, playing, run, with_enemy

from tempest_jax import features as F
from tempest_jax import sim
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import waves as W

pytestmark = pytest.mark.timeout(300)

GAMES = 48
TICKS = 700


@pytest.fixture(scope="module")
def rollout():
    """Random-policy frames of games started on levels 9 (tankers, spikers, open tubes soon)
    and 17 (pulsars), with the RAM images they were extracted from."""
    key = jax.random.key(3)
    halves = [sim.reset(jax.random.fold_in(key, lvl), GAMES // 2, lvl) for lvl in (9, 17)]
    state = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), halves[0][0], halves[1][0])
    frames, images, actions = [], [], []
    for t in range(TICKS):
        a = jax.random.randint(jax.random.fold_in(key, t), (GAMES,), 0, F.NUM_ACTIONS)
        images.append(np.asarray(sim.ram_images(state.game)))
        state, frame = sim.step(state, a)
        frames.append(jax.tree.map(np.asarray, frame))
        actions.append(np.asarray(a))
    stack = jax.tree.map(lambda *xs: np.stack(xs), *frames)
    post_images = np.stack([*images[1:], np.asarray(sim.ram_images(state.game))])
    return stack, post_images, np.stack(actions)


def test_every_value_in_range_and_finite(rollout):
    frames, _, _ = rollout
    s = frames.state
    assert s.shape == (TICKS, GAMES, F.STATE_SIZE) and s.dtype == np.float32
    assert np.isfinite(s).all()
    assert s.min() >= -1.0 and s.max() <= 1.0
    assert set(np.unique(frames.expert_target)) <= set(range(16))
    assert set(np.unique(frames.player_seg)) <= set(range(16))
    assert np.isin(frames.done, (0, 1)).all() and np.isin(frames.is_open, (0, 1)).all()
    assert (np.abs(frames.subj_reward) <= 5.0).all()
    assert (frames.subj_reward * 8 == np.round(frames.subj_reward * 8)).all()
    assert (frames.obj_reward[frames.done == 1] <= -1000 + 1000).all()
    assert (frames.save_signal == 0).all()
    # The rollout really covers the game: play, deaths, pulsars, open tubes (zooms are
    # covered by the mechanics tests: a random policy rarely clears a level).
    assert {0x02, 0x04, 0x06, 0x0A} <= set(np.unique(frames.gamestate))
    assert frames.done.sum() > 0 and frames.is_open.any()
    assert (frames.state[..., F.LAYOUT["pulsar_depth"].slice] > 0).any()


def test_header_fields(rollout):
    frames, images, actions = rollout
    fire, zap, sp = F.decode_joint(actions)
    np.testing.assert_array_equal(frames.cmd_fire, fire)
    np.testing.assert_array_equal(frames.cmd_zap, zap)
    np.testing.assert_array_equal(frames.cmd_spinner, F.SPINNER_LEVELS_ARRAY[sp])
    np.testing.assert_array_equal(frames.frame, np.broadcast_to(np.arange(2, TICKS + 2)[:, None],
                                                                frames.frame.shape))
    np.testing.assert_array_equal(frames.gamestate, images[..., M.GAMESTATE])
    np.testing.assert_array_equal(frames.player_seg, images[..., M.PLAYER_SEG] & 15)
    np.testing.assert_array_equal(frames.level, images[..., M.CURLEVEL])
    assert (frames.game_mode[frames.gamestate == 0x04] & 0x80).all()    # real games


def test_feature_slices_agree_with_features_layout(rollout):
    frames, images, _ = rollout
    s = frames.state.astype(np.float64)
    img = images.astype(np.int64)
    L = F.LAYOUT
    p = img[..., M.PLAYER_SEG] & 15
    is_open = img[..., M.OPEN_LEVEL] != 0
    depth = img[..., M.ENEMY_ALONG:M.ENEMY_ALONG + 7]
    np.testing.assert_allclose(s[..., L["enemy_depth"].slice] * 255, depth, atol=1e-4)
    spikes = img[..., M.LANE_SPIKE_HEIGHT:M.LANE_SPIKE_HEIGHT + 16]
    np.testing.assert_allclose(s[..., L["spike"].slice],
                               np.where(spikes == 0, 0, (255 - spikes) / 255), atol=1e-7)
    angles = img[..., M.TUBE_ANGLE:M.TUBE_ANGLE + 16]
    np.testing.assert_allclose(s[..., L["tube_angle"].slice] * 15, angles, atol=1e-5)
    np.testing.assert_allclose(s[..., L["gamestate"].start] * 36, img[..., M.GAMESTATE],
                               atol=1e-4)
    # Presence derived from the depth slices matches the RAM.
    enemy_on, shot_on, eshot_on = F.presence_masks(frames.state)
    np.testing.assert_array_equal(enemy_on, depth > 0)
    np.testing.assert_array_equal(
        shot_on, img[..., M.PLAYER_SHOT_POSITIONS:M.PLAYER_SHOT_POSITIONS + 8] > 0)
    np.testing.assert_array_equal(
        eshot_on, img[..., M.ENEMY_SHOT_POSITIONS:M.ENEMY_SHOT_POSITIONS + 4] > 0)
    # Integer relative lanes (enemies not between lanes, player shots) follow features.py.
    lanes = img[..., M.ENEMY_SEG:M.ENEMY_SEG + 7] & 15
    between = (img[..., M.ENEMY_TYPE_INFO:M.ENEMY_TYPE_INFO + 7] & 0x80) != 0
    rel = F.relative_lane(p[..., None], lanes, is_open[..., None])
    plain = (depth > 0) & ~between
    got = s[..., L["enemy_rel_lane"].slice]
    np.testing.assert_allclose(got[plain], (np.clip(rel, -15, 15) / 15)[plain], atol=1e-7)
    assert (got[depth == 0] == -1.0).all()
    # Fractional lanes lie between the two lanes of the flip.
    frac = (depth > 0) & between & ((img[..., M.ENEMY_TYPE_INFO:M.ENEMY_TYPE_INFO + 7] & 7)
                                    != 4)
    assert frac.any()
    assert (np.abs(got[frac] * 15 - rel[frac]) <= 1.0 + 1e-5).all()
    # Closed tubes: relative features stay within ±8/15; exactly opposite is +8.
    closed = ~is_open[..., None] & (depth > 0)
    assert (np.abs(got[closed]) <= 8 / 15 + 1e-6).all()


def test_values_are_correctly_rounded_integer_divisions(rollout):
    """What a Lua double computation rounded to float32 gives, bit for bit."""
    frames, images, _ = rollout
    img = images.astype(np.int64)
    L = F.LAYOUT
    depth = img[..., M.ENEMY_ALONG:M.ENEMY_ALONG + 7]
    want = (depth.astype(np.float64) / 255).astype(np.float32)
    np.testing.assert_array_equal(frames.state[..., L["enemy_depth"].slice], want)
    pos = img[..., M.ENEMY_SHOT_POSITIONS:M.ENEMY_SHOT_POSITIONS + 4]
    lsb = img[..., M.ENM_SHOT_LSB:M.ENM_SHOT_LSB + 4]
    want = np.where(pos > 0, (pos + lsb / 256) / 256, 0).astype(np.float32)
    np.testing.assert_array_equal(frames.state[..., L["enemy_shot_position"].slice], want)
    # The zap penalty is float32(1000 * pending / start) (docs/extraction.md).
    zapped = (frames.obj_reward < 0) & (frames.done == 0)
    assert (frames.obj_reward[zapped] >= -1000).all()


def test_fractional_lane_moves_across_the_flip():
    g = with_enemy(playing(level0=0, lane=0, pending=1), 6, 0, 4, 0x90,
                   pattern=W.PATTERN_CLIMB_FLIP, timer=0)
    _, frames = run(g, [NOOP] * 12)
    rel = [f.state[F.LAYOUT["enemy_rel_lane"].start + 6] * 15 for f in frames]
    info = [f.state[F.LAYOUT["enemy_info"].start + 6 * 6 + 2] for f in frames]
    assert info[0] == 0.0 or info[1] == 1.0                    # the flip starts at once
    flipping = [r for r, b in zip(rel, info) if b == 1.0]
    assert len(flipping) >= 5                                  # circle lanes: 7-9 steps
    assert all(3.0 <= r <= 5.0 for r in flipping)
    steps = np.diff(flipping)
    assert (steps > 0).all() or (steps < 0).all()              # monotonic across the flip


def test_expert_action_and_action_applied(rollout):
    frames, _, _ = rollout
    joint = np.asarray(sim.expert_actions(jax.tree.map(jnp.asarray, frames)))
    assert joint.min() >= 0 and joint.max() < F.NUM_ACTIONS
    want = F.expert_joint_action(frames.expert_target, frames.player_seg,
                                 frames.is_open != 0, frames.expert_fire, frames.expert_zap)
    np.testing.assert_array_equal(joint, want)
    applied = F.action_applied(frames.gamestate, frames.game_mode, frames.state)
    assert applied.any() and not applied.all()


def _two_halves(key):
    """GAMES games from two resets of GAMES // 2 (the sizes the rollout already compiled)."""
    halves = [sim.reset(key, GAMES // 2)[0] for _ in range(2)]
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *halves)


def test_step_is_type_stable_and_deterministic():
    a = _two_halves(jax.random.key(7))
    b = _two_halves(jax.random.key(7))
    acts = jnp.asarray([action(fire=1), action(spinner=-6), NOOP] * (GAMES // 3), jnp.int32)
    for _ in range(50):
        a, fa = sim.step(a, acts)
        b, fb = sim.step(b, acts)
    jax.tree.map(np.testing.assert_array_equal, fa, fb)
    stepped, _ = sim.step(a, acts)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(stepped)):
        assert (x.dtype, x.shape, x.weak_type) == (y.dtype, y.shape, y.weak_type)
    c = _two_halves(jax.random.key(8))
    assert not np.array_equal(np.asarray(c.game.seed), np.asarray(a.game.seed))


def test_reset_frame_and_batch_helpers():
    g = playing(pending=1)
    state = batch(g)
    images = sim.ram_images(state.game)
    carry, frame = sim.extract_batch(state.carry, images)
    assert images.shape == (1, M.RAM_SIZE) and images.dtype == jnp.uint8
    assert int(frame.gamestate[0]) == 0x04 and int(frame.frame[0]) == 1
    assert not bool(carry.first[0])
    assert game_of(state).gamestate == 0x04
