-- Errors: every failing status becomes a Lua error carrying the library's message (read in the
-- wrapper right after the failing call), catchable by pcall; ag.last_status() names it; wrong
-- argument types are errors too, never crashes.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")

local a, b = ag.ones(2, 3), ag.ones(4, 5)
local err = H.raises(function() return a:matmul(b) end,
                     "ag_matmul: shapes [2, 3] and [4, 5] cannot be multiplied")
H.eq(ag.last_status(), "AG_ESHAPE")
H.eq(err, ag.last_error(), "the Lua error is exactly ag_last_error()")

H.raises(function() return a + ag.ones(2) end, "cannot be broadcast")
H.eq(ag.last_status(), "AG_ESHAPE")
H.raises(function() ag.tensor({1, 2}).requires_grad = true end,
         "only Tensors of floating point dtype can require gradients")
H.eq(ag.last_status(), "AG_EDTYPE")
H.raises(function() (ag.ones(2, {requires_grad = true}) * 2).requires_grad = false end,
         "you can only change requires_grad flags of leaf variables")
H.eq(ag.last_status(), "AG_ELEAF")
H.raises(function() ag.ones(2):backward() end, "does not require grad")
H.eq(ag.last_status(), "AG_ENOGRAD")
H.raises(function() ag.ones(2, {requires_grad = true}):sum():backward(ag.ones(3)) end, "ag_backward")
H.raises(function() ag.optim.SGD({ag.ones(2, {requires_grad = true})}, {lr = -1}) end,
         "Invalid learning rate: -1")
H.eq(ag.last_status(), "AG_EINVAL")
H.raises(function() ag.ones(2, {requires_grad = true}):add_(1) end,
         "a leaf Variable that requires grad is being used in an in-place operation")
H.eq(ag.last_status(), "AG_ELEAF")

-- A graph used twice without retain_graph.
local x = ag.tensor(2.0, {requires_grad = true})
local y = x * x
y:backward()
H.raises(function() y:backward() end, "Trying to backward through the graph a second time")
H.eq(ag.last_status(), "AG_EGRAPH")
local y2 = x * x
y2:backward({retain_graph = true})
y2:backward()
H.eq(x.grad:item(), 12.0, "retain_graph keeps the graph: 4 + 4 + 4")

-- Modified in place after being saved.
local p = ag.tensor({1.0, 2.0}, {requires_grad = true})
local q = p * 1
local r = q * q
q:mul_(2)
H.raises(function() r:sum():backward() end, "modified by an inplace operation")
H.eq(ag.last_status(), "AG_EVERSION")

-- Failures change nothing: a failing call returns nothing and leaves .grad as it was.
local g = ag.tensor({1.0}, {requires_grad = true})
local ok, res = pcall(ag.matmul, g, b)
H.check(not ok and type(res) == "string", "pcall returns false and the message")
H.eq(g.grad, nil)

-- Wrong Lua types: errors from the wrapper, not crashes. Each also sets the status and
-- message ag.last_status() / ag.last_error() report, as the library's own errors do (they
-- kept whatever failed before).
local function raises_status(status, fn, plain)
  ag.clear_error()
  local e = H.raises(fn, plain)
  H.eq(ag.last_status(), status, "status after: " .. plain)
  H.check(type(e) == "string" and e:find(ag.last_error(), 1, true) ~= nil,
          "ag.last_error() is the raised message: " .. plain)
end
raises_status("AG_EINVAL", function() return ag.exp(3) end, "ag_exp")
raises_status("AG_EINVAL", function() return a + "x" end, "")
raises_status("AG_EINVAL", function() return a:sum("x") end, "dim must be an integer")
raises_status("AG_ERANGE", function() return a:sum(0) end, "dim 0 is invalid")
raises_status("AG_EINVAL", function() return a:reshape(2.5, 2) end, "element 1 is not an integer")
raises_status("AG_EINVAL", function() return ag.cat({a, 3}) end, "element 2 is not a tensor")
raises_status("AG_EINVAL", function() return ag.cat(a) end, "ag_cat")
raises_status("AG_EINVAL", function() return ag.tensor({1.0, 2.0}, {3}) end,
              "2 values given for a shape of 3 elements")
