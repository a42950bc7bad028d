-- Hooks and custom functions written in Lua: the library calls them through the trampolines
-- of callbacks.c, on the thread that called backward.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")

-- A hook sees the gradient and may replace it.
local x = ag.tensor({1.0, 2.0}, {requires_grad = true})
local seen
local h = x:register_hook(function(g) seen = g:tolist(); return g * 10 end)
;(x * 3):sum():backward()
H.eq(seen, {3.0, 3.0}, "the hook sees the incoming gradient")
H.eq(x.grad:tolist(), {30.0, 30.0}, "the returned tensor replaces it")
h:remove()
x.grad = nil
;(x * 3):sum():backward()
H.eq(x.grad:tolist(), {3.0, 3.0}, "removed")

-- The handle register_hook returns holds a reference of its own to the tensor: releasing or
-- closing the tensor's handle leaves removal working (it raised "no longer valid", a second
-- remove() then did nothing, and the hook stayed: x.grad was [80, 160]).
do
  local xr = ag.tensor({1.0, 2.0}, {requires_grad = true})
  local yr = xr * 2
  local calls = 0
  local hr = yr:register_hook(function(g) calls = calls + 1; return g * 10 end)
  local zr = (yr * yr):sum()
  yr:release()
  local ok, e = pcall(hr.remove)
  H.check(ok, "removal works after the tensor's handle was released: " .. tostring(e))
  hr:remove() -- does nothing the second time
  zr:backward()
  H.eq(calls, 0, "the hook removed after its tensor's handle was released does not run")
  H.eq(xr.grad:tolist(), {8.0, 16.0}, "d/dx sum((2x)^2) = 8x, without the hook")
  local hc, zc
  do
    local yc <close> = xr * 2
    hc = yc:register_hook(function(g) calls = calls + 1; return g * 10 end)
    zc = (yc * yc):sum()
  end
  ok, e = pcall(hc.remove)
  H.check(ok, "removal works after a <close> released the tensor: " .. tostring(e))
  xr.grad = nil
  zc:backward()
  H.eq(calls, 0, "nor after a <close> released it")
  H.eq(xr.grad:tolist(), {8.0, 16.0})
  -- The handle keeps the tensor (a 4 MB one here) until removal, then lets go of it.
  collectgarbage()
  ag.synchronize()
  local base = ag.core.ag_memory_in_use()
  local big = ag.zeros(1000000, {requires_grad = true})
  local hb = big:register_hook(function(g) return g end)
  big:release()
  collectgarbage()
  ag.synchronize()
  local held = ag.core.ag_memory_in_use() - base
  H.check(held >= 4000000, "the hook's handle holds the released tensor: " .. held)
  pcall(hb.remove)
  ag.synchronize()
  H.eq(ag.core.ag_memory_in_use() - base, 0, "removed, the handle lets go of it")
  -- A removal that fails keeps the reference, so it is reported again, not skipped: here the
  -- hook was removed behind the handle's back, through the C function.
  local xf = ag.tensor({1.0}, {requires_grad = true})
  local hf = xf:register_hook(function(g) return g * 10 end)
  ag.core.ag_tensor_remove_hook(xf, hf.id)
  H.raises(function() hf:remove() end, "ag_tensor_remove_hook")
  H.eq(ag.last_status(), "AG_EINVAL")
  H.raises(function() hf:remove() end, "ag_tensor_remove_hook", "a failed removal is tried again")
end

