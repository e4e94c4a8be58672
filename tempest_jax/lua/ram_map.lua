-- Tempest RAM addresses, mirrored from tempest_jax/sim/ram_map.py (names and values identical;
-- tests/test_lua.py compares the two). Arrays are base addresses; slot k is at base + k, with
-- the length in the comment.

local ram_map = {}

ram_map.RAM_SIZE = 0x400
ram_map.GAMESTATE = 0x0000
ram_map.NEXT_GAMESTATE = 0x0002  -- state entered when a delay (0x0A) ends
ram_map.TIMECTR = 0x0003
ram_map.COUNTDOWN_TIMER = 0x0004
ram_map.GAME_MODE = 0x0005
ram_map.CREDITS = 0x0006
ram_map.P1_SCORE_L = 0x0040  -- BCD pairs: low = units/tens, mid, high = 10^4/10^5
ram_map.P1_SCORE_M = 0x0041
ram_map.P1_SCORE_H = 0x0042
ram_map.P1_LEVEL = 0x0046
ram_map.P1_LIVES = 0x0048
ram_map.ZAP_FIRE_DEBOUNCE = 0x004D  -- fire 0x10, zap 0x08
ram_map.SPINNER_DELTA = 0x0050
ram_map.POSITION = 0x0051  -- player position accumulator; lane = value >> 4
ram_map.CURLEVEL = 0x009F
ram_map.PULSAR_FLIPRATE = 0x00B2
ram_map.START_BONUS_ENTRY = 0x0102  -- start-table entry whose bonus the first level pays
ram_map.NUM_ENEMIES_IN_TUBE = 0x0108
ram_map.NUM_ENEMIES_ON_TOP = 0x0109
ram_map.OPEN_LEVEL = 0x0111
ram_map.CURTUBE = 0x0112
ram_map.ZAP_RUNNING = 0x0125
ram_map.LAST_COMPLETED_LEVEL = 0x0126  -- 0-based level the last game reached (level select)
ram_map.MAX_START_INDEX = 0x0127  -- highest start-table entry the level select offers
ram_map.PLAYER_SHOT_COUNT = 0x0135
ram_map.AVL_FLIPPERS = 0x013D  -- 5 bytes: flipper, pulsar, tanker, spiker, fuseball
ram_map.N_FLIPPERS = 0x0142  -- 5 bytes, same order
ram_map.PULSE_BEAT = 0x0147
ram_map.PULSING = 0x0148
ram_map.FLIPPER_MOVE = 0x015D
ram_map.FUSE_MOVE_PRB = 0x015F
ram_map.SPEED_LSB = 0x0160  -- 5 bytes, same type order
ram_map.SPEED_MSB = 0x0165
ram_map.PLAYER_SEG = 0x0200
ram_map.PLAYER_STATE = 0x0201
ram_map.PLAYER_ALONG = 0x0202
ram_map.PENDING_SEG = 0x0203  -- 64
ram_map.PENDING_VID = 0x0243  -- 64
ram_map.ENEMY_TYPE_INFO = 0x0283  -- 7
ram_map.ACTIVE_ENEMY_INFO = 0x028A  -- 7
ram_map.ENEMY_ALONG_LSB = 0x029F  -- 7, depth fraction
ram_map.PLAYER_SHOT_SEGMENTS = 0x02AD  -- 8
ram_map.ENEMY_SHOT_SEGMENTS = 0x02B5  -- 4
ram_map.ENEMY_SEG = 0x02B9  -- 7
ram_map.MORE_ENEMY_INFO = 0x02CC  -- 7
ram_map.PLAYER_SHOT_POSITIONS = 0x02D3  -- 8
ram_map.ENEMY_SHOT_POSITIONS = 0x02DB  -- 4
ram_map.ENEMY_ALONG = 0x02DF  -- 7
ram_map.ENM_SHOT_LSB = 0x02E6  -- 4
ram_map.ZAP_USES = 0x03AA
ram_map.ENEMIES_PENDING = 0x03AB
ram_map.LANE_SPIKE_HEIGHT = 0x03AC  -- 16
ram_map.TUBE_X = 0x03CE  -- 16
ram_map.TUBE_Y = 0x03DE  -- 16
ram_map.TUBE_ANGLE = 0x03EE  -- 16
ram_map.NUM_PENDING = 64

return ram_map
