-- RAM image -> game state: decodes the Tempest RAM bytes into a snapshot (state.read) and
-- builds the 195-value state vector from it (state.vector), following docs/extraction.md and
-- reference/state_vector.md exactly.
--
-- Exactness: every normalised value is computed as ONE division of two exact integers
-- (fractional lanes are kept as a numerator/denominator pair until that division), so the
-- float32 the wire carries is the correctly rounded quotient whichever side computes it. A
-- double quotient rounded to float32 equals the float32 quotient (53 >= 2 * 24 + 2 bits).

local features = require("features")
local ram_map = require("ram_map")

local state = {}

local NUM_LANES = features.NUM_LANES
local INVALID = features.INVALID_LANE
local NO_THREAT = features.NO_THREAT
local relative_lane = features.relative_lane

local RIM = 0x10
local PULSAR, FUSEBALL = 1, 4

local function bcd_pair(byte)
  local hi, lo = byte >> 4, byte & 0x0F
  if hi > 9 then hi = 9 end
  if lo > 9 then lo = 9 end
  return 10 * hi + lo
end

local function signed_byte(v)
  if v > 127 then return v - 256 end
  return v
end

-- Relative lane of an enemy as num/den: the integer rel, or the fractional rel of a
-- non-fuseball caught between lanes (reference state_vector.md §3.2).
local function enemy_relative(player, lane, is_open, direction, between, enemy_type, flip_angle,
                              angles)
  local rel = relative_lane(player, lane, is_open)
  if between == 0 or enemy_type == FUSEBALL then return rel, 1 end
  -- angle(s, 1) = (A[s - 1] + 8) mod 16, angle(s, 0) = A[s] mod 16
  local up = (angles[(lane - 1) % NUM_LANES + 1] + 8) % 16
  local down = angles[lane + 1] % 16
  local travelled, total
  if direction == 1 then
    travelled, total = (up - flip_angle) % 16, (up - down) % 16
  else
    travelled, total = (flip_angle - down) % 16, (up - down) % 16
  end
  if total == 0 then
    travelled, total = 0, 1
  elseif travelled > total then
    travelled = total
  end
  -- rel + p - 1 (moving up) or rel - p (moving down), p = travelled / total. On closed tubes
  -- rel is in [-7, 8], so both forms already lie in [-8, 8] and need no further wrap.
  if direction == 1 then return rel * total + travelled - total, total end
  return rel * total - travelled, total
end

