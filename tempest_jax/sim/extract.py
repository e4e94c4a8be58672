"""RAM image → frame: the 195 state values, header fields, expert advice and rewards.

A pure function of (carried state, RAM image), per game, following
`reference/state_vector.md` and `reference/expert_and_rewards.md` with the deterministic fixes
of `docs/extraction.md`. The Lua script runs the same extraction on MAME's RAM; tests compare the
two byte for byte, so every float is one correctly rounded float32 division of two exact
integers (identical to Lua's double division rounded to float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tempest_jax import features as F
from tempest_jax.sim import expert as X
from tempest_jax.sim import ram_map as M

NUM_SLOTS = F.NUM_ENEMY_SLOTS
DEATH_PENALTY = -1000
ZAP_PENALTY = 1000
SAFE_LANE_REWARD = 2
DANGER_DEPTH = 0x80
SCORE_WRAP = 1_000_000
# Lane offsets scanned by the subjective reward, and their weights ×4 (1, 0.5, 0.25).
SUBJ_OFFSETS = (0, 1, -1, 2, -2)
SUBJ_WEIGHTS_X4 = (4, 2, 2, 1, 1)


@struct.dataclass
class ExtractCarry:
    """State kept between processed frames (docs/extraction.md, 'Carried state')."""

    first: jax.Array
    prev_score: jax.Array
    prev_level: jax.Array
    prev_alive: jax.Array
    prev_real_game: jax.Array
    prev_gamestate: jax.Array
    prev_player_lane: jax.Array
    prev_zap_uses: jax.Array
    enemy_start_count: jax.Array
    zap_cooldown: jax.Array
    prev_enemy_lane: jax.Array    # [7], INVALID when the slot was empty
    prev_enemy_depth: jax.Array   # [7]
    prev_enemy_type: jax.Array    # [7]
    frame_counter: jax.Array      # processed frames, mod 65536


def initial_carry() -> ExtractCarry:
    z = jnp.asarray(0, jnp.int32)
    return ExtractCarry(
        first=jnp.asarray(True), prev_score=z, prev_level=z, prev_alive=jnp.asarray(True),
        prev_real_game=jnp.asarray(False), prev_gamestate=z, prev_player_lane=z,
        prev_zap_uses=z, enemy_start_count=z, zap_cooldown=z,
        prev_enemy_lane=jnp.full(NUM_SLOTS, F.INVALID_LANE, jnp.int32),
        prev_enemy_depth=jnp.zeros(NUM_SLOTS, jnp.int32),
        prev_enemy_type=jnp.zeros(NUM_SLOTS, jnp.int32), frame_counter=z)


@struct.dataclass
class Frame:
    """One frame as a MAME client sends it; names match the protocol header fields."""

    subj_reward: jax.Array
    obj_reward: jax.Array
    gamestate: jax.Array
    game_mode: jax.Array
    done: jax.Array
    frame: jax.Array
    score: jax.Array
    save_signal: jax.Array
    cmd_fire: jax.Array
    cmd_zap: jax.Array
    cmd_spinner: jax.Array
    expert_target: jax.Array
    player_seg: jax.Array
    is_open: jax.Array
    expert_fire: jax.Array
    expert_zap: jax.Array
    level: jax.Array
    state: jax.Array              # float32[195]


# ---------------------------------------------------------------------------------------------
# Normalisers return (numerator, denominator) integer pairs; the state vector is ONE division
# of the concatenated pairs at the end, correctly rounded (see `exact_div`).

def exact_div(num, den):
    """float32(num / den), correctly rounded, for exact integers num, den (|x| < 2^24).

    XLA rewrites a division by a broadcast value into a multiplication by its reciprocal,
    which is not correctly rounded (about half of v/255 come out one ulp off). The barrier
    hands the division a denominator array of the numerator's own shape, so it stays a true
    IEEE division, equal to a Lua double division rounded to float32."""
    n = jnp.asarray(num).astype(jnp.float32)
    d = jnp.broadcast_to(jnp.asarray(den).astype(jnp.float32), n.shape)
    n, d = jax.lax.optimization_barrier((n, n * 0.0 + d))
    return n / d


def _pair(num, den):
    num = jnp.asarray(num, jnp.int32)
    return num, jnp.broadcast_to(jnp.asarray(den, jnp.int32), num.shape)


def depth(v):
    return _pair(jnp.maximum(v, 0), 255)


def relative_rational(num, den, valid):
    """relative(num/den): clamp to ±15, / 15; -1 where invalid."""
    return _pair(jnp.where(valid, jnp.clip(num, -15 * den, 15 * den), -1),
                 jnp.where(valid, 15 * den, 1))


def signed(v, m):
    return _pair(jnp.clip(v, -m, m), m)


def bcd_score(lo, mid, hi):
    def pair(b):
        return 10 * jnp.minimum(b >> 4, 9) + jnp.minimum(b & 15, 9)

    return pair(hi) * 10_000 + pair(mid) * 100 + pair(lo)


# Blocks that normalise one RAM byte per value: (block, address, rule, low, high, den); the
# value is clip(rule(byte), low, high) / den. All of them are read with one gather.
BYTE_AS_IS, BYTE_LOW_NIBBLE, BYTE_EIGHT_MINUS, BYTE_BIT7_CLEAR, BYTE_NONZERO, BYTE_SPIKE, \
    BYTE_SIGNED = range(7)
BYTE_BLOCKS = (
    ("gamestate", M.GAMESTATE, BYTE_AS_IS, 0, 36, 36),
    ("game_mode", M.GAME_MODE, BYTE_AS_IS, 0, 255, 255),
    ("countdown_timer", M.COUNTDOWN_TIMER, BYTE_AS_IS, 0, 255, 255),
    ("lives", M.P1_LIVES, BYTE_AS_IS, 0, 6, 6),
    ("p1_level", M.P1_LEVEL, BYTE_AS_IS, 0, 98, 98),
    ("player_position", M.PLAYER_SEG, BYTE_AS_IS, 0, 15, 15),
    ("alive", M.PLAYER_STATE, BYTE_BIT7_CLEAR, 0, 1, 1),
    ("player_state", M.PLAYER_STATE, BYTE_LOW_NIBBLE, 0, 15, 15),
    ("player_depth", M.PLAYER_ALONG, BYTE_AS_IS, 0, 255, 255),
    ("zap_uses", M.ZAP_USES, BYTE_AS_IS, 0, 2, 2),
    ("zap_active", M.ZAP_RUNNING, BYTE_AS_IS, 0, 19, 19),
    ("shots_remaining", M.PLAYER_SHOT_COUNT, BYTE_EIGHT_MINUS, 0, 8, 8),
    ("player_shot_depth", M.PLAYER_SHOT_POSITIONS, BYTE_AS_IS, 0, 255, 256),
    ("level_number", M.CURLEVEL, BYTE_AS_IS, 0, 98, 98),
    ("open_level", M.OPEN_LEVEL, BYTE_NONZERO, 0, 1, 1),
    ("level_shape", M.CURLEVEL, BYTE_LOW_NIBBLE, 0, 15, 15),
    ("spike", M.LANE_SPIKE_HEIGHT, BYTE_SPIKE, 0, 255, 255),
    ("tube_angle", M.TUBE_ANGLE, BYTE_AS_IS, 0, 15, 15),
    ("active_count", M.N_FLIPPERS, BYTE_AS_IS, 0, 7, 7),
    ("spawn_available", M.AVL_FLIPPERS, BYTE_AS_IS, 0, 7, 7),
    ("enemies_in_tube", M.NUM_ENEMIES_IN_TUBE, BYTE_AS_IS, 0, 7, 7),
    ("enemies_on_top", M.NUM_ENEMIES_ON_TOP, BYTE_AS_IS, 0, 7, 7),
    ("enemies_pending", M.ENEMIES_PENDING, BYTE_AS_IS, 0, 63, 63),
    ("pulsar_fliprate", M.PULSAR_FLIPRATE, BYTE_AS_IS, 0, 40, 40),
    ("pulse_beat", M.PULSE_BEAT, BYTE_SIGNED, -12, 12, 12),
    ("pulsing", M.PULSING, BYTE_AS_IS, 0, 255, 255),
    ("flipper_move", M.FLIPPER_MOVE, BYTE_AS_IS, 0, 135, 135),
    ("fuse_move_prb", M.FUSE_MOVE_PRB, BYTE_AS_IS, 0, 255, 255),
    ("enemy_depth", M.ENEMY_ALONG, BYTE_AS_IS, 0, 255, 255),
)


def _byte_table():
    """Per value of the byte blocks: (address, rule, low, high, den) as int32 arrays."""
    rows = []
    for name, addr, rule, low, high, den in BYTE_BLOCKS:
        rows += [(addr + i, rule, low, high, den) for i in range(F.LAYOUT[name].size)]
    return tuple(np.asarray(column, np.int32) for column in zip(*rows))


BYTE_ADDR, BYTE_RULE, BYTE_LOW, BYTE_HIGH, BYTE_DEN = _byte_table()


def byte_blocks(r):
    """The byte blocks' values (float32, in BYTE_BLOCKS order) from a RAM image as int32."""
    v = r[BYTE_ADDR]
    v = jnp.where(BYTE_RULE == BYTE_LOW_NIBBLE, v & 15, v)
    v = jnp.where(BYTE_RULE == BYTE_EIGHT_MINUS, 8 - v, v)
    v = jnp.where(BYTE_RULE == BYTE_SIGNED, jnp.where(v > 127, v - 256, v), v)
    v = jnp.where(BYTE_RULE == BYTE_SPIKE, jnp.where(v == 0, 0, 255 - v), v)
    v = jnp.where(BYTE_RULE == BYTE_BIT7_CLEAR, (v & 0x80) == 0,
                  jnp.where(BYTE_RULE == BYTE_NONZERO, v != 0, v))
    return exact_div(jnp.clip(v, BYTE_LOW, BYTE_HIGH), BYTE_DEN)