raises_status("AG_EINVAL", function() return ag.tensor({"a"}) end, "must be numbers or booleans")
raises_status("AG_EDTYPE", function() return ag.zeros(2, {dtype = "half"}) end, "unknown dtype")
raises_status("AG_EINVAL", function() a.shape = 3 end, "cannot set field")
raises_status("AG_EINVAL", function() return ag.exp(nil) end, "ag_exp")
raises_status("AG_EINVAL", function() return ag.exp() end, "ag_exp")

-- Messages name what the caller called, and point at the caller's line.
local i64 = ag.tensor({1, 2, 3})
raises_status("AG_EDTYPE", function() i64:sub_(2.5) end, "ag_sub_: result type float32")
local here = debug.getinfo(1, "l").currentline
local _, msg = pcall(function() local t = ag.tensor({{1, 2}, {3}}) return t end)
H.check(msg:find("test_errors.lua:" .. (here + 1) .. ": autograd: ragged nested table", 1, true),
        "a ragged table is reported at the caller's line: " .. msg)
local gone = ag.tensor({1.0, 2.0})
gone:release()
raises_status("AG_EINVAL", function() return gone.shape end, "no longer valid (released)")
local w = ag.tensor({1.0}, {requires_grad = true})
raises_status("AG_EINVAL", function() ag.optim.Adam({w}, {betas = {0.9}}) end,
              "betas must be a table of two numbers")
