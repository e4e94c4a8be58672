-- Game control: decides, for each processed frame, the inputs a player would give (the server's
-- action during play, coin and start in attract mode, the level-select cursor and fire, fire
-- pulses for the initials entry) and applies them (reference/game_control.md §5-§7, with its
-- known defects fixed).
--
-- Buttons, coin and start go through MAME's input ports. RAM writes are used only where an
-- input port cannot do the job, each one listed here:
--   $0050  spinner delta: the dial port is a 4-bit absolute position the game samples on its
--          own schedule, so an exact per-tick delta (the action) can only be written where the
--          game reads it (actions.md §2). Written every processed frame, 0 outside play.
--   $0126  last completed level, raised to start_level_min - 1 (0-based; the reference wrote
--          the 1-based value) so that level select offers the requested start level at all.
--   $0127, $0200  level-select limit and cursor: the cursor's spinner handling is not
--          documented well enough to steer it to an index by dial, so the chosen index is
--          written (during the first 10 frames of level select only), then fire confirms.

local features = require("features")

local control = {}
control.__index = control

local GS_ENTER_INITIALS = features.GAMESTATE_ENTER_INITIALS
local GS_LEVEL_SELECT = features.GAMESTATE_LEVEL_SELECT

control.SPINNER_DELTA = 0x0050
control.LAST_COMPLETED_LEVEL = 0x0126
control.MAX_START_INDEX = 0x0127
control.PLAYER_SEG = 0x0200

-- Level-select table (game_control.md §7): index -> 0-based level.
control.START_LEVELS = {0, 2, 4, 6, 8, 10, 12, 14, 16, 19, 21, 23, 25, 27,
                        30, 32, 35, 39, 43, 46, 48, 51, 55, 59, 62, 64, 72, 80}

local LEVEL_SELECT_SETTLE_FRAMES = 10  -- cursor writes, then fire on the next frame
local INITIALS_FIRE_PERIOD = 10        -- one fire press every 10 frames steps through initials
local ATTRACT_PERIOD = 60              -- attract mode: coin at phase 0, start at phase 30
local COIN_HOLD_FRAMES = 4             -- long enough for the game's coin debounce
local START_PHASE, START_HOLD_FRAMES = 30, 3

-- The largest level-select index whose level is at most `level0` (0-based).
function control.start_index(level0)
  local index = 0
  for i, level in ipairs(control.START_LEVELS) do
    if level <= level0 then index = i - 1 end
  end
  return index
end

function control.new()
  return setmetatable({
    start_advanced = true, start_level_min = 13,  -- until the first reply says otherwise
    level_select_frames = 0, attract_frames = 0, frames = 0, prev_gamestate = nil,
  }, control)
end

-- Reply bytes 3 and 4: start settings (a start level outside 1..81 keeps the old one).
function control:update_settings(reply)
  self.start_advanced = reply.start_advanced
  if reply.start_level_min >= 1 and reply.start_level_min <= 81 then
    self.start_level_min = reply.start_level_min
  end
end

-- The inputs for this frame: {fire, zap, spinner, start, coin, writes = {{addr, value}, ...},
-- applied}. `s` is the snapshot (state.read), `peek(addr)` reads a RAM byte, `commanded` the
-- server's last reply action ({fire, zap, spinner}).
function control:decide(s, peek, commanded)
  local gs = s.gamestate
  local d = {fire = 0, zap = 0, spinner = 0, start = 0, coin = 0, writes = {}, applied = false}
  local floor = self.start_level_min - 1
  if peek(control.LAST_COMPLETED_LEVEL) < floor then
    d.writes[#d.writes + 1] = {control.LAST_COMPLETED_LEVEL, floor}
  end
  if gs == GS_ENTER_INITIALS then
    if self.frames % INITIALS_FIRE_PERIOD == 0 then d.fire = 1 end
  elseif gs == GS_LEVEL_SELECT then
    if self.prev_gamestate ~= GS_LEVEL_SELECT then self.level_select_frames = 0 end
    local n = self.level_select_frames
    if n < LEVEL_SELECT_SETTLE_FRAMES then
      if self.start_advanced then
        d.writes[#d.writes + 1] = {control.PLAYER_SEG, peek(control.MAX_START_INDEX)}
      elseif self.start_level_min > 1 then
        local index = control.start_index(floor)
        d.writes[#d.writes + 1] = {control.PLAYER_SEG, index}
        d.writes[#d.writes + 1] = {control.MAX_START_INDEX,
                                   math.max(index, peek(control.MAX_START_INDEX))}
      end
    elseif n == LEVEL_SELECT_SETTLE_FRAMES then
      d.fire = 1
    end
    if n <= LEVEL_SELECT_SETTLE_FRAMES then self.level_select_frames = n + 1 end
  elseif not s.real_game then
    self.level_select_frames = 0
    local phase = self.attract_frames % ATTRACT_PERIOD
    self.attract_frames = self.attract_frames + 1
    if s.credits == 0 then
      if phase < COIN_HOLD_FRAMES then d.coin = 1 end
    elseif phase >= START_PHASE and phase < START_PHASE + START_HOLD_FRAMES then
      d.start = 1
    end
  elseif features.action_applied(gs, s.game_mode) then
    d.fire, d.zap, d.spinner, d.applied = commanded.fire, commanded.zap, commanded.spinner, true
  end
  self.prev_gamestate = gs
  self.frames = self.frames + 1
  return d
end

-- Apply a decision: buttons through `inputs:set(name, value)`, RAM through write(addr, byte).
function control.apply(d, inputs, write)
  inputs:set("fire", d.fire)
  inputs:set("zap", d.zap)
  inputs:set("start", d.start)
  inputs:set("coin", d.coin)
  write(control.SPINNER_DELTA, d.spinner & 0xFF)
  for _, w in ipairs(d.writes) do write(w[1], w[2] & 0xFF) end
end

return control
