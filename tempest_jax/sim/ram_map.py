"""Tempest RAM addresses the simulator writes and the extraction reads.

The one place these addresses live on the Python side; `lua/ram_map.lua` mirrors this module.
Names follow the reference RAM map (`reference/state_vector.md` §1 and the appendix of
`reference/game_rules_enemies.md`). Arrays are given as (base, length); slot k is at base + k.
"""

from __future__ import annotations

RAM_SIZE = 0x400

GAMESTATE = 0x0000
NEXT_GAMESTATE = 0x0002          # state entered when a delay (0x0A) ends
TIMECTR = 0x0003
COUNTDOWN_TIMER = 0x0004
GAME_MODE = 0x0005
CREDITS = 0x0006
P1_SCORE_L = 0x0040              # BCD pairs: low = units/tens, mid, high = 10^4/10^5
P1_SCORE_M = 0x0041
P1_SCORE_H = 0x0042
P1_LEVEL = 0x0046
P1_LIVES = 0x0048
ZAP_FIRE_DEBOUNCE = 0x004D       # fire 0x10, zap 0x08
SPINNER_DELTA = 0x0050
POSITION = 0x0051                # player position accumulator; lane = value >> 4
CURLEVEL = 0x009F
PULSAR_FLIPRATE = 0x00B2
START_BONUS_ENTRY = 0x0102      # start-table entry whose bonus the first level pays (0: none)
NUM_ENEMIES_IN_TUBE = 0x0108
NUM_ENEMIES_ON_TOP = 0x0109
OPEN_LEVEL = 0x0111
CURTUBE = 0x0112
ZAP_RUNNING = 0x0125
LAST_COMPLETED_LEVEL = 0x0126     # 0-based level the last game reached (level select's limit)
MAX_START_INDEX = 0x0127         # highest start-table entry the level select offers
PLAYER_SHOT_COUNT = 0x0135
AVL_FLIPPERS = 0x013D            # 5 bytes: flipper, pulsar, tanker, spiker, fuseball
N_FLIPPERS = 0x0142              # 5 bytes, same order
PULSE_BEAT = 0x0147
PULSING = 0x0148
FLIPPER_MOVE = 0x015D
FUSE_MOVE_PRB = 0x015F
SPEED_LSB = 0x0160               # 5 bytes, same type order
SPEED_MSB = 0x0165
PLAYER_SEG = 0x0200
PLAYER_STATE = 0x0201
PLAYER_ALONG = 0x0202
PENDING_SEG = 0x0203             # 64
PENDING_VID = 0x0243             # 64
ENEMY_TYPE_INFO = 0x0283         # 7
ACTIVE_ENEMY_INFO = 0x028A       # 7
ENEMY_ALONG_LSB = 0x029F         # 7, depth fraction
PLAYER_SHOT_SEGMENTS = 0x02AD    # 8
ENEMY_SHOT_SEGMENTS = 0x02B5     # 4
ENEMY_SEG = 0x02B9               # 7
MORE_ENEMY_INFO = 0x02CC         # 7
PLAYER_SHOT_POSITIONS = 0x02D3   # 8
ENEMY_SHOT_POSITIONS = 0x02DB    # 4
ENEMY_ALONG = 0x02DF             # 7
ENM_SHOT_LSB = 0x02E6            # 4
ZAP_USES = 0x03AA
ENEMIES_PENDING = 0x03AB
LANE_SPIKE_HEIGHT = 0x03AC       # 16
TUBE_X = 0x03CE                  # 16
TUBE_Y = 0x03DE                  # 16
TUBE_ANGLE = 0x03EE              # 16

NUM_PENDING = 64