raises_status("AG_EINVAL", function() w:register_hook(nil) end, "register_hook expects a function, got nil")
-- Keys: an integral float is an integer (as in Lua's tables); anything else that is not a
-- name is refused rather than read as nil.
local v = ag.tensor({10, 20, 30})
H.eq(v[2.0]:item(), 20)
v[3.0] = 7
H.eq(v[3]:item(), 7)
raises_status("AG_EINVAL", function() return v[1.5] end, "a tensor index must be an integer, got 1.5")
raises_status("AG_EINVAL", function() return v[ag.tensor({1, 0, 1})] end, "not by a userdata")
raises_status("AG_EINVAL", function() return v[true] end, "not by a boolean")
H.eq(v.no_such_field, nil, "an unknown name reads as nil, as a missing method")
-- Misspelt options are refused, naming the option and those that exist (they were ignored:
-- Adam trained at the default rate, cross_entropy applied no smoothing).
raises_status("AG_EINVAL", function() ag.optim.Adam({w}, {learning_rate = 0.5}) end,
              "optim.Adam got an unexpected option 'learning_rate' (it takes amsgrad, betas, eps, lr, weight_decay)")
raises_status("AG_EINVAL", function() ag.optim.SGD({w}, {lr = 0.1, momentun = 0.9}) end,
              "optim.SGD got an unexpected option 'momentun'")
raises_status("AG_EINVAL", function()
  ag.nn.functional.cross_entropy(ag.zeros(2, 3), ag.tensor({1, 2}), {label_smothing = 0.5})
end, "cross_entropy got an unexpected option 'label_smothing'")
raises_status("AG_EINVAL", function() (w * 2):sum():backward({retain_grahp = true}) end,
              "backward got an unexpected option 'retain_grahp'")
raises_status("AG_EINVAL", function() ag.zeros(2, {dtyp = "float64"}) end,
              "unexpected option 'dtyp'")
raises_status("AG_EINVAL", function() ag.tensor(2.0, {requires_gard = true}) end,
              "ag.tensor got an unexpected option 'requires_gard'")
raises_status("AG_EINVAL", function() ag.optim.AdamW(w) end,
              "an optimizer takes a table of tensors or a module, got a tensor (wrap it: {t})")
H.eq(ag.tensor({1, 2}, nil, "float64").dtype, "float64", "a dtype after a nil shape")
raises_status("AG_EINVAL", function() return w + nil end,
              "ag_add: argument 2: expected ag_tensor, got nil")
H.eq(ag.tensor(2.0, {requires_grad = true}).requires_grad, true, "the fast path still takes it")

-- Booleans are 1 and 0, as torch's x.eq(True) and x.fill_(True).
H.eq(ag.tensor({1.0, 0.0, 1.0}):eq(true):sum():item(), 2)
H.eq(ag.tensor({5, 6}):fill_(true):sum():item(), 2)

-- Positions in lists and dimensions are 1-based in the messages, as the caller counts them.
local s2, s3 = ag.ones(2), ag.ones(3)
H.raises(function() return ag.cat({s2, ag.tensor(1.0)}) end,
         "zero-dimensional tensor (at position 2) cannot be concatenated")
H.raises(function() return ag.cat({ag.ones(2, 3), ag.ones(2, 3), ag.ones(4, 5)}, 1) end,
         "Sizes of tensors must match except in dimension 1. Expected size 3 but got size 5 "
         .. "for tensor number 3 in the list.")
H.raises(function() return ag.stack({s2, s2, s3}) end,
         "stack expects each tensor to be equal size, but got [2] at entry 1 and [3] at entry 3")
H.raises(function() return ag.zeros(2, -1) end,
         "Trying to create tensor with negative dimension -1: [2, -1]")
local Wrong = ag.Function{name = "Wrong", forward = function(_, p, q) return p * q end,
                          backward = function(_, g) return g, ag.ones(5) end}
local p = ag.ones(2, {requires_grad = true})
local q = ag.ones(2, {requires_grad = true})
H.raises(function() Wrong(p, q):sum():backward() end,
         "returned an invalid gradient at index 2 - got [5] but expected shape compatible with [2]")
H.raises(function() ag.grad(p * 2, p, {grad_outputs = ag.ones(3)}) end,
         "grad_output[1] has a shape of [3] and output[1] has a shape of [2]")

-- A released tensor where a tensor is optional (nil: none) raises, naming the function; it
-- is not taken for nil (a linear without its bias, a backward with the implicit gradient).
local function dead() local d = ag.tensor({1.0, 2.0}); d:release(); return d end
local xr = ag.tensor({{1.0, 2.0}, {3.0, 4.0}}, {requires_grad = true})
local wr = ag.tensor({{1.0, 0.0}, {0.0, 1.0}})
local F = ag.nn.functional
raises_status("AG_EINVAL", function() return F.linear(xr, wr, dead()) end,
              "ag_linear: argument 3: this ag_tensor is no longer valid (released")
H.eq(F.linear(xr, wr, nil):tolist(), {{1.0, 2.0}, {3.0, 4.0}}, "a nil bias is none")
raises_status("AG_EINVAL", function() return F.layer_norm(xr, 2, dead()) end,
              "ag_layer_norm: argument 3: this ag_tensor is no longer valid")
raises_status("AG_EINVAL", function() return F.layer_norm(xr, 2, nil, dead()) end,
              "ag_layer_norm: argument 4: this ag_tensor is no longer valid")
local classes = ag.tensor({1, 2})
raises_status("AG_EINVAL", function() return F.cross_entropy(xr, classes, {weight = dead()}) end,
              "ag_cross_entropy: argument 3: this ag_tensor is no longer valid")
raises_status("AG_EINVAL", function() return F.nll_loss(xr, classes, {weight = dead()}) end,
              "ag_nll_loss: argument 3: this ag_tensor is no longer valid")
raises_status("AG_EINVAL", function()
  return F.binary_cross_entropy_with_logits(xr, wr, {pos_weight = dead()})
end, "ag_binary_cross_entropy_with_logits: argument 4: this ag_tensor is no longer valid")
local yr = xr:sum()
raises_status("AG_EINVAL", function() yr:backward(dead()) end,
              "ag_backward: argument 2: this ag_tensor is no longer valid")
H.eq(xr.grad, nil, "a refused backward wrote no .grad")
raises_status("AG_EINVAL", function() return ag.grad(yr, xr, {grad_outputs = {dead()}}) end,
              "ag_grad: grad_outputs: element 1: this ag_tensor is no longer valid (released)")
yr:backward() -- the graph is whole: nothing ran
raises_status("AG_EINVAL", function() xr.grad = dead() end,
              "ag_tensor_set_grad: argument 2: this ag_tensor is no longer valid")
H.eq(xr.grad:tolist(), {{1.0, 1.0}, {1.0, 1.0}}, "a refused .grad = kept .grad (not set to none)")
xr.grad = nil
H.eq(xr.grad, nil, ".grad = nil still drops it")

-- C int (and unsigned, size_t) parameters refuse a Lua integer they cannot hold, naming the
-- function and the value: it was cast (set_num_threads(2^32 + 2) set 2 threads).
do
  local threads = ag.get_num_threads()
  raises_status("AG_EINVAL", function() ag.set_num_threads(2 ^ 32 + 2) end,
                "ag_set_num_threads: argument 1: 4294967298 is out of range for a C int "
                .. "(-2147483648 to 2147483647)")
  raises_status("AG_EINVAL", function() ag.set_num_threads(-2 ^ 31 - 1) end,
                "ag_set_num_threads: argument 1: -2147483649 is out of range for a C int")
  H.eq(ag.get_num_threads(), threads, "a refused count changed nothing")
  raises_status("AG_EINVAL", function() ag.core.ag_gelu(a, 2 ^ 32) end,
                "ag_gelu: argument 2: 4294967296 is out of range for a C int")
  raises_status("AG_EINVAL", function() ag.core.ag_zeros(2 ^ 32 + 1, {2}) end,
                "ag_zeros: argument 1: 4294967297 is out of range for a C int")
  raises_status("AG_EINVAL", function() ag.core.ag_backward(a, nil, 2 ^ 32) end,
                "ag_backward: argument 3: 4294967296 is out of range for a C unsigned int")
  raises_status("AG_EINVAL", function() ag.core.ag_backward(a, nil, -1) end,
                "ag_backward: argument 3: -1 is out of range for a C unsigned int")
  local node = (ag.ones(1, {requires_grad = true}) * 2).grad_fn
  raises_status("AG_EINVAL", function() ag.core.ag_node_next(node, -1) end,
                "ag_node_next: argument 2: -1 is out of range for a C size_t")
  raises_status("AG_EINVAL", function() ag.set_num_threads(2.5) end,
                "ag_set_num_threads: argument 1: expected an integer, got 2.5 (not integral)")
  raises_status("AG_EINVAL", function() ag.set_num_threads(2 ^ 63) end,
                "expected an integer, got 9.2233720368548e+18 (beyond the 64-bit integers)")
  ag.set_num_threads(threads)
  H.eq(ag.get_num_threads(), threads, "in range: taken")
end

-- Sizes and dims given as integers: an element that is not one is an error naming the
-- function, the element and its value (it ended the list and was dropped: view(6, "x") was
-- view(6)).
do
  local o = ag.ones(6)
  raises_status("AG_EINVAL", function() return o:view(6, "x") end,
                "autograd: view(): argument 'size': element 2 is not an integer (got \"x\")")
  raises_status("AG_EINVAL", function() return o:view(3, "a") end,
                "view(): argument 'size': element 2 is not an integer (got \"a\")")
  raises_status("AG_EINVAL", function() return o:reshape(2, 3, true) end,
                "reshape(): argument 'shape': element 3 is not an integer (got true)")
  raises_status("AG_EINVAL", function() return o:view(2, nil, 3) end,
                "view(): argument 'size': element 2 is not an integer (got nil)")
  raises_status("AG_EINVAL", function() return o:view(2, 3, nil) end,
                "element 3 is not an integer (got nil)")
  raises_status("AG_EINVAL", function() return o:view(2, 3.5) end,
                "view(): argument 'size': element 2 is not an integer (got 3.5)")
  raises_status("AG_EINVAL", function() return o:view({2, 3}, 1) end,
                "autograd: view(): unexpected argument 2 after the size table (got 1)")
  raises_status("AG_EINVAL", function() return ag.ones(1, 3):expand(2, {}) end,
                "expand(): argument 'size': element 2 is not an integer (got a table)")
  local m = ag.ones(2, 3)
  raises_status("AG_EINVAL", function() return m:permute(2, 1, "x") end,
                "autograd: permute(): argument 'dims': element 3 is not an integer (got \"x\")")
  raises_status("AG_EINVAL", function() return ag.zeros(2, 2.5) end,
                "autograd: zeros(): argument 'size': element 2 is not an integer (got 2.5)")
  H.eq(o:view(2.0, 3).shape, {2, 3}, "2.0 counts as 2")
  H.eq(m:permute(2, 1).shape, {3, 2})
  H.eq(ag.zeros(2, 3, "float64").dtype, "float64", "a creation function's options still follow")
  H.eq(ag.rand(2, {generator = ag.generator(1)}).shape, {2})
end

-- Positions and index tables the layer computes with are checked first: a wrong one is an
-- error naming the function and the value, with the status set (they raised raw Lua errors,
-- "attempt to compare number with string", and left the status as it was; a boolean index
-- was taken as 1 or 0).
do
  local m = ag.arange(12.0):reshape(3, 4)
  raises_status("AG_EINVAL", function() return m:slice(1, 1, "x") end,
                "autograd: slice(): stop must be an integer, got \"x\"")
  raises_status("AG_EINVAL", function() return m:slice(1, 1, 2.5) end,
                "autograd: slice(): stop must be an integer, got 2.5")
  raises_status("AG_EINVAL", function() return m:slice(1, 1, 2, {}) end,
                "autograd: slice(): step must be an integer, got a table")
  raises_status("AG_EINVAL", function() return m:slice(1, "x") end,
                "autograd: slice(): start must be an integer, got \"x\"")
  raises_status("AG_EINVAL", function() return m:narrow(1, true, 1) end,
                "autograd: narrow(): start must be an integer, got true")
  raises_status("AG_EINVAL", function() return m:select(1, "x") end,
                "autograd: select(): index must be an integer, got \"x\"")
  H.eq(m:slice(1, 2.0, 3.0, 1.0):tolist(), {{4.0, 5.0, 6.0, 7.0}, {8.0, 9.0, 10.0, 11.0}},
       "integral floats count as integers")
  raises_status("AG_EINVAL", function() return m:index_select(1, {true}) end,
                "autograd: index_select(): index element 1 must be an integer, got true")
  raises_status("AG_EINVAL", function() return m:index_select(1, {2, true}) end,
                "autograd: index_select(): index element 2 must be an integer, got true")
  raises_status("AG_EINVAL", function() return m:index_select(1, {1, "2"}) end,
                "index_select(): index element 2 must be an integer, got \"2\"")
  raises_status("AG_EINVAL", function() return m:index_select(1, {1.5}) end,
                "index_select(): index element 1 must be an integer, got 1.5")
  raises_status("AG_EINVAL", function() return m:gather(2, {{1, 2}, {3, false}, {1, 1}}) end,
                "autograd: gather(): index element 4 must be an integer, got false")
  raises_status("AG_EINVAL", function() return m:scatter_add(1, {{"a"}}, ag.ones(1, 1)) end,
                "autograd: scatter_add(): index element 1 must be an integer, got \"a\"")
  raises_status("AG_EINVAL", function() return F.embedding({{1, {}}}, m) end,
                "autograd: embedding(): indices element 2 must be an integer, got a table")
  raises_status("AG_EINVAL", function() return F.cross_entropy(m, {1, 2, true}) end,
                "autograd: cross_entropy(): target element 3 must be an integer, got true")
  raises_status("AG_EINVAL", function() return F.nll_loss(m, {1, 2.5, 3}) end,
                "autograd: nll_loss(): target element 2 must be an integer, got 2.5")
  raises_status("AG_EINVAL", function()
    return F.cross_entropy(m, {1, 2, 3}, {ignore_index = "a"})
  end, "autograd: cross_entropy(): ignore_index must be an integer, got \"a\"")
  raises_status("AG_EINVAL", function() return F.nll_loss(m, {1, 2, 3}, {ignore_index = 1.5}) end,
                "autograd: nll_loss(): ignore_index must be an integer, got 1.5")
  H.eq(m:index_select(1, {3.0, 1}):tolist(), {{8.0, 9.0, 10.0, 11.0}, {0.0, 1.0, 2.0, 3.0}},
       "integral floats count as integers")
  H.eq(m:gather(2, {{1}, {2}, {4}}):tolist(), {{0.0}, {5.0}, {11.0}})
end

-- Options that are not a table are refused, naming the function and the value, with the
-- status set: a string or number was ignored (cross_entropy(x, t, "sum") gave the mean,
-- Adam(p, "lr=0.1") trained at 1e-3, ag.grad(y, x, "allow_unused") ran without it) or
-- indexed into a raw Lua error ("attempt to index a number value") that left the status.
do
  local lx, lt = ag.tensor({{1.0, 2.0}, {0.5, 0.1}}), ag.tensor({1, 2})
  local pw = ag.tensor({1.0, 2.0}, {requires_grad = true})
  raises_status("AG_EINVAL", function() return F.cross_entropy(lx, lt, "sum") end,
                "autograd: cross_entropy takes a table of options, got \"sum\"")
  raises_status("AG_EINVAL", function() return F.cross_entropy(lx, lt, 5) end,
                "autograd: cross_entropy takes a table of options, got 5")
  raises_status("AG_EINVAL", function() return F.nll_loss(lx, lt, "sum") end,
                "autograd: nll_loss takes a table of options, got \"sum\"")
  raises_status("AG_EINVAL", function() return F.mse_loss(lx, lx, "sum") end,
                "autograd: mse_loss takes a table of options, got \"sum\"")
  raises_status("AG_EINVAL", function() return F.binary_cross_entropy_with_logits(lx, lx, 1) end,
                "autograd: binary_cross_entropy_with_logits takes a table of options, got 1")
  raises_status("AG_EINVAL", function() return ag.optim.SGD({pw}, 0.1) end,
                "autograd: optim.SGD takes a table of options, got 0.1")
  raises_status("AG_EINVAL", function() return ag.optim.Adam({pw}, "lr=0.1") end,
                "autograd: optim.Adam takes a table of options, got \"lr=0.1\"")
  raises_status("AG_EINVAL", function() return ag.optim.AdamW({pw}, true) end,
                "autograd: optim.AdamW takes a table of options, got true")
  raises_status("AG_EINVAL", function() return ag.grad(pw * 3, pw, "allow_unused") end,
                "autograd: ag.grad takes a table of options, got \"allow_unused\"")
  raises_status("AG_EINVAL", function() (pw * 3):sum():backward(nil, "retain_graph") end,
                "autograd: backward takes a table of options, got \"retain_graph\"")
  H.eq(pw.grad, nil, "a refused backward ran nothing")
  H.near(F.cross_entropy(lx, lt, {reduction = "sum"}):item(), 2.2262769, "a table still works", 1e-6)
  H.eq(F.mse_loss(lx, lx, nil):item(), 0.0, "nil is no options")
end

-- ag.grad's grad_outputs holds one entry per output (nil for the default): more is an
-- error, as Go's Grad and PyTorch's refuse it (the rest was ignored, non-tensors too).
do
  local gx = ag.tensor({1.0, 2.0}, {requires_grad = true})
  local gy = gx * 3
  raises_status("AG_EINVAL", function()
    return ag.grad({gy}, {gx}, {grad_outputs = {ag.ones(2), "junk", 42}})
  end, "ag_grad: grad_outputs: 3 entries for 1 outputs")
  raises_status("AG_EINVAL", function()
    return ag.grad({gy}, {gx}, {grad_outputs = {nil, nil, ag.ones(2)}})
  end, "ag_grad: grad_outputs: 3 entries for 1 outputs")
  raises_status("AG_EINVAL", function()
    return ag.grad({gy}, {gx}, {grad_outputs = {ag.ones(2), scale = 2}})
  end, "ag_grad: grad_outputs: a string key")
  local s1 = gy:sum()
  H.eq(ag.grad({s1, gy}, {gx}, {grad_outputs = {nil, ag.ones(2)}})[1]:tolist(), {6.0, 6.0},
       "holes within the outputs still mean the default gradient")
end

-- A dtype or options after the dtype or options of ag.tensor and the creation functions
-- are errors naming the position (they were dropped: ag.tensor(1.0, {requires_grad = true},
-- "float64") was float32, ag.zeros(2, "int64", 3) ignored the 3).
do
  raises_status("AG_EINVAL", function() return ag.tensor(1.0, {requires_grad = true}, "float64") end,
                "autograd: ag.tensor: unexpected argument 3 after the options table (got \"float64\")")
  raises_status("AG_EINVAL", function() return ag.tensor({1, 2}, {dtype = "float64"}, "int64") end,
                "autograd: ag.tensor: unexpected argument 3 after the options table (got \"int64\")")
  raises_status("AG_EINVAL", function() return ag.tensor({1, 2}, "float64", "int64") end,
                "autograd: ag.tensor: unexpected argument 3 after the dtype (got \"int64\")")
  raises_status("AG_EINVAL", function() return ag.tensor({1, 2}, {2}, "float64", "int64") end,
                "autograd: ag.tensor: unexpected argument 4 after the dtype or options (got \"int64\")")
  raises_status("AG_EINVAL", function() return ag.tensor(1.0, nil, nil, {requires_grad = true}) end,
                "autograd: ag.tensor: unexpected argument 4")
  raises_status("AG_EINVAL", function() return ag.zeros(2, "int64", 3) end,
                "autograd: zeros(): unexpected argument 3 after the dtype or options (got 3)")
  raises_status("AG_EINVAL", function() return ag.ones({2}, nil, "int64") end,
                "autograd: ones(): unexpected argument 3 after the dtype or options (got \"int64\")")
  raises_status("AG_EINVAL", function() return ag.randn(2, {}, "float64") end,
                "autograd: randn(): unexpected argument 3")
  raises_status("AG_EINVAL", function() return ag.full({2}, 1, "int64", "float64") end,
                "autograd: full(): unexpected argument 4")
  raises_status("AG_EINVAL", function() return ag.arange(5, "int64", 3) end,
                "autograd: arange(): unexpected argument 3")
  raises_status("AG_EINVAL", function() return ag.eye(2, "int64", "float64") end,
                "autograd: eye(): unexpected argument 3")
  raises_status("AG_EINVAL", function() return ag.zeros_like(a, "int64", 1) end,
                "autograd: zeros_like(): unexpected argument 3")
  raises_status("AG_EINVAL", function() return ag.randint(0, 5, {2}, "int64", 1) end,
                "autograd: randint(): unexpected argument 5")
  H.eq(ag.tensor(1.0, {requires_grad = true}, nil).requires_grad, true, "trailing nils are none")
  H.eq(ag.zeros(2, "int64", nil).dtype, "int64")
  H.eq(ag.arange(0, 4, 2, "float64"):tolist(), {0.0, 2.0})
  H.eq(ag.eye(2, 3, "int64").shape, {2, 3})
end

-- narrow's length is an integer as its start is (2.0 is 2), and the 1-based check runs for
-- it: an integral float skipped it, and C reported the range with a 0-based start.
do
  local m = ag.tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}})
  raises_status("AG_ERANGE", function() return m:narrow(2, 2, 5.0) end,
                "autograd: narrow(): start 2 + length 5 exceeds the size 3 of dim 2")
  raises_status("AG_ERANGE", function() return m:narrow(2, 2, -1.0) end,
                "autograd: narrow(): length must be non-negative, got -1")
  raises_status("AG_EINVAL", function() return m:narrow(2, 2, 1.5) end,
                "autograd: narrow(): length must be an integer, got 1.5")
  raises_status("AG_EINVAL", function() return m:narrow(2, 2, "x") end,
                "autograd: narrow(): length must be an integer, got \"x\"")
  H.eq(m:narrow(2, 2, 2.0):tolist(), {{2.0, 3.0}, {5.0, 6.0}})
