-- Test doubles for the plain-Lua tests: a RAM table with a MAME-like memory space over it, a
-- scripted socket, a manual clock, recording inputs, and mock `emu`/`manager` globals.

local ram_map = require("ram_map")

local mocks = {}

-- RAM: a table of bytes (default 0) with a MAME-like program space view.
local Ram = {}
Ram.__index = Ram

function mocks.ram(values)
  local self = setmetatable({bytes = {}, writes = {}}, Ram)
  for addr, v in pairs(values or {}) do self.bytes[addr] = v end
  return self
end

function Ram:set(addr, v) self.bytes[addr] = v & 0xFF; return self end
function Ram:get(addr) return self.bytes[addr] or 0 end

function Ram:image()
  local out = {}
  for addr = 0, ram_map.RAM_SIZE - 1 do out[addr + 1] = self:get(addr) end
  return string.char(table.unpack(out))
end

-- A program space: read_u8/write_u8 (and read_range unless `bulk` is false).
function Ram:space(bulk)
  local ram = self
  local space = {}
  function space.read_u8(_, addr) return ram:get(addr) end
  function space.write_u8(_, addr, v)
    ram.writes[#ram.writes + 1] = {addr, v}
    ram:set(addr, v)
  end
  if bulk ~= false then
    function space.read_range(_, first, last, width)
      assert(width == 8)
      local out = {}
      for addr = first, last do out[#out + 1] = ram:get(addr) end
      return string.char(table.unpack(out))
    end
  end
  return space
end

-- A clock advanced by hand; also advances by `tick` on every call so busy-wait loops end.
function mocks.clock(tick)
  local t = {now = 0.0}
  return t, function()
    t.now = t.now + (tick or 0)
    return t.now
  end
end

-- A socket whose reads follow a script: each read(n) takes the next entry ("" = nothing has
-- arrived yet; a string longer than n is split, the rest served by the next read). A function
-- entry is called and its result used (an error raised there is a read error). Records writes.
local Socket = {}
Socket.__index = Socket

function mocks.socket(script)
  return setmetatable({script = script or {}, written = {}, closed = false, reads = 0,
                       write_limit = nil, write_error = nil}, Socket)
end

function Socket:feed(...)
  for _, chunk in ipairs({...}) do self.script[#self.script + 1] = chunk end
end

function Socket:read(n)
  self.reads = self.reads + 1
  local entry = table.remove(self.script, 1)
  if entry == nil then return "" end
  if type(entry) == "function" then entry = entry() end
  if #entry > n then
    table.insert(self.script, 1, entry:sub(n + 1))
    entry = entry:sub(1, n)
  end
  return entry
end

function Socket:write(data)
  if self.write_error then error(self.write_error) end
  local n = #data
  if self.write_limit then n = math.min(n, self.write_limit) end
  self.written[#self.written + 1] = data:sub(1, n)
  return n
end

function Socket:close() self.closed = true end

function Socket:all_written() return table.concat(self.written) end

-- open_socket for connection.lua: hands out the sockets in `sockets` in order; `false` entries
-- are refused connections.
function mocks.opener(sockets)
  local opener = {attempts = 0}
  function opener.open(host, port)
    opener.attempts = opener.attempts + 1
    opener.last_address = string.format("%s:%d", host, port)
    local s = table.remove(sockets, 1)
    if not s then return nil, "connection refused" end
    return s
  end
  return opener
end

-- Inputs that record every set(role, value).
function mocks.inputs()
  local inputs = {last = {}, history = {}}
  function inputs:set(role, value)
    self.last[role] = value
    self.history[#self.history + 1] = {role, value}
  end
  return inputs
end

-- A screen or render container that records draw_text calls ({x, y, text, fg, bg} each);
-- `fail` makes every call raise.
function mocks.surface(width, height, fail)
  local surface = {calls = {}, width = width, height = height}
  function surface.draw_text(_, x, y, text, fg, bg)
    if fail then error("draw failed") end
    surface.calls[#surface.calls + 1] = {x, y, text, fg, bg}
  end
  return surface
end

-- Minimal `emu` and `manager` globals for mame_api.lua and main.lua. `modern` selects the
-- add_machine_* notifier API (current MAME) instead of register_* (MAME 0.251). `screens`
-- (tag -> mocks.surface), `ui_container` and `ui` (MAME's UI manager) serve the overlay.
function mocks.mame(opts)
  local m = {frame_callbacks = {}, stop_callbacks = {}, sockets = opts.sockets,
             field_values = {}}
  local emu = {}
  if opts.modern then
    function emu.add_machine_frame_notifier(cb)
      m.frame_callbacks[#m.frame_callbacks + 1] = cb
      return {subscription = "frame"}
    end
    function emu.add_machine_stop_notifier(cb)
      m.stop_callbacks[#m.stop_callbacks + 1] = cb
      return {subscription = "stop"}
    end
  else
    function emu.register_frame_done(cb) m.frame_callbacks[#m.frame_callbacks + 1] = cb end
    function emu.register_stop(cb) m.stop_callbacks[#m.stop_callbacks + 1] = cb end
  end
  function emu.file(_, flags)
    m.open_flags = flags
    local file, socket = {}, nil
    function file.open(_, address)
      m.last_open = address
      socket = table.remove(m.sockets or {}, 1)
      if not socket then return "connection refused" end
      return nil
    end
    function file.read(_, n) return socket:read(n) end
    function file.write(_, data) return socket:write(data) end
    function file.close() socket:close() end
    return file
  end
  local function field(role)
    return {set_value = function(_, v) m.field_values[role] = v end}
  end
  local ports = {
    [":BUTTONSP1"] = {fields = {["P1 Button 1"] = field("fire"), ["P1 Button 2"] = field("zap")}},
    [":IN2"] = {fields = {["1 Player Start"] = field("start")}},
  }
  if opts.with_coin then ports[":IN0"] = {fields = {["Coin 1"] = field("coin")}} end
  local machine = {
    system = {name = opts.system or "tempest1"},
    devices = {[":maincpu"] = {spaces = {program = opts.space}}},
    ioport = {ports = ports},
    screens = opts.screens or {},
    render = {ui_container = opts.ui_container},
  }
  m.emu, m.manager = emu, {machine = machine, ui = opts.ui}
  function m.install()
    _G.emu, _G.manager = m.emu, m.manager
  end
  function m.frame()
    for _, cb in ipairs(m.frame_callbacks) do cb() end
  end
  function m.stop()
    for _, cb in ipairs(m.stop_callbacks) do cb() end
  end
  return m
end

return mocks
