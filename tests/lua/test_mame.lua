-- mame_api.lua and main.lua against mock `emu`/`manager` globals shaped like MAME 0.251 (Lua
-- 5.3, register_* notifiers) and current MAME (add_machine_* notifiers).

local mame_api = require("mame_api")
local ram_map = require("ram_map")
local mocks = require("mocks")
local scenes = require("scenes")
local check = require("check")

local MAIN = (debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or ".")
             .. "/../../tempest_jax/lua/main.lua"

local function reply(spinner) return string.pack("bbbBB", 1, 0, spinner, 1, 13) end

-- Run main.lua with the given environment; returns what it printed while starting.
local function run_main(m, env)
  local saved_getenv = os.getenv
  local printed = {}
  local quiet_print = print
  os.getenv = function(name) return env[name] end
  print = function(...)
    printed[#printed + 1] = table.concat({...}, " ")
    quiet_print(...)
  end
  m.install()
  local ok, err = pcall(dofile, MAIN)
  os.getenv, print = saved_getenv, quiet_print
  assert(ok, err)
  return table.concat(printed, "\n")
end

-- Run a test with main's log lines (printed later from its callbacks) kept out of the output.
local function quietly(fn)
  return function()
    local saved = print
    print = function() end
    local ok, err = pcall(fn)
    print = saved
    if not ok then error(err, 0) end
  end
end

return {
  {"ram_reader_bulk_and_bytewise_agree", function()
    local ram = scenes.playing(7, {score = 123456})
    scenes.enemy(ram, 2, {type = 3, lane = 9, along = 0x77})
    local bulk = mame_api.ram_reader(ram:space(true))()
    local bytewise = mame_api.ram_reader(ram:space(false))()
    check.eq(#bulk, ram_map.RAM_SIZE)
    check.eq(bulk, bytewise)
    check.eq(bulk, ram:image())
  end},

  {"notifiers_use_add_machine_when_present", function()
    for _, modern in ipairs({true, false}) do
      local m = mocks.mame{modern = modern, space = scenes.playing(0):space()}
      m.install()
      local calls = 0
      local sub = mame_api.on_frame(function() calls = calls + 1 end)
      mame_api.on_stop(function() calls = calls + 10 end)
      m.frame()
      m.stop()
      check.eq(calls, 11, "callbacks registered (modern = " .. tostring(modern) .. ")")
      if modern then check.eq(sub.subscription, "frame", "subscription returned to keep") end
    end
  end},

  {"open_socket_address_and_flags", function()
    local m = mocks.mame{sockets = {mocks.socket()}, space = scenes.playing(0):space()}
    m.install()
    local file = assert(mame_api.open_socket("127.0.0.1", 9123))
    check.eq(m.last_open, "socket.127.0.0.1:9123")
    check.eq(m.open_flags, 3, "read | write: connect, never listen")
    check.truthy(file.read, "a file")
    local none, err = mame_api.open_socket("127.0.0.1", 9123)
    check.eq(none, nil)
    check.eq(err, "connection refused")
  end},

  {"inputs_report_missing_fields_once", function()
    local m = mocks.mame{space = scenes.playing(0):space()}
    m.install()
    local logged = {}
    local inputs = mame_api.inputs(function(msg) logged[#logged + 1] = msg end)
    inputs:set("fire", 1)
    inputs:set("coin", 1)
    check.eq(m.field_values.fire, 1)
    check.eq(inputs.last.coin, 1, "recorded even without a field")
    check.eq(#logged, 1)
    check.truthy(logged[1]:find("coin %(:IN0 Coin 1%)"), "names the missing field")
  end},

  {"main_plays_against_env_server_on_both_apis", quietly(function()
    for _, modern in ipairs({true, false}) do
      local ram = scenes.playing(5)
      local sock = mocks.socket({reply(-6), reply(3)})
      local m = mocks.mame{modern = modern, sockets = {sock}, space = ram:space(),
                           with_coin = true}
      local out = run_main(m, {TEMPEST_SERVER = "127.0.0.1:9555"})
      check.truthy(out:find("client started on tempest1, server 127.0.0.1:9555"), out)
      check.truthy(tempest_jax and tempest_jax.frame_subscription, "subscription kept")
      m.frame()
      check.eq(m.last_open, "socket.127.0.0.1:9555")
      check.eq(ram:get(ram_map.SPINNER_DELTA), 0xFA, "-6")
      m.frame()
      check.eq(tempest_jax.client.stats.frames, 1, "same tick: not processed again")
      ram:set(ram_map.TIMECTR, 2)
      m.frame()
      check.eq(ram:get(ram_map.SPINNER_DELTA), 3)
      check.eq(m.field_values.fire, 1, "fire through the input port")
      sock:feed(reply(0))
      m.stop()
      check.eq(tempest_jax.client.stats.sent, 3, "final frame at stop")
      check.truthy(sock.closed, "socket closed at stop")
    end
  end)},

  {"main_sends_the_env_token_and_refuses_one_too_long", quietly(function()
    local sock = mocks.socket({reply(0)})
    local m = mocks.mame{sockets = {sock}, space = scenes.playing(5):space()}
    run_main(m, {TEMPEST_TOKEN = "s3cret"})
    m.frame()
    check.eq(sock:all_written():sub(1, 10), "\0\1\0\6s3cret", "token handshake first")
    m = mocks.mame{sockets = {mocks.socket()}, space = scenes.playing(5):space()}
    local out = run_main(m, {TEMPEST_TOKEN = string.rep("t", 300)})
    check.truthy(out:find("not started: TEMPEST_TOKEN: token is 300 bytes"), out)
    check.eq(tempest_jax, nil)
  end)},

  {"main_defaults_refusals_and_stop_file", quietly(function()
    local m = mocks.mame{space = scenes.playing(0):space(), system = "arb"}
    local out = run_main(m, {})
    check.truthy(out:find("not Tempest"), out)
    check.eq(tempest_jax, nil)
    check.eq(#m.frame_callbacks, 0, "nothing installed")
    m = mocks.mame{space = scenes.playing(0):space()}
    out = run_main(m, {TEMPEST_SERVER = "nonsense"})
    check.truthy(out:find("TEMPEST_SERVER"), out)
    check.eq(tempest_jax, nil)

    local stop_file = os.tmpname()
    local ram = scenes.playing(0)
    local sock = mocks.socket()
    m = mocks.mame{space = ram:space(), system = "arb", sockets = {sock}}
    local exit_codes = {}
    local real_exit = mame_api.exit
    mame_api.exit = function(code) exit_codes[#exit_codes + 1] = code end
    out = run_main(m, {TEMPEST_ANY_SYSTEM = "1", TEMPEST_STOP_FILE = stop_file})
    check.truthy(out:find("server 127.0.0.1:9999"), "default address: " .. out)
    sock:feed(reply(0))  -- for the last frame
    for i = 1, 60 do
      sock:feed(reply(0))
      ram:set(ram_map.TIMECTR, i)
      m.frame()
    end
    os.remove(stop_file)
    mame_api.exit = real_exit
    check.eq(table.concat(exit_codes, ","), "0", "exit(0) when the stop file appeared")
    check.eq(tempest_jax.client.stats.sent, 61, "one last frame before exiting")
    check.eq(tempest_jax.errors, 0)
  end)},

  {"errors_in_the_frame_callback_are_counted_not_fatal", quietly(function()
    local ram = scenes.playing(0)
    local m = mocks.mame{space = ram:space(), sockets = {}}
    run_main(m, {})
    tempest_jax.client.read_ram = function() error("boom") end
    ram:set(ram_map.TIMECTR, 9)
    m.frame()
    ram:set(ram_map.TIMECTR, 10)
    m.frame()
    check.eq(tempest_jax.errors, 2)
  end)},
}
