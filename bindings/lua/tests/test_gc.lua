-- Garbage collection releases every handle: tensors, nodes, optimizers, generators, hooks'
-- and custom functions' Lua references. Run under valgrind by ctest (lua.gc_valgrind) to
-- check that no byte is definitely lost.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")

-- Every handle type but the tensor has a __gc (SWIG can skip %extend destructors silently:
-- swig #3174). Tensor handles have none: the binding's sweep releases the tensors of dead
-- handles after each collection (bindings/lua/typemaps.i, ag_lua_track).
local reg = debug.getregistry().SWIG
for _, name in ipairs({"ag_node", "ag_optimizer", "ag_generator"}) do
  H.check(type(reg[name].__gc) == "function", name .. " has a __gc")
end
H.check(reg.ag_tensor.__gc == nil, "ag_tensor has no __gc (its handles are swept)")

local function registry_refs()
  local n = 0
  -- integer keys holding functions or tables (luaL_ref's free list holds integers)
  for k, v in pairs(debug.getregistry()) do
    if math.type(k) == "integer" and k > 2 and type(v) ~= "number" then n = n + 1 end
  end
  return n
end
collectgarbage()
local refs0 = registry_refs()

local function workload()
  local gen = ag.generator(1)
  local model = ag.nn.Sequential(ag.nn.Linear(4, 8, gen), ag.nn.Tanh(), ag.nn.Linear(8, 2, gen))
  local opt = ag.optim.SGD(model, {lr = 0.1, momentum = 0.9})
  local x = ag.randn(16, 4, {generator = gen})
  local y = ag.randint(1, 3, {16}, {generator = gen})
  for _ = 1, 3 do
    opt:zero_grad()
    local loss = ag.nn.functional.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
  end
  local p = ag.tensor({1.0, 2.0}, {requires_grad = true})
  local hook = p:register_hook(function(g) return g * 2 end)
  p:register_hook(function(g) return g end)
  local q = (p * p):sum()
  local _ = q.grad_fn.next_functions
  q:backward({retain_graph = true})
  hook:remove()
  local Square = ag.Function{name = "Square",
    forward = function(ctx, t) ctx:save_for_backward(t); return t * t end,
    backward = function(ctx, g) return g * 2 * ctx.saved_tensors[1] end}
  Square(p):sum():backward()
  local pieces = ag.ones(6, 2):split(2)
  local _, idx = ag.ones(3, 3):max(1)
  local gs = ag.grad((p * 3):sum(), {p})
  pcall(ag.matmul, ag.ones(2, 3), ag.ones(4, 5))
  pcall(function() (p * 1):sum():backward(ag.ones(3)) end)
  return #pieces + idx:numel() + #gs
end

for _ = 1, 20 do workload() end
collectgarbage()
collectgarbage()
H.eq(registry_refs(), refs0, "hooks' and custom functions' registry references are dropped")

-- Removing a hook twice does nothing, as in PyTorch; and removal works after the tensor's
-- own handle is gone while the library still holds the tensor (a non-leaf its graph keeps).
do
  local x = ag.tensor({1.0, 2.0}, {requires_grad = true})
  local t = ag.tensor({1.0}, {requires_grad = true})
  local h = t:register_hook(function(g) return g end)
  h.remove()
  H.check(pcall(h.remove), "a second remove does nothing")
  local calls = 0
  local z, h2
  do
    local y = x * 2
    h2 = y:register_hook(function() calls = calls + 1 end)
    z = y:sum()
  end
  collectgarbage()
  collectgarbage()
  h2.remove()
  z:backward()
  H.eq(calls, 0, "a hook removed through its handle after the tensor's handle was dropped")
end

-- A tensor with a hook: the hook's registry reference lives as long as the tensor does.
local function hooked_tensor()
  local t = ag.tensor({1.0, 2.0}, {requires_grad = true})
  t:register_hook(function(g) return g end)
  return t
end

-- Switches the collector to `mode`, collects, and returns the registry's reference count.
local function settle(mode)
  collectgarbage(mode)
  collectgarbage()
  return registry_refs()
end

-- A dropped tensor is released by the collection that finds its handle dead, in both modes
-- (its hook's registry reference goes with it), and only then: a live handle keeps it.
for _, mode in ipairs({"generational", "incremental"}) do
  local base = settle(mode)
  local kept = hooked_tensor()
  do
    local _ = hooked_tensor()
  end
  H.eq(registry_refs(), base + 2, mode .. ": two hooks registered")
  collectgarbage()
  H.eq(registry_refs(), base + 1, mode .. ": the dropped tensor's hook went with it")
  H.eq(kept:tolist(), {1.0, 2.0}, mode .. ": the live tensor is intact")
  kept = nil
  collectgarbage()
  H.eq(registry_refs(), base, mode .. ": and the other one once dropped")
end
collectgarbage("generational")

-- A handle that lived through several collections is old: young collections no longer look
-- at it, a major one does (an old sentinel): dropped, its tensor is released by the next full
-- collection, in both modes, also by two in a row.
for _, mode in ipairs({"generational", "incremental"}) do
  local base = settle(mode)
  local old1, old2 = hooked_tensor(), hooked_tensor()
  for _ = 1, 4 do collectgarbage() end
  H.eq(registry_refs(), base + 2, mode .. ": old handles keep their tensors")
  old1 = nil
  collectgarbage()
  H.eq(registry_refs(), base + 1, mode .. ": a dropped old handle's tensor is released")
  old2 = nil
  collectgarbage()
  H.eq(registry_refs(), base, mode .. ": and by the next collection too")
end
collectgarbage("generational")

-- A handle reachable only from an object being finalized is resurrected for that finalizer,
-- but weak tables forget it first, so the sweep releases its tensor: using it then raises,
-- never reads freed memory. (Finalizers run newest first: the holder is made before a
-- collection re-arms the sweep, so the sweep runs before the holder's finalizer.)
do
  local outcome
  local holder = setmetatable({ag.tensor({1.0, 2.0}) * 2}, {__gc = function(o)
    local ok, r = pcall(function() return (o[1] + 1):tolist() end)
    outcome = ok and r or tostring(r)
  end})
  collectgarbage()
  holder = nil
  collectgarbage()
  collectgarbage()
  H.check(type(outcome) == "string" and outcome:find("no longer valid") ~= nil,
          "the resurrected handle reads as released: " .. tostring(outcome))
end

-- The same for generators and optimizers, whose handles have a __gc each: the handle's own
-- (newer) finalizer runs first and releases the object; the older one that resurrected it
-- then finds it empty. (SWIG's destructor left the pointer: a new generator made at the
-- same address answered through the stale handle.)
do
  local stale = {}
  local holder = setmetatable({}, {__gc = function(o) stale.gen, stale.opt = o.gen, o.opt end})
  holder.gen = ag.generator(1)
  holder.opt = ag.optim.SGD({ag.tensor({1.0}, {requires_grad = true})}, {lr = 0.1})
  holder = nil
  collectgarbage()
  collectgarbage()
  local fresh = ag.generator(42)
  H.raises(function() return ag.rand(1, {generator = stale.gen}) end, "no longer valid",
           "a resurrected generator handle")
  H.raises(function() return stale.opt:step() end, "no longer valid",
           "a resurrected optimizer handle")
  H.check(ag.rand(1, {generator = fresh}):item() == ag.rand(1, {generator = ag.generator(42)}):item(),
          "the new generator is untouched")
end

-- A released handle stays released when its slot is reused by a new tensor.
do
  local x = ag.tensor({1.0, 2.0, 3.0})
  local old = x * 3
  old:release()
  local new = {}
  for i = 1, 8 do new[i] = x * i end
  H.raises(function() return old + 1 end, "no longer valid", "a released handle after reuse")
  H.eq(new[8]:tolist(), {8.0, 16.0, 24.0}, "the new handles are their own")
end

-- Big tensors do not pile up between collections: the binding counts the bytes behind the
-- tensors it hands out and collects accordingly (also in lua.c's generational mode, where
-- plain steps never free tensors that became old). 100 x 2 tensors of 8 MB: 1.6 GB if
-- nothing were collected.
local function rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmRSS:%s*(%d+)")
  return kb and tonumber(kb) / 1024
end
local modes = {"generational", "incremental"}
-- (RSS means little under valgrind or ASan: ctest sets AG_LUA_SKIP_RSS there)
if os.getenv("AG_LUA_SKIP_RSS") then modes = {} end
for _, mode in ipairs(modes) do
  collectgarbage(mode)
  local peak = 0
  for _ = 1, 100 do
    local big = ag.zeros(2048, 1024) + 1
    peak = math.max(peak, rss_mb() or 0)
    big = nil
  end
  H.check(peak < 400, string.format("%s mode: peak RSS %.0f MB", mode, peak))
  print(string.format("%s mode: peak RSS %.0f MB", mode, peak))
end

-- release() and to-be-closed variables drop a tensor's reference at once, the collector
-- stopped: 100 x 2 tensors of 8 MB closed one by one stay far below the 1.6 GB they would
-- hold (a temporary that is not closed, as in `local t <close> = ag.zeros(n) + 1`, still
-- waits for the collector).
-- The graph keeps what backward needs: a closed intermediate's gradient still flows.
do
  local x = ag.tensor({1.0, 2.0, 3.0}, {requires_grad = true})
  local z
  do
    local y <close> = x * x
    z = (y * 2):sum()
  end
  z:backward()
  H.eq(x.grad:tolist(), {4.0, 8.0, 12.0}, "gradient through a closed intermediate")
  local t = x * 3
  t:release()
  t:release() -- twice: nothing
  ag.release(nil) -- nil: nothing (a to-be-closed variable may hold nil)
  H.raises(function() return t + 1 end, "no longer valid", "a released tensor raises when used")
  H.raises(function() return tostring(t) end, "no longer valid", "printing it too")
  H.raises(function() ag.release(5) end, "expected ag_tensor", "release of a non-tensor")
  if not os.getenv("AG_LUA_SKIP_RSS") then
    collectgarbage()
    collectgarbage("stop")
    local base, peak = rss_mb() or 0, 0
    for _ = 1, 100 do
      local z <close> = ag.zeros(2048, 1024)
      local big <close> = z + 1
      peak = math.max(peak, rss_mb() or 0)
    end
    collectgarbage("restart")
    H.check(peak - base < 200, string.format("closed tensors, collector stopped: RSS grew %.0f MB",
                                             peak - base))
  end
end

-- The pacing counts the memory a view spans, not its element count: an expanded view of
-- 10^8 elements over 1000 floats of memory ran a full collection each (2000 for 2000 views).
do
  collectgarbage()
  local x = ag.randn(1, 1000)
  local cycles = 0
  local function canary()
    setmetatable({}, {__gc = function() cycles = cycles + 1; canary() end})
  end
  canary()
  for _ = 1, 2000 do local v = x:expand(100000, 1000) end
  H.check(cycles < 500, string.format("2000 expanded views ran %d collections", cycles))
end

-- The C closures check the upvalues they read (debug.setupvalue can change them): a getters
-- table replaced by a number is an error, not a crash; ag.tensor's weak table replaced by
-- another table is not trusted (a handle entered there would be swept while alive: its tensor
-- released under it), so the tensor made meanwhile lives on through collections.
do
  local t = ag.tensor(1.5, {requires_grad = true})
  local index = getmetatable(t).__index
  local methods = select(2, debug.getupvalue(index, 1))
  local getters = select(2, debug.getupvalue(index, 2))
  H.check(type(methods) == "table" and type(getters) == "table", "__index's upvalues 1 and 2")
  debug.setupvalue(index, 2, 0)
  H.raises(function() return t.requires_grad end, "getters were replaced")
  debug.setupvalue(index, 2, getters)
  debug.setupvalue(index, 1, 0)
  H.raises(function() return t:tanh() end, "attempt to index a number value")
  debug.setupvalue(index, 1, methods)
  H.eq(t.requires_grad, true)

  local weak = select(2, debug.getupvalue(ag.tensor, 3))
  H.check(type(weak) == "table", "ag.tensor's upvalue 3")
  debug.setupvalue(ag.tensor, 3, {})
  local u = ag.tensor(2.5, {requires_grad = true})
  local v = ag.tensor(0.25)
  debug.setupvalue(ag.tensor, 3, weak)
  for _ = 1, 3 do collectgarbage() end
  H.eq(u:item(), 2.5)
  H.eq(v:item(), 0.25)
  H.eq((u * v):item(), 0.625)
end

H.done("gc")