-- A hook returning nil keeps the gradient; hooks on non-leaves; order of registration.
local y = x * 2
local order = {}
y:register_hook(function() order[#order + 1] = "first" end)
y:register_hook(function(g) order[#order + 1] = "second"; return g + 1 end)
x.grad = nil
y:sum():backward()
H.eq(order, {"first", "second"})
H.eq(x.grad:tolist(), {4.0, 4.0}, "(1 + 1) * 2")

-- A failing hook: backward raises with the Lua message, .grad is untouched.
local w = ag.tensor({1.0}, {requires_grad = true})
w:register_hook(function() error("hook says no") end)
local err = H.raises(function() (w * 2):sum():backward() end, "hook says no")
H.eq(ag.last_status(), "AG_ECALLBACK")
H.eq(w.grad, nil, "a failing backward leaves .grad untouched")
local v = ag.tensor({1.0}, {requires_grad = true})
v:register_hook(function() return "not a tensor" end)
H.raises(function() (v * 2):sum():backward() end, "not a tensor")
local u = ag.tensor({1.0, 2.0}, {requires_grad = true})
u:register_hook(function() return ag.ones(3) end)
H.raises(function() (u * 2):sum():backward() end, "ag_backward")
H.check(err ~= nil)

-- Custom function: y = exp(x), saving the output.
local Exp = ag.Function{
  name = "MyExp",
  forward = function(ctx, t)
    H.eq(ag.is_grad_enabled(), false, "forward runs without grad mode")
    local r = t:exp()
    ctx:save_for_backward(r)
    ctx.note = "kept"
    return r
  end,
  backward = function(ctx, g)
    H.eq(ctx.note, "kept", "ctx carries Lua fields from forward to backward")
    H.eq(ctx.needs_input_grad, {true})
    local r = ctx.saved_tensors[1]
    return g * r
  end,
}
local a = ag.tensor({0.0, 1.0}, {requires_grad = true})
local e = Exp(a)
H.eq(e.grad_fn:name(), "MyExpBackward")
H.near(e:tolist(), {1.0, math.exp(1)})
e:sum():backward()
H.near(a.grad:tolist(), {1.0, math.exp(1)}, "d exp / dx = exp", 1e-6)

-- Non-tensor arguments, several outputs, nil gradients, a second-order graph.
local ScaleSplit = ag.Function{
  name = "ScaleSplit", n_outputs = 2,
  forward = function(ctx, t, k, other)
    ctx.k = k
    return t * k, other * 1
  end,
  backward = function(ctx, g1, g2)
    H.eq(ctx.needs_input_grad, {true, false, false})
    return g1 * ctx.k, nil, nil
  end,
}
local p = ag.tensor({1.0, 2.0}, {requires_grad = true})
local o1, o2 = ScaleSplit.apply(p, 5, ag.ones(2))
H.eq(o1:tolist(), {5.0, 10.0})
H.eq(o2:tolist(), {1.0, 1.0})
H.eq(o2.requires_grad, true, "as in PyTorch, every output of a custom function requires grad")
o1:sum():backward()
H.eq(p.grad:tolist(), {5.0, 5.0})

-- Errors in forward and backward.
local Bad = ag.Function{name = "Bad", forward = function() error("forward broke") end,
                        backward = function() end}
H.raises(function() Bad(ag.ones(1, {requires_grad = true})) end, "forward broke")
H.eq(ag.last_status(), "AG_ECALLBACK")
local BadBack = ag.Function{name = "BadBack", forward = function(_, t) return t * 1 end,
                            backward = function() error("backward broke") end}
H.raises(function() BadBack(ag.ones(1, {requires_grad = true})):sum():backward() end, "backward broke")
local NoOut = ag.Function{name = "NoOut", forward = function() return nil end, backward = function() end}
H.raises(function() NoOut(ag.ones(1)) end, "result 1 is nil")

-- The context dies with the callback: a kept reference fails cleanly.
local kept
local Keep = ag.Function{name = "Keep", forward = function(ctx, t) kept = ctx; return t * 1 end,
                         backward = function(_, g) return g end}
Keep(ag.ones(1, {requires_grad = true}))
H.raises(function() kept:save_for_backward(ag.ones(1)) end, "ag_function_ctx_save")

-- Custom function inside a coroutine, backward from another coroutine.
local co = coroutine.wrap(function()
  local q = ag.tensor({2.0}, {requires_grad = true})
  local r = Exp(q)
  coroutine.yield()
  r:sum():backward()
  return q.grad:item()
end)
co()
H.near(co(), math.exp(2), "callbacks run on the calling coroutine", 1e-5)

-- A forward that returns more (or fewer) values than n_outputs, and a backward that returns
-- more gradients than forward had arguments, are errors (they were dropped silently).
local Two = ag.Function{name = "Two", forward = function(_, a) return a * 2, a + 1 end,
  backward = function(_, g) return g * 2 end}
H.raises(function() return Two(ag.tensor({1.0}, {requires_grad = true})) end,
         "Two.forward returned 2 value(s), want 1")
local Two2 = ag.Function{name = "Two2", n_outputs = 2,
  forward = function(_, a) return a * 2, a + 1 end,
  backward = function(_, g1, g2) return g1 * 2 + g2 end}
local xa = ag.tensor({1.0}, {requires_grad = true})
local o1, o2 = Two2(xa)
H.eq({o1:item(), o2:item()}, {2.0, 2.0})
local Many = ag.Function{name = "Many", forward = function(_, a) return a * 2 end,
  backward = function(_, g) return g * 2, g * 3 end}
H.raises(function() Many(xa):sum():backward() end,
         "function ManyBackward returned an incorrect number of gradients (expected 1, got 2)")
H.eq(xa.grad, nil, "nothing accumulated")

-- The spec is checked when the function is made, naming ag.Function and the value:
-- n_outputs = "2" failed every call ("returned 2 value(s), want 2"), a name with a NUL byte
-- was cut at it (Go's refuses it), and a wrong spec raised an assertion with no status.
do
  local function spec(t)
    t.forward = t.forward or function(_, a) return a * 2 end
    t.backward = t.backward or function(_, g) return g end
    return t
  end
  H.refused(ag, function() ag.Function(spec{n_outputs = "2"}) end,
                "autograd: ag.Function: n_outputs must be an integer, got \"2\"")
  H.refused(ag, function() ag.Function(spec{n_outputs = 1.5}) end, "n_outputs must be an integer, got 1.5")
  H.refused(ag, function() ag.Function(spec{name = "a\0b"}) end,
                "autograd: ag.Function: name must be a string without NUL bytes, got \"a\\0b\"")
  H.refused(ag, function() ag.Function(spec{name = {}}) end, "name must be a string without NUL bytes, got a table")
  H.refused(ag, function() ag.Function(3) end, "autograd: ag.Function: expects a table")
  H.refused(ag, function() ag.Function{forward = function() end} end,
                "autograd: ag.Function: forward and backward must be functions, got a function and nil")
  local Two3 = ag.Function(spec{name = "Two3", n_outputs = 2.0,
    forward = function(_, a) return a * 2, a * 3 end})
  local u, v = Two3(ag.tensor({1.0}, {requires_grad = true}))
  H.eq({u:item(), v:item()}, {2.0, 3.0}, "n_outputs = 2.0 counts as 2")
  -- ctx.save_for_backward(y), with a dot, took y for ctx and saved nothing, silently.
  local Dot = ag.Function(spec{name = "Dot", forward = function(ctx, a)
    local y = a * 2
    ctx.save_for_backward(y)
    return y
  end})
  H.raises(function() Dot(ag.tensor({1.0}, {requires_grad = true})) end,
           "autograd: save_for_backward: call it as ctx:save_for_backward(...), with a colon (got a tensor for ctx)")
end

-- A gradient for an argument of forward that is not a tensor is an error, as in PyTorch
-- (it was dropped, silently); nil there is fine. Positions count the arguments from 1.
do
  local Scale = ag.Function{name = "Scale", forward = function(_, k, t) return t * k end,
    backward = function(_, g) return g * 5, g * 3 end}
  local xs = ag.tensor(1.0, {requires_grad = true})
  H.raises(function() Scale(2.0, xs):backward() end, "function ScaleBackward returned a "
           .. "gradient different than None at position 1, but the corresponding forward input "
           .. "was not a Variable")
  H.eq(ag.last_status(), "AG_ECALLBACK")
  H.eq(xs.grad, nil, "nothing accumulated")
  local Scale2 = ag.Function{name = "Scale2", forward = function(_, t, k) return t * k end,
    backward = function(_, g) return g * 3, false end}
  H.raises(function() Scale2(xs, 2.0):backward() end, "returned a gradient different than None "
           .. "at position 2")
  local Fine = ag.Function{name = "Fine", forward = function(_, k, t) return t * k end,
    backward = function(_, g) return nil, g * 3 end}
  Fine(2.0, xs):backward()
  H.eq(xs.grad:item(), 3.0)
end

-- ag.grad with create_graph: second derivatives.
local s = ag.tensor(3.0, {requires_grad = true})
local f = s ^ 3
local d1 = ag.grad(f, s, {create_graph = true})
H.eq(d1:item(), 27.0)
local d2 = ag.grad(d1, s)
H.eq(d2:item(), 18.0)
-- create_graph with retain_graph = false in so many words frees the first graph, as PyTorch
local f2 = s ^ 3
f2:backward({create_graph = true, retain_graph = false})
local gx = s.grad
s.grad = nil
gx:backward()
H.eq(s.grad:item(), 18.0, "the recorded graph kept what it needs")
H.raises(function() f2:backward() end, "backward through the graph a second time")
s.grad = nil
local f3 = s ^ 3
local e1 = ag.grad(f3, s, {create_graph = true, retain_graph = false})
H.eq(ag.grad(e1, s):item(), 18.0)
H.raises(function() ag.grad(f3, s) end, "backward through the graph a second time")
local unused = ag.tensor(1.0, {requires_grad = true})
local gs = ag.grad({(s * 2)}, {s, unused}, {allow_unused = true})
H.eq(gs[1]:item(), 2.0)
H.eq(gs[2], nil)
H.raises(function() ag.grad(s * 2, {s, unused}) end, "ag_grad")

-- The raw ag_grad reads its spec's fields before converting any: a metamethod that releases
-- an output (and reuses its memory) while the inputs are read cannot leave a dangling
-- pointer (it crashed the interpreter).
do
  local x = ag.tensor({1.0, 2.0}, {requires_grad = true})
  local y = (x * x):sum()
  local keep = {}
  local spec = setmetatable({outputs = {y}}, {__index = function(_, k)
    if k == "inputs" then
      y:release()
      for i = 1, 200 do keep[i] = ag.full({3, 3}, 7.0) end
      return {x}
    end
  end})
  local ok, res = pcall(ag.core.ag_grad, spec, 0)
  H.check(not ok and tostring(res):find("ag_grad: outputs", 1, true) ~= nil,
          "a released output is an error: " .. tostring(res))
end

H.done("callbacks")
