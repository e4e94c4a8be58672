-- connection.lua: handshake, partial and empty reads, deadlines, reconnection with back-off.

local connection = require("connection")
local mocks = require("mocks")
local check = require("check")

local REPLY = string.pack("bbbBB", 1, 0, -12, 1, 13)
local FRAME = string.rep("F", 821)

local function new_connection(sockets, tick)
  local opener = mocks.opener(sockets)
  local clock, now = mocks.clock(tick or 0.001)
  local conn = connection.new{host = "127.0.0.1", port = 9999, open_socket = opener.open,
                              clock = now, reply_timeout_s = 1.0, backoff_min_s = 0.5,
                              backoff_max_s = 4.0}
  return conn, opener, clock
end

return {
  {"parse_address", function()
    local host, port = connection.parse_address("10.0.0.7:1234")
    check.eq(host, "10.0.0.7")
    check.eq(port, 1234)
    host, port = connection.parse_address("localhost:9999")
    check.eq(host, "localhost")
    check.eq(port, 9999)
    check.eq(connection.parse_address("localhost"), nil, "no port")
    check.eq(connection.parse_address("a:0"), nil, "port 0")
    check.eq(connection.parse_address("a:65536"), nil, "port too large")
    check.eq(connection.parse_address("a b:1"), nil, "space in host")
  end},

  {"connect_sends_handshake_then_frames", function()
    local sock = mocks.socket({REPLY})
    local conn, opener = new_connection({sock})
    local connected, fresh = conn:ensure()
    check.truthy(connected and fresh, "connected")
    check.eq(opener.last_address, "127.0.0.1:9999")
    check.eq(sock:all_written(), "\0\0", "handshake first")
    local reply = assert(conn:exchange(FRAME))
    check.eq(reply.spinner, -12)
    check.eq(sock:all_written(), "\0\0" .. FRAME)
    connected, fresh = conn:ensure()
    check.truthy(connected and not fresh, "still the same connection")
  end},

  {"token_is_sent_in_the_handshake_on_every_connect", function()
    local first, second = mocks.socket(), mocks.socket({REPLY})
    local opener = mocks.opener({first, second})
    local clock, now = mocks.clock(0.001)
    local conn = connection.new{host = "127.0.0.1", port = 9999, open_socket = opener.open,
                                clock = now, reply_timeout_s = 1.0, token = "s3cret"}
    conn:ensure()
    check.eq(first:all_written(), "\0\1\0\6s3cret", "token handshake")
    check.eq(conn:exchange(FRAME), nil, "no reply: reconnect")
    clock.now = clock.now + 1
    conn:ensure()
    check.eq(second:all_written(), "\0\1\0\6s3cret", "again after reconnecting")
    check.eq(pcall(connection.new, {host = "h", port = 1, open_socket = opener.open,
                                    clock = now, token = string.rep("t", 257)}), false,
             "a token too long for the handshake is refused")
  end},

  {"partial_and_empty_reads_accumulate", function()
    local sock = mocks.socket({"", "", REPLY:sub(1, 1), "", REPLY:sub(2, 3), "", "", REPLY:sub(4)})
    local conn = new_connection({sock})
    conn:ensure()
    local reply = assert(conn:exchange(FRAME))
    check.eq(reply.fire, 1)
    check.eq(reply.spinner, -12)
    check.eq(reply.start_level_min, 13)
    -- two replies arriving in one chunk are split across the two exchanges
    sock:feed(REPLY .. string.pack("bbbBB", 0, 1, 5, 0, 20))
    check.eq(assert(conn:exchange(FRAME)).spinner, -12)
    local second = assert(conn:exchange(FRAME))
    check.eq(second.zap, 1)
    check.eq(second.spinner, 5)
    check.eq(conn.stats.exchanges, 3)
  end},

  {"partial_writes_are_completed", function()
    local sock = mocks.socket({REPLY})
    sock.write_limit = 100
    local conn = new_connection({sock})
    conn:ensure()
    assert(conn:exchange(FRAME))
    check.eq(sock:all_written(), "\0\0" .. FRAME)
  end},

  {"timeout_closes_and_reconnects_with_backoff", function()
    local first = mocks.socket({REPLY:sub(1, 3)})  -- the rest never arrives
    local second = mocks.socket({REPLY})
    local conn, opener, clock = new_connection({first, second}, 0.01)
    conn:ensure()
    local reply, why = conn:exchange(FRAME)
    check.eq(reply, nil)
    check.eq(why, "timeout")
    check.truthy(first.closed, "closed after the timeout")
    check.truthy(clock.now >= 1.0 and clock.now < 1.1, "waited the reply timeout")
    check.eq(conn:is_connected(), false)
    local connected = conn:ensure()
    check.eq(connected, false, "back-off not over yet")
    check.eq(opener.attempts, 1)
    clock.now = clock.now + 0.5
    local fresh
    connected, fresh = conn:ensure()
    check.truthy(connected and fresh, "reconnected after the back-off")
    check.eq(second:all_written(), "\0\0", "new handshake")
    check.eq(assert(conn:exchange(FRAME)).spinner, -12)
  end},

  {"refused_connections_back_off_exponentially_up_to_the_cap", function()
    local conn, opener, clock = new_connection({}, 0)
    local waits = {}
    for _ = 1, 6 do
      local before = opener.attempts
      while opener.attempts == before do
        conn:ensure()
        clock.now = clock.now + 0.25
      end
      waits[#waits + 1] = conn.next_attempt - clock.now + 0.25
    end
    check.eq(table.concat(waits, ","), "0.5,1.0,2.0,4.0,4.0,4.0")
    check.eq(conn.stats.failures, 6)
  end},

  {"read_and_write_errors_reconnect", function()
    local broken = mocks.socket({function() error("connection reset") end})
    local conn, _, clock = new_connection({broken, mocks.socket(), mocks.socket()}, 0)
    conn:ensure()
    local reply, why = conn:exchange(FRAME)
    check.eq(reply, nil)
    check.eq(why, "read failed")
    clock.now = clock.now + 1
    conn:ensure()
    conn.file.write_error = "broken pipe"
    reply, why = conn:exchange(FRAME)
    check.eq(reply, nil)
    check.truthy(why:find("broken pipe"), "write error reported")
    check.eq(conn:is_connected(), false)
  end},

  {"malformed_reply_reconnects", function()
    local sock = mocks.socket({string.pack("bbbBB", 7, 0, 0, 1, 13)})
    local conn = new_connection({sock})
    conn:ensure()
    local reply = conn:exchange(FRAME)
    check.eq(reply, nil)
    check.truthy(sock.closed, "closed: the stream cannot be trusted any more")
  end},

  {"successful_exchange_resets_the_backoff", function()
    local conn, _, clock = new_connection({false, mocks.socket({REPLY})}, 0)
    conn:ensure()
    check.eq(conn.backoff_s, 1.0, "doubled after the failure")
    clock.now = clock.now + 1
    conn:ensure()
    assert(conn:exchange(FRAME))
    check.eq(conn.backoff_s, 0.5)
  end},
}
