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

H.done("nn")
