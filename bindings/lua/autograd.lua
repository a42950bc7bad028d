--[[
autograd: reverse-mode automatic differentiation for Lua 5.4, with PyTorch's semantics.

  local ag = require("autograd")
  local x = ag.tensor(2.0, {requires_grad = true})
  local z = 2 * (x * x) + 5
  z:backward()
  print(x.grad)                       --> tensor(8.)

This is the idiomatic layer over the SWIG-generated C module `autograd_core` (the C API of
abi/autograd.h, one function per C function, reachable as ag.core). Tensors are the C
handles themselves: the module gives their metatable operators, fields and methods, and the
garbage collector releases them.

CONVENTION: dimensions and indices are 1-BASED, as Lua (and torch7) count.
  * A dimension d > 0 counts from the front (1 is the first); d < 0 counts from the end
    (-1 is the last, as in PyTorch); 0 is an error.  t:sum(1), t:softmax(-1).
  * Positions are 1-based too: t:select(1, 1) is the first row; t:narrow(dim, start, length);
    t:slice(dim, start, stop [, step]) takes an INCLUSIVE stop, like string.sub
    (t:slice(1, 2, 3) is rows 2 and 3; negative positions count from the end, -1 the last).
  * Index tensors (index_select, gather, scatter_add, embedding, class targets of
    cross_entropy and nll_loss, and ignore_index) hold 1-based indices, and returned indices
    (argmax, argmin, max(dim), min(dim)) are 1-based.
  * Everything else follows PyTorch: shapes, broadcasting, dtypes, grad_fn names, printing.

Errors raise Lua errors carrying the library's message ("ag_matmul: shapes [2, 3] and
[4, 5] cannot be multiplied"); pcall catches them, ag.last_status() names the status.

Dtypes are strings: "float32" (the default for floats), "float64", "int64" (the default for
Lua integers), "bool"; also ag.float32, ag.float64, ag.int64, ag.bool.

Grad mode is per OS thread, as in the C library: ag.no_grad(fn) restores it even if fn
fails, but a coroutine that yields inside the scope leaves it switched off meanwhile.
]]

local core = require("autograd_core")

local ag = {core = core}

------------------------------------------------------------------------------------------
-- Version check: the library loaded must be the one this module was built against, or a
-- compatible newer one (same major, minor not older).
------------------------------------------------------------------------------------------
function ag._version_compatible(built, loaded)
  local function str(v) return string.format("%d.%d.%d", v // 10000, v // 100 % 100, v % 100) end
  if built // 10000 ~= loaded // 10000 then
    return false, string.format("autograd: the loaded libautograd %s has another major version "
      .. "than the %s this Lua module was built against", str(loaded), str(built))
  end
  if loaded // 100 % 100 < built // 100 % 100 then
    return false, string.format("autograd: the loaded libautograd %s is older than the %s this "
      .. "Lua module was built against", str(loaded), str(built))
  end
  return true
end

do
  local ok, msg = ag._version_compatible(core.AG_VERSION_NUMBER, core.ag_version_number())
  if not ok then error(msg, 2) end
end
ag.version = core.ag_version_string()

------------------------------------------------------------------------------------------
-- Locals for the hot paths
------------------------------------------------------------------------------------------
local type, select, error, pcall, setmetatable, rawget = type, select, error, pcall, setmetatable, rawget
local mtype, tpack, tunpack = math.type, table.pack, table.unpack

local C = core
local c_adds, c_subs, c_rsubs, c_muls = C.ag_add_scalar, C.ag_sub_scalar, C.ag_rsub_scalar, C.ag_mul_scalar
local c_neg = C.ag_neg

local registry = debug.getregistry().SWIG
local TensorMT = registry.ag_tensor
local NodeMT = registry.ag_node
local OptimMT = registry.ag_optimizer
local GenMT = registry.ag_generator
assert(TensorMT and NodeMT and OptimMT and GenMT and NodeMT.__gc,
       "autograd: autograd_core has no class metatables (was it built from autograd.i?)")

local function is_tensor(v)
  return getmetatable(v) == TensorMT
end
ag.is_tensor = is_tensor

-- Errors this layer finds itself also set the calling thread's status and message, as the
-- library's own do, so that ag.last_status() names the latest failure whichever side found
-- it. `level` is error()'s, counted from the caller of raise.
local function raise(status, msg, level)
  C.ag_set_error(status, msg)
  error(msg, level + 1)
end

-- A value as an error message names it: a number or boolean as it prints, a string quoted,
-- anything else by its kind ("a table", "a tensor").
local function describe(v)
  if type(v) == "string" then return string.format("%q", v) end
  if mtype(v) or type(v) == "boolean" or v == nil then return tostring(v) end
  return is_tensor(v) and "a tensor" or "a " .. type(v)
end

-- v as an integer (2.0 is 2; numeric strings are taken as Lua's arithmetic takes them, as
-- dims are), or an AG_EINVAL error naming the function, the argument and the value; `level`
-- as raise's. Arguments the layer computes with before C sees them go through here, so that a
-- wrong one is reported, not a raw Lua error ("attempt to compare number with string") that
-- named neither and left the status as it was.
local function int_arg(v, fn, what, level)
  local i = math.tointeger(v)
  if i == nil then
    raise(C.AG_EINVAL, string.format("autograd: %s: %s must be an integer, got %s", fn, what,
          describe(v)), level + 1)
  end
  return i
end

------------------------------------------------------------------------------------------
-- Dtypes, dims, indices
------------------------------------------------------------------------------------------
local DTYPE = {float32 = C.AG_FLOAT32, float64 = C.AG_FLOAT64, int64 = C.AG_INT64, bool = C.AG_BOOL}
local DTYPE_NAME = {}
for name, code in pairs(DTYPE) do DTYPE_NAME[code] = name; ag[name] = name end

-- `extra`: levels between the caller and the user's code, past the usual one (ag.tensor's).
local function dtype_code(d, default, extra)
  if d == nil then return default end
  local code = DTYPE[d]
  if code then return code end
  if DTYPE_NAME[d] then return d end
  raise(C.AG_EDTYPE, "autograd: unknown dtype " .. tostring(d) .. " (float32, float64, int64 or bool)",
        3 + (extra or 0))
end

-- A 1-based dimension to C's 0-based one.
-- `level`: error()'s for the caller of the function that called dim0 (default 3).
local function dim0(d, what, level)
  level = level or 3
  local i = math.tointeger(d) -- 2.0 is 2; 1.5 is not a dimension
  if i == nil then
    raise(C.AG_EINVAL, string.format("autograd: %s must be an integer, got %s", what or "dim",
          describe(d)), level)
  end
  if i > 0 then return i - 1 end
  if i < 0 then return i end
  raise(C.AG_ERANGE, "autograd: " .. (what or "dim") .. " 0 is invalid: dimensions and positions are "
        .. "1-based (1 is the first, -1 the last)", level)
end

-- A 1-based dimension of tensor t as C's 0-based one, checked against t's dims here: C would
-- name an out-of-range dim, and its valid range, 0-based. `extra` is 1 where the dim may name
-- a new last dimension (unsqueeze, stack). A 0-d tensor takes 1 and -1, as PyTorch's takes 0
-- and -1. Anything but a tensor is left for C to report.
local function tdim0(t, d, extra, level)
  level = level or 3
  local c = dim0(d, "dim", level + 1)
  if is_tensor(t) then
    local nd = C.ag_tensor_ndim(t)
    local n = nd + (extra or 0)
    if n == 0 then n = 1 end
    if c < -n or c >= n then
      raise(C.AG_ERANGE, string.format("autograd: dim %d is out of range for a %d-d tensor "
            .. "(expected 1 to %d, or -%d to -1)", c < 0 and c or c + 1, nd, n, n), level)
    end
  end
  return c
end

-- A list of dims (or one) as C's 0-based ones; a dim named twice (2 and -1 of a 2-d tensor
-- too) is reported here, 1-based, as C would report it 0-based.
local function dims0(t, dims)
  if dims == nil then return nil end
  if type(dims) ~= "table" then return {tdim0(t, dims, 0, 4)} end
  local out, seen = {}, {}
  local nd = is_tensor(t) and math.max(C.ag_tensor_ndim(t), 1) or nil
  for i = 1, #dims do
    out[i] = tdim0(t, dims[i], 0, 4)
    if nd then
      local w = out[i] < 0 and out[i] + nd or out[i]
      if seen[w] then
        raise(C.AG_EINVAL, string.format("autograd: dim %d appears multiple times in the list "
              .. "of dims", w + 1), 3)
      end
      seen[w] = true
    end
  end
  return out
end

-- A 1-based position along t's dimension c (0-based, valid) as C's 0-based one, checked here
-- for the same reason as dims; `past_end`: the position just past the last one is allowed
-- (narrow's start, with length 0; on an empty dimension -1 too, which PyTorch wraps as a dim
-- index over a size of 1).
local function pos0(t, c, p, what, past_end, extra)
  extra = extra or 0 -- levels between pos0's caller and the user's code, past the usual one
  local q = dim0(p, what, 4 + extra)
  if is_tensor(t) and C.ag_tensor_ndim(t) > 0 then
    local size = C.ag_tensor_size(t, c)
    local last = past_end and size + 1 or size
    local first = (past_end and size == 0) and -1 or -size
    if q < first or q >= last then
      if c < 0 then c = c + C.ag_tensor_ndim(t) end
      local expected = last == 0 and "the dimension is empty"
          or size == 0 and "expected 1 or -1"
          or string.format("expected 1 to %d, or -%d to -1", last, size)
      raise(C.AG_ERANGE, string.format("autograd: %s %d is out of range for dim %d of size %d "
            .. "(%s)", what, q < 0 and q or q + 1, c + 1, size, expected), 3 + extra)
    end
  end
  return q
end

