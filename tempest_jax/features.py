"""The feature contract: the 195-value state layout, the 44-action table and expert advice.

This module is the single source of truth for what a frame's state vector means and how an
action index maps to game inputs. The simulator's extraction, the network's token builders, the
replay and the Lua client (`tempest_jax/lua/features.lua`, cross-checked by tests) all read it
from here.

The layout is the original Tempest AI's, value for value (docs/extraction.md says how each is
computed from the game's RAM). Presence is never encoded by a sentinel alone: an enemy slot,
player shot or enemy shot is present iff its depth/position value is > 0, so consumers derive
masks from the depth slices (`presence_masks`) instead of testing for -1.0, which is also a
genuine relative lane of -15 on open levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

STATE_SIZE = 195
NUM_ENEMY_SLOTS = 7
NUM_PLAYER_SHOTS = 8
NUM_ENEMY_SHOTS = 4
NUM_LANES = 16
NUM_ENEMY_TYPES = 5
ENEMY_INFO_WIDTH = 6


@dataclass(frozen=True)
class Field:
    """One named block of the state vector."""

    name: str
    start: int
    size: int
    norm: str
    source: str

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


def _layout(rows: tuple[tuple[str, int, str, str], ...]) -> tuple[Field, ...]:
    fields, start = [], 0
    for name, size, norm, source in rows:
        fields.append(Field(name, start, size, norm, source))
        start += size
    assert start == STATE_SIZE, start
    return tuple(fields)


# (name, size, normalisation, RAM source) in wire order.
FIELDS: tuple[Field, ...] = _layout((
    ("gamestate", 1, "small_enum(v, 36)", "$0000"),
    ("game_mode", 1, "natural", "$0005"),
    ("countdown_timer", 1, "natural", "$0004"),
    ("lives", 1, "small_enum(v, 6)", "$0048"),
    ("p1_level", 1, "small_enum(min(v, 98), 98)", "$0046"),
    ("player_position", 1, "small_enum(v, 15)", "$0200 raw"),
    ("alive", 1, "bool", "$0201 bit 7 clear"),
    ("player_state", 1, "small_enum(v, 15)", "$0201 & 0x0F"),
    ("player_depth", 1, "depth", "$0202"),
    ("zap_uses", 1, "small_enum(v, 2)", "$03AA"),
    ("zap_active", 1, "small_enum(min(v, 19), 19)", "$0125"),
    ("shots_remaining", 1, "small_enum(v, 8)", "8 - $0135"),
    ("player_shot_depth", NUM_PLAYER_SHOTS, "fixed", "$02D3+j"),
    ("player_shot_rel_lane", NUM_PLAYER_SHOTS, "relative", "$02AD+j"),
    ("level_number", 1, "small_enum(min(v, 98), 98)", "$009F"),
    ("open_level", 1, "bool", "$0111"),
    ("level_shape", 1, "small_enum(v mod 16, 15)", "$009F"),
    ("spike", NUM_LANES, "spike", "$03AC+i"),
    ("tube_angle", NUM_LANES, "small_enum(v, 15)", "$03EE+i"),
    ("active_count", NUM_ENEMY_TYPES, "small_enum(v, 7)", "$0142+i"),
    ("spawn_available", NUM_ENEMY_TYPES, "small_enum(v, 7)", "$013D+i"),
    ("enemies_in_tube", 1, "small_enum(v, 7)", "$0108"),
    ("enemies_on_top", 1, "small_enum(v, 7)", "$0109"),
    ("enemies_pending", 1, "small_enum(v, 63)", "$03AB"),
    ("pulsar_fliprate", 1, "small_enum(min(v, 40), 40)", "$00B2"),
    ("pulse_beat", 1, "signed(v, 12)", "$0147"),
    ("pulsing", 1, "natural", "$0148"),
    ("flipper_move", 1, "small_enum(v, 135)", "$015D"),
    ("fuse_move_prb", 1, "natural", "$015F"),
    ("enemy_speed", NUM_ENEMY_TYPES, "signed(v, 2560)", "$0165+i:$0160+i"),
    ("enemy_info", NUM_ENEMY_SLOTS * ENEMY_INFO_WIDTH, "enemy_info", "$0283+k, $028A+k"),
    ("enemy_rel_lane", NUM_ENEMY_SLOTS, "relative", "$02B9+k"),
    ("enemy_depth", NUM_ENEMY_SLOTS, "depth", "$02DF+k"),
    ("enemy_top_rel_lane", NUM_ENEMY_SLOTS, "relative", "rel lane at depth 0x10"),
    ("enemy_shot_position", NUM_ENEMY_SHOTS, "fixed", "$02DB+j, $02E6+j"),
    ("enemy_shot_rel_lane", NUM_ENEMY_SHOTS, "relative", "$02B5+j"),
    ("pulsar_depth", NUM_ENEMY_SLOTS, "depth", "$02DF+k if pulsar"),
    ("pulsar_rel_lane", NUM_ENEMY_SLOTS, "relative", "rel lane if pulsar"),
    ("toprail_rel_lane", NUM_ENEMY_SLOTS, "toprail_relative", "flipper/pulsar at the rim"),
    ("nearest_threat", 3, "depth", "lanes P, P-1, P+1"),
    ("enemy_delta_lane", NUM_ENEMY_SLOTS, "signed(v, 8)", "lane change since last frame"),
    ("enemy_delta_depth", NUM_ENEMY_SLOTS, "signed(v, 128)", "depth change since last frame"),
))

LAYOUT: MappingProxyType[str, Field] = MappingProxyType({f.name: f for f in FIELDS})

# Order of the six decoded values per enemy slot inside `enemy_info` (slot-major).
ENEMY_INFO_NAMES = ("type", "direction", "between", "moving_away", "can_shoot", "split")


def field_of_index(index: int) -> Field:
    """The block that holds state index `index` (used to name bad values in errors)."""
    for f in FIELDS:
        if f.start <= index < f.stop:
            return f
    raise IndexError(f"state index {index} outside 0..{STATE_SIZE - 1}")


def describe_index(index: int) -> str:
    f = field_of_index(index)
    return f.name if f.size == 1 else f"{f.name}[{index - f.start}]"


def presence_masks(state):
    """Boolean presence of enemy slots, player shots and enemy shots (works on numpy or jax)."""
    return (
        state[..., LAYOUT["enemy_depth"].slice] > 0,
        state[..., LAYOUT["player_shot_depth"].slice] > 0,
        state[..., LAYOUT["enemy_shot_position"].slice] > 0,
    )


# ---------------------------------------------------------------------------------------------
# Game state codes ($0000) used across the project.
GAMESTATE_LEVEL_STARTUP = 0x02
GAMESTATE_PLAYING = 0x04
GAMESTATE_DEATH = 0x06
GAMESTATE_LEVEL_BEGIN = 0x08
GAMESTATE_ENTER_INITIALS = 0x12
GAMESTATE_LEVEL_SELECT = 0x16
GAMESTATE_ZOOM = 0x20
GAME_MODE_REAL_GAME_BIT = 0x80

# Sentinels (before normalisation).
INVALID_LANE = -32768
ABSENT = 255
NO_THREAT = 255


# ---------------------------------------------------------------------------------------------
# Actions: joint = fz * 11 + sp, fz = 2 * fire + zap (fire and zap buttons), sp indexes the
# spinner levels (positive turns toward lower lanes).
SPINNER_LEVELS: tuple[int, ...] = (0, 12, 9, 6, 3, 1, -1, -3, -6, -9, -12)
NUM_SPINNER = len(SPINNER_LEVELS)
NUM_FIRE_ZAP = 4
NUM_ACTIONS = NUM_FIRE_ZAP * NUM_SPINNER
SPINNER_LEVELS_ARRAY = np.asarray(SPINNER_LEVELS, dtype=np.int8)
SPINNER_INDEX_OF_LEVEL = MappingProxyType({v: i for i, v in enumerate(SPINNER_LEVELS)})

# Expert steering (our fix of the executed-vs-stored defect): the expert's lane distance picks
# one of the 11 spinner levels, that exact level is sent, and the same index is stored. One lane
# away moves at 9 units/tick so it does not overshoot far; two or more lanes use the maximum 12.
EXPERT_NEAR_LEVEL = 9
EXPERT_FAR_LEVEL = 12


@dataclass(frozen=True)
class Action:
    """Game inputs of one joint action."""

    fire: int
    zap: int
    spinner: int

    @property
    def joint(self) -> int:
        return joint_index(self.fire, self.zap, SPINNER_INDEX_OF_LEVEL[self.spinner])


def joint_index(fire, zap, spinner_index):
    """Joint action index from fire (0/1), zap (0/1) and spinner index (0..10)."""
    return (2 * fire + zap) * NUM_SPINNER + spinner_index


def decode_joint(joint) -> tuple:
    """(fire, zap, spinner_index) of joint indices; works elementwise on numpy or jax arrays."""
    fz, sp = joint // NUM_SPINNER, joint % NUM_SPINNER
    return (fz >> 1) & 1, fz & 1, sp


def action_of_joint(joint: int) -> Action:
    if not 0 <= joint < NUM_ACTIONS:
        raise ValueError(f"joint action {joint} outside 0..{NUM_ACTIONS - 1}")
    fire, zap, sp = decode_joint(int(joint))
    return Action(fire=fire, zap=zap, spinner=SPINNER_LEVELS[sp])


# Spinner level and fire/zap of every joint index, for vectorised reply encoding.
JOINT_FIRE, JOINT_ZAP, JOINT_SPINNER_INDEX = (
    np.asarray(a, dtype=np.int8) for a in decode_joint(np.arange(NUM_ACTIONS))
)
JOINT_SPINNER = SPINNER_LEVELS_ARRAY[JOINT_SPINNER_INDEX]


def relative_lane(player, target, is_open, xp=np):
    """Integer relative lane target - player; closed tubes wrap into [-7, +8].

    Our fix of the random-tie defect: a lane exactly opposite on a closed tube is always +8.
    Works elementwise on numpy (`xp=np`) or jax (`xp=jnp`) integer arrays.
    """
    d = target - player
    wrapped = (d + 7) % NUM_LANES - 7
    return xp.where(is_open, d, wrapped)


def expert_spinner_index(rel, xp=np):
    """Spinner index that steers toward a target `rel` lanes away (positive spinner lowers the
    lane, so a higher target gets a negative level)."""
    magnitude = xp.abs(rel)
    toward_higher = xp.where(magnitude >= 2, SPINNER_INDEX_OF_LEVEL[-EXPERT_FAR_LEVEL],
                             SPINNER_INDEX_OF_LEVEL[-EXPERT_NEAR_LEVEL])
    toward_lower = xp.where(magnitude >= 2, SPINNER_INDEX_OF_LEVEL[EXPERT_FAR_LEVEL],
                            SPINNER_INDEX_OF_LEVEL[EXPERT_NEAR_LEVEL])
    return xp.where(rel > 0, toward_higher, xp.where(rel < 0, toward_lower, 0))


def expert_joint_action(target, player, is_open, fire, zap, xp=np):
    """The joint action that executes the expert's advice exactly (stored == executed).

    `target` is the expert's absolute lane (-1: no target, stay), `player` the player's lane.
    """
    target = xp.asarray(target)
    rel = relative_lane(player % NUM_LANES, target % NUM_LANES, is_open, xp=xp)
    rel = xp.where(target < 0, 0, rel)
    return joint_index(fire, zap, expert_spinner_index(rel, xp=xp))


def action_applied(gamestate, game_mode, state):
    """Whether the game executed the commanded action on this frame: a real game (not attract
    mode) in play or zoom, with the player alive (the game state stays "playing" through the
    death explosion, and the controls do nothing then). Only such frames start stored
    transitions (elementwise over rows of `state`, the state vectors)."""
    real_game = (game_mode & GAME_MODE_REAL_GAME_BIT) != 0
    alive = state[..., LAYOUT["alive"].start] > 0.5
    return real_game & alive & ((gamestate == GAMESTATE_PLAYING) | (gamestate == GAMESTATE_ZOOM))
