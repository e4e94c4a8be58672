"""Game state → the Tempest RAM image (uint8[0x400]) at the real game's addresses.

Every address that the extraction (and the Lua script on MAME) reads is written with the real
game's meaning, so one extraction serves both. The image is gathered into place from one
concatenation of the written values (zeros elsewhere): no scatters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tempest_jax.sim import game as G
from tempest_jax.sim import ram_map as M
from tempest_jax.sim import shapes
from tempest_jax.sim import waves as W


def _assemble(writes: dict) -> jax.Array:
    """uint8[RAM_SIZE] from {address: int array}; addresses not written are 0. A tuple of
    addresses writes the rows of a stacked [rows, n] value there, row r at address r.

    The image is one gather from a concatenation of the values. XLA compiles each computed
    operand of a long concatenation as a kernel of its own, so values computed alike come
    stacked (up to 8 rows: a stack XLA still fuses into one kernel)."""
    sources, index, size = [], np.full(M.RAM_SIZE, -1), 0
    for key, value in writes.items():
        addresses = key if isinstance(key, tuple) else (key,)
        rows = jnp.asarray(value).astype(jnp.int32).reshape(len(addresses), -1)
        n = rows.shape[1]
        for i, addr in enumerate(addresses):
            if addr + n > M.RAM_SIZE or (index[addr:addr + n] >= 0).any():
                raise ValueError(f"RAM write at {addr:#06x} overlaps another or the end")
            index[addr:addr + n] = size + i * n + np.arange(n)
        sources.append(rows.reshape(-1))
        size += rows.size
    index[index < 0] = size                        # a zero after the values
    image = jnp.concatenate([*sources, jnp.zeros(1, jnp.int32)])[index]
    return (image & 0xFF).astype(jnp.uint8)


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
    counts = jnp.sum(active[:, None] & (e.kind[:, None] == jnp.arange(W.NUM_TYPES)), axis=0)
    maxs = jnp.stack([p["max_f"], p["max_p"], p["max_t"], p["max_s"], p["max_u"]])
    free = G.NUM_SLOTS - jnp.sum(active)
    openings = jnp.minimum(jnp.maximum(maxs - counts, 0), free)
    speeds = jnp.stack([p["speed_flipper"], jnp.asarray(W.PULSAR_SPEED, jnp.int32),
                        p["speed_tanker"], p["speed_spiker"], p["speed_fuseball"]]) & 0xFFFF
    shape = jnp.asarray(shapes.SHAPE_OF_SLOT)[s.level % 16]
    writes = {
        M.GAMESTATE: s.gamestate, M.NEXT_GAMESTATE: s.next_state, M.TIMECTR: s.timectr,
        M.COUNTDOWN_TIMER: s.countdown, M.GAME_MODE: s.game_mode,
        M.CREDITS: s.credits,
        (M.P1_SCORE_L, M.P1_SCORE_M, M.P1_SCORE_H):
            bcd_pair(s.score // jnp.asarray([1, 100, 10_000]) % 100),
        M.P1_LEVEL: s.level, M.P1_LIVES: s.lives,
        M.POSITION: s.position,                    # $0050 stays 0: the game consumed it
        M.CURLEVEL: s.level,
        (M.PULSAR_FLIPRATE, M.FLIPPER_MOVE, M.FUSE_MOVE_PRB):
            jnp.stack([p["pulsar_delay"], p["pattern"], p["fuse_threshold"]]),
        (M.ZAP_FIRE_DEBOUNCE, M.NUM_ENEMIES_IN_TUBE, M.NUM_ENEMIES_ON_TOP, M.OPEN_LEVEL,
         M.CURTUBE, M.PLAYER_SHOT_COUNT, M.PLAYER_ALONG, M.ENEMIES_PENDING): jnp.stack([
             jnp.where(s.fire_button, 0x10, 0) | jnp.where(s.zap_button, 0x08, 0),
             s.in_tube, s.on_top, jnp.where(s.is_open, 0xFF, 0), shape,
             jnp.sum(s.shot_depth > 0), s.player_along >> 8, G.pending_count(s)]),
        M.START_BONUS_ENTRY: s.start_bonus,
        (M.ZAP_RUNNING, M.LAST_COMPLETED_LEVEL, M.MAX_START_INDEX):
            jnp.stack([s.zap_timer, s.last_level, s.max_start]),
        (M.AVL_FLIPPERS, M.N_FLIPPERS, M.SPEED_LSB, M.SPEED_MSB):
            jnp.stack([openings, counts, speeds & 0xFF, speeds >> 8]),
        M.PULSE_BEAT: s.pulse_inc, M.PULSING: s.pulse_clock,
        M.PLAYER_SEG: s.player_lane, M.PLAYER_STATE: s.player_state,
        M.PENDING_SEG: s.pending_seg, M.PENDING_VID: s.pending_vid,
        (M.ENEMY_TYPE_INFO, M.ACTIVE_ENEMY_INFO, M.ENEMY_SEG, M.MORE_ENEMY_INFO, M.ENEMY_ALONG,
         M.ENEMY_ALONG_LSB): jnp.stack(enemy_bytes(e)),
        M.PLAYER_SHOT_SEGMENTS: s.shot_lane, M.ENEMY_SHOT_SEGMENTS: s.eshot_lane,
        M.PLAYER_SHOT_POSITIONS: s.shot_depth,
        (M.ENEMY_SHOT_POSITIONS, M.ENM_SHOT_LSB): jnp.stack([s.eshot_pos >> 8,
                                                             s.eshot_pos & 0xFF]),
        M.ZAP_USES: s.zap_uses, M.LANE_SPIKE_HEIGHT: s.spikes,
        (M.TUBE_X, M.TUBE_Y): jnp.stack([jnp.asarray(shapes.TUBE_X)[shape],
                                         jnp.asarray(shapes.TUBE_Y)[shape]]),
        M.TUBE_ANGLE: s.tube_angle,
    }
    return _assemble(writes)
