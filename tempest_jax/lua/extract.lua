-- One processed frame: RAM image -> frame record (195 state values, the header fields the
-- extraction owns, expert advice, rewards), advancing the carried state. This is the unit the
-- tests compare byte for byte with the simulator's JAX extraction.

local features = require("features")
local state = require("state")
local logic = require("logic")

local extract = {}
extract.__index = extract

function extract.new()
  return setmetatable({carried = logic.new_carried()}, extract)
end

-- Forget everything carried (a new connection starts a new chain of frames).
function extract:reset()
  self.carried = logic.new_carried()
end

-- `ram`: the RAM image as a string (address a at byte a + 1). Returns the frame record and the
-- decoded snapshot (which game control reads).
function extract:process(ram)
  local s = state.read(ram)
  local c = self.carried
  local values = state.vector(s, c)
  local target, fire, zap = logic.expert(s, c)
  local subj, obj, done = logic.rewards(s, c)
  logic.advance(s, c)
  local is_open = 0
  if s.is_open then is_open = 1 end
  local frame = {
    subj_reward = subj, obj_reward = obj, gamestate = s.gamestate, game_mode = s.game_mode,
    done = done, score = s.score, expert_target = target, player_seg = s.player_lane,
    is_open = is_open, expert_fire = fire, expert_zap = zap, level = s.curlevel,
    state = values,
    expert_joint = features.expert_joint_action(target, s.player_lane, s.is_open, fire, zap),
  }
  return frame, s
end

return extract
