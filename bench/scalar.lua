-- scalar.lua: the `scalar` workload (docs/workloads.md) from Lua: 20000 triples of
-- 0-d leaves, s = sum_i tanh(a_i * b_i + c_i) by s = s + ..., then s:backward(). Timed:
-- creating the leaves, forward, backward and releasing everything (the tensors as bench.c
-- releases them, then a full garbage collection for the Lua objects). Reported per node (4
-- per triple).
-- usage: lua scalar.lua [--threads 1,2] [--reps R] [--warmup W]
local ag = require("autograd")
local bench = require("benchlib")

local N = 20000
local o = bench.options(arg)
local vals = ag.randn({3 * N}, {generator = ag.generator(0)}):flat()
local tensor, rg = ag.tensor, {requires_grad = true}

local function rep()
  local leaves = {}
  local s = tensor(0.0)
  for i = 1, N do
    local a, b, c = tensor(vals[3 * i - 2], rg), tensor(vals[3 * i - 1], rg), tensor(vals[3 * i], rg)
    leaves[3 * i - 2], leaves[3 * i - 1], leaves[3 * i] = a, b, c
    -- As bench.c does it: each intermediate is released at the end of the iteration that
    -- used it (the graph keeps what backward needs), as Python's reference counting does.
    local p <close> = a * b
    local q <close> = p + c
    local r <close> = q:tanh()
    local prev <close> = s
    s = prev + r
  end
  s:backward()
  s:release()
  for i = 1, 3 * N do leaves[i]:release() end
  s, leaves = nil, nil
  collectgarbage()
end

collectgarbage()
bench.measure(o, "scalar", "ns_per_node", 1e9 / (4 * N), rep)
