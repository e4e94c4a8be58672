-- Plain-Lua test runner: `lua5.3 tests/lua/run.lua` or `lua5.4 tests/lua/run.lua` from the
-- repository root (tests/test_lua.py runs both). Prints one line per test and exits non-zero
-- when any fails.

local tests_dir = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
local client_dir = tests_dir .. "/../../tempest_jax/lua"  -- the production scripts
package.path = tests_dir .. "/?.lua;" .. client_dir .. "/?.lua;" .. package.path

local SUITES = {"test_features", "test_state", "test_logic", "test_protocol", "test_connection",
                "test_control", "test_client", "test_mame", "test_display"}

local failed, passed = 0, 0
for _, suite_name in ipairs(SUITES) do
  local suite = require(suite_name)
  for _, case in ipairs(suite) do
    local name, fn = case[1], case[2]
    local ok, err = xpcall(fn, debug.traceback)
    if ok then
      passed = passed + 1
      print(string.format("ok   %s.%s", suite_name, name))
    else
      failed = failed + 1
      print(string.format("FAIL %s.%s: %s", suite_name, name, err))
    end
  end
end
print(string.format("%s: %d passed, %d failed", _VERSION, passed, failed))
os.exit(failed == 0 and 0 or 1)
