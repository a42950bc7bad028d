-- End to end against PyTorch: a one-block causal-attention model built from the nn modules
-- (Embedding, LayerNorm, Linear, a module of one's own), trained for 6 Adam steps. The loss
-- and the gradients' sizes at each step must match PyTorch's (tests/model/generate.py, which
-- builds the same model from the same formula-made values) to float32 rounding.
local here = arg[0]:match("(.*/)") or "./"
local H = dofile(here .. "harness.lua")
local ag = require("autograd")
local nn, F = ag.nn, ag.nn.functional

-- The loss, then sum |grad| of E, P, g1, Wq, Wk, Wv, bo, Wout, per step, as PyTorch computes
-- them: tests/model/expected.json, written by tests/model/generate.py (the Go binding's model
-- test reads the same file).
local EXPECTED
do
  local f = assert(io.open(here .. "../../../tests/model/expected.json"))
  EXPECTED = require("cjson").decode(f:read("a")).steps
  f:close()
end

local V, D, L, B = 11, 8, 5, 3

-- 0.3 sin(1.7 i + seed), i = 0, 1, ... in row-major order.
local function values(shape, seed)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local v = {}
  for i = 0, n - 1 do v[#v + 1] = 0.3 * math.sin(1.7 * i + seed) end
  return ag.tensor(v):reshape(shape)
end
local function set(p, seed) ag.no_grad(function() p:copy_(values(p.shape, seed)) end) end

local Block = nn.class("Block", function(self, tok, mask)
    local h = self.emb(tok) + self.pos
    local x = self.ln1(h)
    local q, k, v = self.q(x), self.k(x), self.v(x)
    local att = (q:matmul(k:transpose(2, 3)) / math.sqrt(D)):masked_fill(mask, -math.huge):softmax(3)
    local h2 = h + self.o(att:matmul(v))
    return self.out(self.ln2(h2):gelu())
  end,
  function(self)
    self.emb = nn.Embedding(V, D)
    self.pos = ag.zeros(L, D):requires_grad_()
    self.ln1 = nn.LayerNorm(D)
    self.q = nn.Linear(D, D, {bias = false})
    self.k = nn.Linear(D, D, {bias = false})
    self.v = nn.Linear(D, D, {bias = false})
    self.o = nn.Linear(D, D)
    self.ln2 = nn.LayerNorm(D)
    self.out = nn.Linear(D, V, {bias = false})
  end)

local m = Block()
H.eq(#m:parameters(), 12, "pos, then the children's in assignment order")
set(m.emb.weight, 1); set(m.pos, 2); set(m.ln1.weight, 3); set(m.ln1.bias, 4)
set(m.q.weight, 5); set(m.k.weight, 6); set(m.v.weight, 7); set(m.o.weight, 8); set(m.o.bias, 9)
set(m.ln2.weight, 10); set(m.ln2.bias, 11); set(m.out.weight, 12)

local tok, tgt, mask = {}, {}, {}
for b = 0, B - 1 do
  tok[b + 1], tgt[b + 1] = {}, {}
  for l = 0, L - 1 do
    tok[b + 1][l + 1] = (b * 7 + l * 3) % V + 1 -- (1-based, as Lua's indices)
    tgt[b + 1][l + 1] = (b * 5 + l * 2 + 1) % V + 1
  end
end
for i = 1, L do
  mask[i] = {}
  for j = 1, L do mask[i][j] = j > i end
end
tok, tgt, mask = ag.tensor(tok), ag.tensor(tgt):reshape({B * L}), ag.tensor(mask)

-- |got - want| <= tol |want|: the small gradients (Wq's is ~4e-6 at first) count too.
local function rel(got, want, tol, what)
  H.check(math.abs(got - want) <= tol * math.abs(want),
          string.format("%s: %.9g, PyTorch %.9g", what, got, want))
end
local names = {"loss", "E", "P", "g1", "Wq", "Wk", "Wv", "bo", "Wout"}
local opt = ag.optim.Adam(m, {lr = 0.01})
for step, want in ipairs(EXPECTED) do
  opt:zero_grad(true)
  local logits = m(tok, mask)
  H.eq(logits.shape, {B, L, V})
  local loss = F.cross_entropy(logits:reshape({B * L, V}), tgt)
  loss:backward()
  local got = {loss:item()}
  for _, p in ipairs({m.emb.weight, m.pos, m.ln1.weight, m.q.weight, m.k.weight, m.v.weight,
                      m.o.bias, m.out.weight}) do
    got[#got + 1] = p.grad:abs():sum():item()
  end
  for i = 1, #want do rel(got[i], want[i], 2e-5, "step " .. step .. " " .. names[i]) end
  opt:step()
end

H.done("model")
