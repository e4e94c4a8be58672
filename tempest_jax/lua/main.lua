-- Entry point for `mame tempest1 -autoboot_script PATH/main.lua` (`tempest-jax lua-path` prints
-- PATH/main.lua): connects this MAME instance to the tempest-jax server and plays through the
-- game's inputs. The modules it requires lie beside it.
--
-- Environment:
--   TEMPEST_SERVER           host:port of the server (default 127.0.0.1:9999)
--   TEMPEST_TOKEN            the server's shared token, sent in the handshake (default: none)
--   TEMPEST_REPLY_TIMEOUT_S  seconds to wait for a reply before reconnecting (default 3.5)
--   TEMPEST_STOP_FILE        when this file appears, send a last frame and exit MAME
--   TEMPEST_ANY_SYSTEM=1     run on a system other than Tempest (tests on the `arb` driver)
--   TEMPEST_OVERLAY=1        draw the overlay (display.lua): game state, enemies, the server's
--                            action and the expert's advice; it changes nothing that is sent
--
-- The running client is kept in the global `tempest_jax` (its notifier subscriptions must stay
-- referenced, and tests inspect it).

local script_dir = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
package.path = script_dir .. "/?.lua;" .. package.path

local mame_api = require("mame_api")
local connection = require("connection")
local protocol = require("protocol")
local client = require("client")
local display = require("display")

local function log(message)
  print("[tempest-jax] " .. message)
end

local function start()
  local host, port = connection.parse_address(os.getenv("TEMPEST_SERVER")
                                               or connection.DEFAULT_ADDRESS)
  if not host then
    log("not started: TEMPEST_SERVER: " .. port)
    return nil
  end
  local token = os.getenv("TEMPEST_TOKEN")
  local _, token_err = protocol.handshake(token)
  if token_err then
    log("not started: TEMPEST_TOKEN: " .. token_err)
    return nil
  end
  local system = mame_api.machine().system.name
  if not system:match("^tempest") and os.getenv("TEMPEST_ANY_SYSTEM") ~= "1" then
    log(string.format("not started: system %q is not Tempest (set TEMPEST_ANY_SYSTEM=1 to "
                      .. "override)", system))
    return nil
  end
  local space, err = mame_api.memory()
  if not space then
    log("not started: " .. err)
    return nil
  end
  local clock = mame_api.clock_function()
  local conn = connection.new{
    host = host, port = port, open_socket = mame_api.open_socket, clock = clock, log = log,
    token = token,
    reply_timeout_s = tonumber(os.getenv("TEMPEST_REPLY_TIMEOUT_S") or "") or 3.5,
  }
  local c = client.new{
    read_byte = function(addr) return space:read_u8(addr) end,
    read_ram = mame_api.ram_reader(space),
    write_byte = function(addr, value) space:write_u8(addr, value) end,
    inputs = mame_api.inputs(log), connection = conn, wall_time = os.time, log = log,
  }
  local app = {client = c, errors = 0, stopped = false, video_frames = 0}
  local stop_file = os.getenv("TEMPEST_STOP_FILE")
  local STOP_POLL_FRAMES, STATS_PERIOD_S = 60, 30
  local next_stats = os.time() + STATS_PERIOD_S

  -- A Lua error must not kill the callback for good (MAME would only log it): count it, log
  -- the first few, keep running.
  local function guarded(fn)
    return function()
      local ok, message = xpcall(fn, debug.traceback)
      if not ok then
        app.errors = app.errors + 1
        if app.errors <= 10 or app.errors % 1000 == 0 then
          log(string.format("error #%d: %s", app.errors, message))
        end
      end
    end
  end

  local function stop()
    if app.stopped then return end
    app.stopped = true
    c:on_stop()
  end

  local function on_frame()
    if app.stopped then return end
    c:on_frame()
    app.video_frames = app.video_frames + 1
    if stop_file and app.video_frames % STOP_POLL_FRAMES == 0 then
      local f = io.open(stop_file, "r")
      if f then
        f:close()
        log("stop file found: sending the last frame and exiting")
        stop()
        mame_api.exit(0)
        return
      end
    end
    if os.time() >= next_stats then
      next_stats = os.time() + STATS_PERIOD_S
      local s, k = c.stats, conn.stats
      log(string.format("frames %d sent %d offline %d clamped %d errors %d | connects %d "
                        .. "failures %d timeouts %d", s.frames, s.sent, s.offline, s.violations,
                        app.errors, k.connects, k.failures, k.timeouts))
    end
  end

  app.frame_subscription = mame_api.on_frame(guarded(on_frame))
  app.stop_subscription = mame_api.on_stop(guarded(stop))
  log(string.format("client started on %s, server %s:%d", system, host, port))
  if display.enabled(os.getenv) then
    -- Registered after the client's notifier: it draws what the client has just processed.
    local ok, overlay = pcall(display.new, {machine = mame_api.machine(),
                                            line_height = mame_api.ui_line_height(), log = log})
    if ok then
      app.overlay = overlay
      app.overlay_subscription = mame_api.on_frame(function() overlay:draw(c) end)
      log("overlay on, drawn on the " .. overlay.surface.kind)
    else
      log("overlay not started: " .. tostring(overlay))
    end
  end
  return app
end

tempest_jax = start()