# The other blocks, in the pieces `extract` computes them in (blocks of a piece alike).
COMPUTED_PIECES = (
    ("enemy_rel_lane", "enemy_top_rel_lane", "pulsar_rel_lane", "toprail_rel_lane"),
    ("player_shot_rel_lane", "enemy_shot_rel_lane"),
    ("enemy_delta_lane", "enemy_delta_depth"),
    ("pulsar_depth", "nearest_threat"),
    ("enemy_info",), ("enemy_speed",), ("enemy_shot_position",),
)
DELTA_LIMITS = np.asarray([[8], [128]], np.int32)    # enemy_delta_lane, enemy_delta_depth


def _state_order():
    """STATE_ORDER[i]: where state value i sits in the concatenated pieces."""
    names = [b[0] for b in BYTE_BLOCKS] + [n for piece in COMPUTED_PIECES for n in piece]
    assert sorted(names) == sorted(f.name for f in F.FIELDS)
    where, start = {}, 0
    for name in names:
        where[name] = start
        start += F.LAYOUT[name].size
    return np.concatenate([np.arange(f.size) + where[f.name] for f in F.FIELDS]).astype(np.int32)


STATE_ORDER = _state_order()


def fractional_rel(rel_int, lane, direction, angle_nibble, angles, is_open):
    """(num, den) of state_vector.md §3.2 for an enemy between lanes, exact.

    rel_frac = rel + p - 1 (dir 1) or rel - p (dir 0), p = clamp(travelled / total, 0, 1);
    with den = total (1 when total = 0, p = 0) the numerator is an integer."""
    a_s = jnp.sum(jnp.where(lane[..., None] == jnp.arange(16), angles, 0), axis=-1)
    a_prev = jnp.sum(jnp.where(((lane - 1) & 15)[..., None] == jnp.arange(16), angles, 0),
                     axis=-1)
    inc_angle = (a_prev + 8) & 15
    start = jnp.where(direction, inc_angle, a_s)
    target = jnp.where(direction, a_s, inc_angle)
    travelled = jnp.where(direction, start - angle_nibble, angle_nibble - start) & 15
    total = jnp.where(direction, start - target, target - start) & 15
    den = jnp.where(total == 0, 1, total)
    t = jnp.where(total == 0, 0, jnp.minimum(travelled, total))
    num = jnp.where(direction, rel_int * den + t - den, rel_int * den - t)
    num = jnp.where(~is_open & (num > 8 * den), num - 16 * den, num)
    num = jnp.where(~is_open & (num < -8 * den), num + 16 * den, num)
    return num, den


