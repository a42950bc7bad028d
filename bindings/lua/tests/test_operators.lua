-- Operators: + - * / ^ and unary minus between tensors and with numbers on either side, their
-- values, grad_fn names (PyTorch's) and gradients; __tostring prints what C prints; fields.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")

local function x() return ag.tensor({1.0, 2.0}, {requires_grad = true}) end

local cases = {
  {"x + 1", function(t) return t + 1 end, {2, 3}, "AddBackward0", {1, 1}},
  {"1 + x", function(t) return 1 + t end, {2, 3}, "AddBackward0", {1, 1}},
  {"x - 1", function(t) return t - 1 end, {0, 1}, "SubBackward0", {1, 1}},
  {"1 - x", function(t) return 1 - t end, {0, -1}, "RsubBackward1", {-1, -1}},
  {"x * 2", function(t) return t * 2 end, {2, 4}, "MulBackward0", {2, 2}},
  {"2 * x", function(t) return 2 * t end, {2, 4}, "MulBackward0", {2, 2}},
  {"x / 2", function(t) return t / 2 end, {0.5, 1}, "DivBackward0", {0.5, 0.5}},
  {"2 / x", function(t) return 2 / t end, {2, 1}, nil, {-2, -0.5}},
  {"x ^ 2", function(t) return t ^ 2 end, {1, 4}, "PowBackward0", {2, 4}},
  {"2 ^ x", function(t) return 2 ^ t end, {2, 4}, "PowBackward1", {2 * math.log(2), 4 * math.log(2)}},
  {"-x", function(t) return -t end, {-1, -2}, "NegBackward0", {-1, -1}},
  {"x + x", function(t) return t + t end, {2, 4}, "AddBackward0", {2, 2}},
  {"x - x", function(t) return t - t end, {0, 0}, "SubBackward0", {0, 0}},
  {"x * x", function(t) return t * t end, {1, 4}, "MulBackward0", {2, 4}},
  {"x / x", function(t) return t / t end, {1, 1}, "DivBackward0", {0, 0}},
  {"x ^ x", function(t) return t ^ t end, {1, 4}, "PowBackward1", {1, 4 * (1 + math.log(2))}},
}
for _, c in ipairs(cases) do
  local name, f, want, grad_fn, grad = c[1], c[2], c[3], c[4], c[5]
  local t = x()
  local y = f(t)
  H.near(y:tolist(), want, name)
  if grad_fn then H.eq(y.grad_fn:name(), grad_fn, name .. " grad_fn") end
  y:sum():backward()
  H.near(t.grad:tolist(), grad, name .. " grad", 1e-5)
end

-- Lua integers act as Python ints (int64 stays int64), Lua floats as Python floats, even
-- integral ones: int64 + 2.0 is float32, as `t + 2.0` in PyTorch.
local i = ag.tensor({1, 2, 3})
H.eq(i.dtype, "int64")
H.eq((i + 2).dtype, "int64")
H.eq((i + 2):tolist(), {3, 4, 5})
H.eq((i * 2.5).dtype, "float32")
H.eq((i / 2).dtype, "float32")
H.eq((i + 2.0).dtype, "float32")
H.eq((i + 2.0):tolist(), {3.0, 4.0, 5.0})
H.eq((2.0 * i).dtype, "float32")
H.eq((i ^ 2.0).dtype, "float32")
H.eq((i - 1.0):tolist(), {0.0, 1.0, 2.0})
local bt = ag.tensor({true, false})
H.eq((bt + 2).dtype, "int64")
H.eq((bt + 2.0).dtype, "float32")
H.raises(function() return bt - 1.0 end, "with a bool tensor is not supported")
H.raises(function() return i:add_(2.0) end, "can't be cast to the desired output type int64")
H.eq(ag.last_status(), "AG_EDTYPE")
H.eq(i:add_(2):tolist(), {3, 4, 5})
-- Lua integers become int64 exactly, beyond 2^53 too (they went through doubles).
H.eq(ag.tensor({9007199254740993}):tolist()[1], 9007199254740993)
H.eq(ag.tensor(math.maxinteger):item(), math.maxinteger)
H.eq(ag.tensor({{math.mininteger, -1}, {0, math.maxinteger}}):tolist(),
     {{math.mininteger, -1}, {0, math.maxinteger}})
H.raises(function() return ag.tensor(1e300, "int64") end, "without overflow")
-- Numbers beside tensors in where, and creation dtypes that follow the value.
local c = ag.tensor({true, false})
H.eq(ag.where(c, ag.tensor({1, 2}), 0.5):tolist(), {1.0, 0.5})
H.eq(ag.where(c, 1, 2).dtype, "int64")
H.eq(ag.where(c, ag.tensor({1.0, 2.0}, "float64"), 0.5).dtype, "float64")
H.eq(ag.full({2}, 7).dtype, "int64")
H.eq(ag.full({2}, 7.0).dtype, "float32")
H.eq(ag.full({2}, true).dtype, "bool")
H.eq(ag.rand_like(ag.zeros(2), "float64").dtype, "float64")

-- __tostring is ag_tensor_to_string, exactly as PyTorch prints.
local s = ag.tensor(2.0, {requires_grad = true})
H.eq(tostring(s), "tensor(2., requires_grad=True)")
H.eq(tostring(s * s), "tensor(4., grad_fn=<MulBackward0>)")
H.eq(tostring(ag.tensor({{1.0, 2.0}, {3.0, 4.0}})), "tensor([[1., 2.],\n        [3., 4.]])")
H.eq(tostring(ag.tensor({1, 2})), "tensor([1, 2])")
H.eq(tostring(ag.tensor({true, false})), "tensor([ True, False])")

-- Fields.
local a = ag.tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}})
H.eq(a.shape, {2, 3})
H.eq(a.dtype, "float32")
H.eq(a.ndim, 2)
H.eq(a.requires_grad, false)
H.eq(a.is_leaf, true)
H.eq(a.grad, nil)
H.eq(a.grad_fn, nil)
a.requires_grad = true
H.eq(a.requires_grad, true)
local b = a * 2
H.eq(b.is_leaf, false)
H.eq(b.grad_fn:name(), "MulBackward0")
H.eq(tostring(b.grad_fn), "<MulBackward0>")
local nf = b.grad_fn.next_functions
H.eq(#nf, 1)
H.eq(nf[1][1]:name(), "AccumulateGrad")
H.eq(nf[1][2], 0)
H.check(nf[1][1].variable == a, "AccumulateGrad.variable is the leaf")
H.eq(#a, 2)
H.eq(a[2]:tolist(), {4.0, 5.0, 6.0})
H.eq(a[-1]:tolist(), {4.0, 5.0, 6.0})
H.eq(a:size(), {2, 3})
H.eq(a:size(2), 3)
H.eq(a:numel(), 6)
H.eq(math.type(a:numel()), "integer")
H.eq(a:dim(), 2)
H.check(a == a, "same handle")
H.check(b.grad_fn.next_functions[1][1].variable == a, "handles compare by identity of the C tensor")
-- Released handles hold no tensor: two of them are not the same C tensor (SWIG's __eq
-- compared their NULL pointers, so any two were equal); each still equals itself.
do
  local r1, r2 = ag.ones(1), ag.ones(2)
  r1:release()
  r2:release()
  H.check(not (r1 == r2), "two released tensors are not equal")
  H.check(r1 == r1, "a released handle is itself")
  local c = ag.ones(1)
  H.check(not (r1 == c) and not (c == r1), "a released tensor is not a live one")
  H.check(b.grad_fn == b.grad_fn, "two handles of one node are equal")
end
H.raises(function() a.nonsense = 1 end, "cannot set field 'nonsense'")
H.raises(function() local _ = #ag.tensor(1.0) end, "len() of a 0-d tensor")

-- item / tolist keep the dtype's Lua type.
H.eq(ag.tensor(3):item(), 3)
H.eq(math.type(ag.tensor(3):item()), "integer")
H.eq(ag.tensor(true):item(), true)
H.eq(ag.tensor(2.5):item(), 2.5)
H.eq(ag.tensor(-2.7):item_int(), -2)
H.eq(ag.tensor({{1, 2}, {3, 4}}):tolist(), {{1, 2}, {3, 4}})
H.eq(ag.tensor(5.0):tolist(), 5.0)

-- In place, comparisons, where, a few unary ops.
local z = ag.zeros(3)
z:add_(1):mul_(3)
H.eq(z:tolist(), {3.0, 3.0, 3.0})
H.eq(z.version, 2)
z[2] = 7
H.eq(z:tolist(), {3.0, 7.0, 3.0})
z[3] = ag.tensor(9.0)
H.eq(z:tolist(), {3.0, 7.0, 9.0})
H.eq(z:gt(4):tolist(), {false, true, true})
H.eq(z:eq(ag.tensor({3.0, 0.0, 9.0})):tolist(), {true, false, true})
H.eq(ag.where(z:gt(4), z, 0):tolist(), {0.0, 7.0, 9.0})
H.near(ag.tensor({0.0}):exp():tolist(), {1.0})
H.near(ag.tensor({-1.0, 2.0}):relu():tolist(), {0.0, 2.0})
H.near(ag.tensor({-1.0, 2.0}):clamp(0, 1):tolist(), {0.0, 1.0})

-- Creation.
H.eq(ag.zeros(2, 3).shape, {2, 3})
H.eq(ag.zeros({2, 3}, "float64").dtype, "float64")
H.eq(ag.ones(2, {dtype = "int64"}):tolist(), {1, 1})
H.eq(ag.full({2}, 7.0):tolist(), {7.0, 7.0})
H.eq(ag.arange(4):tolist(), {0, 1, 2, 3})
H.eq(ag.arange(1, 2, 0.5):tolist(), {1.0, 1.5})
H.eq(ag.eye(2):tolist(), {{1.0, 0.0}, {0.0, 1.0}})
H.eq(ag.tensor({1, 2, 3, 4}, {2, 2}, "float64"):tolist(), {{1.0, 2.0}, {3.0, 4.0}})
H.eq(ag.zeros_like(a).shape, {2, 3})
H.eq(ag.ones_like(a, "int64").dtype, "int64")
H.eq(ag.full_like(a, 2.0):sum():item(), 12.0)
local g1, g2 = ag.generator(5), ag.generator(5)
H.eq(ag.rand(3, {generator = g1}):tolist(), ag.rand(3, {generator = g2}):tolist(), "same seed, same numbers")
ag.manual_seed(1)
local r1 = ag.randn(4):tolist()
ag.manual_seed(1)
H.eq(ag.randn(4):tolist(), r1, "manual_seed")
local ri = ag.randint(0, 5, {100})
H.eq(ri.dtype, "int64")
H.check(ri:min():item() >= 0 and ri:max():item() < 5, "randint range")
H.raises(function() ag.tensor({{1, 2}, {3}}) end, "ragged")
H.raises(function() ag.zeros(2, "float16") end, "unknown dtype")
H.raises(function() ag.tensor(7.0, {shape = {1}}) end, "takes no shape")

-- 0-d tensors from numbers (ag.tensor's C short path): dtype from the number, options honoured.
H.eq(ag.tensor(2.5).dtype, "float32")
H.eq(ag.tensor(7).dtype, "int64")
H.eq(ag.tensor(2.5, {requires_grad = true}).requires_grad, true)
H.eq(ag.tensor(2.5, {requires_grad = false}).requires_grad, false)
H.eq(ag.tensor(2, {dtype = "float64", requires_grad = true}).dtype, "float64")
H.eq(ag.tensor(2, "float64"):item(), 2.0)
H.raises(function() ag.tensor(3, {requires_grad = true}) end, "floating point dtype")

-- Operators on bad operands name the C function and its argument, as the wrappers do.
local f2 = ag.tensor({1.0, 2.0})
H.raises(function() return f2 * "x" end, "ag_mul: argument 2: expected ag_tensor, got string")
H.raises(function() return "x" * f2 end, "ag_mul: argument 1: expected ag_tensor, got string")
H.raises(function() return f2 / {} end, "ag_div: argument 2: expected ag_tensor, got table")
H.raises(function() return f2 + nil end, "ag_add: argument 2: expected ag_tensor, got nil")
H.raises(function() return nil - f2 end, "ag_sub: argument 1: expected ag_tensor, got nil")
H.raises(function() return f2 * ag.ones(3) end, "cannot be broadcast")
local gone = f2 * 1
gone:release()
H.raises(function() return 1 - gone end,
         "ag_rsub_scalar: argument 1: this ag_tensor is no longer valid")
H.raises(function() return f2 ^ gone end, "ag_pow: argument 2: this ag_tensor is no longer valid")
H.eq((2 - f2):tolist(), {1.0, 0.0}, "rsub keeps the operand order")
H.eq((f2:mul(3)):tolist(), {3.0, 6.0}, "t:mul(number)")

-- int64 data as torch.tensor takes it: floats truncate toward zero, booleans are 0 and 1
-- (a float raised "not an integer exactly representable", a boolean "not an integer")
H.eq(ag.tensor({1.5, -2.7, true}, "int64"):tolist(), {1, -2, 1}, "floats into int64 truncate")
H.eq(ag.tensor({1.5, 2, 3, 4}, {2, 2}, "int64"):tolist(), {{1, 2}, {3, 4}}, "flat data too")
local ib = ag.tensor({1, true})
H.eq(ib.dtype, "int64", "integers and booleans make int64")
H.eq(ib:tolist(), {1, 1}, "true is 1")

-- integers beyond 2^53 stay exact with int64 tensors, as Python ints do in PyTorch (they went
-- through a double: 2^53 + 1 became 2^53)
local B = 9007199254740993
H.eq((ag.tensor({0}) + B):tolist()[1], B, "t + B")
H.eq((B - ag.tensor({0})):tolist()[1], B, "B - t")
H.eq((ag.tensor({1}) * B):tolist()[1], B, "t * B")
H.eq(ag.full({1}, B):tolist()[1], B, "ag.full")
H.eq(ag.tensor({0}):fill_(B):tolist()[1], B, "fill_")
H.eq(ag.tensor({0}):add_(B):tolist()[1], B, "add_")
local tb = ag.tensor({0, 0})
tb[2] = B
H.eq(tb:tolist()[2], B, "t[i] = B")
H.eq(ag.tensor({B - 1}):eq(B):tolist()[1], false, "eq")
H.eq((ag.tensor({0}) + math.maxinteger).dtype, "int64", "t + maxinteger stays int64")
H.eq((ag.tensor({0.5}) + B).dtype, "float32", "a float tensor stays float32")

H.done("operators")
