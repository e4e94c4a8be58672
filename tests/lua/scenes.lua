-- Builders of Tempest RAM contents for the plain-Lua tests (addresses from ram_map.lua).

local ram_map = require("ram_map")
local mocks = require("mocks")

local scenes = {}

local function bcd(n) return (n // 10) * 16 + n % 10 end

function scenes.set_score(ram, score)
  ram:set(ram_map.P1_SCORE_L, bcd(score % 100))
  ram:set(ram_map.P1_SCORE_M, bcd(score // 100 % 100))
  ram:set(ram_map.P1_SCORE_H, bcd(score // 10000 % 100))
end

function scenes.set_player(ram, lane, alive)
  ram:set(ram_map.PLAYER_SEG, lane)
  local st = (lane + 1) & 0x0F
  if alive == false then st = st | 0x80 end
  ram:set(ram_map.PLAYER_STATE, st)
  ram:set(ram_map.PLAYER_ALONG, 0x10)
end

-- A real game in play on a closed tube: level 12, 3 lives, player in `lane`.
function scenes.playing(lane, opts)
  opts = opts or {}
  local ram = mocks.ram()
  ram:set(ram_map.GAMESTATE, opts.gamestate or 0x04)
  ram:set(ram_map.TIMECTR, opts.timectr or 1)
  ram:set(ram_map.GAME_MODE, opts.game_mode or 0x80)
  ram:set(ram_map.P1_LIVES, 3)
  ram:set(ram_map.P1_LEVEL, opts.level or 12)
  ram:set(ram_map.CURLEVEL, opts.level or 12)
  ram:set(ram_map.PULSAR_FLIPRATE, 255)
  if opts.open then ram:set(ram_map.OPEN_LEVEL, 0xFF) end
  ram:set(ram_map.ENEMIES_PENDING, opts.pending or 10)
  for i = 0, 15 do ram:set(ram_map.TUBE_ANGLE + i, opts.angle and opts.angle[i + 1] or 0) end
  scenes.set_player(ram, lane, opts.alive)
  scenes.set_score(ram, opts.score or 0)
  return ram
end

-- Enemy slot k: e = {type, lane, along, direction, between, away, can_shoot, split, flip}.
function scenes.enemy(ram, k, e)
  ram:set(ram_map.ENEMY_ALONG + k, e.along)
  ram:set(ram_map.ENEMY_SEG + k, e.lane)
  ram:set(ram_map.ENEMY_TYPE_INFO + k, (e.type or 0) | ((e.direction or 0) << 6)
    | ((e.between or 0) << 7))
  ram:set(ram_map.ACTIVE_ENEMY_INFO + k, ((e.away or 0) << 7) | ((e.can_shoot or 0) << 6)
    | (e.split or 0))
  ram:set(ram_map.MORE_ENEMY_INFO + k, e.flip or 0)
end

function scenes.player_shot(ram, j, lane, pos)
  ram:set(ram_map.PLAYER_SHOT_SEGMENTS + j, lane)
  ram:set(ram_map.PLAYER_SHOT_POSITIONS + j, pos)
end

function scenes.enemy_shot(ram, j, lane, pos, lsb)
  ram:set(ram_map.ENEMY_SHOT_SEGMENTS + j, lane)
  ram:set(ram_map.ENEMY_SHOT_POSITIONS + j, pos)
  ram:set(ram_map.ENM_SHOT_LSB + j, lsb or 0)
end

-- The worked example of reference/protocol.md §8: the frame before and the frame itself.
function scenes.worked_example()
  local function frame(lane, score, flipper_along)
    local ram = scenes.playing(lane, {score = score, timectr = 0x21})
    ram:set(ram_map.PLAYER_SHOT_COUNT, 2)
    scenes.player_shot(ram, 0, 3, 0x30)
    scenes.player_shot(ram, 1, 3, 0x58)
    scenes.enemy(ram, 0, {type = 0, lane = 5, along = flipper_along, can_shoot = 1})
    scenes.enemy(ram, 1, {type = 2, lane = 10, along = 0xC0})
    return ram
  end
  return frame(2, 12400, 0x92), frame(3, 12550, 0x90)
end

return scenes
