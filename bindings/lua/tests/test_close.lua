-- Closing a Lua state: the tracker's finalizer releases every tensor still held (valgrind
-- would see a leak otherwise: lua.close_valgrind), and finalizers that run after it get
-- clear errors, never a freed tensor. Each case runs in a child interpreter (the same one,
-- with this environment) whose state closes at exit.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")

local lua = arg[-1]
local function run(src)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local p = assert(io.popen(string.format("%q %q 2>&1", lua, path)))
  local out = p:read("a")
  local ok, how, code = p:close()
  os.remove(path)
  return out, ok and code == 0
end

-- The module opened before the object whose finalizer uses tensors: finalizers run newest
-- first, so that one still finds its tensors, and one it makes is released afterwards.
local out, ok = run([[
local ag = require("autograd")
keep = ag.tensor({1.0, 2.0}) * 3
late = setmetatable({}, {__gc = function()
  print("made: " .. (ag.tensor(2.0) * 2):item())
  print("kept: " .. table.concat(keep:tolist(), ","))
end})
os.exit(0, true)
]])
H.check(ok, "exits cleanly: " .. out)
H.check(out:find("made: 4.0", 1, true) ~= nil, "a finalizer before the tracker's makes a tensor: " .. out)
H.check(out:find("kept: 3.0,6.0", 1, true) ~= nil, "and reads an old one: " .. out)

-- The object made before the module: its finalizer runs after the tracker's.
out, ok = run([[
local ag
late = setmetatable({}, {__gc = function()
  print(select(2, pcall(function() return ag.tensor(2.0) * 2 end)))
  print(select(2, pcall(function() return keep:tolist() end)))
end})
ag = require("autograd")
keep = ag.tensor({1.0, 2.0}) * 3
os.exit(0, true)
]])
H.check(ok, "exits cleanly: " .. out)
H.check(out:find("the Lua state is closing", 1, true) ~= nil, "a new tensor is refused: " .. out)
H.check(out:find("this ag_tensor is no longer valid", 1, true) ~= nil,
        "an old one reads as released: " .. out)

H.done("close")
