-- control.lua: what the player's inputs are in each game state.

local control = require("control")
local state = require("state")
local ram_map = require("ram_map")
local scenes = require("scenes")
local check = require("check")

local COMMANDED = {fire = 1, zap = 1, spinner = -9}

local function decide(ctl, ram)
  return ctl:decide(state.read(ram:image()), function(addr) return ram:get(addr) end, COMMANDED)
end

local function writes_of(d)
  local out = {}
  for _, w in ipairs(d.writes) do out[#out + 1] = string.format("%04X=%d", w[1], w[2]) end
  return table.concat(out, " ")
end

return {
  {"start_index_table", function()
    check.eq(control.start_index(0), 0)
    check.eq(control.start_index(12), 6, "level 13 (0-based 12)")
    check.eq(control.start_index(18), 8, "level 19 is not offered: 17 (index 8)")
    check.eq(control.start_index(200), 27)
  end},

  {"play_and_zoom_apply_the_servers_action", function()
    local ctl = control.new()
    ctl.start_level_min = 1
    for _, gs in ipairs({0x04, 0x20}) do
      local d = decide(ctl, scenes.playing(3, {gamestate = gs}))
      check.eq(d.fire, 1)
      check.eq(d.zap, 1)
      check.eq(d.spinner, -9)
      check.truthy(d.applied, "applied")
      check.eq(d.start + d.coin, 0)
    end
    for _, gs in ipairs({0x02, 0x06, 0x08, 0x0A, 0x24}) do
      local d = decide(ctl, scenes.playing(3, {gamestate = gs}))
      check.eq(d.fire + d.zap + d.spinner + d.start + d.coin, 0, "state " .. gs)
      check.truthy(not d.applied, "not applied in state " .. gs)
    end
  end},

  {"attract_mode_inserts_a_coin_then_presses_start", function()
    local ctl = control.new()
    local ram = scenes.playing(0, {game_mode = 0})
    local coins, starts = {}, {}
    for frame = 0, 119 do
      if frame == 60 then ram:set(ram_map.CREDITS, 1) end
      local d = decide(ctl, ram)
      if d.coin == 1 then coins[#coins + 1] = frame end
      if d.start == 1 then starts[#starts + 1] = frame end
      check.eq(d.fire + d.zap + d.spinner, 0, "no play inputs in attract mode")
    end
    check.eq(table.concat(coins, ","), "0,1,2,3", "coin held 4 frames while no credit")
    check.eq(table.concat(starts, ","), "90,91,92", "start once a credit is there")
  end},

  {"initials_entry_pulses_fire", function()
    local ctl = control.new()
    local ram = scenes.playing(0, {gamestate = 0x12})
    local fires = {}
    for frame = 0, 25 do
      if decide(ctl, ram).fire == 1 then fires[#fires + 1] = frame end
    end
    check.eq(table.concat(fires, ","), "0,10,20")
  end},

  {"level_select_advanced_moves_the_cursor_then_fires_once", function()
    local ctl = control.new()
    local ram = scenes.playing(0, {gamestate = 0x16})
    ram:set(control.MAX_START_INDEX, 9)
    ram:set(control.LAST_COMPLETED_LEVEL, 20)
    local fires = {}
    for frame = 0, 14 do
      local d = decide(ctl, ram)
      if frame < 10 then check.eq(writes_of(d), "0200=9", "cursor to the top, frame " .. frame)
      else check.eq(writes_of(d), "", "no writes after the settle frames") end
      if d.fire == 1 then fires[#fires + 1] = frame end
    end
    check.eq(table.concat(fires, ","), "10")
    -- leaving and re-entering level select starts over (the reference did not)
    decide(ctl, scenes.playing(0, {gamestate = 0x04}))
    check.eq(writes_of(decide(ctl, ram)), "0200=9", "counter reset on entry")
  end},

  {"level_select_start_level_min", function()
    local ctl = control.new()
    ctl:update_settings({start_advanced = false, start_level_min = 20})
    local ram = scenes.playing(0, {gamestate = 0x16})
    ram:set(control.MAX_START_INDEX, 3)
    -- floor 19 (0-based) raises $0126; index 9 (level 20) is selected and allowed
    check.eq(writes_of(decide(ctl, ram)), "0126=19 0200=9 0127=9")
    ctl:update_settings({start_advanced = false, start_level_min = 1})
    ram:set(control.LAST_COMPLETED_LEVEL, 0)
    check.eq(writes_of(decide(ctl, ram)), "", "level 1: the cursor is left alone")
  end},

  {"settings_keep_the_old_start_level_when_out_of_range", function()
    local ctl = control.new()
    ctl:update_settings({start_advanced = false, start_level_min = 0})
    check.eq(ctl.start_level_min, 13)
    check.eq(ctl.start_advanced, false)
    ctl:update_settings({start_advanced = true, start_level_min = 82})
    check.eq(ctl.start_level_min, 13)
    ctl:update_settings({start_advanced = true, start_level_min = 81})
    check.eq(ctl.start_level_min, 81)
  end},

  {"apply_sets_every_input_and_the_spinner_byte", function()
    local ram = scenes.playing(0)
    local space = ram:space()
    local inputs = require("mocks").inputs()
    control.apply({fire = 1, zap = 0, start = 0, coin = 0, spinner = -12,
                   writes = {{0x0126, 12}}},
                  inputs, function(addr, v) space:write_u8(addr, v) end)
    check.eq(ram:get(ram_map.SPINNER_DELTA), 0xF4, "-12 as a byte")
    check.eq(ram:get(0x0126), 12)
    check.eq(inputs.last.fire, 1)
    check.eq(inputs.last.zap, 0)
    check.eq(inputs.last.start, 0)
    check.eq(inputs.last.coin, 0)
  end},
}