-- An index tensor given in 1-based indices (or a Lua table of them) as C's 0-based one.
-- The entries of a table must be integers (2.0 counts as 2), checked here: a boolean was
-- taken as 1 or 0 (an index, silently), and a string raised a raw Lua error. `fn` and `what`
-- name the function and the argument in the message ("index_select()", "index").
local function index_entry_ok(v) return mtype(v) ~= nil and math.tointeger(v) ~= nil end
local function index0(idx, fn, what)
  if is_tensor(idx) then
    -- (a bool tensor cannot take the 1 off: the message named ag_sub_scalar, not fn)
    if C.ag_tensor_dtype(idx) == C.AG_BOOL then
      raise(C.AG_EDTYPE, string.format("autograd: %s: %s must be an integer tensor of "
            .. "indices, got a bool tensor", fn, what), 3)
    end
    return c_subs(idx, 1)
  end
  if idx == nil then return nil end -- the library reports the missing argument
  if type(idx) == "table" then
    local n, bad, found = 0, nil, false
    if type(idx[1]) == "number" then -- a flat list: no Lua copy
      for i = 1, #idx do
        if not index_entry_ok(idx[i]) then n, bad, found = i, idx[i], true; break end
      end
    else -- nested: the entries in row-major order, at the depth of idx[1][1]... (a table
      -- missing at a shallower depth is _flatten's to report: the table is ragged)
      local nd, v = 0, idx
      while type(v) == "table" and not is_tensor(v) do nd, v = nd + 1, v[1] end
      local function walk(x, depth)
        if found then return end
        if depth <= nd then
          if type(x) == "table" and not is_tensor(x) then
            for i = 1, #x do walk(x[i], depth + 1) end
          end
          return
        end
        n = n + 1
        if not index_entry_ok(x) then bad, found = x, true end
      end
      walk(idx, 1)
    end
    if found then
      raise(C.AG_EINVAL, string.format("autograd: %s: %s element %d must be an integer, got %s",
            fn, what, n, describe(bad)), 3)
    end
    if type(idx[1]) == "number" then
      return c_subs(C.ag_tensor_from_f64(idx, C.AG_INT64, {#idx}), 1)
    end
    local flat, shape = ag._flatten(idx)
    for i = 1, #flat do flat[i] = flat[i] - 1 end
    return C.ag_tensor_from_f64(flat, C.AG_INT64, shape)
  end
  raise(C.AG_EINVAL, "autograd: expected an index tensor or a table of indices, got " .. type(idx), 3)
end

local function index1(t) return c_adds(t, 1) end

-- Calls f(...), a C function given index tensors that index0 made 0-based: if an index is out
-- of range, C names it (and its dimension) 0-based; the error is raised again naming both as
-- the caller wrote them. Other errors pass through unchanged.
local function one_based(msg)
  local function inc(n) return tostring(math.tointeger(tonumber(n)) + 1) end
  return (msg:gsub("index (%-?%d+) is out of bounds for dimension (%d+)", function(i, d)
           return "index " .. inc(i) .. " is out of bounds for dimension " .. inc(d) end)
             :gsub("^(ag_[%w_]+: Target )(%-?%d+)( is out of bounds%.)", function(pre, i, post)
           -- (a 0 is most likely a 0-based label)
           return pre .. inc(i) .. post .. (inc(i) == "0" and " (class indices are 1-based)" or "")
         end)
             :gsub("index out of range in self %(index (%-?%d+)", function(i)
           return "index out of range in self (index " .. inc(i) end))
end
-- The positions in an optimizer's parameter list, 0-based in C's messages ("params[0] and
-- params[2] are the same tensor"), as the Lua list counts them.
local function one_based_params(msg)
  return (msg:gsub("params%[(%d+)%]", function(i) return "params[" .. (tonumber(i) + 1) .. "]" end))
end
-- cat's and stack's messages count list entries and dimensions from 0 (PyTorch's words).
local function one_based_list(msg)
  local function inc(n) return tostring(math.tointeger(tonumber(n)) + 1) end
  if not msg:find("^ag_cat: ") and not msg:find("^ag_stack: ") then return msg end
  return (msg:gsub("%(at position (%d+)%)", function(i) return "(at position " .. inc(i) .. ")" end)
             :gsub("dimension (%d+)", function(d) return "dimension " .. inc(d) end)
             :gsub("tensor number (%d+) in the list", function(i)
           return "tensor number " .. inc(i) .. " in the list" end)
             :gsub("at entry (%d+)", function(i) return "at entry " .. inc(i) end))
end
-- A backward pass's own messages that count from 0 (PyTorch's words): the gradient a custom
-- function returned for its i-th input, the i-th of ag.grad's grad_outputs. Anchored at the
-- start: a message quoting a nested call's (already reworded) is left alone.
local function one_based_backward(msg)
  local function inc(n) return tostring(math.tointeger(tonumber(n)) + 1) end
  return (msg:gsub("^(ag_[%w_]+: Function %S+ returned an invalid gradient at index )(%d+)",
                   function(pre, i) return pre .. inc(i) end)
             :gsub("^(ag_[%w_]+: Mismatch in shape: grad_output%[)(%d+)(%] has a shape of .- and output%[)(%d+)%]",
                   function(pre, a, mid, b) return pre .. inc(a) .. mid .. inc(b) .. "]" end))
end
-- f(...), its error message passed through `reword` (the thread's message too).
local function with_reworded(reword, f, ...)
  local ok, r = pcall(f, ...)
  if ok then return r end
  if type(r) ~= "string" then error(r, 0) end
  local msg = reword(r)
  if msg == r then error(r, 0) end
  C.ag_set_error(C.ag_last_status(), msg)
  error(msg, 0) -- without a position, as the library's own errors
end
local function with_params(f, ...) return with_reworded(one_based_params, f, ...) end
local function with_indices(f, ...) return with_reworded(one_based, f, ...) end

-- Shapes given as a table or as integers: f({2, 3}) or f(2, 3). Returns the shape and the
-- index of the first argument after it. With `opts` (the creation functions), the first
-- argument that is not a number ends the shape and starts the options (a dtype or a table);
-- without (view, permute ...), nothing may follow the shape: a wrong element was taken as its
-- end and dropped, silently (view(6, "x") was view(6)). `fn` and `what` name the function and
-- the argument in errors, as PyTorch's ("view()", "size"); the elements of a table are C's to
-- check.
local function shape_args(fn, what, opts, ...)
  local first, n = ..., select("#", ...)
  if type(first) == "table" and not is_tensor(first) then
    for i = 2, opts and 1 or n do
      if select(i, ...) ~= nil then
        raise(C.AG_EINVAL, string.format("autograd: %s: unexpected argument %d after the %s "
              .. "table (got %s)", fn, i, what, describe((select(i, ...)))), 3)
      end
    end
    return first, 2
  end
  local shape = {}
  for i = 1, n do
    local v = select(i, ...)
    if opts and type(v) ~= "number" then return shape, i end
    local k = mtype(v) and math.tointeger(v)
    if not k then
      raise(C.AG_EINVAL, string.format("autograd: %s: argument '%s': element %d is not an "
            .. "integer (got %s)", fn, what, i, describe(v)), 3)
    end
    shape[i] = k
  end
  return shape, n + 1
end

------------------------------------------------------------------------------------------
-- Creation
------------------------------------------------------------------------------------------
-- Nested tables to a flat list and a shape; infers the dtype as PyTorch does (any float:
-- float32; all integers: int64; all booleans: bool).
function ag._flatten(data, extra)
  local shape, v = {}, data
  while type(v) == "table" and not is_tensor(v) do
    shape[#shape + 1] = #v
    v = v[1]
  end
  local flat, kind, nd = {}, nil, #shape -- kind: "bool", "int" or "float"
  -- (A bad element stops the walk and is raised below, at the caller of ag.tensor: raised
  -- from the recursion, the error's line would depend on the depth.)
  local bad_status, bad_msg
  local function walk(x, depth)
    if bad_status then return end
    if depth <= nd then
      if type(x) ~= "table" or is_tensor(x) or #x ~= shape[depth] then
        bad_status = C.AG_ESHAPE
        bad_msg = string.format("autograd: ragged nested table: expected %d elements at depth %d",
                                shape[depth], depth)
        return
      end
      for i = 1, shape[depth] do walk(x[i], depth + 1) end
      return
    end
    local k
    if type(x) == "boolean" then k = "bool"
    elseif mtype(x) == "integer" then k = "int"
    elseif mtype(x) == "float" then k = "float"
    else
      bad_status, bad_msg = C.AG_EINVAL, "autograd: tensor data must be numbers or booleans, got " .. type(x)
      return
    end
    if kind == nil or kind == "bool" or (kind == "int" and k == "float") then kind = k end
    flat[#flat + 1] = x
  end
  walk(data, 1)
  if bad_status then raise(bad_status, bad_msg, 3 + (extra or 0)) end
  local dt = (kind == "bool" and "bool") or (kind == "int" and "int64") or "float32"
  if dt == "int64" then -- booleans among integers are 0 and 1, as in torch.tensor([1, True])
    for i = 1, #flat do
      if type(flat[i]) == "boolean" then flat[i] = flat[i] and 1 or 0 end
    end
  end
  return flat, shape, dt
end

-- A Lua integer beyond 2^53 in magnitude, which the C functions taking a double cannot hold
-- exactly, as a 0-d int64 tensor (which promotes as the integer would: int64 with int64 and
-- bool tensors, a float tensor's dtype with float ones); nil for any other value.
local function big_int(v)
  if mtype(v) == "integer" and (v > 0x20000000000000 or v < -0x20000000000000) then
    return C.ag_lua_from_i64({v}, {})
  end
  return nil
end

-- Lua numbers and booleans as int64 values the way torch.tensor(data, dtype=int64) takes
-- them: floats truncate toward zero, booleans are 0 and 1. A float that is not finite or does
-- not fit is left as it is, for C to refuse.
local function int64_values(flat)
  local out = {}
  for i = 1, #flat do
    local v = flat[i]
    if type(v) == "boolean" then v = v and 1 or 0
    elseif mtype(v) == "float" then
      local t = v >= 0 and math.floor(v) or math.ceil(v)
      v = (t >= -0x1p63 and t < 0x1p63) and math.tointeger(t) or v
    end
    out[i] = v
  end
  return out
end

-- Refuses the keys an options table does not know: a misspelt option was ignored silently
-- ({learning_rate = 0.5} trained at the default rate). `allowed` is a set of names; `level`
-- counts from the caller of check_opts, as raise's does. Options that are not a table at all
-- (nil is none) are refused too: a string or a number was ignored (F.cross_entropy(x, t,
-- "sum") gave the mean) or indexed into a raw Lua error that set no status.
local function check_opts(o, allowed, what, level)
  if o == nil then return end
  if type(o) ~= "table" then
    raise(C.AG_EINVAL, string.format("autograd: %s takes a table of options, got %s", what,
          describe(o)), level + 1)
  end
  for k in pairs(o) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      raise(C.AG_EINVAL, string.format("autograd: %s got an unexpected option '%s' (it takes %s)",
            what, tostring(k), table.concat(names, ", ")), level + 1)
    end
  end
end
local function set(...)
  local s = {}
  for _, k in ipairs({...}) do s[k] = true end
  return s
end

local function apply_opts(t, opts)
  if opts and opts.requires_grad then C.ag_tensor_set_requires_grad(t, true) end
  return t
end

-- ag.tensor(data [, dtype | opts]) with data a number, boolean or nested table;
-- ag.tensor(flat, shape [, dtype | opts]) with flat a flat table and shape a table.
-- opts: {dtype = ..., requires_grad = ..., shape = ...}.
local c_scalar, c_set_requires_grad = C.ag_tensor_scalar, C.ag_tensor_set_requires_grad
local TENSOR_OPTS = set("dtype", "requires_grad", "shape")
-- ag.tensor is a C closure (typemaps.i, ag_lua_tensor_fn) that makes a number with no dtype
-- and no shape into a 0-d tensor itself (scalar graphs make many of these) and calls this
-- function for anything else, with x = 1: the levels between here and the caller's code
-- (for the positions of errors) are one more than in a Lua function called directly. When
-- the caller gave a non-nil argument past the third, the closure passes its position and
-- value as extra_i, extra_v, to be refused here.
-- An argument of ag.tensor that nothing would read (i: its position, v: its value) is an
-- error, as the README's rule for options is: it was dropped, silently (ag.tensor(1.0,
-- {requires_grad = true}, "float64") was float32).
local function tensor_unexpected(i, v, after, x)
  raise(C.AG_EINVAL, string.format("autograd: ag.tensor: unexpected argument %d after the %s "
        .. "(got %s)", i, after, describe(v)), 3 + x)
end
local function tensor_general(data, a, b, x, extra_i, extra_v)
  if extra_i then tensor_unexpected(extra_i, extra_v, "dtype or options", x) end
  local t
  -- A number with a dtype (the C closure took those without).
  if mtype(data) and b == nil then
    local function scalar(code) -- (Lua integers into int64 exactly, beyond 2^53 too)
      if code == C.AG_INT64 and mtype(data) == "integer" then return C.ag_lua_from_i64({data}, {}) end
      return c_scalar(data, code)
    end
    if type(a) == "string" then
      return scalar(dtype_code(a, nil, x))
    elseif type(a) == "table" and a[1] == nil and a.shape == nil then
      check_opts(a, TENSOR_OPTS, "ag.tensor", 2 + x)
      t = scalar(dtype_code(a.dtype, mtype(data) == "integer" and C.AG_INT64 or C.AG_FLOAT32, x))
      if a.requires_grad then c_set_requires_grad(t, true) end
      return t
    end
  end
  local shape, opts
  if type(a) == "table" and (a.dtype ~= nil or a.requires_grad ~= nil or a.shape ~= nil) then
    opts = a
    shape = a.shape
    -- (a dtype or options after the options: taken for nothing, silently)
    if b ~= nil then tensor_unexpected(3, b, "options table", x) end
  elseif type(a) == "table" then
    shape = a
    opts = type(b) == "table" and b or {dtype = b}
  else
    local o = a
    if o == nil then o = b -- ag.tensor(data, nil, dtype | opts)
    elseif b ~= nil then tensor_unexpected(3, b, "dtype", x) end
    opts = type(o) == "table" and o or {dtype = o}
  end
  check_opts(opts, TENSOR_OPTS, "ag.tensor", 2 + x)
  if is_tensor(data) then
    local t = C.ag_clone(C.ag_tensor_detach(data))
    if opts.dtype then t = C.ag_to_dtype(t, dtype_code(opts.dtype, nil, x)) end
    return apply_opts(t, opts)
  end
  local flat, inferred_shape, dt
  if type(data) == "table" and shape then
    -- flat data: no copy (the C side checks the elements and their count against the shape)
    flat, dt = data, opts.dtype
    if dt == nil then
      local k = "bool"
      for i = 1, #data do
        local m = mtype(data[i])
        if m == "float" then k = "float"; break elseif m == "integer" then k = "int" end
      end
      dt = (k == "bool" and #data > 0 and "bool") or (k == "int" and "int64") or "float32"
    end
  elseif type(data) == "table" then
    flat, inferred_shape, dt = ag._flatten(data, x)
  elseif (type(data) == "number" or type(data) == "boolean") and shape == nil then
    dt = (type(data) == "boolean" and "bool") or (mtype(data) == "integer" and "int64") or "float32"
    if type(data) == "boolean" then data = data and 1 or 0 end
    local code = dtype_code(opts.dtype, DTYPE[dt], x)
    if code == C.AG_INT64 and mtype(data) == "integer" then
      return apply_opts(C.ag_lua_from_i64({data}, {}), opts) -- exact beyond 2^53
    end
    return apply_opts(C.ag_tensor_scalar(data, code), opts)
  elseif type(data) == "number" or type(data) == "boolean" then
    raise(C.AG_EINVAL, "autograd: ag.tensor of a " .. type(data) .. " makes a 0-d tensor and takes no shape "
          .. "(ag.full(shape, value) fills one)", 2 + x)
  else
    raise(C.AG_EINVAL, "autograd: ag.tensor expects a number, a boolean or a table, got " .. type(data), 2 + x)
  end
  local code = dtype_code(opts.dtype, DTYPE[dt], x)
  if code == C.AG_INT64 then -- as Lua integers: exact beyond 2^53
    local function integers(v)
      for i = 1, #v do if mtype(v[i]) ~= "integer" then return false end end
      return true
    end
    local vals = flat
    if not integers(vals) then vals = int64_values(flat) end
    if integers(vals) then return apply_opts(C.ag_lua_from_i64(vals, shape or inferred_shape), opts) end
  end
  return apply_opts(C.ag_tensor_from_f64(flat, code, shape or inferred_shape), opts)
end
ag.tensor = C.ag_lua_tensor_fn(tensor_general)

-- Trailing options of the creation functions: a dtype string or {dtype=, requires_grad=,
-- generator=}.
local CREATION_OPTS = set("dtype", "requires_grad", "generator")
local function creation_opts(v)
  if type(v) == "table" then
    check_opts(v, CREATION_OPTS, "a creation function", 3)
    return v
  end
  if v == nil then return {} end
  return {dtype = v}
end

-- Refuses the arguments of a creation function `fn` past its dtype or options, which nothing
-- reads (they were dropped, silently: ag.zeros(2, "int64", 3)): `first` is the position of
-- the first of ..., each of which must be nil. Called only when there are any, so that the
-- common calls pay one select("#").
local function no_extra(fn, first, ...)
  for k = 1, select("#", ...) do
    local v = select(k, ...)
    if v ~= nil then
      raise(C.AG_EINVAL, string.format("autograd: %s: unexpected argument %d after the dtype "
            .. "or options (got %s)", fn, first + k - 1, describe(v)), 3)
    end
  end
end

local function filled(cfn, fn)
  return function(...)
    local shape, i = shape_args(fn, "size", true, ...)
    if select("#", ...) > i then no_extra(fn, i + 1, select(i + 1, ...)) end
    local opts = creation_opts((select(i, ...)))
    return apply_opts(cfn(dtype_code(opts.dtype, C.AG_FLOAT32), shape), opts)
  end
end
ag.zeros = filled(C.ag_zeros, "zeros()")
ag.ones = filled(C.ag_ones, "ones()")
ag.empty = filled(C.ag_empty, "empty()")

-- ag.full(shape, value [, dtype | opts])
-- The dtype follows the value when none is given, as torch.full: an integer gives int64, a
-- boolean bool, a float float32.
function ag.full(shape, value, o, ...)
  if select("#", ...) > 0 then no_extra("full()", 4, ...) end
  local opts = creation_opts(o)
  local dt = (type(value) == "boolean" and C.AG_BOOL) or (mtype(value) == "integer" and C.AG_INT64)
             or C.AG_FLOAT32
  if type(value) == "boolean" then value = value and 1 or 0 end
  local code, big = dtype_code(opts.dtype, dt), big_int(value)
  if big and code == C.AG_INT64 then
    local t = C.ag_full(code, shape, 0)
    C.ag_copy_(t, big)
    return apply_opts(t, opts)
  end
  return apply_opts(C.ag_full(code, shape, value), opts)
end

local function random(cfn, fn)
  return function(...)
    local shape, i = shape_args(fn, "size", true, ...)
    if select("#", ...) > i then no_extra(fn, i + 1, select(i + 1, ...)) end
    local opts = creation_opts((select(i, ...)))
    return apply_opts(cfn(opts.generator, dtype_code(opts.dtype, C.AG_FLOAT32), shape), opts)
  end
end
ag.rand = random(C.ag_rand, "rand()")
ag.randn = random(C.ag_randn, "randn()")

-- ag.randint(low, high, shape [, dtype | opts]) (integers in [low, high), int64 by default)
function ag.randint(low, high, shape, o, ...)
  if select("#", ...) > 0 then no_extra("randint()", 5, ...) end
  local opts = creation_opts(o)
  return C.ag_randint(opts.generator, low, high, dtype_code(opts.dtype, C.AG_INT64), shape)
end

-- ag.arange(end) / ag.arange(start, end [, step]) [, dtype | opts]: integers give int64,
-- any float gives float32, as torch.arange.
function ag.arange(a, b, c, o, ...)
  if select("#", ...) > 0 then no_extra("arange()", 5, ...) end
  -- (the options follow the last number given: what comes after them is refused)
  if type(b) ~= "number" then
    if c ~= nil or o ~= nil then no_extra("arange()", 3, c, o) end
    a, b, c, o = 0, a, 1, b
  elseif type(c) ~= "number" then
    if o ~= nil then no_extra("arange()", 4, o) end
    c, o = 1, c
  end
  local opts = creation_opts(o)
  local int = mtype(a) == "integer" and mtype(b) == "integer" and mtype(c) == "integer"
  local dt = dtype_code(opts.dtype, int and C.AG_INT64 or C.AG_FLOAT32)
  return apply_opts(C.ag_arange(dt, a, b, c), opts)
end

-- ag.eye(n [, m] [, dtype | opts])
function ag.eye(n, m, o, ...)
  if select("#", ...) > 0 then no_extra("eye()", 4, ...) end
  if type(m) ~= "number" then
    if o ~= nil then no_extra("eye()", 3, o) end
    m, o = n, m
  end
  local opts = creation_opts(o)
  return apply_opts(C.ag_eye(dtype_code(opts.dtype, C.AG_FLOAT32), n, m), opts)
end

-- ag.zeros_like(t [, dtype | opts]) ...: t's shape and dtype (or the dtype given).
local function like(cfn, fn)
  return function(t, o, ...)
    if select("#", ...) > 0 then no_extra(fn, 3, ...) end
    local opts = creation_opts(o)
    local r = cfn(t)
    if opts.dtype then r = C.ag_to_dtype(r, dtype_code(opts.dtype)) end
    return apply_opts(r, opts)
  end
end
ag.zeros_like = like(C.ag_zeros_like, "zeros_like()")
ag.ones_like = like(C.ag_ones_like, "ones_like()")
ag.empty_like = like(C.ag_empty_like, "empty_like()")
function ag.full_like(t, value, o, ...)
  if select("#", ...) > 0 then no_extra("full_like()", 4, ...) end
  local opts = creation_opts(o)
  local r = C.ag_full_like(t, value)
  if opts.dtype then r = C.ag_to_dtype(r, dtype_code(opts.dtype)) end
  return apply_opts(r, opts)
end
-- (With a dtype, drawn in that dtype, as torch.rand_like(t, dtype=...), not converted.)
local function random_like(like_fn, fn, name)
  return function(t, o, ...)
    if select("#", ...) > 0 then no_extra(name, 3, ...) end
    local opts = creation_opts(o)
    if opts.dtype then
      return apply_opts(fn(opts.generator, dtype_code(opts.dtype), C.ag_tensor_shape(t)), opts)
    end
    return apply_opts(like_fn(opts.generator, t), opts)
  end
end
ag.rand_like = random_like(C.ag_rand_like, C.ag_rand, "rand_like()")
ag.randn_like = random_like(C.ag_randn_like, C.ag_randn, "randn_like()")

------------------------------------------------------------------------------------------
-- Generators and seeds
------------------------------------------------------------------------------------------
-- ag.generator(seed): a seedable generator, passed as opts.generator or to nn.Linear.
function ag.generator(seed) return C.ag_generator_new(seed or 0) end
-- Reseeds the calling thread's default generator.
function ag.manual_seed(seed) C.ag_manual_seed(seed) end

local GenMethods = {}
function GenMethods.manual_seed(g, seed) C.ag_generator_manual_seed(g, seed); return g end
GenMT.__index = GenMethods
GenMT.__newindex = nil
GenMT.__tostring = function() return "<autograd generator>" end
GenMT.__name = "ag.Generator"
GenMT.__eq = C.ag_lua_handle_eq

------------------------------------------------------------------------------------------
-- Grad mode, anomaly mode, threads, errors
------------------------------------------------------------------------------------------
-- The previous mode comes back when fn returns, raises, or is abandoned by closing the
-- coroutine it yielded from (a to-be-closed variable: pcall alone left the mode set for good
-- after coroutine.close).
local function scoped(setter, mode, name)
  return function(fn, ...)
    -- (checked before the mode changes: calling a number raised a raw "attempt to call")
    local mt = getmetatable(fn)
    if type(fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
      raise(C.AG_EINVAL, string.format("autograd: %s expects a function, got %s", name,
            describe(fn)), 2)
    end
    local prev = setter(mode)
    local _ <close> = setmetatable({}, {__close = function() setter(prev) end})
    return fn(...)
  end
end
-- ag.no_grad(function() ... end): runs fn with graph recording off, then restores the
-- previous mode, also when fn raises. Returns fn's results.
ag.no_grad = scoped(C.ag_set_grad_enabled, 0, "no_grad")
ag.enable_grad = scoped(C.ag_set_grad_enabled, 1, "enable_grad")
ag.detect_anomaly = scoped(C.ag_set_anomaly_enabled, 1, "detect_anomaly")
function ag.set_grad_enabled(on) return C.ag_set_grad_enabled(on and 1 or 0) ~= 0 end
function ag.is_grad_enabled() return C.ag_is_grad_enabled() ~= 0 end
function ag.set_anomaly_enabled(on) return C.ag_set_anomaly_enabled(on and 1 or 0) ~= 0 end
function ag.is_anomaly_enabled() return C.ag_is_anomaly_enabled() ~= 0 end
function ag.set_num_threads(n) C.ag_set_num_threads(n) end
function ag.get_num_threads() return C.ag_get_num_threads() end
-- Deferred kernels (see ag_set_deferral_enabled in autograd.h): on by default; the setter
-- returns the previous setting.
function ag.set_deferral_enabled(on) return C.ag_set_deferral_enabled(on and 1 or 0) ~= 0 end
function ag.is_deferral_enabled() return C.ag_is_deferral_enabled() ~= 0 end
-- Runs every queued kernel (values never need it: for timing, and exact memory_in_use).
function ag.synchronize() C.ag_synchronize() end
-- The status of the calling thread's last failure, as a name ("AG_ESHAPE"), and its message.
function ag.last_status() return C.ag_status_name(C.ag_last_status()) end
function ag.last_error() return C.ag_last_error() end
function ag.clear_error() C.ag_clear_error() end

------------------------------------------------------------------------------------------
-- Tensor methods
------------------------------------------------------------------------------------------
local T = {}      -- methods, also reachable as ag.Tensor
ag.Tensor = T
local getters = {} -- fields computed on read: t.grad, t.shape ...
local setters = {} -- fields with a setter: t.requires_grad = true

-- Arithmetic with a number on either side: C functions of the module (typemaps.i,
-- ag_lua_binop) that pick ag_mul, ag_mul_scalar ... by the operands' types. They run on every
-- operator, where a Lua closure in between cost ~80 ns a call.
local add, sub, mul, div, pow = C.ag_lua_add, C.ag_lua_sub, C.ag_lua_mul, C.ag_lua_div, C.ag_lua_pow
T.add, T.sub, T.mul, T.div, T.pow = add, sub, mul, div, pow
T.rsub = function(t, s) return c_rsubs(t, s) end
function T.neg(t) return c_neg(t) end
function T.maximum(a, b) return C.ag_maximum(a, b) end
function T.minimum(a, b) return C.ag_minimum(a, b) end

-- In place (returns t).
-- A Lua float is a float to PyTorch, even when integral: it cannot be written into an
-- integer tensor (the C calls take any integral double as an integer).
local function float_into_int(t, o, fn)
  if mtype(o) == "float" then
    local dt = C.ag_tensor_dtype(t)
    if dt == C.AG_INT64 or dt == C.AG_BOOL then
      raise(C.AG_EDTYPE, fn .. ": result type float32 can't be cast to the desired output type "
            .. DTYPE_NAME[dt], 3)
    end
  end
end
-- t:add_(o), t:sub_(o), t:mul_(o) with o a tensor or a number; they return t.
local function inplace(scalar_fn, scalar_name, tensor_fn, negate)
  return function(t, o)
    o = big_int(o) or o
    if type(o) == "number" then
      float_into_int(t, o, scalar_name)
      scalar_fn(t, negate and -o or o)
    else
      tensor_fn(t, o)
    end
    return t
  end
end
T.add_ = inplace(C.ag_add_scalar_, "ag_add_scalar_", C.ag_add_)
T.sub_ = inplace(C.ag_add_scalar_, "ag_sub_", C.ag_sub_, true)
T.mul_ = inplace(C.ag_mul_scalar_, "ag_mul_scalar_", C.ag_mul_)
function T.zero_(t) C.ag_zero_(t); return t end
function T.fill_(t, v)
  if type(v) == "boolean" then v = v and 1 or 0 end -- as torch's x.fill_(True)
  local big = big_int(v)
  if big then C.ag_copy_(t, big) else C.ag_fill_(t, v) end
  return t
end
function T.copy_(t, src) C.ag_copy_(t, src); return t end

-- Elementwise functions.
for _, name in ipairs({"exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "abs", "sin", "cos",
                       "tanh", "sigmoid", "relu", "silu"}) do
  T[name] = C["ag_" .. name]
end
function T.leaky_relu(t, slope) return C.ag_leaky_relu(t, slope or 0.01) end
-- approximate: "tanh" (or true) for the tanh form; "none" (or nil, false) for the exact erf
-- form. Anything else is refused, as PyTorch refuses it (it was taken as "none", silently).
local GELU_APPROX = {none = 0, tanh = 1, [false] = 0, [true] = 1}
local function gelu_approx(a, level)
  if a == nil then return 0 end
  local code = GELU_APPROX[a]
  if code == nil then
    raise(C.AG_EINVAL, "autograd: gelu(): approximate argument must be either none or tanh, got "
          .. describe(a), level + 1)
  end
  return code
end
function T.gelu(t, approximate) return C.ag_gelu(t, gelu_approx(approximate, 2)) end
function T.softplus(t, beta, threshold) return C.ag_softplus(t, beta or 1, threshold or 20) end
function T.clamp(t, lo, hi)
  if lo == nil and hi == nil then -- (as PyTorch: C's clamp_max named its missing argument 2)
    raise(C.AG_EINVAL, "autograd: clamp(): at least one of min and max must be given", 2)
  end
  if lo == nil then return C.ag_clamp_max(t, hi) end
  if hi == nil then return C.ag_clamp_min(t, lo) end
  return C.ag_clamp(t, lo, hi)
end
function T.clamp_min(t, lo) return C.ag_clamp_min(t, lo) end
function T.clamp_max(t, hi) return C.ag_clamp_max(t, hi) end

-- A number operand of where/maximum as a 0-d tensor of the other operand's dtype.
-- A number beside a tensor, as PyTorch types a Python scalar: a float tensor's dtype
-- stays; otherwise a Lua float makes float32, an integer int64 (a bool beside a bool, bool).
local function as_tensor(v, like_t)
  if type(v) ~= "number" and type(v) ~= "boolean" then return v end
  local lt = like_t and C.ag_tensor_dtype(like_t)
  local dt
  if lt == C.AG_FLOAT32 or lt == C.AG_FLOAT64 then dt = lt
  elseif type(v) == "boolean" then dt = lt or C.AG_BOOL
  elseif mtype(v) == "float" then dt = C.AG_FLOAT32
  else dt = C.AG_INT64 end
  return C.ag_tensor_scalar(type(v) == "boolean" and (v and 1 or 0) or v, dt)
end
-- ag.where(cond, a, b); t:where(cond, other) is where(cond, t, other).
function ag.where(cond, a, b)
  if is_tensor(a) then b = as_tensor(b, a) elseif is_tensor(b) then a = as_tensor(a, b)
  else a, b = as_tensor(a), as_tensor(b) end
  return C.ag_where(cond, a, b)
end
function T.where(t, cond, other) return ag.where(cond, t, other) end

-- Comparisons (bool tensors, never a grad_fn): t:eq(other) with a tensor or a number.
for _, name in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
  local tt, ts = C["ag_" .. name], C["ag_" .. name .. "_scalar"]
  T[name] = function(a, b)
    if type(b) == "boolean" then b = b and 1 or 0 end -- as torch's x.eq(True)
    if mtype(b) then
      local big = big_int(b)
      if big then return tt(a, big) end
      return ts(a, b)
    end
    return tt(a, b)
  end
end

-- Reductions: dim is nil (all), a dim or a table of dims.
function T.sum(t, dim, keepdim)
  if dim == nil and not keepdim then return C.ag_sum(t) end
  return C.ag_sum_dims(t, dims0(t, dim), keepdim or false)
end
function T.mean(t, dim, keepdim)
  if dim == nil and not keepdim then return C.ag_mean(t) end
  return C.ag_mean_dims(t, dims0(t, dim), keepdim or false)
end
-- t:max() is the largest element; t:max(dim [, keepdim]) returns values and 1-based indices;
-- t:max(other) is the elementwise maximum.
function T.max(t, dim, keepdim)
  if dim == nil then return C.ag_max(t) end
  if is_tensor(dim) then return C.ag_maximum(t, dim) end
  local v, i = C.ag_max_dim(t, tdim0(t, dim), keepdim or false)
  return v, index1(i)
end
function T.min(t, dim, keepdim)
  if dim == nil then return C.ag_min(t) end
  if is_tensor(dim) then return C.ag_minimum(t, dim) end
  local v, i = C.ag_min_dim(t, tdim0(t, dim), keepdim or false)
  return v, index1(i)
end
function T.amax(t, dim, keepdim) return C.ag_amax(t, dims0(t, dim), keepdim or false) end
function T.amin(t, dim, keepdim) return C.ag_amin(t, dims0(t, dim), keepdim or false) end
-- t:var([dim [, opts]]): opts = {correction = 1, unbiased = true, keepdim = false}, or a
-- boolean keepdim.
local VAR_OPTS = set("correction", "unbiased", "keepdim")
local function var_opts(o)
  if type(o) ~= "table" then return 1, o or false end
  check_opts(o, VAR_OPTS, "var/std", 3)
  local corr = o.correction
  if corr == nil then corr = (o.unbiased == false) and 0 or 1 end
  return corr, o.keepdim or false
end
function T.var(t, dim, o) local corr, keep = var_opts(o); return C.ag_var(t, dims0(t, dim), corr, keep) end
function T.std(t, dim, o) local corr, keep = var_opts(o); return C.ag_std(t, dims0(t, dim), corr, keep) end
function T.logsumexp(t, dim, keepdim) return C.ag_logsumexp(t, dims0(t, dim), keepdim or false) end
-- t:norm([p [, dim [, keepdim]]]), p = 2 by default (math.huge for the max norm).
function T.norm(t, p, dim, keepdim) return C.ag_norm(t, p or 2, dims0(t, dim), keepdim or false) end
-- 1-based index of the largest / smallest element: along dim, or of the flattened tensor.
function T.argmax(t, dim, keepdim)
  if dim == nil then return index1(C.ag_argmax_all(t)) end
  return index1(C.ag_argmax(t, tdim0(t, dim), keepdim or false))
end
function T.argmin(t, dim, keepdim)
  if dim == nil then return index1(C.ag_argmin_all(t)) end
  return index1(C.ag_argmin(t, tdim0(t, dim), keepdim or false))
end

-- Linear algebra.
function T.matmul(a, b) return C.ag_matmul(a, b) end
function ag.linear(x, w, b) return C.ag_linear(x, w, b) end

-- Shapes and views.
function T.reshape(t, ...)
  return C.ag_reshape(t, (shape_args("reshape()", "shape", false, ...)))
end
function T.view(t, ...) return C.ag_view(t, (shape_args("view()", "size", false, ...))) end
function T.expand(t, ...) return C.ag_expand(t, (shape_args("expand()", "size", false, ...))) end
function T.transpose(t, d0, d1) return C.ag_transpose(t, tdim0(t, d0), tdim0(t, d1)) end
function T.t(t) return C.ag_t(t) end
function T.permute(t, ...)
  return C.ag_permute(t, dims0(t, (shape_args("permute()", "dims", false, ...))))
end
-- Positions start..stop (inclusive; negative count from the end) every step along dim.
function T.slice(t, dim, start, stop, step)
  local s = start == nil and 0 or dim0(start, "slice(): start")
  -- (stop is compared and step passed on here: checked first, see int_arg)
  if stop ~= nil then stop = int_arg(stop, "slice()", "stop", 2) end
  if step ~= nil then step = int_arg(step, "slice()", "step", 2) end
  local e
  if stop == nil then e = math.maxinteger
  elseif stop >= 0 then e = stop
  elseif stop == -1 then e = math.maxinteger
  else e = stop + 1 end
  return C.ag_slice(t, tdim0(t, dim), s, e, step or 1)
end
function T.narrow(t, dim, start, length)
  local d = tdim0(t, dim)
  local s = pos0(t, d, start, "narrow(): start", true)
  -- (length as an integer first, as start is: 5.0 or "1" skipped the check below, and C
  -- reported the range with a 0-based start; anything but a tensor is C's to report)
  if is_tensor(t) then length = int_arg(length, "narrow()", "length", 2) end
  if is_tensor(t) and C.ag_tensor_ndim(t) > 0 then
    local size = C.ag_tensor_size(t, d)
    if length < 0 then
      raise(C.AG_ERANGE, "autograd: narrow(): length must be non-negative, got " .. length, 2)
    end
    if (s < 0 and s + size or s) > size - length then
      raise(C.AG_ERANGE, string.format("autograd: narrow(): start %d + length %d exceeds the "
            .. "size %d of dim %d", math.tointeger(start), length, size, math.tointeger(dim)), 2)
    end
  end
  return C.ag_narrow(t, d, s, length)
end
function T.select(t, dim, index)
  local d = tdim0(t, dim)
  return C.ag_select(t, d, pos0(t, d, index, "select(): index"))
end
function T.squeeze(t, dim)
  if dim == nil then return C.ag_squeeze(t) end
  return C.ag_squeeze_dim(t, tdim0(t, dim))
end
function T.unsqueeze(t, dim) return C.ag_unsqueeze(t, tdim0(t, dim, 1)) end
function T.flatten(t, s, e) return C.ag_flatten(t, tdim0(t, s or 1), tdim0(t, e or -1)) end
function T.contiguous(t) return C.ag_contiguous(t) end
function T.clone(t) return C.ag_clone(t) end
function T.to(t, dtype) return C.ag_to_dtype(t, dtype_code(dtype)) end
function T.float(t) return C.ag_to_dtype(t, C.AG_FLOAT32) end
function T.double(t) return C.ag_to_dtype(t, C.AG_FLOAT64) end
function T.long(t) return C.ag_to_dtype(t, C.AG_INT64) end
function T.bool(t) return C.ag_to_dtype(t, C.AG_BOOL) end
function T.detach(t) return C.ag_tensor_detach(t) end

-- Indexing and joining (indices 1-based).
function T.index_select(t, dim, index)
  return with_indices(C.ag_index_select, t, tdim0(t, dim), index0(index, "index_select()", "index"))
end
function T.gather(t, dim, index)
  return with_indices(C.ag_gather, t, tdim0(t, dim), index0(index, "gather()", "index"))
end
function T.scatter_add(t, dim, index, src)
  return with_indices(C.ag_scatter_add, t, tdim0(t, dim), index0(index, "scatter_add()", "index"),
                      src)
end
function T.masked_fill(t, mask, value) return C.ag_masked_fill(t, mask, value) end
-- (The dim is checked against the first tensor; C reports an empty list or mismatched ranks.)
local function first(ts) return type(ts) == "table" and ts[1] or nil end
function ag.cat(tensors, dim)
  return with_reworded(one_based_list, C.ag_cat, tensors, tdim0(first(tensors), dim or 1))
end
function ag.stack(tensors, dim)
  return with_reworded(one_based_list, C.ag_stack, tensors, tdim0(first(tensors), dim or 1, 1))
end
-- Pieces of split_size along dim (a table of views).
function T.split(t, split_size, dim)
  local d = tdim0(t, dim or 1)
  return C.ag_split(C.ag_split_count(t, split_size, d), t, split_size, d)
end
function T.chunk(t, chunks, dim)
  local d = tdim0(t, dim or 1)
  return C.ag_chunk(C.ag_chunk_count(t, chunks, d), t, chunks, d)
end

-- Neural-network functions (also in ag.nn.functional).
function T.softmax(t, dim) return C.ag_softmax(t, tdim0(t, dim)) end
function T.log_softmax(t, dim) return C.ag_log_softmax(t, tdim0(t, dim)) end

-- Queries.
function T.item(t)
  local dt = C.ag_tensor_dtype(t)
  if dt == C.AG_INT64 then return C.ag_tensor_item_int64(t) end
  if dt == C.AG_BOOL then return C.ag_tensor_item(t) ~= 0 end
  return C.ag_tensor_item(t)
end
-- The value of a one-element tensor converted to an integer (floats truncate toward zero).
function T.item_int(t) return C.ag_tensor_item_int64(t) end
function T.numel(t) return C.ag_tensor_numel(t) end
function T.dim(t) return C.ag_tensor_ndim(t) end
-- t:size() is the shape (a table); t:size(dim) one size.
function T.size(t, dim)
  if dim == nil then return C.ag_tensor_shape(t) end
  if is_tensor(t) and C.ag_tensor_ndim(t) == 0 then
    raise(C.AG_ERANGE, string.format("autograd: size(): Dimension specified as %s but tensor "
          .. "has no dimensions", tostring(dim)), 2)
  end
  return C.ag_tensor_size(t, tdim0(t, dim))
end
function T.stride(t, dim)
  local s = C.ag_tensor_strides(t)
  if dim == nil then return s end
  if #s == 0 then -- as PyTorch: a 0-d tensor has no stride to name
    raise(C.AG_ERANGE, "autograd: stride(" .. tostring(dim) .. ") of a 0-d tensor", 2)
  end
  local d = tdim0(t, dim)
  return s[d < 0 and d + #s + 1 or d + 1]
end
function T.storage_offset(t) return C.ag_tensor_storage_offset(t) end
function T.is_contiguous(t) return C.ag_tensor_is_contiguous(t) end
function T.shares_storage(a, b) return C.ag_tensor_shares_storage(a, b) end
-- The elements as nested Lua tables (a number for a 0-d tensor): numbers, integers for
-- int64, booleans for bool.
function T.tolist(t)
  local dt = C.ag_tensor_dtype(t)
  local flat
  if dt == C.AG_INT64 then flat = C.ag_tensor_copy_i64(t) else flat = C.ag_tensor_copy_f64(t) end
  if dt == C.AG_BOOL then for i = 1, #flat do flat[i] = flat[i] ~= 0 end end
  local shape = C.ag_tensor_shape(t)
  if #shape == 0 then return flat[1] end
  local pos = 0
  local function build(d)
    local out = {}
    if d == #shape then
      for i = 1, shape[d] do out[i] = flat[pos + i] end
      pos = pos + shape[d]
    else
      for i = 1, shape[d] do out[i] = build(d + 1) end
    end
    return out
  end
  return build(1)
end
-- The elements as a flat Lua table in row-major order.
function T.flat(t)
  local dt = C.ag_tensor_dtype(t)
  if dt == C.AG_INT64 then return C.ag_tensor_copy_i64(t) end
  local flat = C.ag_tensor_copy_f64(t)
  if dt == C.AG_BOOL then for i = 1, #flat do flat[i] = flat[i] ~= 0 end end
  return flat
end

-- Autograd.
local BACKWARD_OPTS, GRAD_OPTS = set("retain_graph", "create_graph"),
    set("grad_outputs", "retain_graph", "create_graph", "allow_unused")
local function grad_flags(o)
  if type(o) ~= "table" then return 0 end
  local f = 0
  if o.retain_graph then f = f | C.AG_RETAIN_GRAPH end
  if o.create_graph then f = f | C.AG_CREATE_GRAPH end
  if o.allow_unused then f = f | C.AG_ALLOW_UNUSED end
  -- create_graph implies retain_graph unless it is false in so many words, as in PyTorch
  if o.create_graph and o.retain_graph == false then f = f | C.AG_FREE_GRAPH end
  return f
end
-- t:backward([grad] [, {retain_graph = ..., create_graph = ...}])
function T.backward(t, grad, opts)
  if type(grad) == "table" and not is_tensor(grad) then grad, opts = nil, grad end
  check_opts(opts, BACKWARD_OPTS, "backward", 2)
  with_reworded(one_based_backward, C.ag_backward, t, grad, grad_flags(opts))
end
function T.retain_grad(t) C.ag_tensor_retain_grad(t); return t end
function T.zero_grad(t) C.ag_tensor_zero_grad(t) end
function T.requires_grad_(t, on)
  C.ag_tensor_set_requires_grad(t, on == nil or on)
  return t
end
-- t:register_hook(function(grad) ... end): the function may return a replacement gradient.
-- Returns a handle with :remove(), which, as PyTorch's, does nothing the second time. The
-- handle holds the tensor: it must reach the hook for as long as the library keeps it, which
-- the collector cannot see (see README: a hook whose closure holds its own handle is a cycle).
-- It holds a reference of its own (ag_lua_retain_tensor), not t: t:release() or a <close>
-- empties t, and removal then failed, after which a second remove() did nothing and the hook
-- stayed. The reference is let go only once removal succeeded, so a failed one can be retried.
function T.register_hook(t, fn)
  if type(fn) ~= "function" then
    raise(C.AG_EINVAL, "autograd: register_hook expects a function, got " .. type(fn), 2)
  end
  local id = C.ag_tensor_register_hook(t, fn)
  local ref = C.ag_lua_retain_tensor(t)
  return {remove = function()
    if ref == nil then return end
    C.ag_tensor_remove_hook(ref, id)
    local r = ref
    ref = nil
    C.ag_lua_release_tensor(r)
  end, id = id}
end

-- ag.grad(outputs, inputs [, opts]): gradients of the outputs (a tensor or a table) with
-- respect to the inputs, without touching .grad. opts: grad_outputs, retain_graph,
-- create_graph, allow_unused. Returns a table with one entry per input (nil where unused),
-- or a single tensor when inputs is a single tensor.
function ag.grad(outputs, inputs, opts)
  opts = opts or {}
  check_opts(opts, GRAD_OPTS, "ag.grad", 2)
  local single = is_tensor(inputs)
  if is_tensor(outputs) then outputs = {outputs} end
  if single then inputs = {inputs} end
  local go = opts.grad_outputs
  if is_tensor(go) then go = {go} end
  local flags = grad_flags(opts)
  if opts.retain_graph == nil and opts.create_graph then flags = flags | C.AG_RETAIN_GRAPH end
  local g = with_reworded(one_based_backward, C.ag_grad,
                          {outputs = outputs, grad_outputs = go, inputs = inputs}, flags)
  if single then return g[1] end
  return g
end

-- Fields.
function getters.grad(t) return C.ag_tensor_grad(t) end
function getters.grad_fn(t) return C.ag_tensor_grad_fn(t) end
function getters.requires_grad(t) return C.ag_tensor_requires_grad(t) end
function getters.is_leaf(t) return C.ag_tensor_is_leaf(t) end
function getters.retains_grad(t) return C.ag_tensor_retains_grad(t) end
function getters.shape(t) return C.ag_tensor_shape(t) end
function getters.dtype(t) return DTYPE_NAME[C.ag_tensor_dtype(t)] end
function getters.ndim(t) return C.ag_tensor_ndim(t) end
function getters.version(t) return C.ag_tensor_version(t) end
function getters.data(t) return C.ag_tensor_detach(t) end
function getters.T(t) return C.ag_t(t) end
function setters.requires_grad(t, v) C.ag_tensor_set_requires_grad(t, v and true or false) end
function setters.grad(t, g) C.ag_tensor_set_grad(t, g) end

------------------------------------------------------------------------------------------
-- The tensor metatable (SWIG's own, extended: no Lua table per tensor)
------------------------------------------------------------------------------------------
TensorMT.__name = "ag.Tensor"
-- t[i] with i a number: an integer (a float with an integral value, as Lua's tables take it,
-- counts as one); any other key that is not a name is refused rather than read as nil.
-- `extra`: levels between the metamethod and its caller (1 under the C __index).
local function index_key(k, extra)
  if mtype(k) == "float" then
    local i = math.tointeger(k)
    if i then return i end
    raise(C.AG_EINVAL, "autograd: a tensor index must be an integer, got " .. tostring(k),
          3 + (extra or 0))
  end
  if mtype(k) or type(k) == "string" then return k end
  raise(C.AG_EINVAL, "autograd: a tensor is indexed by an integer (t[i]), not by a " .. type(k)
        .. " (index_select, gather and masked_fill take index tensors)", 3 + (extra or 0))
end
-- t.k: a method, a getter's value, or t[i]. A C closure (typemaps.i, ag_lua_tensor_index)
-- looks up methods and getters; the rest comes here, called by it (so one level deeper).
TensorMT.__index = C.ag_lua_tensor_index(T, getters, function(t, k)
  k = index_key(k, 1)
  if mtype(k) == "integer" then return C.ag_select(t, 0, pos0(t, 0, k, "index", nil, 1)) end
  return nil
end)
TensorMT.__newindex = function(t, k, v)
  local s = setters[k]
  if s then return s(t, v) end
  k = index_key(k)
  if mtype(k) == "integer" then
    local view = C.ag_select(t, 0, pos0(t, 0, k, "index"))
    if type(v) == "number" or type(v) == "boolean" then
      local big = big_int(v)
      if big then C.ag_copy_(view, big)
      else C.ag_fill_(view, type(v) == "boolean" and (v and 1 or 0) or v) end
    else
      C.ag_copy_(view, v)
    end
    return
  end
  raise(C.AG_EINVAL, "autograd: cannot set field '" .. tostring(k) .. "' of a tensor", 2)
end
TensorMT.__add = add
TensorMT.__sub = sub
TensorMT.__mul = mul
TensorMT.__div = div
TensorMT.__pow = pow
TensorMT.__unm = function(a) return c_neg(a) end -- Lua passes the operand twice
TensorMT.__tostring = C.ag_tensor_to_string
-- t:release() / `local t <close> = ...`: the tensor's reference is dropped now rather than at
-- collection (see typemaps.i); afterwards t is an empty handle that raises if used.
T.release = C.ag_lua_release_tensor
TensorMT.__close = C.ag_lua_release_tensor
TensorMT.__len = function(t)
  if C.ag_tensor_ndim(t) == 0 then raise(C.AG_EINVAL, "autograd: len() of a 0-d tensor", 2) end
  return C.ag_tensor_size(t, 0)
end
-- a == b when both are the same C tensor (SWIG's __eq said so of any two released ones too).
TensorMT.__eq = C.ag_lua_handle_eq

-- Every method is also a function of the module: ag.exp(t), ag.matmul(a, b) ...
for name, fn in pairs(T) do
  if ag[name] == nil then ag[name] = fn end
end

------------------------------------------------------------------------------------------
-- Graph nodes (grad_fn)
------------------------------------------------------------------------------------------
local N = {}
local node_getters = {}
function N.name(n) return C.ag_node_name(n) end
-- next_functions: a table of {node or nil, input_nr} pairs, as PyTorch's tuple of tuples.
function node_getters.next_functions(n)
  local out = {}
  for i = 1, C.ag_node_num_next(n) do
    local fn, nr = C.ag_node_next(n, i - 1)
    out[i] = {fn, nr}
  end
  return out
end
-- For an AccumulateGrad node, the leaf it accumulates into.
function node_getters.variable(n) return C.ag_node_variable(n) end
NodeMT.__name = "ag.Node"
NodeMT.__eq = C.ag_lua_handle_eq
NodeMT.__index = function(n, k)
  local m = N[k]
  if m then return m end
  local g = node_getters[k]
  if g then return g(n) end
  return nil
end
NodeMT.__newindex = function(_, k) raise(C.AG_EINVAL, "autograd: cannot set field '" .. tostring(k) .. "' of a node", 2) end
NodeMT.__tostring = function(n) return "<" .. C.ag_node_name(n) .. ">" end

------------------------------------------------------------------------------------------
-- Custom functions
------------------------------------------------------------------------------------------
-- local Exp = ag.Function{name = "MyExp",
--   forward = function(ctx, x) local y = x:exp(); ctx:save_for_backward(y); return y end,
--   backward = function(ctx, gy) local y = ctx.saved_tensors[1]; return gy * y end}
-- local y = Exp.apply(x)           -- y.grad_fn:name() == "MyExpBackward"
-- forward gets the arguments of apply (tensors and other values) and returns n_outputs
-- tensors (spec.n_outputs, default 1); backward gets one gradient per output and returns one
-- gradient (or nil) per argument of apply. ctx is a table: store anything in it, plus
-- ctx:save_for_backward(...), ctx.saved_tensors and ctx.needs_input_grad (per argument).
local Ctx = {}
local ctx_getters = {}
local CtxMT -- (below)
function Ctx.save_for_backward(ctx, ...)
  -- (ctx.save_for_backward(y), with a dot, saved nothing, silently: y was taken for ctx)
  if getmetatable(ctx) ~= CtxMT then
    raise(C.AG_EINVAL, "autograd: save_for_backward: call it as ctx:save_for_backward(...), "
          .. "with a colon (got " .. describe(ctx) .. " for ctx)", 2)
  end
  for i = 1, select("#", ...) do C.ag_function_ctx_save(rawget(ctx, "_raw"), (select(i, ...))) end
end
function ctx_getters.saved_tensors(ctx)
  local raw = rawget(ctx, "_raw")
  local out = {}
  for i = 1, C.ag_function_ctx_num_saved(raw) do out[i] = C.ag_function_ctx_saved(raw, i - 1) end
  return out
end
function ctx_getters.needs_input_grad(ctx)
  local raw, pos, out = rawget(ctx, "_raw"), rawget(ctx, "_pos"), {}
  for i = 1, rawget(ctx, "_nargs") do out[i] = false end
  for j, p in ipairs(pos) do out[p] = C.ag_function_ctx_needs_input_grad(raw, j - 1) end
  return out
end
CtxMT = {__index = function(ctx, k)
  local m = Ctx[k]
  if m then return m end
  local g = ctx_getters[k]
  if g then return g(ctx) end
  return nil
end}

-- The spec is checked here, where it is given: a wrong one raised an assertion (no status),
-- or was taken wrongly: n_outputs = "2" failed every call with "returned 2 value(s), want
-- 2", and a name with a NUL byte was cut at it (Go's refuses it).
function ag.Function(spec)
  local function bad(msg) raise(C.AG_EINVAL, "autograd: ag.Function: " .. msg, 3) end
  if type(spec) ~= "table" then
    bad("expects a table {name=, forward=function, backward=function [, n_outputs=]}, got "
        .. describe(spec))
  end
  if type(spec.forward) ~= "function" or type(spec.backward) ~= "function" then
    bad(string.format("forward and backward must be functions, got %s and %s",
        describe(spec.forward), describe(spec.backward)))
  end
  local name = spec.name or "CustomFunction"
  if type(name) ~= "string" or name:find("\0", 1, true) then
    bad("name must be a string without NUL bytes, got " .. describe(name))
  end
  local n_outputs = mtype(spec.n_outputs or 1) and math.tointeger(spec.n_outputs or 1)
  if not n_outputs then bad("n_outputs must be an integer, got " .. describe(spec.n_outputs)) end
  local F = {name = name}
  function F.apply(...)
    local args = tpack(...)
    local tensors, pos, is_input = {}, {}, {}
    for i = 1, args.n do
      if is_tensor(args[i]) then
        tensors[#tensors + 1] = args[i]; pos[#pos + 1] = i; is_input[i] = true
      end
    end
    local ctx = setmetatable({_pos = pos, _nargs = args.n}, CtxMT)
    local nargs = args.n
    local cbs = {}
    function cbs.forward(raw)
      ctx._raw = raw
      local a = args
      args = nil -- the graph node keeps this closure: do not keep the inputs alive through it
      local outs = tpack(spec.forward(ctx, tunpack(a, 1, a.n)))
      if outs.n ~= n_outputs then -- (more were dropped, fewer read as missing, silently)
        error(string.format("%s.forward returned %d value(s), want %d (n_outputs in "
              .. "ag.Function{...} says how many)", name, outs.n, n_outputs), 0)
      end
      return tunpack(outs, 1, outs.n)
    end
    function cbs.backward(raw, ...)
      ctx._raw = raw
      local grads = tpack(spec.backward(ctx, ...))
      -- One gradient per argument of forward (nil for those that need none); trailing nils
      -- may be left out. More is an error, as in PyTorch.
      if grads.n > nargs then
        error(string.format("function %sBackward returned an incorrect number of gradients "
              .. "(expected %d, got %d)", name, nargs, grads.n), 0)
      end
      -- A gradient for an argument that is not a tensor has nowhere to go: an error, as in
      -- PyTorch (it was dropped, silently). Positions count the arguments from 1, as
      -- PyTorch's message does.
      for i = 1, grads.n do
        if grads[i] ~= nil and not is_input[i] then
          error(string.format("function %sBackward returned a gradient different than None at "
                .. "position %d, but the corresponding forward input was not a Variable", name,
                i), 0)
        end
      end
      local out = {}
      for j, p in ipairs(pos) do out[j] = grads[p] end
      return tunpack(out, 1, #pos)
    end
    local outs = C.ag_function_apply(n_outputs, tensors, name, cbs)
    return tunpack(outs, 1, n_outputs)
  end
  return setmetatable(F, {__call = function(_, ...) return F.apply(...) end})
end

------------------------------------------------------------------------------------------
-- nn: functional forms and modules
------------------------------------------------------------------------------------------
local nn = {}
ag.nn = nn
local F = {}
nn.functional = F

local REDUCTION = {none = C.AG_REDUCTION_NONE, mean = C.AG_REDUCTION_MEAN, sum = C.AG_REDUCTION_SUM}
local function reduction(r)
  if r == nil then return C.AG_REDUCTION_MEAN end
  local code = REDUCTION[r]
  if not code then raise(C.AG_EINVAL, "autograd: reduction must be 'none', 'mean' or 'sum', got " .. tostring(r), 3) end
  return code
end

F.relu, F.tanh, F.sigmoid, F.silu, F.gelu = T.relu, T.tanh, T.sigmoid, T.silu, T.gelu
F.leaky_relu, F.softplus, F.softmax, F.log_softmax = T.leaky_relu, T.softplus, T.softmax, T.log_softmax
F.linear = ag.linear
-- F.cross_entropy(input, target [, {weight=, reduction="mean", ignore_index=-100,
-- label_smoothing=0}]): target holds 1-based class indices.
local NO_OPTS = setmetatable({}, {__newindex = function() raise(C.AG_EINVAL, "read-only", 2) end})
local CE_OPTS, NLL_OPTS = set("weight", "reduction", "ignore_index", "label_smoothing"),
    set("weight", "reduction", "ignore_index")
local MSE_OPTS, BCE_OPTS = set("reduction"), set("weight", "pos_weight", "reduction")
-- ignore_index (1-based, as the targets; default -100) as C's 0-based one.
local function ignore_index0(o, fn)
  if o.ignore_index == nil then return -101 end
  return int_arg(o.ignore_index, fn, "ignore_index", 3) - 1
end
function F.cross_entropy(input, target, o)
  o = o or NO_OPTS
  check_opts(o, CE_OPTS, "cross_entropy", 2)
  return with_indices(C.ag_cross_entropy, input, index0(target, "cross_entropy()", "target"),
                      o.weight, reduction(o.reduction), ignore_index0(o, "cross_entropy()"),
                      o.label_smoothing or 0)
end
function F.nll_loss(input, target, o)
  o = o or NO_OPTS
  check_opts(o, NLL_OPTS, "nll_loss", 2)
  return with_indices(C.ag_nll_loss, input, index0(target, "nll_loss()", "target"), o.weight,
                      reduction(o.reduction), ignore_index0(o, "nll_loss()"))
end
function F.mse_loss(input, target, o)
  check_opts(o, MSE_OPTS, "mse_loss", 2)
  return C.ag_mse_loss(input, target, reduction(o and o.reduction))
end
function F.binary_cross_entropy_with_logits(input, target, o)
  o = o or NO_OPTS
  check_opts(o, BCE_OPTS, "binary_cross_entropy_with_logits", 2)
  return C.ag_binary_cross_entropy_with_logits(input, target, o.weight, o.pos_weight,
                                               reduction(o.reduction))
end
-- F.dropout(t, p [, training=true [, generator]])
function F.dropout(t, p, training, gen)
  if training == nil then training = true end
  return C.ag_dropout(gen, t, p or 0.5, training)
end
function F.layer_norm(x, normalized_shape, weight, bias, eps)
  if type(normalized_shape) == "number" then normalized_shape = {normalized_shape} end
  return C.ag_layer_norm(x, normalized_shape, weight, bias, eps or 1e-5)
end
-- F.embedding(indices, weight): rows of weight at 1-based indices (torch's argument order).
function F.embedding(indices, weight)
  return with_indices(C.ag_embedding, weight, index0(indices, "embedding()", "indices"))
end
T.cross_entropy = F.cross_entropy
T.nll_loss = F.nll_loss
T.mse_loss = F.mse_loss
T.dropout = F.dropout
ag.cross_entropy, ag.nll_loss, ag.mse_loss = F.cross_entropy, F.nll_loss, F.mse_loss
ag.binary_cross_entropy_with_logits, ag.dropout = F.binary_cross_entropy_with_logits, F.dropout
ag.layer_norm, ag.embedding = F.layer_norm, F.embedding

-- Modules: tables with forward(self, ...) called by module(...), :parameters() (own
-- params, then children's, in the order they were added, each once) and :train()/:eval().
-- As in PyTorch, a field assigned a module (self.fc = nn.Linear(...)) makes it a child, and
-- one assigned a leaf tensor that requires grad makes it a parameter, under that field:
-- replacing or clearing the field later is followed. _params and _children may also be
-- filled by hand.
local Module = {}
Module.__index = Module
nn.Module = Module
function Module.__call(self, ...) return self:forward(...) end

local function is_module(v)
  return type(v) == "table" and rawget(v, "_children") ~= nil and type(v.parameters) == "function"
end

-- The children as {name, module} pairs: the hand-made list (named by position, 1-based, as
-- a Sequential's are indexed), then the fields that hold modules (named by field).
local function named_children(self)
  local out = {}
  for i, m in ipairs(rawget(self, "_children") or {}) do out[#out + 1] = {tostring(i), m} end
  for _, k in ipairs(rawget(self, "_child_keys") or {}) do
    local m = rawget(self, k)
    if is_module(m) then out[#out + 1] = {tostring(k), m} end
  end
  return out
end
local function children(self)
  local out = {}
  for i, c in ipairs(named_children(self)) do out[i] = c[2] end
  return out
end

-- Whether module m is `target` or holds it among its children, at any depth (each module
-- walked once: shared children, and a cycle made by hand, end the walk).
local function contains(m, target)
  local seen = {}
  local function walk(x)
    if rawequal(x, target) then return true end
    if seen[x] then return false end
    seen[x] = true
    for _, c in ipairs(children(x)) do
      if walk(c) then return true end
    end
    return false
  end
  return walk(m)
end

-- The walks over a module's children (parameters, train, printing) refuse a cycle: a module
-- among its own descendants made every walk overflow the stack (s:add(s), m.child = m). The
-- ways of making one that the layer sees are refused when they happen (Sequential.add,
-- assigning a module field); these catch the rest (a field reassigned, _children filled by
-- hand). `path` is the chain of child names from the module walked first.
local function cycle_error(what, path)
  raise(C.AG_EINVAL, string.format("autograd: %s: a module contains itself (through child %s): "
        .. "modules must not form a cycle", what, table.concat(path, ".")), 3)
end

-- m, then its descendants depth first, each once (a module shared by two parents is walked
-- the first time): visit(m) for each; a child whose class replaces `method` (parameters,
-- train) is handed to visit(child, true) and not walked into. Returns nil, or the path to
-- the module that contains itself.
local function walk_modules(root, method, visit)
  local done, on_path, names = {}, {}, {}
  local function walk(m)
    on_path[m] = true
    visit(m, false)
    for _, c in ipairs(named_children(m)) do
      local child = c[2]
      names[#names + 1] = "(" .. c[1] .. ")"
      if on_path[child] then return names end
      if child[method] ~= Module[method] then
        if not done[child] then done[child] = true; visit(child, true) end
      elseif not done[child] then
        local cyc = walk(child)
        if cyc then return cyc end
      end
      names[#names] = nil
    end
    on_path[m] = nil
    done[m] = true
    return nil
  end
  return walk(root)
end

function Module:parameters()
  local out, seen = {}, {}
  local function add(p)
    if p ~= nil and not seen[p] then
      seen[p] = true
      out[#out + 1] = p
    end
  end
  local cyc = walk_modules(self, "parameters", function(m, custom)
    if custom then
      for _, p in ipairs(m:parameters()) do add(p) end
      return
    end
    for _, p in ipairs(m._params or {}) do add(p) end
    for _, k in ipairs(rawget(m, "_param_keys") or {}) do
      local p = rawget(m, k)
      if is_tensor(p) then add(p) end
    end
  end)
  if cyc then cycle_error("parameters()", cyc) end
  return out
end
function Module:train(mode)
  if mode == nil then mode = true end
  local cyc = walk_modules(self, "train", function(m, custom)
    if custom then m:train(mode) else m.training = mode end
  end)
  if cyc then cycle_error(mode and "train()" or "eval()", cyc) end
  return self
end

-- __newindex of module instances (a field assigned for the first time): registers a module
-- or a parameter under the field, as PyTorch's Module.__setattr__.
local function module_newindex(self, k, v)
  if is_module(v) then
    if contains(v, self) then
      raise(C.AG_EINVAL, string.format("autograd: nn: field %s cannot hold a module that "
            .. "contains this one (modules must not form a cycle)", describe(k)), 2)
    end
    local keys = rawget(self, "_child_keys")
    keys[#keys + 1] = k
  elseif is_tensor(v) and C.ag_tensor_requires_grad(v) and C.ag_tensor_is_leaf(v) then
    local keys = rawget(self, "_param_keys")
    keys[#keys + 1] = k
  end
  rawset(self, k, v)
end
function Module:eval() return self:train(false) end
-- m:zero_grad([set_to_none]): as PyTorch 1.13's, zeroes each .grad in place by default, or
-- drops it with set_to_none = true.
function Module:zero_grad(set_to_none)
  for _, p in ipairs(self:parameters()) do
    if set_to_none then C.ag_tensor_set_grad(p, nil) else C.ag_tensor_zero_grad(p) end
  end
end

-- How PyTorch's Module.__repr__ prints a module: name(extra) on one line when repr(module)
-- (PyTorch's extra_repr) is one line and there are no children, else one line each for the
-- lines of extra and for the children, "(name): child", indented by two, each child printed
-- the same way:
--   Sequential(
--     (1): Linear(in_features=3, out_features=2, bias=True)
--     (2): ReLU()
--   )
-- A Sequential's children are numbered from 1, as seq[i] indexes them (PyTorch's from 0, as
-- its seq[i] does): the number names the module to a Lua user.
-- The modules being printed, outermost first: one met again inside itself is a cycle (see
-- walk_modules), refused rather than printed until the C stack overflows. Raised without a
-- position, as it comes from deep inside tostring.
local printing = {}
local function module_repr(self, name, repr)
  if printing[self] then
    raise(C.AG_EINVAL, "autograd: tostring(): a module contains itself: modules must not form "
          .. "a cycle", -1)
  end
  printing[self] = true
  local _ <close> = setmetatable({}, {__close = function() printing[self] = nil end})
  local lines, extra = {}, repr and repr(self) or ""
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  end
  local n_extra = #lines
  for _, c in ipairs(named_children(self)) do
    lines[#lines + 1] = "(" .. c[1] .. "): " .. (tostring(c[2]):gsub("\n", "\n  "))
  end
  if #lines == 0 then return name .. "()" end
  if n_extra == 1 and #lines == 1 then return name .. "(" .. lines[1] .. ")" end
  return name .. "(\n  " .. table.concat(lines, "\n  ") .. "\n)"
end

-- nn.class(name, forward [, init [, repr]]): a module class. tostring(module) prints it as
-- PyTorch prints modules (module_repr), repr(module) being PyTorch's extra_repr (none: "").
local function class(name, forward, init, repr)
  local cls = setmetatable({}, {__index = Module})
  cls.__index = cls
  cls.__call = forward or Module.__call -- module(x) calls forward directly
  cls.__name = name
  cls.__tostring = function(self) return module_repr(self, name, repr) end
  cls.forward = forward
  cls.__newindex = module_newindex
  return setmetatable(cls, {__index = Module, __call = function(_, ...)
    local self = setmetatable({training = true, _params = {}, _children = {}, _param_keys = {},
                               _child_keys = {}}, cls)
    if init then init(self, ...) end
    return self
  end})
end
nn.class = class

-- nn.Linear(in_features, out_features [, generator | {bias = true, generator = g,
-- dtype = "float32"}]): y = x W^T + b, initialised as torch.nn.Linear: weight, then bias,
-- uniform in +-1/sqrt(in_features), drawn with ag_rand from the generator (the thread's
-- default one when none is given).
-- A module constructor's options: a generator alone, or a table of the names in `allowed`.
local function module_opts(o, allowed, what)
  if getmetatable(o) == GenMT then return {generator = o} end
  if o ~= nil and type(o) ~= "table" then
    raise(C.AG_EINVAL, string.format("autograd: %s takes %sa table of options, got %s", what,
          allowed.generator and "a generator or " or "", type(o)), 4)
  end
  check_opts(o, allowed, what, 4)
  return o or {}
end

-- A size argument of a module constructor: an integer >= 0.
local function module_size(v, what, name)
  local i = mtype(v) and math.tointeger(v)
  if i == nil or i < 0 then
    raise(C.AG_EINVAL, string.format("autograd: %s: %s must be an integer >= 0, got %s", what,
          name, tostring(v)), 4)
  end
  return i
end

local LINEAR_OPTS = set("bias", "generator", "dtype")
nn.Linear = class("Linear", function(self, x) return C.ag_linear(x, self.weight, self.bias) end,
  function(self, n_in, n_out, o)
    local opts = module_opts(o, LINEAR_OPTS, "nn.Linear")
    n_in = module_size(n_in, "nn.Linear", "in_features")
    n_out = module_size(n_out, "nn.Linear", "out_features")
    local gen, dt = opts.generator, dtype_code(opts.dtype, C.AG_FLOAT32)
    -- (PyTorch: bound 0 when in_features is 0, so the bias is zeros, not +-inf)
    local bound = n_in > 0 and 1 / math.sqrt(n_in) or 0
    local function uniform(shape)
      local u = C.ag_rand(gen, dt, shape)
      -- (still drawn when the bound is 0, as PyTorch draws; u * 0 gives +0 where (u - 0.5) * 0
      -- would give -0 below the middle)
      local p = bound > 0 and c_muls(c_subs(u, 0.5), 2 * bound) or c_muls(u, 0)
      C.ag_tensor_set_requires_grad(p, true)
      return p
    end
    self.in_features, self.out_features = n_in, n_out
    self.weight = uniform({n_out, n_in}) -- (fields that register as parameters, in this order)
    if opts.bias ~= false then self.bias = uniform({n_out}) end
  end,
  function(self)
    return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features,
                         self.out_features, self.bias ~= nil and "True" or "False")
  end)

-- nn.Embedding(num_embeddings, embedding_dim [, generator | {generator = g,
-- dtype = "float32"}]): a lookup table, initialised as torch.nn.Embedding: N(0, 1), drawn with
-- ag_randn from the generator (the thread's default one when none is given). m(indices) gives
-- the weight's rows at 1-based indices (a tensor or a table of any shape) with the indices'
-- shape followed by embedding_dim. PyTorch's padding_idx, max_norm and sparse are not
-- supported.
local EMBEDDING_OPTS = set("generator", "dtype")
nn.Embedding = class("Embedding", function(self, idx) return F.embedding(idx, self.weight) end,
  function(self, num, dim, o)
    local opts = module_opts(o, EMBEDDING_OPTS, "nn.Embedding")
    num = module_size(num, "nn.Embedding", "num_embeddings")
    dim = module_size(dim, "nn.Embedding", "embedding_dim")
    local w = C.ag_randn(opts.generator, dtype_code(opts.dtype, C.AG_FLOAT32), {num, dim})
    C.ag_tensor_set_requires_grad(w, true)
    self.num_embeddings, self.embedding_dim = num, dim
    self.weight = w
  end,
  function(self) return string.format("%d, %d", self.num_embeddings, self.embedding_dim) end)

-- nn.LayerNorm(normalized_shape [, {eps = 1e-5, elementwise_affine = true, bias = true,
-- dtype = "float32"}]): torch.nn.LayerNorm over the last dimensions of its input, which must
-- equal normalized_shape (a size or a table of sizes). With elementwise_affine, weight (ones)
-- and bias (zeros, unless bias = false, as in PyTorch 2.1) of that shape are parameters.
-- x as Python's repr prints a float: the shortest digits that read back as x, positional
-- for exponents -4 to 15 (0.1, 20.0, 100000.0), else in exponent form (1e-05, 1e+16). (%g
-- switches by the digit count instead: 20.0 came out as 2e+01.)
local function py_float(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" elseif x == -math.huge then return "-inf" end
  local str
  for p = 0, 16 do
    str = string.format("%." .. p .. "e", x)
    if tonumber(str) == x then break end
  end
  local sign, mant, exp = str:match("^(%-?)([%d%.]+)e([-+]%d+)$")
  exp = math.tointeger(tonumber(exp))
  if exp < -4 or exp >= 16 then
    return string.format("%s%se%s%02d", sign, mant, exp < 0 and "-" or "+", math.abs(exp))
  end
  local digits = mant:gsub("%.", "")
  if exp < 0 then return sign .. "0." .. string.rep("0", -exp - 1) .. digits end
  if #digits <= exp + 1 then return sign .. digits .. string.rep("0", exp + 1 - #digits) .. ".0" end
  return sign .. digits:sub(1, exp + 1) .. "." .. digits:sub(exp + 2)
end
-- A Lua number as Python prints the argument it stands for: an integer as an int, a float as
-- a float (nn.Softplus() prints beta=1, nn.Softplus(0.5) beta=0.5, as torch's).
local function py_num(x)
  if mtype(x) == "integer" then return tostring(x) end
  if mtype(x) == "float" then return py_float(x) end
  return tostring(x)
end

local LAYER_NORM_OPTS = set("eps", "elementwise_affine", "bias", "dtype")
nn.LayerNorm = class("LayerNorm", function(self, x)
    return C.ag_layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
  end,
  function(self, shape, o)
    local opts = module_opts(o, LAYER_NORM_OPTS, "nn.LayerNorm")
    if type(shape) ~= "table" then shape = {shape} end
    local copy = {}
    for i = 1, #shape do
      copy[i] = module_size(shape[i], "nn.LayerNorm", "normalized_shape[" .. i .. "]")
    end
    local eps = opts.eps == nil and 1e-5 or opts.eps
    if mtype(eps) == nil then
      raise(C.AG_EINVAL, "autograd: nn.LayerNorm: eps must be a number, got " .. type(eps), 3)
    end
    self.normalized_shape, self.eps = copy, eps
    self.elementwise_affine = opts.elementwise_affine ~= false
    if self.elementwise_affine then
      local dt = dtype_code(opts.dtype, C.AG_FLOAT32)
      local w = C.ag_ones(dt, copy)
      C.ag_tensor_set_requires_grad(w, true)
      self.weight = w
      if opts.bias ~= false then
        local b = C.ag_zeros(dt, copy)
        C.ag_tensor_set_requires_grad(b, true)
        self.bias = b
      end
    end
  end,
  function(self)
    local dims = {}
    for i, d in ipairs(self.normalized_shape) do dims[i] = tostring(d) end
    local shape = #dims == 1 and "(" .. dims[1] .. ",)" or "(" .. table.concat(dims, ", ") .. ")"
    return string.format("%s, eps=%s, elementwise_affine=%s", shape, py_float(self.eps),
                         self.elementwise_affine and "True" or "False")
  end)

-- nn.Sequential(m1, m2, ...). Each entry must be a module, and (added later) must not contain
-- the Sequential: a number was taken and failed only at forward ("attempt to call a number
-- value"), and s:add(s) made a cycle that overflowed the stack of every walk, as Go's Append
-- refuses both. `level`: raise's, from the caller of seq_entry.
local function seq_entry(self, m, i, what, level)
  if not is_module(m) then
    raise(C.AG_EINVAL, string.format("autograd: %s: module %d is not a module (got %s)", what,
          i, describe(m)), level + 1)
  end
  if contains(m, self) then
    raise(C.AG_EINVAL, string.format("autograd: %s: module %d contains the Sequential itself "
          .. "(modules must not form a cycle)", what, i), level + 1)
  end
end
nn.Sequential = class("Sequential", function(self, x)
    local children = self._children
    for i = 1, #children do x = children[i](x) end
    return x
  end,
  function(self, ...)
    for i = 1, select("#", ...) do
      local m = (select(i, ...))
      seq_entry(self, m, i, "nn.Sequential", 3)
      self._children[i] = m
    end
  end)
function nn.Sequential.add(self, m)
  seq_entry(self, m, #self._children + 1, "nn.Sequential.add", 2)
  self._children[#self._children + 1] = m
  return self
end
-- seq[i] is its i-th module (1-based, as torch's seq[i - 1]); #seq counts them.
do
  local Seq = nn.Sequential
  Seq.__index = function(self, k)
    local i = mtype(k) and math.tointeger(k)
    if i then return rawget(self, "_children")[i] end
    return Seq[k]
  end
  Seq.__len = function(self) return #rawget(self, "_children") end
end

nn.ReLU = class("ReLU", function(_, x) return C.ag_relu(x) end)
nn.Tanh = class("Tanh", function(_, x) return C.ag_tanh(x) end)
nn.Sigmoid = class("Sigmoid", function(_, x) return C.ag_sigmoid(x) end)
nn.SiLU = class("SiLU", function(_, x) return C.ag_silu(x) end)
nn.Identity = class("Identity", function(_, x) return x end)
-- (The modules print their arguments as PyTorch's extra_repr does. Dims print as the Lua
-- user gave them, 1-based: nn.Softmax(2) prints Softmax(dim=2) and nn.Flatten()
-- Flatten(start_dim=2, end_dim=-1), which are what rebuild the module here, where PyTorch's
-- torch.nn.Softmax(dim=1) and Flatten(start_dim=1) name the same dims 0-based.)
-- nn.GELU([approximate]): "none" (or nil, false) or "tanh" (or true); anything else is an
-- error here already, where PyTorch's raises on the first forward.
nn.GELU = class("GELU", function(self, x) return T.gelu(x, self.approximate) end,
  function(self, approximate)
    self.approximate = gelu_approx(approximate, 3) == 1 and "tanh" or "none"
  end,
  function(self) return "approximate='" .. self.approximate .. "'" end)
nn.LeakyReLU = class("LeakyReLU", function(self, x) return C.ag_leaky_relu(x, self.slope) end,
  function(self, slope) self.slope = slope or 0.01 end,
  function(self) return "negative_slope=" .. py_num(self.slope) end)
nn.Softplus = class("Softplus", function(self, x) return C.ag_softplus(x, self.beta, self.threshold) end,
  function(self, beta, threshold) self.beta, self.threshold = beta or 1, threshold or 20 end,
  function(self)
    return "beta=" .. py_num(self.beta) .. ", threshold=" .. py_num(self.threshold)
  end)
nn.Softmax = class("Softmax", function(self, x) return T.softmax(x, self.dim) end,
  function(self, dim) self.dim = dim or -1 end,
  function(self) return "dim=" .. py_num(self.dim) end)
nn.LogSoftmax = class("LogSoftmax", function(self, x) return T.log_softmax(x, self.dim) end,
  function(self, dim) self.dim = dim or -1 end,
  function(self) return "dim=" .. py_num(self.dim) end)
nn.Flatten = class("Flatten", function(self, x) return T.flatten(x, self.s, self.e) end,
  function(self, s, e) self.s, self.e = s or 2, e or -1 end,
  function(self) return "start_dim=" .. py_num(self.s) .. ", end_dim=" .. py_num(self.e) end)
nn.Dropout = class("Dropout", function(self, x) return C.ag_dropout(self.generator, x, self.p, self.training) end,
  function(self, p, gen) self.p, self.generator = p or 0.5, gen end,
  function(self) return "p=" .. py_num(self.p) .. ", inplace=False" end)

------------------------------------------------------------------------------------------
-- Optimizers
------------------------------------------------------------------------------------------
-- ag.optim.SGD(params, {lr=, momentum=0, dampening=0, weight_decay=0, nesterov=false})
-- ag.optim.Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0, amsgrad=false})
-- ag.optim.AdamW(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=1e-2, amsgrad=false})
-- params: a table of tensors or a module. opt:step(), opt:zero_grad([set_to_none=false]),
-- opt.lr (read and write), opt:get_lr(), opt:set_lr(lr).
local optim = {}
ag.optim = optim
local function param_list(p)
  if type(p) == "table" and type(p.parameters) == "function" then return p:parameters() end
  if type(p) ~= "table" or is_tensor(p) then
    raise(C.AG_EINVAL, "autograd: an optimizer takes a table of tensors or a module, got a "
          .. (is_tensor(p) and "tensor (wrap it: {t})" or type(p)), 3)
  end
  return p
end
local SGD_OPTS = set("lr", "momentum", "dampening", "weight_decay", "nesterov")
local ADAM_OPTS = set("lr", "betas", "eps", "weight_decay", "amsgrad")
function optim.SGD(params, o)
  o = o or {}
  check_opts(o, SGD_OPTS, "optim.SGD", 2)
  if o.lr == nil then raise(C.AG_EINVAL, "autograd: optim.SGD needs a learning rate (lr)", 2) end
  return with_params(C.ag_optimizer_sgd, param_list(params), o.lr, o.momentum or 0,
                     o.dampening or 0, o.weight_decay or 0, o.nesterov or false)
end
local function adam(cfn, default_wd, name)
  return function(params, o)
    o = o or {}
    check_opts(o, ADAM_OPTS, name, 2)
    local betas = o.betas or {0.9, 0.999}
    if type(betas) ~= "table" or mtype(betas[1]) == nil or mtype(betas[2]) == nil or #betas ~= 2 then
      raise(C.AG_EINVAL, "autograd: betas must be a table of two numbers, as {0.9, 0.999}", 2)
    end
    return with_params(cfn, param_list(params), o.lr or 1e-3, betas[1], betas[2],
                       o.eps or 1e-8, o.weight_decay or default_wd, o.amsgrad or false)
  end
end
optim.Adam = adam(C.ag_optimizer_adam, 0, "optim.Adam")
optim.AdamW = adam(C.ag_optimizer_adamw, 1e-2, "optim.AdamW")

local O = {}
function O.step(opt) with_params(C.ag_optimizer_step, opt) end
function O.zero_grad(opt, set_to_none) C.ag_optimizer_zero_grad(opt, set_to_none or false) end
function O.get_lr(opt) return C.ag_optimizer_get_lr(opt) end
function O.set_lr(opt, lr) C.ag_optimizer_set_lr(opt, lr) end
OptimMT.__name = "ag.Optimizer"
OptimMT.__eq = C.ag_lua_handle_eq
OptimMT.__index = function(opt, k)
  if k == "lr" then return C.ag_optimizer_get_lr(opt) end
  return O[k]
end
OptimMT.__newindex = function(opt, k, v)
  if k == "lr" then return C.ag_optimizer_set_lr(opt, v) end
  raise(C.AG_EINVAL, "autograd: cannot set field '" .. tostring(k) .. "' of an optimizer", 2)
end
OptimMT.__tostring = function(opt) return string.format("<optimizer lr=%g>", C.ag_optimizer_get_lr(opt)) end

return ag
