"""The rule-based expert (reference/expert_and_rewards.md §2) on the RAM-derived view.

Deterministic, as docs/extraction.md fixes it: the integer relative lane breaks the
exactly-opposite tie to +8, fire is `$0003 % 20 != 0`, and fractional relative lanes are exact
rationals num/den (den = the flip's step count), so comparisons match a Lua double-precision
implementation exactly.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from tempest_jax import features as F

TOP_RAIL_AVOID_DEPTH = 0x60
FUSEBALL_NEAR_DEPTH = 0x50
TOP_OF_TUBE = 0x10
SUPERZAP_COOLDOWN_FRAMES = 60
FIRE_SKIP_PERIOD = 20        # no fire on ticks where $0003 % 20 == 0 (about 95% fire)
# |num / den| compared across dens 1..16 on one integer scale: lcm(1..16).
RATIONAL_SCALE = 720_720
# Hunted enemy types, most wanted first (fuseball, flipper, tanker, spiker), and the rank of
# each 3-bit type code in that order (pulsars and unused codes are not hunted).
HUNT_ORDER = (4, 0, 2, 3)
HUNT_RANK = tuple(HUNT_ORDER.index(t) if t in HUNT_ORDER else len(HUNT_ORDER) for t in range(8))


@struct.dataclass
class ExpertView:
    """What the expert reads, decoded from RAM (per game)."""

    gamestate: jnp.ndarray
    timectr: jnp.ndarray
    player_lane: jnp.ndarray
    is_open: jnp.ndarray
    enemy_active: jnp.ndarray      # [7] bool
    enemy_type: jnp.ndarray        # [7]
    enemy_depth: jnp.ndarray       # [7]
    enemy_lane: jnp.ndarray        # [7] abs lane
    enemy_away: jnp.ndarray        # [7] bool, moving away
    enemy_rel_num: jnp.ndarray     # [7] rel lane (fractional where it applies) = num / den
    enemy_rel_den: jnp.ndarray     # [7]
    shot_active: jnp.ndarray       # [4] bool
    shot_depth: jnp.ndarray        # [4] 8.8 depth in 1/256 units: position·256 + fraction
    shot_lane: jnp.ndarray         # [4]
    spikes: jnp.ndarray            # [16] raw tip depth
    pending: jnp.ndarray
    zap_uses: jnp.ndarray


def rel(view: ExpertView, lanes):
    return F.relative_lane(view.player_lane, lanes, view.is_open, xp=jnp)


def _first_min(key, valid):
    """(any valid, index of the first valid minimum of key)."""
    big = jnp.iinfo(jnp.int32).max
    k = jnp.where(valid, key, big)
    return jnp.any(valid), jnp.argmin(k)


def _step_target(view, toward):
    """(player lane + step, ok): on open levels the other side when that lane is off the
    board (0..15), and not ok when both are; closed levels wrap."""
    p = view.player_lane
    first, second = p + toward, p - toward
    on_board = (first >= 0) & (first <= 15)
    other_ok = (second >= 0) & (second <= 15)
    open_target = jnp.where(on_board, first, jnp.where(other_ok, second, p))
    ok = ~view.is_open | on_board | other_ok
    return jnp.where(view.is_open, open_target, first & 15), ok


def expert(view: ExpertView, cooldown):
    """(target lane, fire, zap, new cooldown)."""
    p = view.player_lane
    gs = view.gamestate
    fire = (view.timectr % FIRE_SKIP_PERIOD) != 0
    lanes = jnp.arange(F.NUM_LANES)

    # 2.1 Zoom: the nearest spike-free lane, else the lowest spike (nearest on ties); the
    # player's own lane is kept on ties.
    height = jnp.where(view.spikes == 0, 0, 255 - view.spikes)
    dist = jnp.abs(rel(view, lanes))
    key = jnp.where(height != 0, 1 << 16, 0) + height * 32 + dist
    own_key = jnp.sum(jnp.where(lanes == p, key, 0))
    zoom_target = jnp.where(own_key <= jnp.min(key), p, jnp.argmin(key))

    # 2.2 Top-threat flee: flippers (pulsars once nothing is pending) and enemy shots near
    # the rim within one lane; enemies before shots, first found on ties. A shot's limit
    # applies to its full 8.8 depth (docs/extraction.md).
    e_cand = (view.enemy_active & (view.enemy_depth > 0)
              & (view.enemy_depth <= TOP_RAIL_AVOID_DEPTH)
              & ((view.enemy_type == 0) | ((view.enemy_type == 1) & (view.pending == 0))))
    s_cand = view.shot_active & (view.shot_depth <= TOP_RAIL_AVOID_DEPTH * 256)
    s_rel = rel(view, view.shot_lane)
    num = jnp.concatenate([view.enemy_rel_num, s_rel])
    den = jnp.concatenate([view.enemy_rel_den, jnp.ones_like(s_rel)])
    cand = jnp.concatenate([e_cand, s_cand]) & (jnp.abs(num) <= den)
    scaled = jnp.abs(num) * (RATIONAL_SCALE // den)
    threat, t_idx = _first_min(scaled, cand)
    flee_step = jnp.where(num[t_idx] >= 0, -1, 1)
    flee_target, _ = _step_target(view, flee_step)   # stays at P when both fail

    # 2.4 Fuseball dodge.
    e_rel = rel(view, view.enemy_lane)
    f_cand = (view.enemy_active & (view.enemy_type == 4) & (view.enemy_depth > 0)
              & (view.enemy_depth <= FUSEBALL_NEAR_DEPTH) & ~view.enemy_away
              & (jnp.abs(e_rel) <= 1))
    fuse, f_idx = _first_min(jnp.abs(e_rel), f_cand)
    dodge_step = jnp.where(e_rel[f_idx] <= 0, 1, -1)
    dodge_target, dodge_ok = _step_target(view, dodge_step)
    dodge = fuse & dodge_ok

    # 2.5 Hunt: fuseball, flipper, tanker, spiker (the first type with an active slot wins);
    # within it the nearest |rel|, then nearest the rim, then the lowest slot.
    rank = jnp.asarray(HUNT_RANK)[view.enemy_type]
    found, idx = _first_min(rank * 4096 + jnp.abs(e_rel) * 256 + view.enemy_depth,
                            view.enemy_active & (rank < len(HUNT_ORDER)))
    hunt_target = jnp.where(found, view.enemy_lane[idx], p)

    # 2.6 Superzapper advice (only on frames that reach the hunt).
    hunting = (gs == F.GAMESTATE_PLAYING) & ~threat & ~dodge
    cd = jnp.where(hunting & (cooldown > 0), cooldown - 1, cooldown)
    n_active = jnp.sum(view.enemy_active)
    n_top = jnp.sum(view.enemy_active & (view.enemy_depth <= TOP_OF_TUBE))
    uses = view.zap_uses
    wanted = jnp.where(uses == 0, (n_top >= 3) | (view.pending == 0),
                       (uses == 1) & ((n_top >= 1) | (view.pending == 0)))
    zap = hunting & (uses < 2) & (n_active > 0) & (cd == 0) & wanted
    cd = jnp.where(zap, SUPERZAP_COOLDOWN_FRAMES, cd)

    target = jnp.select(
        [gs == F.GAMESTATE_ZOOM, threat, gs != F.GAMESTATE_PLAYING, dodge],
        [zoom_target, flee_target, p, dodge_target], hunt_target)
    return target.astype(jnp.int32), fire, zap, cd
