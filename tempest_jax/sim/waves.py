"""Per-wave (per-level) parameters of the real game, as one integer table.

Values from `reference/game_rules_enemies.md` §1–§2 (medium difficulty). Row = 0-based level
0..98; the real game randomises the parameters from level 99 on, the simulator keeps level 99's
row (levels stop advancing there anyway). Speeds are in 1/256 depth units per tick (the game's
16-bit speed = speed byte × 8), negative = toward the rim.
"""

from __future__ import annotations

import numpy as np

NUM_LEVELS = 99
NUM_TYPES = 5
FLIPPER, PULSAR, TANKER, SPIKER, FUSEBALL = range(NUM_TYPES)
# Tanker cargo codes (active_enemy_info bits 0-1) and the enemy type each one releases.
CARGO_NONE, CARGO_FLIPPERS, CARGO_PULSARS, CARGO_FUSEBALLS = range(4)
TYPE_OF_CARGO = np.array([FLIPPER, FLIPPER, PULSAR, FUSEBALL], dtype=np.int32)

PULSAR_SPEED = -0x160                      # 0xFEA0: -1.375 units/tick on every wave
POINTS = np.array([150, 200, 100, 50, 250], dtype=np.int32)   # fuseball: see FUSEBALL_POINTS
ZAP_POINTS = np.array([150, 200, 100, 50, 150], dtype=np.int32)
INITIAL_SPIKE = np.array([0, 0, 0, 0xE0, 0xD8, 0xD4, 0xD0, 0xC8, 0xC0, 0xB8, 0xB0, 0xA8,
                          0xA0, 0xA0, 0xA0, 0xA8], dtype=np.int32)
TOTAL_1_16 = (10, 12, 15, 17, 20, 22, 20, 24, 27, 29, 27, 24, 26, 28, 30, 27)
FLIPPER_BYTE_9_16 = (-81, -84, -84, -84, -88, -92, -96, -96)
MAX_SHOTS_1_9 = (2, 2, 2, 3, 4, 3, 3, 4, 4)

# Flipper climbing programs, by the wave's position in its 16-wave block (enemies sheet §2.2).
PATTERN_STRAIGHT, PATTERN_CLIMB_FLIP, PATTERN_SPIRAL, PATTERN_REVERSING, PATTERN_SPIKE_AWARE, \
    PATTERN_AVOIDER = range(6)
PATTERN_OF_BLOCK_POS = (PATTERN_STRAIGHT, PATTERN_CLIMB_FLIP, PATTERN_SPIRAL, PATTERN_REVERSING,
                        PATTERN_SPIKE_AWARE, PATTERN_CLIMB_FLIP, PATTERN_REVERSING, PATTERN_SPIRAL,
                        PATTERN_SPIKE_AWARE, PATTERN_AVOIDER, PATTERN_REVERSING, PATTERN_SPIRAL,
                        PATTERN_SPIKE_AWARE, PATTERN_STRAIGHT, PATTERN_AVOIDER, PATTERN_REVERSING)

# The level-select (start-level) table: entry -> 0-based start level, and the bonus paid when
# that first level is completed.
START_LEVELS = np.array([0, 2, 4, 6, 8, 10, 12, 14, 16, 19, 21, 23, 25, 27, 30, 32, 35, 39,
                         43, 46, 48, 51, 55, 59, 62, 64, 72, 80], dtype=np.int32)
START_BONUS = np.array([0, 6_000, 16_000, 32_000, 54_000, 74_000, 94_000, 114_000, 134_000,
                        152_000, 170_000, 188_000, 208_000, 226_000, 248_000, 266_000, 300_000,
                        340_000, 382_000, 415_000, 439_000, 472_000, 531_000, 581_000, 624_000,
                        656_000, 766_000, 898_000], dtype=np.int32)
# 0-based level -> its start-table entry (0 where the table does not offer that level).
START_ENTRY_OF_LEVEL = np.zeros(NUM_LEVELS, dtype=np.int32)
START_ENTRY_OF_LEVEL[START_LEVELS] = np.arange(len(START_LEVELS), dtype=np.int32)

COLUMNS = (
    "total", "min_f", "min_p", "min_t", "min_s", "min_u", "max_f", "max_p", "max_t", "max_s",
    "max_u", "spike0", "cargo0", "cargo1", "cargo2", "cargo3", "flipper_byte", "speed_flipper",
    "speed_tanker", "speed_spiker", "speed_fuseball", "speed_shot", "hit_flipper",
    "hit_spiker", "hit_shot", "holdoff", "max_shots", "pulsar_delay", "fuse_threshold",
    "chase_flags", "pattern", "pulse_inc", "potency", "rim_flip_steps", "pulsar_can_fire",
    "zoom_accel",
)
COL = {name: i for i, name in enumerate(COLUMNS)}