# ---------------------------------------------------------------------------------------------

def extract(carry: ExtractCarry, ram, cmd_fire=0, cmd_zap=0, cmd_spinner=0):
    """(new carry, Frame) from one game's RAM image (uint8[0x400]). `cmd_*` are the inputs of
    the previous reply, echoed in the header as a MAME client does."""
    r = ram.astype(jnp.int32)

    def at(addr, n=None):
        return r[addr] if n is None else r[addr:addr + n]

    gamestate, game_mode, level = at(M.GAMESTATE), at(M.GAME_MODE), at(M.CURLEVEL)
    real_game = (game_mode & F.GAME_MODE_REAL_GAME_BIT) != 0
    player_raw = at(M.PLAYER_SEG)
    p = player_raw & 15
    player_state = at(M.PLAYER_STATE)
    alive = (player_state & 0x80) == 0
    is_open = at(M.OPEN_LEVEL) != 0
    score = bcd_score(at(M.P1_SCORE_L), at(M.P1_SCORE_M), at(M.P1_SCORE_H))
    zap_uses, pending = at(M.ZAP_USES), at(M.ENEMIES_PENDING)
    spikes, angles = at(M.LANE_SPIKE_HEIGHT, 16), at(M.TUBE_ANGLE, 16)

    def rel(lanes):
        return F.relative_lane(p, lanes, is_open, xp=jnp)

    # Player shots.
    shot_pos, shot_lane = at(M.PLAYER_SHOT_POSITIONS, 8), at(M.PLAYER_SHOT_SEGMENTS, 8) & 15
    shot_on = shot_pos > 0
    # Enemies.
    type_info, active_info = at(M.ENEMY_TYPE_INFO, NUM_SLOTS), at(M.ACTIVE_ENEMY_INFO, NUM_SLOTS)
    e_depth = at(M.ENEMY_ALONG, NUM_SLOTS)
    e_on = e_depth > 0
    e_lane = at(M.ENEMY_SEG, NUM_SLOTS) & 15
    e_type = jnp.where(e_on, type_info & 7, 0)
    e_dir = (type_info >> 6) & 1
    e_between = (type_info >> 7) & 1
    e_away = (active_info >> 7) & 1
    e_shoot = (active_info >> 6) & 1
    e_split = active_info & 3
    e_rel_int = rel(e_lane)
    frac = e_on & (e_between == 1) & (e_type != 4)
    f_num, f_den = fractional_rel(e_rel_int, e_lane, e_dir == 1,
                                  at(M.MORE_ENEMY_INFO, NUM_SLOTS) & 15, angles, is_open)
    e_num = jnp.where(frac, f_num, e_rel_int)
    e_den = jnp.where(frac, f_den, 1)
    # Enemy shots.
    es_pos = at(M.ENEMY_SHOT_POSITIONS, 4)
    es_on = es_pos > 0
    # The full 8.8 depth in 1/256 units, which the depth limits compare (docs/extraction.md).
    es_depth = es_pos * 256 + at(M.ENM_SHOT_LSB, 4)
    es_lane = at(M.ENEMY_SHOT_SEGMENTS, 4) & 15

    # Nearest threat per lane (spikes, enemies, enemy shots).
    lanes = jnp.arange(16)
    e_in = e_on[:, None] & (e_lane[:, None] == lanes)
    s_in = es_on[:, None] & (es_lane[:, None] == lanes)
    threat = jnp.minimum(jnp.min(jnp.where(e_in, e_depth[:, None], F.NO_THREAT), axis=0),
                         jnp.min(jnp.where(s_in, es_pos[:, None], F.NO_THREAT), axis=0))
    threat = jnp.where(spikes > 0, jnp.minimum(threat, spikes), threat)

    def threat_at(lane, exists):
        return jnp.where(exists, jnp.sum(jnp.where(lanes == (lane & 15), threat, 0)),
                         F.NO_THREAT)

    nearest = jnp.stack([threat_at(p, True), threat_at(p - 1, ~is_open | (p > 0)),
                         threat_at(p + 1, ~is_open | (p < 15))])

    # Velocity features.
    e_lane_or_invalid = jnp.where(e_on, e_lane, F.INVALID_LANE)
    tracked = ((gamestate == F.GAMESTATE_PLAYING) & e_on & (carry.prev_enemy_depth > 0)
               & (carry.prev_enemy_lane != F.INVALID_LANE) & (e_type == carry.prev_enemy_type))
    d_lane = e_lane - carry.prev_enemy_lane
    d_lane = jnp.where(~is_open & (d_lane > 8), d_lane - 16, d_lane)
    d_lane = jnp.where(~is_open & (d_lane < -8), d_lane + 16, d_lane)
    d_lane = jnp.where(tracked, d_lane, 0)
    d_depth = jnp.where(tracked, e_depth - carry.prev_enemy_depth, 0)

    top = e_on & (e_depth == 0x10)
    pulsar = e_on & (e_type == 1)
    toprail = e_on & (e_type <= 1) & (e_depth > 0) & (e_depth <= 0x10)
    # [type, direction, between, moving_away, can_shoot, split] per slot, 0 when empty.
    info_num = jnp.stack([e_type, e_dir, e_between, e_away, e_shoot, e_split], axis=-1)
    info_num = jnp.where(e_on[:, None], info_num, 0).reshape(-1)
    info = (info_num, jnp.tile(jnp.asarray([7, 1, 1, 1, 1, 3], jnp.int32), NUM_SLOTS))
    speeds = at(M.SPEED_MSB, 5) * 256 + at(M.SPEED_LSB, 5)
    speeds = jnp.where(speeds > 32767, speeds - 65536, speeds)

    # The state vector: the byte blocks in one piece, the other blocks in a few pieces of
    # blocks computed alike (COMPUTED_PIECES order), put in layout order by STATE_ORDER.
    pieces = [
        relative_rational(e_num, e_den, jnp.stack([e_on, top, pulsar, toprail])),
        relative_rational(rel(jnp.concatenate([shot_lane, es_lane])), 1,
                          jnp.concatenate([shot_on, es_on])),
        signed(jnp.stack([d_lane, d_depth]), DELTA_LIMITS),
        depth(jnp.concatenate([jnp.where(pulsar, e_depth, 0), nearest])),
        info,
        signed(speeds, 2560),
        _pair(jnp.where(es_on, es_depth, 0), 65536),
    ]
    state = jnp.concatenate([byte_blocks(r)] + [exact_div(*piece).reshape(-1)
                                                for piece in pieces])[STATE_ORDER]

    # Expert.
    view = X.ExpertView(
        gamestate=gamestate, timectr=at(M.TIMECTR), player_lane=p, is_open=is_open,
        enemy_active=e_on, enemy_type=e_type, enemy_depth=e_depth, enemy_lane=e_lane,
        enemy_away=e_away == 1, enemy_rel_num=jnp.where(toprail, e_num, e_rel_int),
        enemy_rel_den=jnp.where(toprail, e_den, 1), shot_active=es_on, shot_depth=es_depth,
        shot_lane=es_lane, spikes=spikes, pending=pending, zap_uses=zap_uses)
    target, fire, zap, cooldown = X.expert(view, carry.zap_cooldown)

    # Rewards and done.
    capture = carry.first | (level != carry.prev_level)
    start_count = jnp.where(capture, pending, carry.enemy_start_count)
    prev_zap_uses = jnp.where(capture, zap_uses, carry.prev_zap_uses)
    done = carry.prev_alive & ~alive & real_game
    delta = score - carry.prev_score
    delta = jnp.where(delta < -SCORE_WRAP // 2, delta + SCORE_WRAP, delta)
    score_term = jnp.where((delta > 0) & real_game & carry.prev_real_game & ~carry.first
                           & (carry.prev_gamestate != F.GAMESTATE_LEVEL_SELECT), delta, 0)
    zapped = (zap_uses > prev_zap_uses) & (start_count > 0)
    zap_penalty = jnp.where(zapped, exact_div(ZAP_PENALTY * pending,
                                              jnp.maximum(start_count, 1)), 0.0)
    obj = jnp.where(done, jnp.float32(DEATH_PENALTY + score_term),
                    score_term.astype(jnp.float32) - zap_penalty)

    threatened = jnp.any(e_in & (e_depth[:, None] <= DANGER_DEPTH), axis=0) | jnp.any(
        s_in & (es_depth[:, None] <= DANGER_DEPTH * 256), axis=0)
    # subj = sum(+-2 * weight * scale) = sum(+-w4) * scale_x2 / 4 (w4 = 4 * weight).
    subj_units = jnp.asarray(0, jnp.int32)
    for offset, w4 in zip(SUBJ_OFFSETS, SUBJ_WEIGHTS_X4):
        lane = p + offset
        exists = ~is_open | ((lane >= 0) & (lane <= 15))
        bad = jnp.sum(jnp.where(lanes == (lane & 15), threatened, False))
        subj_units += jnp.where(exists, jnp.where(bad, -w4, w4), 0)
    scale_x2 = jnp.where(p != carry.prev_player_lane, 2, 1)
    subj_on = real_game & ((gamestate == F.GAMESTATE_PLAYING)
                           | (gamestate == F.GAMESTATE_ZOOM)) & ~done
    subj = jnp.where(subj_on, exact_div(SAFE_LANE_REWARD * subj_units * scale_x2, 8), 0.0)

    frame_no = (carry.frame_counter + 1) & 0xFFFF
    new_carry = ExtractCarry(
        first=jnp.asarray(False), prev_score=score, prev_level=level, prev_alive=alive,
        prev_real_game=real_game, prev_gamestate=gamestate, prev_player_lane=p,
        prev_zap_uses=zap_uses, enemy_start_count=start_count, zap_cooldown=cooldown,
        prev_enemy_lane=e_lane_or_invalid, prev_enemy_depth=e_depth, prev_enemy_type=e_type,
        frame_counter=frame_no)
    i32 = jnp.int32
    frame = Frame(
        subj_reward=subj.astype(jnp.float32), obj_reward=obj.astype(jnp.float32),
        gamestate=gamestate, game_mode=game_mode, done=done.astype(i32), frame=frame_no,
        score=score, save_signal=jnp.asarray(0, i32), cmd_fire=jnp.asarray(cmd_fire, i32),
        cmd_zap=jnp.asarray(cmd_zap, i32), cmd_spinner=jnp.asarray(cmd_spinner, i32),
        expert_target=target, player_seg=p, is_open=is_open.astype(i32),
        expert_fire=fire.astype(i32), expert_zap=zap.astype(i32), level=level, state=state)
    return new_carry, frame