end

-- Messages that named the wrong thing: a bool index tensor named ag_sub_scalar (the 1 taken
-- off), a negative size was counted as 0 ("2 values given for a shape of 0 elements"),
-- clamp() without bounds named clamp_max's argument 2.
do
  local m = ag.tensor({{1.0, 2.0}, {3.0, 4.0}})
  raises_status("AG_EDTYPE", function() return m:index_select(1, ag.tensor({true})) end,
                "autograd: index_select(): index must be an integer tensor of indices, got a bool tensor")
  raises_status("AG_EDTYPE", function() return F.cross_entropy(m, ag.tensor({true, false})) end,
                "autograd: cross_entropy(): target must be an integer tensor")
  raises_status("AG_EINVAL", function() return ag.tensor({1, 2}, {-2}) end,
                "Trying to create tensor with negative dimension -2: [-2]")
  raises_status("AG_EINVAL", function() return ag.tensor({1.0, 2.0}, {2, -1}) end,
                "Trying to create tensor with negative dimension -1: [2, -1]")
  raises_status("AG_EINVAL", function() return m:clamp() end,
                "autograd: clamp(): at least one of min and max must be given")
  H.eq(m:clamp(nil, 2.0):tolist(), {{1.0, 2.0}, {2.0, 2.0}})
