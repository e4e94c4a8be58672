-- The per-tick loop of one MAME instance, independent of MAME itself: gate on the game's tick
-- counter, extract the frame, exchange it with the server (or run on a neutral action while
-- disconnected), then decide and apply the controls (reference/game_control.md §3, protocol.md
-- §5.1). main.lua wires it to MAME; tests wire it to mocks.

local ram_map = require("ram_map")
local extract = require("extract")
local protocol = require("protocol")
local control = require("control")

local client = {}
client.__index = client

local SAVE_SIGNAL_PERIOD_S = 300

-- opts: read_byte(addr), read_ram() -> RAM image string, write_byte(addr, value), inputs
-- (set(name, value)), connection (connection.lua), wall_time() -> seconds, log(message).
function client.new(opts)
  local self = setmetatable({}, client)
  self.read_byte, self.read_ram, self.write_byte = opts.read_byte, opts.read_ram, opts.write_byte
  self.inputs, self.connection = opts.inputs, opts.connection
  self.wall_time = opts.wall_time or os.time
  self.log = opts.log or function() end
  self.extractor = extract.new()
  self.control = control.new()
  self.last_timectr = nil
  self.processed = 0
  self.commanded = {fire = 0, zap = 0, spinner = 0}
  self.next_save_signal = self.wall_time() + SAVE_SIGNAL_PERIOD_S
  self.stats = {frames = 0, sent = 0, offline = 0, violations = 0}
  self.last_frame, self.last_decision = nil, nil
  return self
end

-- Video-frame callback: process only when the game's tick counter has moved.
function client:on_frame()
  local timectr = self.read_byte(ram_map.TIMECTR)
  if timectr == self.last_timectr then return false end
  self.last_timectr = timectr
  self:process(false)
  return true
end

-- MAME is stopping: send one last frame carrying save_signal = 1, then close.
function client:on_stop()
  if self.connection:is_connected() then self:process(true) end
  self.connection:close()
end

function client:process(final)
  local connected, fresh = self.connection:ensure()
  if fresh then
    -- A new connection is a new chain of frames for the server: start the carried state over.
    self.extractor:reset()
    self.commanded = {fire = 0, zap = 0, spinner = 0}
  end
  local ram = self.read_ram()
  local frame, snapshot = self.extractor:process(ram)
  self.last_frame = frame
  self.stats.frames = self.stats.frames + 1
  self.processed = self.processed + 1  -- the header counts this frame too (1 on the first)
  if connected then
    local save = 0
    local now = self.wall_time()
    if final or now >= self.next_save_signal then
      save = 1
      self.next_save_signal = now + SAVE_SIGNAL_PERIOD_S
    end
    local bytes, violations = protocol.encode_frame(frame, {
      frame = self.processed, save_signal = save, cmd_fire = self.commanded.fire,
      cmd_zap = self.commanded.zap, cmd_spinner = self.commanded.spinner})
    self.stats.violations = self.stats.violations + violations
    local reply = self.connection:exchange(bytes)
    if reply then
      self.stats.sent = self.stats.sent + 1
      self.commanded = {fire = reply.fire, zap = reply.zap, spinner = reply.spinner}
      self.control:update_settings(reply)
    else
      self.commanded = {fire = 0, zap = 0, spinner = 0}
    end
  else
    self.stats.offline = self.stats.offline + 1
    self.commanded = {fire = 0, zap = 0, spinner = 0}
  end
  local decision = self.control:decide(snapshot, function(addr) return ram:byte(addr + 1) end,
                                       self.commanded)
  control.apply(decision, self.inputs, self.write_byte)
  self.last_decision = decision
end

return client