-- Decode a RAM image (a string of at least ram_map.RAM_SIZE bytes; address a is byte a + 1).
function state.read(ram)
  local function byte(addr) return ram:byte(addr + 1) end
  local s = {}
  s.gamestate = byte(ram_map.GAMESTATE)
  s.timectr = byte(ram_map.TIMECTR)
  s.countdown = byte(ram_map.COUNTDOWN_TIMER)
  s.game_mode = byte(ram_map.GAME_MODE)
  s.credits = byte(ram_map.CREDITS)
  s.real_game = (s.game_mode & features.GAME_MODE_REAL_GAME_BIT) ~= 0
  s.score = bcd_pair(byte(ram_map.P1_SCORE_H)) * 10000 + bcd_pair(byte(ram_map.P1_SCORE_M)) * 100
    + bcd_pair(byte(ram_map.P1_SCORE_L))
  s.p1_level = byte(ram_map.P1_LEVEL)
  s.lives = byte(ram_map.P1_LIVES)
  s.curlevel = byte(ram_map.CURLEVEL)
  s.pulsar_fliprate = byte(ram_map.PULSAR_FLIPRATE)
  s.enemies_in_tube = byte(ram_map.NUM_ENEMIES_IN_TUBE)
  s.enemies_on_top = byte(ram_map.NUM_ENEMIES_ON_TOP)
  s.is_open = byte(ram_map.OPEN_LEVEL) ~= 0
  s.zap_running = byte(ram_map.ZAP_RUNNING)
  s.shot_count = byte(ram_map.PLAYER_SHOT_COUNT)
  s.pulse_beat = signed_byte(byte(ram_map.PULSE_BEAT))
  s.pulsing = byte(ram_map.PULSING)
  s.flipper_move = byte(ram_map.FLIPPER_MOVE)
  s.fuse_move_prb = byte(ram_map.FUSE_MOVE_PRB)
  s.available, s.active_count, s.speed = {}, {}, {}
  for i = 0, features.NUM_ENEMY_TYPES - 1 do
    s.available[i + 1] = byte(ram_map.AVL_FLIPPERS + i)
    s.active_count[i + 1] = byte(ram_map.N_FLIPPERS + i)
    local v = byte(ram_map.SPEED_MSB + i) * 256 + byte(ram_map.SPEED_LSB + i)
    if v > 32767 then v = v - 65536 end
    s.speed[i + 1] = v
  end
  s.player_seg = byte(ram_map.PLAYER_SEG)
  s.player_lane = s.player_seg & 0x0F
  s.player_state = byte(ram_map.PLAYER_STATE)
  s.alive = (s.player_state & 0x80) == 0
  s.player_along = byte(ram_map.PLAYER_ALONG)
  s.zap_uses = byte(ram_map.ZAP_USES)
  s.pending = byte(ram_map.ENEMIES_PENDING)
  s.spike, s.angle = {}, {}
  for i = 0, NUM_LANES - 1 do
    s.spike[i + 1] = byte(ram_map.LANE_SPIKE_HEIGHT + i)
    s.angle[i + 1] = byte(ram_map.TUBE_ANGLE + i)
  end

  local P, is_open = s.player_lane, s.is_open
  s.enemies = {}
  for k = 0, features.NUM_ENEMY_SLOTS - 1 do
    local along = byte(ram_map.ENEMY_ALONG + k)
    local e = {along = along, active = along > 0}
    if e.active then
      local type_info = byte(ram_map.ENEMY_TYPE_INFO + k)
      local active_info = byte(ram_map.ACTIVE_ENEMY_INFO + k)
      e.lane = byte(ram_map.ENEMY_SEG + k) & 0x0F
      e.type = type_info & 0x07
      e.direction = (type_info >> 6) & 1
      e.between = (type_info >> 7) & 1
      e.moving_away = (active_info >> 7) & 1
      e.can_shoot = (active_info >> 6) & 1
      e.split = active_info & 0x03
      e.rel_int = relative_lane(P, e.lane, is_open)
      e.rel_num, e.rel_den = enemy_relative(P, e.lane, is_open, e.direction, e.between, e.type,
                                            byte(ram_map.MORE_ENEMY_INFO + k) & 0x0F, s.angle)
    else
      e.lane, e.type = INVALID, 0
    end
    s.enemies[k + 1] = e
  end
  s.player_shots = {}
  for j = 0, features.NUM_PLAYER_SHOTS - 1 do
    local pos = byte(ram_map.PLAYER_SHOT_POSITIONS + j)
    s.player_shots[j + 1] = {pos = pos, lane = byte(ram_map.PLAYER_SHOT_SEGMENTS + j) & 0x0F}
  end
  s.enemy_shots = {}
  -- depth: the full 8.8 depth in 1/256 units, which the depth limits compare
  -- (docs/extraction.md).
  for j = 0, features.NUM_ENEMY_SHOTS - 1 do
    local pos = byte(ram_map.ENEMY_SHOT_POSITIONS + j)
    s.enemy_shots[j + 1] = {pos = pos, depth = pos * 256 + byte(ram_map.ENM_SHOT_LSB + j),
                            lane = byte(ram_map.ENEMY_SHOT_SEGMENTS + j) & 0x0F}
  end
  return s
end

-- Nearest threat in lane L (smaller = closer to the rim): spike tips, enemies, enemy shots.
function state.nearest_threat(s, lane)
  local t = NO_THREAT
  local spike = s.spike[lane + 1]
  if spike > 0 and spike < t then t = spike end
  for _, e in ipairs(s.enemies) do
    if e.active and e.lane == lane and e.along < t then t = e.along end
  end
  for _, shot in ipairs(s.enemy_shots) do
    if shot.pos > 0 and shot.lane == lane and shot.pos < t then t = shot.pos end
  end
  return t
end

-- Normalisers (reference §4); each ends in a single integer division.
local function clamp(v, lo, hi)
  if v < lo then return lo elseif v > hi then return hi end
  return v
end
local function small_enum(v, m) return clamp(v, 0, m) / m end
local function natural(v) return v / 255 end
local function depth(v) return clamp(v, 0, 255) / 255 end
local function bool(b) if b then return 1.0 end return 0.0 end
local function signed(v, m) return clamp(v, -m, m) / m end
local function spike_height(d) if d == 0 then return 0.0 end return (255 - d) / 255 end
local function relative(num, den)
  return clamp(num, -15 * den, 15 * den) / (15 * den)
end
local ABSENT_VALUE = -1.0  -- what the INVALID and ABSENT sentinels normalise to

