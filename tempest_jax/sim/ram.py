"""Game state → the Tempest RAM image (uint8[0x400]) at the real game's addresses.

Every address that the extraction (and the Lua script on MAME) reads is written with the real
game's meaning, so one extraction serves both. The image is assembled as one concatenation of
address-ordered segments (zeros in the gaps): a single fused copy per game, no scatters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tempest_jax.sim import game as G
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import shapes
from tempest_jax.sim import waves as W

CREDITS_KEPT = 2     # the Lua script keeps two credits in the machine (game_control.md)


def _assemble(writes: dict[int, jax.Array]) -> jax.Array:
    """uint8[RAM_SIZE] from {address: int array}; addresses not written are 0."""
    pieces, cursor = [], 0
    for addr in sorted(writes):
        values = jnp.atleast_1d(writes[addr]).astype(jnp.int32)
        if addr < cursor:
            raise ValueError(f"RAM write at {addr:#06x} overlaps the previous segment")
        if addr > cursor:
            pieces.append(jnp.zeros(addr - cursor, jnp.int32))
        pieces.append(values)
        cursor = addr + values.shape[0]
    if cursor < M.RAM_SIZE:
        pieces.append(jnp.zeros(M.RAM_SIZE - cursor, jnp.int32))
    return (jnp.concatenate(pieces) & 0xFF).astype(jnp.uint8)


def bcd_pair(v):
    return ((v // 10) << 4) | (v % 10)


def enemy_bytes(e: G.Enemies):
    """(type_info, active_info, seg, more_info, along, along_lsb) bytes of the 7 slots."""
    active = e.along > 0
    fuse = e.kind == W.FUSEBALL
    # Rotation bit 0x40: flippers/pulsars set it toward the higher lane; fuseballs the
    # opposite (clear = moving to the higher lane).
    rot = jnp.where(fuse, ~e.higher & e.flipping, e.higher)
    type_info = e.kind | jnp.where(rot, 0x40, 0) | jnp.where(e.flipping, 0x80, 0)
    active_info = e.cargo | jnp.where(e.can_fire, 0x40, 0) | jnp.where(e.down, 0x80, 0)
    fuse_step = jnp.where(e.higher, e.step, 8 - e.step)
    more_info = jnp.where(
        fuse, jnp.where(e.flipping, 0x80 | fuse_step, 0x20),
        jnp.where(e.flipping, 0x80 | G.flip_angle(e), (e.lane + 1) & 15))

    def live(v):
        return jnp.where(active, v, 0)

    return (live(type_info), live(active_info), live(e.lane), live(more_info), e.along >> 8,
            live(e.along & 0xFF))


def ram(s: G.GameState) -> jax.Array:
    """The RAM image of one game (vmap for a batch)."""
    p = G.wave_params(s.level)
    e = s.enemies
    active = e.along > 0
    counts = jnp.stack([jnp.sum(active & (e.kind == t)) for t in range(W.NUM_TYPES)])
    maxs = jnp.stack([p["max_f"], p["max_p"], p["max_t"], p["max_s"], p["max_u"]])
    free = G.NUM_SLOTS - jnp.sum(active)
    openings = jnp.minimum(jnp.maximum(maxs - counts, 0), free)
    speeds = jnp.stack([p["speed_flipper"], jnp.asarray(W.PULSAR_SPEED, jnp.int32),
                        p["speed_tanker"], p["speed_spiker"], p["speed_fuseball"]]) & 0xFFFF
    type_info, active_info, seg, more_info, along, along_lsb = enemy_bytes(e)
    shape = jnp.asarray(shapes.SHAPE_OF_SLOT)[s.level % 16]
    score = s.score
    on_top = jnp.sum(active & e.chaser)
    writes = {
        M.GAMESTATE: s.gamestate, M.NEXT_GAMESTATE: s.next_state, M.TIMECTR: s.timectr,
        M.COUNTDOWN_TIMER: s.countdown, M.GAME_MODE: s.game_mode,
        M.CREDITS: jnp.asarray(CREDITS_KEPT),
        M.P1_SCORE_L: bcd_pair(score % 100), M.P1_SCORE_M: bcd_pair(score // 100 % 100),
        M.P1_SCORE_H: bcd_pair(score // 10_000 % 100),
        M.P1_LEVEL: s.level, M.P1_LIVES: s.lives,
        M.ZAP_FIRE_DEBOUNCE: (jnp.where(s.fire_button, 0x10, 0)
                              | jnp.where(s.zap_button, 0x08, 0)),
        M.POSITION: s.position,                    # $0050 stays 0: the game consumed it
        M.CURLEVEL: s.level, M.PULSAR_FLIPRATE: p["pulsar_delay"],
        M.NUM_ENEMIES_IN_TUBE: jnp.sum(active) - on_top, M.NUM_ENEMIES_ON_TOP: on_top,
        M.OPEN_LEVEL: jnp.where(s.is_open, 0xFF, 0), M.CURTUBE: shape,
        M.ZAP_RUNNING: s.zap_timer, M.PLAYER_SHOT_COUNT: jnp.sum(s.shot_depth > 0),
        M.AVL_FLIPPERS: openings, M.N_FLIPPERS: counts,
        M.PULSE_BEAT: s.pulse_inc, M.PULSING: s.pulse_clock,
        M.FLIPPER_MOVE: p["pattern"], M.FUSE_MOVE_PRB: p["fuse_threshold"],
        M.SPEED_LSB: speeds & 0xFF, M.SPEED_MSB: speeds >> 8,
        M.PLAYER_SEG: s.player_lane, M.PLAYER_STATE: s.player_state,
        M.PLAYER_ALONG: s.player_along >> 8,
        M.PENDING_SEG: s.pending_seg, M.PENDING_VID: s.pending_vid,
        M.ENEMY_TYPE_INFO: type_info, M.ACTIVE_ENEMY_INFO: active_info,
        M.ENEMY_ALONG_LSB: along_lsb,
        M.PLAYER_SHOT_SEGMENTS: s.shot_lane, M.ENEMY_SHOT_SEGMENTS: s.eshot_lane,
        M.ENEMY_SEG: seg, M.MORE_ENEMY_INFO: more_info,
        M.PLAYER_SHOT_POSITIONS: s.shot_depth, M.ENEMY_SHOT_POSITIONS: s.eshot_pos >> 8,
        M.ENEMY_ALONG: along, M.ENM_SHOT_LSB: s.eshot_pos & 0xFF,
        M.ZAP_USES: s.zap_uses, M.ENEMIES_PENDING: G.pending_count(s),
        M.LANE_SPIKE_HEIGHT: s.spikes,
        M.TUBE_X: jnp.asarray(shapes.TUBE_X)[shape], M.TUBE_Y: jnp.asarray(shapes.TUBE_Y)[shape],
        M.TUBE_ANGLE: s.tube_angle,
    }
    return _assemble(writes)
