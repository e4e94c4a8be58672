-- Command-line access to the Lua side for the Python tests (tests/test_lua*.py):
--   lua tests/lua/tool.lua contract               JSON dump of features.lua and ram_map.lua
--   lua tests/lua/tool.lua parse_replies          hex replies on stdin (one a line) -> JSON
--   lua tests/lua/tool.lua example_frame          hex wire bytes of protocol.md's worked example
--   lua tests/lua/tool.lua protocol_constants     JSON of protocol.lua's integer constants
--   lua tests/lua/tool.lua handshakes             hex tokens on stdin (one a line; empty = none)
--                                                 -> JSON: hex handshake, or false when refused
--   lua tests/lua/tool.lua extract_stream IN OUT  RAM-image records -> encoded frames
--   lua tests/lua/tool.lua cabinet_stream IN OUT  cabinet RAM images + server replies -> the
--                                                 client's frames and inputs
--
-- extract_stream records (big-endian): uint8 flags (bit 0: start over with a fresh carried
-- state, as a new connection does), the client fields uint8 cmd_fire, uint8 cmd_zap, int8
-- cmd_spinner, uint16 frame, then ram_map.RAM_SIZE RAM bytes. Output per record: the 821 wire
-- bytes (save_signal 0), the uint8 expert joint action and the uint16 count of clamped values.
--
-- cabinet_stream runs the production client (client.lua: extraction, connection.lua over a
-- scripted socket, control.lua) on the RAM images of simulated cabinets, one tick per record,
-- as MAME's frame callback runs it. Records (big-endian): uint8 flags (bit 0: a new cabinet,
-- i.e. a fresh client), the server's 5-byte reply to this frame, then the RAM image. Output per
-- record: the 821 frame bytes the client sent, the uint8 expert joint action, the uint16
-- count of clamped values, then the inputs it applied: uint8 fire, zap, int8 spinner ($0050),
-- uint8 start, coin, int16 values written to $0126, $0127, $0200 (-1: not written), uint8
-- applied (the server's action reached the game).

local tests_dir = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
local client_dir = tests_dir .. "/../../tempest_jax/lua"  -- the production scripts
package.path = tests_dir .. "/?.lua;" .. client_dir .. "/?.lua;" .. package.path

local features = require("features")
local ram_map = require("ram_map")
local protocol = require("protocol")
local extract = require("extract")

local function json(v)
  local t = type(v)
  if t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do parts[i] = json(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      local value = v[k]
      if value == nil then value = v[tonumber(k)] end
      parts[#parts + 1] = string.format("%q:%s", k, json(value))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  end
  return string.format("%q", v)
end

local commands = {}

local function unhex(text)
  return (text:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function commands.contract()
  local fields = {}
  for _, f in ipairs(features.FIELDS) do fields[#fields + 1] = {f.name, f.start, f.size} end
  local joints = {}
  for joint = 0, features.NUM_ACTIONS - 1 do
    local fire, zap, sp = features.decode_joint(joint)
    joints[#joints + 1] = {fire, zap, sp, features.joint_index(fire, zap, sp)}
  end
  -- relative_lane and expert_joint_action over every lane pair, both tube kinds
  local rel, expert = {}, {}
  for _, is_open in ipairs({false, true}) do
    for player = 0, 15 do
      for target = -1, 15 do
        if target >= 0 then
          rel[#rel + 1] = {player, target, is_open, features.relative_lane(player, target, is_open)}
        end
        for fz = 0, 3 do
          expert[#expert + 1] = {target, player, is_open, fz >> 1, fz & 1,
            features.expert_joint_action(target, player, is_open, fz >> 1, fz & 1)}
        end
      end
    end
  end
  local ram = {}
  for name, value in pairs(ram_map) do ram[name] = value end
  local constants = {}
  for name, value in pairs(features) do
    if type(value) == "number" then constants[name] = value end
  end
  print(json({fields = fields, spinner_levels = features.SPINNER_LEVELS, joints = joints,
              relative_lane = rel, expert_joint_action = expert, ram_map = ram,
              constants = constants, enemy_info_names = features.ENEMY_INFO_NAMES}))
end

function commands.parse_replies()
  local out = {}
  for line in io.lines() do
    local reply = assert(protocol.parse_reply(unhex(line)))
    out[#out + 1] = {reply.fire, reply.zap, reply.spinner, reply.start_advanced,
                     reply.start_level_min}
  end
  print(json(out))
end

-- The worked example of reference/protocol.md §8 (its second frame, with that example's client
-- fields).
function commands.example_frame()
  local scenes = require("scenes")
  local before, now = scenes.worked_example()
  local ex = extract.new()
  ex:process(before:image())
  local example_client = {frame = 1234, save_signal = 0, cmd_fire = 1, cmd_zap = 0,
                          cmd_spinner = -12}
  print(hex((protocol.encode_frame(ex:process(now:image()), example_client))))
end

function commands.protocol_constants()
  local constants = {}
  for name, value in pairs(protocol) do
    if math.type(value) == "integer" then constants[name] = value end
  end
  print(json(constants))
end

function commands.handshakes()
  local out = {}
  for line in io.lines() do
    local handshake = protocol.handshake(unhex(line))
    out[#out + 1] = handshake and hex(handshake) or false
  end
  print(json(out))
end

local RECORD_HEADER = ">BBBbI2"

function commands.extract_stream(in_path, out_path)
  local input = assert(io.open(in_path, "rb"))
  local output = assert(io.open(out_path, "wb"))
  local header_size = string.packsize(RECORD_HEADER)
  local record_size = header_size + ram_map.RAM_SIZE
  local ex = extract.new()
  local client = {save_signal = 0}
  local index = 0
  while true do
    local record = input:read(record_size)
    if not record then break end
    assert(#record == record_size, "truncated record " .. index)
    local flags
    flags, client.cmd_fire, client.cmd_zap, client.cmd_spinner, client.frame =
      string.unpack(RECORD_HEADER, record)
    if flags & 1 == 1 then ex:reset() end
    local frame = ex:process(record:sub(header_size + 1))
    local bytes, violations = protocol.encode_frame(frame, client)
    output:write(bytes, string.pack(">BI2", frame.expert_joint, violations))
    index = index + 1
  end
  input:close()
  output:close()
end

local CABINET_RECORD_HEADER = ">BbbbBB"   -- flags, then the reply ("bbbBB")
local CABINET_WRITES = {[0x0126] = "last_level", [0x0127] = "max_start", [0x0200] = "cursor"}

function commands.cabinet_stream(in_path, out_path)
  local mocks = require("mocks")
  local client_module = require("client")
  local connection = require("connection")
  local input = assert(io.open(in_path, "rb"))
  local output = assert(io.open(out_path, "wb"))
  local header_size = string.packsize(CABINET_RECORD_HEADER)
  local record_size = header_size + ram_map.RAM_SIZE
  local ram, writes, socket, client, inputs = nil, {}, nil, nil, nil
  local index = 0
  while true do
    local record = input:read(record_size)
    if not record then break end
    assert(#record == record_size, "truncated record " .. index)
    local flags = string.unpack(">B", record)
    ram = record:sub(header_size + 1)
    if flags & 1 == 1 then
      socket, inputs = mocks.socket(), mocks.inputs()
      local opener = mocks.opener({socket})
      local clock = select(2, mocks.clock(0.001))
      client = client_module.new{
        read_byte = function(addr) return ram:byte(addr + 1) end,
        read_ram = function() return ram end,
        write_byte = function(addr, value) writes[#writes + 1] = {addr, value} end,
        inputs = inputs,
        connection = connection.new{host = "127.0.0.1", port = 9999, open_socket = opener.open,
                                    clock = clock},
        wall_time = function() return 0 end,
      }
    end
    socket:feed(record:sub(2, header_size))        -- the server's reply to this frame
    writes = {}
    local violations = client.stats.violations
    assert(client:on_frame(), "record " .. index .. ": the tick counter did not move")
    local sent = socket.written[#socket.written]
    assert(#sent == protocol.FRAME_WIRE_SIZE, "record " .. index .. ": no frame sent")
    local d = client.last_decision
    local written = {last_level = -1, max_start = -1, cursor = -1}
    for _, w in ipairs(writes) do
      local addr, value = w[1], w[2]
      if addr == ram_map.SPINNER_DELTA then
        assert(value == d.spinner & 0xFF, "record " .. index .. ": spinner byte")
      else
        local name = CABINET_WRITES[addr]
        assert(name, string.format("record %d: unexpected write to $%04X", index, addr))
        written[name] = value
      end
    end
    local applied = 0
    if d.applied then applied = 1 end
    output:write(sent, string.pack(">BI2BBbBBhhhB", client.last_frame.expert_joint,
                                   client.stats.violations - violations, inputs.last.fire,
                                   inputs.last.zap, d.spinner, inputs.last.start,
                                   inputs.last.coin, written.last_level, written.max_start,
                                   written.cursor, applied))
    index = index + 1
  end
  input:close()
  output:close()
end

local command = commands[arg[1]]
if not command then
  io.stderr:write("usage: tool.lua contract | parse_replies | example_frame | "
                  .. "protocol_constants | handshakes | extract_stream IN OUT | "
                  .. "cabinet_stream IN OUT\n")
  os.exit(2)
end
command(table.unpack(arg, 2))
