"""The feature contract: layout blocks, the 44-action table, expert advice → executed action."""

from __future__ import annotations

import numpy as np
import pytest

from tempest_jax import features as F

# Start index and size of every block of the original Tempest AI's state vector.
REFERENCE_BLOCKS = {
    "gamestate": (0, 1), "player_shot_depth": (12, 8), "player_shot_rel_lane": (20, 8),
    "level_number": (28, 1), "open_level": (29, 1), "level_shape": (30, 1), "spike": (31, 16),
    "tube_angle": (47, 16), "active_count": (63, 5), "spawn_available": (68, 5),
    "enemies_in_tube": (73, 1), "enemies_pending": (75, 1), "pulsar_fliprate": (76, 1),
    "pulse_beat": (77, 1), "fuse_move_prb": (80, 1), "enemy_speed": (81, 5),
    "enemy_info": (86, 42), "enemy_rel_lane": (128, 7), "enemy_depth": (135, 7),
    "enemy_top_rel_lane": (142, 7), "enemy_shot_position": (149, 4),
    "enemy_shot_rel_lane": (153, 4), "pulsar_depth": (157, 7), "pulsar_rel_lane": (164, 7),
    "toprail_rel_lane": (171, 7), "nearest_threat": (178, 3), "enemy_delta_lane": (181, 7),
    "enemy_delta_depth": (188, 7),
}


def test_layout_covers_195_values_contiguously():
    assert F.FIELDS[0].start == 0 and F.FIELDS[-1].stop == F.STATE_SIZE == 195
    for before, after in zip(F.FIELDS, F.FIELDS[1:]):
        assert before.stop == after.start
    assert len(F.LAYOUT) == len(F.FIELDS)


@pytest.mark.parametrize("name", sorted(REFERENCE_BLOCKS))
def test_blocks_at_reference_indices(name):
    assert (F.LAYOUT[name].start, F.LAYOUT[name].size) == REFERENCE_BLOCKS[name]


def test_describe_index():
    assert F.describe_index(0) == "gamestate"
    assert F.describe_index(137) == "enemy_depth[2]"
    with pytest.raises(IndexError):
        F.describe_index(195)


def test_action_table_round_trip_all_44():
    seen = set()
    for joint in range(F.NUM_ACTIONS):
        action = F.action_of_joint(joint)
        assert action.joint == joint
        assert F.joint_index(action.fire, action.zap,
                             F.SPINNER_INDEX_OF_LEVEL[action.spinner]) == joint
        assert (F.JOINT_FIRE[joint], F.JOINT_ZAP[joint], F.JOINT_SPINNER[joint]) == (
            action.fire, action.zap, action.spinner)
        seen.add((action.fire, action.zap, action.spinner))
    assert len(seen) == 44
    assert F.action_of_joint(0) == F.Action(0, 0, 0)
    assert F.action_of_joint(32) == F.Action(1, 0, -12)
    assert F.action_of_joint(43) == F.Action(1, 1, -12)
    for bad in (-1, 44):
        with pytest.raises(ValueError):
            F.action_of_joint(bad)


def test_relative_lane_closed_wraps_with_deterministic_tie():
    players = np.arange(16)[:, None]
    targets = np.arange(16)[None, :]
    rel = F.relative_lane(players, targets, False)
    assert rel.min() == -7 and rel.max() == 8
    assert ((players + rel - targets) % 16 == 0).all()
    assert (rel[np.abs(players - targets) == 8] == 8).all()
    open_rel = F.relative_lane(players, targets, True)
    np.testing.assert_array_equal(open_rel, targets - players)


def test_expert_action_executes_what_is_stored():
    # Higher target lane → negative spinner (a positive spinner lowers the lane).
    cases = {  # (target, player, open): spinner level
        (4, 3, 0): -9, (5, 3, 0): -12, (2, 3, 0): 9, (0, 3, 0): 12, (3, 3, 0): 0,
        (11, 3, 0): -12, (14, 3, 0): 12, (14, 3, 1): -12, (-1, 3, 0): 0,
    }
    for (target, player, is_open), level in cases.items():
        for fire in (0, 1):
            for zap in (0, 1):
                joint = int(F.expert_joint_action(target, player, is_open, fire, zap))
                assert F.action_of_joint(joint) == F.Action(fire, zap, level), (target, player)


def test_presence_masks_use_depths_not_sentinels():
    state = np.zeros((2, 195), np.float32)
    state[0, F.LAYOUT["enemy_depth"].start + 3] = 0.5
    state[:, F.LAYOUT["enemy_rel_lane"].slice] = -1.0  # a genuine lane -15 looks like "absent"
    enemies, shots, enemy_shots = F.presence_masks(state)
    assert enemies.sum() == 1 and enemies[0, 3]
    assert not shots.any() and not enemy_shots.any()


def test_action_applied_only_in_real_play_or_zoom_while_alive():
    gamestates = np.array([0x04, 0x20, 0x04, 0x06, 0x16, 0x12, 0x04, 0x20])
    modes = np.array([0x80, 0x80, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80])
    state = np.zeros((8, F.STATE_SIZE), np.float32)
    state[:6, F.LAYOUT["alive"].start] = 1.0  # the last two: the death explosion
    assert F.action_applied(gamestates, modes, state).tolist() == [
        True, True, False, False, False, False, False, False]
