-- Wire format (reference/protocol.md, tempest_jax/protocol.py): the handshake, frames
-- (uint16 BE length 819, 39-byte header ">HddBBBHIBBBhhBBBBB", 195 float32 BE) and the 5-byte
-- reply "bbbBB". Serialization only; connection.lua moves the bytes.

local features = require("features")

local protocol = {}

protocol.HEADER_FORMAT = ">I2ddBBBI2I4BBBi2i2BBBBB"
protocol.HEADER_SIZE = string.packsize(protocol.HEADER_FORMAT)  -- 39
protocol.STATE_FORMAT = ">" .. string.rep("f", features.STATE_SIZE)
protocol.PAYLOAD_SIZE = protocol.HEADER_SIZE + 4 * features.STATE_SIZE  -- 819
protocol.FRAME_WIRE_SIZE = 2 + protocol.PAYLOAD_SIZE  -- 821
protocol.REPLY_FORMAT = "bbbBB"
protocol.REPLY_SIZE = string.packsize(protocol.REPLY_FORMAT)  -- 5
protocol.PLAIN_HANDSHAKE = 0  -- the reference's handshake: 00 00, nothing follows
-- Our extension for a server that requires a token: 00 01, a uint16 BE token length n
-- (1..MAX_TOKEN_BYTES), then the n token bytes.
protocol.TOKEN_HANDSHAKE = 1
protocol.MAX_TOKEN_BYTES = 256
protocol.HANDSHAKE = string.pack(">I2", protocol.PLAIN_HANDSHAKE)
protocol.START_LEVEL_MIN, protocol.START_LEVEL_MAX = 1, 81
assert(protocol.HEADER_SIZE == 39 and protocol.REPLY_SIZE == 5)

-- The bytes a client sends first: the plain handshake without a token (nil or ""), else the
-- token handshake; nil and a reason when the token is too long.
function protocol.handshake(token)
  if token == nil or token == "" then return protocol.HANDSHAKE end
  if #token > protocol.MAX_TOKEN_BYTES then
    return nil, string.format("token is %d bytes; the handshake carries at most %d", #token,
                              protocol.MAX_TOKEN_BYTES)
  end
  return string.pack(">I2s2", protocol.TOKEN_HANDSHAKE, token)
end

-- Values clamped into [-1, 1] (NaN -> 0) and how many needed it: the wire promises the range,
-- and a bad value must cost a count, never the frame callback.
function protocol.clamp_state(values)
  local out, violations = {}, 0
  for i = 1, features.STATE_SIZE do
    local x = values[i]
    if x ~= x then
      x, violations = 0.0, violations + 1
    elseif x > 1 then
      x, violations = 1.0, violations + 1
    elseif x < -1 then
      x, violations = -1.0, violations + 1
    end
    out[i] = x
  end
  return out, violations
end

-- The 821 wire bytes of `frame` (an extract.lua record) with the client's own fields:
-- client.frame (processed-frame count), client.save_signal, client.cmd_fire, client.cmd_zap,
-- client.cmd_spinner (the previous reply). Returns bytes and the number of clamped values.
function protocol.encode_frame(frame, client)
  local values, violations = protocol.clamp_state(frame.state)
  local header = string.pack(protocol.HEADER_FORMAT, features.STATE_SIZE,
    frame.subj_reward, frame.obj_reward, frame.gamestate, frame.game_mode, frame.done,
    client.frame % 65536, frame.score, client.save_signal, client.cmd_fire, client.cmd_zap,
    client.cmd_spinner, frame.expert_target, frame.player_seg, frame.is_open, frame.expert_fire,
    frame.expert_zap, frame.level)
  return string.pack(">I2", protocol.PAYLOAD_SIZE) .. header
    .. string.pack(protocol.STATE_FORMAT, table.unpack(values)), violations
end

-- A 5-byte reply as a table, or nil and a reason when it is malformed.
function protocol.parse_reply(bytes)
  if #bytes ~= protocol.REPLY_SIZE then
    return nil, string.format("reply is %d bytes, expected %d", #bytes, protocol.REPLY_SIZE)
  end
  local fire, zap, spinner, start_advanced, start_level_min = string.unpack(protocol.REPLY_FORMAT,
                                                                            bytes)
  if (fire ~= 0 and fire ~= 1) or (zap ~= 0 and zap ~= 1) or spinner < -32 or spinner > 31 then
    return nil, string.format("reply action out of range: fire %d zap %d spinner %d", fire, zap,
                              spinner)
  end
  return {fire = fire, zap = zap, spinner = spinner, start_advanced = start_advanced ~= 0,
          start_level_min = start_level_min}
end

return protocol
