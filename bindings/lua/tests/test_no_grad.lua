-- ag.no_grad scopes: graph recording off inside, the previous mode restored after, also
-- when the function raises; nesting; enable_grad; results pass through.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")

local x = ag.tensor({1.0, 2.0}, {requires_grad = true})
H.eq(ag.is_grad_enabled(), true)
local y, extra = ag.no_grad(function(k)
  H.eq(ag.is_grad_enabled(), false, "off inside")
  return x * k, "second"
end, 3)
H.eq(ag.is_grad_enabled(), true, "restored after")
H.eq(y.requires_grad, false, "no graph recorded")
H.eq(y.grad_fn, nil)
H.eq(y:tolist(), {3.0, 6.0})
H.eq(extra, "second", "every result is returned")

-- An error inside: mode restored, error re-raised with its message.
local ok, err = pcall(ag.no_grad, function()
  local _ = x:matmul(ag.ones(3))
end)
H.check(not ok, "the error propagates")
H.check(type(err) == "string" and err:find("ag_matmul", 1, true) ~= nil, "with its message: " .. tostring(err))
H.eq(ag.is_grad_enabled(), true, "restored after an error")
ok = pcall(ag.no_grad, function() error("user error") end)
H.check(not ok)
H.eq(ag.is_grad_enabled(), true, "restored after a Lua error")

-- Nesting and enable_grad.
ag.no_grad(function()
  ag.enable_grad(function()
    H.eq(ag.is_grad_enabled(), true)
    H.eq((x * 2).requires_grad, true)
  end)
  H.eq(ag.is_grad_enabled(), false, "inner scope restores the outer mode")
  pcall(ag.enable_grad, function() error("x") end)
  H.eq(ag.is_grad_enabled(), false, "even after an error")
end)
H.eq(ag.is_grad_enabled(), true)

-- set_grad_enabled returns the previous mode.
H.eq(ag.set_grad_enabled(false), true)
H.eq(ag.set_grad_enabled(true), false)

-- Anomaly mode as a scope.
local z = ag.tensor({-1.0}, {requires_grad = true})
local ok2, e2 = pcall(ag.detect_anomaly, function() z:sqrt():sum():backward() end)
H.check(not ok2 and e2:find("nan", 1, true) ~= nil, "anomaly: " .. tostring(e2))
H.eq(ag.last_status(), "AG_EANOMALY")
H.eq(ag.is_anomaly_enabled(), false)

-- A coroutine that yields inside ag.no_grad and is then closed restores the mode (it stayed
-- off for good), and so does an error in the scope.
local co = coroutine.create(function() ag.no_grad(function() coroutine.yield() end) end)
coroutine.resume(co)
H.eq(ag.is_grad_enabled(), false, "suspended inside no_grad: off on this thread meanwhile")
coroutine.close(co)
H.eq(ag.is_grad_enabled(), true, "closing the coroutine restores grad mode")
H.check(not pcall(ag.no_grad, function() error("boom") end), "an error propagates")
H.eq(ag.is_grad_enabled(), true)
local r1, r2 = ag.no_grad(function(a, b) return a + 1, b end, 1, "x")
H.eq(r1, 2)
H.eq(r2, "x")

-- Deferred kernels (a process-wide setting beside the per-thread modes): a big op's result
-- reads the same with the setting on or off; the setter returns the previous setting.
ag.set_num_threads(2)
H.eq(ag.is_deferral_enabled(), true, "deferral on by default")
local big = ag.full({64, 128}, 0.5) + 1
ag.synchronize()
H.eq(big:sum():item(), 1.5 * 64 * 128, "a queued result reads as computed")
H.eq(ag.set_deferral_enabled(false), true)
H.eq(ag.is_deferral_enabled(), false)
H.eq((ag.full({64, 128}, 0.5) + 1):sum():item(), 1.5 * 64 * 128, "the same without deferral")
H.eq(ag.set_deferral_enabled(true), false)
ag.set_num_threads(0)

H.done("no_grad")
