-- display.lua: the overlay's lines from a processed frame, where it draws, and main.lua with
-- the overlay on sending the same bytes as with it off.

local display = require("display")
local extract = require("extract")
local ram_map = require("ram_map")
local mocks = require("mocks")
local scenes = require("scenes")
local check = require("check")

local MAIN = (debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or ".")
             .. "/../../tempest_jax/lua/main.lua"

local function reply(spinner) return string.pack("bbbBB", 1, 0, spinner, 1, 13) end

-- A frame in play on level 13 (0-based 12), player on lane 3, a flipper and a tanker.
local function scene_frame()
  local ram = scenes.playing(3, {score = 4321})
  scenes.enemy(ram, 0, {type = 0, lane = 5, along = 0x92})
  scenes.enemy(ram, 4, {type = 2, lane = 14, along = 0xC0})
  local frame = extract.new():process(ram:image())
  return frame, ram
end

local function texts(lines)
  local out = {}
  for i, line in ipairs(lines) do out[i] = line[1] end
  return out
end

-- Run main.lua in mock MAME `m` with environment `env`; quiet.
local function run_main(m, env)
  local saved_getenv, saved_print = os.getenv, print
  os.getenv = function(name) return env[name] end
  print = function() end
  m.install()
  local ok, err = pcall(dofile, MAIN)
  os.getenv, print = saved_getenv, saved_print
  assert(ok, err)
end

-- Frames played by main.lua in mock MAME (one screen) with or without the overlay: the bytes
-- it sent and the mocks.
local function play_frames(overlay, fail)
  local ram = scenes.playing(3, {score = 4321})
  scenes.enemy(ram, 0, {type = 0, lane = 5, along = 0x92})
  local sock = mocks.socket()
  local screen = mocks.surface(400, 300, fail)
  local m = mocks.mame{space = ram:space(), sockets = {sock}, screens = {[":screen"] = screen},
                       ui = {line_height = 0.04}}
  run_main(m, {TEMPEST_OVERLAY = overlay and "1" or nil})
  local saved_print = print
  print = function() end  -- the client's and the overlay's log lines
  local ok, err = pcall(function()
    for i = 1, 5 do
      sock:feed(reply(i - 3))
      ram:set(ram_map.TIMECTR, i + 1)
      ram:set(ram_map.ENEMY_ALONG, 0x92 - 4 * i)
      m.frame()
      m.frame()  -- a video frame without a new tick: nothing sent, the overlay still drawn
    end
  end)
  print = saved_print
  assert(ok, err)
  return sock:all_written(), screen, tempest_jax
end

return {
  {"lines_describe_state_action_expert_and_enemies", function()
    local frame = scene_frame()
    local lines = texts(display.lines(frame, {fire = 1, zap = 0, spinner = -9}))
    check.eq(lines[1], "tempest-jax  play  level 13  lives 3  score 4321")
    check.eq(lines[2], "server: FIRE zap spin -9")
    check.truthy(lines[3]:find("^expert: lane %d+ %(player 3%)  "), lines[3])
    check.eq(lines[4], "slot\tenemy\tlane\tdepth")
    check.eq(lines[5], "0\tflipper\t5\t92")
    check.eq(lines[6], "4\ttanker\t14\tC0")
    check.eq(#lines, 6)
  end},

  {"lines_before_the_first_tick_and_without_enemies", function()
    check.eq(texts(display.lines(nil, {fire = 0, zap = 0, spinner = 0}))[1],
             "tempest-jax: waiting for the first game tick")
    local frame = extract.new():process(scenes.playing(0, {gamestate = 0x20}):image())
    local lines = texts(display.lines(frame, {fire = 0, zap = 1, spinner = 12}))
    check.truthy(lines[1]:find("  zoom  "), lines[1])
    check.eq(lines[2], "server: fire ZAP spin +12")
    check.eq(lines[#lines], "\t(no enemies)")
  end},

  {"off_unless_the_variable_is_1", function()
    check.eq(display.enabled(function() return nil end), false)
    check.eq(display.enabled(function() return "0" end), false)
    check.eq(display.enabled(function(name) return name == "TEMPEST_OVERLAY" and "1" end), true)
  end},

  {"draws_on_the_screen_in_its_pixels_or_on_the_ui_container", function()
    local frame = scene_frame()
    local client = {last_frame = frame, commanded = {fire = 0, zap = 0, spinner = 0}}
    local screen = mocks.surface(400, 300)
    local on_screen = display.new{machine = {screens = {[":screen"] = screen}},
                                  line_height = 0.05}
    on_screen:draw(client)
    check.eq(on_screen.surface.kind, "screen")
    check.eq(#screen.calls, 3 + 3 * 4, "a call per line, and per cell of the table")
    check.near(screen.calls[1][1], 0.01 * 400, "x in screen pixels")
    check.near(screen.calls[2][2], (0.01 + 0.05) * 300, "y in screen pixels")
    check.eq(screen.calls[2][3], "server: fire zap spin +0")
    local cell = screen.calls[3 + 4 + 3]  -- the flipper's lane
    check.eq(cell[3], "5")
    check.near(cell[1], (0.01 + 0.155) * 400, "its column")
    check.near(cell[2], (0.01 + 4 * 0.05) * 300, "its row")
    check.eq(on_screen.draws, 1)

    local ui = mocks.surface()
    local on_ui = display.new{machine = {screens = {}, render = {ui_container = ui}}}
    on_ui:draw(client)
    check.eq(on_ui.surface.kind, "ui")
    check.eq(#ui.calls, 15)
    check.near(ui.calls[3][2], 0.01 + 2 * 0.03, "fractions of the UI target")
  end},

  {"overlay_changes_no_byte_sent", function()
    local without, silent = play_frames(false)
    local with, screen, app = play_frames(true)
    check.eq(#silent.calls, 0, "off by default: nothing drawn")
    check.eq(with, without, "bytes sent")
    check.eq(#without > 0, true)
    check.eq(app.client.stats.sent, 5)
    check.eq(app.overlay.draws, 10, "drawn on every video frame")
    check.eq(app.overlay.errors, 0)
    check.eq(#screen.calls, 10 * (3 + 2 * 4), "each: state, server, expert, a table of one")
    check.near(screen.calls[2][2] - screen.calls[1][2], 0.04 * 300, "MAME's UI line height")
  end},

  {"drawing_errors_are_counted_and_change_nothing", function()
    local without = play_frames(false)
    local with, _, app = play_frames(true, true)
    check.eq(with, without, "bytes sent")
    check.eq(app.overlay.errors, 10)
    check.eq(app.overlay.draws, 0)
    check.eq(app.errors, 0, "the client's own callback never saw them")
    check.eq(app.client.stats.sent, 5)
  end},
}
