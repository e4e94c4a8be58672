-- state.lua: RAM -> snapshot -> 195 values.

local F = require("features")
local state = require("state")
local logic = require("logic")
local extract = require("extract")
local ram_map = require("ram_map")
local scenes = require("scenes")
local check = require("check")

local L = F.LAYOUT

-- Value of block `name` (slot k, 0-based) in a 1-based values array.
local function at(v, name, k) return v[L[name].start + (k or 0) + 1] end

local function vector_of(ram, prev)
  return state.vector(state.read(ram:image()), prev or logic.new_carried())
end

return {
  {"worked_example_values", function()
    local before, now = scenes.worked_example()
    local ex = extract.new()
    ex:process(before:image())
    local frame = ex:process(now:image())
    local v = frame.state
    check.eq(#v, 195, "size")
    check.eq(at(v, "gamestate"), 4 / 36)
    check.eq(at(v, "game_mode"), 128 / 255)
    check.eq(at(v, "lives"), 0.5)
    check.eq(at(v, "p1_level"), 12 / 98)
    check.eq(at(v, "player_position"), 0.2)
    check.eq(at(v, "alive"), 1.0)
    check.eq(at(v, "player_state"), 4 / 15)
    check.eq(at(v, "player_depth"), 16 / 255)
    check.eq(at(v, "shots_remaining"), 0.75)
    check.eq(at(v, "player_shot_depth", 0), 0.1875)
    check.eq(at(v, "player_shot_depth", 1), 0.34375)
    check.eq(at(v, "player_shot_depth", 2), 0.0)
    check.eq(at(v, "player_shot_rel_lane", 0), 0.0)
    check.eq(at(v, "player_shot_rel_lane", 2), -1.0, "inactive shot lane")
    check.eq(at(v, "level_number"), 12 / 98)
    check.eq(at(v, "open_level"), 0.0)
    check.eq(at(v, "level_shape"), 0.8)
    check.eq(at(v, "enemy_info", 4), 1.0, "slot 0 can shoot")
    check.eq(at(v, "enemy_info", 6), 2 / 7, "slot 1 type tanker")
    check.eq(at(v, "enemy_rel_lane", 0), 2 / 15)
    check.eq(at(v, "enemy_rel_lane", 1), 7 / 15)
    check.eq(at(v, "enemy_rel_lane", 2), -1.0)
    check.eq(at(v, "enemy_depth", 0), 0x90 / 255)
    check.eq(at(v, "enemy_depth", 1), 0xC0 / 255)
    for i = 0, 2 do check.eq(at(v, "nearest_threat", i), 1.0, "no threat " .. i) end
    check.eq(at(v, "enemy_delta_depth", 0), -2 / 128, "flipper climbs 2 units")
    check.eq(at(v, "enemy_delta_lane", 0), 0.0)
    check.eq(at(v, "enemy_delta_depth", 1), 0.0, "tanker did not move")
  end},

  {"score_is_decoded_from_bcd_with_nibbles_clamped", function()
    local ram = scenes.playing(0, {score = 987654})
    check.eq(state.read(ram:image()).score, 987654)
    ram:set(ram_map.P1_SCORE_L, 0xAF)  -- both nibbles above 9 read as 9
    check.eq(state.read(ram:image()).score, 987699)
  end},

  {"enemy_in_lane_0_is_active_and_empty_slot_is_absent", function()
    local ram = scenes.playing(0)
    scenes.enemy(ram, 3, {type = 3, lane = 0, along = 0x40})
    ram:set(ram_map.ENEMY_SEG + 4, 7)  -- lane byte without depth: still an empty slot
    local v = vector_of(ram)
    check.eq(at(v, "enemy_rel_lane", 3), 0.0, "lane 0 enemy")
    check.eq(at(v, "enemy_depth", 3), 0x40 / 255)
    check.eq(at(v, "enemy_rel_lane", 4), -1.0, "empty slot")
    for i = 0, 5 do check.eq(at(v, "enemy_info", 4 * 6 + i), 0.0, "empty slot info") end
    check.eq(at(v, "nearest_threat", 0), 0x40 / 255, "threat in the player's lane")
  end},

  {"fractional_lane_of_a_flipper_between_lanes", function()
    local angle = {}
    for i = 1, 16 do angle[i] = 0 end
    angle[4], angle[5] = 1, 3  -- lanes 3 and 4
    local ram = scenes.playing(2, {angle = angle})
    -- lane 4, moving up: start (A[3] + 8) % 16 = 9, target A[4] = 3, total 6, travelled 9 - 7
    scenes.enemy(ram, 0, {type = 0, lane = 4, along = 0x10, direction = 1, between = 1, flip = 7})
    -- the same flip seen moving down: travelled 7 - 3 = 4 of 6
    scenes.enemy(ram, 1, {type = 1, lane = 4, along = 0x30, direction = 0, between = 1, flip = 7})
    -- travelled beyond the total is clamped to the whole flip: rel 2 + 1 - 1
    scenes.enemy(ram, 2, {type = 0, lane = 4, along = 0x30, direction = 1, between = 1, flip = 15})
    -- fuseballs keep the integer lane
    scenes.enemy(ram, 3, {type = 4, lane = 4, along = 0x30, direction = 1, between = 1, flip = 7})
    local v = vector_of(ram)
    check.eq(at(v, "enemy_rel_lane", 0), 4 / 45, "2 + 2/6 - 1 = 4/3")
    check.eq(at(v, "enemy_rel_lane", 1), 4 / 45, "2 - 4/6 = 4/3")
    check.eq(at(v, "enemy_rel_lane", 2), 2 / 15)
    check.eq(at(v, "enemy_rel_lane", 3), 2 / 15)
    check.eq(at(v, "enemy_top_rel_lane", 0), 4 / 45, "at the rim")
    check.eq(at(v, "enemy_top_rel_lane", 1), -1.0, "not at the rim")
    check.eq(at(v, "toprail_rel_lane", 0), 4 / 45)
    check.eq(at(v, "toprail_rel_lane", 1), -1.0, "pulsar below the rim")
    check.eq(at(v, "pulsar_rel_lane", 1), 4 / 45)
    check.eq(at(v, "pulsar_depth", 1), 0x30 / 255)
    check.eq(at(v, "pulsar_depth", 0), 0.0)
    check.eq(at(v, "enemy_info", 0 * 6 + 1), 1.0, "direction bit")
    check.eq(at(v, "enemy_info", 0 * 6 + 2), 1.0, "between bit")
  end},

  {"open_tube_lanes_and_edge_threats", function()
    local ram = scenes.playing(0, {open = true})
    scenes.enemy(ram, 0, {type = 2, lane = 15, along = 0x80})
    scenes.enemy_shot(ram, 0, 1, 0x21, 0x80)
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 1, 0xA0)
    local v = vector_of(ram)
    check.eq(at(v, "enemy_rel_lane", 0), 1.0, "+15 lanes")
    check.eq(at(v, "enemy_shot_position", 0), (0x21 * 256 + 0x80) / 65536)
    check.eq(at(v, "enemy_shot_rel_lane", 0), 1 / 15)
    check.eq(at(v, "enemy_shot_rel_lane", 1), -1.0)
    check.eq(at(v, "nearest_threat", 1), 1.0, "no lane left of 0 on an open tube")
    check.eq(at(v, "nearest_threat", 2), 0x21 / 255, "shot nearer than the spike")
    check.eq(at(v, "spike", 1), (255 - 0xA0) / 255)
    check.eq(at(v, "spike", 0), 0.0)
    ram:set(ram_map.OPEN_LEVEL, 0)
    v = vector_of(ram)
    check.eq(at(v, "nearest_threat", 1), 0x80 / 255, "closed tube wraps to lane 15")
    check.eq(at(v, "enemy_rel_lane", 0), -1 / 15)
  end},

  {"velocity_only_in_play_with_same_type_and_closed_wrap", function()
    local prev = logic.new_carried()
    local ram = scenes.playing(0)
    scenes.enemy(ram, 0, {type = 0, lane = 15, along = 0x50})
    scenes.enemy(ram, 1, {type = 0, lane = 3, along = 0x50})
    logic.advance(state.read(ram:image()), prev)
    scenes.enemy(ram, 0, {type = 0, lane = 0, along = 0x48})
    scenes.enemy(ram, 1, {type = 2, lane = 4, along = 0x48})  -- type changed (split)
    local v = vector_of(ram, prev)
    check.eq(at(v, "enemy_delta_lane", 0), 1 / 8, "15 -> 0 is +1 on a closed tube")
    check.eq(at(v, "enemy_delta_depth", 0), -8 / 128)
    check.eq(at(v, "enemy_delta_lane", 1), 0.0, "type changed")
    ram:set(ram_map.GAMESTATE, 0x20)
    v = vector_of(ram, prev)
    check.eq(at(v, "enemy_delta_depth", 0), 0.0, "not in play")
    ram:set(ram_map.GAMESTATE, 0x04)
    ram:set(ram_map.OPEN_LEVEL, 0xFF)
    v = vector_of(ram, prev)
    check.eq(at(v, "enemy_delta_lane", 0), -1.0, "open tube: -15 clamps to -8")
  end},

  {"out_of_range_bytes_are_clamped_by_their_normalisers", function()
    local ram = scenes.playing(0)
    for _, addr in ipairs({ram_map.GAMESTATE, ram_map.P1_LIVES, ram_map.P1_LEVEL,
                           ram_map.CURLEVEL, ram_map.PLAYER_SEG, ram_map.ZAP_USES,
                           ram_map.ZAP_RUNNING, ram_map.PLAYER_SHOT_COUNT,
                           ram_map.ENEMIES_PENDING, ram_map.FLIPPER_MOVE, ram_map.PULSE_BEAT,
                           ram_map.SPEED_MSB}) do
      ram:set(addr, 0xFF)
    end
    for i = 0, 15 do ram:set(ram_map.TUBE_ANGLE + i, 0xFF) end
    local v = vector_of(ram)
    for i, x in ipairs(v) do
      check.truthy(x >= -1 and x <= 1, "value " .. F.describe_index(i - 1) .. " in range")
    end
    check.eq(at(v, "gamestate"), 1.0)
    check.eq(at(v, "player_position"), 1.0, "raw cursor byte clamps to 15")
    check.eq(at(v, "shots_remaining"), 0.0, "8 - 255 clamps to 0")
    check.eq(at(v, "level_shape"), 1.0, "255 mod 16 = 15")
    check.eq(at(v, "pulse_beat"), -1 / 12, "0xFF is -1")
    check.eq(at(v, "enemy_speed", 0), -256 / 2560, "0xFF00 is -256")
  end},
}
