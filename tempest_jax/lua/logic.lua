-- Expert advice and rewards from a decoded snapshot (state.read), with the state carried between
-- processed frames: docs/extraction.md (our deterministic rules) on top of
-- reference/expert_and_rewards.md §2 and §4.

local features = require("features")

local logic = {}

local NUM_LANES = features.NUM_LANES
local INVALID = features.INVALID_LANE
local relative_lane = features.relative_lane

local GS_PLAYING = features.GAMESTATE_PLAYING
local GS_ZOOM = features.GAMESTATE_ZOOM
local GS_LEVEL_SELECT = features.GAMESTATE_LEVEL_SELECT

local FLIPPER, PULSAR, TANKER, SPIKER, FUSEBALL = 0, 1, 2, 3, 4
local HUNT_ORDER = {FUSEBALL, FLIPPER, TANKER, SPIKER}
local RIM = 0x10
local TOP_RAIL_AVOID_DEPTH = 0x60
local FUSEBALL_NEAR_DEPTH = 0x50
local DANGER_DEPTH = 0x80
local SUPERZAP_COOLDOWN_FRAMES = 60
local FIRE_PERIOD = 20          -- fire on every tick except timectr % 20 == 0 (about 95%)
local DEATH_PENALTY = -1000
local ZAP_PENALTY = 1000
local SCORE_WRAP = 1000000
local SAFE_LANE_REWARD, DANGER_LANE_PENALTY = 2.0, -2.0
local LANE_OFFSETS = {0, 1, -1, 2, -2}
local OFFSET_WEIGHT = {[0] = 1.0, [1] = 0.5, [2] = 0.25}

-- The carried state of docs/extraction.md, fresh for a new connection or game.
function logic.new_carried()
  local c = {
    first = true, prev_score = 0, prev_level = 0, prev_alive = true, prev_real_game = false,
    prev_gamestate = 0, prev_player_lane = 0, prev_zap_uses = 0, enemy_start_count = 0,
    zap_cooldown = 0, enemy_lane = {}, enemy_depth = {}, enemy_type = {},
  }
  for k = 1, features.NUM_ENEMY_SLOTS do
    c.enemy_lane[k], c.enemy_depth[k], c.enemy_type[k] = INVALID, 0, 0
  end
  return c
end

local function abs_q(num) if num < 0 then return -num end return num end

-- Lane one step from P, or nil when it is off an open tube.
local function step_lane(P, step, is_open)
  local lane = P + step
  if is_open then
    if lane < 0 or lane >= NUM_LANES then return nil end
    return lane
  end
  return lane % NUM_LANES
end

-- §2.1 tube zoom: the nearest spike-free lane, else the lowest spike, nearest on ties.
local function zoom_lane(s)
  local P, is_open = s.player_lane, s.is_open
  local function height(lane)
    local d = s.spike[lane + 1]
    if d == 0 then return 0 end
    return 255 - d
  end
  local function distance(lane) return math.abs(relative_lane(P, lane, is_open)) end
  local best, best_h, best_d = P, height(P), 0
  for lane = 0, NUM_LANES - 1 do
    local h, d = height(lane), distance(lane)
    if (h == 0 and (best_h ~= 0 or d < best_d))
        or (h ~= 0 and best_h ~= 0 and (h < best_h or (h == best_h and d < best_d))) then
      best, best_h, best_d = lane, h, d
    end
  end
  return best
end

-- §2.2 top-threat flee: the flee lane, or nil when no threat is within one lane. Distances are
-- num/den pairs (fractional rim lanes), compared exactly by cross-multiplication. A shot's limit
-- applies to its full 8.8 depth (docs/extraction.md).
local function flee_lane(s)
  local P, is_open = s.player_lane, s.is_open
  local best_num, best_den
  local function consider(num, den)
    if abs_q(num) <= den and (best_num == nil or abs_q(num) * best_den < abs_q(best_num) * den) then
      best_num, best_den = num, den
    end
  end
  for _, e in ipairs(s.enemies) do
    if e.active and e.along <= TOP_RAIL_AVOID_DEPTH
        and (e.type == FLIPPER or (e.type == PULSAR and s.pending == 0)) then
      if e.along <= RIM then consider(e.rel_num, e.rel_den) else consider(e.rel_int, 1) end
    end
  end
  for _, shot in ipairs(s.enemy_shots) do
    if shot.pos > 0 and shot.depth <= TOP_RAIL_AVOID_DEPTH * 256 then
      consider(relative_lane(P, shot.lane, is_open), 1)
    end
  end
  if best_num == nil then return nil end
  local step = 1
  if best_num >= 0 then step = -1 end
  return step_lane(P, step, is_open) or step_lane(P, -step, is_open) or P
end

-- §2.4 fuseball dodge: the dodge lane, or nil (fall through to the hunt).
local function dodge_lane(s)
  local chosen
  for _, e in ipairs(s.enemies) do
    if e.active and e.type == FUSEBALL and e.along <= FUSEBALL_NEAR_DEPTH
        and e.moving_away == 0 and math.abs(e.rel_int) <= 1
        and (chosen == nil or math.abs(e.rel_int) < math.abs(chosen.rel_int)) then
      chosen = e
    end
  end
  if chosen == nil then return nil end
  local step = -1
  if chosen.rel_int <= 0 then step = 1 end
  return step_lane(s.player_lane, step, s.is_open) or step_lane(s.player_lane, -step, s.is_open)