# (first wave, last wave, {type: (min, max)}) in flipper, pulsar, tanker, spiker, fuseball order.
_MIX = (
    (1, 2, ((1, 4), (0, 0), (0, 0), (0, 0), (0, 0))),
    (3, 3, ((1, 4), (0, 0), (1, 1), (0, 0), (0, 0))),
    (4, 4, ((1, 4), (0, 0), (0, 0), (1, 2), (0, 0))),
    (5, 5, ((0, 5), (0, 0), (1, 1), (2, 3), (0, 0))),
    (6, 10, ((0, 5), (0, 0), (1, 2), (2, 4), (0, 0))),
    (11, 16, ((0, 5), (0, 0), (1, 2), (2, 3), (1, 1))),
    (17, 17, ((0, 3), (2, 5), (1, 1), (0, 0), (0, 0))),
    (18, 18, ((0, 3), (2, 3), (1, 1), (0, 0), (0, 0))),
    (19, 19, ((0, 3), (2, 2), (1, 1), (0, 0), (0, 0))),
    (20, 21, ((0, 4), (2, 2), (1, 1), (1, 2), (0, 0))),
    (22, 25, ((0, 4), (2, 2), (1, 1), (1, 2), (1, 1))),
    (26, 26, ((0, 5), (2, 2), (1, 1), (1, 1), (0, 0))),
    (27, 29, ((0, 5), (2, 2), (1, 1), (1, 2), (1, 1))),
    (30, 30, ((0, 5), (2, 3), (1, 1), (1, 1), (1, 1))),
    (31, 31, ((0, 5), (2, 4), (1, 1), (1, 1), (1, 1))),
    (32, 32, ((0, 5), (2, 2), (1, 1), (1, 2), (1, 1))),
    (33, 34, ((0, 5), (1, 3), (1, 2), (0, 0), (1, 4))),
    (35, 39, ((0, 5), (1, 3), (1, 2), (1, 0), (1, 4))),
    (40, 42, ((0, 5), (1, 3), (1, 2), (0, 0), (1, 3))),
    (43, 43, ((0, 5), (1, 3), (1, 2), (0, 1), (1, 3))),
    (44, 44, ((0, 5), (1, 3), (1, 2), (1, 1), (1, 3))),
    (45, 99, ((0, 5), (1, 3), (1, 3), (1, 1), (1, 3))),
)


def _total(w: int) -> int:
    if w <= 16:
        return TOTAL_1_16[w - 1]
    for lo, hi, base in ((17, 26, 20), (40, 48, 29), (49, 64, 31), (65, 80, 35), (81, 99, 43)):
        if lo <= w <= hi:
            return base + (w - lo)
    return 27                                   # waves 27-39


def _flipper_byte(w: int) -> int:
    if w <= 8:
        return -44 - 5 * (w - 1)
    if w <= 16:
        return FLIPPER_BYTE_9_16[w - 9]
    for lo, hi, base, step in ((17, 25, -81, 3), (26, 32, -99, 3), (33, 39, -108, 3),
                               (40, 48, -110, 1), (49, 64, -120, 1)):
        if lo <= w <= hi:
            return base - step * (w - lo)
    return -160 if w % 2 else -191


def _spiker_offset(w: int) -> int:
    return 0 if w <= 20 else -48 if w <= 32 else -40 if w <= 48 else -48


def _hit_range(speed: int) -> int:
    """Player-shot hit range for an enemy moving at `speed` (1/256 units per tick)."""
    k = -((speed) // 256)                     # -floor(units per tick)
    return (k + 12) // 2


def _pulsar_delay(w: int) -> int:
    if w < 17:
        return 255                              # no pulsars: the game leaves 255 there
    if w == 17:
        return 40
    if w == 18:
        return 20
    if w <= 32:
        return 20 if w % 2 else 40
    if w <= 39:
        return 20 - (w - 33)
    return 20 if w % 2 == 0 else 10


def _row(w: int) -> dict[str, int]:
    mix = next(m for lo, hi, m in _MIX if lo <= w <= hi)
    b = _flipper_byte(w)
    speed_flipper = b * 8
    speed_spiker = (b + _spiker_offset(w)) * 8
    speed_shot = (b - 64) * 8
    row = {
        "total": _total(w),
        "spike0": int(INITIAL_SPIKE[(w - 1) % 16]),
        "cargo0": CARGO_FLIPPERS, "cargo1": CARGO_FLIPPERS,
        "cargo2": CARGO_FLIPPERS if w <= 32 else CARGO_FUSEBALLS if w <= 40 else CARGO_PULSARS,
        "cargo3": CARGO_FLIPPERS if w <= 48 else CARGO_FUSEBALLS,
        "flipper_byte": b,
        "speed_flipper": speed_flipper, "speed_tanker": speed_flipper,
        "speed_spiker": speed_spiker, "speed_fuseball": 2 * speed_flipper,
        "speed_shot": speed_shot,
        "hit_flipper": _hit_range(speed_flipper), "hit_spiker": _hit_range(speed_spiker),
        "hit_shot": _hit_range(speed_shot),
        "holdoff": 80 - 3 * (w - 1) if w <= 20 else 20 if w <= 64 else 10,
        "max_shots": MAX_SHOTS_1_9[w - 1] if w <= 9 else 3 if w <= 64 else 4,
        "pulsar_delay": _pulsar_delay(w),
        "fuse_threshold": 220 if w <= 16 else 192 if w <= 39 else 192 + (w - 40) if w <= 64
        else 230,
        "chase_flags": 0 if w <= 16 else (0x00 if w % 2 else 0x40) if w <= 32
        else (0x40 if w % 2 else 0xC0) if w <= 48 else 0xC0,
        "pattern": PATTERN_OF_BLOCK_POS[(w - 1) % 16],
        "pulse_inc": 4 if w <= 48 else 6 if w <= 64 else 8,
        "potency": 0xA0 if w <= 64 else 0xC0,
        "rim_flip_steps": 2 if w <= 32 else 3,
        "pulsar_can_fire": int(w >= 60),
        "zoom_accel": min((4 * (w - 1)) & 0xFF, 0x30) + 0x20,
    }
    for t, key in enumerate("fptsu"):
        row[f"min_{key}"], row[f"max_{key}"] = mix[t]
    return row


WAVE_TABLE = np.array([[_row(w)[c] for c in COLUMNS] for w in range(1, NUM_LEVELS + 1)],
                      dtype=np.int32)
