-- Assertions for the plain-Lua tests; each raises an error naming what differed.

local check = {}

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function check.eq(actual, expected, what)
  if actual ~= expected then
    error(string.format("%s: expected %s, got %s", what or "value", show(expected), show(actual)),
          2)
  end
end

function check.near(actual, expected, what, tol)
  if math.abs(actual - expected) > (tol or 1e-12) then
    error(string.format("%s: expected %.17g, got %.17g", what or "value", expected, actual), 2)
  end
end

function check.truthy(v, what)
  if not v then error((what or "condition") .. " is false", 2) end
end

function check.hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02X ", c:byte()) end)):sub(1, -2)
end

-- float32 rounding of a double, as the wire carries it.
function check.f32(x)
  return (string.unpack(">f", string.pack(">f", x)))
end

return check
