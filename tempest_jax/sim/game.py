"""Game state and one game tick of the simulated Tempest.

Everything here works on ONE game (scalars and small fixed arrays); `tempest_jax.sim` vmaps it
over thousands of games. The rules follow `reference/game_rules_world.md` and
`reference/game_rules_enemies.md`; the simplifications are listed in `docs/simulator.md`.

Units: depths of enemies, enemy shots and the player are kept ×256 (integer part = the RAM depth
byte, low 8 bits = the game's fraction byte), so per-level speeds (1/256 units per tick) apply
exactly. Booleans are stored as bool arrays; everything else is int32.

Randomness: each game carries a 32-bit seed; the draws of a tick are a cheap counter-based hash
of (seed, tick counter, draw index), so a game is reproducible from its seed and the hash costs a
few integer ops per draw (threefry for ~40 draws per game per tick would dominate the step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tempest_jax.sim import shapes
from tempest_jax.sim import waves as W

NUM_SLOTS = 7
NUM_SHOTS = 8
NUM_ENEMY_SHOTS = 4
NUM_LANES = 16
NUM_PENDING = 64

# Game states ($0000).
GS_NEW_GAME = 0x00
GS_LEVEL_STARTUP = 0x02
GS_PLAYING = 0x04
GS_DEATH = 0x06
GS_GAME_OVER = 0x08
GS_DELAY = 0x0A
GS_ZOOM_OFF_END = 0x0E
GS_HIGH_SCORE_CHECK = 0x10
GS_ENTER_INITIALS = 0x12
GS_ATTRACT = 0x14                # post-game / attract screen: clears the game flags
GS_LEVEL_SELECT = 0x16
GS_ZOOM_ONTO_NEW = 0x18
GS_LOGO = 0x1A                   # attract logo, then a demo game
GS_DELAY_THEN_PLAY = 0x1E
GS_ZOOM = 0x20
GS_HIGH_SCORE_EFFECT = 0x24
GAME_MODE_REAL = 0xC0            # bit 7: real game, bit 6: game in progress

# The cabinet around play (gamestates 0x10-0x1A, 0x24).
DIRECT_CREDITS = 2               # games started directly show the two credits the script kept
MAX_CREDITS = 0xFF
LEVEL_SELECT_TICKS = 200         # 10 on-screen seconds of 20 ticks, then the entry is taken
MIN_START_ENTRY = 4              # level 9 is always offered
ATTRACT_SCREEN_DELAY = 0xA0      # counted every other tick: 320 ticks
LOGO_DELAY = 0xDF
NUM_HIGH_SCORES = 8
INITIALS_LETTERS = 3
INITIALS_TIMEOUT = 0x60          # counted down every INITIALS_TIMEOUT_PERIOD ticks
INITIALS_TIMEOUT_PERIOD = 32
DEMO_LIVES = 1
DEMO_LEVELS = 8                  # a demo game starts on a random level 1..8
DEMO_SPEED = 9                   # the demo player's spinner delta

RIM = 0x10
FAR_END = 0xF0
ONE = 256                        # one depth unit in the ×256 representation
START_LIVES = 3
MAX_LIVES = 6
BONUS_LIFE_EVERY = 20_000
SCORE_MODULUS = 1_000_000        # six BCD digits
PLAYER_START_POSITION = 0xF0
PLAYER_SHOT_SPEED = 9
PLAYER_SHOT_SPEED_AFTER_SPIKE = 5
CROUCH_TICKS = 4
FUSE_STEP_TICKS = 4
FUSE_HIT_RANGE = 6
ZAP_LENGTH_FIRST, ZAP_LENGTH_SECOND = 19, 5
ZAP_DISABLED = 0xFF
EXPLOSION_TICKS_ENEMY = 11
EXPLOSION_TICKS_PLAYER = 21
EXPLOSION_TICKS_GRAB = 6
DEATH_SLIDE_STEP = 0x0F
DEATH_SLIDE_TICKS = 15           # player sinks 0x0F per tick from the rim to >= 0xF0
LAST_LIFE_PULLBACK_TICKS = 40
START_DELAY_TICKS = 20
AVOID_SPIKES_TICKS = 30
AVOID_SPIKES_LAST_LEVEL0 = 6     # the message shows on 0-based levels < 7
ZOOM_START_SPEED = 0x0200
PLAYER_STATE_GRABBED = 0x80
PLAYER_STATE_KILLED = 0x81
# Enemy shot chance per tick (/256) by the number of enemy shots already on screen.
ENEMY_FIRE_CHANCE = np.array([256, 32, 16, 6, 1], dtype=np.int32)
# Flipper climbing programs (waves.PATTERN_*): ticks climbed between flips, whether the
# enemy climbs during flip steps, and which way it flips.
DIR_TOWARD, DIR_KEEP, DIR_REVERSING, DIR_AWAY = range(4)
PATTERN_CLIMB_TICKS = np.array([0, 8, 0, 1, 0, 4], dtype=np.int32)
PATTERN_CLIMB_WHILE_FLIPPING = np.array([False, False, True, True, False, True])
PATTERN_DIRECTION = np.array([DIR_TOWARD, DIR_TOWARD, DIR_KEEP, DIR_REVERSING, DIR_TOWARD,
                              DIR_AWAY], dtype=np.int32)
REVERSE_AFTER_FLIPS = (2, 5)     # reversing spiral: 2 flips, reverse, 3 flips, reverse
NUM_DRAWS = 64                   # random bytes per tick (also the 64 pending lanes)


@struct.dataclass
class Enemies:
    along: jax.Array        # [7] depth ×256; 0 = free slot
    lane: jax.Array         # [7] base lane
    kind: jax.Array         # [7] 0 flipper, 1 pulsar, 2 tanker, 3 spiker, 4 fuseball
    flipping: jax.Array     # [7] bool: between lanes (flip, or fuseball lateral move)
    higher: jax.Array       # [7] bool: rotating toward the higher lane
    step: jax.Array         # [7] flip steps done / fuseball lateral step 1..7
    total: jax.Array        # [7] flip steps needed
    start_angle: jax.Array  # [7] angle nibble at the start of the flip
    down: jax.Array         # [7] bool: moving away from the rim
    can_fire: jax.Array     # [7] bool
    cargo: jax.Array        # [7] tanker cargo 0..3
    chaser: jax.Array       # [7] bool: on the rim, chasing the player
    timer: jax.Array        # [7] ticks to the next program action
    flips: jax.Array        # [7] flips done (reversing spiral)
    holdoff: jax.Array      # [7] fire hold-off countdown
    pattern: jax.Array      # [7] flipper climbing program


@struct.dataclass
class GameState:
    seed: jax.Array          # uint32 per-game seed of the draw hash
    ticks: jax.Array         # ticks since the game object was created (draw counter)
    start_level: jax.Array   # 0-based level new games start on
    gamestate: jax.Array
    next_state: jax.Array    # $0002
    countdown: jax.Array     # $0004
    timectr: jax.Array       # $0003 (8 bit)
    game_mode: jax.Array     # $0005
    score: jax.Array         # decimal 0..999,999
    start_bonus: jax.Array   # $0102 start-table entry whose bonus the first level pays, or 0
    lives: jax.Array
    level: jax.Array         # 0-based, capped at 98
    is_open: jax.Array       # bool
    tube_angle: jax.Array    # [16]
    position: jax.Array      # $0051 accumulator
    player_lane: jax.Array   # $0200
    player_state: jax.Array  # $0201
    player_along: jax.Array  # depth ×256 ($0202 = integer part)
    fire_button: jax.Array   # bool, the fire input of the last tick (applied, or a cabinet's)
    zap_button: jax.Array    # bool, the zap input of the last tick (edge detection)
    start_button: jax.Array  # bool, a cabinet's start input of the last tick
    coin_button: jax.Array   # bool, a cabinet's coin input of the last tick
    credits: jax.Array       # $0006
    last_level: jax.Array    # $0126 0-based level the last game reached (level select's limit)
    max_start: jax.Array     # $0127 highest start-table entry the level select offers
    select_left: jax.Array   # level-select ticks left
    high_scores: jax.Array   # [8] the high-score table, best first
    initials: jax.Array      # initials entered
    initials_left: jax.Array # initials-entry time-out counter
    delay_halved: jax.Array  # bool: the delay (0x0A) counts every other tick
    shot_depth: jax.Array    # [8] 0 = free
    shot_lane: jax.Array     # [8]
    shot_hits: jax.Array     # [8] spike hits
    eshot_pos: jax.Array     # [4] ×256, 0 = free
    eshot_lane: jax.Array    # [4]
    zap_uses: jax.Array
    zap_timer: jax.Array     # $0125
    pending_vid: jax.Array   # [64] countdowns, 0 = none
    pending_seg: jax.Array   # [64] lanes
    spikes: jax.Array        # [16] tip depth, 0 = none
    pulse_clock: jax.Array   # signed
    pulse_inc: jax.Array     # signed
    explosion: jax.Array     # ticks until every explosion is over
    in_tube: jax.Array       # $0108 enemies climbing, counted while the player lives
    on_top: jax.Array        # $0109 rim chasers, likewise
    slide: jax.Array         # death sequence: ticks of slide left (-1 = not started)
    zoom_speed: jax.Array
    zoom_in_left: jax.Array
    enemies: Enemies


# ---------------------------------------------------------------------------------------------
# Small helpers (per game, vectorised over slots).

def _i32(x):
    return jnp.asarray(x, jnp.int32)


def _hash32(x):
    """lowbias32 integer hash (uint32 → uint32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def draws(seed, ticks):
    """NUM_DRAWS random bytes (int32 0..255) for this tick: 4 bytes from each hashed word."""
    base = _hash32(seed ^ (ticks.astype(jnp.uint32) * jnp.uint32(0x9E3779B9)))
    idx = jnp.arange(NUM_DRAWS // 4, dtype=jnp.uint32) * jnp.uint32(0x85EBCA6B)
    shifts = jnp.arange(4, dtype=jnp.uint32) * 8

    def to_bytes(i):
        return ((_hash32(base + i)[:, None] >> shifts) & 0xFF).astype(jnp.int32)

    # Hashed in a loop (two halves), so the bytes are computed once into memory: XLA on CPU
    # otherwise copies the hash into each of the dozens of fused kernels that read a draw,
    # which multiplies the step's code and its compile time.
    _, halves = jax.lax.scan(lambda carry, i: (carry, to_bytes(i)), None, idx.reshape(2, -1))
    return halves.reshape(-1)


def lookup(table, idx):
    """table[idx] along the last axis of a per-game table (lanes, types) for any-shaped
    in-range `idx`, as a one-hot sum: under vmap on CPU cheaper than a gather."""
    table = jnp.asarray(table)
    onehot = idx[..., None] == jnp.arange(table.shape[-1])
    if table.dtype == jnp.bool_:
        return jnp.any(onehot & table, axis=-1)
    return jnp.sum(jnp.where(onehot, table, 0), axis=-1)


def bits_of(mask):
    """A bool mask's last axis (at most 31 long) as an integer, bit i = mask[..., i]: one
    reduction, after which 'any', 'first' and 'last' are integer operations."""
    return jnp.sum(jnp.where(mask, 1 << jnp.arange(mask.shape[-1]), 0), axis=-1)


def mask_of(bits, n):
    """The inverse of `bits_of`: bool[..., n]."""
    return ((bits[..., None] >> jnp.arange(n)) & 1) != 0


def lowest_bit(bits):
    return bits & -bits


def highest_bit(bits):
    return jnp.where(bits == 0, 0, 1 << (31 - jax.lax.clz(bits)))


def first_true(mask):
    """One-hot of the first True along the last axis (all False where there is none)."""
    return mask_of(lowest_bit(bits_of(mask)), mask.shape[-1])


def last_true(mask):
    """One-hot of the last True along the last axis (all False where there is none)."""
    return mask_of(highest_bit(bits_of(mask)), mask.shape[-1])


def first_claims(candidates):
    """Greedy claims in row order: row i takes the first column of `candidates[i]` that no
    earlier row took. Returns (the column each row takes as a one-bit mask, 0 for none;
    every column taken, as bits).

    Each row is a bit mask, so the order-dependent part is three integer operations per row
    (x & -x keeps the lowest set bit)."""
    masks = bits_of(candidates)

    # A scan, not unrolled rows: what comes out of a loop is computed once, where XLA on CPU
    # would copy the whole chain of rows into every kernel that reads a claim.
    def claim(taken, row_mask):
        got = lowest_bit(row_mask & ~taken)
        return taken | got, got

    taken, claims = jax.lax.scan(claim, jnp.zeros(masks.shape[:-1], masks.dtype),
                                 jnp.moveaxis(masks, -1, 0))
    return jnp.moveaxis(claims, 0, -1), taken


def lane_toward(from_lane, to_lane, is_open):
    """True when the shortest way from `from_lane` to `to_lane` is toward higher lanes
    (the game's rule: difference wrapped to -8..+7 on closed tubes, >= 0 means higher)."""
    d = to_lane - from_lane
    d = jnp.where(is_open, d, ((d + 8) & 15) - 8)
    return d >= 0


def flip_geometry(lane, higher, angles):
    """(base lane during the flip, start angle, steps) of a flip from `lane`.

    A flip toward the higher lane takes the destination as its base lane at once and its angle
    runs down from (A[s-1]+8) to A[s]; a flip toward the lower lane keeps its lane as base and
    the angle runs up from A[s] to (A[s-1]+8). This is the convention the extraction decodes
    (state_vector.md §3.2)."""
    base = jnp.where(higher, (lane + 1) & 15, lane)
    a_base, a_prev = lookup(angles, jnp.stack([base, (base - 1) & 15]))
    reversed_prev = (a_prev + 8) & 15
    start = jnp.where(higher, reversed_prev, a_base)
    total = (reversed_prev - a_base) & 15          # the same count in both directions
    return base, start, jnp.where(total == 0, 8, total)


def flip_angle(e: Enemies):
    """Current angle nibble of a flipping enemy."""
    step = jnp.minimum(e.step, e.total)
    return jnp.where(e.higher, e.start_angle - step, e.start_angle + step) & 15


def wave_params(level):
    """The wave's parameter row as a dict of int32 scalars."""
    row = jnp.asarray(W.WAVE_TABLE)[jnp.clip(level, 0, W.NUM_LEVELS - 1)]
    return {name: row[i] for i, name in enumerate(W.COLUMNS)}


def bonus_lives(old_score, new_score, lives):
    crossed = (new_score // BONUS_LIFE_EVERY) > (old_score // BONUS_LIFE_EVERY)
    return jnp.where(crossed & (lives < MAX_LIVES), lives + 1, lives)


# ---------------------------------------------------------------------------------------------
# Construction.

def empty_enemies() -> Enemies:
    z = jnp.zeros(NUM_SLOTS, jnp.int32)
    f = jnp.zeros(NUM_SLOTS, bool)
    return Enemies(along=z, lane=z, kind=z, flipping=f, higher=f, step=z, total=z,
                   start_angle=z, down=f, can_fire=f, cargo=z, chaser=f, timer=z, flips=z,
                   holdoff=z, pattern=z)


def pending_queue(n, lanes):
    """The game's pending-enemy queue of n enemies: countdown ((16 i) mod 256) | lane."""
    i = jnp.arange(NUM_PENDING, dtype=jnp.int32)
    vid = ((16 * i) & 0xFF) | lanes
    vid = jnp.where(vid == 0, 0x0F, vid)
    return jnp.where(i < n, vid, 0), lanes


def _start_entry(level0):
    """The start-table entry of a game started directly on `level0` (0 where the level is not
    one the level select offers): starting there pays that entry's bonus, as in the game."""
    return jnp.asarray(W.START_ENTRY_OF_LEVEL)[jnp.clip(level0, 0, W.NUM_LEVELS - 1)]


def new_game(seed, start_level) -> GameState:
    """A game at gamestate 0x00 (new game); its first tick sets up the start level."""
    z = _i32(0)
    state = GameState(
        seed=jnp.asarray(seed, jnp.uint32), ticks=z, start_level=_i32(start_level),
        gamestate=_i32(GS_NEW_GAME), next_state=z, countdown=z, timectr=z,
        game_mode=_i32(GAME_MODE_REAL), score=z, start_bonus=_start_entry(start_level),
        lives=_i32(START_LIVES),
        level=_i32(start_level), is_open=jnp.asarray(False), tube_angle=jnp.zeros(16, jnp.int32),
        position=z, player_lane=z, player_state=z, player_along=_i32(RIM * ONE),
        fire_button=jnp.asarray(False), zap_button=jnp.asarray(False),
        start_button=jnp.asarray(False), coin_button=jnp.asarray(False),
        credits=_i32(DIRECT_CREDITS), last_level=z, max_start=z, select_left=z,
        high_scores=jnp.zeros(NUM_HIGH_SCORES, jnp.int32), initials=z, initials_left=z,
        delay_halved=jnp.asarray(False),
        shot_depth=jnp.zeros(NUM_SHOTS, jnp.int32), shot_lane=jnp.zeros(NUM_SHOTS, jnp.int32),
        shot_hits=jnp.zeros(NUM_SHOTS, jnp.int32),
        eshot_pos=jnp.zeros(NUM_ENEMY_SHOTS, jnp.int32),
        eshot_lane=jnp.zeros(NUM_ENEMY_SHOTS, jnp.int32),
        zap_uses=z, zap_timer=z,
        pending_vid=jnp.zeros(NUM_PENDING, jnp.int32),
        pending_seg=jnp.zeros(NUM_PENDING, jnp.int32),
        spikes=jnp.zeros(16, jnp.int32), pulse_clock=z, pulse_inc=z, explosion=z,
        slide=_i32(-1), in_tube=z, on_top=z, zoom_speed=z, zoom_in_left=z,
        enemies=empty_enemies())
    return _level_init(state, _i32(start_level), jnp.zeros(NUM_PENDING, jnp.int32))


def power_on(seed, high_scores) -> GameState:
    """A cabinet switched on: attract mode at the logo, no credits, the given high-score table
    (int[8], best first). It runs through the attract loop until coins and start come in
    (`tick` with `start_in` and `coin_in`)."""
    g = new_game(seed, 0)
    return g.replace(gamestate=_i32(GS_LOGO), game_mode=_i32(0), credits=_i32(0),
                     start_bonus=_i32(0), lives=_i32(0),
                     high_scores=jnp.asarray(high_scores, jnp.int32))


def poke(s: GameState, last_level, max_start, cursor) -> GameState:
    """RAM writes a client makes between ticks, at $0126 (last level), $0127 (highest start
    entry) and $0200 (the level-select cursor, the player-lane byte); a value < 0 writes
    nothing."""
    return s.replace(last_level=jnp.where(last_level >= 0, last_level & 0xFF, s.last_level),
                     max_start=jnp.where(max_start >= 0, max_start & 0xFF, s.max_start),
                     player_lane=jnp.where(cursor >= 0, cursor & 0xFF, s.player_lane))


def _level_init(s: GameState, level, lanes) -> GameState:
    """What the game does at every new wave: geometry, spikes, pending queue, zapper."""
    level = jnp.minimum(level, W.NUM_LEVELS - 1)
    p = wave_params(level)
    shape = jnp.asarray(shapes.SHAPE_OF_SLOT)[level % 16]
    vid, seg = pending_queue(p["total"], lanes)
    return s.replace(
        level=level, is_open=jnp.asarray(shapes.OPEN_FLAG)[shape] != 0,
        tube_angle=jnp.asarray(shapes.TUBE_ANGLE)[shape],
        spikes=jnp.full(16, p["spike0"], jnp.int32), pending_vid=vid, pending_seg=seg,
        zap_uses=_i32(0), zap_timer=_i32(0), enemies=empty_enemies(),
        shot_depth=jnp.zeros_like(s.shot_depth), shot_hits=jnp.zeros_like(s.shot_hits),
        eshot_pos=jnp.zeros_like(s.eshot_pos), explosion=_i32(0), in_tube=_i32(0),
        on_top=_i32(0),
        pulse_clock=_i32(-1), pulse_inc=p["pulse_inc"])


def pending_count(s: GameState):
    return jnp.sum(s.pending_vid > 0)


# ---------------------------------------------------------------------------------------------
# Enemy creation.

def choose_type(counts, tanker_cargo_counts, p, free, spike_tip, r_type, r_cargo):
    """The game's 'determine nymph type' (enemies sheet §1.4): (ok, type, cargo)."""
    mins = jnp.stack([p["min_f"], p["min_p"], p["min_t"], p["min_s"], p["min_u"]])
    maxs = jnp.stack([p["max_f"], p["max_p"], p["max_t"], p["max_s"], p["max_u"]])
    openings = jnp.maximum(maxs - counts, 0) - 2 * tanker_cargo_counts
    openings = jnp.where(openings < 0, openings + 256, openings)     # byte wrap, then clamp
    openings = jnp.minimum(openings, free)
    has = openings > 0
    n_has = jnp.sum(has)
    types = jnp.arange(W.NUM_TYPES)
    # The game's rules in order, as one ranking of the types; the lowest (tier, order, type)
    # wins. Tiers: 0 the only type with openings; 1 the same, but its MIN is 0 (no enemy);
    # 2 from fuseball down to flipper, a type with openings below its minimum; 3 spiker and
    # tanker both open: the tanker when a long spike is on the lane, else the spiker; 4 from a
    # random type 1..4 downward (wrapping), a type with MIN != 0 and openings; 5 that random
    # type itself (no enemy); 6 the rest.
    long_spike = jnp.where(spike_tip == 0, 0xFF, spike_tip) < 0xCC
    spiker_or_tanker = jnp.where(long_spike, W.TANKER, W.SPIKER)
    place = (1 + (r_type & 3) - types) % W.NUM_TYPES        # place in the random-start order
    tier_order = jnp.where(
        (n_has == 1) & has, jnp.where(mins != 0, 0, 1 * 8),
        jnp.where(has & (counts < mins), 2 * 8 + (W.NUM_TYPES - 1 - types),
                  jnp.where(has[W.SPIKER] & has[W.TANKER] & (types == spiker_or_tanker), 3 * 8,
                            jnp.where((mins != 0) & has, 4 * 8 + place,
                                      jnp.where(place == 0, 5 * 8, 6 * 8)))))
    best = jnp.min(tier_order * 8 + types)
    kind, tier = best & 7, best >> 6
    ok = (tier != 1) & (tier <= 4)
    # A tanker's cargo: from a random entry of the wave's 4-entry list, the first whose type
    # still has openings (none: no enemy).
    cargo_list = jnp.stack([p["cargo0"], p["cargo1"], p["cargo2"], p["cargo3"]])
    cargo_type = jnp.asarray(W.TYPE_OF_CARGO)[cargo_list]
    cargo_ok = lookup(has, cargo_type)
    c_place = (jnp.arange(4) - r_cargo) & 3
    cargo_best = jnp.min(jnp.where(cargo_ok, c_place, c_place + 4) * 4 + cargo_list)
    is_tanker = kind == W.TANKER
    ok = ok & (~is_tanker | (cargo_best < 16))
    return ok, kind, jnp.where(is_tanker, cargo_best & 3, 0)


def _spawn(e: Enemies, slot_mask, kind, lane, along, higher, cargo, pattern, p):
    """Write a new enemy into the slots selected by `slot_mask` (fields broadcast)."""
    can_fire = (kind == W.FLIPPER) | (kind == W.TANKER) | (kind == W.SPIKER) | (
        (kind == W.PULSAR) & (p["pulsar_can_fire"] != 0))
    climb = jnp.asarray(PATTERN_CLIMB_TICKS)[pattern]
    timer = jnp.where(kind == W.PULSAR, p["pulsar_delay"],
                      jnp.where(kind == W.FUSEBALL, FUSE_STEP_TICKS, climb))
    new = dict(along=along, lane=lane, kind=kind, flipping=False, higher=higher, step=0,
               total=0, start_angle=0, down=False, can_fire=can_fire, cargo=cargo,
               chaser=False, timer=timer, flips=0, holdoff=0, pattern=pattern)
    return e.replace(**{k: jnp.where(slot_mask, v, getattr(e, k)) for k, v in new.items()})


def _excluded(vid, seg, moved):
    """Pending entries pushed back by one for the pending queue's lane exclusion.

    An entry whose countdown is in 0x20..0x3F marks its lane; one that has just entered that
    zone (0x3F) on a lane already marked steps back to 0x40. Lane L and lane 15 - L share a
    mark, and the game's check sees only the marks made earlier in its scan of the queue, which
    runs from entry 63 down: an entry that just entered is pushed back when a later entry in
    the queue is in the zone on its lane or its mirror. (Of several such entries entering
    together the latest stays, since it then marks the lane, or all step back.) The later
    entries' marks are a suffix OR of bit masks, by doubling: elementwise work, no reduction."""
    in_zone = moved & (vid >= 0x20) & (vid <= 0x3F)
    marks = jnp.where(in_zone, 1 << jnp.where(seg < 8, seg, 15 - seg), 0)

    def later(x, k):                                    # x[i + k], 0 past the end
        return jnp.concatenate([x[k:], jnp.zeros(k, x.dtype)])

    seen = later(marks, 1)
    for k in (1, 2, 4, 8, 16, 32):                      # now the OR of marks[i+1 .. i+2k]
        seen = seen | later(seen, k)
    return in_zone & (vid == 0x3F) & ((seen & marks) != 0)


def _hatch(s: GameState, p, r, can_hatch):
    """Pending countdowns, and at most one pending enemy entering the tube per tick (nothing
    changes unless `can_hatch`)."""
    e = s.enemies
    live = s.pending_vid > 0
    active = e.along > 0
    frozen = (~can_hatch) | (jnp.sum(active) >= NUM_SLOTS)
    rotate = live & (s.pending_vid >= 0x40) & ((s.timectr & 1) == 0) & ~frozen
    seg = jnp.where(rotate, (s.pending_seg + 1) & 15, s.pending_seg)
    vid = jnp.where(live & ~frozen, s.pending_vid - 1, s.pending_vid)
    vid = jnp.where(_excluded(vid, seg, live & ~frozen), vid + 1, vid)
    reaching = live & (vid == 0) & ~frozen
    idx = NUM_PENDING - 1 - jnp.argmax(reaching[::-1])        # the scan runs 63 → 0
    lane = lookup(seg, idx)
    lane = jnp.where(s.is_open & (lane == 15), 2 * (r[0] % 8), lane)
    of_type = active[:, None] & (e.kind[:, None] == jnp.arange(W.NUM_TYPES))   # [slot, type]
    counts = jnp.sum(of_type, axis=0)
    loaded = active & (e.kind == W.TANKER) & (e.cargo > 0)
    tanker_cargo = jnp.sum(loaded[:, None] & (jnp.asarray(W.TYPE_OF_CARGO)[e.cargo][:, None]
                                              == jnp.arange(W.NUM_TYPES)), axis=0)
    ok, kind, cargo = choose_type(counts, tanker_cargo, p, NUM_SLOTS - jnp.sum(active),
                                  lookup(s.spikes, lane), r[1], r[2])
    free = bits_of(e.along == 0)
    slot = mask_of(highest_bit(free), NUM_SLOTS)             # the highest free slot
    launch = jnp.any(reaching) & ok & (free != 0)
    # Every new enemy starts with the rotation bit clear: clockwise (toward the lower lane).
    e = _spawn(e, slot & launch, kind, lane, _i32(FAR_END * ONE), False, cargo, p["pattern"], p)
    # Entries that reached 0 without launching step back by one.
    launched_entry = (jnp.arange(NUM_PENDING) == idx) & launch
    vid = jnp.where(reaching & ~launched_entry, 1, vid)
    return s.replace(enemies=e, pending_vid=vid, pending_seg=seg)


# ---------------------------------------------------------------------------------------------
# Enemy movement.

def _start_flip(e: Enemies, mask, higher, is_open, angles):
    """Begin a flip (or fuseball lateral move) for the slots in `mask`."""
    higher = jnp.where(is_open & higher & (e.lane >= 14), False, higher)
    higher = jnp.where(is_open & ~higher & (e.lane <= 0), True, higher)
    base, start, total = flip_geometry(e.lane, higher, angles)
    fuse = e.kind == W.FUSEBALL
    fuse_base = jnp.where(higher, e.lane, (e.lane - 1) & 15)
    return e.replace(
        flipping=e.flipping | mask, higher=jnp.where(mask, higher, e.higher),
        lane=jnp.where(mask, jnp.where(fuse, fuse_base, base), e.lane),
        start_angle=jnp.where(mask, start, e.start_angle),
        total=jnp.where(mask, total, e.total), step=jnp.where(mask, jnp.where(fuse, 1, 0),
                                                               e.step),
        timer=jnp.where(mask & fuse, FUSE_STEP_TICKS, e.timer))


def _move_enemies(s: GameState, p, r):
    """One tick of every enemy's program. Returns (enemies, spikes, kill_state, split_mask)."""
    e = s.enemies
    is_open, angles, player = s.is_open, s.tube_angle, s.player_lane
    active = e.along > 0
    depth = e.along >> 8
    pending = pending_count(s)
    pulsing = s.pulse_clock >= 0
    kind = e.kind
    flipper, pulsar, tanker, spiker, fuse = (kind == t for t in range(W.NUM_TYPES))
    toward_player = lane_toward(e.lane, player, is_open)
    slot = jnp.arange(NUM_SLOTS)

    # --- flips in progress (flippers, pulsars): advance, complete --------------------------
    flips_kind = flipper | pulsar
    rim_steps = jnp.where(e.chaser, p["rim_flip_steps"], 1)
    in_flip = active & flips_kind & e.flipping
    step = jnp.where(in_flip, e.step + rim_steps, e.step)
    done_flip = in_flip & (step >= e.total)
    lane = jnp.where(done_flip & ~e.higher, (e.lane - 1) & 15, e.lane)
    e = e.replace(step=step, lane=lane, flipping=e.flipping & ~done_flip)
    flips = jnp.where(done_flip, e.flips + 1, e.flips)
    e = e.replace(flips=jnp.where(flips >= REVERSE_AFTER_FLIPS[1], 0, flips))
    reverse = done_flip & (e.pattern == W.PATTERN_REVERSING) & (
        (flips == REVERSE_AFTER_FLIPS[0]) | (flips == REVERSE_AFTER_FLIPS[1]))
    e = e.replace(higher=e.higher ^ reverse)

    # --- rim chasers (flippers and pulsars on the rim): crouch, grab, flip on --------------
    chasing = active & flips_kind & e.chaser
    crouching = chasing & ~e.flipping & ~done_flip
    grabbing = crouching & (e.lane == player)
    timer = jnp.where(crouching, e.timer - 1, e.timer)
    timer = jnp.where(chasing & done_flip, CROUCH_TICKS, timer)
    e = e.replace(timer=timer)
    # Flips start below in one go: the enemy kinds and programs are disjoint, so no section
    # reads what another one's start changes.
    start_c = crouching & (timer <= 0)

    # --- flippers climbing ------------------------------------------------------------------
    climbing_f = active & flipper & ~e.chaser
    pattern = e.pattern
    climb_ticks = jnp.asarray(PATTERN_CLIMB_TICKS)[pattern]
    climb_flipping = jnp.asarray(PATTERN_CLIMB_WHILE_FLIPPING)[pattern]
    direction_mode = jnp.asarray(PATTERN_DIRECTION)[pattern]
    tip = lookup(s.spikes, e.lane)
    shielded = (pattern == W.PATTERN_SPIKE_AWARE) & (tip > 0) & (depth > tip)
    may_flip = (pattern != W.PATTERN_STRAIGHT) & ~shielded
    e = e.replace(timer=jnp.where(climbing_f & done_flip, climb_ticks, e.timer))
    idle = climbing_f & ~e.flipping & ~done_flip
    start_f = idle & may_flip & (e.timer <= 0)
    counting = idle & ~start_f & (pattern != W.PATTERN_STRAIGHT)
    e = e.replace(timer=jnp.where(counting, e.timer - 1, e.timer))
    flip_dir = jnp.where(direction_mode == DIR_TOWARD, toward_player,
                         jnp.where(direction_mode == DIR_AWAY, ~toward_player, e.higher))
    climb_f = climbing_f & ~start_f & (~e.flipping | climb_flipping)

    # --- pulsars ----------------------------------------------------------------------------
    climbing_p = active & pulsar & ~e.chaser
    potency = p["potency"]
    e = e.replace(down=jnp.where(climbing_p & (pending == 0), False, e.down))
    e = e.replace(timer=jnp.where(climbing_p & done_flip, p["pulsar_delay"], e.timer))
    idle_p = climbing_p & ~e.flipping & ~done_flip
    # A pulsar flips once the clock is off and will still be off 4 ticks ahead (rising, it
    # climbs by the increment each tick; falling, it stays negative longer than that).
    quiet = (s.pulse_clock < 0) & (s.pulse_clock + 4 * s.pulse_inc < 0)
    start_p = idle_p & (e.timer <= 0) & quiet
    e = e.replace(timer=jnp.where(idle_p & (e.timer > 0), e.timer - 1, e.timer))
    move_p = idle_p & ~start_p

    # --- fuseballs: lateral moves of 7 steps x 4 ticks, climbing/descending between --------
    fuse_a = active & fuse
    lateral = fuse_a & e.flipping
    ftimer = jnp.where(lateral, e.timer - 1, e.timer)
    fstep = jnp.where(lateral & (ftimer <= 0), e.step + 1, e.step)
    ftimer = jnp.where(lateral & (ftimer <= 0), FUSE_STEP_TICKS, ftimer)
    lateral_done = lateral & (fstep >= 8)
    at_rim = depth <= RIM
    stay_at_rim = at_rim & (pending == 0)
    e = e.replace(
        timer=ftimer, step=jnp.where(lateral_done, 0, fstep),
        lane=jnp.where(lateral_done & e.higher, (e.lane + 1) & 15, e.lane),
        flipping=e.flipping & ~lateral_done,
        down=jnp.where(lateral_done & ~stay_at_rim, ~e.down, e.down))
    riding = fuse_a & ~e.flipping & ~lateral_done
    chase_rim = (p["chase_flags"] & 0x80) != 0
    chase_tube = ((p["chase_flags"] & 0x40) != 0) & ((slot & 1) == 1)
    random_dir = r[8:15] >= 128
    in_band = (depth & 0x20) != 0
    wants_random = riding & in_band & (r[15:22] >= p["fuse_threshold"]) & ~(
        ~e.down & (pending == 0))
    rim_turn = riding & at_rim & ~e.down
    early_turn = riding & ~e.down & (s.level < 17) & (pending > 0) & (depth < 0x20)
    deep_turn = riding & e.down & (depth >= 0x80)
    start_u = wants_random | rim_turn | early_turn | deep_turn
    dir_u = jnp.where(rim_turn, jnp.where(chase_rim | stay_at_rim, toward_player, random_dir),
                      jnp.where(chase_tube, toward_player, random_dir))
    move_u = riding & ~start_u
    e = _start_flip(e, start_c | start_f | start_p | start_u,
                    jnp.where(start_f, flip_dir, jnp.where(start_p, toward_player,
                                                           jnp.where(start_u, dir_u, e.higher))),
                    is_open, angles)

    # --- depth movement ----------------------------------------------------------------------
    speed = jnp.where(flipper | tanker, p["speed_flipper"],
                      jnp.where(spiker, p["speed_spiker"],
                                jnp.where(fuse, p["speed_fuseball"],
                                          jnp.where(depth > potency, p["speed_flipper"],
                                                    W.PULSAR_SPEED))))
    speed = jnp.where(pulsar & e.down, -W.PULSAR_SPEED, jnp.where(e.down, -speed, speed))
    moving = (climb_f | (active & (tanker | spiker)) | move_p | move_u) & ~e.chaser
    along = jnp.where(moving, e.along + speed, e.along)
    along = jnp.where(moving & e.down & (along >= FAR_END * ONE), 0xF2 * ONE, along)
    up = moving & ~e.down
    new_depth = along >> 8

    # Flippers and pulsars reaching the rim: a mid-flip one is held at 0x11; others chase.
    reach = up & (flipper | pulsar) & (along <= RIM * ONE)
    hold = reach & e.flipping
    pulsar_bounce = reach & ~hold & pulsar & (pending > 0)
    convert = reach & ~hold & ~pulsar_bounce
    along = jnp.where(hold, 0x11 * ONE, jnp.where(reach, RIM * ONE, along))
    along = jnp.where(up & fuse & (along <= RIM * ONE), RIM * ONE, along)
    others = e.chaser & active
    n_others, n_others_higher = jnp.sum(jnp.stack([others, others & e.higher]), axis=-1)
    one_other = n_others == 1
    other_higher = n_others_higher > 0
    chase_dir = jnp.where(one_other, ~other_higher, toward_player)
    e = e.replace(chaser=e.chaser | convert, higher=jnp.where(convert, chase_dir, e.higher),
                  timer=jnp.where(convert, CROUCH_TICKS, e.timer),
                  down=jnp.where(pulsar_bounce, True, e.down))
    # Pulsars moving down turn at the potency depth.
    e = e.replace(down=jnp.where(active & pulsar & e.down & (new_depth >= potency), False,
                                 e.down))

    # Tankers climbing above 0x20 split.
    split = up & tanker & (new_depth < 0x20) & (e.cargo > 0)

    # Spikers: grow the spike on their lane, turn at 0x20, re-lane at the bottom.
    spiking = active & spiker
    lanes_onehot = e.lane[:, None] == jnp.arange(NUM_LANES)
    grow_depth = jnp.where(spiking & ~e.down, jnp.maximum(new_depth, 0x20), 0x1FF)
    tip_from_spikers = jnp.min(jnp.where(lanes_onehot, grow_depth[:, None], 0x1FF), axis=0)
    has_spiker = tip_from_spikers < 0x1FF           # a climbing spiker's tip is below 0x100
    spikes = jnp.where(has_spiker & (s.spikes == 0), 0xF1, s.spikes)
    spikes = jnp.where(has_spiker, jnp.minimum(spikes, tip_from_spikers), spikes)
    turn = spiking & ~e.down & (new_depth < 0x20)
    along = jnp.where(turn, 0x20 * ONE, along)
    bottom = spiking & e.down & (along >= 0xF2 * ONE)
    # Shortest spike (no spike counts as shortest), scanning from a random lane.
    lanes = jnp.arange(NUM_LANES)
    heights = jnp.where(spikes == 0, 0x100, spikes)
    heights = jnp.where(is_open & (lanes == 15), -1, heights)
    place = (lanes - r[22]) & 15                   # place of each lane in the scan
    # The first lane in the scan with the largest height value (key = place mod 16).
    new_lane = (r[22] + jnp.min((0x100 - heights) * NUM_LANES + place)) & 15
    to_tanker = bottom & (pending == 0)
    e = e.replace(
        down=jnp.where(turn, True, jnp.where(bottom, False, e.down)),
        lane=jnp.where(bottom, new_lane, e.lane),
        kind=jnp.where(to_tanker, W.TANKER, e.kind),
        cargo=jnp.where(to_tanker, W.CARGO_FLIPPERS, e.cargo))
    along = jnp.where(bottom, FAR_END * ONE, along)
    e = e.replace(along=jnp.where(active, along, 0))

    # --- deaths caused by enemies -----------------------------------------------------------
    depth = e.along >> 8
    pulsar_kill = (active & pulsar & ~e.flipping & pulsing & (depth < potency)
                   & (e.lane == player))
    fuse_kill = active & fuse & (depth == RIM) & (e.lane == player)
    grab, killed = jnp.any(jnp.stack([grabbing, pulsar_kill | fuse_kill]), axis=-1)
    kill_state = jnp.where(grab, PLAYER_STATE_GRABBED, jnp.where(killed, PLAYER_STATE_KILLED, 0))
    return e, spikes, kill_state, split


def _apply_splits(e: Enemies, split, p, is_open):
    """Tankers in `split` become two cargo enemies: the tanker's slot turns into the first
    child (lane L-1, rotating CW), the second (lane L+1, CCW) takes the highest free slot.

    Tankers split one after another in slot order, and each second child takes a slot the
    next one no longer finds free, so the slots are assigned in a loop over the 7 slots. It
    carries only what the assignment reads and what a child takes from its tanker; the new
    enemies are written once, after it."""
    slots = jnp.arange(NUM_SLOTS)

    def split_one(k, c):
        along, lane, cargo, kind, higher, pattern, born = c
        do = split[k]
        left = (lane[k] - 1) & 15
        right = (lane[k] + 1) & 15
        left = jnp.where(is_open & (left == 15), 0, left)
        right = jnp.where(is_open & (right == 15), 14, right)
        # The first child keeps the tanker's depth, so the free slots are the same after it;
        # the second child overwrites it when its slot is the tanker's own (depth 0).
        second = last_true(along == 0) & do             # the highest free slot
        child = ((slots == k) & do) | second
        return (jnp.where(child, along[k], along),
                jnp.where(child, jnp.where(second, right, left), lane),
                jnp.where(child, 0, cargo),
                jnp.where(child, jnp.asarray(W.TYPE_OF_CARGO)[cargo[k]], kind),
                jnp.where(child, second, higher),
                jnp.where(child, jnp.where((along[k] >> 8) < 0x20, W.PATTERN_STRAIGHT,
                                           p["pattern"]), pattern),
                born | child)

    along, lane, _, kind, higher, pattern, born = jax.lax.fori_loop(
        0, NUM_SLOTS, split_one,
        (e.along, e.lane, e.cargo, e.kind, e.higher, e.pattern, jnp.zeros(NUM_SLOTS, bool)))
    return _spawn(e, born, kind, lane, along, higher, 0, pattern, p)


# ---------------------------------------------------------------------------------------------
# Shots and collisions.

def _enemy_hit_mask(e: Enemies, shot_depth, shot_lane, p):
    """Which enemies a player shot at (depth, lane) hits (enemies sheet §2.2, §2.5)."""
    depth = e.along >> 8
    active = e.along > 0
    fuse = e.kind == W.FUSEBALL
    spans = e.flipping & ~fuse
    lane_ok = jnp.where(spans, (shot_lane == e.lane) | (shot_lane == ((e.lane - 1) & 15)),
                        shot_lane == e.lane)
    exposed = jnp.where(fuse, e.flipping & (depth != RIM), e.flipping | (depth != RIM))
    hit_range = jnp.where(fuse, FUSE_HIT_RANGE,
                          jnp.where(e.kind == W.SPIKER, p["hit_spiker"], p["hit_flipper"]))
    return active & lane_ok & exposed & (jnp.abs(shot_depth - depth) < hit_range)


def _kill_points(kind, fuse_roll):
    """Points of a shot kill; fuseballs: 250, or 500 / 750 with probability 1/8 each."""
    fuse_points = jnp.where(fuse_roll == 1, 500, jnp.where(fuse_roll == 2, 750, 250))
    return jnp.where(kind == W.FUSEBALL, fuse_points, jnp.asarray(W.POINTS)[kind])


def _shot_hits(s: GameState, shot_mask, p, r, split):
    """Resolve player shots in `shot_mask` against enemies, in slot order: each shot kills at
    most one enemy (the lowest slot it hits that no earlier shot took). Tankers with cargo are
    marked to split instead of vanishing; marked tankers cannot be hit again."""
    e = s.enemies
    live = shot_mask & (s.shot_depth > 0)
    hits = (_enemy_hit_mask(e, s.shot_depth[:, None], s.shot_lane[:, None], p)
            & ~split & live[:, None])                         # [shot, enemy]
    claims, taken = first_claims(hits)
    victims = mask_of(claims, NUM_SLOTS)                      # [shot, enemy], one-hot rows
    points = jnp.sum(jnp.where(victims, _kill_points(e.kind, (r[24:32] & 7)[:, None]), 0))
    hit = claims != 0
    victim = mask_of(taken, NUM_SLOTS)
    splits = victim & (e.kind == W.TANKER) & (e.cargo > 0)
    e = e.replace(along=jnp.where(victim & ~splits, 0, e.along))
    return (s.replace(enemies=e, shot_depth=jnp.where(hit, 0, s.shot_depth)), points,
            taken != 0, split | splits)


def _move_player_shots(s: GameState):
    """Shots fly +9 per tick (+5 after a spike hit), cut spikes (1 point per cut), vanish after
    the second cut or at the far end. Shots are processed in slot order, as the game does.

    A cut moves the spike's tip down to the shot (removes the spike at the far end), and a shot
    cuts when it reaches the tip, so the tip a shot meets is the deepest of the spike and the
    live shots before it in its lane, or none once one of those removed the spike."""
    spikes, lanes, hits = s.spikes, s.shot_lane, s.shot_hits
    live = s.shot_depth > 0
    d = s.shot_depth + jnp.where(hits > 0, PLAYER_SHOT_SPEED_AFTER_SPIKE, PLAYER_SHOT_SPEED)
    spike = lookup(spikes, lanes)
    # before[i, j]: live shot i is in shot j's lane and moves before it.
    before = (live[:, None] & (lanes[:, None] == lanes) & np.tri(NUM_SHOTS, k=-1, dtype=bool).T)
    deepest = jnp.maximum(spike, jnp.max(jnp.where(before, d[:, None], 0), axis=0))
    # The first live shot in a lane at the far end that reaches the spike removes it: no
    # earlier live shot in the lane is deeper, so the deepest before it is the spike itself.
    removes = live & (d >= FAR_END) & (d >= spike)
    removed = jnp.any(before & removes[:, None], axis=0)
    tip = jnp.where(spike > 0, jnp.where(removed, 0, deepest), spike)
    cut = live & (tip > 0) & (d >= tip)
    # Each lane's spike after all shots: the same rule over every live shot in the lane.
    in_lane = live[:, None] & (lanes[:, None] == jnp.arange(NUM_LANES))
    lane_deepest = jnp.maximum(spikes, jnp.max(jnp.where(in_lane, d[:, None], 0), axis=0))
    lane_removed = jnp.any(in_lane & removes[:, None], axis=0)
    spikes = jnp.where(spikes > 0, jnp.where(lane_removed, 0, lane_deepest), spikes)
    h = hits + cut
    keep = live & (d < FAR_END) & (h < 2)
    return (s.replace(spikes=spikes, shot_depth=jnp.where(keep, d, 0),
                      shot_hits=jnp.where(keep, h, 0)), jnp.sum(cut))


def _shot_vs_shot(s: GameState, p):
    """A player shot and an enemy shot in the same lane within range destroy each other; player
    shots in slot order, each meeting the first enemy shot no earlier one destroyed."""
    pd, ed = s.shot_depth, s.eshot_pos
    meet = ((ed > 0) & (pd[:, None] > 0) & (s.eshot_lane == s.shot_lane[:, None])
            & (jnp.abs(pd[:, None] - (ed >> 8)) < p["hit_shot"]))   # [player shot, enemy shot]
    claims, taken = first_claims(meet)
    return s.replace(shot_depth=jnp.where(claims != 0, 0, pd),
                     eshot_pos=jnp.where(mask_of(taken, NUM_ENEMY_SHOTS), 0, ed))


# ---------------------------------------------------------------------------------------------
# The tick.

def move_player(position, spinner, is_open):
    """The game's movement routine: position -= clamp(spinner, -31, 31); wrap on closed tubes,
    clamp to 0..0xEF on open ones."""
    delta = jnp.clip(spinner, -31, 31)
    raw = position - delta
    return jnp.where(is_open, jnp.clip(raw, 0, 0xEF), raw & 0xFF)


def _demo_delta(s: GameState):
    """The attract-mode player's spinner delta: 9 units a tick toward the lane of the active
    enemy nearest the rim (0 on that lane, or with no enemy)."""
    e = s.enemies
    active = e.along > 0
    nearest = jnp.min(jnp.where(active, e.along * NUM_SLOTS + jnp.arange(NUM_SLOTS),
                                jnp.iinfo(jnp.int32).max))
    target = lookup(e.lane, nearest % NUM_SLOTS)
    toward = lane_toward(s.player_lane, target, s.is_open)
    delta = jnp.where(toward, -DEMO_SPEED, DEMO_SPEED)
    return jnp.where(jnp.any(active) & (target != s.player_lane), delta, 0)


def tick(s: GameState, fire_in, zap_in, spinner_in, start_in=None, coin_in=None) -> GameState:
    """Advance one game by one tick. Inputs are fire (0/1), zap (0/1) and the spinner delta
    (game units).

    Without `start_in`/`coin_in` the game is one started directly (train use): it receives
    the inputs only in 0x04 / 0x20, as the Lua script gives them, and starts a new game on its
    own after game over. With them it is a cabinet (`power_on`): the buttons reach the game in
    every state, coin and start buy and begin games, and after game over it goes through the
    high-score check and the attract loop."""
    cabinet = start_in is not None
    p = wave_params(s.level)
    r = draws(s.seed, s.ticks)
    gs = s.gamestate
    playing, zooming = gs == GS_PLAYING, gs == GS_ZOOM
    real = (s.game_mode & 0x80) != 0
    if cabinet:
        # The attract-mode (demo) player moves on its own and keeps firing.
        fire_down, zap_down = fire_in != 0, zap_in != 0
        fire = jnp.where(real, fire_down, True)
        zap = real & zap_down
        spinner = jnp.where(real, spinner_in, _demo_delta(s))
    else:
        applied = real & (playing | zooming)
        fire = fire_down = applied & (fire_in != 0)
        zap = zap_down = applied & (zap_in != 0)
        spinner = jnp.where(applied, spinner_in, 0)
    alive = s.player_state < 0x80
    old_score = s.score
    zap_was_down = s.zap_button
    presses = None
    if cabinet:
        presses = dict(fire=fire_down & ~s.fire_button, zap=zap_down & ~s.zap_button,
                       start=(start_in != 0) & ~s.start_button,
                       coin=(coin_in != 0) & ~s.coin_button)
        s = s.replace(start_button=start_in != 0, coin_button=coin_in != 0)
    points = _i32(0)
    s = s.replace(ticks=s.ticks + 1, timectr=(s.timectr + 1) & 0xFF)

    # 1. Player movement (play, zoom, delays and the zoom onto a new tube).
    moves = alive & (playing | zooming | (gs == GS_DELAY) | (gs == GS_ZOOM_ONTO_NEW))
    position = jnp.where(moves, move_player(s.position, spinner, s.is_open), s.position)
    lane = position >> 4
    s = s.replace(position=position, player_lane=jnp.where(moves, lane, s.player_lane),
                  player_state=jnp.where(moves, (lane + 1) & 15, s.player_state))

    # 2. Fire: one new shot per tick in the highest free slot, tested at once against enemies.
    act = alive & (playing | zooming)
    new_shot = last_true(s.shot_depth == 0) & fire & act
    s = s.replace(shot_depth=jnp.where(new_shot, s.player_along >> 8, s.shot_depth),
                  shot_lane=jnp.where(new_shot, s.player_lane, s.shot_lane),
                  shot_hits=jnp.where(new_shot, 0, s.shot_hits),
                  fire_button=fire_down, zap_button=zap_down)
    split = jnp.zeros(NUM_SLOTS, bool)
    s, pts, killed_new, split = _shot_hits(s, new_shot & playing, p, r, split)
    points += pts

    # 3. Superzapper: a new press starts it (two uses a level); kills on even timer values.
    zap_running = (s.zap_timer > 0) & (s.zap_timer != ZAP_DISABLED)
    zt = jnp.where(zap_running, s.zap_timer + 1, s.zap_timer)
    e = s.enemies
    kill_tick = zap_running & (zt >= 4) & ((zt & 1) == 0)
    active = e.along > 0
    live_slots = bits_of(active)
    has_victim = live_slots != 0
    zap_victim = mask_of(highest_bit(live_slots), NUM_SLOTS) & kill_tick
    points += jnp.sum(jnp.where(zap_victim, jnp.asarray(W.ZAP_POINTS)[e.kind], 0))
    e = e.replace(along=jnp.where(zap_victim, 0, e.along))
    zap_length = jnp.where(s.zap_uses <= 1, ZAP_LENGTH_FIRST, ZAP_LENGTH_SECOND)
    zt = jnp.where(zap_running & ((zt >= zap_length) | (kill_tick & ~has_victim)), 0, zt)
    press = zap & ~zap_was_down & act & playing & (zt == 0)
    pressed_ok = press & (s.zap_uses < 2)
    s = s.replace(enemies=e, zap_timer=jnp.where(pressed_ok, 1, zt),
                  zap_uses=jnp.where(pressed_ok, s.zap_uses + 1, s.zap_uses),
                  explosion=jnp.where(jnp.any(zap_victim),
                                      jnp.maximum(s.explosion, EXPLOSION_TICKS_ENEMY),
                                      s.explosion))
    zap_running = (s.zap_timer > 0) & (s.zap_timer != ZAP_DISABLED)

    # 4. Pending enemies enter the tube (not while zapping or with every slot busy).
    in_play = playing & alive
    s = _hatch(s, p, r, in_play & ~zap_running)

    # 5. Enemy programs and the pulse clock.
    e_moved, spikes, kill_state, auto_split = _move_enemies(s, p, r)
    s = s.replace(enemies=jax.tree.map(lambda a, b: jnp.where(in_play, a, b), e_moved,
                                       s.enemies),
                  spikes=jnp.where(in_play, spikes, s.spikes))
    split = split | (auto_split & in_play)
    clock = jnp.where(playing, s.pulse_clock + s.pulse_inc, s.pulse_clock)
    flip_inc = (clock >= 15) | (clock < -63)
    s = s.replace(pulse_clock=clock,
                  pulse_inc=jnp.where(playing & flip_inc, -s.pulse_inc, s.pulse_inc))

    # 6. Shots move: player shots (spikes), then enemy shots (a shot passing the rim in the
    #    player's lane kills).
    moved, spike_points = _move_player_shots(s)
    s = s.replace(**{k: jnp.where(playing | zooming, getattr(moved, k), getattr(s, k))
                     for k in ("spikes", "shot_depth", "shot_hits")})
    points += jnp.where(playing | zooming, spike_points, 0)
    epos = jnp.where(s.eshot_pos > 0, s.eshot_pos + p["speed_shot"], 0)
    passing = (s.eshot_pos > 0) & (epos < RIM * ONE)
    shot_kill = jnp.any(passing & (s.eshot_lane == s.player_lane)) & alive
    s = s.replace(eshot_pos=jnp.where(playing, jnp.where(passing, 0, epos), s.eshot_pos))
    kill_state = jnp.where(in_play & (kill_state != 0), kill_state,
                           jnp.where(playing & shot_kill, PLAYER_STATE_KILLED, 0))

    # 7. Enemy fire: each eligible enemy (deep enough, not flipping, hold-off over) gets its
    #    own chance, which falls with the number of enemy shots on screen, each new shot
    #    included; enemies in slot order from the highest, up to the wave's maximum of shots.
    s = s.replace(**_enemy_fire(s, p, r, in_play))

    # 8. Collisions: player shots vs enemies, then vs enemy shots.
    s, pts, killed, split = _shot_hits(s, jnp.full(NUM_SHOTS, True) & playing, p, r, split)
    points += pts
    met = _shot_vs_shot(s, p)
    s = s.replace(shot_depth=jnp.where(playing, met.shot_depth, s.shot_depth),
                  eshot_pos=jnp.where(playing, met.eshot_pos, s.eshot_pos))
    s = s.replace(enemies=_apply_splits(s.enemies, split & playing, p, s.is_open))

    # 9. Explosions, score, bonus lives.
    explosion = jnp.maximum(s.explosion - 1, 0)
    explosion = jnp.where(killed | killed_new | jnp.any(split),
                          jnp.maximum(explosion, EXPLOSION_TICKS_ENEMY), explosion)
    dies = alive & (kill_state != 0)
    explosion = jnp.where(dies, jnp.where(kill_state == PLAYER_STATE_GRABBED,
                                          EXPLOSION_TICKS_GRAB, EXPLOSION_TICKS_PLAYER),
                          explosion)
    new_score = old_score + points
    s = s.replace(score=new_score % SCORE_MODULUS,
                  lives=bonus_lives(old_score, new_score, s.lives), explosion=explosion,
                  player_state=jnp.where(dies, kill_state, s.player_state))
    return _analyse(s, p, r, old_alive=alive, gs=gs, presses=presses)


def _enemy_fire(s: GameState, p, r, in_play) -> dict:
    """New enemy shots and hold-offs (fields to replace).

    An enemy fires when its draw is below the chance for the shots then on screen, and the
    wave's maximum is not reached. The chance falls as shots are added, so an enemy fires
    exactly when fewer than its `limit` shots are on screen before it (limit = the number of
    chance steps its draw passes, capped by the maximum). Then the k-th new shot goes to the
    highest slot, below the (k-1)-th shooter, whose limit exceeds the shots already on screen
    plus k: one integer step per possible new shot (at most 4), with one reduction for the
    slot masks of all of them. New shots take the free shot slots from the lowest."""
    e = s.enemies
    deep = (e.along > 0) & ((e.along >> 8) >= 0x30)
    holdoff = jnp.where(deep & in_play, e.holdoff - 1, e.holdoff)
    eligible = deep & e.can_fire & ~e.flipping & (holdoff < 0) & in_play
    draw = r[32:32 + NUM_SLOTS]
    passes = sum((draw < int(chance)).astype(jnp.int32) for chance in ENEMY_FIRE_CHANCE)
    limit = jnp.where(eligible, jnp.minimum(passes, p["max_shots"]), 0)
    free = bits_of(s.eshot_pos == 0)
    on_screen = NUM_ENEMY_SHOTS - jax.lax.population_count(free)
    # firing[k]: the slots that fire with on_screen + k shots up.
    firing = bits_of(limit > (on_screen + jnp.arange(NUM_ENEMY_SHOTS))[:, None])
    allowed, taken, fired, picks, slots = (1 << NUM_SLOTS) - 1, 0, 0, [], []
    for k in range(NUM_ENEMY_SHOTS):
        pick = highest_bit(firing[k] & allowed)
        slot = jnp.where(pick != 0, lowest_bit(free & ~taken), 0)
        allowed = jnp.where(pick != 0, pick - 1, 0)
        taken, fired = taken | slot, fired | pick
        picks.append(pick)
        slots.append(slot)
    # The k-th new shot's depth and lane come from its enemy and go into its slot.
    shooter = mask_of(jnp.stack(picks), NUM_SLOTS)                    # [k, enemy]
    into = mask_of(jnp.stack(slots), NUM_ENEMY_SHOTS)                  # [k, shot slot]
    along = jnp.sum(jnp.where(shooter, e.along, 0), axis=-1)
    lane = jnp.sum(jnp.where(shooter, e.lane, 0), axis=-1)
    new = mask_of(taken, NUM_ENEMY_SHOTS)
    return dict(eshot_pos=jnp.where(new, jnp.sum(jnp.where(into, along[:, None], 0), axis=0),
                                    s.eshot_pos),
                eshot_lane=jnp.where(new, jnp.sum(jnp.where(into, lane[:, None], 0), axis=0),
                                     s.eshot_lane),
                enemies=e.replace(holdoff=jnp.where(mask_of(fired, NUM_SLOTS), p["holdoff"],
                                                    holdoff)))


def _analyse(s: GameState, p, r, old_alive, gs, presses=None) -> GameState:
    """End-of-tick work: death sequence, level end, zoom, and the non-play game states.
    `presses` (new presses of fire, zap, start and coin) is given for a cabinet."""
    playing, zooming = gs == GS_PLAYING, gs == GS_ZOOM
    alive = s.player_state < 0x80
    e = s.enemies
    active = e.along > 0
    no_shots = ~jnp.any(s.shot_depth > 0) & ~jnp.any(s.eshot_pos > 0)

    # Zoom down the tube: advance, accelerate; a spike tip above the player kills.
    zoom_alive = zooming & alive
    along = jnp.where(zoom_alive, s.player_along + s.zoom_speed, s.player_along)
    speed = jnp.where(zoom_alive, s.zoom_speed + p["zoom_accel"], s.zoom_speed)
    depth = along >> 8
    tip = lookup(s.spikes, s.player_lane)
    spiked = zoom_alive & (depth < FAR_END) & (tip > 0) & (tip < depth)
    off_end = zoom_alive & ~spiked & (depth >= FAR_END)
    s = s.replace(player_along=jnp.where(off_end, 0xFF * ONE, along), zoom_speed=speed,
                  player_state=jnp.where(spiked, PLAYER_STATE_KILLED, s.player_state),
                  explosion=jnp.where(spiked, EXPLOSION_TICKS_PLAYER, s.explosion),
                  shot_depth=jnp.where(spiked, 0, s.shot_depth))
    alive = s.player_state < 0x80

    # Death sequence (in play or zoom): wait for shots and explosions, then slide.
    dead = (playing | zooming) & ~alive
    quiet = dead & no_shots & (s.explosion == 0)
    start_slide = quiet & (s.slide < 0)
    slide_len = jnp.where(s.lives > 1, DEATH_SLIDE_TICKS, LAST_LIFE_PULLBACK_TICKS)
    slide = jnp.where(start_slide, slide_len, s.slide)
    sliding = quiet & (slide > 0)
    # Enemies sink 0x0F a tick and leave their slots at the far end; the counters keep them
    # for the pending queue.
    pushed = e.along + DEATH_SLIDE_STEP * ONE
    pushed = jnp.where(pushed >= FAR_END * ONE, 0, pushed)
    e = e.replace(along=jnp.where(sliding & active, pushed, e.along))
    sink = sliding & (s.lives > 1)
    s = s.replace(enemies=e, slide=jnp.where(sliding, slide - 1, slide),
                  player_along=jnp.where(sink, jnp.minimum(s.player_along
                                                           + DEATH_SLIDE_STEP * ONE,
                                                           0xFF * ONE), s.player_along))
    to_death = quiet & (slide == 0)

    # Level end: nothing pending, no explosions, every enemy on the rim (or none).
    e = s.enemies
    active = e.along > 0
    clear = (playing & alive & (pending_count(s) == 0) & (s.explosion == 0)
             & ~jnp.any(active & ((e.along >> 8) >= 0x11)))
    # Two plain sums: stacked into one [2, 7] reduction they made the tick ~40% slower on CPU.
    on_top = jnp.sum(active & e.chaser)
    in_tube = jnp.sum(active) - on_top
    # The enemy counters follow the slots in every tick that began with the player alive.
    # After a death they keep their count: the death slide takes enemies off the screen, and
    # the counters say how many go back to the pending queue at 0x06 (which, like a new level,
    # empties them).
    s = s.replace(in_tube=jnp.where(old_alive, in_tube, s.in_tube),
                  on_top=jnp.where(old_alive, on_top, s.on_top))
    avoid_spikes = clear & jnp.any(s.spikes > 0) & (s.level <= AVOID_SPIKES_LAST_LEVEL0)

    # Next-state logic for the non-play states.
    # The delay counts $0004 down and ends on the tick it reaches 0 (at once when it is 0):
    # a delay of n ticks shows n frames in 0x0A, one for a delay of 0.
    cabinet = presses is not None
    real = (s.game_mode & 0x80) != 0
    counting = (gs == GS_DELAY)
    if cabinet:
        counting = counting & (~s.delay_halved | ((s.timectr & 1) == 0))
    countdown = s.countdown
    delay_over = counting & (countdown <= 1)
    countdown = jnp.where(counting & (countdown > 0), countdown - 1, countdown)
    lives_after = s.lives - 1
    death_state = gs == GS_DEATH
    last_death = death_state & (lives_after <= 0)
    carried = jnp.minimum(pending_count(s) + s.in_tube + s.on_top, 63)
    lanes = r[:NUM_PENDING] & 15
    zoom_in_done = (gs == GS_ZOOM_ONTO_NEW) & (s.zoom_in_left <= 1)
    new_game = gs == GS_NEW_GAME
    flow = [(to_death, GS_DEATH), (avoid_spikes, GS_DELAY), (clear, GS_ZOOM),
            (off_end, GS_ZOOM_OFF_END), (death_state & ~last_death, GS_DELAY)]
    delays = [(avoid_spikes, GS_ZOOM, AVOID_SPIKES_TICKS), (death_state, GS_LEVEL_STARTUP, 0),
              (gs == GS_DELAY_THEN_PLAY, GS_PLAYING, START_DELAY_TICKS)]
    if cabinet:
        c = _cabinet(s, gs, presses)
        # A real game's last death runs the game-over step at once: the level reached is
        # kept for the next level select, then the high-score check; a demo ends.
        flow = [(c["start"], GS_NEW_GAME), *flow,
                (last_death, jnp.where(real, GS_HIGH_SCORE_CHECK, GS_ATTRACT)),
                (delay_over, s.next_state),
                (gs == GS_LEVEL_STARTUP, GS_DELAY_THEN_PLAY),
                (gs == GS_DELAY_THEN_PLAY, GS_DELAY), (gs == GS_ZOOM_OFF_END, GS_ZOOM_ONTO_NEW),
                (zoom_in_done, jnp.where(real, GS_PLAYING, GS_GAME_OVER)),
                (gs == GS_GAME_OVER, jnp.where(real, GS_HIGH_SCORE_CHECK, GS_ATTRACT)),
                (new_game, jnp.where(real, GS_LEVEL_SELECT, GS_LEVEL_STARTUP)),
                (c["selected"], GS_LEVEL_STARTUP),
                (gs == GS_HIGH_SCORE_CHECK,
                 jnp.where(c["high_score"], GS_HIGH_SCORE_EFFECT, GS_ATTRACT)),
                (gs == GS_HIGH_SCORE_EFFECT, GS_ENTER_INITIALS),
                (c["initials_done"], GS_ATTRACT),
                (gs == GS_ATTRACT, GS_DELAY), (gs == GS_LOGO, GS_DELAY)]
        delays += [(gs == GS_ATTRACT, GS_LOGO, ATTRACT_SCREEN_DELAY),
                   (gs == GS_LOGO, GS_NEW_GAME, LOGO_DELAY)]
        # 0x00: a real game goes to the level select on level 1's tube, a demo game starts on
        # a random level 1..8 with one life.
        new_level = jnp.select([new_game & real, new_game, c["selected"]],
                               [0, (r[3] >> 5) % DEMO_LEVELS, c["start_level"]],
                               jnp.minimum(s.level + 1, 98))
        new_lives = jnp.where(real, START_LIVES, DEMO_LIVES)
        new_bonus = _i32(0)
    else:
        flow += [(last_death, GS_GAME_OVER), (delay_over, s.next_state),
                 (gs == GS_LEVEL_STARTUP, GS_DELAY_THEN_PLAY),
                 (gs == GS_DELAY_THEN_PLAY, GS_DELAY), (gs == GS_ZOOM_OFF_END, GS_ZOOM_ONTO_NEW),
                 (zoom_in_done, GS_PLAYING), (gs == GS_GAME_OVER, GS_NEW_GAME),
                 (new_game, GS_LEVEL_STARTUP)]
        new_level = jnp.where(new_game, s.start_level, jnp.minimum(s.level + 1, 98))
        new_lives = _i32(START_LIVES)
        new_bonus = _start_entry(s.start_level)
    next_gs = jnp.select([cond for cond, _ in flow], [state for _, state in flow], gs)
    next_state = jnp.select([cond for cond, _, _ in delays], [n for _, n, _ in delays],
                            s.next_state)
    countdown = jnp.select([cond for cond, _, _ in delays], [t for _, _, t in delays],
                           countdown)

    clear_shots = to_death | clear
    s = s.replace(
        gamestate=next_gs, next_state=next_state, countdown=countdown,
        shot_depth=jnp.where(clear_shots, 0, s.shot_depth),
        eshot_pos=jnp.where(clear_shots, 0, s.eshot_pos),
        zap_timer=jnp.where(clear, ZAP_DISABLED, s.zap_timer),
        zoom_speed=jnp.where(clear, ZOOM_START_SPEED, s.zoom_speed),
        player_along=jnp.where(clear, RIM * ONE, s.player_along),
        slide=jnp.where(to_death, -1, s.slide))

    # 0x06: lose a life; the enemies still alive go back to the pending queue.
    vid, seg = pending_queue(carried, lanes)
    if cabinet:
        game_mode = jnp.where(c["start"], GAME_MODE_REAL,
                              jnp.where(gs == GS_ATTRACT, 0, s.game_mode))
    else:
        game_mode = jnp.where(last_death, 0, jnp.where(new_game, GAME_MODE_REAL, s.game_mode))
    s = s.replace(
        lives=jnp.where(death_state, lives_after, s.lives),
        pending_vid=jnp.where(death_state, vid, s.pending_vid),
        pending_seg=jnp.where(death_state, seg, s.pending_seg),
        enemies=jax.tree.map(lambda a, b: jnp.where(death_state, a, b), empty_enemies(),
                             s.enemies),
        eshot_pos=jnp.where(death_state, 0, s.eshot_pos),
        in_tube=jnp.where(death_state, 0, s.in_tube), on_top=jnp.where(death_state, 0, s.on_top),
        shot_depth=jnp.where(death_state, 0, s.shot_depth),
        game_mode=game_mode)
    if cabinet:
        # The attract screen's delay counts every other tick; the other delays every tick.
        sets_delay = jnp.any(jnp.stack([cond for cond, _, _ in delays]))
        s = s.replace(**c["fields"],
                      last_level=jnp.where(last_death & real, s.level, s.last_level),
                      delay_halved=jnp.where(sets_delay, gs == GS_ATTRACT, s.delay_halved))

    # 0x02: a life begins: player on the rim at 0xF0; the pulse clock restarts.
    startup = gs == GS_LEVEL_STARTUP
    s = s.replace(
        position=jnp.where(startup, PLAYER_START_POSITION, s.position),
        player_lane=jnp.where(startup, PLAYER_START_POSITION >> 4, s.player_lane),
        player_state=jnp.where(startup, 0x0F, s.player_state),
        player_along=jnp.where(startup | (gs == GS_ZOOM_ONTO_NEW), RIM * ONE, s.player_along),
        pulse_clock=jnp.where(startup, -1, s.pulse_clock),
        pulse_inc=jnp.where(startup, p["pulse_inc"], s.pulse_inc),
        zoom_in_left=jnp.where(gs == GS_ZOOM_ONTO_NEW, s.zoom_in_left - 1, s.zoom_in_left))

    # 0x0E: the first level completed pays the start-level bonus (once).
    zoomed_off = gs == GS_ZOOM_OFF_END
    bonus = jnp.where(zoomed_off, jnp.asarray(W.START_BONUS)[s.start_bonus], 0)
    s = s.replace(score=(s.score + bonus) % SCORE_MODULUS,
                  lives=bonus_lives(s.score, s.score + bonus, s.lives),
                  start_bonus=jnp.where(zoomed_off, 0, s.start_bonus))

    # 0x0E (next level), 0x00 (new game) and a level-select choice: initialise the level.
    init = zoomed_off | new_game
    if cabinet:
        init = init | c["selected"]
    leveled = _level_init(s, new_level, lanes)
    shape = jnp.asarray(shapes.SHAPE_OF_SLOT)[leveled.level % 16]
    leveled = leveled.replace(zoom_in_left=jnp.asarray(shapes.ZOOM_IN_TICKS)[shape])
    new_game_fields = dict(score=_i32(0), start_bonus=new_bonus, lives=new_lives,
                           position=_i32(0), player_lane=_i32(0), player_state=_i32(0))
    fresh = leveled.replace(**{k: jnp.where(new_game, v, getattr(leveled, k))
                               for k, v in new_game_fields.items()})
    return jax.tree.map(lambda a, b: jnp.where(init, a, b), fresh, s)


def _cabinet(s: GameState, gs, presses) -> dict:
    """A cabinet's work in this tick around play: credits, the start button, the level select,
    the high-score check and the initials entry. Returns the transitions' conditions (start,
    selected, high_score, initials_done), the chosen start level, and the fields to replace."""
    # Coins buy credits; with a credit, start begins a game whenever none is running.
    credits = jnp.minimum(s.credits + presses["coin"], MAX_CREDITS)
    start = presses["start"] & (credits > 0) & ((s.game_mode & 0x40) == 0)
    credits = credits - start
    # 0x00 of a real game sets up the level select: entries up to the last game's level,
    # at least up to level 9; 10 seconds to choose.
    offered = jnp.sum(jnp.asarray(W.START_LEVELS) <= s.last_level) - 1
    setup = (gs == GS_NEW_GAME) & ((s.game_mode & 0x80) != 0)
    max_start = jnp.where(setup, jnp.maximum(offered, MIN_START_ENTRY), s.max_start)
    select_left = jnp.where(setup, LEVEL_SELECT_TICKS,
                            jnp.where(gs == GS_LEVEL_SELECT, s.select_left - 1, s.select_left))
    # 0x16: fire or zap takes the entry under the cursor ($0200), or the time runs out.
    selecting = gs == GS_LEVEL_SELECT
    selected = selecting & (presses["fire"] | presses["zap"] | (select_left <= 0))
    entry = jnp.clip(s.player_lane, 0, s.max_start)
    # 0x10: a score above the table's last one takes its place in the table.
    rank = jnp.sum(s.high_scores >= s.score)
    checking = gs == GS_HIGH_SCORE_CHECK
    high_score = checking & (rank < NUM_HIGH_SCORES)
    places = jnp.arange(NUM_HIGH_SCORES)
    shifted = jnp.concatenate([s.high_scores[:1], s.high_scores[:-1]])
    table = jnp.where(places < rank, s.high_scores,
                      jnp.where(places == rank, s.score, shifted))
    # 0x12: each new fire press takes a letter; three letters, or the time-out, end it.
    entering = gs == GS_ENTER_INITIALS
    initials = jnp.where(high_score, 0, s.initials + (entering & presses["fire"]))
    initials_left = jnp.where(
        high_score, INITIALS_TIMEOUT,
        s.initials_left - (entering & ((s.timectr % INITIALS_TIMEOUT_PERIOD) == 0)))
    initials_done = entering & ((initials >= INITIALS_LETTERS) | (initials_left <= 0))
    fields = dict(credits=credits, max_start=max_start, select_left=select_left,
                  high_scores=jnp.where(high_score, table, s.high_scores),
                  initials=initials, initials_left=initials_left,
                  start_bonus=jnp.where(selected, entry, s.start_bonus))
    return dict(start=start, selected=selected, high_score=high_score,
                initials_done=initials_done, start_level=jnp.asarray(W.START_LEVELS)[entry],
                fields=fields)
