--[[
runner.lua: runs the conformance cases (tests/conformance/FORMAT.md) through the Lua binding's
idiomatic layer (require("autograd")), as runner_ffi.c runs them through the C ABI.

  lua5.4 tests/conformance/runner.lua tests/conformance/cases/*.json

with LUA_PATH finding bindings/lua/autograd.lua and LUA_CPATH the built autograd_core.so
(ctest's conformance.lua sets both). The data are 0-based; the binding is 1-based: dims,
positions, index tensors and ignore_index are converted on the way in, returned indices on
the way out, and nothing else (the library's behaviour is what is compared). Prints one FAIL
line per failing case and closes with "N passed, M failed, K skipped"; exits 1 if M > 0.
]]

local cjson = require("cjson")
local ag = require("autograd")
local F = ag.nn.functional

-- ---------------------------------------------------------------------------------------
-- 0-based data to the 1-based binding
-- ---------------------------------------------------------------------------------------
local function D(d) -- a dim (or a position): 0-based -> 1-based, negatives unchanged
  if d >= 0 then return d + 1 end
  return d
end
local function DS(ds) -- a table of dims
  local out = {}
  for i = 1, #ds do out[i] = D(ds[i]) end
  return out
end
local function STOP(e) -- an exclusive 0-based stop -> the binding's inclusive 1-based stop
  if e >= 0 then return e end
  return e - 1
end
local function IDX(t) -- an index tensor of 0-based values -> 1-based values
  if t == nil then return nil end
  return t + 1
end
local function UNIDX(t) -- returned 1-based indices -> 0-based, to compare with the data
  return t - 1
end
local function B(i) return i ~= 0 end

-- ---------------------------------------------------------------------------------------
-- fn -> the binding's API. Each takes the decoded args (a) and returns the outputs in the
-- order of the out-parameters (a number for a `value`).
-- ---------------------------------------------------------------------------------------
local function flags_opts(fl, extra)
  local o = extra or {}
  for _, f in ipairs(fl) do o[f] = true end
  return o
end

-- ag.split / ag.chunk count the pieces themselves, so the idiomatic call cannot pass a wrong
-- count; when the case's out list asks for another count (an error case), the same call
-- goes through the generated low-level module (ag.core), which takes the count as C does.
local function pieces(fn, cname, a, n)
  local p = fn(a[1], a[2], D(a[3]))
  if #p == n then return table.unpack(p, 1, n) end
  return table.unpack(ag.core[cname](n, a[1], a[2], a[3]), 1, n)
end

local FN = {
  -- arithmetic: the operators, with numbers on either side
  ag_add = function(a) return a[1] + a[2] end,
  ag_sub = function(a) return a[1] - a[2] end,
  ag_mul = function(a) return a[1] * a[2] end,
  ag_div = function(a) return a[1] / a[2] end,
  ag_pow = function(a) return a[1] ^ a[2] end,
  ag_add_scalar = function(a) return a[1] + a[2] end,
  ag_sub_scalar = function(a) return a[1] - a[2] end,
  ag_rsub_scalar = function(a) return a[2] - a[1] end,
  ag_mul_scalar = function(a) return a[1] * a[2] end,
  ag_div_scalar = function(a) return a[1] / a[2] end,
  ag_rdiv_scalar = function(a) return a[2] / a[1] end,
  ag_pow_scalar = function(a) return a[1] ^ a[2] end,
  ag_rpow_scalar = function(a) return a[2] ^ a[1] end,
  ag_neg = function(a) return -a[1] end,
  ag_maximum = function(a) return ag.maximum(a[1], a[2]) end,
  ag_minimum = function(a) return ag.minimum(a[1], a[2]) end,
  ag_leaky_relu = function(a) return ag.leaky_relu(a[1], a[2]) end,
  ag_gelu = function(a) return ag.gelu(a[1], a[2] ~= 0 and "tanh" or "none") end,
  ag_softplus = function(a) return ag.softplus(a[1], a[2], a[3]) end,
  ag_clamp = function(a) return ag.clamp(a[1], a[2], a[3]) end,
  ag_clamp_min = function(a) return ag.clamp_min(a[1], a[2]) end,
  ag_clamp_max = function(a) return ag.clamp_max(a[1], a[2]) end,
  ag_where = function(a) return ag.where(a[1], a[2], a[3]) end,
  -- reductions
  ag_sum = function(a) return ag.sum(a[1]) end,
  ag_sum_dims = function(a) return ag.sum(a[1], DS(a[2]), B(a[3])) end,
  ag_mean = function(a) return ag.mean(a[1]) end,
  ag_mean_dims = function(a) return ag.mean(a[1], DS(a[2]), B(a[3])) end,
  ag_max = function(a) return ag.max(a[1]) end,
  ag_min = function(a) return ag.min(a[1]) end,
  ag_max_dim = function(a)
    local v, i = ag.max(a[1], D(a[2]), B(a[3]))
    return v, UNIDX(i)
  end,
  ag_min_dim = function(a)
    local v, i = ag.min(a[1], D(a[2]), B(a[3]))
    return v, UNIDX(i)
  end,
  ag_amax = function(a) return ag.amax(a[1], DS(a[2]), B(a[3])) end,
  ag_amin = function(a) return ag.amin(a[1], DS(a[2]), B(a[3])) end,
  ag_var = function(a) return ag.var(a[1], DS(a[2]), {correction = a[3], keepdim = B(a[4])}) end,
  ag_std = function(a) return ag.std(a[1], DS(a[2]), {correction = a[3], keepdim = B(a[4])}) end,
  ag_logsumexp = function(a) return ag.logsumexp(a[1], DS(a[2]), B(a[3])) end,
  ag_norm = function(a) return ag.norm(a[1], a[2], DS(a[3]), B(a[4])) end,
  ag_argmax = function(a) return UNIDX(ag.argmax(a[1], D(a[2]), B(a[3]))) end,
  ag_argmin = function(a) return UNIDX(ag.argmin(a[1], D(a[2]), B(a[3]))) end,
  ag_argmax_all = function(a) return UNIDX(ag.argmax(a[1])) end,
  ag_argmin_all = function(a) return UNIDX(ag.argmin(a[1])) end,
  -- linear algebra
  ag_matmul = function(a) return ag.matmul(a[1], a[2]) end,
  ag_linear = function(a) return ag.linear(a[1], a[2], a[3]) end,
  -- shapes and views
  ag_reshape = function(a) return ag.reshape(a[1], a[2]) end,
  ag_view = function(a) return ag.view(a[1], a[2]) end,
  ag_expand = function(a) return ag.expand(a[1], a[2]) end,
  ag_transpose = function(a) return ag.transpose(a[1], D(a[2]), D(a[3])) end,
  ag_t = function(a) return ag.t(a[1]) end,
  ag_permute = function(a) return ag.permute(a[1], DS(a[2])) end,
  ag_slice = function(a) return ag.slice(a[1], D(a[2]), D(a[3]), STOP(a[4]), a[5]) end,
  ag_narrow = function(a) return ag.narrow(a[1], D(a[2]), D(a[3]), a[4]) end,
  ag_select = function(a) return ag.select(a[1], D(a[2]), D(a[3])) end,
  ag_squeeze = function(a) return ag.squeeze(a[1]) end,
  ag_squeeze_dim = function(a) return ag.squeeze(a[1], D(a[2])) end,
  ag_unsqueeze = function(a) return ag.unsqueeze(a[1], D(a[2])) end,
  ag_flatten = function(a) return ag.flatten(a[1], D(a[2]), D(a[3])) end,
  ag_contiguous = function(a) return ag.contiguous(a[1]) end,
  ag_clone = function(a) return ag.clone(a[1]) end,
  ag_to_dtype = function(a) return ag.to(a[1], a[2]) end,
  -- indexing and joining
  ag_index_select = function(a) return ag.index_select(a[1], D(a[2]), IDX(a[3])) end,
  ag_gather = function(a) return ag.gather(a[1], D(a[2]), IDX(a[3])) end,
  ag_scatter_add = function(a) return ag.scatter_add(a[1], D(a[2]), IDX(a[3]), a[4]) end,
  ag_masked_fill = function(a) return ag.masked_fill(a[1], a[2], a[3]) end,
  ag_cat = function(a) return ag.cat(a[1], D(a[2])) end,
  ag_stack = function(a) return ag.stack(a[1], D(a[2])) end,
  ag_split = function(a, n) return pieces(ag.split, "ag_split", a, n) end,
  ag_chunk = function(a, n) return pieces(ag.chunk, "ag_chunk", a, n) end,
  ag_split_count = function(a) return #ag.split(a[1], a[2], D(a[3])) end,
  ag_chunk_count = function(a) return #ag.chunk(a[1], a[2], D(a[3])) end,
  -- neural-network functions
  ag_softmax = function(a) return ag.softmax(a[1], D(a[2])) end,
  ag_log_softmax = function(a) return ag.log_softmax(a[1], D(a[2])) end,
  ag_cross_entropy = function(a)
    return F.cross_entropy(a[1], IDX(a[2]), {weight = a[3], reduction = a[4],
                           ignore_index = a[5] + 1, label_smoothing = a[6]})
  end,
  ag_nll_loss = function(a)
    return F.nll_loss(a[1], IDX(a[2]), {weight = a[3], reduction = a[4], ignore_index = a[5] + 1})
  end,
  ag_mse_loss = function(a) return F.mse_loss(a[1], a[2], {reduction = a[3]}) end,
  ag_binary_cross_entropy_with_logits = function(a)
    return F.binary_cross_entropy_with_logits(a[1], a[2], {weight = a[3], pos_weight = a[4],
                                              reduction = a[5]})
  end,
  ag_dropout = function(a) return F.dropout(a[2], a[3], B(a[4]), a[1]) end,
  ag_layer_norm = function(a) return F.layer_norm(a[1], a[2], a[3], a[4], a[5]) end,
  ag_embedding = function(a) return F.embedding(IDX(a[2]), a[1]) end,
  -- in place
  ag_add_ = function(a) ag.add_(a[1], a[2]) end,
  ag_sub_ = function(a) ag.sub_(a[1], a[2]) end,
  ag_mul_ = function(a) ag.mul_(a[1], a[2]) end,
  ag_add_scalar_ = function(a) ag.add_(a[1], a[2]) end,
  ag_mul_scalar_ = function(a) ag.mul_(a[1], a[2]) end,
  ag_zero_ = function(a) ag.zero_(a[1]) end,
  ag_fill_ = function(a) ag.fill_(a[1], a[2]) end,
  ag_copy_ = function(a) ag.copy_(a[1], a[2]) end,
  -- creation
  ag_tensor_scalar = function(a) return ag.tensor(a[1], a[2]) end,
  ag_tensor_scalar_requires_grad = function(a)
    -- a float32 leaf as a script writes it, ag.tensor(v, {requires_grad = ...}), which takes
    -- the binding's one-call path (typemaps.i, ag_lua_scalar_try); other dtypes named
    if a[2] == "float32" and math.type(a[1]) == "float" then
      return ag.tensor(a[1], {requires_grad = B(a[3])})
    end
    return ag.tensor(a[1], {dtype = a[2], requires_grad = B(a[3])})
  end,
  ag_zeros = function(a) return ag.zeros(a[2], a[1]) end,
  ag_ones = function(a) return ag.ones(a[2], a[1]) end,
  ag_empty = function(a) return ag.empty(a[2], a[1]) end,
  ag_full = function(a) return ag.full(a[2], a[3], a[1]) end,
  ag_arange = function(a) return ag.arange(a[2], a[3], a[4], a[1]) end,
  ag_eye = function(a) return ag.eye(a[2], a[3], a[1]) end,
  ag_rand = function(a) return ag.rand(a[3], {dtype = a[2], generator = a[1]}) end,
  ag_randn = function(a) return ag.randn(a[3], {dtype = a[2], generator = a[1]}) end,
  ag_randint = function(a) return ag.randint(a[2], a[3], a[5], {dtype = a[4], generator = a[1]}) end,
  ag_zeros_like = function(a) return ag.zeros_like(a[1]) end,
  ag_ones_like = function(a) return ag.ones_like(a[1]) end,
  ag_empty_like = function(a) return ag.empty_like(a[1]) end,
  ag_full_like = function(a) return ag.full_like(a[1], a[2]) end,
  ag_rand_like = function(a) return ag.rand_like(a[2], {generator = a[1]}) end,
  ag_randn_like = function(a) return ag.randn_like(a[2], {generator = a[1]}) end,
  ag_generator_new = function(a) return ag.generator(a[1]) end,
  -- autograd
  ag_backward = function(a) ag.backward(a[1], a[2], flags_opts(a[3])) end,
  ag_grad = function(a)
    local g = ag.grad(a[1], a[3], flags_opts(a[4], {grad_outputs = a[2]}))
    return table.unpack(g, 1, #a[3])
  end,
  ag_tensor_grad = function(a) return a[1].grad end,
  ag_tensor_set_grad = function(a) a[1].grad = a[2] end,
  ag_tensor_zero_grad = function(a) ag.zero_grad(a[1]) end,
  ag_tensor_retain_grad = function(a) ag.retain_grad(a[1]) end,
  ag_tensor_detach = function(a) return ag.detach(a[1]) end,
  ag_tensor_set_requires_grad = function(a) a[1].requires_grad = B(a[2]) end,
  -- queries
  ag_tensor_numel = function(a) return ag.numel(a[1]) end,
  ag_tensor_size = function(a) return ag.size(a[1], D(a[2])) end,
  ag_tensor_item = function(a)
    local v = ag.item(a[1])
    if type(v) == "boolean" then v = v and 1 or 0 end
    return v
  end,
  ag_tensor_item_int64 = function(a) return ag.item_int(a[1]) end,
  -- optimizers
  ag_optimizer_sgd = function(a)
    return ag.optim.SGD(a[1], {lr = a[2], momentum = a[3], dampening = a[4],
                               weight_decay = a[5], nesterov = B(a[6])})
  end,
  ag_optimizer_adam = function(a)
    return ag.optim.Adam(a[1], {lr = a[2], betas = {a[3], a[4]}, eps = a[5],
                                weight_decay = a[6], amsgrad = B(a[7])})
  end,
  ag_optimizer_adamw = function(a)
    return ag.optim.AdamW(a[1], {lr = a[2], betas = {a[3], a[4]}, eps = a[5],
                                 weight_decay = a[6], amsgrad = B(a[7])})
  end,
  ag_optimizer_step = function(a) a[1]:step() end,
  ag_optimizer_zero_grad = function(a) a[1]:zero_grad(B(a[2])) end,
  ag_optimizer_get_lr = function(a) return a[1].lr end,
  ag_optimizer_set_lr = function(a) a[1].lr = a[2] end,
}
for _, name in ipairs({"abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos",
                       "tanh", "sigmoid", "relu", "silu"}) do
  FN["ag_" .. name] = function(a) return ag[name](a[1]) end
end
for _, name in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
  FN["ag_" .. name] = function(a) return ag[name](a[1], a[2]) end
  FN["ag_" .. name .. "_scalar"] = FN["ag_" .. name]
end

-- ---------------------------------------------------------------------------------------
-- Values and comparisons
-- ---------------------------------------------------------------------------------------
local NAN_STR = {nan = 0 / 0, inf = math.huge, ["-inf"] = -math.huge}
local function num(v)
  if type(v) == "string" then
    local x = NAN_STR[v]
    if x == nil then error("bad number " .. v) end
    return x
  end
  return v
end
local function int(v) return math.tointeger(v) or error("not an integer: " .. tostring(v)) end

local function fmt(v)
  if type(v) == "table" then
    local parts = {}
    for i = 1, math.min(#v, 12) do parts[i] = fmt(v[i]) end
    if #v > 12 then parts[#parts + 1] = "..." end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  if type(v) == "number" and math.type(v) == "float" then return string.format("%.9g", v) end
  return tostring(v)
end

local function close(got, want, tol)
  if want ~= want then return got ~= got end
  if want == math.huge or want == -math.huge then return got == want end
  return math.abs(got - want) <= tol.atol + tol.rtol * math.abs(want)
end

-- Checks the fields of an expect / expect_grad step against tensor t; returns nil or a message.
local function check_tensor(t, s, tols)
  if s.none then
    if t ~= nil then return "expected none, got a tensor" end
    return nil
  end
  if t == nil then return "expected a tensor, got none" end
  local dt = t.dtype
  if s.dtype and dt ~= s.dtype then return "dtype: expected " .. s.dtype .. ", got " .. dt end
  if s.shape then
    local shape = t.shape
    local ok = #shape == #s.shape
    for i = 1, #s.shape do ok = ok and shape[i] == int(s.shape[i]) end
    if not ok then return "shape: expected " .. fmt(s.shape) .. ", got " .. fmt(shape) end
  end
  if s.data then
    local got = t:flat()
    if #got ~= #s.data then
      return string.format("data: expected %d elements, got %d", #s.data, #got)
    end
    local tol = tols[s.dtype or dt]
    for i = 1, #got do
      local g, w = got[i], s.data[i]
      local ok
      if dt == "bool" then
        ok = g == (w == true or w == 1)
      elseif dt == "int64" then
        ok = g == w
      else
        ok = close(g, num(w), tol or tols.float64)
      end
      if not ok then
        return string.format("data[%d]: expected %s, got %s (data %s)", i - 1, fmt(num(w)),
                             fmt(g), fmt(got))
      end
    end
  end
  if s.requires_grad ~= nil and t.requires_grad ~= s.requires_grad then
    return "requires_grad: expected " .. tostring(s.requires_grad) .. ", got " .. tostring(t.requires_grad)
  end
  if s.grad_fn ~= nil then
    local fn = t.grad_fn
    local name = fn and fn:name() or cjson.null
    if name ~= s.grad_fn then
      return "grad_fn: expected " .. tostring(s.grad_fn) .. ", got " .. tostring(fn and name or "none")
    end
  end
  if s.is_leaf ~= nil and t.is_leaf ~= s.is_leaf then
    return "is_leaf: expected " .. tostring(s.is_leaf) .. ", got " .. tostring(t.is_leaf)
  end
  if s.version ~= nil and t.version ~= int(s.version) then
    return "version: expected " .. fmt(s.version) .. ", got " .. fmt(t.version)
  end
  if s.strides ~= nil then
    local st = t:stride()
    local ok = #st == #s.strides
    for i = 1, #s.strides do ok = ok and st[i] == int(s.strides[i]) end
    if not ok then return "strides: expected " .. fmt(s.strides) .. ", got " .. fmt(st) end
  end
  if s.storage_offset ~= nil and t:storage_offset() ~= int(s.storage_offset) then
    return "storage_offset: expected " .. fmt(s.storage_offset) .. ", got " .. fmt(t:storage_offset())
  end
  if s.is_contiguous ~= nil and t:is_contiguous() ~= s.is_contiguous then
    return "is_contiguous: expected " .. tostring(s.is_contiguous) .. ", got " .. tostring(t:is_contiguous())
  end
  return nil
end

-- ---------------------------------------------------------------------------------------
-- Running cases
-- ---------------------------------------------------------------------------------------
local function decode_arg(arg, names)
  if arg.t ~= nil then return names[arg.t] end
  if arg.null then return nil end
  -- A double scalar argument acts as a Python scalar (FORMAT.md): integral values as ints.
  -- In Lua that is an integer: the module takes a Lua float as a float even when integral
  -- (int64 + 2.0 is float32 there, as `t + 2.0` in PyTorch).
  if arg.f ~= nil then
    local v = num(arg.f)
    return math.tointeger(v) or v
  end
  if arg.i ~= nil then return int(arg.i) end
  if arg.ints ~= nil then
    local out = {}
    for i, v in ipairs(arg.ints) do out[i] = int(v) end
    return out
  end
  if arg.ts ~= nil then
    local out = {}
    for i = 1, #arg.ts do
      local n = arg.ts[i]
      if n ~= cjson.null then out[i] = names[n] end
    end
    return out
  end
  if arg.dtype ~= nil then return arg.dtype end
  if arg.reduction ~= nil then return arg.reduction end
  if arg.flags ~= nil then return arg.flags end
  if arg.gen ~= nil then return names[arg.gen] end
  if arg.opt ~= nil then return names[arg.opt] end
  error("unknown argument " .. cjson.encode(arg))
end

local function run_call(s, names, tols)
  local fn = FN[s.fn]
  if not fn then return "no mapping for " .. s.fn end
  local args = {}
  for i, arg in ipairs(s.args) do args[i] = decode_arg(arg, names) end
  ag.clear_error()
  local n_out = type(s.out) == "table" and #s.out or 1
  local res = table.pack(pcall(fn, args, n_out))
  if s.error then
    if res[1] then return "expected " .. s.error.status .. ", got success" end
    local status, msg = ag.last_status(), ag.last_error()
    if status ~= s.error.status then
      return "expected " .. s.error.status .. ", got " .. status .. " (" .. tostring(res[2]) .. ")"
    end
    if msg == "" then return "empty ag_last_error()" end
    if type(res[2]) ~= "string" or not res[2]:find(msg, 1, true) then
      return "the Lua error '" .. tostring(res[2]) .. "' does not carry ag_last_error() '" .. msg .. "'"
    end
    if s.error.message_contains and not msg:find(s.error.message_contains, 1, true) then
      return "message '" .. msg .. "' does not contain '" .. s.error.message_contains .. "'"
    end
    return nil
  end
  if not res[1] then
    return "expected success, got error: " .. tostring(res[2]) .. " [" .. ag.last_status() .. "]"
  end
  if s.value ~= nil then
    local v, want = res[2], num(s.value)
    local ok
    if math.type(v) == "integer" and math.tointeger(want) then ok = v == math.tointeger(want)
    else ok = type(v) == "number" and close(v, want, tols.float64) end
    if not ok then return "value: expected " .. fmt(want) .. ", got " .. fmt(v) end
    return nil
  end
  local out = s.out
  if out ~= nil then
    if type(out) == "string" then out = {out} end
    for i, name in ipairs(out) do names[name] = res[i + 1] end
  end
  return nil
end

local function run_steps(steps, names, tols, prefix)
  for i, s in ipairs(steps) do
    local where = prefix .. i
    local err
    if s.op == "tensor" then
      local data = {}
      for j, v in ipairs(s.data) do data[j] = num(v) end
      local shape = {}
      for j, v in ipairs(s.shape) do shape[j] = int(v) end
      local ok, t = pcall(ag.tensor, data, shape, {dtype = s.dtype, requires_grad = s.requires_grad})
      if ok then names[s.out] = t else err = "tensor: " .. tostring(t) end
    elseif s.op == "call" then
      err = run_call(s, names, tols)
      if err then err = s.fn .. ": " .. err end
    elseif s.op == "expect" then
      err = check_tensor(names[s.t], s, tols)
      if err then err = "expect " .. s.t .. ": " .. err end
    elseif s.op == "expect_grad" then
      local t = names[s.t]
      if t == nil then err = "expect_grad: " .. s.t .. " is none"
      else
        err = check_tensor(t.grad, s, tols)
        if err then err = "expect_grad " .. s.t .. ": " .. err end
      end
    elseif s.op == "no_grad" then
      local ok, e = pcall(ag.no_grad, run_steps, s.steps, names, tols, where .. ".")
      if not ok then e = "runner error: " .. tostring(e) end
      if e then return e end
    elseif s.op == "release" then
      names[s.name] = nil
      collectgarbage()
    else
      err = "unknown op " .. tostring(s.op)
    end
    if err then return "step " .. where .. ": " .. err end
  end
  return nil
end

local passed, failed, skipped = 0, 0, 0
local function fail(name, msg)
  failed = failed + 1
  print("FAIL " .. name .. ": " .. msg)
end

if #arg == 0 then
  io.stderr:write("usage: lua5.4 runner.lua CASES.json...\n")
  os.exit(2)
end

for _, path in ipairs(arg) do
  local f, ferr = io.open(path, "rb")
  local doc
  if f then
    local ok, d = pcall(cjson.decode, f:read("a"))
    f:close()
    if ok then doc = d else ferr = d end
  end
  if not doc or doc.format ~= 1 then
    fail(path, doc and ("unsupported format " .. tostring(doc.format)) or tostring(ferr))
  else
    for _, case in ipairs(doc.cases) do
      local tols = {}
      for k, v in pairs(doc.tolerances) do tols[k] = v end
      if case.tolerances then for k, v in pairs(case.tolerances) do tols[k] = v end end
      ag.set_grad_enabled(true)
      ag.clear_error()
      local names = {}
      local ok, err = pcall(run_steps, case.steps, names, tols, "")
      if not ok then err = "runner error: " .. tostring(err) end
      names = nil
      collectgarbage()
      if not err and not ag.is_grad_enabled() then err = "grad mode left disabled" end
      ag.set_grad_enabled(true)
      if err then fail(case.name, err) else passed = passed + 1 end
    end
  end
end

print(string.format("%d passed, %d failed, %d skipped", passed, failed, skipped))
os.exit(failed > 0 and 1 or 0)