end

-- §2.5 hunt: nearest enemy of the first type present in the hunt order; ties go to the one
-- nearer the rim.
local function hunt_lane(s)
  for _, wanted in ipairs(HUNT_ORDER) do
    local chosen
    for _, e in ipairs(s.enemies) do
      if e.active and e.type == wanted then
        local d = math.abs(e.rel_int)
        if chosen == nil or d < math.abs(chosen.rel_int)
            or (d == math.abs(chosen.rel_int) and e.along < chosen.along) then
          chosen = e
        end
      end
    end
    if chosen then return chosen.lane end
  end
  return s.player_lane
end

-- §2.6 superzapper recommendation; updates the cooldown in the carried state.
local function zap_advice(s, c)
  if c.zap_cooldown > 0 then c.zap_cooldown = c.zap_cooldown - 1 end
  local active, top = 0, 0
  for _, e in ipairs(s.enemies) do
    if e.active then
      active = active + 1
      if e.along <= RIM then top = top + 1 end
    end
  end
  local uses = s.zap_uses
  local wanted = (uses == 0 and (top >= 3 or s.pending == 0))
    or (uses == 1 and (top >= 1 or s.pending == 0))
  if active > 0 and c.zap_cooldown == 0 and wanted then
    c.zap_cooldown = SUPERZAP_COOLDOWN_FRAMES
    return 1
  end
  return 0
end

-- Expert advice: target lane (0..15), fire (0/1), zap (0/1).
function logic.expert(s, c)
  local fire = 1
  if s.timectr % FIRE_PERIOD == 0 then fire = 0 end
  if s.gamestate == GS_ZOOM then return zoom_lane(s), fire, 0 end
  local lane = flee_lane(s)
  if lane then return lane, fire, 0 end
  if s.gamestate ~= GS_PLAYING then return s.player_lane, fire, 0 end
  lane = dodge_lane(s)
  if lane then return lane, fire, 0 end
  local target = hunt_lane(s)
  return target, fire, zap_advice(s, c)
end

-- §4.2 lane-safety shaping.
local function subjective(s, c)
  local P, is_open = s.player_lane, s.is_open
  local threatened = {}
  for _, e in ipairs(s.enemies) do
    if e.active and e.along <= DANGER_DEPTH then threatened[e.lane] = true end
  end
  for _, shot in ipairs(s.enemy_shots) do
    if shot.pos > 0 and shot.depth <= DANGER_DEPTH * 256 then threatened[shot.lane] = true end
  end
  local scale = 0.5
  if P ~= c.prev_player_lane then scale = 1.0 end
  local subj = 0.0
  for _, offset in ipairs(LANE_OFFSETS) do
    local lane = step_lane(P, offset, is_open)
    if lane then
      local w = OFFSET_WEIGHT[math.abs(offset)] * scale
      if threatened[lane] then subj = subj + DANGER_LANE_PENALTY * w
      else subj = subj + SAFE_LANE_REWARD * w end
    end
  end
  return subj
end

-- The nearest float32 of a double (round to nearest even, as string.pack does).
local function to_float32(x)
  return (string.unpack("f", string.pack("f", x)))
end

-- Rewards of this frame: subj (float), obj (float), done (0/1). Updates the level-start capture
-- in the carried state; everything else is updated by logic.advance.
function logic.rewards(s, c)
  if c.first or s.curlevel ~= c.prev_level then
    c.enemy_start_count = s.pending
    c.prev_zap_uses = s.zap_uses
  end
  local done = c.prev_alive and not s.alive and s.real_game
  local delta = s.score - c.prev_score
  if delta < -SCORE_WRAP // 2 then delta = delta + SCORE_WRAP end
  local score_term = 0
  if delta > 0 and s.real_game and c.prev_real_game and not c.first
      and c.prev_gamestate ~= GS_LEVEL_SELECT then
    score_term = delta
  end
  if done then return 0.0, (DEATH_PENALTY + score_term) + 0.0, 1 end
  local obj = score_term + 0.0
  if s.zap_uses > c.prev_zap_uses and c.enemy_start_count > 0 then
    -- float32 like the JAX extraction (docs/extraction.md): penalty and result each rounded once.
    local penalty = to_float32(ZAP_PENALTY * s.pending / c.enemy_start_count)
    obj = to_float32(obj - penalty)
  end
  local subj = 0.0
  if s.real_game and (s.gamestate == GS_PLAYING or s.gamestate == GS_ZOOM) then
    subj = subjective(s, c)
  end
  return subj, obj, 0
end

-- End of a processed frame: remember what the next frame compares against.
function logic.advance(s, c)
  c.first = false
  c.prev_score = s.score
  c.prev_level = s.curlevel
  c.prev_alive = s.alive
  c.prev_real_game = s.real_game
  c.prev_gamestate = s.gamestate
  c.prev_player_lane = s.player_lane
  c.prev_zap_uses = s.zap_uses
  for k, e in ipairs(s.enemies) do
    c.enemy_lane[k], c.enemy_depth[k], c.enemy_type[k] = e.lane, e.along, e.type
  end
end

return logic
