-- harness.lua: a minimal test harness for the Lua binding's tests (test_*.lua, run by ctest).
-- check(cond, msg), eq(got, want), near(got, want), raises(fn, pattern), refused(ag, fn,
-- pattern[, status]) record failures;
-- done() prints a summary and exits nonzero if any check failed.
local H = {failures = 0, checks = 0}

local function where()
  local info = debug.getinfo(3, "Sl")
  return info.short_src .. ":" .. info.currentline
end

local function fmt(v)
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = fmt(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end
H.fmt = fmt

function H.check(cond, msg)
  H.checks = H.checks + 1
  if not cond then
    H.failures = H.failures + 1
    print("FAIL " .. where() .. ": " .. (msg or "check failed"))
  end
  return cond
end

local function deep_eq(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b and math.type(a) == math.type(b) end
  if #a ~= #b then return false end
  for i = 1, #a do if not deep_eq(a[i], b[i]) then return false end end
  return true
end

-- Equal values (tables element by element; integers and floats are told apart).
function H.eq(got, want, msg)
  H.checks = H.checks + 1
  if not deep_eq(got, want) then
    H.failures = H.failures + 1
    print("FAIL " .. where() .. ": " .. (msg and msg .. ": " or "") .. "expected " .. fmt(want)
          .. ", got " .. fmt(got))
  end
end

local function close(a, b, tol)
  if type(a) == "table" then
    if type(b) ~= "table" or #a ~= #b then return false end
    for i = 1, #a do if not close(a[i], b[i], tol) then return false end end
    return true
  end
  return type(a) == "number" and math.abs(a - b) <= tol * (1 + math.abs(b))
end

function H.near(got, want, msg, tol)
  H.checks = H.checks + 1
  if not close(got, want, tol or 1e-6) then
    H.failures = H.failures + 1
    print("FAIL " .. where() .. ": " .. (msg and msg .. ": " or "") .. "expected " .. fmt(want)
          .. ", got " .. fmt(got))
  end
end

-- fn must raise an error whose message contains `plain` (a plain substring). Returns it.
-- (at: the caller's position, taken by the public function)
local function raises_at(at, fn, plain, msg)
  H.checks = H.checks + 1
  local ok, err = pcall(fn)
  if ok then
    H.failures = H.failures + 1
    print("FAIL " .. at .. ": " .. (msg or "") .. " expected an error containing '" .. plain
          .. "', got success")
  elseif type(err) ~= "string" or not err:find(plain, 1, true) then
    H.failures = H.failures + 1
    print("FAIL " .. at .. ": " .. (msg or "") .. " expected an error containing '" .. plain
          .. "', got '" .. tostring(err) .. "'")
  end
  return err
end

function H.raises(fn, plain, msg) return raises_at(where(), fn, plain, msg) end

-- fn must raise an error containing plain and leave ag.last_status() at status (default
-- AG_EINVAL), the thread's status cleared before.
function H.refused(ag, fn, plain, status)
  local at = where()
  status = status or "AG_EINVAL"
  ag.clear_error()
  local err = raises_at(at, fn, plain)
  H.checks = H.checks + 1
  if ag.last_status() ~= status then
    H.failures = H.failures + 1
    print("FAIL " .. at .. ": status after '" .. plain .. "' is " .. tostring(ag.last_status())
          .. ", expected " .. status)
  end
  return err
end

function H.done(name)
  print(string.format("%s: %d checks, %d failed", name, H.checks, H.failures))
  os.exit(H.failures == 0 and 0 or 1, true) -- close the state: every finalizer runs
end

return H
