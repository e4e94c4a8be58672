-- The client's TCP connection to the server: connect and handshake, one lock-step exchange per
-- frame (write the frame, accumulate the 5-byte reply from partial reads until a deadline), and
-- on any failure close, then reconnect with exponential back-off. The socket itself comes from
-- `open_socket` (MAME's emu.file in production, a scripted mock in tests), whose read(n) never
-- blocks and may return "" or fewer than n bytes.

local protocol = require("protocol")

local connection = {}
connection.__index = connection

connection.DEFAULT_ADDRESS = "127.0.0.1:9999"

-- "host:port" -> host, port; nil and a reason when it is not of that form.
function connection.parse_address(text)
  local host, port = string.match(text or "", "^([%w%.%-]+):(%d+)$")
  port = tonumber(port)
  if not host or port < 1 or port > 65535 then
    return nil, string.format("server address %q is not host:port", tostring(text))
  end
  return host, port
end

-- opts: host, port, open_socket(host, port) -> file | nil, err; clock() -> seconds (never runs
-- ahead of wall time); reply_timeout_s; backoff_min_s; backoff_max_s; log(message); token (the
-- server's shared secret, nil or "" for none; at most protocol.MAX_TOKEN_BYTES).
function connection.new(opts)
  local self = setmetatable({}, connection)
  self.host, self.port = opts.host, opts.port
  self.handshake = assert(protocol.handshake(opts.token))
  self.open_socket = opts.open_socket
  self.clock = opts.clock
  self.reply_timeout_s = opts.reply_timeout_s or 3.5
  self.backoff_min_s = opts.backoff_min_s or 0.5
  self.backoff_max_s = opts.backoff_max_s or 10.0
  self.log = opts.log or function() end
  self.file = nil
  self.backoff_s = self.backoff_min_s
  self.next_attempt = -math.huge
  self.stats = {connects = 0, failures = 0, exchanges = 0, timeouts = 0}
  return self
end

function connection:is_connected()
  return self.file ~= nil
end

local function close_quietly(file)
  pcall(function() file:close() end)
end

-- Give up the socket and schedule the next attempt `backoff_s` from now (doubling it).
function connection:fail(reason)
  if self.file then close_quietly(self.file) end
  self.file = nil
  self.stats.failures = self.stats.failures + 1
  self.next_attempt = self.clock() + self.backoff_s
  self.log(string.format("connection to %s:%d lost (%s); next attempt in %.1f s", self.host,
                         self.port, reason, self.backoff_s))
  self.backoff_s = math.min(self.backoff_s * 2, self.backoff_max_s)
end

-- Write all of `data` before `deadline`; false on error or timeout.
function connection:write_all(data, deadline)
  local file = self.file
  while #data > 0 do
    local ok, written = pcall(file.write, file, data)
    if not ok then return false, "write failed: " .. tostring(written) end
    written = tonumber(written) or 0
    if written >= #data then return true end
    data = data:sub(written + 1)
    if self.clock() >= deadline then return false, "write timed out" end
  end
  return true
end

-- Connect when disconnected and the back-off has passed. Returns connected, newly_connected.
function connection:ensure()
  if self.file then return true, false end
  if self.clock() < self.next_attempt then return false, false end
  local file, err = self.open_socket(self.host, self.port)
  if not file then
    self:fail("connect failed: " .. tostring(err))
    return false, false
  end
  self.file = file
  local ok, why = self:write_all(self.handshake, self.clock() + self.reply_timeout_s)
  if not ok then
    self:fail(why)
    return false, false
  end
  self.stats.connects = self.stats.connects + 1
  self.log(string.format("connected to %s:%d", self.host, self.port))
  return true, true
end

-- Send one frame and wait for its reply. Returns the parsed reply, or nil and the reason (the
-- connection is then closed and a reconnect scheduled).
function connection:exchange(frame_bytes)
  if not self.file then return nil, "not connected" end
  local deadline = self.clock() + self.reply_timeout_s
  local ok, why = self:write_all(frame_bytes, deadline)
  if not ok then
    self:fail(why)
    return nil, why
  end
  local file, buffer, need = self.file, "", protocol.REPLY_SIZE
  while true do
    local read_ok, chunk = pcall(file.read, file, need - #buffer)
    if not read_ok then
      self:fail("read failed: " .. tostring(chunk))
      return nil, "read failed"
    end
    if chunk and #chunk > 0 then
      buffer = buffer .. chunk
      if #buffer >= need then break end
    elseif self.clock() >= deadline then
      self.stats.timeouts = self.stats.timeouts + 1
      self:fail(string.format("no reply within %.1f s (%d of %d bytes)", self.reply_timeout_s,
                              #buffer, need))
      return nil, "timeout"
    end
  end
  local reply, err = protocol.parse_reply(buffer)
  if not reply then
    self:fail(err)
    return nil, err
  end
  self.stats.exchanges = self.stats.exchanges + 1
  self.backoff_s = self.backoff_min_s
  return reply
end

function connection:close()
  if self.file then close_quietly(self.file) end
  self.file = nil
end

return connection
