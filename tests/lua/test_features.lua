-- features.lua: the action table and lane arithmetic (the full table comparison with
-- features.py is in tests/test_lua.py).

local F = require("features")
local check = require("check")

return {
  {"layout_is_contiguous_and_195", function()
    local start = 0
    for _, f in ipairs(F.FIELDS) do
      check.eq(f.start, start, f.name .. " start")
      start = start + f.size
    end
    check.eq(start, 195, "total size")
    check.eq(F.describe_index(137), "enemy_depth[2]")
    check.eq(F.describe_index(0), "gamestate")
  end},

  {"joint_round_trip_all_44", function()
    local seen = {}
    for joint = 0, F.NUM_ACTIONS - 1 do
      local fire, zap, sp = F.decode_joint(joint)
      check.eq(F.joint_index(fire, zap, sp), joint, "joint " .. joint)
      local key = fire .. "/" .. zap .. "/" .. F.SPINNER_LEVELS[sp + 1]
      check.truthy(not seen[key], "duplicate action " .. key)
      seen[key] = true
    end
    check.eq(F.joint_index(1, 0, 10), 32, "fire only, spinner -12")
  end},

  {"relative_lane_closed_tie_is_plus_8", function()
    for p = 0, 15 do
      for t = 0, 15 do
        local r = F.relative_lane(p, t, false)
        check.truthy(r >= -7 and r <= 8, "closed rel range")
        check.eq((p + r - t) % 16, 0, "closed rel wraps to the target")
        check.eq(F.relative_lane(p, t, true), t - p, "open rel")
      end
    end
    check.eq(F.relative_lane(3, 11, false), 8, "opposite lane")
    check.eq(F.relative_lane(11, 3, false), 8, "opposite lane, other side")
  end},

  {"expert_steering_signs", function()
    -- a higher target lane needs a negative spinner (positive lowers the lane)
    local cases = {{4, 3, false, -9}, {5, 3, false, -12}, {2, 3, false, 9}, {0, 3, false, 12},
                   {3, 3, false, 0}, {11, 3, false, -12}, {14, 3, false, 12}, {14, 3, true, -12},
                   {-1, 3, false, 0}}
    for _, c in ipairs(cases) do
      local joint = F.expert_joint_action(c[1], c[2], c[3], 1, 0)
      local fire, zap, sp = F.decode_joint(joint)
      check.eq(F.SPINNER_LEVELS[sp + 1], c[4], string.format("target %d from %d", c[1], c[2]))
      check.eq(fire, 1, "fire")
      check.eq(zap, 0, "zap")
    end
  end},

  {"action_applied_only_in_real_play_or_zoom", function()
    check.truthy(F.action_applied(0x04, 0x80), "play")
    check.truthy(F.action_applied(0x20, 0x81), "zoom")
    check.truthy(not F.action_applied(0x04, 0x00), "attract demo")
    check.truthy(not F.action_applied(0x16, 0x80), "level select")
  end},
}
