-- nn helpers and optimizers: Linear's initialisation (PyTorch's, drawn with ag_rand from the
-- generator), Sequential, activations, parameters(), SGD/Adam/AdamW, lr get/set, zero_grad.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")
local nn = ag.nn

-- Linear: weight then bias, uniform in +-1/sqrt(in), i.e. (rand - 0.5) * 2 / sqrt(in).
local lin = nn.Linear(4, 3, ag.generator(7))
local g = ag.generator(7)
local bound = 1 / math.sqrt(4)
local w = (ag.rand({3, 4}, {generator = g}) - 0.5) * (2 * bound)
local b = (ag.rand({3}, {generator = g}) - 0.5) * (2 * bound)
H.eq(lin.weight:tolist(), w:tolist(), "weight drawn first")
H.eq(lin.bias:tolist(), b:tolist(), "bias drawn second")
H.eq(lin.weight.requires_grad, true)
H.eq(lin.weight.is_leaf, true)
H.check(lin.weight:abs():max():item() <= bound, "within the bound")
H.eq(#lin:parameters(), 2)
local nobias = nn.Linear(4, 3, {bias = false, generator = ag.generator(1), dtype = "float64"})
H.eq(#nobias:parameters(), 1)
H.eq(nobias.weight.dtype, "float64")
-- No inputs: PyTorch's bound is 0 then, so the bias is zeros (not 1/sqrt(0) = inf).
local empty = nn.Linear(0, 3, ag.generator(3))
H.eq(empty.weight.shape, {3, 0})
H.eq(empty.bias:tolist(), {0.0, 0.0, 0.0})
H.eq(empty(ag.ones(2, 0)):tolist(), {{0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}}, "x W^T + b with no inputs")
local x = ag.ones(5, 4)
H.eq(lin(x).shape, {5, 3})
H.near(lin(x):tolist()[1], (x:matmul(lin.weight.T) + lin.bias):tolist()[1], "y = x W^T + b", 1e-6)
H.eq(lin(x).grad_fn:name(), "AddmmBackward0")

-- Sequential, activations, parameters in order.
local model = nn.Sequential(nn.Linear(4, 8, ag.generator(1)), nn.ReLU(), nn.Linear(8, 2, ag.generator(2)),
                            nn.Tanh())
local params = model:parameters()
H.eq(#params, 4)
H.eq(params[1].shape, {8, 4})
H.eq(params[4].shape, {2})
local out = model(x)
H.eq(out.shape, {5, 2})
H.check(out:abs():max():item() <= 1, "tanh output")
-- Indexing a Sequential, as torch's model[i - 1].
H.eq(#model, 4)
H.eq(model[1].weight.shape, {8, 4})
H.eq(tostring(model[2]), "ReLU()")
H.eq(model[3.0].out_features, 2)
H.eq(model[5], nil)
H.check(model.forward ~= nil and model.parameters ~= nil, "methods still found")
H.eq(nn.Sigmoid()(ag.zeros(1)):item(), 0.5)
H.eq(nn.LeakyReLU(0.1)(ag.tensor({-10.0})):item(), -1.0)
H.near(nn.Softmax(2)(ag.zeros(1, 4)):tolist(), {{0.25, 0.25, 0.25, 0.25}})
H.eq(nn.Flatten()(ag.zeros(2, 3, 4)).shape, {2, 12})
local drop = nn.Dropout(0.5, ag.generator(3))
H.check(drop(ag.ones(1000)):sum():item() ~= 1000, "dropout in training mode")
drop:eval()
H.eq(drop(ag.ones(1000)):sum():item(), 1000.0, "identity in eval mode")

-- Custom modules.
local Affine = nn.class("Affine", function(self, t) return t * self.scale + self.shift end,
  function(self, s)
    self.scale = ag.tensor(s, {requires_grad = true})
    self.shift = ag.tensor(0.0, {requires_grad = true})
    self._params = {self.scale, self.shift}
  end)
local aff = Affine(2.0)
H.eq(aff(ag.ones(2)):tolist(), {2.0, 2.0})
H.eq(#aff:parameters(), 2, "listed by hand and registered as fields: each once")

-- Fields holding modules and parameters register as PyTorch's attributes do: parameters()
-- and eval() reach them (they saw nothing), and replacing a field is followed.
local MLP = nn.class("MLP", function(self, x) return self.fc2(self.drop(self.fc1(x):relu())) end,
  function(self)
    self.fc1 = nn.Linear(4, 8, ag.generator(1))
    self.drop = nn.Dropout(0.5)
    self.fc2 = nn.Linear(8, 2, ag.generator(2))
    self.gain = ag.tensor(1.0, {requires_grad = true})
    self.note = "not a parameter"
  end)
local mlp = MLP()
local ps = mlp:parameters()
H.eq(#ps, 5, "fc1 weight, bias, fc2 weight, bias, gain")
H.check(ps[1] == mlp.gain and ps[2] == mlp.fc1.weight and ps[5] == mlp.fc2.bias,
        "own parameters first, then the children's in assignment order")
mlp:eval()
H.eq(mlp.drop.training, false, "eval reaches a child held in a field")
mlp.fc2 = nn.Linear(8, 3, ag.generator(3))
H.eq(#mlp:parameters(), 5)
H.eq(mlp(ag.ones(1, 4)).shape, {1, 3}, "the replaced child is the one used and listed")
H.eq(mlp:parameters()[4].shape, {3, 8})

-- Positions in an optimizer's parameter list are 1-based in messages, as the list is.
do
  local a, b = ag.tensor({1.0}, {requires_grad = true}), ag.tensor({2.0}, {requires_grad = true})
  H.raises(function() ag.optim.SGD({a, b, a}, {lr = 0.1}) end,
           "ag_optimizer_sgd: params[1] and params[3] are the same tensor")
  H.raises(function() ag.optim.Adam({b, ag.tensor({1, 2})}) end, "but params[2] is int64")
end

-- SGD: p <- p - lr * grad; lr read and written.
local p = ag.tensor({1.0, 2.0}, {requires_grad = true})
local sgd = ag.optim.SGD({p}, {lr = 0.5})
H.eq(sgd.lr, 0.5)
;(p * p):sum():backward()
sgd:step()
H.eq(p:tolist(), {0.0, 0.0}, "1 - 0.5 * 2, 2 - 0.5 * 4")
sgd.lr = 0.25
H.eq(sgd:get_lr(), 0.25)
sgd:set_lr(0.125)
H.eq(sgd.lr, 0.125)
H.raises(function() sgd.lr = -1 end, "ag_optimizer_set_lr")
sgd:zero_grad()
H.eq(p.grad:tolist(), {0.0, 0.0}, "zero_grad keeps zeroed tensors by default (PyTorch 1.13)")
sgd:zero_grad(true)
-- Module:zero_grad likewise: zeroed in place by default, dropped with set_to_none.
local lin = nn.Linear(2, 1)
lin(ag.ones(1, 2)):sum():backward()
lin:zero_grad()
H.eq(lin.weight.grad:tolist(), {{0.0, 0.0}}, "Module:zero_grad zeroes in place (PyTorch 1.13)")
lin:zero_grad(true)
H.eq(lin.weight.grad, nil, "Module:zero_grad(true) drops .grad")
H.eq(p.grad, nil, "set_to_none")
H.raises(function() ag.optim.SGD({p}) end, "needs a learning rate")

-- Adam's first step moves every parameter by lr (sign of the gradient).
local q = ag.tensor({1.0, -1.0}, {requires_grad = true})
local adam = ag.optim.Adam({q}, {lr = 0.1})
;(q * 3):sum():backward()
adam:step()
H.near(q:tolist(), {0.9, -1.1}, "Adam's first step", 1e-6)
-- AdamW decays the weights (default 1e-2) before the Adam step.
local r = ag.tensor({1.0}, {requires_grad = true})
local adamw = ag.optim.AdamW({r}, {lr = 0.1})
;(r * 1):sum():backward()
adamw:step()
H.near(r:item(), 1.0 * (1 - 0.1 * 1e-2) - 0.1, "AdamW", 1e-6)
-- A module's parameters can be handed directly.
local opt = ag.optim.Adam(model, {lr = 1e-2})
local loss0
for i = 1, 50 do
  opt:zero_grad(true)
  local loss = ag.nn.functional.mse_loss(model(x), ag.zeros(5, 2))
  loss:backward()
  opt:step()
  if i == 1 then loss0 = loss:item() end
end
H.check(ag.nn.functional.mse_loss(model(x), ag.zeros(5, 2)):item() < loss0, "training lowers the loss")
H.check(tostring(opt):find("lr=0.01", 1, true) ~= nil, tostring(opt))

-- Printed as PyTorch prints them.
H.eq(tostring(nn.Linear(4, 3, {bias = false})), "Linear(in_features=4, out_features=3, bias=False)")
H.eq(tostring(nn.ReLU()), "ReLU()")
-- (Strings from PyTorch 1.13; the arguments are those given here, and dims print as a Lua
-- user passes them, 1-based: torch's nn.Softmax(1) is nn.Softmax(2) here and prints so.)
H.eq(tostring(nn.Dropout(0.5)), "Dropout(p=0.5, inplace=False)")
H.eq(tostring(nn.Dropout()), "Dropout(p=0.5, inplace=False)")
H.eq(tostring(nn.Dropout(0)), "Dropout(p=0, inplace=False)", "an integer prints as Python's int")
H.eq(tostring(nn.LeakyReLU(0.2)), "LeakyReLU(negative_slope=0.2)")
H.eq(tostring(nn.LeakyReLU()), "LeakyReLU(negative_slope=0.01)")
H.eq(tostring(nn.Softmax(2)), "Softmax(dim=2)")
H.eq(tostring(nn.Softmax()), "Softmax(dim=-1)", "the default here is -1 (PyTorch's None)")
H.eq(tostring(nn.LogSoftmax(-1)), "LogSoftmax(dim=-1)")
H.eq(tostring(nn.Flatten()), "Flatten(start_dim=2, end_dim=-1)", "torch's Flatten(start_dim=1)")
H.eq(tostring(nn.Flatten(1, 3)), "Flatten(start_dim=1, end_dim=3)")
H.eq(tostring(nn.GELU()), "GELU(approximate='none')")
H.eq(tostring(nn.GELU("tanh")), "GELU(approximate='tanh')")
H.eq(tostring(nn.GELU(true)), "GELU(approximate='tanh')")
H.eq(tostring(nn.Softplus()), "Softplus(beta=1, threshold=20)")
H.eq(tostring(nn.Softplus(0.5, 20.0)), "Softplus(beta=0.5, threshold=20.0)",
     "20.0 as Python's repr")
H.eq(tostring(nn.Softplus(1e-5, 1e16)), "Softplus(beta=1e-05, threshold=1e+16)")
H.eq(tostring(nn.Softplus(100000.0, 0.0001)), "Softplus(beta=100000.0, threshold=0.0001)")
for _, m in ipairs({"Tanh", "Sigmoid", "SiLU", "Identity"}) do
  H.eq(tostring(nn[m]()), m .. "()")
end
-- Containers print their children, indented, as PyTorch's Module.__repr__; a Sequential's
-- are numbered as seq[i] indexes them, from 1 (PyTorch's from 0, as its seq[i]).
H.eq(tostring(nn.Sequential(nn.Linear(3, 2), nn.ReLU())),
     "Sequential(\n  (1): Linear(in_features=3, out_features=2, bias=True)\n  (2): ReLU()\n)")
H.eq(tostring(nn.Sequential()), "Sequential()")
local Net = nn.class("Net", function(self, t) return self.seq(self.fc(t)) end, function(self)
  self.fc = nn.Linear(3, 2)
  self.seq = nn.Sequential(nn.ReLU(), nn.Dropout(0.1))
  self.scale = 2
end)
H.eq(tostring(Net()), "Net(\n  (fc): Linear(in_features=3, out_features=2, bias=True)\n"
     .. "  (seq): Sequential(\n    (1): ReLU()\n    (2): Dropout(p=0.1, inplace=False)\n  )\n)")
H.eq(tostring(nn.class("Empty", function(_, t) return t end)()), "Empty()")
-- With an extra repr and children, each on its line, as PyTorch's extra_repr.
local Tagged = nn.class("Tagged", function(self, t) return self.fc(t) end,
  function(self) self.fc = nn.Linear(3, 2) end, function() return "k=1" end)
H.eq(tostring(Tagged()),
     "Tagged(\n  k=1\n  (fc): Linear(in_features=3, out_features=2, bias=True)\n)")
-- GELU's approximate: "none" or "tanh" (true and false, nil too); anything else is refused,
-- as PyTorch refuses it (it gave the exact form, silently).
H.raises(function() nn.GELU("bogus") end,
         "autograd: gelu(): approximate argument must be either none or tanh, got \"bogus\"")
H.eq(ag.last_status(), "AG_EINVAL")
H.raises(function() ag.ones(2):gelu("Tanh") end, "approximate argument must be either none or tanh")
H.raises(function() nn.functional.gelu(ag.ones(2), 1) end,
         "approximate argument must be either none or tanh, got 1")
H.near(ag.tensor({1.0}):gelu("none"):item(), 0.841344746, "none: the exact form", 1e-6)
H.near(ag.tensor({1.0}):gelu(false):item(), 0.841344746, "", 1e-6)
H.near(ag.tensor({1.0}):gelu("tanh"):item(), 0.841191990, "tanh: the tanh form", 1e-6)
H.near(nn.GELU("tanh")(ag.tensor({1.0})):item(), 0.841191990, "", 1e-6)
H.raises(function() nn.Linear(4, 3, {bais = false}) end, "nn.Linear got an unexpected option 'bais'")
H.raises(function() nn.Linear(-1, 3) end, "nn.Linear: in_features must be an integer >= 0, got -1")
H.raises(function() nn.Linear(4, 2.5) end, "out_features must be an integer >= 0, got 2.5")

-- Embedding: N(0, 1) from the generator, rows at 1-based indices, gradients summed per row.
do
  local emb = nn.Embedding(10, 3, ag.generator(5))
  H.eq(emb.weight:tolist(), ag.randn({10, 3}, {generator = ag.generator(5)}):tolist(), "drawn as randn")
  H.eq(emb.weight.requires_grad and emb.weight.is_leaf, true)
  H.eq(#emb:parameters(), 1)
  H.eq(tostring(emb), "Embedding(10, 3)")
  local w = emb.weight:tolist()
  local out = emb({{2, 10}, {2, 1}})
  H.eq(out.shape, {2, 2, 3})
  H.eq(out:tolist(), {{w[2], w[10]}, {w[2], w[1]}}, "the rows, 1-based")
  out:sum():backward()
  local g = emb.weight.grad:tolist()
  H.eq(g[2], {2.0, 2.0, 2.0}, "a row used twice gets both gradients")
  H.eq(g[1], {1.0, 1.0, 1.0})
  H.eq(g[3], {0.0, 0.0, 0.0}, "an unused row gets zeros")
  H.raises(function() emb({11}) end, "out of range")
  H.raises(function() emb({0}) end, "out of range")
  H.eq(nn.Embedding(4, 2, {dtype = "float64"}).weight.dtype, "float64")
  H.eq(nn.Embedding(0, 2).weight.shape, {0, 2})
  H.raises(function() nn.Embedding(4, -2) end, "nn.Embedding: embedding_dim must be an integer >= 0, got -2")
  H.raises(function() nn.Embedding(4, 2, {padding_idx = 1}) end, "unexpected option 'padding_idx'")
end

-- LayerNorm against PyTorch 1.13: x = 2 sin(i) (i = 0..23) as [2, 3, 4], weight 1 + 0.1 i,
-- bias 0.05 i - 0.1, loss = sum(y * cos(i)).
do
  local function vals(n, f)
    local t = {}
    for i = 0, n - 1 do t[#t + 1] = f(i) end
    return t
  end
  local x = ag.tensor(vals(24, function(i) return 2 * math.sin(i) end)):reshape({2, 3, 4}):detach()
  x.requires_grad = true
  local c = ag.tensor(vals(24, math.cos)):reshape({2, 3, 4})
  local flat = function(t) return t:reshape({-1}):tolist() end
  local cases = {
    {shape = 4, repr = "LayerNorm((4,), eps=1e-05, elementwise_affine=True)",
     y = {-1.2643683, 0.947892308, 1.28898096, -1.01204455, -0.777393878, -1.15180075, 0.106114618, 2.11778259, 1.21249092, 0.58067596, -0.781181514, -1.55530238, -1.71746337, 0.0256990828, 1.2890811, 0.666735172, 0.306821644, -1.32769513, -0.805871665, 1.90416276, 0.862969458, 0.892032206, -0.389735311, -1.89295816},
     gx = {1.25051665, 0.821423233, -0.519167244, -1.55277264, -0.640075386, 0.250939071, 0.533350706, -0.144214332, 0.275424033, -0.286970913, -0.312916994, 0.324463844, -0.0467980206, 0.679354072, 0.296147108, -0.92870307, -1.50254345, -0.163291454, 0.931591213, 0.734243691, 0.4305574, -0.251104116, -0.399873197, 0.220419943},
     gw = {-2.27409053, -0.403376818, 0.212337345, 3.84860229},
     gb = {0.495132864, -0.00261157751, -0.497955024, -0.535480857}},
    {shape = {3, 4}, repr = "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)",
     y = {-0.148511291, 1.20704114, 1.48654449, 0.246655181, -1.46789014, -1.95910013, -0.510530651, 1.74870133, 2.73383331, 1.36636245, -1.23737121, -2.62482834, -0.94841361, 0.545765877, 1.64445746, 1.18872333, -0.581980467, -2.04844284, -1.6558876, 0.503145874, 2.56358647, 2.52874756, 0.236594826, -2.27641153},
     gx = {0.800055206, 0.458675712, -0.319880545, -0.827892542, -0.506785214, 0.455184072, 1.19766366, 0.957072854, -0.156941563, -1.15975451, -1.06061924, 0.163222387, 0.740923166, 0.784560323, 0.137806281, -0.674455166, -0.863828897, -0.141507372, 0.910748363, 1.2997756, 0.557769358, -0.726361871, -1.3626672, -0.662762761},
     gw = {-0.764448464, 1.1089164, -0.328135192, -0.815201163, 1.19853318, 0.00443925569, -1.19231498, 0.81185925, 0.316447914, -1.11547494, 0.768635154, 0.685292304},
     gb = {1.84385395, 1.44774914, -0.279409647, -1.7496804, -1.61130309, 0.00849884748, 1.62048697, 1.74260688, 0.262582034, -1.45885944, -1.83903241, -0.528407335}},
  }
  for _, k in ipairs(cases) do
    local ln = nn.LayerNorm(k.shape)
    H.eq(tostring(ln), k.repr)
    H.eq(flat(ln.weight), vals(#k.gw, function() return 1.0 end), "weight starts at ones")
    H.eq(flat(ln.bias), vals(#k.gb, function() return 0.0 end), "bias starts at zeros")
    H.eq(#ln:parameters(), 2)
    ag.no_grad(function()
      ln.weight:copy_(ag.tensor(vals(#k.gw, function(i) return 1 + 0.1 * i end)):reshape(ln.weight.shape))
      ln.bias:copy_(ag.tensor(vals(#k.gb, function(i) return 0.05 * i - 0.1 end)):reshape(ln.bias.shape))
    end)
    x.grad = nil
    local y = ln(x)
    H.near(flat(y), k.y, tostring(ln) .. " forward", 1e-5)
    ;(y * c):sum():backward()
    H.near(flat(x.grad), k.gx, "input gradient", 1e-5)
    H.near(flat(ln.weight.grad), k.gw, "weight gradient", 1e-5)
    H.near(flat(ln.bias.grad), k.gb, "bias gradient", 1e-5)
  end
  local plain = nn.LayerNorm(4, {elementwise_affine = false, eps = 1e-3})
  H.eq(tostring(plain), "LayerNorm((4,), eps=0.001, elementwise_affine=False)")
  H.eq(#plain:parameters(), 0)
  local row = plain(ag.tensor({{1.0, 2.0, 3.0, 4.0}})):tolist()[1]
  local sd = math.sqrt(1.25 + 1e-3)
  H.near(row, {-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd}, "no affine: (x - mean) / sqrt(var + eps)", 1e-6)
  local nobias = nn.LayerNorm({4}, {bias = false, dtype = "float64"})
  H.eq(#nobias:parameters(), 1)
  H.eq(nobias.bias, nil)
  H.eq(nobias.weight.dtype, "float64")
  H.eq(tostring(nn.LayerNorm({3, 4}, {eps = 1.23456789e-5})),
       "LayerNorm((3, 4), eps=1.23456789e-05, elementwise_affine=True)")
  local shape = {4}
  local ln = nn.LayerNorm(shape)
  shape[1] = 5
  H.eq(ln.normalized_shape, {4}, "normalized_shape is copied")
  H.raises(function() ln(ag.ones(2, 5)) end, "ag_layer_norm")
  H.raises(function() nn.LayerNorm({4, -1}) end, "normalized_shape[2] must be an integer >= 0, got -1")
  H.raises(function() nn.LayerNorm(4, {epsilon = 1e-3}) end, "unexpected option 'epsilon'")
  H.raises(function() nn.LayerNorm(4, 1e-3) end, "nn.LayerNorm takes a table of options, got number")
end

-- A Sequential holds modules, and no module may contain itself: Sequential(2) failed only at
-- forward ("attempt to call a number value"), and s:add(s) or m.child = m made every walk
-- (parameters, eval, tostring, an optimizer over the model) overflow the stack. They are
-- refused where they are made, as Go's Append and RegisterModule refuse them; a cycle made
-- by a route the layer does not see (a field reassigned) is a named error at the walk.
do
  H.refused(ag, function() return nn.Sequential(2) end,
                "autograd: nn.Sequential: module 1 is not a module (got 2)")
  H.refused(ag, function() return nn.Sequential(nn.ReLU(), function(x) return x end) end,
                "autograd: nn.Sequential: module 2 is not a module (got a function)")
  local s = nn.Sequential(nn.ReLU())
  H.refused(ag, function() s:add("x") end, "autograd: nn.Sequential.add: module 2 is not a module (got \"x\")")
  H.refused(ag, function() s:add(s) end,
                "autograd: nn.Sequential.add: module 2 contains the Sequential itself (modules must not form a cycle)")
  local outer = nn.Sequential(s)
  H.refused(ag, function() s:add(outer) end, "module 2 contains the Sequential itself")
  H.eq(#s, 1, "a refused add added nothing")
  local Box = nn.class("Box", function(self, x) return self.inner(x) end,
    function(self, inner) self.inner = inner end)
  local b = Box(nn.ReLU())
  H.refused(ag, function() b.self_ref = b end,
                "autograd: nn: field \"self_ref\" cannot hold a module that contains this one")
  H.refused(ag, function() b.up = nn.Sequential(b) end, "cannot hold a module that contains this one")
  H.eq(rawget(b, "self_ref"), nil, "a refused field was not set")
  -- Shared modules (no cycle) are fine, and walked once.
  local lin = nn.Linear(2, 2, ag.generator(3))
  local shared = nn.Sequential(lin, nn.ReLU(), lin)
  H.eq(#shared:parameters(), 2, "a module used twice is no cycle")
  -- A field reassigned (not seen when it happens): a named error at the walk.
  b.inner = b
  H.refused(ag, function() local _ = b:parameters() end,
                "autograd: parameters(): a module contains itself (through child (inner))")
  H.refused(ag, function() local _ = b:eval() end, "autograd: eval(): a module contains itself")
  H.refused(ag, function() local _ = ag.optim.Adam(b) end, "a module contains itself")
  H.refused(ag, function() local _ = tostring(b) end, "autograd: tostring(): a module contains itself")
  b.inner = nn.ReLU()
  H.eq(tostring(b), "Box(\n  (inner): ReLU()\n)", "printing works again once the cycle is gone")
end

H.done("nn")
