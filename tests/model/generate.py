#!/usr/bin/python3
"""Prints the expected figures of test_model.lua: a one-block causal-attention model trained by
PyTorch for 6 Adam steps. Regenerate with Debian's PyTorch 1.13:
    /usr/bin/python3 bindings/lua/tests/gen_model_expected.py
and paste the table into test_model.lua. Both sides build the same model from the same
formula-made values (init below), so no weights travel between them.
"""
import math

import torch
import torch.nn.functional as F

V, D, L, B, STEPS = 11, 8, 5, 3, 6


def init(shape, seed):
    n = math.prod(shape)
    v = [0.3 * math.sin(1.7 * i + seed) for i in range(n)]
    return torch.tensor(v, dtype=torch.float32).reshape(shape).requires_grad_()


E, P = init((V, D), 1), init((L, D), 2)
g1, b1 = init((D,), 3), init((D,), 4)
Wq, Wk, Wv, Wo = (init((D, D), s) for s in (5, 6, 7, 8))
bo = init((D,), 9)
g2, b2 = init((D,), 10), init((D,), 11)
Wout = init((V, D), 12)
params = [E, P, g1, b1, Wq, Wk, Wv, Wo, bo, g2, b2, Wout]
tok = torch.tensor([[(b * 7 + l * 3) % V for l in range(L)] for b in range(B)])
tgt = torch.tensor([[(b * 5 + l * 2 + 1) % V for l in range(L)] for b in range(B)])
mask = torch.tensor([[j > i for j in range(L)] for i in range(L)])
opt = torch.optim.Adam(params, lr=0.01)
rows = []
for step in range(STEPS):
    opt.zero_grad(set_to_none=True)
    h = F.embedding(tok, E) + P
    x = F.layer_norm(h, (D,), g1, b1)
    q, k, v = F.linear(x, Wq), F.linear(x, Wk), F.linear(x, Wv)
    att = (q.matmul(k.transpose(1, 2)) / math.sqrt(D)).masked_fill(mask, -math.inf).softmax(2)
    h2 = h + F.linear(att.matmul(v), Wo, bo)
    logits = F.linear(F.gelu(F.layer_norm(h2, (D,), g2, b2)), Wout)
    loss = F.cross_entropy(logits.reshape(B * L, V), tgt.reshape(B * L))
    loss.backward()
    rows.append([loss.item()] + [p.grad.abs().sum().item() for p in (E, P, g1, Wq, Wk, Wv, bo, Wout)])
    opt.step()
print("-- loss, then sum |grad| of E, P, g1, Wq, Wk, Wv, bo, Wout, per step (PyTorch %s)" %
      torch.__version__)
print("local EXPECTED = {")
for r in rows:
    print("  {" + ", ".join(repr(x) for x in r) + "},")
print("}")
