-- client.lua: the per-tick loop over a mock RAM and scripted sockets.

local client = require("client")
local connection = require("connection")
local protocol = require("protocol")
local mame_api = require("mame_api")
local ram_map = require("ram_map")
local mocks = require("mocks")
local scenes = require("scenes")
local check = require("check")

local function reply(fire, zap, spinner) return string.pack("bbbBB", fire, zap, spinner, 1, 13) end

local function setup(sockets)
  local ram = scenes.playing(5, {timectr = 1})
  local space = ram:space()
  local opener = mocks.opener(sockets)
  local clock, now = mocks.clock(0.01)
  local wall = {t = 1000}
  local conn = connection.new{host = "127.0.0.1", port = 9999, open_socket = opener.open,
                              clock = now, reply_timeout_s = 0.5}
  local inputs = mocks.inputs()
  local c = client.new{
    read_byte = function(addr) return space:read_u8(addr) end,
    read_ram = mame_api.ram_reader(space),
    write_byte = function(addr, v) space:write_u8(addr, v) end,
    inputs = inputs, connection = conn, wall_time = function() return wall.t end,
  }
  return {ram = ram, client = c, clock = clock, wall = wall, inputs = inputs, conn = conn}
end

local function tick(t)
  t.ram:set(ram_map.TIMECTR, (t.ram:get(ram_map.TIMECTR) + 1) & 0xFF)
  return t.client:on_frame()
end

-- Header fields of the n-th frame written to a socket (after the 2-byte handshake).
local function sent_header(sock, n)
  local bytes = sock:all_written():sub(3 + (n - 1) * 821, 2 + n * 821)
  return {string.unpack(">I2" .. protocol.HEADER_FORMAT:sub(2), bytes)}
end

return {
  {"processes_once_per_game_tick", function()
    local t = setup({mocks.socket({reply(0, 0, 0), reply(0, 0, 0)})})
    check.truthy(t.client:on_frame(), "first frame")
    check.truthy(not t.client:on_frame(), "same timectr: skipped")
    check.truthy(tick(t), "next tick")
    check.eq(t.client.stats.frames, 2)
  end},

  {"server_action_reaches_the_game_and_is_echoed", function()
    local sock = mocks.socket({reply(1, 0, -12), "", reply(0, 1, 6)})
    local t = setup({sock})
    t.client:on_frame()
    check.eq(t.ram:get(ram_map.SPINNER_DELTA), 0xF4, "spinner -12 written to $0050")
    check.eq(t.inputs.last.fire, 1)
    tick(t)
    check.eq(t.ram:get(ram_map.SPINNER_DELTA), 6)
    check.eq(t.inputs.last.zap, 1)
    local first, second = sent_header(sock, 1), sent_header(sock, 2)
    check.eq(first[8], 1, "frame counter counts this frame")
    check.eq(second[8], 2, "frame counter")
    check.eq(second[11] .. "," .. second[12] .. "," .. second[13], "1,0,-12",
             "cmd fields echo the previous reply")
  end},

  {"neutral_action_while_disconnected_then_reconnect", function()
    local late = mocks.socket({reply(1, 0, 9)})
    local t = setup({false, late})
    t.client:on_frame()
    check.eq(t.client.stats.offline, 1)
    check.eq(t.ram:get(ram_map.SPINNER_DELTA), 0, "neutral spinner")
    check.eq(t.inputs.last.fire, 0, "neutral fire")
    tick(t)
    check.eq(t.client.stats.offline, 2, "still backing off")
    t.clock.now = t.clock.now + 1
    tick(t)
    check.eq(t.client.stats.sent, 1, "reconnected and exchanged")
    check.eq(t.ram:get(ram_map.SPINNER_DELTA), 9)
  end},

  {"reply_timeout_plays_on_neutral", function()
    local silent = mocks.socket()
    local t = setup({silent})
    t.client:on_frame()
    check.eq(t.conn.stats.timeouts, 1)
    check.eq(t.ram:get(ram_map.SPINNER_DELTA), 0)
    check.truthy(silent.closed, "closed")
  end},

  {"new_connection_restarts_the_carried_state", function()
    local first = mocks.socket({reply(0, 0, 0)})
    local t = setup({first, mocks.socket({reply(0, 0, 0)})})
    t.client:on_frame()
    check.eq(t.client.extractor.carried.first, false)
    tick(t)  -- times out, connection lost
    t.clock.now = t.clock.now + 1
    scenes.set_score(t.ram, 500)
    tick(t)
    local bytes = t.client.connection.file:all_written()
    -- handshake 2, length 2, num_values 2, subj 8: obj starts at byte 15
    local obj = string.unpack(">d", bytes, 15)
    check.eq(obj, 0.0, "first frame of the new connection: no score term")
  end},

  {"save_signal_every_300_s_and_on_stop", function()
    local sock = mocks.socket({reply(0, 0, 0), reply(0, 0, 0), reply(0, 0, 0)})
    local t = setup({sock})
    t.client:on_frame()
    t.wall.t = t.wall.t + 300
    tick(t)
    t.client:on_stop()
    check.eq(sent_header(sock, 1)[10], 0)
    check.eq(sent_header(sock, 2)[10], 1, "300 s passed")
    check.eq(sent_header(sock, 3)[10], 1, "final frame at shutdown")
    check.truthy(sock.closed, "closed at shutdown")
  end},
}
