-- The optional on-screen overlay (TEMPEST_OVERLAY=1, or `tempest-jax mame --overlay`): the
-- game state, the enemy table, the action the server chose and the expert's advice, as text
-- over the game.
--
-- It only reads what the client already holds (its last frame and the reply it applied) and
-- touches nothing the client sends: with the overlay on or off the frames on the wire are the
-- same bytes. It draws with MAME's screen API on the first screen (Tempest's vector screen),
-- or on MAME's UI container on a system without a screen (the tests' `arb` driver). MAME
-- clears what was drawn after each video frame, so it draws on every one; an error while
-- drawing is counted and logged, never raised into the client's callback.

local features = require("features")

local display = {}
display.__index = display

display.ENV = "TEMPEST_OVERLAY"

local WHITE, YELLOW, GREEN, CYAN, BACKGROUND = 0xffffffff, 0xffffff00, 0xff40ff40, 0xff00ffff,
  0xc0000000
local LEFT, TOP = 0.01, 0.01
-- MAME's UI font is proportional: the enemy table's columns (tab-separated) start at these
-- offsets (fractions of the surface's width).
local TAB_STOPS = {0, 0.05, 0.155, 0.215}
local DEFAULT_LINE_HEIGHT = 0.03  -- of the surface's height, where MAME does not say
local MAX_LOGGED_ERRORS = 10

display.TYPE_NAMES = {[0] = "flipper", "pulsar", "tanker", "spiker", "fuseball"}
display.GAMESTATE_NAMES = {
  [0x00] = "new game", [0x02] = "level start", [0x04] = "play", [0x06] = "death",
  [0x08] = "game over", [0x0A] = "get ready", [0x0E] = "next level", [0x10] = "high scores",
  [0x12] = "enter initials", [0x14] = "attract", [0x16] = "level select", [0x18] = "zoom in",
  [0x1A] = "attract", [0x1C] = "level select", [0x1E] = "get ready", [0x20] = "zoom",
  [0x22] = "service", [0x24] = "high score",
}

function display.enabled(getenv)
  return (getenv or os.getenv)(display.ENV) == "1"
end

-- Value k (0-based) of a state block of the frame.
local function value(frame, name, k)
  return frame.state[features.LAYOUT[name].start + (k or 0) + 1]
end

local function round(x) return math.floor(x + 0.5) end

-- "FIRE zap spin -12": upper case for the buttons pressed.
function display.action_text(fire, zap, spinner)
  return string.format("%s %s spin %+d", fire == 1 and "FIRE" or "fire",
                       zap == 1 and "ZAP" or "zap", spinner)
end

local function lane_text(lane)
  if math.abs(lane - round(lane)) < 1e-6 then return string.format("%d", round(lane)) end
  return string.format("%.1f", lane)
end

-- The overlay's lines, {text, colour} each, for the client's last frame and the reply it
-- applied (`commanded`: fire, zap, spinner); nil frame before the first game tick. Tabs
-- separate the enemy table's columns.
function display.lines(frame, commanded)
  if frame == nil then return {{"tempest-jax: waiting for the first game tick", WHITE}} end
  local player = frame.player_seg
  local name = display.GAMESTATE_NAMES[frame.gamestate]
    or string.format("state %02X", frame.gamestate)
  local lines = {
    {string.format("tempest-jax  %s  level %d  lives %d  score %d", name, frame.level + 1,
                   round(value(frame, "lives") * 6), frame.score), WHITE},
    {"server: " .. display.action_text(commanded.fire, commanded.zap, commanded.spinner),
     YELLOW},
  }
  local fire, zap, sp = features.decode_joint(frame.expert_joint)
  lines[#lines + 1] = {string.format("expert: lane %d (player %d)  %s", frame.expert_target,
                                     player, display.action_text(fire, zap,
                                                                 features.SPINNER_LEVELS[sp + 1])),
                       GREEN}
  lines[#lines + 1] = {"slot\tenemy\tlane\tdepth", CYAN}
  local any = false
  for k = 0, features.NUM_ENEMY_SLOTS - 1 do
    local depth = round(value(frame, "enemy_depth", k) * 255)
    if depth > 0 then
      any = true
      local kind = round(value(frame, "enemy_info", k * features.ENEMY_INFO_WIDTH) * 7)
      local lane = player + value(frame, "enemy_rel_lane", k) * 15
      if frame.is_open == 0 then lane = lane % features.NUM_LANES end
      lines[#lines + 1] = {string.format("%d\t%s\t%s\t%02X", k,
                                         display.TYPE_NAMES[kind] or ("type " .. kind),
                                         lane_text(lane), depth), CYAN}
    end
  end
  if not any then lines[#lines + 1] = {"\t(no enemies)", CYAN} end
  return lines
end

-- Where to draw: text(x, y, text, colour) with x, y fractions of the surface (0..1).
function display.surface(machine)
  for _, screen in pairs(machine.screens) do
    local width, height = screen.width, screen.height
    return {kind = "screen", text = function(x, y, text, colour)
      screen:draw_text(x * width, y * height, text, colour, BACKGROUND)
    end}
  end
  local container = machine.render.ui_container
  return {kind = "ui", text = function(x, y, text, colour)
    container:draw_text(x, y, text, colour, BACKGROUND)
  end}
end

-- opts: machine (manager.machine), line_height (fraction of the surface; default MAME's UI
-- line height), log(message).
function display.new(opts)
  local self = setmetatable({}, display)
  self.surface = display.surface(opts.machine)
  self.line_height = opts.line_height or DEFAULT_LINE_HEIGHT
  self.log = opts.log or function() end
  self.draws, self.errors = 0, 0
  return self
end

-- Draw the client's state (call on every video frame, after the client's own callback).
function display:draw(client)
  local ok, message = xpcall(function()
    for i, line in ipairs(display.lines(client.last_frame, client.commanded)) do
      local y, column = TOP + (i - 1) * self.line_height, 0
      for cell in (line[1] .. "\t"):gmatch("([^\t]*)\t") do
        column = column + 1
        if cell ~= "" then self.surface.text(LEFT + TAB_STOPS[column], y, cell, line[2]) end
      end
    end
  end, debug.traceback)
  if ok then
    self.draws = self.draws + 1
  else
    self.errors = self.errors + 1
    if self.errors <= MAX_LOGGED_ERRORS then
      self.log(string.format("overlay error #%d: %s", self.errors, message))
    end
  end
end

return display
