-- The feature contract, mirrored from tempest_jax/features.py (the single source of truth):
-- the 195-value layout as named blocks, the 44-action table, the relative-lane rule and the
-- expert's steering. tests/test_lua.py dumps these tables and compares them with features.py.

local features = {}

features.STATE_SIZE = 195
features.NUM_ENEMY_SLOTS = 7
features.NUM_PLAYER_SHOTS = 8
features.NUM_ENEMY_SHOTS = 4
features.NUM_LANES = 16
features.NUM_ENEMY_TYPES = 5
features.ENEMY_INFO_WIDTH = 6

-- (name, size) in wire order; start indices (0-based, as in features.py) are derived below.
local BLOCKS = {
  {"gamestate", 1}, {"game_mode", 1}, {"countdown_timer", 1}, {"lives", 1}, {"p1_level", 1},
  {"player_position", 1}, {"alive", 1}, {"player_state", 1}, {"player_depth", 1},
  {"zap_uses", 1}, {"zap_active", 1}, {"shots_remaining", 1},
  {"player_shot_depth", 8}, {"player_shot_rel_lane", 8},
  {"level_number", 1}, {"open_level", 1}, {"level_shape", 1},
  {"spike", 16}, {"tube_angle", 16}, {"active_count", 5}, {"spawn_available", 5},
  {"enemies_in_tube", 1}, {"enemies_on_top", 1}, {"enemies_pending", 1},
  {"pulsar_fliprate", 1}, {"pulse_beat", 1}, {"pulsing", 1}, {"flipper_move", 1},
  {"fuse_move_prb", 1}, {"enemy_speed", 5}, {"enemy_info", 42},
  {"enemy_rel_lane", 7}, {"enemy_depth", 7}, {"enemy_top_rel_lane", 7},
  {"enemy_shot_position", 4}, {"enemy_shot_rel_lane", 4},
  {"pulsar_depth", 7}, {"pulsar_rel_lane", 7}, {"toprail_rel_lane", 7},
  {"nearest_threat", 3}, {"enemy_delta_lane", 7}, {"enemy_delta_depth", 7},
}

features.FIELDS = {}    -- ordered list of {name=, start=, size=}
features.LAYOUT = {}    -- name -> field
do
  local start = 0
  for _, block in ipairs(BLOCKS) do
    local field = {name = block[1], start = start, size = block[2]}
    features.FIELDS[#features.FIELDS + 1] = field
    features.LAYOUT[field.name] = field
    start = start + field.size
  end
  assert(start == features.STATE_SIZE, "layout does not sum to 195")
end

features.ENEMY_INFO_NAMES = {"type", "direction", "between", "moving_away", "can_shoot", "split"}

-- The name of state index i (0-based), "block" or "block[k]", for error messages.
function features.describe_index(i)
  for _, f in ipairs(features.FIELDS) do
    if i >= f.start and i < f.start + f.size then
      if f.size == 1 then return f.name end
      return string.format("%s[%d]", f.name, i - f.start)
    end
  end
  error(string.format("state index %d outside 0..%d", i, features.STATE_SIZE - 1))
end

-- Game state codes ($0000).
features.GAMESTATE_LEVEL_STARTUP = 0x02
features.GAMESTATE_PLAYING = 0x04
features.GAMESTATE_DEATH = 0x06
features.GAMESTATE_LEVEL_BEGIN = 0x08
features.GAMESTATE_ENTER_INITIALS = 0x12
features.GAMESTATE_LEVEL_SELECT = 0x16
features.GAMESTATE_ZOOM = 0x20
features.GAME_MODE_REAL_GAME_BIT = 0x80

-- Sentinels (before normalisation).
features.INVALID_LANE = -32768
features.ABSENT = 255
features.NO_THREAT = 255

-- Actions (reference/actions.md): joint = fz * 11 + sp, fz = 2 * fire + zap. Indices are
-- 0-based as on the wire; SPINNER_LEVELS[sp + 1] is the level of spinner index sp.
features.SPINNER_LEVELS = {0, 12, 9, 6, 3, 1, -1, -3, -6, -9, -12}
features.NUM_SPINNER = #features.SPINNER_LEVELS
features.NUM_FIRE_ZAP = 4
features.NUM_ACTIONS = features.NUM_FIRE_ZAP * features.NUM_SPINNER
features.SPINNER_INDEX_OF_LEVEL = {}
for i, level in ipairs(features.SPINNER_LEVELS) do
  features.SPINNER_INDEX_OF_LEVEL[level] = i - 1
end
features.EXPERT_NEAR_LEVEL = 9
features.EXPERT_FAR_LEVEL = 12

function features.joint_index(fire, zap, spinner_index)
  return (2 * fire + zap) * features.NUM_SPINNER + spinner_index
end

-- fire, zap, spinner index of a joint action index.
function features.decode_joint(joint)
  local fz, sp = joint // features.NUM_SPINNER, joint % features.NUM_SPINNER
  return (fz >> 1) & 1, fz & 1, sp
end

-- Integer relative lane target - player; closed tubes wrap into [-7, +8], so a lane exactly
-- opposite is always +8 (our fix of the reference's random tie).
function features.relative_lane(player, target, is_open)
  local d = target - player
  if is_open then return d end
  return (d + 7) % features.NUM_LANES - 7
end

-- Spinner index steering toward a target rel lanes away (a positive spinner lowers the lane).
function features.expert_spinner_index(rel)
  local level
  if rel == 0 then
    return 0
  elseif math.abs(rel) >= 2 then
    level = features.EXPERT_FAR_LEVEL
  else
    level = features.EXPERT_NEAR_LEVEL
  end
  if rel > 0 then level = -level end
  return features.SPINNER_INDEX_OF_LEVEL[level]
end

-- The joint action that executes the expert's advice exactly (stored == executed); a negative
-- target means "no target, stay".
function features.expert_joint_action(target, player, is_open, fire, zap)
  local rel = 0
  if target >= 0 then
    rel = features.relative_lane(player % features.NUM_LANES, target % features.NUM_LANES,
                                 is_open)
  end
  return features.joint_index(fire, zap, features.expert_spinner_index(rel))
end

-- Whether the game executed the commanded action: a real game in play or zoom.
function features.action_applied(gamestate, game_mode)
  return (game_mode & features.GAME_MODE_REAL_GAME_BIT) ~= 0
    and (gamestate == features.GAMESTATE_PLAYING or gamestate == features.GAMESTATE_ZOOM)
end

return features
