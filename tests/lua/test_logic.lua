-- logic.lua: the deterministic expert and the rewards.

local state = require("state")
local logic = require("logic")
local ram_map = require("ram_map")
local scenes = require("scenes")
local check = require("check")

local function expert_of(ram, carried)
  return logic.expert(state.read(ram:image()), carried or logic.new_carried())
end

-- Rewards of `now` after `before` has been processed (both RAM tables).
local function rewards_after(before, now, carried)
  carried = carried or logic.new_carried()
  local s0 = state.read(before:image())
  logic.rewards(s0, carried)
  logic.advance(s0, carried)
  return logic.rewards(state.read(now:image()), carried)
end

return {
  {"fire_is_deterministic_from_timectr", function()
    local _, fire = expert_of(scenes.playing(5, {timectr = 40}))
    check.eq(fire, 0, "timectr 40")
    _, fire = expert_of(scenes.playing(5, {timectr = 41}))
    check.eq(fire, 1, "timectr 41")
  end},

  {"zoom_picks_nearest_spike_free_lane_else_lowest_spike", function()
    local ram = scenes.playing(5, {gamestate = 0x20})
    for lane = 0, 15 do ram:set(ram_map.LANE_SPIKE_HEIGHT + lane, 0x80) end
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 8, 0)
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 2, 0)
    check.eq(expert_of(ram), 2, "free lanes 2 and 8 (3 away each): the first scanned wins")
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 2, 0x80)
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 8, 0x80)
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 12, 0xF0)  -- shortest spike
    check.eq(expert_of(ram), 12, "all spiked: lowest spike")
    ram:set(ram_map.LANE_SPIKE_HEIGHT + 5, 0)
    local target, _, zap = expert_of(ram)
    check.eq(target, 5, "own lane is free")
    check.eq(zap, 0, "no zap while zooming")
  end},

  {"flee_from_rim_threats", function()
    local ram = scenes.playing(5)
    scenes.enemy(ram, 0, {type = 0, lane = 6, along = 0x40})
    check.eq(expert_of(ram), 4, "flipper one lane up: move down")
    scenes.enemy(ram, 1, {type = 0, lane = 4, along = 0x30})
    check.eq(expert_of(ram), 4, "equal |r|: the first slot decides")
    scenes.enemy(ram, 2, {type = 0, lane = 5, along = 0x60})
    check.eq(expert_of(ram), 4, "threat in the own lane (r = 0): move down")
    ram = scenes.playing(0)
    scenes.enemy_shot(ram, 0, 0, 0x20)
    check.eq(expert_of(ram), 15, "closed tube wraps below lane 0")
    ram:set(ram_map.OPEN_LEVEL, 0xFF)
    check.eq(expert_of(ram), 1, "open tube: the other side")
    -- pulsars count only once nothing is pending; fractional rim lanes are used at the rim
    ram = scenes.playing(5, {pending = 3})
    scenes.enemy(ram, 0, {type = 1, lane = 6, along = 0x20})
    check.eq(expert_of(ram), 5, "pulsar ignored while enemies are pending (and never hunted)")
    ram:set(ram_map.ENEMIES_PENDING, 0)
    check.eq(expert_of(ram), 4, "pulsar counts when nothing is pending")
  end},

  {"flee_uses_the_fractional_rim_lane", function()
    local angle = {}
    for i = 1, 16 do angle[i] = 0 end
    angle[7], angle[8] = 1, 3  -- lanes 6 and 7: a flip from lane 7 toward 6 spans 6 steps
    local ram = scenes.playing(5, {angle = angle})
    -- at the rim in lane 7 moving up, 5 of 6 steps done: r = 2 + 5/6 - 1 = 11/6 > 1: no threat
    scenes.enemy(ram, 0, {type = 0, lane = 7, along = 0x10, direction = 1, between = 1, flip = 4})
    check.eq(expert_of(ram), 7, "no threat within one lane: hunt the flipper")
    -- moving down, 5 of 6 steps done: r = 2 - 5/6 = 7/6: still none; 6 of 6 would be 1
    scenes.enemy(ram, 0, {type = 0, lane = 7, along = 0x10, direction = 0, between = 1, flip = 9})
    check.eq(expert_of(ram), 4, "r = 2 - 6/6 = 1: flee down")
  end},

  {"not_playing_stays", function()
    local ram = scenes.playing(9, {gamestate = 0x06})
    scenes.enemy(ram, 0, {type = 0, lane = 2, along = 0x80})
    check.eq(expert_of(ram), 9)
  end},

  {"fuseball_dodge", function()
    local ram = scenes.playing(5)
    scenes.enemy(ram, 0, {type = 4, lane = 5, along = 0x40})
    check.eq(expert_of(ram), 6, "rel 0: step up")
    scenes.enemy(ram, 0, {type = 4, lane = 6, along = 0x40})
    check.eq(expert_of(ram), 4, "rel +1: step down")
    scenes.enemy(ram, 0, {type = 4, lane = 6, along = 0x40, away = 1})
    check.eq(expert_of(ram), 6, "moving away: hunted instead")
    ram = scenes.playing(15, {open = true})
    scenes.enemy(ram, 0, {type = 4, lane = 15, along = 0x40})
    check.eq(expert_of(ram), 14, "open tube edge: the other side")
  end},

  {"hunt_order_and_ties", function()
    local ram = scenes.playing(5)
    scenes.enemy(ram, 0, {type = 2, lane = 6, along = 0x80})
    scenes.enemy(ram, 1, {type = 0, lane = 12, along = 0x90})
    check.eq(expert_of(ram), 12, "flippers before tankers")
    scenes.enemy(ram, 2, {type = 0, lane = 2, along = 0xA0})
    scenes.enemy(ram, 3, {type = 0, lane = 8, along = 0x98})
    check.eq(expert_of(ram), 8, "equal |rel| 3: the one nearer the rim")
    scenes.enemy(ram, 4, {type = 4, lane = 0, along = 0xC0})
    check.eq(expert_of(ram), 0, "fuseballs first")
    ram = scenes.playing(5)
    scenes.enemy(ram, 0, {type = 1, lane = 7, along = 0x80})
    check.eq(expert_of(ram), 5, "pulsars are never hunted")
  end},

  {"superzapper_advice_and_cooldown", function()
    local ram = scenes.playing(5, {pending = 10})
    for k = 0, 2 do scenes.enemy(ram, k, {type = 2, lane = 10 + k, along = 0x10}) end
    local carried = logic.new_carried()
    local _, _, zap = expert_of(ram, carried)
    check.eq(zap, 1, "three on the rim, first zap")
    check.eq(carried.zap_cooldown, 60)
    _, _, zap = expert_of(ram, carried)
    check.eq(zap, 0, "cooling down")
    check.eq(carried.zap_cooldown, 59)
    ram:set(ram_map.ZAP_USES, 1)
    carried.zap_cooldown = 1
    _, _, zap = expert_of(ram, carried)
    check.eq(zap, 1, "second zap with one on the rim once the cooldown ends")
    ram:set(ram_map.ZAP_USES, 2)
    carried.zap_cooldown = 0
    _, _, zap = expert_of(ram, carried)
    check.eq(zap, 0, "both zaps used")
    ram = scenes.playing(5, {pending = 0})
    scenes.enemy(ram, 0, {type = 2, lane = 12, along = 0x90})
    _, _, zap = expert_of(ram)
    check.eq(zap, 1, "nothing pending: zap the last enemies")
    ram = scenes.playing(5, {pending = 0})
    _, _, zap = expert_of(ram)
    check.eq(zap, 0, "no enemy, no zap")
  end},

  {"score_reward_in_real_play_only", function()
    local a, b = scenes.playing(5, {score = 1000}), scenes.playing(5, {score = 2500})
    local subj, obj, done = rewards_after(a, b)
    check.eq(obj, 1500.0, "gains of 1000 or more count (reference dropped them)")
    check.eq(done, 0)
    check.eq(subj, 2.5, "stationary, all five lanes safe: 2 * 2.5 * 0.5")
    a = scenes.playing(5, {score = 1000, game_mode = 0})
    b = scenes.playing(5, {score = 1200, game_mode = 0})
    subj, obj = rewards_after(a, b)
    check.eq(obj, 0.0, "attract mode")
    check.eq(subj, 0.0, "attract mode")
    a = scenes.playing(5, {score = 1000, gamestate = 0x16})
    b = scenes.playing(5, {score = 95000})
    subj, obj = rewards_after(a, b)
    check.eq(obj, 0.0, "level-select start bonus is not play")
    local first = logic.new_carried()
    subj, obj = logic.rewards(state.read(b:image()), first)
    check.eq(obj, 0.0, "first frame")
  end},

  {"score_wrap_past_999999", function()
    local a, b = scenes.playing(5, {score = 999900}), scenes.playing(5, {score = 150})
    local _, obj = rewards_after(a, b)
    check.eq(obj, 250.0)
  end},

  {"death_edge_in_real_game_only", function()
    local a = scenes.playing(5, {score = 100})
    local b = scenes.playing(5, {score = 350, alive = false})
    local subj, obj, done = rewards_after(a, b)
    check.eq(done, 1)
    check.eq(obj, -750.0, "penalty plus the score gained on the death frame")
    check.eq(subj, 0.0)
    a = scenes.playing(5, {game_mode = 0})
    b = scenes.playing(5, {game_mode = 0, alive = false})
    subj, obj, done = rewards_after(a, b)
    check.eq(done, 0, "attract-mode death")
    check.eq(obj, 0.0)
    local carried = logic.new_carried()
    b = scenes.playing(5, {alive = false})
    _, obj, done = logic.rewards(state.read(b:image()), carried)
    check.eq(done, 1, "dead on the first frame: the alive flag starts at 1")
    logic.advance(state.read(b:image()), carried)
    _, _, done = logic.rewards(state.read(b:image()), carried)
    check.eq(done, 0, "still dead: no second edge")
  end},

  {"zap_penalty_by_pending_fraction", function()
    local a = scenes.playing(5, {pending = 12})
    local b = scenes.playing(5, {pending = 9})
    b:set(ram_map.ZAP_USES, 1)
    local carried = logic.new_carried()
    local _, obj = rewards_after(a, b, carried)
    check.eq(obj, -1000 * 9 / 12, "enemy_start_count captured on the first frame")
    check.eq(carried.enemy_start_count, 12)
    -- a new level: the count and the zap baseline are captured again, no penalty
    local c = scenes.playing(5, {pending = 20, level = 13})
    _, obj = rewards_after(b, c, carried)
    check.eq(obj, 0.0)
    check.eq(carried.enemy_start_count, 20)
  end},

  {"subjective_lane_safety", function()
    local a = scenes.playing(4)
    local b = scenes.playing(5)
    scenes.enemy(b, 0, {type = 0, lane = 6, along = 0x80})
    scenes.enemy_shot(b, 0, 3, 0x20)
    scenes.enemy(b, 1, {type = 2, lane = 5, along = 0x81})  -- deeper than 0x80: not a danger
    local subj = rewards_after(a, b)
    -- moved (scale 1): lanes 5 (+2), 6 (-1), 4 (+1), 7 (+0.5), 3 (-0.5)
    check.eq(subj, 2.0)
    local open_a, open_b = scenes.playing(0, {open = true}), scenes.playing(0, {open = true})
    subj = rewards_after(open_a, open_b)
    check.eq(subj, 0.5 * 2 * (1 + 0.5 + 0.25), "open edge: lanes -1 and -2 do not exist")
    local zoom = scenes.playing(0, {gamestate = 0x20})
    check.eq(rewards_after(open_a, zoom), 2.5, "zoom counts")
  end},
}
