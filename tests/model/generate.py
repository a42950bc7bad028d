#!/usr/bin/python3
"""Writes tests/model/expected.json: a one-block causal-attention model trained by PyTorch for
6 Adam steps, the loss and the sums of |grad| of eight parameters at each step. The Lua and Go
bindings' model tests (bindings/lua/tests/test_model.lua, bindings/go/nn/model_test.go) build
the same model from the same formula-made values (init below), so no weights travel between
them, and compare with this file. Regenerate with Debian's PyTorch 1.13 (byte for byte):
    /usr/bin/python3 tests/model/generate.py
"""
import json
import math
import os

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
out = {"pytorch": torch.__version__,
       "columns": ["loss", "E", "P", "g1", "Wq", "Wk", "Wv", "bo", "Wout"],
       "steps": rows}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected.json")
with open(path, "w") as f:  # (a step a line)
    f.write('{"pytorch": %s,\n "columns": %s,\n "steps": [\n%s\n ]}\n' % (
        json.dumps(out["pytorch"]), json.dumps(out["columns"]),
        ",\n".join("  " + json.dumps(r) for r in rows)))
