-- protocol.lua: frame serialization (the worked example of reference/protocol.md §8 byte for
-- byte), clamping, reply parsing.

local protocol = require("protocol")
local extract = require("extract")
local scenes = require("scenes")
local check = require("check")

local function unhex(text)
  return (text:gsub("%s+", ""):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local EXAMPLE_CLIENT = {frame = 1234, save_signal = 0, cmd_fire = 1, cmd_zap = 0,
                        cmd_spinner = -12}

return {
  {"worked_example_bytes", function()
    local before, now = scenes.worked_example()
    local ex = extract.new()
    ex:process(before:image())
    local frame = ex:process(now:image())
    local bytes, violations = protocol.encode_frame(frame, EXAMPLE_CLIENT)
    check.eq(#bytes, 821, "wire size")
    check.eq(violations, 0)
    check.eq(check.hex(bytes:sub(1, 2)), "03 33", "length prefix")
    local header = unhex([[00 C3 40 14 00 00 00 00 00 00 40 62 C0 00 00 00 00 00 04 80
                           00 04 D2 00 00 31 06 00 01 00 FF F4 00 05 03 00 01 00 0C]])
    check.eq(check.hex(bytes:sub(3, 41)), check.hex(header), "header")
    local first_nine = unhex([[3D E3 8E 39 3F 00 80 81 00 00 00 00 3F 00 00 00 3D FA C6 88
                               3E 4C CC CD 3F 80 00 00 3E 88 88 89 3D 80 80 81]])
    check.eq(check.hex(bytes:sub(42, 42 + 35)), check.hex(first_nine), "state 0..8")
  end},

  {"frame_round_trips_through_unpack", function()
    local _, now = scenes.worked_example()
    local frame = extract.new():process(now:image())
    local bytes = protocol.encode_frame(frame, {frame = 70000, save_signal = 1, cmd_fire = 0,
                                                cmd_zap = 1, cmd_spinner = 31})
    local fields = {string.unpack(">I2" .. protocol.HEADER_FORMAT:sub(2), bytes)}
    check.eq(fields[1], 819)
    check.eq(fields[2], 195)
    check.eq(fields[8], 70000 % 65536, "frame counter wraps")
    check.eq(fields[10], 1, "save signal")
    check.eq(fields[13], 31, "cmd_spinner")
    local values = {string.unpack(protocol.STATE_FORMAT, bytes, 42)}
    for i = 1, 195 do check.eq(values[i], check.f32(frame.state[i]), "state " .. (i - 1)) end
  end},

  {"out_of_range_values_are_clamped_and_counted", function()
    local _, now = scenes.worked_example()
    local frame = extract.new():process(now:image())
    frame.state[1], frame.state[2], frame.state[3] = 0 / 0, 2.5, -math.huge
    local bytes, violations = protocol.encode_frame(frame, EXAMPLE_CLIENT)
    check.eq(violations, 3)
    local a, b, c = string.unpack(">fff", bytes, 42)
    check.eq(a, 0.0, "NaN -> 0")
    check.eq(b, 1.0)
    check.eq(c, -1.0)
  end},

  {"reply_parsing", function()
    local r = assert(protocol.parse_reply(unhex("01 00 F4 01 0D")))
    check.eq(r.fire, 1)
    check.eq(r.zap, 0)
    check.eq(r.spinner, -12)
    check.eq(r.start_advanced, true)
    check.eq(r.start_level_min, 13)
    r = assert(protocol.parse_reply(unhex("00 01 1F 00 51")))
    check.eq(r.spinner, 31)
    check.eq(r.start_advanced, false)
    check.eq(r.start_level_min, 81)
    check.eq(protocol.parse_reply(unhex("01 00 F4 01")), nil, "short reply")
    check.eq(protocol.parse_reply(unhex("02 00 00 01 0D")), nil, "fire 2")
    check.eq(protocol.parse_reply(unhex("00 00 DF 01 0D")), nil, "spinner -33")
  end},

  {"handshake_is_uint16_zero", function()
    check.eq(protocol.HANDSHAKE, "\0\0")
    check.eq(protocol.handshake(nil), "\0\0", "no token: the reference's handshake")
    check.eq(protocol.handshake(""), "\0\0", "empty token: the reference's handshake")
  end},

  {"token_handshake_is_value_1_then_length_prefixed_token", function()
    check.eq(protocol.handshake("s3cret"), unhex("00 01 00 06") .. "s3cret")
    local longest = string.rep("t", protocol.MAX_TOKEN_BYTES)
    check.eq(protocol.handshake(longest), unhex("00 01 01 00") .. longest)
    local none, why = protocol.handshake(longest .. "t")
    check.eq(none, nil, "too long")
    check.truthy(why:find("257 bytes"), why)
  end},
}