-- The 195 state values (Lua array, value of state index i at [i + 1]). `prev` holds the
-- previous processed frame's enemy lanes, depths and types (prev.enemy_lane[k + 1], ...).
function state.vector(s, prev)
  local v = {}
  local function put(x) v[#v + 1] = x end
  local P, is_open = s.player_lane, s.is_open
  put(small_enum(s.gamestate, 36))
  put(natural(s.game_mode))
  put(natural(s.countdown))
  put(small_enum(s.lives, 6))
  put(small_enum(math.min(s.p1_level, 98), 98))
  put(small_enum(s.player_seg, 15))
  put(bool(s.alive))
  put(small_enum(s.player_state & 0x0F, 15))
  put(depth(s.player_along))
  put(small_enum(s.zap_uses, 2))
  put(small_enum(math.min(s.zap_running, 19), 19))
  put(small_enum(8 - s.shot_count, 8))
  for _, shot in ipairs(s.player_shots) do put(shot.pos / 256) end
  for _, shot in ipairs(s.player_shots) do
    if shot.pos > 0 then put(relative(relative_lane(P, shot.lane, is_open), 1))
    else put(ABSENT_VALUE) end
  end
  put(small_enum(math.min(s.curlevel, 98), 98))
  put(bool(s.is_open))
  put(small_enum(s.curlevel % 16, 15))
  for i = 1, NUM_LANES do put(spike_height(s.spike[i])) end
  for i = 1, NUM_LANES do put(small_enum(s.angle[i], 15)) end
  for i = 1, features.NUM_ENEMY_TYPES do put(small_enum(s.active_count[i], 7)) end
  for i = 1, features.NUM_ENEMY_TYPES do put(small_enum(s.available[i], 7)) end
  put(small_enum(s.enemies_in_tube, 7))
  put(small_enum(s.enemies_on_top, 7))
  put(small_enum(s.pending, 63))
  put(small_enum(math.min(s.pulsar_fliprate, 40), 40))
  put(signed(s.pulse_beat, 12))
  put(natural(s.pulsing))
  put(small_enum(s.flipper_move, 135))
  put(natural(s.fuse_move_prb))
  for i = 1, features.NUM_ENEMY_TYPES do put(signed(s.speed[i], 2560)) end
  local enemies = s.enemies
  for _, e in ipairs(enemies) do
    if e.active then
      put(small_enum(e.type, 7)); put(e.direction + 0.0); put(e.between + 0.0)
      put(e.moving_away + 0.0); put(e.can_shoot + 0.0); put(small_enum(e.split, 3))
    else
      for _ = 1, features.ENEMY_INFO_WIDTH do put(0.0) end
    end
  end
  for _, e in ipairs(enemies) do
    if e.active then put(relative(e.rel_num, e.rel_den)) else put(ABSENT_VALUE) end
  end
  for _, e in ipairs(enemies) do put(depth(e.along)) end
  for _, e in ipairs(enemies) do
    if e.active and e.along == RIM then put(relative(e.rel_num, e.rel_den))
    else put(ABSENT_VALUE) end
  end
  for _, shot in ipairs(s.enemy_shots) do
    if shot.pos > 0 then put(shot.depth / 65536) else put(0.0) end
  end
  for _, shot in ipairs(s.enemy_shots) do
    if shot.pos > 0 then put(relative(relative_lane(P, shot.lane, is_open), 1))
    else put(ABSENT_VALUE) end
  end
  for _, e in ipairs(enemies) do
    if e.active and e.type == PULSAR then put(depth(e.along)) else put(0.0) end
  end
  for _, e in ipairs(enemies) do
    if e.active and e.type == PULSAR then put(relative(e.rel_num, e.rel_den))
    else put(ABSENT_VALUE) end
  end
  for _, e in ipairs(enemies) do
    if e.active and e.type <= PULSAR and e.along <= RIM then put(relative(e.rel_num, e.rel_den))
    else put(ABSENT_VALUE) end
  end
  put(depth(state.nearest_threat(s, P)))
  if is_open and P == 0 then put(depth(NO_THREAT))
  else put(depth(state.nearest_threat(s, (P - 1) % NUM_LANES))) end
  if is_open and P == NUM_LANES - 1 then put(depth(NO_THREAT))
  else put(depth(state.nearest_threat(s, (P + 1) % NUM_LANES))) end
  local playing = s.gamestate == features.GAMESTATE_PLAYING
  local delta_lane, delta_depth = {}, {}
  for k, e in ipairs(enemies) do
    local dl, dd = 0, 0
    if playing and e.active and prev.enemy_lane[k] ~= INVALID and e.type == prev.enemy_type[k] then
      dl, dd = e.lane - prev.enemy_lane[k], e.along - prev.enemy_depth[k]
      if not is_open then
        if dl > 8 then dl = dl - 16 elseif dl < -8 then dl = dl + 16 end
      end
    end
    delta_lane[k], delta_depth[k] = dl, dd
  end
  for k = 1, features.NUM_ENEMY_SLOTS do put(signed(delta_lane[k], 8)) end
  for k = 1, features.NUM_ENEMY_SLOTS do put(signed(delta_depth[k], 128)) end
  assert(#v == features.STATE_SIZE)
  return v
end

return state
