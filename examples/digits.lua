-- digits.lua: examples/digits.c in Lua. Trains a 64-128-10 ReLU network on the 8x8 handwritten
-- digits (data/digits.csv.gz) with the full loop (zero_grad, forward, loss, backward, step)
-- and reports test accuracy. Same shuffle, seeds, model and optimizer as the C version, so it
-- prints the same numbers (the times aside).
--
-- usage: lua5.4 examples/digits.lua [path/to/digits.csv.gz]
-- (with LUA_PATH and LUA_CPATH set as bindings/lua/README.md explains)
local ag = require("autograd")
local nn = ag.nn

local ROWS, PIXELS, CLASSES, TRAIN, HIDDEN, EPOCHS, BATCH = 1797, 64, 10, 1500, 128, 60, 32

local function script_dir()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)/[^/]*$") or "."
end
local path = arg[1] or (script_dir() .. "/../data/digits.csv.gz")

-- The shuffle: a 64-bit LCG (Knuth's MMIX constants) and Fisher-Yates, written the same way
-- in every language so the three demos see the same batches. Lua integers wrap like C's
-- uint64_t and >> is a logical shift. Positions are 0-based here as in C; the values stored
-- are 1-based row indices.
local lcg = 0
local function rand_below(n)
  lcg = lcg * 6364136223846793005 + 1442695040888963407
  return (lcg >> 33) % n
end
local function shuffle(a, n)
  for i = n - 1, 1, -1 do
    local j = rand_below(i + 1)
    a[i + 1], a[j + 1] = a[j + 1], a[i + 1]
  end
end

local function load(file)
  local f = assert(io.popen("gzip -dc '" .. file .. "'", "r"))
  local x, y = {}, {}
  for r = 1, ROWS do
    local line = f:read("l")
    if not line then error("digits: " .. file .. ": bad data at row " .. (r - 1)) end
    local c = 0
    for v in line:gmatch("[^,]+") do
      c = c + 1
      if c <= PIXELS then x[#x + 1] = tonumber(v) / 16.0 else y[r] = math.tointeger(tonumber(v)) + 1 end
    end
    if c ~= PIXELS + 1 then error("digits: " .. file .. ": bad data at row " .. (r - 1)) end
  end
  if not f:close() then error("digits: could not read " .. file) end
  return x, y
end

local xs, ys = load(path)
local x_all = ag.tensor(xs, {ROWS, PIXELS}, "float32")
local y_all = ag.tensor(ys, {ROWS}, "int64") -- classes 1..10

-- The rows of a tensor at positions first .. first + n - 1 of idx, an int64 tensor of 1-based
-- row indices.
local function rows(all, idx, first, n)
  return all:index_select(1, idx:narrow(1, first, n))
end

local perm = {}
for i = 1, ROWS do perm[i] = i end
shuffle(perm, ROWS)
local p = ag.tensor(perm, {ROWS}, "int64")
local x_train, y_train = rows(x_all, p, 1, TRAIN), rows(y_all, p, 1, TRAIN)
local x_test, y_test = rows(x_all, p, TRAIN + 1, ROWS - TRAIN), rows(y_all, p, TRAIN + 1, ROWS - TRAIN)

-- torch.nn.Linear's initialisation, drawn from one generator: w1, b1, w2, b2.
local gen = ag.generator(0)
local model = nn.Sequential(nn.Linear(PIXELS, HIDDEN, gen), nn.ReLU(), nn.Linear(HIDDEN, CLASSES, gen))
local opt = ag.optim.Adam(model:parameters(), {lr = 3e-3, betas = {0.9, 0.999}, eps = 1e-8})

local function accuracy(x, y)
  return ag.no_grad(function()
    local pred = model(x):argmax(2)
    return pred:eq(y):sum():item() / y:numel()
  end)
end

print(string.format("digits: %d training and %d test images, %d-%d-%d ReLU network, Adam lr 3e-3, batch %d",
                    TRAIN, ROWS - TRAIN, PIXELS, HIDDEN, CLASSES, BATCH))
local order = {}
for i = 1, TRAIN do order[i] = i end
local start = os.clock()
for epoch = 1, EPOCHS do
  shuffle(order, TRAIN)
  local o = ag.tensor(order, {TRAIN}, "int64")
  local loss_sum, batches = 0, 0
  for b = 1, TRAIN, BATCH do
    local n = math.min(BATCH, TRAIN - b + 1)
    local xb, yb = rows(x_train, o, b, n), rows(y_train, o, b, n)
    opt:zero_grad(true)
    local loss = nn.functional.cross_entropy(model(xb), yb)
    loss:backward()
    opt:step()
    loss_sum = loss_sum + loss:item()
    batches = batches + 1
  end
  if epoch == 1 or epoch % 10 == 0 then
    print(string.format("epoch %2d/%d  loss %.4f  train_accuracy %.4f  (%.2f s)", epoch, EPOCHS,
                        loss_sum / batches, accuracy(x_train, y_train), os.clock() - start))
  end
  io.stdout:flush()
end
print(string.format("test_accuracy=%.4f", accuracy(x_test, y_test)))
