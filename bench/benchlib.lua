-- benchlib.lua: timing and statistics for the Lua drivers (bench/mlp.lua, bench/scalar.lua),
-- the same procedure and output as bench/bench.c's measure(), so bench/run parses them alike.
local clock = require("bench_clock") -- a monotonic wall clock (bench/lua_clock.c)
local ag = require("autograd")

local M = {}

-- --threads 1,2 --reps R --warmup W
function M.options(argv)
  local o = {threads = {ag.get_num_threads()}, reps = 5, warmup = 1}
  for i = 1, #argv, 2 do
    local k, v = argv[i], argv[i + 1]
    if k == "--threads" then
      o.threads = {}
      for t in v:gmatch("%d+") do o.threads[#o.threads + 1] = tonumber(t) end
    elseif k == "--reps" then o.reps = tonumber(v)
    elseif k == "--warmup" then o.warmup = tonumber(v)
    else error("usage: [--threads 1,2] [--reps R] [--warmup W]") end
  end
  return o
end

local function median(v)
  local s = table.move(v, 1, #v, 1, {})
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or 0.5 * (s[n // 2] + s[n // 2 + 1])
end

-- Runs rep() after warm-up, the thread counts interleaved within each repetition; a sample
-- is seconds * scale. Prints one result line per thread count.
function M.measure(o, name, unit, scale, rep)
  local samples = {}
  for _, t in ipairs(o.threads) do samples[t] = {} end
  for r = 1 - o.warmup, o.reps do
    for _, t in ipairs(o.threads) do
      ag.set_num_threads(t)
      local t0 = clock.now()
      rep()
      local s = clock.now() - t0
      if r >= 1 then samples[t][r] = s * scale end
    end
  end
  for _, t in ipairs(o.threads) do
    local v = samples[t]
    local strs = {}
    for i = 1, #v do strs[i] = string.format("%.6g", v[i]) end
    print(string.format("result lua %s threads=%d unit=%s median=%.6g samples=%s", name, t, unit,
                        median(v), table.concat(strs, ",")))
  end
end

return M