end

-- no_grad, enable_grad and detect_anomaly take a function (or a callable); anything else is
-- refused before the mode changes (it raised a raw "attempt to call a number value").
do
  raises_status("AG_EINVAL", function() return ag.no_grad(3) end,
                "autograd: no_grad expects a function, got 3")
  raises_status("AG_EINVAL", function() return ag.enable_grad("f") end,
                "autograd: enable_grad expects a function, got \"f\"")
  raises_status("AG_EINVAL", function() return ag.detect_anomaly(a) end,
                "autograd: detect_anomaly expects a function, got a tensor")
  H.eq(ag.is_grad_enabled(), true, "the mode is unchanged")
  H.eq(ag.no_grad(setmetatable({}, {__call = function() return ag.is_grad_enabled() end})), false,
       "a callable table is a function")
end

-- Flat data refuses numeric strings, as nested tables do (lua_tonumberx converted "2").
raises_status("AG_EINVAL", function() return ag.tensor({1, "2"}, {2}) end,
              "ag_tensor_from_f64: element 2 of data is not a number or a boolean (got string)")
raises_status("AG_EINVAL", function() return ag.tensor({1.0, "2"}) end,
              "must be numbers or booleans")

-- A copy out that no Lua table can hold (an expanded view of 2^40 elements) is a named
-- AG_ENOMEM error, as Go's Float64s gives (it was a bare "not enough memory").
do
  local huge = ag.zeros(1):expand(1 << 40)
  raises_status("AG_ENOMEM", function() return huge:flat() end,
                "ag_tensor_copy_f64: the tensor has 1099511627776 elements, more than a Lua table holds")
  raises_status("AG_ENOMEM", function() return huge:tolist() end, "ag_tensor_copy_f64: the tensor has")
  raises_status("AG_ENOMEM", function() return ag.zeros(1, "int64"):expand(1 << 40):flat() end,
                "ag_tensor_copy_i64: the tensor has 1099511627776 elements")
  H.eq(#ag.zeros(1):expand(1000):flat(), 1000)
end

-- Split and chunk take as many pieces as C does (2^31 - 1; Lua refused more than 10^6, where
-- C, Go and PyTorch go on), and refuse more, or more than memory holds, by name, as Go does.
do
  local huge = ag.zeros(1):expand(1 << 40)
  raises_status("AG_EINVAL", function() return huge:split(1) end,
                "ag_split: 1099511627776 pieces: at most 2147483647 are supported")
  raises_status("AG_EINVAL", function() return huge:chunk(1 << 40) end,
                "ag_chunk: 1099511627776 pieces: at most 2147483647 are supported")
  raises_status("AG_ENOMEM", function() return ag.zeros(1):expand(0x7fffffff):split(1) end,
                "ag_split: 2147483647 pieces take more than this machine's memory")
  local pieces = ag.zeros(1000003):split(1)
  H.eq(#pieces, 1000003)
  H.eq(pieces[1000003]:size(), {1})
  pieces = nil
  collectgarbage()
end

-- The interpreter keeps working after many errors.
for _ = 1, 1000 do pcall(ag.matmul, a, b) end
H.eq((a + 1):sum():item(), 12.0)

H.done("errors")
