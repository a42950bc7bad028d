-- mlp.lua: the `mlp` workload (docs/workloads.md) from Lua, written as a Lua user
-- would: 784-512-256-10 ReLU, batch 128, cross-entropy, SGD lr 0.01; one step = zero_grad,
-- forward, loss, backward, optimizer step. Same procedure as bench.c's mlp.
-- usage: lua mlp.lua [--threads 1,2] [--reps R] [--warmup W]
local ag = require("autograd")
local bench = require("benchlib")
local nn, F = ag.nn, ag.nn.functional

local INNER = 10 -- steps per repetition, as bench.c
local o = bench.options(arg)
local g = ag.generator(0)
local model = nn.Sequential(nn.Linear(784, 512, g), nn.ReLU(), nn.Linear(512, 256, g), nn.ReLU(),
                            nn.Linear(256, 10, g))
local x = ag.randn({128, 784}, {generator = g})
local y = ag.randint(1, 11, {128}, {generator = g}) -- class indices are 1-based in Lua
local opt = ag.optim.SGD(model, {lr = 0.01})

local function step()
  opt:zero_grad(true)
  local loss = F.cross_entropy(model(x), y)
  loss:backward()
  opt:step()
end

bench.measure(o, "mlp", "ms", 1e3 / INNER, function()
  for _ = 1, INNER do step() end
end)
