-- The MAME Lua API as the client uses it, for both Debian's MAME 0.251 (Lua 5.3, register_*
-- notifiers) and current MAME (Lua 5.4, add_machine_* notifiers): memory access, notifiers,
-- sockets, input fields and a clock. reference/mame_testing.md lists what each version has.

local ram_map = require("ram_map")

local mame_api = {}

function mame_api.machine()
  return manager.machine
end

-- The main CPU's program space.
function mame_api.memory()
  local cpu = mame_api.machine().devices[":maincpu"]
  if not cpu then return nil, "no :maincpu device" end
  return cpu.spaces["program"]
end

-- A function returning the RAM image ($0000 .. RAM_SIZE - 1) as a string, one bulk read when
-- the space offers read_range.
function mame_api.ram_reader(space)
  local last = ram_map.RAM_SIZE - 1
  local ok, probe = pcall(function() return space:read_range(0, last, 8) end)
  if ok and type(probe) == "string" and #probe == ram_map.RAM_SIZE then
    return function() return space:read_range(0, last, 8) end
  end
  return function()
    local bytes = {}
    for addr = 0, last do bytes[addr + 1] = space:read_u8(addr) end
    return string.char(table.unpack(bytes))
  end
end

-- Frame and stop notifiers. The add_machine_* forms return a subscription that must stay
-- referenced, or the callback stops when it is collected: the caller keeps what this returns.
function mame_api.on_frame(callback)
  if emu.add_machine_frame_notifier then return emu.add_machine_frame_notifier(callback) end
  emu.register_frame_done(callback)
  return true
end

function mame_api.on_stop(callback)
  if emu.add_machine_stop_notifier then return emu.add_machine_stop_notifier(callback) end
  emu.register_stop(callback)
  return true
end

local OPEN_READ_WRITE = 3  -- read | write; adding create (4) would make MAME listen instead

-- A connected socket file, or nil and MAME's error.
function mame_api.open_socket(host, port)
  local file = emu.file("", OPEN_READ_WRITE)
  local err = file:open(string.format("socket.%s:%d", host, port))
  if err ~= nil then return nil, err end
  return file
end

-- Input fields by role: port tag and the names the field has had across MAME versions.
mame_api.INPUT_FIELDS = {
  fire = {":BUTTONSP1", {"P1 Button 1"}},
  zap = {":BUTTONSP1", {"P1 Button 2"}},
  start = {":IN2", {"1 Player Start", "P1 Start", "Start 1"}},
  coin = {":IN0", {"Coin 1"}},
}

-- An inputs object: set(role, 0|1) presses or releases that field. A field this machine lacks
-- is reported once and then skipped; `last` records the values most recently set per role.
function mame_api.inputs(log)
  local fields, missing = {}, {}
  local inputs = {last = {}}
  local ports = mame_api.machine().ioport.ports
  for role, spec in pairs(mame_api.INPUT_FIELDS) do
    local port = ports[spec[1]]
    if port then
      for _, name in ipairs(spec[2]) do
        if port.fields[name] then
          fields[role] = port.fields[name]
          break
        end
      end
    end
    if not fields[role] then
      missing[#missing + 1] = string.format("%s (%s %s)", role, spec[1], spec[2][1])
    end
  end
  if #missing > 0 then
    table.sort(missing)
    log("input fields not found, those controls are not applied: " .. table.concat(missing, ", "))
  end
  function inputs:set(role, value)
    self.last[role] = value
    local field = fields[role]
    if field then field:set_value(value) end
  end
  return inputs
end

-- MAME's UI line height as a fraction of the render target's height, or nil where this MAME
-- does not offer it.
function mame_api.ui_line_height()
  local ok, height = pcall(function() return manager.ui.line_height end)
  if ok and type(height) == "number" and height > 0 then return height end
  return nil
end

-- End MAME now. os.exit rather than machine:exit(): Debian's MAME 0.251 crashes in its Lua
-- library about half the time when an autoboot script's machine exits normally
-- (reference/mame_testing.md); the price is that MAME does not save cfg/nvram on this path.
function mame_api.exit(code)
  os.exit(code)
end

-- Seconds for deadlines and back-off. os.clock is CPU time with fine resolution, os.time wall
-- time in whole seconds; both lower-bound the wall time elapsed, so their maximum never runs
-- ahead of the wall clock and lags it by at most about a second (when MAME sleeps or another
-- process holds the CPU).
function mame_api.clock_function()
  local cpu0, wall0 = os.clock(), os.time()
  return function()
    return math.max(os.clock() - cpu0, os.time() - wall0 - 1)
  end
end

return mame_api
