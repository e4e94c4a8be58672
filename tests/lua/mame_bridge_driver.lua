-- Autoboot script for the real-MAME bridge test (tests/test_lua_mame_bridge.py) on the `arb`
-- driver: before the production client (tempest_jax/lua/main.lua, loaded below) sees each video
-- frame, this writes the next simulator RAM image into MAME's memory; after the client has
-- processed it, it checks that the server's reply reached the game ($0050 and the input roles).
-- Ends MAME with
-- os.exit(code): 0 when every image was processed and applied as expected.
--
-- Environment: BRIDGE_IMAGES (RAM images, RAM_SIZE bytes each), BRIDGE_RESULT (summary file),
-- plus main.lua's TEMPEST_SERVER, TEMPEST_ANY_SYSTEM=1 and optionally TEMPEST_OVERLAY=1 (the
-- summary then gives the overlay's draws and errors).

local tests_dir = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
local client_dir = tests_dir .. "/../../tempest_jax/lua"  -- the production scripts
package.path = client_dir .. "/?.lua;" .. package.path

local features = require("features")
local ram_map = require("ram_map")

local space = manager.machine.devices[":maincpu"].spaces["program"]
local images = assert(io.open(os.getenv("BRIDGE_IMAGES"), "rb")):read("a")
local count = #images // ram_map.RAM_SIZE
local result_path = os.getenv("BRIDGE_RESULT")
local index = 0          -- images written so far
local problems = {}
local cpu_start

local function finish(code)
  local f = assert(io.open(result_path, "w"))
  f:write(string.format("images %d processed %d sent %d cpu_s %.3f\n", count,
                        tempest_jax and tempest_jax.client.stats.frames or 0,
                        tempest_jax and tempest_jax.client.stats.sent or 0,
                        os.clock() - (cpu_start or os.clock())))
  local overlay = tempest_jax and tempest_jax.overlay
  if overlay then
    f:write(string.format("overlay draws %d errors %d on %s\n", overlay.draws, overlay.errors,
                          overlay.surface.kind))
  end
  for _, p in ipairs(problems) do f:write(p, "\n") end
  f:close()
  os.exit(code)
end

local function problem(text)
  problems[#problems + 1] = string.format("image %d: %s", index, text)
  if #problems >= 20 then finish(1) end
end

-- The client processed image `index` last frame: its reply must have reached the game.
local function check_applied()
  local c = tempest_jax.client
  if c.stats.frames ~= index then
    problem(string.format("processed %d frames for %d images", c.stats.frames, index))
    return
  end
  local d, cmd, frame = c.last_decision, c.commanded, c.last_frame
  local applied = features.action_applied(frame.gamestate, frame.game_mode)
  if d.applied ~= applied then problem("applied flag " .. tostring(d.applied)) end
  local spinner = space:read_u8(ram_map.SPINNER_DELTA)
  local want_spinner, want_fire, want_zap = 0, 0, 0
  if applied then want_spinner, want_fire, want_zap = cmd.spinner, cmd.fire, cmd.zap end
  if spinner ~= want_spinner & 0xFF then
    problem(string.format("$0050 = %d, expected spinner %d", spinner, want_spinner))
  end
  local inputs = c.inputs.last
  if inputs.fire ~= want_fire or inputs.zap ~= want_zap then
    problem(string.format("inputs fire %s zap %s, expected %d %d", tostring(inputs.fire),
                          tostring(inputs.zap), want_fire, want_zap))
  end
end

local function on_frame()
  if tempest_jax == nil then
    problems[#problems + 1] = "the client did not start"
    finish(1)
  end
  if index > 0 then check_applied() end
  if index == count then finish(#problems == 0 and 0 or 1) end
  cpu_start = cpu_start or os.clock()
  local base = index * ram_map.RAM_SIZE
  for addr = 0, ram_map.RAM_SIZE - 1 do space:write_u8(addr, images:byte(base + addr + 1)) end
  index = index + 1
end

-- Registered first, so it runs before the client's notifier on every frame.
local function guarded()
  local ok, err = xpcall(on_frame, debug.traceback)
  if not ok then
    problems[#problems + 1] = "driver error: " .. err
    finish(1)
  end
end
if emu.add_machine_frame_notifier then
  bridge_subscription = emu.add_machine_frame_notifier(guarded)
else
  emu.register_frame_done(guarded)
end

dofile(client_dir .. "/main.lua")
