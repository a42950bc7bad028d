#!/usr/bin/python3
"""generate.py: writes the conformance cases (cases/*.json) with the expected values, gradients,
grad_fn names and errors computed by PyTorch 1.13. Run it with /usr/bin/python3 from anywhere;
rerunning it reproduces the files byte for byte (fixed seeds, stable order, repr() floats).

Each case is written as the steps of FORMAT.md and executed at the same time on torch by a
small interpreter (TORCH below maps each ABI function onto the torch expression it mirrors),
which fills in every expectation: outputs after each call, .grad of every leaf after each
backward, and the status of each step expected to fail (torch must fail there too, except for
the few ABI-only checks marked torch_ok=True).
"""
import contextlib
import json
import math
import os
import sys
import warnings
import zlib

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "cases")

# Tolerances per dtype, identical for every runner: |got - want| <= atol + rtol * |want|.
TOLERANCES = {
    "float32": {"rtol": 1e-5, "atol": 1e-6},
    "float64": {"rtol": 1e-10, "atol": 1e-12},
}

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
          "bool": torch.bool}
DTYPE_NAME = {v: k for k, v in DTYPES.items()}
FLOATS = ("float32", "float64")


# ---------------------------------------------------------------------------------------------
# Argument constructors (the arg objects of FORMAT.md)
# ---------------------------------------------------------------------------------------------
def fnum(x):
    """A float as the data files write it: repr() via json, or "nan"/"inf"/"-inf"."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def TS(*names):
    return {"ts": list(names)}


def DT(name):
    return {"dtype": name}


def RED(name):
    return {"reduction": name}


def FL(*names):
    return {"flags": list(names)}


def GEN(name):
    return {"gen": name}


def OPT(name):
    return {"opt": name}


NULL = {"null": True}


def encode(a):
    """Python value -> arg object: str = tensor name, float = f, int = i, [int] = ints."""
    if isinstance(a, dict):
        return a
    if a is None:
        return NULL
    if isinstance(a, str):
        return {"t": a}
    if isinstance(a, bool):
        return {"i": int(a)}
    if isinstance(a, int):
        return {"i": a}
    if isinstance(a, float):
        return {"f": fnum(a)}
    if isinstance(a, (list, tuple)) and all(isinstance(x, int) for x in a):
        return {"ints": list(a)}
    raise TypeError("cannot encode argument %r" % (a,))


def pyscalar(s):
    """The ABI's double scalars act as Python scalars: integral values as ints, others as
    floats (engine/dtype.c promo_add_scalar), which decides torch's type promotion."""
    return int(s) if math.isfinite(s) and s == math.trunc(s) else s


def dims_of(a, dims):
    """ABI dims: an empty list means every dimension."""
    return list(range(a.dim())) if len(dims) == 0 else list(dims)


def torch_slice(t, dim, start, end, step):
    idx = [slice(None)] * t.dim()
    idx[dim] = slice(start, end, step)
    return t[tuple(idx)]


def torch_backward(t, grad, flags):
    t.backward(grad, retain_graph="retain_graph" in flags or "create_graph" in flags,
               create_graph="create_graph" in flags)


def torch_grad(outputs, grad_outputs, inputs, flags):
    res = torch.autograd.grad(outputs, inputs, grad_outputs,
                              retain_graph="retain_graph" in flags or "create_graph" in flags,
                              create_graph="create_graph" in flags,
                              allow_unused="allow_unused" in flags)
    return list(res)


def torch_set_grad(t, g):
    t.grad = g


def torch_zero_grad(t):
    if t.grad is not None:
        t.grad.zero_()


def torch_set_lr(opt, lr):
    if lr < 0 or not math.isfinite(lr):
        raise ValueError("Invalid learning rate: %r" % lr)
    for group in opt.param_groups:
        group["lr"] = lr


def torch_requires_grad(t, v):
    t.requires_grad_(bool(v))


# The torch expression each ABI function mirrors (arguments decoded, outputs excluded).
TORCH = {
    # creation
    "ag_tensor_scalar": lambda v, dt: torch.tensor(v, dtype=dt),
    "ag_tensor_scalar_requires_grad":
        lambda v, dt, rg: torch.tensor(v, dtype=dt, requires_grad=bool(rg)),
    "ag_empty": lambda dt, shape: torch.empty(shape, dtype=dt),
    "ag_zeros": lambda dt, shape: torch.zeros(shape, dtype=dt),
    "ag_ones": lambda dt, shape: torch.ones(shape, dtype=dt),
    "ag_full": lambda dt, shape, v: torch.full(shape, v, dtype=dt),
    "ag_arange": lambda dt, a, b, s: torch.arange(a, b, s, dtype=dt),
    "ag_eye": lambda dt, n, m: torch.eye(n, m, dtype=dt),
    "ag_rand": lambda g, dt, shape: torch.rand(shape, dtype=dt),
    "ag_randn": lambda g, dt, shape: torch.randn(shape, dtype=dt),
    "ag_randint": lambda g, lo, hi, dt, shape: torch.randint(lo, hi, shape, dtype=dt),
    "ag_empty_like": torch.empty_like,
    "ag_zeros_like": torch.zeros_like,
    "ag_ones_like": torch.ones_like,
    "ag_full_like": lambda t, v: torch.full_like(t, v),
    "ag_rand_like": lambda g, t: torch.rand_like(t),
    "ag_randn_like": lambda g, t: torch.randn_like(t),
    "ag_generator_new": lambda seed: torch.Generator().manual_seed(seed),
    # tensor metadata and autograd
    "ag_tensor_item": lambda t: t.item(),
    "ag_tensor_item_int64": lambda t: int(t.item()),
    "ag_tensor_numel": lambda t: t.numel(),
    "ag_tensor_size": lambda t, d: t.size(d),
    "ag_tensor_set_requires_grad": torch_requires_grad,
    "ag_tensor_grad": lambda t: t.grad,
    "ag_tensor_set_grad": torch_set_grad,
    "ag_tensor_zero_grad": torch_zero_grad,
    "ag_tensor_retain_grad": lambda t: t.retain_grad(),
    "ag_tensor_detach": lambda t: t.detach(),
    "ag_backward": torch_backward,
    "ag_grad": torch_grad,
    # elementwise
    "ag_add": torch.add, "ag_sub": torch.sub, "ag_mul": torch.mul, "ag_div": torch.div,
    "ag_pow": torch.pow, "ag_maximum": torch.maximum, "ag_minimum": torch.minimum,
    "ag_add_scalar": lambda a, s: a + pyscalar(s),
    "ag_sub_scalar": lambda a, s: a - pyscalar(s),
    "ag_rsub_scalar": lambda a, s: pyscalar(s) - a,
    "ag_mul_scalar": lambda a, s: a * pyscalar(s),
    "ag_div_scalar": lambda a, s: a / pyscalar(s),
    "ag_rdiv_scalar": lambda a, s: pyscalar(s) / a,
    "ag_pow_scalar": lambda a, s: a ** pyscalar(s),
    "ag_rpow_scalar": lambda a, s: pyscalar(s) ** a,
    "ag_neg": torch.neg, "ag_exp": torch.exp, "ag_log": torch.log, "ag_log1p": torch.log1p,
    "ag_expm1": torch.expm1, "ag_sqrt": torch.sqrt, "ag_rsqrt": torch.rsqrt, "ag_abs": torch.abs,
    "ag_sin": torch.sin, "ag_cos": torch.cos, "ag_tanh": torch.tanh, "ag_sigmoid": torch.sigmoid,
    "ag_relu": torch.relu, "ag_silu": F.silu,
    "ag_leaky_relu": lambda a, s: F.leaky_relu(a, s),
    "ag_gelu": lambda a, tanh: F.gelu(a, approximate="tanh" if tanh else "none"),
    "ag_softplus": lambda a, beta, th: F.softplus(a, pyscalar(beta), pyscalar(th)),
    "ag_clamp": lambda a, lo, hi: torch.clamp(a, pyscalar(lo), pyscalar(hi)),
    "ag_clamp_min": lambda a, lo: torch.clamp(a, min=pyscalar(lo)),
    "ag_clamp_max": lambda a, hi: torch.clamp(a, max=pyscalar(hi)),
    "ag_where": torch.where,
    "ag_eq": torch.eq, "ag_ne": torch.ne, "ag_lt": torch.lt, "ag_le": torch.le,
    "ag_gt": torch.gt, "ag_ge": torch.ge,
    "ag_eq_scalar": lambda a, s: torch.eq(a, pyscalar(s)),
    "ag_ne_scalar": lambda a, s: torch.ne(a, pyscalar(s)),
    "ag_lt_scalar": lambda a, s: torch.lt(a, pyscalar(s)),
    "ag_le_scalar": lambda a, s: torch.le(a, pyscalar(s)),
    "ag_gt_scalar": lambda a, s: torch.gt(a, pyscalar(s)),
    "ag_ge_scalar": lambda a, s: torch.ge(a, pyscalar(s)),
    # reductions
    "ag_sum": torch.sum,
    "ag_sum_dims": lambda a, d, k: torch.sum(a, dims_of(a, d), keepdim=bool(k)),
    "ag_mean": torch.mean,
    "ag_mean_dims": lambda a, d, k: torch.mean(a, dims_of(a, d), keepdim=bool(k)),
    "ag_max": torch.max, "ag_min": torch.min,
    "ag_max_dim": lambda a, d, k: list(torch.max(a, d, keepdim=bool(k))),
    "ag_min_dim": lambda a, d, k: list(torch.min(a, d, keepdim=bool(k))),
    "ag_amax": lambda a, d, k: torch.amax(a, dims_of(a, d), keepdim=bool(k)),
    "ag_amin": lambda a, d, k: torch.amin(a, dims_of(a, d), keepdim=bool(k)),
    "ag_var": lambda a, d, c, k: torch.var(a, dims_of(a, d), correction=c, keepdim=bool(k)),
    "ag_std": lambda a, d, c, k: torch.std(a, dims_of(a, d), correction=c, keepdim=bool(k)),
    "ag_logsumexp": lambda a, d, k: torch.logsumexp(a, dims_of(a, d), keepdim=bool(k)),
    "ag_norm": lambda a, p, d, k: torch.norm(a, pyscalar(p), dims_of(a, d), keepdim=bool(k)),
    "ag_argmax": lambda a, d, k: torch.argmax(a, d, keepdim=bool(k)),
    "ag_argmin": lambda a, d, k: torch.argmin(a, d, keepdim=bool(k)),
    "ag_argmax_all": torch.argmax, "ag_argmin_all": torch.argmin,
    # linear algebra
    "ag_matmul": torch.matmul, "ag_linear": F.linear,
    # views and shapes
    "ag_reshape": lambda t, s: t.reshape(s),
    "ag_view": lambda t, s: t.view(s),
    "ag_transpose": lambda t, a, b: t.transpose(a, b),
    "ag_t": lambda t: t.t(),
    "ag_permute": lambda t, d: t.permute(d),
    "ag_expand": lambda t, s: t.expand(s),
    "ag_slice": torch_slice,
    "ag_narrow": lambda t, d, s, n: t.narrow(d, s, n),
    "ag_select": lambda t, d, i: t.select(d, i),
    "ag_squeeze": lambda t: t.squeeze(),
    "ag_squeeze_dim": lambda t, d: t.squeeze(d),
    "ag_unsqueeze": lambda t, d: t.unsqueeze(d),
    "ag_flatten": lambda t, s, e: t.flatten(s, e),
    "ag_contiguous": lambda t: t.contiguous(),
    "ag_clone": lambda t: t.clone(),
    "ag_to_dtype": lambda t, dt: t.to(dt),
    # indexing and joining
    "ag_index_select": lambda t, d, i: t.index_select(d, i),
    "ag_gather": lambda t, d, i: torch.gather(t, d, i),
    "ag_scatter_add": lambda t, d, i, s: torch.scatter_add(t, d, i, s),
    "ag_masked_fill": lambda t, m, v: t.masked_fill(m, pyscalar(v)),
    "ag_cat": lambda ts, d: torch.cat(ts, d),
    "ag_stack": lambda ts, d: torch.stack(ts, d),
    "ag_split_count": lambda t, s, d: len(torch.split(t, s, d)),
    "ag_split": lambda t, s, d: list(torch.split(t, s, d)),
    "ag_chunk_count": lambda t, c, d: len(torch.chunk(t, c, d)),
    "ag_chunk": lambda t, c, d: list(torch.chunk(t, c, d)),
    # neural-network functions
    "ag_softmax": lambda t, d: F.softmax(t, d),
    "ag_log_softmax": lambda t, d: F.log_softmax(t, d),
    "ag_cross_entropy": lambda x, y, w, r, ii, ls: F.cross_entropy(
        x, y, w, reduction=r, ignore_index=ii, label_smoothing=ls),
    "ag_nll_loss": lambda x, y, w, r, ii: F.nll_loss(x, y, w, reduction=r, ignore_index=ii),
    "ag_mse_loss": lambda x, y, r: F.mse_loss(x, y, reduction=r),
    "ag_binary_cross_entropy_with_logits": lambda x, y, w, pw, r:
        F.binary_cross_entropy_with_logits(x, y, w, reduction=r, pos_weight=pw),
    "ag_dropout": lambda g, t, p, training: F.dropout(t, p, bool(training)),
    "ag_layer_norm": lambda x, s, w, b, eps: F.layer_norm(x, s, w, b, eps),
    "ag_embedding": lambda w, i: F.embedding(i, w),
    # in place
    "ag_add_": lambda t, o: t.add_(o), "ag_sub_": lambda t, o: t.sub_(o),
    "ag_mul_": lambda t, o: t.mul_(o),
    "ag_add_scalar_": lambda t, s: t.add_(pyscalar(s)),
    "ag_mul_scalar_": lambda t, s: t.mul_(pyscalar(s)),
    "ag_zero_": lambda t: t.zero_(), "ag_fill_": lambda t, v: t.fill_(pyscalar(v)),
    "ag_copy_": lambda t, s: t.copy_(s),
    # optimizers
    "ag_optimizer_sgd": lambda ps, lr, m, d, wd, nest: torch.optim.SGD(
        ps, lr=lr, momentum=m, dampening=d, weight_decay=wd, nesterov=bool(nest)),
    "ag_optimizer_adam": lambda ps, lr, b1, b2, eps, wd, ams: torch.optim.Adam(
        ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=bool(ams)),
    "ag_optimizer_adamw": lambda ps, lr, b1, b2, eps, wd, ams: torch.optim.AdamW(
        ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=bool(ams)),
    "ag_optimizer_step": lambda o: o.step(),
    "ag_optimizer_zero_grad": lambda o, none: o.zero_grad(set_to_none=bool(none)),
    "ag_optimizer_get_lr": lambda o: o.param_groups[0]["lr"],
    "ag_optimizer_set_lr": torch_set_lr,
}

# What each function gives back besides its status (default: one tensor).
#   "": nothing; "tt": two tensors; "T": a list of tensors; "v": a scalar value;
#   "opt": an optimizer; "gen": a generator.
OUTPUTS = {fn: "" for fn in (
    "ag_add_", "ag_sub_", "ag_mul_", "ag_add_scalar_", "ag_mul_scalar_", "ag_zero_", "ag_fill_",
    "ag_copy_", "ag_backward", "ag_tensor_set_requires_grad", "ag_tensor_retain_grad",
    "ag_tensor_set_grad", "ag_tensor_zero_grad", "ag_optimizer_step", "ag_optimizer_zero_grad",
    "ag_optimizer_set_lr")}
OUTPUTS.update({"ag_max_dim": "tt", "ag_min_dim": "tt", "ag_split": "T", "ag_chunk": "T",
                "ag_grad": "T", "ag_split_count": "v", "ag_chunk_count": "v",
                "ag_tensor_item": "v", "ag_tensor_item_int64": "v", "ag_tensor_numel": "v",
                "ag_tensor_size": "v", "ag_optimizer_get_lr": "v",
                "ag_optimizer_sgd": "opt", "ag_optimizer_adam": "opt",
                "ag_optimizer_adamw": "opt", "ag_generator_new": "gen"})


# Scalar results that are doubles (the others are integers).
FLOAT_VALUES = ("ag_tensor_item", "ag_optimizer_get_lr")
# Gradients: which op made them last is the engine's business, so their grad_fn is not checked.
NO_GRAD_FN_CHECK = ("ag_tensor_grad", "ag_grad")


# ---------------------------------------------------------------------------------------------
# The case builder: records steps and runs them on torch
# ---------------------------------------------------------------------------------------------
def flat_list(t):
    """t's values as a flat list; a zero gradient that PyTorch never materialised (a
    ZeroTensor, e.g. abs's second derivative) as zeros: tolist() refuses it."""
    if t._is_zerotensor():
        return [0] * t.numel() if t.dtype in (torch.int64, torch.bool) else [0.0] * t.numel()
    return t.detach().reshape(-1).tolist()


def values_of(t):
    dt = DTYPE_NAME[t.dtype]
    flat = flat_list(t)
    if dt in FLOATS:
        return [fnum(x) for x in flat]
    if dt == "bool":
        return [bool(x) for x in flat]
    return [int(x) for x in flat]


def node_name(t):
    return type(t.grad_fn).__name__ if t.grad_fn is not None else None


class Case:
    def __init__(self, name, tolerances=None):
        self.name = name
        self.steps = []
        self.env = {}          # name -> torch object (tensor, optimizer, generator) or None
        self.kind = {}         # name -> "tensor" | "opt" | "gen"
        self.counter = 0
        self.gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        self.tolerances = tolerances

    # ---- names and inputs ----
    def fresh(self, prefix="t"):
        self.counter += 1
        return "%s%d" % (prefix, self.counter)

    def bind(self, name, obj, kind):
        self.env[name] = obj
        self.kind[name] = kind

    def tensor(self, data, shape=None, dtype="float32", rg=False, name=None):
        """A tensor from values (a list, or a torch tensor whose values are taken)."""
        if isinstance(data, torch.Tensor):
            if shape is None:
                shape = list(data.shape)
            data = data.reshape(-1).tolist()
        if shape is None:
            shape = [len(data)]
        name = name or self.fresh("x" if rg else "c")
        # clone: a fresh tensor, not a view of the flat one (in-place ops treat views apart)
        t = torch.tensor(data, dtype=DTYPES[dtype]).reshape(shape).clone()
        if rg:
            t.requires_grad_(True)
        self.bind(name, t, "tensor")
        step = {"op": "tensor", "out": name, "dtype": dtype, "shape": list(shape),
                "data": values_of(t)}
        if rg:
            step["requires_grad"] = True
        self.steps.append(step)
        return name

    def grid(self, shape, lo=-2.0, hi=2.0, uniq=False, nonzero=False, step=1 / 64):
        """Random values on a grid of `step` in [lo, hi]: exact in float32, short in repr."""
        n = 1
        for s in shape:
            n *= s
        k0, k1 = int(round(lo / step)), int(round(hi / step))
        pool = [k for k in range(k0, k1 + 1) if not (nonzero and k == 0)]
        if uniq:
            assert len(pool) >= n
            perm = torch.randperm(len(pool), generator=self.gen)[:n].tolist()
            ks = [pool[i] for i in perm]
        else:
            idx = torch.randint(0, len(pool), (n,), generator=self.gen).tolist()
            ks = [pool[i] for i in idx]
        return torch.tensor([k * step for k in ks], dtype=torch.float64).reshape(shape)

    def rand(self, shape, dtype="float32", rg=True, name=None, **kw):
        return self.tensor(self.grid(shape, **kw), list(shape), dtype, rg, name)

    def ints(self, data, shape=None, name=None):
        return self.tensor(data, shape, "int64", False, name)

    def bools(self, data, shape=None, name=None):
        return self.tensor(data, shape, "bool", False, name)

    # ---- calls ----
    def decode(self, a):
        if "t" in a:
            return self.env[a["t"]]
        if "null" in a:
            return None
        if "f" in a:
            return float(a["f"])
        if "i" in a:
            return a["i"]
        if "ints" in a:
            return list(a["ints"])
        if "ts" in a:
            return [self.env[n] if n is not None else None for n in a["ts"]]
        if "dtype" in a:
            return DTYPES[a["dtype"]]
        if "reduction" in a:
            return a["reduction"]
        if "flags" in a:
            return set(a["flags"])
        if "gen" in a:
            return self.env[a["gen"]]
        if "opt" in a:
            return self.env[a["opt"]]
        raise ValueError(a)

    def out_names(self, fn, out, n_results=None):
        kind = OUTPUTS.get(fn, "t")
        if out is not None:
            return out
        if kind == "t":
            return self.fresh()
        if kind == "tt":
            return [self.fresh(), self.fresh()]
        if kind == "T":
            return [self.fresh() for _ in range(n_results)]
        if kind == "opt":
            return self.fresh("opt")
        if kind == "gen":
            return self.fresh("gen")
        return None

    def call(self, fn, *args, out=None, expect=True, data=True, extra=None):
        """Runs fn on torch, records the call and (unless expect=False) an expect step for
        each tensor it returns. Returns the output name(s), or the scalar value."""
        enc = [encode(a) for a in args]
        res = TORCH[fn](*[self.decode(a) for a in enc])
        kind = OUTPUTS.get(fn, "t")
        step = {"op": "call", "fn": fn, "args": enc}
        names = None
        if kind == "v":
            step["value"] = fnum(res) if fn in FLOAT_VALUES else int(res)
        elif kind:
            names = self.out_names(fn, out, len(res) if isinstance(res, list) else None)
            step["out"] = names
        self.steps.append(step)
        if kind in ("t", "tt", "T"):
            lst = names if isinstance(names, list) else [names]
            objs = res if isinstance(res, list) else [res]
            assert len(lst) == len(objs), (fn, lst)
            for n, o in zip(lst, objs):
                if n is None:
                    continue
                self.bind(n, o, "tensor")
                if expect:
                    kw = dict(extra or {})
                    if fn in NO_GRAD_FN_CHECK:
                        kw["grad_fn"] = False
                    self.expect(n, data=data, **kw)
        elif kind in ("opt", "gen"):
            self.bind(names, res, kind)
        return res if kind == "v" else names

    def err(self, fn, *args, status, contains=None, out=None, torch_ok=False):
        """A call that must fail with `status`; torch must fail too unless torch_ok (for the
        few checks that are the ABI's own, e.g. wrong counts)."""
        enc = [encode(a) for a in args]
        try:
            TORCH[fn](*[self.decode(a) for a in enc])
            raised = False
        except Exception:  # noqa: BLE001 -- torch's exception types vary by op
            raised = True
        if not raised and not torch_ok:
            raise AssertionError("%s: torch did not fail on %s" % (self.name, fn))
        step = {"op": "call", "fn": fn, "args": enc}
        kind = OUTPUTS.get(fn, "t")
        if kind and kind != "v":
            if out is None:
                out = {"t": "err", "tt": ["err", "err_i"], "opt": "err", "gen": "err"}.get(kind)
            assert out is not None, "give out names for %s" % fn
            step["out"] = out
        step["error"] = {"status": status}
        if contains:
            step["error"]["message_contains"] = contains
        if not raised:
            step["error"]["torch_accepts"] = True  # informational: an ABI-only check
        self.steps.append(step)

    def backward(self, root, grad=None, flags=(), check=True):
        self.call("ag_backward", root, grad, FL(*flags))
        if check:
            self.expect_grads()

    def grad(self, outputs, inputs, grad_outputs=None, flags=(), out=None, extra=None):
        go = NULL if grad_outputs is None else TS(*grad_outputs)
        return self.call("ag_grad", TS(*outputs), go, TS(*inputs), FL(*flags), out=out,
                         extra=extra)

    # ---- expectations ----
    def expect(self, name, data=True, version=False, is_leaf=False, grad_fn=True, layout=False):
        t = self.env[name]
        step = {"op": "expect", "t": name}
        if t is None:
            step["none"] = True
        else:
            step["dtype"] = DTYPE_NAME[t.dtype]
            step["shape"] = list(t.shape)
            if data:
                step["data"] = values_of(t)
            step["requires_grad"] = t.requires_grad
            if grad_fn:
                step["grad_fn"] = node_name(t)
            if is_leaf:
                step["is_leaf"] = t.is_leaf
            if version:
                step["version"] = t._version
            if layout:
                step["strides"] = list(t.stride())
                step["storage_offset"] = t.storage_offset()
                step["is_contiguous"] = t.is_contiguous()
        self.steps.append(step)

    def expect_grad(self, name, layout=False):
        g = self.env[name].grad
        step = {"op": "expect_grad", "t": name}
        if g is None:
            step["none"] = True
        else:
            step.update({"dtype": DTYPE_NAME[g.dtype], "shape": list(g.shape),
                         "data": values_of(g), "requires_grad": g.requires_grad,
                         "grad_fn": node_name(g)})
            if layout:
                step.update({"strides": list(g.stride()), "storage_offset": g.storage_offset(),
                             "is_contiguous": g.is_contiguous()})
        self.steps.append(step)

    def expect_grads(self):
        """.grad of every leaf that requires grad and of every tensor that retains it."""
        for name in sorted(self.env, key=self.order):
            t = self.env[name]
            if self.kind[name] != "tensor" or t is None:
                continue
            if (t.is_leaf and t.requires_grad) or (not t.is_leaf and t.retains_grad):
                self.expect_grad(name)

    def order(self, name):
        return list(self.env).index(name)

    def release(self, name):
        self.steps.append({"op": "release", "name": name})
        del self.env[name]
        del self.kind[name]

    @contextlib.contextmanager
    def no_grad(self):
        outer = self.steps
        self.steps = []
        try:
            with torch.no_grad():
                yield
        finally:
            inner, self.steps = self.steps, outer
            self.steps.append({"op": "no_grad", "steps": inner})

    def json(self):
        d = {"name": self.name}
        if self.tolerances:
            d["tolerances"] = self.tolerances
        d["steps"] = self.steps
        return d


# ---------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------
def grad_like(c, name, **kw):
    """A random gradient for a non-scalar output (tests the vector-Jacobian product)."""
    t = c.env[name]
    return c.tensor(c.grid(list(t.shape), **kw), list(t.shape), DTYPE_NAME[t.dtype])


def bwd(c, y):
    """Backward from y: an implicit 1 for one-element outputs, else a random grad."""
    if c.env[y].numel() == 1:
        c.backward(y)
    else:
        c.backward(y, grad_like(c, y))


def unary_case(name, fn, shape, dtype, extra=(), **kw):
    c = Case(name)
    a = c.rand(shape, dtype, **kw)
    y = c.call(fn, a, *extra)
    bwd(c, y)
    return c


def binary_case(name, fn, sa, sb, dtype, ka=None, kb=None, rg=(True, True)):
    c = Case(name)
    da, db = (dtype, dtype) if isinstance(dtype, str) else dtype
    a = c.rand(sa, da, rg=rg[0] and da in FLOATS, **(ka or {}))
    b = c.rand(sb, db, rg=rg[1] and db in FLOATS, **(kb or {}))
    y = c.call(fn, a, b)
    if c.env[y].requires_grad:
        bwd(c, y)
    return c


def fam_arith():
    cases = []
    pos = {"lo": 0.25, "hi": 2.0}
    nz = {"nonzero": True}
    for dt in FLOATS:
        for fn in ("ag_add", "ag_sub", "ag_mul", "ag_div", "ag_pow"):
            op = fn[3:]
            ka = pos if fn == "ag_pow" else None
            kb = nz if fn == "ag_div" else ({"lo": -2, "hi": 2.5} if fn == "ag_pow" else None)
            cases.append(binary_case("%s/same/%s" % (op, dt), fn, [2, 3], [2, 3], dt, ka, kb))
            cases.append(binary_case("%s/broadcast_row/%s" % (op, dt), fn, [2, 3], [3], dt, ka, kb))
            cases.append(binary_case("%s/broadcast_outer/%s" % (op, dt), fn, [2, 1], [1, 3], dt,
                                     ka, kb))
            cases.append(binary_case("%s/scalar_tensor/%s" % (op, dt), fn, [2, 2], [], dt, ka, kb))
        cases.append(binary_case("add/broadcast_3d/%s" % dt, "ag_add", [2, 1, 4], [3, 1], dt))
        cases.append(binary_case("mul/one_grad/%s" % dt, "ag_mul", [3], [3], dt, rg=(True, False)))
        for fn, s in (("ag_add_scalar", 1.5), ("ag_sub_scalar", 0.75), ("ag_rsub_scalar", 2.5),
                      ("ag_mul_scalar", -3.0), ("ag_div_scalar", 4.0), ("ag_rdiv_scalar", 1.5),
                      ("ag_pow_scalar", 3.0), ("ag_pow_scalar", 0.5), ("ag_rpow_scalar", 2.0)):
            kw = pos if fn in ("ag_pow_scalar", "ag_rdiv_scalar") else {}
            cases.append(unary_case("%s/%g/%s" % (fn[3:], s, dt), fn, [2, 3], dt, (s,), **kw))
        cases.append(unary_case("neg/%s" % dt, "ag_neg", [2, 3], dt))
    # dtype promotion
    cases.append(binary_case("add/promote_f32_f64", "ag_add", [2, 3], [3], ("float32", "float64")))
    cases.append(binary_case("mul/promote_f64_f32", "ag_mul", [2, 3], [2, 3],
                             ("float64", "float32")))
    for fn in ("ag_add", "ag_sub", "ag_mul", "ag_div"):
        c = Case("%s/int64" % fn[3:])
        a = c.ints([5, -3, 7, 0, 2, 9], [2, 3])
        b = c.ints([2, 4, -2] if fn != "ag_div" else [2, 4, -3], [3])
        c.call(fn, a, b)
        cases.append(c)
    c = Case("add/int64_float32")
    a = c.ints([1, 2, 3])
    b = c.rand([3], "float32")
    y = c.call("ag_add", a, b)
    bwd(c, y)
    cases.append(c)
    c = Case("add/bool_bool")
    c.call("ag_add", c.bools([True, False, True, False]), c.bools([True, True, False, False]))
    cases.append(c)
    c = Case("mul/float32_0d_float64")
    a = c.rand([2, 2], "float32")
    b = c.tensor([2.5], [], "float64", rg=True)
    y = c.call("ag_mul", a, b)
    bwd(c, y)
    cases.append(c)
    c = Case("pow/int64")
    c.call("ag_pow", c.ints([2, 3, -2]), c.ints([3, 2, 3]))
    cases.append(c)
    for fn, s in (("ag_add_scalar", 2.0), ("ag_add_scalar", 2.5), ("ag_mul_scalar", 3.0),
                  ("ag_div_scalar", 2.0), ("ag_pow_scalar", 2.0), ("ag_rsub_scalar", 1.0)):
        c = Case("%s/int64/%g" % (fn[3:], s))
        c.call(fn, c.ints([1, -2, 3, 4]), s)
        cases.append(c)
    # special values
    c = Case("div/by_zero/float32")
    c.call("ag_div", c.tensor([1.0, -1.0, 0.0, 2.0]), c.tensor([0.0, 0.0, 0.0, -0.0]))
    cases.append(c)
    c = Case("pow/negative_base_fraction/float64")
    c.call("ag_pow", c.tensor([-2.0, 4.0, 0.0], dtype="float64"),
           c.tensor([0.5, 0.5, 2.0], dtype="float64"))
    cases.append(c)
    c = Case("add/nan_inf/float32")
    c.call("ag_add", c.tensor([float("nan"), float("inf"), 1.0, float("-inf")]),
           c.tensor([1.0, float("-inf"), float("inf"), -1.0]))
    cases.append(c)
    c = Case("pow_scalar/zero_base_grad/float64")
    x = c.tensor([0.0, 1.5, 2.0], dtype="float64", rg=True)
    y = c.call("ag_pow_scalar", x, 2.0)
    bwd(c, y)
    cases.append(c)
    c = Case("pow_scalar/exponent_zero/float32")
    x = c.rand([3], "float32")
    y = c.call("ag_pow_scalar", x, 0.0)
    bwd(c, y)
    cases.append(c)
    # a chain
    for dt in FLOATS:
        c = Case("chain/mul_add_div/%s" % dt)
        a = c.rand([3, 2], dt)
        b = c.rand([2], dt, nonzero=True)
        y = c.call("ag_mul", a, b)
        z = c.call("ag_add_scalar", y, 1.0)
        w = c.call("ag_div", z, b)
        s = c.call("ag_sum", w)
        c.backward(s)
        cases.append(c)
    # An operand of another dtype is converted first (.to(): a dense copy, in its own order
    # where it has one, contiguous across broadcast dims), and that copy orders the result:
    # an expanded int64 operand makes it contiguous, where the transposed float one alone
    # would transpose it; where converts its values the same way.
    lay = {"layout": True}
    for dt in FLOATS:
        c = Case("mixed_dtype/expanded_int64_layout/%s" % dt)
        xe = c.call("ag_expand", c.ints([3, -1], [1, 2]), [2, 2])
        yt = c.call("ag_t", c.rand([2, 2], dt))
        c.call("ag_add", xe, yt, extra=lay)
        c.call("ag_maximum", yt, xe, extra=lay)
        c.call("ag_where", c.bools([True, False], [2]), xe, yt, extra=lay)
        cases.append(c)
    return cases


UNARY = [
    # fn, input kwargs, extra args
    ("ag_exp", {}, ()), ("ag_log", {"lo": 0.125, "hi": 3}, ()), ("ag_log1p", {"lo": -0.75}, ()),
    ("ag_expm1", {}, ()), ("ag_sqrt", {"lo": 0.125, "hi": 4}, ()),
    ("ag_rsqrt", {"lo": 0.125, "hi": 4}, ()), ("ag_abs", {"nonzero": True}, ()),
    ("ag_sin", {}, ()), ("ag_cos", {}, ()), ("ag_tanh", {}, ()), ("ag_sigmoid", {}, ()),
    ("ag_relu", {"nonzero": True}, ()), ("ag_silu", {}, ()),
    ("ag_leaky_relu", {"nonzero": True}, (0.01,)), ("ag_leaky_relu", {"nonzero": True}, (0.2,)),
    ("ag_gelu", {}, (0,)), ("ag_gelu", {}, (1,)),
    ("ag_softplus", {}, (1.0, 20.0)), ("ag_softplus", {"lo": -3, "hi": 3}, (2.0, 1.0)),
    ("ag_clamp", {}, (-0.5, 0.75)), ("ag_clamp_min", {}, (0.25,)), ("ag_clamp_max", {}, (-0.25,)),
]


def fam_unary():
    cases = []
    for dt in FLOATS:
        for fn, kw, extra in UNARY:
            name = fn[3:] + "".join("/%g" % e for e in extra) + "/" + dt
            cases.append(unary_case(name, fn, [3, 4], dt, extra, **kw))
    # edge values (exact points where the derivative is a convention)
    for dt in FLOATS:
        for fn, data, extra in (
                ("ag_relu", [-1.0, 0.0, 2.0], ()), ("ag_abs", [-1.5, 0.0, 2.0], ()),
                ("ag_clamp", [-1.0, -0.5, 0.0, 0.5, 1.0], (-0.5, 0.5)),
                ("ag_clamp_min", [-1.0, 0.0, 1.0], (0.0,)),
                ("ag_clamp_max", [-1.0, 0.0, 1.0], (0.0,)),
                ("ag_leaky_relu", [-2.0, 0.0, 2.0], (0.1,)),
                ("ag_sqrt", [0.0, 1.0, 4.0], ()), ("ag_log", [0.0, 1.0, 0.5], ()),
                ("ag_rsqrt", [0.0, 0.25, 4.0], ()),
                ("ag_softplus", [-30.0, 0.0, 19.5, 20.5, 30.0], (1.0, 20.0)),
                ("ag_sigmoid", [-100.0, 0.0, 100.0], ()), ("ag_tanh", [-30.0, 0.0, 30.0], ()),
                ("ag_exp", [-200.0, 0.0, 100.0], ())):
            c = Case("%s/edge/%s" % (fn[3:], dt))
            x = c.tensor(data, dtype=dt, rg=True)
            y = c.call(fn, x, *extra)
            bwd(c, y)
            cases.append(c)
    # softplus's gradient far below 0 is the tiny e^(beta x) (PyTorch's z / (z + 1)), not
    # sigmoid's 0 once exp(-beta x) overflows; compared with no absolute tolerance
    for dt, data in (("float32", [-100.0, -90.0, -80.0, -30.0]),
                     ("float64", [-745.5, -740.0, -720.0, -700.0, -30.0])):
        c = Case("softplus/far_negative/%s" % dt,
                 tolerances={dt: {"rtol": TOLERANCES[dt]["rtol"], "atol": 0.0}})
        x = c.tensor(data, dtype=dt, rg=True)
        bwd(c, c.call("ag_softplus", x, 1.0, 20.0))
        cases.append(c)
    for fn in ("ag_log", "ag_sqrt"):
        c = Case("%s/negative_nan/float32" % fn[3:])
        c.call(fn, c.tensor([-1.0, 1.0]))
        cases.append(c)
    c = Case("clamp/nan_input/float32")
    c.call("ag_clamp", c.tensor([float("nan"), 2.0, -2.0]), -1.0, 1.0)
    cases.append(c)
    # softplus's beta 0 or NaN is no error (inf, NaN, as PyTorch computes them); a float32
    # parameter beyond float32's range is
    for beta in (0.0, math.nan):
        c = Case("softplus/beta_%s/float32" % ("nan" if math.isnan(beta) else "0"))
        y = c.call("ag_softplus", c.tensor([-2.0, 0.0, 1.0], rg=True), beta, 20.0)
        bwd(c, y)
        cases.append(c)
    c = Case("param_overflow/float32")
    x = c.tensor([-2.0, 0.0, 1.0], rg=True)
    c.err("ag_leaky_relu", x, 1e39, status="AG_EINVAL",
          contains="value cannot be converted to type float without overflow")
    c.err("ag_softplus", x, 1.0, 1e39, status="AG_EINVAL",
          contains="value cannot be converted to type float without overflow")
    c.call("ag_leaky_relu", c.tensor([-2.0, 0.0, 1.0], dtype="float64"), 1e39)
    cases.append(c)
    # an integral input cast by its bounds keeps its layout (PyTorch's clamp does)
    c = Case("clamp/int64_transposed_layout")
    xt = c.call("ag_t", c.ints([1, -2, 3, 4, 0, -1], [2, 3]))
    lay = {"layout": True}
    c.call("ag_clamp", xt, -0.5, 0.5, extra=lay)
    c.call("ag_clamp_min", xt, 0.5, extra=lay)
    c.call("ag_clamp_max", c.call("ag_t", c.bools([1, 0, 1, 1, 0, 0], [2, 3])), 0.5, extra=lay)
    cases.append(c)
    c = Case("clamp/lo_above_hi/float32")
    c.call("ag_clamp", c.tensor([-2.0, 0.5, 3.0]), 1.0, 0.0)
    cases.append(c)
    # integer inputs: neg and abs stay int64, the transcendental ones give float32
    for fn in ("ag_neg", "ag_abs", "ag_exp", "ag_sqrt", "ag_sigmoid", "ag_relu"):
        c = Case("%s/int64" % fn[3:])
        c.call(fn, c.ints([-2, 0, 3]))
        cases.append(c)
    # second derivatives through unary chains
    for fn in ("ag_tanh", "ag_sigmoid", "ag_exp", "ag_sin"):
        c = Case("%s/double_backward/float64" % fn[3:])
        x = c.rand([4], "float64")
        y = c.call(fn, x)
        s = c.call("ag_sum", y)
        (g,) = c.grad([s], [x], flags=("create_graph",))
        gs = c.call("ag_sum", g)
        c.backward(gs)
        cases.append(c)
    # second derivatives whose zeros have a layout of their own: abs's grad * sgn(x) gives
    # SgnBackward0, whose zeros (a ZeroTensor) are contiguous whatever x's layout, and a
    # sum with another gradient takes that one's layout; pow's exponent 0 (reached from
    # exponent 1) gives contiguous zeros_like(self); leaky_relu's second node gives
    # zeros_like(grad), in the incoming gradient's layout, not the input's. x is transposed
    # on the way in, the weights give the gradients other layouts.
    w43 = [-1.5, 0.0, 0.5, -1.0, -1.0, 0.5, 1.0, 0.0, 1.5, 0.0, 1.5, -1.0]
    w34 = [0.25, 0.5, -1.0, 1.0, 0.75, 1.25, 0.5, 0.25, -0.5, 0.5, 1.75, -0.25]
    chains = (("abs", lambda c, v: c.call("ag_abs", v), False),
              ("abs_pow", lambda c, v: c.call("ag_pow_scalar", c.call("ag_abs", v), 1.5), False),
              ("pow1", lambda c, v: c.call("ag_pow_scalar", v, 1.0), False),
              ("leaky_relu", lambda c, v: c.call("ag_leaky_relu", v, 0.1), True))
    for name, chain, w2_t in chains:
        c = Case("%s/double_backward_layout/float32" % name)
        x = c.tensor([3.5, 2.5, -0.25, -2.5, 4.5, 1.5, 2.5, -0.5, 2.0, -1.5, -4.5, 0.5],
                     [4, 3], rg=True)
        y = chain(c, c.call("ag_transpose", x, 0, -1))
        s = c.call("ag_sum", c.call("ag_mul", y, c.tensor(w34, [3, 4])))
        (g,) = c.grad([s], [x], flags=("create_graph",), extra={"layout": True})
        w2 = c.call("ag_t", c.tensor(w34, [3, 4])) if w2_t else c.tensor(w43, [4, 3])
        s2 = c.call("ag_sum", c.call("ag_mul", g, w2))
        c.grad([s2], [x], extra={"layout": True})
        cases.append(c)
    return cases


def fam_compare():
    cases = []
    for fn in ("ag_eq", "ag_ne", "ag_lt", "ag_le", "ag_gt", "ag_ge"):
        c = Case("%s/broadcast/float32" % fn[3:])
        a = c.tensor([1.0, 2.0, 3.0, 4.0, 2.0, 0.0], [2, 3], rg=True)
        b = c.tensor([2.0, 2.0, 1.0])
        c.call(fn, a, b)
        cases.append(c)
        c = Case("%s/int64_float64" % fn[3:])
        c.call(fn, c.ints([1, 2, 3]), c.tensor([1.5, 2.0, 2.5], dtype="float64"))
        cases.append(c)
        c = Case("%s/nan/float64" % fn[3:])
        c.call(fn, c.tensor([float("nan"), 1.0, float("inf")], dtype="float64"),
               c.tensor([float("nan"), float("nan"), float("inf")], dtype="float64"))
        cases.append(c)
        c = Case("%s_scalar/float32" % fn[3:])
        c.call(fn + "_scalar", c.tensor([1.0, 2.0, 3.0, 2.5], [2, 2], rg=True), 2.0)
        cases.append(c)
        c = Case("%s_scalar/int64" % fn[3:])
        c.call(fn + "_scalar", c.ints([1, 2, 3]), 2.5)
        cases.append(c)
    for dt in FLOATS:
        c = Case("where/broadcast/%s" % dt)
        cond = c.bools([True, False, True, False, False, True], [2, 3])
        a = c.rand([2, 3], dt)
        b = c.rand([3], dt)
        y = c.call("ag_where", cond, a, b)
        bwd(c, y)
        cases.append(c)
        c = Case("where/cond_broadcast/%s" % dt)
        cond = c.bools([True, False], [2, 1])
        a = c.rand([2, 3], dt)
        b = c.tensor([0.5], [], dt, rg=True)
        y = c.call("ag_where", cond, a, b)
        bwd(c, y)
        cases.append(c)
        for fn in ("ag_maximum", "ag_minimum"):
            cases.append(binary_case("%s/broadcast/%s" % (fn[3:], dt), fn, [2, 3], [3], dt,
                                     {"uniq": True}, {"uniq": True, "lo": -2.5}))
            c = Case("%s/ties/%s" % (fn[3:], dt))
            a = c.tensor([1.0, 2.0, 3.0, -1.0], dtype=dt, rg=True)
            b = c.tensor([1.0, 0.5, 3.0, 4.0], dtype=dt, rg=True)
            y = c.call(fn, a, b)
            bwd(c, y)
            cases.append(c)
    c = Case("maximum/nan/float32")
    c.call("ag_maximum", c.tensor([float("nan"), 1.0]), c.tensor([0.0, float("nan")]))
    cases.append(c)
    c = Case("minimum/int64")
    c.call("ag_minimum", c.ints([1, 5, -3]), c.ints([2, 2, 2]))
    cases.append(c)
    c = Case("where/mixed_dtypes")
    c.call("ag_where", c.bools([True, False]), c.tensor([1.0, 2.0]),
           c.tensor([3.0, 4.0], dtype="float64"))
    cases.append(c)
    return cases


def fam_reduce():
    cases = []
    shape = [2, 3, 4]
    for dt in FLOATS:
        for fn in ("ag_sum", "ag_mean"):
            cases.append(unary_case("%s/all/%s" % (fn[3:], dt), fn, shape, dt))
            for dims in ([0], [1], [-1], [0, 2], [], [2, 0]):
                for keep in (0, 1):
                    if dims == [2, 0] and keep == 0:
                        continue
                    name = "%s_dims/%s/%s/%s" % (fn[3:], "_".join(map(str, dims)) or "all",
                                                 "keepdim" if keep else "nokeep", dt)
                    cases.append(unary_case(name, fn + "_dims", shape, dt, (dims, keep)))
        for fn in ("ag_max", "ag_min"):
            cases.append(unary_case("%s/all/%s" % (fn[3:], dt), fn, [3, 4], dt, uniq=True))
            c = Case("%s/all_ties/%s" % (fn[3:], dt))
            x = c.tensor([1.0, 3.0, 3.0, -1.0, -1.0, 0.0], [2, 3], dt, rg=True)
            y = c.call(fn, x)
            bwd(c, y)
            cases.append(c)
            for dim, keep in ((0, 0), (1, 1), (-1, 0)):
                c = Case("%s_dim/%d/%s/%s" % (fn[3:], dim, "keepdim" if keep else "nokeep", dt))
                x = c.rand([3, 4], dt, uniq=True)
                v, _ = c.call(fn + "_dim", x, dim, keep)
                bwd(c, v)
                cases.append(c)
            c = Case("%s_dim/ties/%s" % (fn[3:], dt))
            x = c.tensor([2.0, 2.0, 1.0, 1.0, 1.0, 0.0], [2, 3], dt, rg=True)
            v, _ = c.call(fn + "_dim", x, 1, 0)
            bwd(c, v)
            cases.append(c)
        for fn in ("ag_amax", "ag_amin"):
            for dims, keep in (([1], 0), ([0, 1], 1), ([], 0)):
                c = Case("%s/%s/%s/%s" % (fn[3:], "_".join(map(str, dims)) or "all",
                                          "keepdim" if keep else "nokeep", dt))
                x = c.rand([3, 4], dt, uniq=True)
                y = c.call(fn, x, dims, keep)
                bwd(c, y)
                cases.append(c)
            c = Case("%s/empty_dim_named_as_given/%s" % (fn[3:], dt))
            c.err(fn, c.rand([2, 0, 3], dt), [0, -2], 0, status="AG_ESHAPE",
                  contains="Expected reduction dim -2 to have non-zero size")
            cases.append(c)
            c = Case("%s/ties/%s" % (fn[3:], dt))
            x = c.tensor([2.0, 2.0, 1.0, -1.0, 5.0, -1.0], [2, 3], dt, rg=True)
            y = c.call(fn, x, [1], 0)
            bwd(c, y)
            cases.append(c)
        for fn in ("ag_var", "ag_std"):
            for dims, corr, keep in (([1], 1, 0), ([0], 0, 1), ([], 1, 0), ([0, 2], 1, 1),
                                     ([-1], 2, 0)):
                name = "%s/%s/c%d/%s/%s" % (fn[3:], "_".join(map(str, dims)) or "all", corr,
                                            "keepdim" if keep else "nokeep", dt)
                cases.append(unary_case(name, fn, shape, dt, (dims, corr, keep), uniq=True))
            # a 0-d input: with no degree of freedom left (correction 1), PyTorch's gradient
            # is inf * grad (not NaN); std's is NaN (its value is)
            for corr in (0, 1, 2):
                for g in (2.0, -1.0):
                    c = Case("%s/0d/c%d/grad%s/%s" % (fn[3:], corr, fnum(g), dt))
                    x = c.tensor([0.3], [], dt, rg=True)
                    y = c.call("ag_mul_scalar", c.call(fn, x, [], corr, 0), g)
                    c.backward(y)
                    cases.append(c)
        for dims, keep in (([1], 0), ([0, 1], 1), ([], 0), ([-1], 1)):
            name = "logsumexp/%s/%s/%s" % ("_".join(map(str, dims)) or "all",
                                           "keepdim" if keep else "nokeep", dt)
            cases.append(unary_case(name, "ag_logsumexp", [3, 4], dt, (dims, keep)))
        c = Case("logsumexp/large/%s" % dt)
        x = c.tensor([1000.0, 1000.0, -1000.0, 0.0], [2, 2], dt, rg=True)
        y = c.call("ag_logsumexp", x, [1], 0)
        bwd(c, y)
        cases.append(c)
        for p in (2.0, 1.0, 3.0, 0.5, float("inf"), float("-inf"), 0.0):
            for dims, keep in (([1], 0), ([], 0), ([0], 1)):
                if p not in (2.0, 1.0) and dims != [1]:
                    continue
                name = "norm/p%s/%s/%s/%s" % (fnum(p), "_".join(map(str, dims)) or "all",
                                              "keepdim" if keep else "nokeep", dt)
                cases.append(unary_case(name, "ag_norm", [3, 4], dt, (p, dims, keep), uniq=True,
                                        nonzero=True))
        c = Case("norm/p2/zero_vector/%s" % dt)
        x = c.tensor([0.0, 0.0, 3.0, 4.0], [2, 2], dt, rg=True)
        y = c.call("ag_norm", x, 2.0, [1], 0)
        bwd(c, y)
        cases.append(c)
        for fn in ("ag_argmax", "ag_argmin"):
            for dim, keep in ((0, 0), (1, 1), (-1, 0)):
                c = Case("%s/%d/%s/%s" % (fn[3:], dim, "keepdim" if keep else "nokeep", dt))
                c.call(fn, c.rand([3, 4], dt, uniq=True), dim, keep)
                cases.append(c)
            c = Case("%s_all/%s" % (fn[3:], dt))
            c.call(fn + "_all", c.rand([3, 4], dt, uniq=True))
            cases.append(c)
        c = Case("argmax/ties_first/%s" % dt)
        c.call("ag_argmax", c.tensor([1.0, 3.0, 3.0, 2.0, 2.0, 0.0], [2, 3], dt), 1, 0)
        cases.append(c)
        c = Case("sum/0d/%s" % dt)
        x = c.tensor([1.5], [], dt, rg=True)
        y = c.call("ag_sum", x)
        bwd(c, y)
        cases.append(c)
    # float32 sums of many terms: within float32 tolerance of PyTorch's cascade sums (summed
    # in float, a column of 20000 values 0.1 was off by 2e-4 relative)
    c = Case("sum/long_float32")
    x = c.call("ag_full", DT("float32"), [20000, 3], 0.1, expect=False)
    c.call("ag_sum_dims", x, [0], 0)
    c.call("ag_mean_dims", c.call("ag_t", x, expect=False), [1], 1)
    c.call("ag_sum", c.call("ag_full", DT("float32"), [2000000], 0.1, expect=False))
    cases.append(c)
    c = Case("sum/int64")
    c.call("ag_sum", c.ints([1, 2, 3, 4], [2, 2]))
    cases.append(c)
    c = Case("sum_dims/int64")
    c.call("ag_sum_dims", c.ints([1, 2, 3, 4], [2, 2]), [0], 0)
    cases.append(c)
    c = Case("sum/bool")
    c.call("ag_sum", c.bools([True, False, True]))
    cases.append(c)
    c = Case("max/int64")
    c.call("ag_max", c.ints([1, 7, 3]))
    cases.append(c)
    c = Case("max/nan/float32")
    c.call("ag_max", c.tensor([1.0, float("nan"), 3.0]))
    cases.append(c)
    c = Case("sum_dims/size1_dim/float32")
    c.call("ag_sum_dims", c.tensor([1.0, 2.0], [2, 1], rg=True), [1], 0)
    cases.append(c)
    # saved tensors as PyTorch 1.13's: MeanBackward1 saves self (MeanBackward0 nothing), so a
    # second backward without retain_graph and an in-place change of the input are errors;
    # NormBackward1 saves self and result for every p, p = 0 (no gradient) included
    xs = [0.0, 1.5, -2.0, 0.0, 0.0, 3.0]
    for dims, keep in (([1], 0), ([], 0), ([0, 1], 1)):
        tag = "%s/%s" % ("_".join(map(str, dims)) or "all", "keepdim" if keep else "nokeep")
        c = Case("mean_dims/saved_self/backward_twice/%s" % tag)
        x = c.tensor(xs, [2, 3], "float64", rg=True)
        y = c.call("ag_sum", c.call("ag_mean_dims", x, dims, keep))
        c.backward(y)
        c.err("ag_backward", y, NULL, FL(), status="AG_EGRAPH",
              contains="Trying to backward through the graph a second time")
        cases.append(c)
        c = Case("mean_dims/saved_self/input_modified/%s" % tag)
        x = c.tensor(xs, [2, 3], "float64", rg=True)
        x2 = c.call("ag_mul_scalar", x, 1.0)
        y = c.call("ag_sum", c.call("ag_mean_dims", x2, dims, keep))
        c.call("ag_mul_scalar_", x2, 2.0)
        c.err("ag_backward", y, NULL, FL(), status="AG_EVERSION",
              contains="which is output 0 of MulBackward0, is at version 1; expected version 0")
        cases.append(c)
    for dims in ([1], []):
        tag = "_".join(map(str, dims)) or "all"
        c = Case("norm/p0/saved_self/input_modified/%s" % tag)
        x = c.tensor(xs, [2, 3], "float64", rg=True)
        x2 = c.call("ag_mul_scalar", x, 1.0)
        y = c.call("ag_sum", c.call("ag_norm", x2, 0.0, dims, 0))
        c.call("ag_mul_scalar_", x2, 2.0)
        c.err("ag_backward", y, NULL, FL(), status="AG_EVERSION",
              contains="which is output 0 of MulBackward0, is at version 1; expected version 0")
        cases.append(c)
        c = Case("norm/p0/saved_result/output_modified/%s" % tag)
        x = c.tensor(xs, [2, 3], "float64", rg=True)
        n = c.call("ag_norm", x, 0.0, dims, 0)
        c.call("ag_mul_scalar_", n, 2.0)
        c.err("ag_backward", c.call("ag_sum", n), NULL, FL(), status="AG_EVERSION",
              contains="which is output 0 of NormBackward1, is at version 1; expected version 0")
        cases.append(c)
    return cases


def fam_linalg():
    cases = []
    shapes = [
        ("dot", [4], [4]), ("mm", [2, 3], [3, 4]), ("vm", [3], [3, 2]), ("mv", [2, 3], [3]),
        ("bmm", [2, 2, 3], [2, 3, 2]), ("batch_broadcast", [2, 2, 3], [3, 4]),
        ("broadcast_4d", [2, 1, 2, 3], [3, 3, 2]), ("matrix_batch", [2, 3], [4, 3, 2]),
        ("vec_batch", [3], [2, 3, 2]),
    ]
    for dt in FLOATS:
        for name, sa, sb in shapes:
            cases.append(binary_case("matmul/%s/%s" % (name, dt), "ag_matmul", sa, sb, dt))
        cases.append(binary_case("matmul/one_grad/%s" % dt, "ag_matmul", [2, 3], [3, 2], dt,
                                 rg=(False, True)))
        for name, sx, has_b in (("2d_bias", [4, 3], True), ("2d_nobias", [4, 3], False),
                                ("3d_bias", [2, 2, 3], True), ("1d_bias", [3], True)):
            c = Case("linear/%s/%s" % (name, dt))
            x = c.rand(sx, dt)
            w = c.rand([2, 3], dt)
            b = c.rand([2], dt) if has_b else None
            y = c.call("ag_linear", x, w, b)
            bwd(c, y)
            cases.append(c)
        # torch 1.13's linear and matmul paths, seen in the grad_fn names: a 3-d input without
        # bias, a 4-d one with bias, a non-contiguous 3-d one with bias; 2-d @ a transposed
        # 3-d (bmm rather than the folded product)
        for name, sx, has_b, perm in (("3d_nobias", [2, 2, 3], False, False),
                                      ("4d_bias", [2, 1, 2, 3], True, False),
                                      ("3d_bias_noncontig", [2, 2, 3], True, True)):
            c = Case("linear/%s/%s" % (name, dt))
            x = c.rand(sx, dt)
            if perm:
                x = c.call("ag_transpose", x, 0, 1)
            w = c.rand([2, 3], dt)
            b = c.rand([2], dt) if has_b else None
            bwd(c, c.call("ag_linear", x, w, b))
            cases.append(c)
        c = Case("matmul/matrix_transposed_batch/%s" % dt)
        a = c.rand([2, 3], dt)
        b = c.call("ag_transpose", c.rand([2, 4, 3], dt), 1, 2)
        bwd(c, c.call("ag_matmul", a, b))
        cases.append(c)
        c = Case("matmul/transposed_operand/%s" % dt)
        a = c.rand([3, 2], dt)
        at = c.call("ag_t", a)
        b = c.rand([3, 3], dt)
        y = c.call("ag_matmul", at, b)
        bwd(c, y)
        cases.append(c)
        c = Case("matmul/double_backward/%s" % dt)
        a = c.rand([2, 3], dt)
        b = c.rand([3, 2], dt)
        y = c.call("ag_matmul", a, b)
        s = c.call("ag_sum", c.call("ag_mul", y, y))
        ga, _ = c.grad([s], [a, b], flags=("create_graph",))
        t = c.call("ag_sum", c.call("ag_mul", ga, ga))
        c.backward(t)
        cases.append(c)
    return cases + not_a_view_cases()


def not_a_view_cases():
    """matmul, linear without a bias and copying reshapes give fresh tensors, not views (torch's
    _unsafe_view / squeeze_): in place on them works, made under no_grad or not, and records
    the in-place op's own grad_fn. linear of a contiguous 3-d input with a bias is a view."""
    cases = []

    def operands(c):
        x = c.tensor([1.0, 2.0])
        w = c.tensor([1.0, 2.0, 3.0, 4.0], [2, 2])
        x3 = c.tensor([1.0, 2.0, 3.0, 4.0], [2, 1, 2])
        return x, w, x3

    # made under no_grad, then changed in place with grad mode on
    for name, shape_z in (("matmul_1d", [2]), ("matmul_3d", [2, 1, 2]),
                          ("matmul_empty_batch", [0, 3, 2]), ("linear_1d", [2]),
                          ("linear_3d", [2, 1, 2]), ("reshape_copy", [4])):
        c = Case("not_a_view/no_grad_then_add_/%s" % name)
        x, w, x3 = operands(c)
        with c.no_grad():
            if name == "matmul_1d":
                y = c.call("ag_matmul", x, w)
            elif name == "matmul_3d":
                y = c.call("ag_matmul", x3, w)
            elif name == "matmul_empty_batch":
                y = c.call("ag_matmul", c.call("ag_ones", DT("float32"), [0, 3, 2]), w)
            elif name == "linear_1d":
                y = c.call("ag_linear", x, w, None)
            elif name == "linear_3d":
                y = c.call("ag_linear", x3, w, None)
            else:
                y = c.call("ag_reshape", c.call("ag_t", w), [-1])
        z = c.call("ag_ones", DT("float32"), shape_z)
        c.call("ag_tensor_set_requires_grad", z, 1)
        c.call("ag_add_", y, z)
        c.expect(y, version=True)
        c.backward(c.call("ag_sum", y))
        cases.append(c)
    # grad mode on: the in-place op's grad_fn replaces SqueezeBackward3 / UnsafeViewBackward0
    for name, op, arg in (("matmul_1d_mul_", "ag_mul_scalar_", 3.0),
                          ("matmul_1d_sub_", "ag_sub_", "t"),
                          ("matmul_3d_mul_", "ag_mul_scalar_", 3.0),
                          ("reshape_copy_mul_", "ag_mul_scalar_", 2.0)):
        c = Case("not_a_view/grad_then_%s" % name)
        x, w, x3 = operands(c)
        c.call("ag_tensor_set_requires_grad", w, 1)
        if name.startswith("matmul_1d"):
            y = c.call("ag_matmul", x, w)
        elif name.startswith("matmul_3d"):
            y = c.call("ag_matmul", x3, w)
        else:
            y = c.call("ag_reshape", c.call("ag_t", w), [-1])
        c.call(op, y, c.tensor([1.0, 1.0]) if arg == "t" else arg)
        c.expect(y, version=True)   # (squeeze_ counts as one)
        c.backward(c.call("ag_sum", y))
        cases.append(c)
    c = Case("not_a_view/grad_then_no_grad_mul_")
    x, w, x3 = operands(c)
    c.call("ag_tensor_set_requires_grad", w, 1)
    y = c.call("ag_matmul", x, w)
    with c.no_grad():
        c.call("ag_mul_scalar_", y, 2.0)
    c.expect(y)
    c.backward(c.call("ag_sum", y))
    cases.append(c)
    # linear(3-d contiguous x, w, b) is addmm(...).view(...): a view made under no_grad
    c = Case("not_a_view/linear_3d_bias_is_a_view")
    x, w, x3 = operands(c)
    with c.no_grad():
        y = c.call("ag_linear", x3, w, c.call("ag_ones", DT("float32"), [2]))
    z = c.call("ag_ones", DT("float32"), [2, 1, 2])
    c.call("ag_tensor_set_requires_grad", z, 1)
    c.err("ag_add_", y, z, status="AG_EINVAL",
          contains="A view was created in no_grad mode and is being modified inplace")
    cases.append(c)
    return cases


def fam_shape():
    cases = []
    for dt in FLOATS:
        def view_case(name, fn, shape, *extra, kw=None):
            c = Case("%s/%s" % (name, dt))
            x = c.rand(shape, dt, **(kw or {}))
            y = c.call(fn, x, *extra, extra={"layout": True})
            bwd(c, y)
            cases.append(c)
            return c
        view_case("reshape/view", "ag_reshape", [2, 3, 2], [3, 4])
        view_case("reshape/infer", "ag_reshape", [2, 3, 2], [-1, 2])
        view_case("reshape/to_0d", "ag_reshape", [1, 1], [])
        view_case("view/basic", "ag_view", [2, 6], [3, 2, 2])
        view_case("view/infer", "ag_view", [2, 6], [4, -1])
        view_case("transpose/0_1", "ag_transpose", [2, 3], 0, 1)
        view_case("transpose/neg", "ag_transpose", [2, 3, 4], -1, 0)
        view_case("t/2d", "ag_t", [2, 3])
        view_case("t/1d", "ag_t", [3])
        view_case("permute/3d", "ag_permute", [2, 3, 4], [2, 0, 1])
        view_case("permute/neg", "ag_permute", [2, 3, 4], [-1, -3, -2])
        view_case("expand/basic", "ag_expand", [3, 1], [3, 4])
        view_case("expand/new_dims", "ag_expand", [3], [2, 2, 3])
        view_case("expand/keep", "ag_expand", [1, 3], [4, -1])
        view_case("slice/step", "ag_slice", [6, 2], 0, 1, 6, 2)
        view_case("slice/negative", "ag_slice", [2, 6], 1, -4, -1, 1)
        view_case("slice/clamped", "ag_slice", [2, 5], 1, 2, 100, 2)
        view_case("slice/empty", "ag_slice", [2, 5], 1, 4, 2, 1)
        view_case("narrow/basic", "ag_narrow", [4, 3], 0, 1, 2)
        view_case("narrow/neg_dim", "ag_narrow", [4, 3], -1, 1, 2)
        # an empty dimension: start 0 or -1 (wrapped as a dim index over a size of 1)
        view_case("narrow/empty_dim/start_0", "ag_narrow", [2, 0], -1, 0, 0)
        view_case("narrow/empty_dim/start_-1", "ag_narrow", [2, 0], -1, -1, 0)
        view_case("select/basic", "ag_select", [3, 4], 1, 2)
        view_case("select/neg_index", "ag_select", [3, 4], 0, -1)
        view_case("squeeze/all", "ag_squeeze", [1, 3, 1, 2])
        view_case("squeeze_dim/one", "ag_squeeze_dim", [1, 3, 1, 2], 2)
        view_case("squeeze_dim/not_one", "ag_squeeze_dim", [1, 3, 1, 2], 1)
        view_case("unsqueeze/front", "ag_unsqueeze", [2, 3], 0)
        view_case("unsqueeze/neg", "ag_unsqueeze", [2, 3], -1)
        view_case("flatten/all", "ag_flatten", [2, 3, 2], 0, -1)
        view_case("flatten/middle", "ag_flatten", [2, 3, 2, 2], 1, 2)
        view_case("flatten/noop", "ag_flatten", [2, 3], 1, 1)
        view_case("clone/basic", "ag_clone", [2, 3])
        view_case("contiguous/already", "ag_contiguous", [2, 3])
        c = Case("reshape/non_viewable/%s" % dt)
        x = c.rand([2, 3], dt)
        y = c.call("ag_t", x, extra={"layout": True})
        z = c.call("ag_reshape", y, [6], extra={"layout": True})
        bwd(c, z)
        cases.append(c)
        c = Case("contiguous/transposed/%s" % dt)
        x = c.rand([2, 3], dt)
        y = c.call("ag_transpose", x, 0, 1)
        z = c.call("ag_contiguous", y, extra={"layout": True})
        bwd(c, z)
        cases.append(c)
        c = Case("flatten/transposed/%s" % dt)
        x = c.rand([2, 3], dt)
        z = c.call("ag_flatten", c.call("ag_t", x), 0, 1)
        bwd(c, z)
        cases.append(c)
        c = Case("views/chain/%s" % dt)
        x = c.rand([2, 3, 4], dt)
        lay = {"layout": True}
        y = c.call("ag_permute", x, [1, 0, 2], extra=lay)
        y = c.call("ag_select", y, 2, 1, extra=lay)
        y = c.call("ag_slice", y, 1, 0, 4, 2, extra=lay)
        y = c.call("ag_unsqueeze", y, 0, extra=lay)
        y = c.call("ag_expand", y, [2, 3, 2], extra=lay)
        s = c.call("ag_sum", c.call("ag_mul", y, y))
        c.backward(s)
        cases.append(c)
    for src, dst in (("float32", "float64"), ("float64", "float32")):
        c = Case("to_dtype/%s_to_%s" % (src, dst))
        x = c.rand([2, 3], src)
        y = c.call("ag_to_dtype", x, DT(dst))
        bwd(c, y)
        cases.append(c)
    for src, dst, data in (("float32", "int64", [-1.75, -0.5, 0.5, 2.99]),
                           ("int64", "float32", [-3, 0, 5, 7]),
                           ("float64", "bool", [0.0, -0.5, 2.0, 0.0]),
                           ("bool", "float32", [True, False, True, True]),
                           ("int64", "bool", [0, 1, -2, 0]),
                           ("float32", "float32", [1.0, 2.0, 3.0, 4.0])):
        c = Case("to_dtype/%s_to_%s/values" % (src, dst))
        c.call("ag_to_dtype", c.tensor(data, dtype=src), DT(dst))
        cases.append(c)
    # views share storage with their base
    c = Case("views/share_storage/float32")
    x = c.rand([2, 3], "float32", rg=False)
    v = c.call("ag_select", x, 0, 1)
    c.call("ag_mul_scalar_", v, 10.0)
    c.expect(x, version=True)
    c.expect(v, version=True)
    cases.append(c)
    c = Case("views/int64")
    x = c.ints([1, 2, 3, 4, 5, 6], [2, 3])
    lay = {"layout": True}
    c.call("ag_transpose", x, 0, 1, extra=lay)
    c.call("ag_reshape", x, [3, 2], extra=lay)
    c.call("ag_slice", x, 1, 0, 3, 2, extra=lay)
    c.call("ag_narrow", x, 1, 1, 2, extra=lay)
    c.call("ag_select", x, 1, -1, extra=lay)
    c.call("ag_expand", c.call("ag_unsqueeze", x, 1, extra=lay), [2, 4, 3], extra=lay)
    cases.append(c)
    return cases


def fam_index():
    cases = []
    for dt in FLOATS:
        c = Case("index_select/dim0/%s" % dt)
        x = c.rand([4, 3], dt)
        y = c.call("ag_index_select", x, 0, c.ints([3, 0, 3]))
        bwd(c, y)
        cases.append(c)
        c = Case("index_select/dim1/%s" % dt)
        x = c.rand([2, 4], dt)
        y = c.call("ag_index_select", x, -1, c.ints([1, 2]))
        bwd(c, y)
        cases.append(c)
        c = Case("gather/dim1/%s" % dt)
        x = c.rand([3, 4], dt)
        y = c.call("ag_gather", x, 1, c.ints([0, 0, 3, 1, 2, 2], [3, 2]))
        bwd(c, y)
        cases.append(c)
        c = Case("gather/dim0/%s" % dt)
        x = c.rand([3, 2], dt)
        y = c.call("ag_gather", x, 0, c.ints([2, 0, 1, 1], [2, 2]))
        bwd(c, y)
        cases.append(c)
        c = Case("scatter_add/dim0/%s" % dt)
        x = c.rand([3, 2], dt)
        src = c.rand([2, 2], dt)
        y = c.call("ag_scatter_add", x, 0, c.ints([2, 0, 2, 2], [2, 2]), src)
        bwd(c, y)
        cases.append(c)
        c = Case("scatter_add/dim1/%s" % dt)
        x = c.rand([2, 3], dt)
        src = c.rand([2, 2], dt)
        y = c.call("ag_scatter_add", x, 1, c.ints([1, 1, 0, 2], [2, 2]), src)
        bwd(c, y)
        cases.append(c)
        c = Case("masked_fill/broadcast/%s" % dt)
        x = c.rand([2, 3], dt)
        y = c.call("ag_masked_fill", x, c.bools([True, False, True]), -1.5)
        bwd(c, y)
        cases.append(c)
        c = Case("masked_fill/inf/%s" % dt)
        x = c.rand([2, 2], dt)
        y = c.call("ag_masked_fill", x, c.bools([False, True, True, False], [2, 2]), float("-inf"))
        bwd(c, y)
        cases.append(c)
        for dim in (0, 1, -1):
            c = Case("cat/dim%d/%s" % (dim, dt))
            a = c.rand([2, 3], dt)
            b = c.rand([2, 3] if dim != 0 else [1, 3], dt) if dim != 1 else c.rand([2, 1], dt)
            y = c.call("ag_cat", TS(a, b), dim)
            bwd(c, y)
            cases.append(c)
        c = Case("cat/three/%s" % dt)
        a, b, d = c.rand([1, 2], dt), c.rand([2, 2], dt, rg=False), c.rand([1, 2], dt)
        y = c.call("ag_cat", TS(a, b, d), 0)
        bwd(c, y)
        cases.append(c)
        for dim in (0, 1, -1):
            c = Case("stack/dim%d/%s" % (dim, dt))
            a, b = c.rand([2, 3], dt), c.rand([2, 3], dt)
            y = c.call("ag_stack", TS(a, b), dim)
            bwd(c, y)
            cases.append(c)
        for size, dim in ((2, 0), (3, 1), (5, 0)):
            c = Case("split/%d/dim%d/%s" % (size, dim, dt))
            x = c.rand([5, 4], dt)
            c.call("ag_split_count", x, size, dim)
            parts = c.call("ag_split", x, size, dim, extra={"layout": True})
            acc = c.call("ag_sum", c.call("ag_mul_scalar", parts[0], 2.0))
            s = c.call("ag_add", acc, c.call("ag_sum", parts[-1]))
            c.backward(s)
            cases.append(c)
        for chunks, dim in ((2, 0), (3, 1), (4, 0)):
            c = Case("chunk/%d/dim%d/%s" % (chunks, dim, dt))
            x = c.rand([5, 4], dt)
            c.call("ag_chunk_count", x, chunks, dim)
            parts = c.call("ag_chunk", x, chunks, dim, extra={"layout": True})
            s = c.call("ag_sum", c.call("ag_mul", parts[0], parts[0]))
            c.backward(s)
            cases.append(c)
    c = Case("cat/promote")
    c.call("ag_cat", TS(c.ints([1, 2]), c.tensor([0.5])), 0)
    cases.append(c)
    c = Case("index_select/int64")
    c.call("ag_index_select", c.ints([10, 20, 30]), 0, c.ints([2, 2, 0]))
    cases.append(c)
    c = Case("gather/repeat_grad/float64")
    x = c.tensor([1.0, 2.0, 3.0], dtype="float64", rg=True)
    y = c.call("ag_gather", x, 0, c.ints([0, 0, 0, 2]))
    bwd(c, y)
    cases.append(c)
    return cases


def fam_nn():
    cases = []
    for dt in FLOATS:
        for fn in ("ag_softmax", "ag_log_softmax"):
            for dim in (1, 0, -1):
                cases.append(unary_case("%s/dim%d/%s" % (fn[3:], dim, dt), fn, [3, 4], dt, (dim,)))
            c = Case("%s/large/%s" % (fn[3:], dt))
            x = c.tensor([1000.0, 0.0, -1000.0, 999.0], [2, 2], dt, rg=True)
            y = c.call(fn, x, 1)
            bwd(c, y)
            cases.append(c)
        for red in ("mean", "sum", "none"):
            c = Case("cross_entropy/%s/%s" % (red, dt))
            x = c.rand([4, 3], dt)
            y = c.call("ag_cross_entropy", x, c.ints([0, 2, 1, 2]), None, RED(red), -100, 0.0)
            bwd(c, y)
            cases.append(c)
            c = Case("nll_loss/%s/%s" % (red, dt))
            x = c.rand([4, 3], dt)
            y = c.call("ag_nll_loss", x, c.ints([1, 0, 2, 2]), None, RED(red), -100)
            bwd(c, y)
            cases.append(c)
            c = Case("mse_loss/%s/%s" % (red, dt))
            x = c.rand([2, 3], dt)
            tg = c.rand([2, 3], dt, rg=False)
            y = c.call("ag_mse_loss", x, tg, RED(red))
            bwd(c, y)
            cases.append(c)
            c = Case("bce_with_logits/%s/%s" % (red, dt))
            x = c.rand([2, 3], dt)
            tg = c.rand([2, 3], dt, rg=False, lo=0.0, hi=1.0)
            y = c.call("ag_binary_cross_entropy_with_logits", x, tg, None, None, RED(red))
            bwd(c, y)
            cases.append(c)
        c = Case("cross_entropy/weight_ignore/%s" % dt)
        x = c.rand([4, 3], dt)
        w = c.tensor([0.5, 2.0, 1.0], dtype=dt)
        y = c.call("ag_cross_entropy", x, c.ints([0, 2, 1, 1]), w, RED("mean"), 1, 0.0)
        bwd(c, y)
        cases.append(c)
        c = Case("cross_entropy/label_smoothing/%s" % dt)
        x = c.rand([3, 4], dt)
        y = c.call("ag_cross_entropy", x, c.ints([3, 0, 1]), None, RED("mean"), -100, 0.1)
        bwd(c, y)
        cases.append(c)
        # NaN passes PyTorch's range check and then acts as 0
        c = Case("cross_entropy/label_smoothing_nan/%s" % dt)
        x = c.rand([3, 4], dt)
        y = c.call("ag_cross_entropy", x, c.ints([3, 0, 1]), None, RED("mean"), -100, math.nan)
        bwd(c, y)
        cases.append(c)
        c = Case("cross_entropy/smoothing_weight_sum/%s" % dt)
        x = c.rand([3, 4], dt)
        w = c.tensor([1.0, 0.5, 2.0, 1.5], dtype=dt)
        y = c.call("ag_cross_entropy", x, c.ints([3, 0, 1]), w, RED("sum"), -100, 0.2)
        bwd(c, y)
        cases.append(c)
        c = Case("cross_entropy/1d/%s" % dt)
        x = c.rand([4], dt)
        y = c.call("ag_cross_entropy", x, c.tensor([2], [], "int64"), None, RED("mean"), -100, 0.0)
        bwd(c, y)
        cases.append(c)
        c = Case("cross_entropy/large_logits/%s" % dt)
        x = c.tensor([1000.0, -1000.0, 0.0, 0.0, 500.0, 1000.0], [2, 3], dt, rg=True)
        y = c.call("ag_cross_entropy", x, c.ints([1, 2]), None, RED("mean"), -100, 0.0)
        bwd(c, y)
        cases.append(c)
        # logits far from 0 with close values: (x - max) - log(sum) keeps the digits that
        # x - (max + log(sum)) loses (float32: from ~1e3 on; all zeros at 1e8)
        c = Case("cross_entropy/large_close_logits/%s" % dt)
        big = 1e8 if dt == "float32" else 1e15
        x = c.tensor([1000.0, 1000.5, 999.75, big, big, big], [2, 3], dt, rg=True)
        y = c.call("ag_cross_entropy", x, c.ints([0, 1]), None, RED("sum"), -100, 0.0)
        bwd(c, y)
        cases.append(c)
        c = Case("log_softmax/large_close_logits/%s" % dt)
        x = c.tensor([1000.0, 1000.5, 999.75, big, big, big], [2, 3], dt, rg=True)
        for d in (1, 0):
            y = c.call("ag_log_softmax", x, d)
            bwd(c, c.call("ag_sum", c.call("ag_mul", y, c.tensor([1.0, 2.0, 3.0], dtype=dt))))
        cases.append(c)
        c = Case("nll_loss/weight_ignore/%s" % dt)
        x = c.rand([4, 3], dt)
        w = c.tensor([1.0, 3.0, 0.5], dtype=dt)
        y = c.call("ag_nll_loss", x, c.ints([0, 2, 1, 2]), w, RED("mean"), 2)
        bwd(c, y)
        cases.append(c)
        c = Case("nll_loss/1d/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_nll_loss", x, c.tensor([1], [], "int64"), None, RED("sum"), -100)
        bwd(c, y)
        cases.append(c)
        # inputs of 3 or more dims go through PyTorch's nll_loss2d: NllLoss2DBackward0, 4-d
        # as it is, others viewed as [N, C, 1, -1] (without reduction the result is a view
        # of the 4-d loss: ViewBackward0); cross_entropy without label smoothing likewise
        for fn in ("ag_nll_loss", "ag_cross_entropy"):
            for shape in ([2, 3, 4], [2, 3, 2, 2], [2, 3, 2, 1, 2], [2, 3, 0], [0, 3, 2]):
                if dt == "float32" and shape != [2, 3, 4]:
                    continue
                for red in ("none", "mean", "sum"):
                    c = Case("%s/spatial/%s/%s/%s" % (fn[3:], "x".join(map(str, shape)), red, dt))
                    x = c.rand(shape, dt)
                    tshape = [shape[0]] + shape[2:]
                    n = 1
                    for d in tshape:
                        n *= d
                    tg = c.ints([(3 * k + 1) % 3 if k % 4 else 2 for k in range(n)], tshape)
                    extra = (0.0,) if fn == "ag_cross_entropy" else ()
                    y = c.call(fn, x, tg, None, RED(red), -100, *extra, extra={"is_leaf": True})
                    bwd(c, y)
                    cases.append(c)
        for fn in ("ag_nll_loss", "ag_cross_entropy"):
            extra = (0.0,) if fn == "ag_cross_entropy" else ()
            c = Case("%s/spatial/weight_ignore/%s" % (fn[3:], dt))
            x = c.rand([2, 3, 3], dt)
            w = c.tensor([0.5, 2.0, 1.0], dtype=dt)
            y = c.call(fn, x, c.ints([0, 2, 1, 1, 1, 0], [2, 3]), w, RED("mean"), 1, *extra)
            bwd(c, y)
            cases.append(c)
            c = Case("%s/spatial/transposed/%s" % (fn[3:], dt))
            x = c.rand([2, 4, 3], dt)
            y = c.call(fn, c.call("ag_transpose", x, 1, 2), c.ints([0, 2, 1, 1, 1, 0, 2, 2],
                                                                    [2, 4]), None, RED("none"),
                       -100, *extra)
            bwd(c, y)
            cases.append(c)
        c = Case("bce_with_logits/weights/%s" % dt)
        x = c.rand([2, 3], dt, lo=-4, hi=4)
        tg = c.rand([2, 3], dt, rg=False, lo=0.0, hi=1.0)
        w = c.tensor([1.0, 0.5, 2.0], dtype=dt)
        pw = c.tensor([3.0, 1.0, 0.25], dtype=dt)
        y = c.call("ag_binary_cross_entropy_with_logits", x, tg, w, pw, RED("mean"))
        bwd(c, y)
        cases.append(c)
        # the target's gradient with pos_weight at large and infinite logits (was NaN at -inf)
        c = Case("bce_with_logits/target_grad_extreme/%s" % dt)
        x = c.tensor([-float("inf"), -1000.0, 1000.0, 30.0, 0.5], dtype=dt)
        tg = c.tensor([0.0, 0.0, 1.0, 0.7, 0.5], dtype=dt, rg=True)
        pw = c.tensor([0.5, 0.5, 2.0, 3.0, 1.0], dtype=dt)
        y = c.call("ag_binary_cross_entropy_with_logits", x, tg, None, pw, RED("none"))
        c.backward(y, c.tensor([1.0, 1.0, 1.0, 1.0, 1.0], dtype=dt))
        cases.append(c)
        c = Case("bce_with_logits/extreme/%s" % dt)
        x = c.tensor([-100.0, 100.0, 0.0], dtype=dt, rg=True)
        tg = c.tensor([1.0, 0.0, 0.5], dtype=dt)
        y = c.call("ag_binary_cross_entropy_with_logits", x, tg, None, None, RED("sum"))
        bwd(c, y)
        cases.append(c)
        # non-finite values as PyTorch's (its formulas operation by operation: a logit of -inf
        # gives NaN through exp(-x - max(-x, 0)) = exp(inf - inf)), targets outside [0, 1],
        # infinite pos_weight and weight, float32 overflow (sigmoid(-89) is 0 there)
        inf, nan = float("inf"), float("nan")
        xs = [-inf, -inf, -inf, inf, inf, inf, -inf, nan, 0.5, -89.0, -89.0, -89.0,
              100.0, -100.0, 30.0, 0.5, -inf, inf]
        ts = [0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 2.0, 0.5, -1.0, 0.0, 1.0, 0.5,
              0.0, 1.0, 0.25, 1.0, 0.0, 0.0]
        for has_pw in (False, True):
            for has_w in (False, True):
                for red in ("none",):
                    for cg in ((), ("create_graph",)):
                        c = Case("bce_with_logits/nonfinite/%s%s/%s%s/%s" % (
                            "pos_weight" if has_pw else "no_pos_weight",
                            "_weight" if has_w else "", red, "/create_graph" if cg else "", dt))
                        # (create_graph: not at -89 with an infinite weight, where float32
                        # sigmoid is a denormal here, 0 in PyTorch)
                        x = c.tensor([v if not (cg and v == -89.0) else -80.0 for v in xs],
                                     [6, 3], dt, rg=True)
                        tg = c.tensor(ts, [6, 3], dt, rg=True)
                        pw = c.tensor([2.0, 0.0, inf], dtype=dt) if has_pw else None
                        w = c.tensor([0.5, 0.0, inf], dtype=dt) if has_w else None
                        y = c.call("ag_binary_cross_entropy_with_logits", x, tg, w, pw, RED(red))
                        go = NULL if red != "none" else TS(grad_like(c, y))
                        c.call("ag_grad", TS(y), go, TS(x, tg), FL(*cg))
                        cases.append(c)
        # mixed dtypes: the loss has the target's dtype (PyTorch's is (1 - target) updated in
        # place), float32 for a float64 input; the input's gradient is computed in float32
        # storage by PyTorch with pos_weight: float32's tolerances
        mixed = (("float64", "float32"),) if dt == "float64" else ()
        for dx, dtg in mixed:
            for has_pw in (False, True):
                c = Case("bce_with_logits/mixed_dtypes/%s_%s%s" % (
                    dx, dtg, "/pos_weight" if has_pw else ""),
                    tolerances={"float64": TOLERANCES["float32"]})
                x = c.rand([2, 3], dx, lo=-4, hi=4)
                tg = c.rand([2, 3], dtg, lo=0.0, hi=1.0)
                pw = c.tensor([3.0, 1.0, 0.25], dtype=dtg) if has_pw else None
                y = c.call("ag_binary_cross_entropy_with_logits", x, tg, None, pw, RED("none"))
                c.call("ag_grad", TS(y), TS(grad_like(c, y)), TS(x, tg), FL())
                cases.append(c)
        c = Case("mse_loss/target_grad/%s" % dt)
        x = c.rand([3], dt)
        tg = c.rand([3], dt)
        y = c.call("ag_mse_loss", x, tg, RED("mean"))
        bwd(c, y)
        cases.append(c)
        # F.mse_loss broadcasts first, then converts the int64 operand: a contiguous copy of
        # the expanded input, which lays the result out in the contiguous order, not the
        # transposed target's (as it would without the conversion)
        c = Case("mse_loss/int64_broadcast_layout/%s" % dt)
        tt = c.call("ag_t", c.rand([2, 2], dt))
        c.call("ag_mse_loss", c.ints([0, 4, -1, 3], [2, 1, 2]), tt, RED("none"),
               extra={"layout": True})
        c.call("ag_mse_loss", c.ints([0, 4], [1, 2, 1]), tt, RED("none"), extra={"layout": True})
        cases.append(c)
        for p, training in ((0.0, 1), (0.5, 0), (1.0, 0)):
            c = Case("dropout/p%g/train%d/%s" % (p, training, dt))
            x = c.rand([2, 3], dt)
            y = c.call("ag_dropout", None, x, p, training, extra={"is_leaf": True})
            cases.append(c)
        c = Case("dropout/p0_nonleaf/%s" % dt)
        x = c.rand([2, 3], dt)
        y = c.call("ag_mul_scalar", x, 2.0)
        z = c.call("ag_dropout", None, y, 0.0, 1)
        bwd(c, z)
        cases.append(c)
        for name, sx, ns, affine in (("last", [2, 4], [4], True),
                                     ("last_noaffine", [3, 4], [4], False),
                                     ("two_dims", [2, 2, 3], [2, 3], True)):
            c = Case("layer_norm/%s/%s" % (name, dt))
            x = c.rand(sx, dt)
            w = c.rand(ns, dt) if affine else None
            b = c.rand(ns, dt) if affine else None
            y = c.call("ag_layer_norm", x, ns, w, b, 1e-5)
            bwd(c, y)
            cases.append(c)
        c = Case("layer_norm/weight_only/%s" % dt)
        x = c.rand([2, 3], dt)
        w = c.rand([3], dt)
        y = c.call("ag_layer_norm", x, [3], w, None, 1e-3)
        bwd(c, y)
        cases.append(c)
        c = Case("embedding/2d_indices/%s" % dt)
        w = c.rand([5, 3], dt)
        y = c.call("ag_embedding", w, c.ints([4, 0, 4, 2], [2, 2]))
        bwd(c, y)
        cases.append(c)
        c = Case("embedding/1d/%s" % dt)
        w = c.rand([4, 2], dt)
        y = c.call("ag_embedding", w, c.ints([1, 1, 3]))
        bwd(c, y)
        cases.append(c)
    c = Case("softmax/double_backward/float64")
    x = c.rand([2, 3], "float64")
    y = c.call("ag_softmax", x, 1)
    w = c.rand([2, 3], "float64", rg=False)
    s = c.call("ag_sum", c.call("ag_mul", y, w))
    (g,) = c.grad([s], [x], flags=("create_graph",))
    c.backward(c.call("ag_sum", c.call("ag_mul", g, g)))
    cases.append(c)
    c = Case("mlp/two_layers/float32")
    x = c.rand([4, 3], "float32", rg=False)
    w1, b1 = c.rand([5, 3], "float32"), c.rand([5], "float32")
    w2, b2 = c.rand([2, 5], "float32"), c.rand([2], "float32")
    h = c.call("ag_relu", c.call("ag_linear", x, w1, b1))
    o = c.call("ag_linear", h, w2, b2)
    loss = c.call("ag_cross_entropy", o, c.ints([0, 1, 1, 0]), None, RED("mean"), -100, 0.0)
    c.backward(loss)
    cases.append(c)
    return cases + loss_saved_cases()


def loss_saved_cases():
    """cross_entropy saves its log_softmax (not the logits, which may change in place after the
    loss), the target and the weight (which may not); nll_loss's gradient is scattered, so a
    NaN or infinite incoming gradient reaches the target entries only."""
    cases = []
    for dt in FLOATS:
        for name, wv, ii, ls in (("plain", None, -100, 0.0), ("weight", [0.5, 2.0, 1.5], -100, 0.0),
                                 ("ignore_index", None, 1, 0.0),
                                 ("label_smoothing", [0.5, 2.0, 1.5], 1, 0.2)):
            c = Case("cross_entropy/logits_modified_inplace/%s/%s" % (name, dt))
            x = c.rand([4, 3], dt)
            y = c.call("ag_mul_scalar", x, 1.0)
            w = None if wv is None else c.tensor(wv, dtype=dt)
            loss = c.call("ag_cross_entropy", y, c.ints([0, 2, 1, 2]), w, RED("mean"), ii, ls)
            c.call("ag_mul_scalar_", y, 2.0)
            c.backward(loss)
            cases.append(c)
    # reduction none, create_graph, then a second derivative through the saved log_softmax
    c = Case("cross_entropy/logits_modified_inplace/none_double_backward/float64")
    x = c.rand([3, 3], "float64")
    y = c.call("ag_mul_scalar", x, 1.0)
    w = c.tensor([0.5, 2.0, 1.5], dtype="float64")
    loss = c.call("ag_cross_entropy", y, c.ints([0, 2, 1]), w, RED("none"), 1, 0.0)
    c.call("ag_mul_scalar_", y, 2.0)
    (g,) = c.grad([loss], [x], grad_outputs=[c.tensor([1.0, -0.5, 2.0], dtype="float64")],
                  flags=("create_graph",))
    k = c.rand([3, 3], "float64", rg=False)
    c.backward(c.call("ag_sum", c.call("ag_mul", g, k)))
    cases.append(c)
    # the weight is saved: changing it in place is an error, as in torch (so is changing the
    # target, but the 1-based Lua binding passes the ABI a copy of it: not expressible here)
    for ls in (0.0, 0.1):
        c = Case("cross_entropy/weight_modified_inplace/smoothing%g" % ls)
        x = c.rand([3, 3])
        w = c.tensor([0.5, 2.0, 1.5])
        loss = c.call("ag_cross_entropy", x, c.ints([0, 2, 1]), w, RED("mean"), -100, ls)
        c.call("ag_mul_scalar_", w, 1.0)
        c.err("ag_backward", loss, None, FL(), status="AG_EVERSION")
        cases.append(c)
    c = Case("nll_loss/weight_modified_inplace")
    x = c.rand([3, 3])
    w = c.tensor([0.5, 2.0, 1.5])
    loss = c.call("ag_nll_loss", x, c.ints([0, 2, 1]), w, RED("sum"), -100)
    c.call("ag_mul_scalar_", w, 1.0)
    c.err("ag_backward", loss, None, FL(), status="AG_EVERSION")
    cases.append(c)
    # non-finite incoming gradients: only the target entries see them
    c = Case("nll_loss/nonfinite_grad/sum_nan")
    x = c.rand([2, 3])
    loss = c.call("ag_nll_loss", x, c.ints([0, 2]), None, RED("sum"), -100)
    c.backward(loss, c.tensor([float("nan")], []))
    cases.append(c)
    c = Case("nll_loss/nonfinite_grad/none_ignore_index")
    x = c.rand([3, 3])
    loss = c.call("ag_nll_loss", x, c.ints([0, 2, 1]), None, RED("none"), 1)
    c.backward(loss, c.tensor([float("nan"), -float("inf"), float("inf")]))
    cases.append(c)
    c = Case("cross_entropy/nonfinite_grad/none_ignore_index_create_graph")
    x = c.rand([3, 3])
    loss = c.call("ag_cross_entropy", x, c.ints([0, 2, 1]), None, RED("none"), 1, 0.0)
    c.grad([loss], [x], grad_outputs=[c.tensor([1.0, -float("inf"), float("inf")])],
           flags=("create_graph",))
    cases.append(c)
    c = Case("nll_loss/nonfinite_grad/mean_weight_create_graph")
    x = c.rand([3, 3])
    w = c.tensor([0.5, 2.0, 1.5])
    loss = c.call("ag_nll_loss", x, c.ints([0, 2, 1]), w, RED("mean"), 1)
    (g,) = c.call("ag_grad", TS(loss), TS(c.tensor([float("inf")], [])), TS(x),
                  FL("create_graph"), expect=False)
    c.expect(g)   # with the gradient's grad_fn: NllLossBackwardBackward0
    cases.append(c)
    return cases


def fam_inplace():
    cases = []
    for dt in FLOATS:
        for fn, other in (("ag_add_", "t"), ("ag_sub_", "t"), ("ag_mul_", "t"),
                          ("ag_add_scalar_", 1.5), ("ag_mul_scalar_", -2.0), ("ag_zero_", None),
                          ("ag_fill_", 0.25), ("ag_copy_", "t")):
            c = Case("%s/nonleaf/%s" % (fn[3:], dt))
            x = c.rand([2, 3], dt)
            y = c.call("ag_mul_scalar", x, 1.0)
            args = [y]
            if other == "t":
                args.append(c.rand([3], dt))
            elif other is not None:
                args.append(other)
            c.call(fn, *args)
            c.expect(y, version=True)
            z = c.call("ag_mul", y, y)
            bwd(c, z)
            cases.append(c)
        c = Case("add_/view_of_nonleaf/%s" % dt)
        x = c.rand([2, 3], dt)
        y = c.call("ag_mul_scalar", x, 2.0)
        v = c.call("ag_select", y, 0, 1)
        o = c.rand([3], dt)
        c.call("ag_add_", v, o)
        c.expect(y, version=True)
        c.expect(v, version=True)
        z = c.call("ag_sum", c.call("ag_mul", y, y))
        c.backward(z)
        cases.append(c)
        c = Case("mul_/view_twice/%s" % dt)
        x = c.rand([3, 2], dt)
        y = c.call("ag_mul_scalar", x, 0.5)
        v = c.call("ag_slice", y, 0, 0, 3, 2)
        c.call("ag_mul_scalar_", v, 3.0)
        c.call("ag_add_scalar_", y, 1.0)
        c.expect(y, version=True)
        z = c.call("ag_sum", c.call("ag_mul", y, y))
        c.backward(z)
        cases.append(c)
        c = Case("copy_/broadcast_convert/%s" % dt)
        x = c.call("ag_zeros", DT(dt), [2, 3])
        src = c.tensor([1.0, 2.5, -3.0], dtype="float64" if dt == "float32" else "float32", rg=True)
        c.call("ag_copy_", x, src)
        c.expect(x, version=True)
        s = c.call("ag_sum", c.call("ag_mul", x, x))
        c.backward(s)
        cases.append(c)
        c = Case("inplace/leaf_no_grad/%s" % dt)
        x = c.rand([3], dt)
        with c.no_grad():
            c.call("ag_mul_scalar_", x, 2.0)
            c.call("ag_add_", x, c.tensor([1.0, 1.0, 1.0], dtype=dt))
        c.expect(x, version=True, is_leaf=True)
        s = c.call("ag_sum", c.call("ag_mul", x, x))
        c.backward(s)
        cases.append(c)
        c = Case("inplace/leaf_without_grad/%s" % dt)
        x = c.rand([3], dt, rg=False)
        c.call("ag_add_scalar_", x, 1.0)
        c.call("ag_fill_", c.call("ag_narrow", x, 0, 0, 1), 7.0)
        c.expect(x, version=True, is_leaf=True)
        cases.append(c)
        c = Case("inplace/requires_grad_from_other/%s" % dt)
        x = c.rand([3], dt, rg=False)
        w = c.rand([3], dt)
        c.call("ag_mul_", x, w)
        c.expect(x, version=True, is_leaf=True)
        s = c.call("ag_sum", x)
        c.backward(s)
        cases.append(c)
        # views of a tensor with gaps (the detach of a strided slice): CopySlices over it, and
        # views made before the op follow it (AsStridedBackward0 over the gapped base)
        for fn in ("ag_mul_", "ag_add_", "ag_copy_"):
            c = Case("%s/view_of_gapped_base/%s" % (fn[3:], dt))
            a = c.rand([4, 4], dt, rg=False)
            e = c.call("ag_tensor_detach", c.call("ag_slice", a, 1, 0, 4, 2))
            u = c.call("ag_select", e, 1, 1)
            if fn == "ag_copy_":
                v = c.call("ag_select", e, 1, 0)
                o = c.rand([4], dt)
            else:
                v = c.call("ag_select", e, 0, 1)
                o = c.rand([] if fn == "ag_mul_" else [2], dt)
            c.call(fn, v, o)
            c.expect(e, version=True)
            c.expect(u, version=True)
            z = c.call("ag_add", c.call("ag_sum", c.call("ag_mul", e, e)),
                       c.call("ag_sum", c.call("ag_mul", u, u)))
            c.backward(z)
            cases.append(c)
    for fn, other in (("ag_add_", [1, 2, 3]), ("ag_mul_scalar_", 3.0), ("ag_fill_", 4.0),
                      ("ag_sub_", [5, 5, 5]), ("ag_zero_", None)):
        c = Case("%s/int64" % fn[3:])
        x = c.ints([1, -2, 3])
        if isinstance(other, list):
            other = c.ints(other)
        args = [x] + ([] if other is None else [other])
        c.call(fn, *args)
        c.expect(x, version=True)
        cases.append(c)
    c = Case("copy_/float_into_int64")
    x = c.ints([0, 0, 0])
    c.call("ag_copy_", x, c.tensor([1.75, -1.75, 3.0]))
    c.expect(x, version=True)
    cases.append(c)
    # an integer tensor takes no history from a float source that requires grad
    c = Case("copy_/grad_into_int64")
    x = c.ints([1, 2, 3])
    w = c.tensor([3.7, -4.2, 0.5], rg=True)
    c.call("ag_copy_", x, w)
    c.expect(x, version=True, is_leaf=True)
    v = c.call("ag_narrow", x, 0, 1, 2)
    c.call("ag_copy_", v, c.call("ag_narrow", w, 0, 0, 2))
    c.expect(x, version=True, is_leaf=True)
    c.err("ag_backward", c.call("ag_sum", c.call("ag_to_dtype", x, DT("float32"))), None, FL(),
          status="AG_ENOGRAD")
    cases.append(c)
    c = Case("add_/float_into_float32_from_int64")
    x = c.tensor([0.5, 1.5])
    c.call("ag_add_", x, c.ints([1, 2]))
    c.expect(x, version=True)
    cases.append(c)
    return cases + view_behind_cases() + overlap_cases() + bool_inplace_cases()


def bool_inplace_cases():
    """add_/mul_ of two bool tensors are logical or/and; sub with a bool tensor, and bool
    results of a wider result type, are errors; s / bool is float32 true division."""
    cases = []
    B, B2 = [True, False, True, False], [True, True, False, False]
    for name, fn, other in (("add_", "ag_add_", "b2"), ("mul_", "ag_mul_", "b2"),
                            ("add_self", "ag_add_", "self"), ("mul_self", "ag_mul_", "self")):
        c = Case("bool/%s" % name)
        b = c.bools(B)
        c.call(fn, b, b if other == "self" else c.bools(B2))
        c.expect(b, version=True)
        cases.append(c)
    c = Case("bool/sub_errors")
    b = c.bools(B)
    b2 = c.bools(B2)
    for fn in ("ag_sub_", "ag_sub"):
        c.err(fn, b, b2, status="AG_EDTYPE", contains="with two bool tensors is not supported")
    c.err("ag_sub_", c.tensor([1.0, 2.0, 3.0, 4.0]), b, status="AG_EDTYPE",
          contains="with a bool tensor is not supported")
    c.expect(b, version=True)
    cases.append(c)
    c = Case("bool/scalar_result_type")
    b = c.bools(B)
    for fn, s in (("ag_add_scalar_", 1.0), ("ag_mul_scalar_", 2.5)):
        # (torch names the dtype "Bool", our message "bool")
        c.err(fn, b, s, status="AG_EDTYPE", contains="can't be cast to the desired output type")
    c.expect(b, version=True)
    cases.append(c)
    c = Case("bool/into_float_and_int64")
    f = c.tensor([1.0, 2.0, 3.0, 4.0])
    c.call("ag_add_", f, c.bools(B))
    c.expect(f, version=True)
    i = c.ints([1, 2, 3, 4])
    c.call("ag_mul_", i, c.bools(B))
    c.expect(i, version=True)
    cases.append(c)
    c = Case("bool/rdiv_scalar")
    b = c.bools(B)
    c.call("ag_rdiv_scalar", b, 2.0)
    c.call("ag_rdiv_scalar", b, 0.0)
    cases.append(c)
    return cases


def overlap_cases():
    """In-place writes where memory overlaps: PyTorch refuses an output that reaches an
    element twice and an input that partly aliases the output (the result would depend on
    the order of the writes), and allows the rest."""
    cases = []
    c = Case("overlap/expanded_output")
    x = c.call("ag_zeros", DT("float32"), [3])
    e = c.call("ag_expand", x, [2, 3])
    for fn, arg in (("ag_add_scalar_", 1.0), ("ag_mul_scalar_", 2.0), ("ag_add_", "o"),
                    ("ag_copy_", "o")):
        o = c.call("ag_ones", DT("float32"), [2, 3]) if arg == "o" else arg
        c.err(fn, e, o, status="AG_EINVAL",
              contains="more than one element of the written-to tensor refers to a single "
                       "memory location")
    c.call("ag_fill_", e, 4.0)   # one value for every element written twice: allowed
    c.call("ag_zero_", e)
    c.expect(x, version=True)
    cases.append(c)
    c = Case("overlap/partial")
    a = c.call("ag_arange", DT("float32"), 0.0, 6.0, 1.0)
    for fn in ("ag_add_", "ag_sub_", "ag_mul_", "ag_copy_"):
        c.err(fn, c.call("ag_narrow", a, 0, 1, 5), c.call("ag_narrow", a, 0, 0, 5),
              status="AG_EINVAL",
              contains="some elements of the input tensor and the written-to tensor refer to a "
                       "single memory location")
    m = c.call("ag_view", a, [2, 3])
    c.err("ag_add_", c.call("ag_view", a, [3, 2]), c.call("ag_t", m), status="AG_EINVAL",
          contains="some elements of the input tensor")
    c.expect(a, version=True)
    cases.append(c)
    c = Case("overlap/allowed")
    a = c.call("ag_arange", DT("float32"), 0.0, 6.0, 1.0)
    c.call("ag_add_", a, c.call("ag_view", a, [6]))          # the same elements: fine
    c.call("ag_add_", c.call("ag_narrow", a, 0, 0, 3), c.call("ag_narrow", a, 0, 3, 3))
    m = c.call("ag_view", a, [2, 3])
    c.call("ag_copy_", c.call("ag_select", m, 1, 0), c.call("ag_select", m, 1, 1))
    c.call("ag_copy_", c.call("ag_ones", DT("float32"), [2, 3]),
           c.call("ag_expand", c.call("ag_select", m, 0, 1), [2, 3]))
    c.expect(a, version=True)
    cases.append(c)
    c = Case("overlap/partial_with_grad")
    x = c.rand([4])
    b = c.call("ag_mul_scalar", x, 1.0)
    c.err("ag_add_", c.call("ag_narrow", b, 0, 1, 3), c.call("ag_narrow", b, 0, 0, 3),
          status="AG_EINVAL", contains="some elements of the input tensor")
    c.expect(b, version=True)
    c.backward(c.call("ag_sum", b))
    cases.append(c)
    # an operand broadcast over the tensor it is part of, reading other elements than those
    # written: disjoint (allowed), the same elements position for position (allowed)
    c = Case("overlap/broadcast_disjoint_column")
    x = c.call("ag_view", c.call("ag_arange", DT("float32"), 0.0, 9.0, 1.0), [3, 3])
    rows = c.call("ag_slice", x, 0, 1, 3, 1)
    c.call("ag_add_", c.call("ag_slice", rows, 1, 1, 3, 1), c.call("ag_slice", rows, 1, 0, 1, 1))
    c.expect(x, version=True)
    cases.append(c)
    c = Case("overlap/broadcast_same_elements")
    x = c.call("ag_view", c.call("ag_arange", DT("float32"), 0.0, 6.0, 1.0), [2, 3])
    c.call("ag_add_", c.call("ag_slice", x, 1, 1, 2, 1),
           c.call("ag_unsqueeze", c.call("ag_select", x, 1, 1), 1))
    c.expect(x, version=True)
    cases.append(c)
    # copy_(t, t) copies nothing, even for an expanded t; it still bumps the version
    c = Case("overlap/copy_self_expanded")
    z = c.call("ag_zeros", DT("float32"), [3])
    e = c.call("ag_expand", z, [2, 3])
    c.call("ag_copy_", e, e)
    c.expect(z, version=True)
    c.expect(e, version=True)
    cases.append(c)
    c = Case("overlap/copy_self_grad")
    a = c.tensor([1.0, 2.0, 3.0], rg=True)
    m = c.call("ag_mul_scalar", a, 1.0)
    c.call("ag_copy_", m, m)
    c.expect(m, version=True)
    c.backward(c.call("ag_sum", m))
    cases.append(c)
    # Deliberate divergences: torch (too hard to judge) runs these element by element; our
    # kernels run in parallel, so an order-dependent in-place result is refused.
    c = Case("overlap/broadcast_partial")
    x = c.tensor([2.0, 4.0, -1.0, 0.0, 2.0, 0.0], [2, 3])
    c.err("ag_add_", x, c.call("ag_narrow", x, 1, 1, 1), status="AG_EINVAL", torch_ok=True,
          contains="some elements of the input tensor")
    cases.append(c)
    for name, n, step in (("strided_shifted", 20, 2), ("strided_shifted_sparse", 20000, 1000)):
        c = Case("overlap/%s" % name)
        x = c.call("ag_arange", DT("float32"), 0.0, float(n), 1.0, data=False)
        c.err("ag_add_", c.call("ag_slice", x, 0, 0, n - step, step),
              c.call("ag_slice", x, 0, step, n, step), status="AG_EINVAL", torch_ok=True,
              contains="some elements of the input tensor")
        cases.append(c)
    return cases


def view_behind_cases():
    """Views whose base changed in place behind them (on the base or through another view):
    PyTorch gives such a view a fresh AsStridedBackward0 of the base's new history when it is
    next used, and refuses views made under no_grad or by split."""
    cases = []
    for dt in FLOATS:
        c = Case("view_behind/base_mul_/%s" % dt)
        x = c.rand([4], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        v = c.call("ag_narrow", b, 0, 0, 2)
        c.call("ag_mul_scalar_", b, 2.0)
        c.expect(v, version=True)
        c.backward(c.call("ag_sum", c.call("ag_mul", v, v)))
        cases.append(c)
        # expand repeats the base's elements: their gradients add up
        c = Case("view_behind/expand/%s" % dt)
        x = c.rand([3], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        v = c.call("ag_expand", b, [2, 3])
        c.call("ag_mul_", b, c.rand([3], dt, rg=False))
        c.backward(c.call("ag_sum", c.call("ag_mul", v, c.rand([2, 3], dt, rg=False))))
        cases.append(c)
        # a strided view of a transposed view, then the base changed
        c = Case("view_behind/transposed_slice/%s" % dt)
        x = c.rand([6], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        bt = c.call("ag_t", c.call("ag_view", b, [2, 3]))
        v = c.call("ag_slice", bt, 0, 1, 3, 1)
        c.call("ag_add_", b, c.rand([6], dt))
        c.backward(c.call("ag_sum", c.call("ag_mul", v, c.rand([2, 2], dt, rg=False))))
        cases.append(c)
        # another view changed in place, overlapping this one
        c = Case("view_behind/other_view/%s" % dt)
        x = c.rand([4], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        v1 = c.call("ag_narrow", b, 0, 0, 3)
        v2 = c.call("ag_narrow", b, 0, 1, 3)
        c.call("ag_mul_scalar_", v1, 2.0)
        c.expect(v2, version=True)
        c.backward(c.call("ag_sum", c.call("ag_mul", v2, c.rand([3], dt, rg=False))))
        cases.append(c)
        # the base takes grad from the in-place op: the view of it now requires grad
        c = Case("view_behind/base_gains_grad/%s" % dt)
        b = c.call("ag_zeros", DT(dt), [3])
        v = c.call("ag_narrow", b, 0, 0, 2)
        w = c.rand([3], dt)
        c.call("ag_add_", b, w)
        c.expect(v, is_leaf=True)
        c.backward(c.call("ag_sum", c.call("ag_mul", v, v)))
        cases.append(c)
        # the base of a leaf's view changed under no_grad (an optimizer step)
        c = Case("view_behind/leaf_no_grad_step/%s" % dt)
        p = c.rand([4], dt)
        v = c.call("ag_narrow", p, 0, 1, 2)
        with c.no_grad():
            c.call("ag_add_scalar_", p, 1.0)
        c.backward(c.call("ag_sum", c.call("ag_mul", v, v)))
        cases.append(c)
        # retain_grad on the view: .grad is the gradient of its new value
        c = Case("view_behind/retain_grad/%s" % dt)
        x = c.rand([4], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        v = c.call("ag_narrow", b, 0, 0, 2)
        c.call("ag_tensor_retain_grad", v)
        c.call("ag_mul_scalar_", b, 2.0)
        c.backward(c.call("ag_sum", c.call("ag_mul_scalar", v, 3.0)))
        c.expect_grad(v)
        cases.append(c)
        # autograd.grad with respect to the view, and a double backward through it
        c = Case("view_behind/grad_create_graph/%s" % dt)
        x = c.rand([4], dt)
        b = c.call("ag_mul", x, x)
        v = c.call("ag_narrow", b, 0, 1, 2)
        c.call("ag_mul_scalar_", b, 3.0)
        gv = c.grad([c.call("ag_sum", c.call("ag_mul", v, v))], [v], flags=("create_graph",),
                    out=["gv"])
        gx = c.grad([c.call("ag_sum", c.call("ag_mul", v, v))], [x], flags=("create_graph",),
                    out=["gx"])
        c.backward(c.call("ag_sum", c.call("ag_mul", gx[0], gx[0])))
        cases.append(c)
    c = Case("view_behind/no_grad_view")
    x = c.rand([4])
    b = c.call("ag_mul_scalar", x, 1.0)
    with c.no_grad():
        v = c.call("ag_narrow", b, 0, 0, 2)
    c.call("ag_mul_scalar_", b, 2.0)
    c.err("ag_mul_scalar", v, 2.0, status="AG_EINVAL",
          contains="A view was created in no_grad mode and its base or another view of its base "
                   "has been modified inplace with grad mode enabled.")
    cases.append(c)
    c = Case("view_behind/no_grad_view_inplace")
    x = c.rand([4])
    b = c.call("ag_mul_scalar", x, 1.0)
    with c.no_grad():
        v = c.call("ag_narrow", b, 0, 0, 2)
    c.err("ag_mul_scalar_", v, 2.0, status="AG_EINVAL",
          contains="A view was created in no_grad mode and is being modified inplace")
    c.expect(b, version=True)
    cases.append(c)
    c = Case("view_behind/split")
    x = c.rand([4])
    b = c.call("ag_mul_scalar", x, 1.0)
    parts = c.call("ag_split", b, 2, 0)
    c.call("ag_mul_scalar_", b, 2.0)
    c.err("ag_mul_scalar", parts[1], 2.0, status="AG_EINVAL",
          contains="Output 1 of SplitBackward0 is a view and its base or another view of its "
                   "base has been modified inplace. This view is the output of a function that "
                   "returns multiple views.")
    cases.append(c)
    # a view made under no_grad of a tensor that requires grad: requires_grad, but no edge
    c = Case("view_behind/no_grad_view_root")
    w = c.rand([4])
    with c.no_grad():
        v = c.call("ag_narrow", w, 0, 0, 2)
    c.err("ag_backward", v, c.tensor([1.0, 1.0]), FL(), status="AG_ENOGRAD",
          contains="element 0 of tensors does not require grad and does not have a grad_fn")
    s = c.call("ag_sum", c.call("ag_mul_scalar", v, 3.0))
    c.grad([s], [v], flags=("allow_unused",), out=["gv"])
    c.expect_grads()
    cases.append(c)
    c = Case("view_behind/no_grad_view_of_leaf_inplace")
    w = c.rand([4])
    with c.no_grad():
        v = c.call("ag_narrow", w, 0, 0, 2)
    c.err("ag_mul_scalar_", v, 2.0, status="AG_EINVAL",
          contains="A view was created in no_grad mode and is being modified inplace")
    cases.append(c)
    # a base that repeats elements (a detached expand made a leaf): each takes its share
    c = Case("view_behind/overlapping_base")
    x = c.rand([2], rg=False)
    p = c.call("ag_tensor_detach", c.call("ag_expand", c.call("ag_unsqueeze", x, 0), [3, 2]))
    c.call("ag_tensor_set_requires_grad", p, 1)
    v = c.call("ag_select", p, 0, 0)
    r = c.call("ag_select", p, 0, 1)
    with c.no_grad():
        c.call("ag_add_scalar_", r, 1.0)
    c.backward(c.call("ag_sum", c.call("ag_mul", v, c.tensor([10.0, 20.0]))))
    cases.append(c)
    c = Case("view_behind/split_inplace")
    x = c.rand([4])
    b = c.call("ag_mul_scalar", x, 1.0)
    parts = c.call("ag_split", b, 2, 0)
    c.err("ag_add_scalar_", parts[0], 1.0, status="AG_EINVAL",
          contains="Output 0 of SplitBackward0 is a view and is being modified inplace.")
    c.expect(b, version=True)
    cases.append(c)
    return cases


def fam_autograd():
    cases = []
    # A root gradient of another dtype is cast to the root's (PyTorch's engine casts it; it
    # was refused with AG_EDTYPE here).
    for dt, other in (("float32", "float64"), ("float64", "float32")):
        c = Case("root_grad_cast/backward/%s_from_%s" % (dt, other))
        x = c.rand([2], dt)
        c.backward(c.call("ag_exp", x), c.rand([2], other, rg=False))
        cases.append(c)
        c = Case("root_grad_cast/grad/%s_from_%s" % (dt, other))
        x = c.rand([2], dt)
        y = c.call("ag_exp", x)
        (g,) = c.grad([y], [x], grad_outputs=[c.rand([2], other, rg=False)])
        c.expect(g)
        cases.append(c)
    for dt in FLOATS:
        c = Case("accumulate/two_backwards/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_sum", c.call("ag_mul", x, x))
        c.backward(y, flags=("retain_graph",))
        c.backward(y)
        cases.append(c)
        c = Case("accumulate/two_graphs/%s" % dt)
        x = c.rand([2, 2], dt)
        c.backward(c.call("ag_sum", c.call("ag_exp", x)))
        c.backward(c.call("ag_mean", c.call("ag_mul_scalar", x, 3.0)))
        cases.append(c)
        c = Case("diamond/%s" % dt)
        x = c.rand([3], dt)
        a = c.call("ag_mul_scalar", x, 2.0)
        b = c.call("ag_mul", a, x)
        d = c.call("ag_add", a, b)
        c.backward(c.call("ag_sum", d))
        cases.append(c)
        c = Case("higher_order/cube/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_sum", c.call("ag_pow_scalar", x, 3.0))
        c.backward(y, flags=("create_graph",))
        g = c.call("ag_tensor_grad", x)
        c.call("ag_tensor_set_grad", x, None)
        c.backward(c.call("ag_sum", g))
        cases.append(c)
        c = Case("higher_order/grad_of_grad/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_sum", c.call("ag_mul", c.call("ag_sin", x), x))
        (g1,) = c.grad([y], [x], flags=("create_graph",))
        (g2,) = c.grad([c.call("ag_sum", g1)], [x], flags=("create_graph",))
        c.grad([c.call("ag_sum", g2)], [x])
        cases.append(c)
        # mul_ saves the old value for the other operand's gradient, with its history
        c = Case("higher_order/inplace_mul/%s" % dt)
        x = c.rand([4], dt)
        b = c.call("ag_mul", x, x)
        c.call("ag_mul_", b, x)
        (g,) = c.grad([c.call("ag_sum", c.call("ag_mul", b, b))], [x], flags=("create_graph",))
        c.backward(c.call("ag_sum", g))
        cases.append(c)
        c = Case("grad/two_inputs/%s" % dt)
        x, w = c.rand([2, 3], dt), c.rand([3], dt)
        y = c.call("ag_mul", x, w)
        gy = grad_like(c, y)
        c.grad([y], [x, w], grad_outputs=[gy])
        c.expect_grads()  # ag_grad leaves .grad alone
        cases.append(c)
        c = Case("grad/two_outputs/%s" % dt)
        x = c.rand([3], dt)
        a = c.call("ag_sum", c.call("ag_exp", x))
        b = c.call("ag_mul_scalar", x, 2.0)
        gb = grad_like(c, b)
        c.grad([a, b], [x], grad_outputs=[None, gb])
        cases.append(c)
        c = Case("grad/allow_unused/%s" % dt)
        x, u = c.rand([2], dt), c.rand([2], dt)
        y = c.call("ag_sum", c.call("ag_mul", x, x))
        c.grad([y], [x, u], flags=("allow_unused",))
        cases.append(c)
        # grad(y, y) only hands over what reaches y: y's node does not run, so its saved
        # tensors survive for the backward after it (no retain_graph)
        c = Case("grad/input_node_kept/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_mul", x, x)
        c.grad([y], [y], grad_outputs=[grad_like(c, y)])
        c.backward(c.call("ag_sum", y))
        cases.append(c)
        c = Case("grad/input_node_modified_saved/%s" % dt)
        x = c.rand([3], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        p = c.call("ag_mul", b, b)
        d = c.call("ag_mul", p, c.rand([3], dt))
        c.call("ag_mul_scalar_", b, 2.0)
        c.grad([d], [p], grad_outputs=[grad_like(c, d)], flags=("retain_graph",))
        cases.append(c)
        # a leaf set not to require grad after a graph recorded it takes no gradient there
        c = Case("requires_grad/cleared_after_recording/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_sum", c.call("ag_mul_scalar", x, 2.0))
        c.call("ag_tensor_set_requires_grad", x, 0)
        c.backward(y, flags=("retain_graph",))
        c.expect_grad(x)
        c.call("ag_tensor_set_requires_grad", x, 1)
        c.backward(y)
        c.expect_grad(x)
        cases.append(c)
        c = Case("retain_graph/grad_twice/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_sum", c.call("ag_tanh", x))
        c.grad([y], [x], flags=("retain_graph",))
        c.grad([y], [x])
        cases.append(c)
        c = Case("no_grad/block/%s" % dt)
        x = c.rand([3], dt)
        with c.no_grad():
            y = c.call("ag_mul", x, x)
            z = c.call("ag_exp", x)
        w = c.call("ag_mul", y, x)
        c.backward(c.call("ag_sum", w))
        cases.append(c)
        c = Case("detach/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_mul_scalar", x, 2.0)
        d = c.call("ag_tensor_detach", y, extra={"is_leaf": True})
        z = c.call("ag_mul", y, d)
        c.backward(c.call("ag_sum", z))
        cases.append(c)
        c = Case("detach/shares_storage/%s" % dt)
        x = c.rand([3], dt)
        d = c.call("ag_tensor_detach", x)
        c.call("ag_mul_scalar_", d, 2.0)
        c.expect(x, version=True)
        cases.append(c)
        c = Case("retain_grad/%s" % dt)
        x = c.rand([2, 2], dt)
        y = c.call("ag_mul_scalar", x, 3.0)
        c.call("ag_tensor_retain_grad", y)
        z = c.call("ag_exp", y)
        c.backward(c.call("ag_sum", z))
        cases.append(c)
        # retain_grad, then an in-place op: .grad is the gradient of the new value (PyTorch
        # moves the retaining hook to the newest grad_fn; 1.13 and 2.x agree here).
        c = Case("retain_grad/inplace/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_mul_scalar", x, 2.0)
        c.call("ag_tensor_retain_grad", y)
        c.call("ag_mul_scalar_", y, 5.0)
        z = c.call("ag_exp", y)
        c.backward(c.call("ag_sum", z))
        cases.append(c)
        c = Case("retain_grad/inplace_view/%s" % dt)
        x = c.rand([4], dt)
        b = c.call("ag_mul_scalar", x, 1.0)
        v = c.call("ag_narrow", b, 0, 0, 2)
        c.call("ag_tensor_retain_grad", v)
        c.call("ag_mul_scalar_", v, 2.0)
        c.backward(c.call("ag_sum", c.call("ag_mul_scalar", v, 3.0)))
        cases.append(c)
        c = Case("retain_grad/accumulates/%s" % dt)
        x = c.rand([2], dt)
        y = c.call("ag_sin", x)
        c.call("ag_tensor_retain_grad", y)
        s = c.call("ag_sum", c.call("ag_mul", y, y))
        c.backward(s, flags=("retain_graph",))
        c.backward(s)
        cases.append(c)
        # autograd.grad fills the .grad of a retaining non-leaf whose grad_fn runs (1.13: the
        # retaining hook is the node's), accumulating; not of one only captured; no leaf's.
        for name, wrt in (("on_path", "x"), ("captured_only", "y"), ("both", "xy")):
            c = Case("retain_grad/autograd_grad/%s/%s" % (name, dt))
            x = c.rand([3], dt)
            y = c.call("ag_mul_scalar", x, 2.0)
            c.call("ag_tensor_retain_grad", y)
            s = c.call("ag_sum", c.call("ag_mul", y, y))
            ins = [{"x": x, "y": y}[k] for k in wrt]
            c.grad([s], ins, flags=("retain_graph",))
            c.expect_grads()
            c.grad([s], ins)
            c.expect_grads()
            cases.append(c)
        c = Case("retain_grad/autograd_grad/create_graph/%s" % dt)
        x = c.rand([3], dt)
        y = c.call("ag_sin", x)
        c.call("ag_tensor_retain_grad", y)
        s = c.call("ag_sum", c.call("ag_mul", y, y))
        (g,) = c.grad([s], [x], flags=("create_graph",))
        c.expect_grads()
        c.backward(c.call("ag_sum", g))
        cases.append(c)
        c = Case("backward/explicit_grad/%s" % dt)
        x = c.rand([2, 3], dt)
        y = c.call("ag_exp", x)
        c.backward(y, grad_like(c, y))
        cases.append(c)
        c = Case("backward/from_leaf/%s" % dt)
        x = c.rand([3], dt)
        c.backward(x, grad_like(c, x))
        cases.append(c)
        c = Case("set_grad/zero_grad/%s" % dt)
        x = c.rand([3], dt)
        c.backward(c.call("ag_sum", c.call("ag_mul", x, x)))
        c.call("ag_tensor_zero_grad", x)
        c.expect_grad(x)
        c.call("ag_tensor_set_grad", x, c.tensor([1.0, 2.0, 3.0], dtype=dt))
        c.expect_grad(x)
        c.backward(c.call("ag_sum", x))
        c.call("ag_tensor_set_grad", x, None)
        c.expect_grad(x)
        cases.append(c)
        c = Case("requires_grad/propagation/%s" % dt)
        x = c.rand([2], dt, rg=False)
        c.call("ag_add", x, x, extra={"is_leaf": True})
        c.call("ag_tensor_set_requires_grad", x, 1)
        c.expect(x, is_leaf=True)
        y = c.call("ag_add", x, x, extra={"is_leaf": True})
        c.call("ag_tensor_set_requires_grad", x, 0)
        c.expect(x, is_leaf=True)
        c.expect(y, is_leaf=True)
        cases.append(c)
        c = Case("release/intermediates/%s" % dt)
        x = c.rand([3], dt)
        a = c.call("ag_exp", x)
        b = c.call("ag_mul", a, x)
        s = c.call("ag_sum", b)
        c.release(a)
        c.release(b)
        c.backward(s)
        cases.append(c)
        c = Case("release/leaf_before_backward/%s" % dt)
        x = c.rand([3], dt)
        m = c.call("ag_mul_scalar", x, 2.0)
        y = c.call("ag_sum", m)
        c.release(x)
        c.release(m)
        c.backward(y)
        cases.append(c)
    c = Case("mixed_dtype_grads")
    x = c.rand([3], "float32")
    w = c.rand([3], "float64")
    y = c.call("ag_mul", x, w)
    c.backward(c.call("ag_sum", y))
    cases.append(c)
    c = Case("to_dtype/int64_cuts_graph")
    x = c.rand([3], "float32", lo=0, hi=4)
    i = c.call("ag_to_dtype", x, DT("int64"))
    y = c.call("ag_mul", x, c.call("ag_to_dtype", i, DT("float32")))
    c.backward(c.call("ag_sum", y))
    cases.append(c)
    c = Case("no_grad/nested_backward_graph")
    x = c.rand([2], "float64")
    y = c.call("ag_exp", x)
    s = c.call("ag_sum", y)
    with c.no_grad():
        c.call("ag_mul", y, y)
        c.backward(s)
    cases.append(c)
    c = Case("dead_branch")
    x = c.rand([3], "float64")
    u = c.rand([3], "float64")
    a = c.call("ag_mul", x, x)
    c.call("ag_mul", u, u)
    c.backward(c.call("ag_sum", a))
    cases.append(c)
    c = Case("long_chain/float64")
    x = c.rand([2], "float64", lo=0.5, hi=1.0)
    y = x
    for k in range(20):
        y = c.call("ag_mul_scalar", c.call("ag_add_scalar", y, 0.125), 0.875, expect=(k == 19))
    c.backward(c.call("ag_sum", y))
    cases.append(c)
    c = Case("grad/double_backward_mixed/float64")
    x, w = c.rand([3], "float64"), c.rand([3], "float64")
    y = c.call("ag_sum", c.call("ag_mul", c.call("ag_mul", x, x), w))
    (gx,) = c.grad([y], [x], flags=("create_graph",))
    c.backward(c.call("ag_sum", gx))
    cases.append(c)
    return cases + grad_layout_cases() + layout_cases() + second_order_cases()


def grad_layout_cases():
    """The layout of what autograd.grad hands out is its formula's: mean's gradient is
    grad.expand(sizes) / numel, a fresh contiguous tensor that in-place ops accept, while sum's is
    grad.expand(sizes), a stride-0 view they refuse; a product's factor that was column-major
    gets a column-major gradient (mm_mat1_backward / mm_mat2_backward), so that a transposed
    leaf's is contiguous; 1-d @ 3-d folds b^T into rows, so b's gradient is a transposed view."""
    cases = []
    lay = {"layout": True}

    def grad_of(c, y, ins, flags=()):
        go = NULL if c.env[y].dim() == 0 else TS(grad_like(c, y))
        return c.call("ag_grad", TS(y), go, TS(*ins), FL(*flags), extra=lay)

    for dt in FLOATS:
        for name, fn, extra, tr in (("mean", "ag_mean", (), False),
                                    ("mean_dims/1/nokeep", "ag_mean_dims", ([1], 0), False),
                                    ("mean_dims/0/keepdim", "ag_mean_dims", ([0], 1), False),
                                    ("mean_dims/all/nokeep", "ag_mean_dims", ([], 0), False),
                                    ("mean_dims/0_1/nokeep", "ag_mean_dims", ([0, 1], 0), False),
                                    ("mean/transposed", "ag_mean", (), True),
                                    ("mean_dims/transposed", "ag_mean_dims", ([1], 0), True)):
            for cg in ((), ("create_graph",)):
                c = Case("grad_layout/%s%s/%s" % (name, "/create_graph" if cg else "", dt))
                x = c.rand([3, 2] if tr else [2, 3], dt)
                y = c.call(fn, c.call("ag_t", x, expect=False) if tr else x, *extra)
                (g,) = grad_of(c, y, [x], cg)
                if not cg:
                    c.call("ag_add_scalar_", g, 2.0)
                    c.expect(g)
                cases.append(c)
        for name, fn, extra in (("sum", "ag_sum", ()), ("sum_dims/1/nokeep", "ag_sum_dims", ([1], 0)),
                                ("sum_dims/0/keepdim", "ag_sum_dims", ([0], 1))):
            c = Case("grad_layout/%s/%s" % (name, dt))
            x = c.rand([2, 3], dt)
            (g,) = grad_of(c, c.call(fn, x, *extra), [x])
            c.err("ag_add_scalar_", g, 2.0, status="AG_EINVAL",
                  contains="more than one element of the written-to tensor")
            cases.append(c)
        # (t: the factor is a transposed leaf; the combinations whose layouts were already
        # PyTorch's are left out; 2x1 @ 1x4: PyTorch's test sees size-1 dims' strides)
        for ta, tb, sa, sb in ((0, 1, [2, 1], [1, 4]), (1, 0, [2, 3], [3, 4]),
                               (1, 0, [2, 1], [1, 4]), (1, 1, [2, 3], [3, 4]),
                               (1, 1, [2, 1], [1, 4])):
            c = Case("grad_layout/mm/%s%s/%dx%d_%dx%d/%s" % (
                "t" if ta else "n", "t" if tb else "n", sa[0], sa[1], sb[0], sb[1], dt))
            a = c.rand(sa[::-1] if ta else sa, dt)
            b = c.rand(sb[::-1] if tb else sb, dt)
            y = c.call("ag_matmul", c.call("ag_t", a, expect=False) if ta else a,
                       c.call("ag_t", b, expect=False) if tb else b)
            grad_of(c, y, [a, b])
            cases.append(c)
        for ta in (0, 1):
            for tb in (0, 1):
                for hb in (0, 1):
                    if not ta and not (tb and hb):
                        continue
                    c = Case("grad_layout/linear/%s%s%s/%s" % (
                        "t" if ta else "n", "t" if tb else "n", "_bias" if hb else "", dt))
                    x = c.rand([3, 2] if ta else [2, 3], dt)
                    w = c.rand([3, 4] if tb else [4, 3], dt)
                    b = c.rand([4], dt) if hb else None
                    y = c.call("ag_linear", c.call("ag_t", x, expect=False) if ta else x,
                               c.call("ag_t", w, expect=False) if tb else w, b)
                    grad_of(c, y, [x, w] + ([b] if hb else []))
                    cases.append(c)
        for sa, sb in (([3], [2, 3, 4]), ([3], [2, 1, 3, 2]), ([0], [2, 0, 3])):
            c = Case("grad_layout/matmul/vec_batch/%s/%s" % ("x".join(map(str, sb)), dt))
            a, b = c.rand(sa, dt), c.rand(sb, dt)
            grad_of(c, c.call("ag_matmul", a, b), [a, b])
            cases.append(c)
    return cases


def layout_cases():
    """Results laid out as PyTorch lays them out. Elementwise ops follow TensorIterator: a
    contiguous result for contiguous operands; the operands' strides when they share one dense
    layout and the result's shape; otherwise dimensions ordered by the operands' strides (the
    first operand that orders two decides; a scalar operand, as in x * 2, takes the second
    road, which differs in the strides of size-1 dimensions). clone, to and the *_like
    functions preserve the layout; contiguous and reshape's copy do not. A leaf's .grad obeys
    the gradient layout contract (the leaf's strides where it is dense, else contiguous); a
    retained .grad is contiguous. Layouts decide what view() accepts next and whether reshape
    records ReshapeAliasBackward0 or UnsafeViewBackward0."""
    cases = []
    lay = {"layout": True}

    # Inputs: a leaf, and the view of it the op sees.
    def make(c, kind, dt="float32", **kw):
        if kind == "contig":
            x = c.rand([3, 4], dt, **kw)
            return x, x
        if kind == "t":
            x = c.rand([4, 3], dt, **kw)
            return x, c.call("ag_t", x, expect=False)
        if kind == "perm":
            x = c.rand([2, 4, 3], dt, **kw)
            return x, c.call("ag_permute", x, [2, 0, 1], expect=False)
        if kind == "strided":  # not dense: every other row, transposed
            x = c.rand([8, 3], dt, **kw)
            return x, c.call("ag_t", c.call("ag_slice", x, 0, 0, 8, 2, expect=False),
                             expect=False)
        if kind == "size1":  # dense, a size-1 dim with a stride of its own
            x = c.rand([3, 1, 4], dt, **kw)
            return x, c.call("ag_permute", x, [2, 1, 0], expect=False)
        if kind == "col":  # contiguous by PyTorch's rule, strides (1, 4)
            x = c.rand([1, 4], dt, **kw)
            return x, c.call("ag_t", x, expect=False)
        if kind == "cl":  # channels-last
            x = c.rand([2, 2, 2, 3], dt, **kw)
            return x, c.call("ag_permute", x, [0, 3, 1, 2], expect=False)
        if kind == "expand":
            x = c.rand([4, 1], dt, **kw)
            return x, c.call("ag_expand", x, [4, 3], expect=False)
        raise ValueError(kind)

    kinds = ("t", "perm", "strided", "size1", "col", "cl", "expand")
    pos = {"lo": 0.25, "hi": 2.0}
    unary = (("exp", "ag_exp", (), {}), ("tanh", "ag_tanh", (), {}),
             ("relu", "ag_relu", (), {}), ("gelu", "ag_gelu", (0,), {}),
             ("sqrt", "ag_sqrt", (), pos), ("pow_scalar", "ag_pow_scalar", (2.0,), {}),
             ("clamp", "ag_clamp", (-0.5, 0.5), {}), ("neg", "ag_neg", (), {}),
             ("mul_scalar", "ag_mul_scalar", (3.0,), {}),
             ("rsub_scalar", "ag_rsub_scalar", (1.0,), {}),
             ("rdiv_scalar", "ag_rdiv_scalar", (1.0,), pos),
             ("rpow_scalar", "ag_rpow_scalar", (2.0,), {}),
             ("gt_scalar", "ag_gt_scalar", (0.0,), {}))
    unary_grad_only = (("sigmoid", "ag_sigmoid", (), {}), ("silu", "ag_silu", (), {}),
                       ("softplus", "ag_softplus", (1.0, 20.0), {}),
                       ("leaky_relu", "ag_leaky_relu", (0.1,), {}), ("log", "ag_log", (), pos),
                       ("abs", "ag_abs", (), {}), ("sin", "ag_sin", (), {}),
                       ("expm1", "ag_expm1", (), {}), ("rsqrt", "ag_rsqrt", (), pos),
                       ("gelu_tanh", "ag_gelu", (1,), {}))
    for kind in kinds:
        for name, fn, extra, kw in unary:
            c = Case("layout/%s/%s" % (name, kind))
            x, v = make(c, kind, **kw)
            y = c.call(fn, v, *extra, extra=lay)
            if c.env[y].requires_grad:
                bwd(c, y)
            cases.append(c)
        # The gradient each op's backward hands to its input (the view), as autograd.grad
        # returns it: laid out as PyTorch's formula lays it out (TensorIterator's order of
        # operands: relu's threshold_backward takes the output first, tanh's the gradient).
        for name, fn, extra, kw in unary + unary_grad_only:
            c = Case("layout/%s/%s/grad" % (name, kind))
            x, v = make(c, kind, **kw)
            y = c.call(fn, v, *extra, expect=False)
            if c.env[y].requires_grad:
                c.grad([y], [v], grad_outputs=[grad_like(c, y)], out=["g"])
                c.expect("g", **lay)
                cases.append(c)
        for name, fn, extra in (("clone", "ag_clone", ()), ("contiguous", "ag_contiguous", ()),
                                ("to_float64", "ag_to_dtype", (DT("float64"),)),
                                ("zeros_like", "ag_zeros_like", ()),
                                ("full_like", "ag_full_like", (2.5,))):
            c = Case("layout/%s/%s" % (name, kind))
            x, v = make(c, kind)
            y = c.call(fn, v, *extra, extra=lay)
            if c.env[y].requires_grad:
                bwd(c, y)
            cases.append(c)
        for name, fn in (("empty_like", "ag_empty_like"),):
            c = Case("layout/%s/%s" % (name, kind))
            x, v = make(c, kind)
            c.call(fn, v, data=False, extra=lay)
            cases.append(c)
    # The gradient reductions, normalisations and other ops hand to their input, for inputs
    # of several layouts (ag_grad), laid out as PyTorch's formulas lay them out.
    others = (("sum_dims", "ag_sum_dims", ([1], 0)), ("sum_keep", "ag_sum_dims", ([0], 1)),
              ("mean_dims", "ag_mean_dims", ([1], 0)), ("amax", "ag_amax", ([1], 0)),
              ("max_dim", "ag_max_dim", (1, 0)), ("var", "ag_var", ([1], 1, 0)),
              ("std", "ag_std", ([0], 1, 1)), ("logsumexp", "ag_logsumexp", ([1], 0)),
              ("norm2", "ag_norm", (2.0, [1], 0)), ("norm1", "ag_norm", (1.0, [0], 0)),
              ("norm3", "ag_norm", (3.0, [1], 0)), ("norm1_5", "ag_norm", (1.5, [1], 1)),
              ("norm_half", "ag_norm", (0.5, [0], 0)), ("norm_inf", "ag_norm", (math.inf, [1], 0)),
              ("min_dim", "ag_min_dim", (0, 1)), ("amin", "ag_amin", ([0, 1], 0)),
              ("mean_all", "ag_mean_dims", ([0, 1], 1)),
              ("softmax", "ag_softmax", (-1,)), ("log_softmax", "ag_log_softmax", (0,)),
              ("sum", "ag_sum", ()), ("mean", "ag_mean", ()), ("max", "ag_max", ()),
              ("contiguous", "ag_contiguous", ()), ("clone", "ag_clone", ()),
              ("reshape", "ag_reshape", ([-1],)), ("flatten", "ag_flatten", (0, -1)),
              ("to_float64", "ag_to_dtype", (DT("float64"),)))
    # Double backward: the grad_fn of the gradient each op's formula makes under create_graph
    # (PyTorch's name for the node it records: a dedicated *BackwardBackward0 node where
    # derivatives.yaml has one, else the last op of the formula).
    for name, fn, extra, kw in unary + unary_grad_only:
        c = Case("grad_fn/%s/create_graph" % name)
        x = c.rand([3, 4], **kw)
        y = c.call(fn, x, *extra, expect=False)
        if c.env[y].requires_grad:
            c.grad([y], [x], grad_outputs=[grad_like(c, y)], flags=("create_graph",), out=["g"])
            c.expect("g", data=False)
            cases.append(c)
    for name, fn, extra in others:
        c = Case("grad_fn/%s/create_graph" % name)
        x = c.rand([3, 4])
        y = c.call(fn, x, *extra, expect=False)
        y = y[0] if isinstance(y, list) else y
        c.grad([y], [x], grad_outputs=[grad_like(c, y)], flags=("create_graph",), out=["g"])
        c.expect("g", data=False)
        cases.append(c)
    for name, fn, kw in (("add", "ag_add", {}), ("sub", "ag_sub", {}), ("mul", "ag_mul", {}),
                         ("div", "ag_div", pos), ("pow", "ag_pow", pos),
                         ("maximum", "ag_maximum", {}), ("minimum", "ag_minimum", {}),
                         ("matmul", "ag_matmul", {})):
        c = Case("grad_fn/%s/create_graph" % name)
        a = c.rand([3, 4], **kw)
        b = c.rand([4, 4] if name == "matmul" else [3, 4], **kw)
        y = c.call(fn, a, b, expect=False)
        c.grad([y], [a, b], grad_outputs=[grad_like(c, y)], flags=("create_graph",),
               out=["ga", "gb"])
        c.expect("ga", data=False)
        c.expect("gb", data=False)
        cases.append(c)
    for name, extra in (("mse_mean", ("ag_mse_loss", RED("mean"))),
                        ("mse_none", ("ag_mse_loss", RED("none"))),
                        ("bce_mean", ("ag_binary_cross_entropy_with_logits", None, None,
                                      RED("mean")))):
        c = Case("grad_fn/%s/create_graph" % name)
        a, b = c.rand([3, 4]), c.rand([3, 4])
        y = c.call(extra[0], a, b, *extra[1:], expect=False)
        c.grad([y], [a, b], grad_outputs=[grad_like(c, y)], flags=("create_graph",),
               out=["ga", "gb"])
        c.expect("ga")
        c.expect("gb")
        cases.append(c)
    # Second order: the grad_fn of a gradient of a gradient (the last op of the double-backward
    # formula: MulBackward1 where PyTorch's C++ multiplies by a Scalar).
    for name, fn, extra, kw in (("tanh", "ag_tanh", (), {}), ("sigmoid", "ag_sigmoid", (), {}),
                                ("softplus", "ag_softplus", (2.0, 1.0), {}),
                                ("softmax", "ag_softmax", (1,), {}),
                                ("log_softmax", "ag_log_softmax", (0,), {}),
                                ("gelu", "ag_gelu", (0,), {})):
        c = Case("grad_fn/%s/second_order" % name)
        x = c.rand([3, 4], **kw)
        y = c.call(fn, x, *extra, expect=False)
        (g,) = c.grad([y], [x], grad_outputs=[grad_like(c, y)], flags=("create_graph",),
                      out=["g"])
        u = c.rand([3, 4], rg=False)
        s = c.call("ag_sum", c.call("ag_mul", g, u, expect=False), expect=False)
        c.grad([s], [x], flags=("create_graph",), out=["gg"])
        c.expect("gg")
        cases.append(c)
    # Leaves that are views of another's storage (detached slices), reduced whole: the
    # gradient's layout, and the .grad the contract gives them.
    for name, shape, sl in (("slice1", [4], (0, 1, 2, 1)), ("slice_rows", [6, 3], (0, 1, 5, 2)),
                            ("slice_cols", [3, 6], (1, 0, 6, 2)), ("col1", [3, 1], None)):
        for red in ("ag_sum", "ag_mean"):
            c = Case("layout/detached_%s/%s/grad" % (name, red[3:]))
            base = c.rand(shape, rg=False)
            v = c.call("ag_slice", base, *sl, expect=False) if sl else base
            x = c.call("ag_tensor_detach", v, expect=False)
            c.call("ag_tensor_set_requires_grad", x, 1)
            y = c.call(red, x, expect=False)
            c.backward(y, check=False)
            c.expect_grad(x, layout=True)
            cases.append(c)
    # (shape ops and nn ops, on 2-d inputs [3, 4] of each kind)
    for kind in ("t", "strided", "contig"):
        shape_ops = (("index_select", lambda c, v: c.call("ag_index_select", v, 1,
                                                          c.ints([2, 0, 2]), expect=False)),
                     ("gather", lambda c, v: c.call("ag_gather", v, 1,
                                                    c.ints([0, 3, 1, 1, 2, 0], [3, 2]),
                                                    expect=False)),
                     ("cat", lambda c, v: c.call("ag_cat", TS(v, v), 1, expect=False)),
                     ("stack", lambda c, v: c.call("ag_stack", TS(v, v), 0, expect=False)),
                     ("select", lambda c, v: c.call("ag_select", v, 1, 2, expect=False)),
                     ("narrow", lambda c, v: c.call("ag_narrow", v, 1, 1, 2, expect=False)),
                     ("split", lambda c, v: c.call("ag_split", v, 3, 1, expect=False)[0]),
                     ("unsqueeze", lambda c, v: c.call("ag_unsqueeze", v, 1, expect=False)),
                     ("transpose", lambda c, v: c.call("ag_transpose", v, 0, 1, expect=False)),
                     ("expand", lambda c, v: c.call("ag_expand",
                                                    c.call("ag_unsqueeze", v, 0, expect=False),
                                                    [2, 3, 4], expect=False)),
                     ("masked_fill", lambda c, v: c.call(
                         "ag_masked_fill", v, c.call("ag_gt_scalar", v, 0.5, expect=False),
                         0.0, expect=False)),
                     ("cross_entropy", lambda c, v: c.call(
                         "ag_cross_entropy", v, c.ints([0, 3, 1]), None, RED("none"), -100,
                         0.0, expect=False)),
                     ("cross_entropy_ls", lambda c, v: c.call(
                         "ag_cross_entropy", v, c.ints([0, 3, 1]), None, RED("mean"), -100,
                         0.1, expect=False)),
                     ("layer_norm", lambda c, v: c.call("ag_layer_norm", v, [4], None, None,
                                                        1e-5, expect=False)),
                     ("linear", lambda c, v: c.call("ag_linear", v, c.rand([5, 4]), None,
                                                    expect=False)))
        for name, f in shape_ops:
            c = Case("layout/%s/%s/grad" % (name, kind))
            x, v = make(c, kind)
            y = f(c, v)
            c.grad([y], [v], grad_outputs=[grad_like(c, y)], out=["g"])
            c.expect("g", **lay)
            cases.append(c)
    for kind in ("t", "perm", "strided", "size1", "cl"):
        for name, fn, extra in others:
            c = Case("layout/%s/%s/grad" % (name, kind))
            x, v = make(c, kind)
            y = c.call(fn, v, *extra, expect=False)
            y = y[0] if isinstance(y, list) else y
            c.grad([y], [v], grad_outputs=[grad_like(c, y)], out=["g"])
            c.expect("g", **lay)
            cases.append(c)
    # Gradients of ops with more operands: each operand in turn in a layout of its own.
    for kind in ("t", "perm", "strided", "cl", "size1"):
        def pair(c, kind, i, **kw):
            # operand i in layout `kind`, the other contiguous, of the same shape
            x, v = make(c, kind, **kw)
            o = c.rand(c.env[v].shape, **kw)
            return (v, o) if i == 0 else (o, v)
        for i in (0, 1):
            for name, fn, extra in (("mse_none", "ag_mse_loss", (RED("none"),)),
                                    ("mse_mean", "ag_mse_loss", (RED("mean"),)),
                                    ("bce_logits", "ag_binary_cross_entropy_with_logits",
                                     (None, None, RED("none"))),
                                    ("bce_logits_pw", "ag_binary_cross_entropy_with_logits",
                                     (None, "pw", RED("none"))),
                                    ("bce_logits_mean", "ag_binary_cross_entropy_with_logits",
                                     ("w", None, RED("mean"))),
                                    ("where", None, ()), ("div", "ag_div", ())):
                c = Case("layout/%s/%s%d/grad" % (name, kind, i))
                a, b = pair(c, kind, i, **(pos if name == "div" else {}))
                if fn is None:
                    m = c.call("ag_gt_scalar", a, 0.5, expect=False)
                    y = c.call("ag_where", m, a, b, expect=False)
                else:
                    # (weight and pos_weight: over the last dim, broadcast)
                    extra = tuple(c.rand([c.env[a].shape[-1]], rg=False) if e in ("w", "pw")
                                  else e for e in extra)
                    y = c.call(fn, a, b, *extra, expect=False)
                ins = [a, b]
                outs = ["ga"] if len(ins) == 1 else ["ga", "gb"]
                c.grad([y], ins, grad_outputs=[grad_like(c, y)], out=outs)
                for o in outs:
                    c.expect(o, **lay)
                cases.append(c)
    for ka in ("contig", "t"):
        for kb in ("contig", "t"):
            c = Case("layout/matmul/%s_%s/grad" % (ka, kb))
            a = c.rand([3, 4]) if ka == "contig" else c.call("ag_t", c.rand([4, 3]), expect=False)
            b = c.rand([4, 5]) if kb == "contig" else c.call("ag_t", c.rand([5, 4]), expect=False)
            y = c.call("ag_matmul", a, b, expect=False)
            c.grad([y], [a, b], grad_outputs=[grad_like(c, y)], out=["ga", "gb"])
            c.expect("ga", **lay)
            c.expect("gb", **lay)
            cases.append(c)
    # Two operands: which one's layout wins, and broadcasting.
    binary = (("add", "ag_add"), ("mul", "ag_mul"), ("maximum", "ag_maximum"), ("lt", "ag_lt"))
    # The gradients a binary op's backward hands to both operands (ag_grad), laid out as
    # PyTorch's formulas lay them out.
    for name, fn, kw in (("add", "ag_add", {}), ("sub", "ag_sub", {}), ("mul", "ag_mul", {}),
                         ("div", "ag_div", pos), ("pow", "ag_pow", pos),
                         ("maximum", "ag_maximum", {}), ("minimum", "ag_minimum", {})):
        for ka, kb in (("t", "t"), ("t", "contig"), ("contig", "t"), ("perm", "perm"),
                       ("strided", "t"), ("cl", "cl"), ("size1", "size1"), ("col", "col"),
                       ("t", "b4"), ("b31", "t")):
            c = Case("layout/%s/%s_%s/grad" % (name, ka, kb))
            xa, a = (None, c.rand([4], **kw)) if ka == "b4" else \
                (None, c.rand([3, 1], **kw)) if ka == "b31" else make(c, ka, **kw)
            xb, b = (None, c.rand([4], **kw)) if kb == "b4" else make(c, kb, **kw)
            y = c.call(fn, a, b, expect=False)
            c.grad([y], [a, b], grad_outputs=[grad_like(c, y)], out=["ga", "gb"])
            c.expect("ga", **lay)
            c.expect("gb", **lay)
            cases.append(c)
    for name, fn in binary:
        for ka, kb in (("t", "t"), ("t", "contig"), ("contig", "t"), ("perm", "perm"),
                       ("strided", "t"), ("cl", "cl"), ("size1", "size1")):
            c = Case("layout/%s/%s_%s" % (name, ka, kb))
            xa, a = make(c, ka)
            xb, b = make(c, kb)
            y = c.call(fn, a, b, extra=lay)
            if c.env[y].requires_grad:
                bwd(c, y)
            cases.append(c)
        for ka, shape_b in (("t", [4]), ("t", [3, 1]), ("perm", [3, 1, 1]), ("perm", [1, 2, 1])):
            c = Case("layout/%s/%s_broadcast_%s" % (name, ka, "x".join(map(str, shape_b))))
            xa, a = make(c, ka)
            b = c.rand(shape_b)
            y = c.call(fn, a, b, extra=lay)
            if c.env[y].requires_grad:
                bwd(c, y)
            cases.append(c)
            c = Case("layout/%s/broadcast_%s_%s" % (name, "x".join(map(str, shape_b)), ka))
            b = c.rand(shape_b)
            xa, a = make(c, ka)
            y = c.call(fn, b, a, extra=lay)
            if c.env[y].requires_grad:
                bwd(c, y)
            cases.append(c)
    for kind in ("t", "perm", "strided"):
        c = Case("layout/where/%s" % kind)
        x, v = make(c, kind)
        m = c.call("ag_gt_scalar", v, 0.0, expect=False)
        y = c.call("ag_where", m, v, c.call("ag_neg", v, expect=False), extra=lay)
        bwd(c, y)
        cases.append(c)
    # Not TensorIterator results: masked_fill clones contiguous first, softmax and reductions
    # allocate contiguous; dropout multiplies by its mask (values random: layout only).
    for kind in ("t", "perm", "strided"):
        c = Case("layout/masked_fill/%s" % kind)
        x, v = make(c, kind)
        m = c.call("ag_gt_scalar", v, 0.0, expect=False)
        bwd(c, c.call("ag_masked_fill", v, m, 0.0, extra=lay))
        cases.append(c)
        c = Case("layout/softmax/%s" % kind)
        x, v = make(c, kind)
        bwd(c, c.call("ag_softmax", v, -1, extra=lay))
        cases.append(c)
        c = Case("layout/sum_dims/%s" % kind)
        x, v = make(c, kind)
        bwd(c, c.call("ag_sum_dims", v, [0], 0, extra=lay))
        cases.append(c)
        c = Case("layout/dropout/%s" % kind)
        x, v = make(c, kind)
        c.call("ag_dropout", None, v, 0.5, 1, data=False, extra=lay)
        cases.append(c)
    # Unreduced losses: mse is a TensorIterator of (input, target); bce's is 1 - target
    # updated in place, laid out as the target.
    for kx, kt in (("t", "t"), ("t", "contig"), ("contig", "t")):
        for name, fn, extra in (("mse_loss", "ag_mse_loss", (RED("none"),)),
                                ("bce_with_logits", "ag_binary_cross_entropy_with_logits",
                                 (None, None, RED("none")))):
            c = Case("layout/%s/%s_%s" % (name, kx, kt))
            xx, x = make(c, kx)
            xt, t = make(c, kt, rg=False, lo=0.0, hi=1.0)
            bwd(c, c.call(fn, x, t, *extra, extra=lay))
            cases.append(c)
    # In-place ops on views of a base laid out as a transpose (CopySlices puts the base's
    # gradient in the base's layout before cutting the view's region out of it).
    for kind in ("contig", "t", "perm"):
        c = Case("layout/inplace_on_view/select_mul_/%s" % kind)
        x, v = make(c, kind)
        y = c.call("ag_mul_scalar", v, 2.0, expect=False)
        row = c.call("ag_select", y, 0, 1, expect=False)
        c.call("ag_mul_scalar_", row, 3.0)
        c.expect(y, layout=True)
        bwd(c, y)
        cases.append(c)
        c = Case("layout/inplace_on_view/narrow_copy_/%s" % kind)
        x, v = make(c, kind)
        y = c.call("ag_clone", v, expect=False)
        part = c.call("ag_narrow", y, 1, 0, 1, expect=False)
        w = c.rand(list(c.env[part].shape))
        c.call("ag_copy_", part, w)
        bwd(c, y)
        cases.append(c)
        # (w constant: PyTorch 1.13's second-order gradient of the op's other operand through
        # CopySlices is wrong; test_autograd's inplace_on_view_second_order checks ours
        # against finite differences)
        c = Case("layout/inplace_on_view/slice_mul_/create_graph/%s" % kind)
        x, v = make(c, kind, "float64")
        y = c.call("ag_mul", v, v, expect=False)
        part = c.call("ag_slice", y, 0, 0, c.env[y].shape[0], 2, expect=False)
        w = c.rand(list(c.env[part].shape), "float64", rg=False)
        c.call("ag_mul_", part, w)
        s = c.call("ag_sum", c.call("ag_mul", y, y, expect=False), expect=False)
        (gx,) = c.grad([s], [x], flags=("create_graph",))
        c.backward(c.call("ag_sum", c.call("ag_mul", gx, gx, expect=False), expect=False))
        cases.append(c)
    # CopySlices hands its op's formula a contiguous copy of the gradient's region: the other
    # operand's gradient is laid out as PyTorch's and shares no memory with the base's.
    for op in ("ag_add_", "ag_mul_", "ag_copy_"):
        c = Case("layout/inplace_on_view/other_grad/%s" % op[3:])
        x, v = make(c, "t")
        y = c.call("ag_mul", v, v, expect=False)
        part = c.call("ag_slice", y, 0, 1, 3, 1, expect=False)
        w = c.rand(list(c.env[part].shape))
        c.call(op, part, w)
        s = c.call("ag_sum", c.call("ag_mul", y, y, expect=False), expect=False)
        gw, gy = c.call("ag_grad", TS(s), NULL, TS(w, y), FL(), extra=lay)
        c.call("ag_zero_", gy)
        c.expect(gw)
        cases.append(c)
    # A view's grad_fn regenerated after an in-place op through it (AsStridedBackward0) hands
    # the base its gradient in the base's strides, as PyTorch's as_strided_backward does
    # (fuzz_autograd hooks seed 24028: a hook on the base saw it contiguous).
    for kind in ("contig", "t", "perm"):
        c = Case("layout/inplace_on_view/view_after/%s" % kind)
        x, v = make(c, kind)
        y = c.call("ag_clone", v, expect=False)
        tv = c.call("ag_transpose", y, 0, 1, expect=False)
        c.call("ag_mul_scalar_", tv, 2.0)
        c.grad([tv], [y], [grad_like(c, tv)], extra=lay)
        cases.append(c)
    # What a layout decides next: view and reshape of an elementwise result.
    for kind in ("t", "perm", "strided"):
        c = Case("layout/then_reshape/%s" % kind)
        x, v = make(c, kind)
        y = c.call("ag_mul_scalar", v, 2.0, expect=False)
        z = c.call("ag_reshape", y, [-1], extra=lay)
        bwd(c, z)
        cases.append(c)
    c = Case("layout/then_view_of_t/t")  # (x.t() * 2).t() is contiguous: view works
    x, v = make(c, "t")
    y = c.call("ag_t", c.call("ag_mul_scalar", v, 2.0, expect=False), expect=False)
    bwd(c, c.call("ag_view", y, [-1], extra=lay))
    cases.append(c)
    c = Case("layout/then_view/t")  # x.t() * 2 is laid out as x.t(): view of it fails
    x, v = make(c, "t")
    y = c.call("ag_mul_scalar", v, 2.0, expect=False)
    c.err("ag_view", y, [-1], status="AG_ESHAPE")
    cases.append(c)
    # The gradient layout contract of .grad, and retained gradients.
    for kind in ("contig", "t", "perm", "strided", "size1", "col", "cl"):
        for how in ("t_of_product", "elementwise", "sum"):
            c = Case("layout/grad_contract/%s/%s" % (how, kind))
            x, v = make(c, kind)
            leaf = c.call("ag_tensor_detach", v, expect=False)
            c.call("ag_tensor_set_requires_grad", leaf, True)
            if how == "elementwise":
                y = c.call("ag_mul", leaf, c.rand(list(c.env[leaf].shape), rg=False),
                           expect=False)
            elif how == "sum":
                y = leaf
            else:  # a gradient that arrives transposed or permuted
                nd = c.env[leaf].dim()
                perm = list(range(nd))[::-1]
                y = c.call("ag_permute", c.call("ag_mul_scalar",
                                                c.call("ag_permute", leaf, perm, expect=False),
                                                2.0, expect=False), perm, expect=False)
            c.call("ag_backward", c.call("ag_sum", y, expect=False), None, FL(), expect=False)
            c.expect_grad(leaf, layout=True)
            cases.append(c)
    for kind in ("t", "perm"):
        c = Case("layout/retain_grad/%s" % kind)
        x, v = make(c, kind)
        y = c.call("ag_mul_scalar", v, 2.0, expect=False)
        c.call("ag_tensor_retain_grad", y)
        z = c.call("ag_sum", c.call("ag_mul", y, y, expect=False), expect=False)
        c.call("ag_backward", z, None, FL(), expect=False)
        c.expect_grad(y, layout=True)
        c.expect_grad(x)
        cases.append(c)
    return cases


def second_order(c, y, ins, vgrad=True, third=False):
    """Double backward through y = op(ins): g = grad(sum(y * v), ins, create_graph) for a random
    v (itself requiring grad when vgrad: the derivative in the incoming gradient is checked
    too), then grad(sum_k sum(g_k * w_k), ins [+ v]) for random w_k (create_graph and once
    more when third). Values, requires_grad, none-ness and errors all come from torch."""
    t = c.env[y]
    v = c.tensor(c.grid(list(t.shape)), list(t.shape), DTYPE_NAME[t.dtype], rg=vgrad)
    s = c.call("ag_sum", c.call("ag_mul", y, v, expect=False), expect=False)
    ins2 = ins + ([v] if vgrad else [])
    for order in range(3 if third else 2):
        fl = ("allow_unused",) if order == (2 if third else 1) else ("create_graph", "allow_unused")
        g = c.grad([s], ins if order == 0 else ins2, flags=fl)
        if order == (2 if third else 1):
            return
        s = None
        for gk in g:
            if c.env[gk] is None or (order > 0 and not c.env[gk].requires_grad):
                continue
            p = c.call("ag_sum", c.call("ag_mul", gk, grad_like(c, gk), expect=False),
                       expect=False)
            s = p if s is None else c.call("ag_add", s, p, expect=False)
        if s is None:
            return
        if not c.env[s].requires_grad:
            c.err("ag_grad", TS(s), NULL, TS(*ins2), FL("allow_unused"), status="AG_ENOGRAD",
                  out=["e%d" % i for i in range(len(ins2))])
            return


def second_order_cases():
    """Second (and a few third) derivatives against PyTorch: one case per important op, and
    the points where they once differed."""
    cases = []
    pos, nz, uq = {"lo": 0.25, "hi": 2.0}, {"nonzero": True}, {"uniq": True}

    def op_case(name, fn, shapes, extra=(), kws=None, dts=("float64",), rg=None, **so):
        for dt in dts:
            c = Case("second_order/%s/%s" % (name, dt))
            names = [c.rand(sh, dt, rg=True if rg is None else rg[i], **(kws or {}))
                     for i, sh in enumerate(shapes)]
            ins = [n for i, n in enumerate(names) if rg is None or rg[i]]
            second_order(c, c.call(fn, *names, *extra), ins, **so)
            cases.append(c)

    for fn in ("ag_tanh", "ag_sigmoid", "ag_exp", "ag_silu", "ag_sin"):
        op_case(fn[3:], fn, [[2, 3]], dts=FLOATS)
    for fn in ("ag_log", "ag_sqrt", "ag_rsqrt"):
        op_case(fn[3:], fn, [[2, 3]], kws=pos)
    for fn, extra in (("ag_relu", ()), ("ag_abs", ()), ("ag_leaky_relu", (0.1,))):
        op_case(fn[3:], fn, [[2, 3]], extra, kws=nz)
    op_case("gelu", "ag_gelu", [[2, 3]], (0,), dts=FLOATS)
    op_case("gelu_tanh", "ag_gelu", [[2, 3]], (1,))
    op_case("softplus", "ag_softplus", [[2, 4]], (2.0, 1.0))
    op_case("clamp", "ag_clamp", [[2, 4]], (-0.7, 0.9))
    op_case("pow_scalar/3", "ag_pow_scalar", [[2, 3]], (3.0,), dts=FLOATS)
    op_case("pow_scalar/-1.5", "ag_pow_scalar", [[2, 3]], (-1.5,), kws=pos)
    op_case("rpow_scalar/2", "ag_rpow_scalar", [[2, 3]], (2.0,))
    op_case("pow", "ag_pow", [[2, 3], [3]], kws=pos, dts=FLOATS)
    op_case("div", "ag_div", [[2, 3], [3]], kws=nz, dts=FLOATS)
    op_case("mul/broadcast", "ag_mul", [[2, 1], [1, 3]])
    op_case("maximum", "ag_maximum", [[2, 3], [2, 3]], kws=uq)
    op_case("matmul/batched", "ag_matmul", [[2, 2, 3], [3, 2]], dts=FLOATS)
    op_case("linear", "ag_linear", [[2, 3], [4, 3], [4]])
    op_case("sum_dims", "ag_sum_dims", [[3, 4]], ([1], 0))
    op_case("var", "ag_var", [[3, 4]], ([1], 1, 0), dts=FLOATS)
    op_case("std", "ag_std", [[3, 4]], ([0], 0, 1))
    op_case("logsumexp", "ag_logsumexp", [[3, 4]], ([1], 0))
    op_case("norm/2", "ag_norm", [[3, 4]], (2.0, [1], 0), kws=nz)
    op_case("norm/3", "ag_norm", [[3, 4]], (3.0, [], 0), kws=nz)
    op_case("amax", "ag_amax", [[3, 4]], ([1], 0), kws=uq)
    op_case("softmax", "ag_softmax", [[3, 4]], (1,), dts=FLOATS)
    op_case("log_softmax", "ag_log_softmax", [[3, 4]], (0,))
    op_case("mse_loss", "ag_mse_loss", [[2, 3], [2, 3]], (RED("mean"),))
    for dt in FLOATS:
        c = Case("second_order/cross_entropy/%s" % dt)
        x = c.rand([4, 3], dt)
        w = c.rand([3], dt, rg=False, **pos)
        second_order(c, c.call("ag_cross_entropy", x, c.ints([0, 2, 1, 2]), w, RED("mean"), 1,
                               0.2), [x])
        cases.append(c)
    c = Case("second_order/bce_with_logits/float64")
    x = c.rand([2, 3], "float64")
    t = c.rand([2, 3], "float64", lo=0.0, hi=1.0)
    pw = c.rand([3], "float64", rg=False, **pos)
    second_order(c, c.call("ag_binary_cross_entropy_with_logits", x, t, None, pw, RED("sum")),
                 [x, t])
    cases.append(c)
    c = Case("second_order/layer_norm/float64")
    x, w, b = c.rand([2, 3, 4], "float64"), c.rand([4], "float64"), c.rand([4], "float64")
    second_order(c, c.call("ag_layer_norm", x, [4], w, b, 1e-5), [x, w])
    cases.append(c)
    # every gradient of layer_norm under create_graph requires grad, the bias's (sum(g))
    # included: they are the outputs of PyTorch's NativeLayerNormBackwardBackward0, whose
    # derivatives are none where a gradient does not depend on an input. (Not with a bias
    # and no weight: there PyTorch's layer_norm_double_backward drops the bias's term, so
    # the bias gradient's derivative in g is none, and with the input's term it raises.)
    for name, rg, affine in (("x_w_b", (True, True, True), (True, True)),
                             ("b", (False, False, True), (True, True)),
                             ("w_b", (False, True, True), (True, True)),
                             ("x_b", (True, False, True), (True, True)),
                             ("x_w_nobias", (True, True, None), (True, False)),
                             ("w", (False, True, False), (True, True))):
        c = Case("second_order/layer_norm_grads/%s/float64" % name)
        x = c.rand([2, 3, 4], "float64", rg=rg[0])
        w = c.rand([4], "float64", rg=rg[1]) if affine[0] else None
        b = c.rand([4], "float64", rg=rg[2]) if affine[1] else None
        ins = [t for t, r in zip((x, w, b), rg) if t is not None and r]
        y = c.call("ag_layer_norm", x, [4], w, b, 1e-5)
        gs = c.grad([y], ins, grad_outputs=[grad_like(c, y)], flags=("create_graph",))
        for g in gs:
            c.expect(g, data=False)
        second_order(c, y, ins, vgrad=False)
        cases.append(c)
    # Under create_graph too, layer_norm's gradients are laid out contiguously, as
    # native_layer_norm_backward makes them, whatever the incoming gradient's layout (a
    # transposed one gave transposed gradients: fuzz_ops seed 66166).
    for name, affine in (("w_b", (True, True)), ("b", (False, True)), ("none", (False, False))):
        c = Case("second_order/layer_norm_grads/transposed_g/%s/float64" % name)
        x = c.rand([3, 4], "float64")
        w = c.rand([4], "float64") if affine[0] else None
        b = c.rand([4], "float64") if affine[1] else None
        y = c.call("ag_layer_norm", x, [4], w, b, 1e-5)
        gt = c.call("ag_t", c.rand([4, 3], "float64", rg=False), expect=False)
        c.grad([y], [t for t in (x, w, b) if t is not None], grad_outputs=[gt],
               flags=("create_graph",), extra={"layout": True})
        cases.append(c)
    c = Case("second_order/gather_embedding/float64")
    x = c.rand([4, 3], "float64")
    y = c.call("ag_gather", c.call("ag_exp", x), 0, c.ints([0, 2, 1, 1, 0, 3], [2, 3]))
    second_order(c, y, [x])
    e = c.call("ag_embedding", x, c.ints([1, 3, 1]))
    second_order(c, c.call("ag_mul", e, e), [x])
    cases.append(c)

    # Where they differed. a / b: the derivative in b is -g * ((a / b) / b), as PyTorch's
    # (a / (b * b) was inf where b * b underflows); at sqrt's 0 a third derivative was NaN
    for dt, a, b in (("float64", [2.0 ** -1000, 1.0], [2.0 ** -540, 2.0 ** -540]),
                     ("float32", [2.0 ** -100, 1.0], [2.0 ** -80, 2.0 ** -60])):
        c = Case("second_order/div_tiny_divisor/%s" % dt)
        a, b = c.tensor(a, dtype=dt, rg=True), c.tensor(b, dtype=dt, rg=True)
        second_order(c, c.call("ag_div", a, b), [a, b], vgrad=False)
        cases.append(c)
    c = Case("second_order/sqrt_zero_third/float64")
    x = c.tensor([1.0, 0.0, 0.5, 0.0], dtype="float64", rg=True)
    second_order(c, c.call("ag_sqrt", x), [x], vgrad=False, third=True)
    cases.append(c)
    # x^0's gradient is zeros_like(x), outside any graph (it was g * 0: NaN for an infinite
    # g, and requiring grad with g); x^1's second derivative is then zeros without a graph
    for s_ in (0.0, 1.0):
        c = Case("second_order/pow_scalar_%g/float64" % s_)
        x = c.rand([3], "float64")
        second_order(c, c.call("ag_pow_scalar", x, s_), [x], third=True)
        cases.append(c)
    c = Case("second_order/pow_scalar_0_inf_grad/float32")
    x = c.rand([3])
    c.backward(c.call("ag_pow_scalar", x, 0.0), c.tensor([float("inf"), float("nan"), 1.0]))
    cases.append(c)
    # x^0.5, x^-0.5, x^-1, x^-2, x^2, x^3 are PyTorch's sqrt, 1 / sqrt, 1 / x ... (at -0.0:
    # sqrt gives -0, 1 / sqrt -inf, where pow() gave +0 and +inf); their derivatives follow
    for s_ in (0.5, -0.5, 1.5, 2.5, -1.0, -2.0, 3.0):
        for dt in FLOATS:
            c = Case("second_order/pow_scalar_signed_zero/%g/%s" % (s_, dt))
            x = c.tensor([0.0, -0.0, 1.5, 0.75], dtype=dt, rg=True)
            second_order(c, c.call("ag_pow_scalar", x, s_), [x], vgrad=False)
            cases.append(c)
    # pow's gradient in the base is where(b == 0, 0, g * b a^(b-1)) (0 even for a NaN g, as
    # the second derivative through log(a) for a < 0 brings)
    for dt in FLOATS:
        c = Case("second_order/pow_negative_base/%s" % dt)
        a = c.tensor([-2.0, -1.5, -3.0, 0.0], dtype=dt, rg=True)
        b = c.tensor([2.0, 3.0, 0.0, 0.0], dtype=dt, rg=True)
        second_order(c, c.call("ag_pow", a, b), [a, b], vgrad=False)
        cases.append(c)
    # softplus: at beta x == threshold the gradient is sigmoid's, its derivative 0
    for dt in FLOATS:
        c = Case("second_order/softplus_at_threshold/%s" % dt)
        x = c.tensor([0.5, 0.25, 1.0, -1.0], dtype=dt, rg=True)
        second_order(c, c.call("ag_softplus", x, 2.0, 1.0), [x])
        cases.append(c)
    # nll_loss's gradient is a node with an edge to the input (zero derivative), as PyTorch's
    # NllLossBackwardBackward0: a second gradient is zeros where it was an error
    for red in ("mean", "sum", "none"):
        c = Case("second_order/nll_loss_leaf/%s/float64" % red)
        x = c.rand([4, 3], "float64")
        w = c.rand([3], "float64", rg=False, **pos)
        second_order(c, c.call("ag_nll_loss", x, c.ints([0, 2, 1, 2]), w, RED(red), 2), [x])
        second_order(c, c.call("ag_nll_loss", c.call("ag_mul", x, x), c.ints([1, 0, 1, 2]),
                               None, RED(red), -100), [x], third=True)
        cases.append(c)
    # ... and its saved input makes an in-place change before backward an error
    c = Case("second_order/nll_loss_input_modified/float32")
    x = c.rand([2, 3])
    y = c.call("ag_mul_scalar", x, 1.0)
    loss = c.call("ag_nll_loss", y, c.ints([0, 2]), None, RED("mean"), -100)
    c.call("ag_mul_scalar_", y, 2.0)
    c.err("ag_backward", loss, None, FL(), status="AG_EVERSION")
    cases.append(c)
    # label smoothing with every target ignored: the mean is 0/0, yet the gradient is 0
    # (masked_fill's backward fills the ignored rows; grad * keep gave NaN)
    # inputs of 3 and 4 dims (NllLoss2DBackward0, NllLoss2DBackwardBackward0)
    for fn in ("ag_nll_loss", "ag_cross_entropy"):
        for shape in ([2, 3, 2], [2, 3, 2, 2]):
            c = Case("second_order/%s_spatial/%s/float64" % (fn[3:], len(shape)))
            x = c.rand(shape, "float64")
            tg = c.ints([0, 2, 1, 1, 2, 0, 0, 1][:2 * (2 if len(shape) == 3 else 4)],
                        [2] + shape[2:])
            extra = (0.0,) if fn == "ag_cross_entropy" else ()
            second_order(c, c.call(fn, x, tg, None, RED("mean"), -100, *extra), [x])
            cases.append(c)
    c = Case("second_order/cross_entropy_all_ignored/float64")
    x = c.rand([2, 3], "float64")
    second_order(c, c.call("ag_cross_entropy", x, c.ints([1, 1]), None, RED("mean"), 1, 0.3),
                 [x], vgrad=False)
    cases.append(c)
    return cases


def fam_optim():
    cases = []

    def run(name, make, dt, steps=3, zero=True, set_to_none=0, params=2):
        c = Case(name)
        w = c.rand([2, 3], dt, name="w")
        b = c.rand([3], dt, name="b")
        x = c.rand([4, 2, 3], dt, rg=False, name="x")
        ps = TS(w, b) if params == 2 else TS(w, b, c.rand([2], dt, name="u"))
        opt = make(c, ps)
        for _ in range(steps):
            # elementwise only, so that these cases do not depend on matmul
            h = c.call("ag_add", c.call("ag_mul", x, w, expect=False, out="xw"), b,
                       expect=False, out="h")
            loss = c.call("ag_mean", c.call("ag_mul", h, h, expect=False, out="h2"), out="loss")
            c.backward(loss, check=False)
            c.call("ag_optimizer_step", OPT(opt))
            c.expect(w)
            c.expect(b)
            if zero:
                c.call("ag_optimizer_zero_grad", OPT(opt), set_to_none)
        if params == 3:
            c.expect("u")
        c.expect_grads()
        cases.append(c)

    def sgd(lr, m=0.0, d=0.0, wd=0.0, nest=0):
        return lambda c, ps: c.call("ag_optimizer_sgd", ps, lr, m, d, wd, nest)

    def adam(fn, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, ams=0):
        return lambda c, ps: c.call(fn, ps, lr, b1, b2, eps, wd, ams)

    for dt in FLOATS:
        run("sgd/plain/%s" % dt, sgd(0.1), dt)
        run("sgd/momentum/%s" % dt, sgd(0.1, 0.9), dt)
        run("sgd/dampening/%s" % dt, sgd(0.05, 0.9, 0.5), dt)
        run("sgd/nesterov/%s" % dt, sgd(0.1, 0.9, 0.0, 0.0, 1), dt)
        run("sgd/weight_decay/%s" % dt, sgd(0.1, 0.0, 0.0, 0.01), dt)
        run("sgd/momentum_wd_nesterov/%s" % dt, sgd(0.05, 0.8, 0.0, 0.1, 1), dt, steps=4)
        run("adam/default/%s" % dt, adam("ag_optimizer_adam", 0.1), dt)
        run("adam/weight_decay/%s" % dt, adam("ag_optimizer_adam", 0.05, wd=0.1), dt)
        run("adam/amsgrad/%s" % dt, adam("ag_optimizer_adam", 0.05, 0.8, 0.9, 1e-6, 0.0, 1), dt,
            steps=4)
        run("adamw/default/%s" % dt, adam("ag_optimizer_adamw", 0.1, wd=0.01), dt)
        run("adamw/amsgrad/%s" % dt, adam("ag_optimizer_adamw", 0.01, 0.9, 0.99, 1e-8, 0.1, 1), dt)
        run("sgd/no_zero_grad/%s" % dt, sgd(0.1, 0.5), dt, zero=False)
        run("sgd/set_to_none/%s" % dt, sgd(0.1), dt, steps=2, set_to_none=1)
        run("adam/param_without_grad/%s" % dt, adam("ag_optimizer_adam", 0.1), dt, params=3)
    c = Case("optimizer/lr")
    w = c.rand([2], "float32", name="w")
    opt = c.call("ag_optimizer_sgd", TS(w), 0.5, 0.0, 0.0, 0.0, 0)
    c.call("ag_optimizer_get_lr", OPT(opt))
    c.call("ag_optimizer_set_lr", OPT(opt), 0.25)
    c.call("ag_optimizer_get_lr", OPT(opt))
    c.backward(c.call("ag_sum", c.call("ag_mul", w, w)))
    c.call("ag_optimizer_step", OPT(opt))
    c.expect(w)
    c.err("ag_optimizer_set_lr", OPT(opt), -1.0, status="AG_EINVAL")
    c.call("ag_optimizer_get_lr", OPT(opt))
    cases.append(c)
    # zero_grad(set_to_none=0) detaches each .grad in place, as PyTorch's (p.grad.detach_() or
    # requires_grad_(False), then zero_()): a handle to a .grad made under create_graph comes
    # back zeroed and without history
    c = Case("optimizer/zero_grad_detaches_in_place")
    w = c.rand([2], "float64", name="w")
    opt = c.call("ag_optimizer_sgd", TS(w), 0.1, 0.0, 0.0, 0.0, 0)
    c.backward(c.call("ag_sum", c.call("ag_pow_scalar", w, 3.0)), flags=("create_graph",),
               check=False)
    g = c.call("ag_tensor_grad", w, out="g")
    c.call("ag_optimizer_zero_grad", OPT(opt), 0)
    c.expect(g)
    c.err("ag_backward", c.call("ag_sum", g), None, FL(), status="AG_ENOGRAD")
    c.expect_grad(w)
    cases.append(c)
    c = Case("optimizer/zero_grad_keeps_tensor")
    w = c.rand([2], "float64", name="w")
    opt = c.call("ag_optimizer_adam", TS(w), 0.1, 0.9, 0.999, 1e-8, 0.0, 0)
    c.backward(c.call("ag_sum", c.call("ag_exp", w)))
    c.call("ag_optimizer_zero_grad", OPT(opt), 0)
    c.expect_grad(w)
    c.call("ag_optimizer_step", OPT(opt))
    c.expect(w)
    cases.append(c)
    return cases


def fam_creation():
    cases = []
    # arange's limits as PyTorch 1.13 checks them: an infinite step is an empty range
    c = Case("arange/infinite_step")
    c.call("ag_arange", DT("float32"), 0.0, 1.0, math.inf)
    c.err("ag_arange", DT("float32"), 0.0, 1.0, 0.0, status="AG_EINVAL",
          contains="step must be nonzero")
    c.err("ag_arange", DT("float32"), 0.0, math.inf, 1.0, status="AG_EINVAL",
          contains="unsupported range")
    cases.append(c)
    # a finite float32 fill value beyond FLT_MAX is refused, as PyTorch refuses it
    c = Case("full/float32_overflow")
    c.err("ag_full", DT("float32"), [2], 3.5e38, status="AG_EINVAL",
          contains="value cannot be converted to type float without overflow")
    c.call("ag_full", DT("float32"), [2], math.inf)
    x = c.rand([2], "float32", rg=False)
    c.err("ag_masked_fill", x, c.bools([True, False]), 3.5e38, status="AG_EINVAL",
          contains="value cannot be converted to type float without overflow")
    c.err("ag_clamp", x, -3.5e38, 1.0, status="AG_EINVAL",
          contains="value cannot be converted to type float without overflow")
    c.err("ag_clamp_max", x, 3.5e38, status="AG_EINVAL",
          contains="value cannot be converted to type float without overflow")
    c.call("ag_clamp", x, -math.inf, 1e15 + 0.5)
    cases.append(c)
    for dt in ("float32", "float64", "int64", "bool"):
        c = Case("scalar/%s" % dt)
        c.call("ag_tensor_scalar", 2.0 if dt != "bool" else 1.0, DT(dt))
        cases.append(c)
        for fn in ("ag_zeros", "ag_ones"):
            c = Case("%s/%s" % (fn[3:], dt))
            c.call(fn, DT(dt), [2, 3])
            cases.append(c)
        c = Case("full/%s" % dt)
        c.call("ag_full", DT(dt), [3, 1], 1.0 if dt == "bool" else 7.0)
        cases.append(c)
        c = Case("empty/%s" % dt)
        c.call("ag_empty", DT(dt), [2, 0, 3], data=False)
        c.call("ag_empty", DT(dt), [4], data=False)
        cases.append(c)
        c = Case("like/%s" % dt)
        x = c.tensor([1, 0, 1, 1] if dt != "float32" else [1.5, -2.0, 0.0, 3.0], [2, 2], dt,
                     rg=dt in FLOATS)
        c.call("ag_zeros_like", x)
        c.call("ag_ones_like", x)
        c.call("ag_full_like", x, 1.0)
        c.call("ag_empty_like", x, data=False)
        cases.append(c)
        c = Case("tensor/roundtrip/%s" % dt)
        if dt in FLOATS:
            c.tensor([0.5, -1.25, float("nan"), float("inf"), float("-inf"), -0.0], [2, 3], dt)
            c.tensor([3.0], [], dt)
            c.tensor([], [0, 2], dt)
        elif dt == "int64":
            c.tensor([-(2 ** 31), 2 ** 31, 0, 7], [4], dt)
        else:
            c.tensor([True, False, False, True], [2, 1, 2], dt)
        for name in list(c.env):
            c.expect(name, is_leaf=True)
        cases.append(c)
    c = Case("scalar/float32_rounding")
    c.call("ag_tensor_scalar", 0.1, DT("float32"))
    c.call("ag_tensor_scalar", 1e40, DT("float32"))
    cases.append(c)
    c = Case("scalar/int64_truncates")
    c.call("ag_tensor_scalar", -2.0, DT("int64"))
    cases.append(c)
    # torch.tensor(v, requires_grad=True): a leaf like any other (its .grad after backward)
    for dt in FLOATS:
        c = Case("scalar/requires_grad/%s" % dt)
        x = c.call("ag_tensor_scalar_requires_grad", 1.5, DT(dt), 1, extra={"is_leaf": True})
        y = c.call("ag_mul", x, x)
        c.backward(y)
        cases.append(c)
    c = Case("scalar/requires_grad/off")
    c.call("ag_tensor_scalar_requires_grad", 2.0, DT("int64"), 0, extra={"is_leaf": True})
    cases.append(c)
    for dt, a, b, s in (("float32", 0.0, 5.0, 1.0), ("float64", -1.0, 1.0, 0.25),
                        ("int64", 0.0, 10.0, 3.0), ("float32", 5.0, 0.0, -1.5),
                        ("float64", 0.0, 1.0, 0.1), ("int64", -3.0, 3.0, 1.0),
                        ("float32", 2.0, 2.0, 1.0)):
        c = Case("arange/%g_%g_%g/%s" % (a, b, s, dt))
        c.call("ag_arange", DT(dt), a, b, s)
        cases.append(c)
    for dt, n, m in (("float32", 3, 3), ("float64", 2, 4), ("int64", 3, 2), ("bool", 2, 2),
                     ("float32", 0, 2)):
        c = Case("eye/%d_%d/%s" % (n, m, dt))
        c.call("ag_eye", DT(dt), n, m)
        cases.append(c)
    c = Case("random/shapes")
    g = c.call("ag_generator_new", 1234)
    c.call("ag_rand", GEN(g), DT("float32"), [2, 3], data=False)
    c.call("ag_randn", GEN(g), DT("float64"), [4], data=False)
    c.call("ag_randint", GEN(g), 0, 10, DT("int64"), [3, 2], data=False)
    c.call("ag_randint", None, -5, 5, DT("float32"), [2], data=False)
    x = c.rand([2, 2], "float64")
    c.call("ag_rand_like", GEN(g), x, data=False)
    c.call("ag_randn_like", None, x, data=False)
    c.call("ag_rand", None, DT("float64"), [], data=False)
    cases.append(c)
    c = Case("queries")
    x = c.rand([2, 3, 4], "float32")
    c.call("ag_tensor_numel", x)
    c.call("ag_tensor_size", x, 1)
    c.call("ag_tensor_size", x, -1)
    # a 0-d tensor has no dimension to size (PyTorch: IndexError)
    for d in (0, -1):
        c.err("ag_tensor_size", c.tensor([3.0], []), d, status="AG_ERANGE",
              contains="but tensor has no dimensions")
    c.call("ag_tensor_item", c.call("ag_sum", x))
    c.call("ag_tensor_item_int64", c.tensor([-2.75], [1, 1]))
    c.call("ag_tensor_item", c.tensor([True], [], "bool"))
    cases.append(c)
    return cases


def fam_errors():
    cases = []

    def case(name):
        c = Case(name)
        cases.append(c)
        return c

    c = case("shape_mismatch/add")
    a, b = c.rand([2, 3], rg=False), c.rand([2], rg=False)
    c.err("ag_add", a, b, status="AG_ESHAPE")
    c = case("shape_mismatch/mul_broadcast")
    c.err("ag_mul", c.rand([2, 3]), c.rand([3, 2]), status="AG_ESHAPE")
    c = case("shape_mismatch/where")
    c.err("ag_where", c.bools([True, False, True]), c.rand([2]), c.rand([2]), status="AG_ESHAPE")
    c = case("shape_mismatch/matmul")
    c.err("ag_matmul", c.rand([2, 3]), c.rand([4, 5]), status="AG_ESHAPE",
          contains="cannot be multiplied")
    c = case("shape_mismatch/matmul_0d")
    c.err("ag_matmul", c.tensor([1.0], []), c.rand([2]), status="AG_ESHAPE", torch_ok=False)
    c = case("shape_mismatch/linear")
    c.err("ag_linear", c.rand([2, 3]), c.rand([4, 2]), None, status="AG_ESHAPE")
    c = case("shape_mismatch/cat")
    c.err("ag_cat", TS(c.rand([2, 3]), c.rand([2, 2])), 0, status="AG_ESHAPE")
    c = case("shape_mismatch/stack")
    c.err("ag_stack", TS(c.rand([2, 3]), c.rand([3, 2])), 0, status="AG_ESHAPE")
    c = case("shape_mismatch/reshape")
    c.err("ag_reshape", c.rand([2, 3]), [4, 2], status="AG_ESHAPE")
    c = case("shape_mismatch/view_non_contiguous")
    t = c.call("ag_t", c.rand([2, 3]))
    c.err("ag_view", t, [6], status="AG_ESHAPE")
    c = case("shape_mismatch/expand")
    c.err("ag_expand", c.rand([2, 3]), [4, 3], status="AG_ESHAPE")
    c = case("shape_mismatch/mse_loss_target")
    c.err("ag_mse_loss", c.rand([2, 3]), c.rand([3, 2], rg=False), RED("mean"), status="AG_ESHAPE",
          torch_ok=False)
    c = case("shape_mismatch/layer_norm")
    c.err("ag_layer_norm", c.rand([2, 3]), [4], None, None, 1e-5, status="AG_ESHAPE")
    c = case("shape_mismatch/cross_entropy_batch")
    c.err("ag_cross_entropy", c.rand([3, 4]), c.ints([0, 1]), None, RED("mean"), -100, 0.0,
          status="AG_ESHAPE")
    c = case("shape_mismatch/inplace_broadcast")
    x = c.call("ag_mul_scalar", c.rand([3]), 1.0)
    c.err("ag_add_", x, c.rand([2, 3]), status="AG_ESHAPE")
    c.expect(x, version=True)
    c = case("shape_mismatch/backward_grad")
    x = c.rand([2, 2])
    y = c.call("ag_exp", x)
    c.err("ag_backward", y, c.rand([3], rg=False), FL(), status="AG_ESHAPE")
    c.expect_grad(x)
    c = case("dtype_mismatch/matmul")
    c.err("ag_matmul", c.rand([2, 2], "float32"), c.rand([2, 2], "float64"), status="AG_EDTYPE")
    c = case("dtype_mismatch/matmul_int64")
    c.err("ag_matmul", c.ints([1, 2, 3, 4], [2, 2]), c.ints([1, 0, 0, 1], [2, 2]),
          status="AG_EDTYPE", torch_ok=True)
    c = case("dtype_mismatch/set_grad")
    x = c.rand([2], "float32")
    c.err("ag_tensor_set_grad", x, c.rand([2], "float64", rg=False), status="AG_EDTYPE")
    c = case("shape_mismatch/set_grad")
    x = c.rand([2], "float32")
    c.err("ag_tensor_set_grad", x, c.rand([3], "float32", rg=False), status="AG_ESHAPE")
    c = case("invalid/set_grad_itself")
    x = c.rand([2], "float32")
    c.err("ag_tensor_set_grad", x, x, status="AG_EINVAL", contains="as its own grad")
    c.backward(c.call("ag_sum", c.call("ag_mul", x, x)))
    c.expect(x)
    c = case("dtype/int64_requires_grad")
    x = c.ints([1, 2])
    c.err("ag_tensor_set_requires_grad", x, 1, status="AG_EDTYPE",
          contains="only Tensors of floating point dtype can require gradients")
    c.expect(x)
    c = case("dtype/bool_requires_grad")
    c.err("ag_tensor_set_requires_grad", c.bools([True]), 1, status="AG_EDTYPE")
    c = case("dtype/cross_entropy_float_target")
    c.err("ag_cross_entropy", c.rand([2, 3]), c.rand([2], rg=False), None, RED("mean"), -100,
          0.0, status="AG_EDTYPE", torch_ok=True)
    c = case("dtype/index_select_float_index")
    c.err("ag_index_select", c.rand([3]), 0, c.tensor([0.0, 1.0]), status="AG_EDTYPE")
    c = case("dtype/gather_float_index")
    c.err("ag_gather", c.rand([3]), 0, c.tensor([0.0]), status="AG_EDTYPE")
    c = case("dtype/masked_fill_float_mask")
    # torch 1.13 silently ignores a float mask; the ABI requires bool
    c.err("ag_masked_fill", c.rand([3]), c.tensor([1.0, 0.0, 1.0]), 0.0, status="AG_EDTYPE",
          torch_ok=True)
    c = case("dtype/inplace_float_into_int64")
    x = c.ints([1, 2])
    c.err("ag_add_", x, c.tensor([0.5, 0.5]), status="AG_EDTYPE")
    c.expect(x, version=True)
    c = case("dtype/inplace_scalar_float_into_int64")
    x = c.ints([1, 2])
    c.err("ag_mul_scalar_", x, 0.5, status="AG_EDTYPE")
    c.expect(x, version=True)
    c = case("dtype/sub_bool")
    c.err("ag_sub", c.bools([True]), c.bools([False]), status="AG_EDTYPE")
    c = case("dtype/rand_int64")
    c.err("ag_rand", None, DT("int64"), [2], status="AG_EDTYPE")
    c = case("dtype/optimizer_int64_param")
    c.err("ag_optimizer_sgd", TS(c.ints([1, 2])), 0.1, 0.0, 0.0, 0.0, 0, status="AG_EDTYPE",
          torch_ok=True)
    c = case("second_backward")
    x = c.rand([3])
    y = c.call("ag_sum", c.call("ag_mul", x, x))
    c.backward(y)
    c.err("ag_backward", y, None, FL(), status="AG_EGRAPH")
    c.expect_grads()
    c = case("second_backward_after_grad")
    x = c.rand([3])
    y = c.call("ag_sum", c.call("ag_exp", x))
    c.grad([y], [x])
    c.err("ag_grad", TS(y), NULL, TS(x), FL(), status="AG_EGRAPH", out=["err"])
    c = case("version/saved_tensor_modified")
    x = c.rand([3])
    y = c.call("ag_mul_scalar", x, 2.0)
    z = c.call("ag_mul", y, y)
    c.call("ag_add_scalar_", y, 1.0)
    c.err("ag_backward", c.call("ag_sum", z), None, FL(), status="AG_EVERSION")
    c.expect_grads()
    # x * s and x / s keep s as PyTorch keeps its wrapped scalar: freed after a backward
    # without retain_graph (x + s keeps nothing: a second pass is fine)
    for fn in ("ag_mul_scalar", "ag_div_scalar", "ag_mul_scalar_"):
        c = case("graph/second_backward/%s" % fn[3:])
        x = c.rand([3])
        if fn == "ag_mul_scalar_":
            y = c.call("ag_add_scalar", x, 1.0)
            c.call(fn, y, 3.0)
        else:
            y = c.call(fn, x, 3.0)
        s = c.call("ag_sum", y)
        c.backward(s)
        c.err("ag_backward", s, None, FL(), status="AG_EGRAPH",
              contains="Trying to backward through the graph a second time")
        c.expect_grads()
    # an in-place op on a view: PyTorch's CopySlices drops its op's node after a backward
    # without retain_graph, whether or not the op saved anything (add_ saves nothing)
    for fn in ("ag_add_", "ag_mul_"):
        for how in ("backward", "grad", "retain"):
            c = case("graph/second_backward/%s_on_view/%s" % (fn[3:-1], how))
            x = c.rand([4])
            # (w without grad for ag_grad: PyTorch 1.13's autograd.grad writes w.grad through
            # CopySlices, which autograd.grad never does)
            w = c.rand([2], rg=how != "grad")
            y = c.call("ag_clone", x)  # (keeps nothing: only CopySlices can fail the pass)
            c.call(fn, c.call("ag_slice", y, 0, 1, 3, 1), w)
            s = c.call("ag_sum", y)
            if how == "backward":
                c.backward(s)
                c.err("ag_backward", s, None, FL(), status="AG_EGRAPH",
                      contains="Trying to backward through the graph a second time")
            elif how == "grad":
                c.grad([s], [x])
                c.err("ag_grad", TS(s), NULL, TS(x), FL(), status="AG_EGRAPH", out=["e1"])
            else:
                c.backward(s, flags=("retain_graph",))
                c.backward(s)
            c.expect_grads()
    c = case("graph/second_backward_add_scalar")
    x = c.rand([3])
    s = c.call("ag_sum", c.call("ag_add_scalar", x, 3.0))
    c.backward(s)
    c.backward(s)
    # 0^0 and 0^x: PyTorch takes the gradients there as 0 (they were NaN)
    for dt in FLOATS:
        c = case("pow/zero_base/%s" % dt)
        a = c.tensor([0.0, 2.0, 0.0, 0.0, -0.0, 3.0], dtype=dt, rg=True)
        b = c.tensor([0.0, 0.0, 1.0, 2.0, 0.0, -1.0], dtype=dt, rg=True)
        c.backward(c.call("ag_sum", c.call("ag_pow", a, b)))
        x = c.tensor([0.0, 2.0, 1.0, -1.0, 0.5], dtype=dt, rg=True)
        c.backward(c.call("ag_sum", c.call("ag_rpow_scalar", x, 0.0)))
    # a float32 exponent takes the base rounded to float32, in backward too (PyTorch's
    # __rpow__ makes it a tensor of x's dtype): 1e-45 is the subnormal 1.4e-45, 5e-46 is 0
    for base in (1e-45, 5e-46):
        c = case("pow/rpow_base_rounded/%g/float32" % base)
        x = c.tensor([-1.0, 0.0, 0.5, 2.0], rg=True)
        c.backward(c.call("ag_sum", c.call("ag_rpow_scalar", x, base)))
    # bool tensors promote with scalars (True + 2 is int64, True * 2.5 float32); any
    # subtraction with a bool tensor is refused
    c = case("dtype/bool_scalar_ops")
    b = c.bools([True, False])
    for fn, v in (("ag_add_scalar", 2.0), ("ag_mul_scalar", 2.5), ("ag_div_scalar", 2.0),
                  ("ag_pow_scalar", 2.0), ("ag_pow_scalar", 2.5), ("ag_rpow_scalar", 2.0),
                  ("ag_mul_scalar", -3.0)):
        c.call(fn, b, v)
    c.err("ag_pow_scalar", b, -1.0, status="AG_EINVAL")
    for fn in ("ag_sub_scalar", "ag_rsub_scalar"):
        c.err(fn, b, 1.0, status="AG_EDTYPE", contains="with a bool tensor is not supported")
    c.err("ag_sub", c.tensor([1.0, 2.0]), b, status="AG_EDTYPE",
          contains="with a bool tensor is not supported")
    c.err("ag_sub", b, c.ints([1, 2]), status="AG_EDTYPE")
    # relu's and leaky_relu's first gradients depend on x (with derivative 0): a second
    # gradient is zeros, not an error
    for fn, extra in (("ag_relu", ()), ("ag_leaky_relu", (0.1,))):
        c = case("higher_order/%s_gate" % fn[3:])
        z = c.tensor([-1.0, 2.0, 0.5], dtype="float64", rg=True)
        g = c.grad([c.call("ag_sum", c.call(fn, z, *extra))], [z], flags=("create_graph",),
                   out=["g1"])
        c.grad([c.call("ag_sum", g[0])], [z], flags=("retain_graph",), out=["g2"])
        c.grad([c.call("ag_sum", c.call("ag_mul", g[0], g[0]))], [z], out=["g3"])
    # int64 arithmetic wraps on overflow, as PyTorch's (it was undefined behaviour in C)
    c = case("dtype/int64_wraps")
    # (every value a multiple of 1024: exact as a double too, which the runners parse)
    big = c.ints([-2 ** 63, 2 ** 62, 2 ** 62, -1024])
    c.call("ag_neg", big)
    c.call("ag_abs", big)
    c.call("ag_sum", big)
    c.call("ag_sum_dims", c.call("ag_view", big, [2, 2]), [0], 0)
    c.call("ag_mul", big, c.ints([1, 4, 2, 1]))
    c.call("ag_add_scalar", big, -1024.0)
    c.call("ag_sub", big, c.ints([1024, -2 ** 62, 0, 0]))
    # int64 cannot hold these: refused (they became INT64_MIN)
    c = case("dtype/scalar_requires_grad_integral")
    c.err("ag_tensor_scalar_requires_grad", 1.0, DT("int64"), 1, status="AG_EDTYPE",
          contains="floating point dtype can require gradients")
    c.err("ag_tensor_scalar_requires_grad", 1.0, DT("bool"), 1, status="AG_EDTYPE",
          contains="floating point dtype can require gradients")
    c = case("dtype/int64_overflow")
    c.err("ag_tensor_scalar", 1e300, DT("int64"), status="AG_EINVAL",
          contains="cannot be converted to type int64_t without overflow")
    c.err("ag_full", DT("int64"), [2], -1e19, status="AG_EINVAL")
    c.err("ag_tensor_scalar", float("nan"), DT("int64"), status="AG_EINVAL")
    x = c.call("ag_zeros", DT("int64"), [2])
    c.err("ag_fill_", x, 1e300, status="AG_EINVAL")
    c.expect(x, version=True)
    # the third derivative of x^2: zeros (the second came out as a constant, not in a graph)
    c = case("higher_order/pow2_third")
    z = c.tensor([-1.0, 2.0, 0.5], dtype="float64", rg=True)
    g1 = c.grad([c.call("ag_sum", c.call("ag_pow_scalar", z, 2.0))], [z], flags=("create_graph",),
                out=["g1"])
    g2 = c.grad([c.call("ag_sum", g1[0])], [z], flags=("create_graph",), out=["g2"])
    c.grad([c.call("ag_sum", g2[0])], [z], out=["g3"])
    c = case("masked_fill/int64_mask")
    x = c.ints([1, 2, 3])
    c.call("ag_masked_fill", x, c.ints([1, 0, 0]), 0.0)
    c.err("ag_masked_fill", x, c.ints([1, 2, 0]), 0.0, status="AG_EINVAL",
          contains="Mask tensor can take 0 and 1 values only")
    c = case("pow/int64_negative_exponent")
    c.call("ag_pow", c.ints([2, -2, -1, -1, 1, 0, 3]), c.ints([-1, -2, -3, -4, -5, -1, 0]))
    c.call("ag_rpow_scalar", c.ints([-1, -2, 0, 3]), 2.0)
    c.call("ag_rpow_scalar", c.ints([-1, -2, -3]), -1.0)
    c = case("inplace/leaf_moved_into_graph")
    x = c.rand([3])
    w = c.rand([3])
    y = c.call("ag_sum", c.call("ag_mul_scalar", x, 2.0))  # y's graph ends in x's AccumulateGrad
    c.call("ag_tensor_set_requires_grad", x, False)
    c.call("ag_add_", x, w)                                  # x: a non-leaf now
    c.err("ag_backward", y, None, FL(), status="AG_ELEAF", contains="moved into the graph interior")
    c.expect_grads()
    for which in ("weight", "bias"):
        c = case("version/layer_norm_%s_modified" % which)
        x = c.rand([2, 3])
        w = c.rand([3], rg=False)
        b = c.rand([3], rg=False)
        y = c.call("ag_sum", c.call("ag_layer_norm", x, [3], w, b, 1e-5))
        c.call("ag_add_scalar_", w if which == "weight" else b, 1.0)
        c.err("ag_backward", y, None, FL(), status="AG_EVERSION")
    # t.mul_(t) (or a view of t): backward fails, and nothing leaks (the saved operand made
    # a cycle with t's new grad_fn; conformance.c.valgrind runs this)
    for view in (False, True):
        c = case("version/mul_self%s" % ("_view" if view else ""))
        x = c.rand([3])
        y = c.call("ag_mul_scalar", x, 3.0)
        o = c.call("ag_narrow", y, 0, 0, 3) if view else y
        c.call("ag_mul_", y, o)
        c.expect(y, version=True)
        c.err("ag_backward", c.call("ag_sum", y), None, FL(), status="AG_EVERSION")
    c = case("version/rpow_exponent_modified")
    x = c.rand([3])
    y = c.call("ag_sum", c.call("ag_rpow_scalar", x, 2.0))
    with c.no_grad():
        c.call("ag_add_scalar_", x, 1.0)
    c.err("ag_backward", y, None, FL(), status="AG_EVERSION")
    c = case("version/saved_output_modified")
    x = c.rand([3])
    y = c.call("ag_exp", x)
    c.call("ag_mul_scalar_", y, 2.0)
    c.err("ag_backward", y, c.tensor([1.0, 1.0, 1.0]), FL(), status="AG_EVERSION")
    c = case("version/saved_input_via_view")
    x = c.rand([2, 2])
    y = c.call("ag_mul_scalar", x, 1.0)
    s = c.call("ag_sum", c.call("ag_sin", y))
    c.call("ag_zero_", c.call("ag_select", y, 0, 0))
    c.err("ag_backward", s, None, FL(), status="AG_EVERSION")
    c = case("leaf/inplace")
    x = c.rand([3])
    c.err("ag_add_scalar_", x, 1.0, status="AG_ELEAF",
          contains="a leaf Variable that requires grad is being used in an in-place operation")
    c.expect(x, version=True)
    c = case("leaf/inplace_view")
    x = c.rand([2, 2])
    v = c.call("ag_select", x, 0, 1)
    c.err("ag_mul_", v, c.rand([2], rg=False), status="AG_ELEAF")
    c.expect(x, version=True)
    c = case("leaf/set_requires_grad_nonleaf")
    y = c.call("ag_exp", c.rand([2]))
    c.err("ag_tensor_set_requires_grad", y, 0, status="AG_ELEAF")
    c = case("leaf/optimizer_nonleaf_param")
    y = c.call("ag_exp", c.rand([2]))
    c.err("ag_optimizer_sgd", TS(y), 0.1, 0.0, 0.0, 0.0, 0, status="AG_ELEAF")
    c = case("nograd/backward_no_requires_grad")
    x = c.rand([2], rg=False)
    c.err("ag_backward", c.call("ag_sum", x), None, FL(), status="AG_ENOGRAD",
          contains="does not require grad")
    c = case("nograd/backward_under_no_grad_result")
    x = c.rand([2])
    with c.no_grad():
        y = c.call("ag_sum", c.call("ag_exp", x))
    c.err("ag_backward", y, None, FL(), status="AG_ENOGRAD")
    c = case("nograd/grad_unused_input")
    x, u = c.rand([2]), c.rand([2])
    c.err("ag_grad", TS(c.call("ag_sum", x)), NULL, TS(x, u), FL(), status="AG_ENOGRAD",
          out=["err", "err2"])
    c = case("nograd/retain_grad_no_requires_grad")
    c.err("ag_tensor_retain_grad", c.rand([2], rg=False), status="AG_ENOGRAD")
    c = case("nonscalar_backward_without_grad")
    x = c.rand([2, 2])
    c.err("ag_backward", c.call("ag_exp", x), None, FL(), status="AG_ESHAPE")
    c.expect_grad(x)
    c = case("nonscalar_grad_without_grad_outputs")
    x = c.rand([2])
    c.err("ag_grad", TS(c.call("ag_exp", x)), NULL, TS(x), FL(), status="AG_ESHAPE", out=["err"])
    c = case("range/sum_dim")
    c.err("ag_sum_dims", c.rand([2, 3]), [2], 0, status="AG_ERANGE")
    c = case("range/sum_neg_dim")
    c.err("ag_sum_dims", c.rand([2, 3]), [-3], 0, status="AG_ERANGE")
    c = case("range/repeated_dim")
    c.err("ag_sum_dims", c.rand([2, 3]), [1, -1], 0, status="AG_EINVAL")
    c = case("range/mean_dim")
    c.err("ag_mean_dims", c.rand([2]), [1], 1, status="AG_ERANGE")
    c = case("range/transpose")
    c.err("ag_transpose", c.rand([2, 3]), 0, 2, status="AG_ERANGE")
    c = case("range/unsqueeze")
    c.err("ag_unsqueeze", c.rand([2, 3]), 3, status="AG_ERANGE")
    c = case("range/select_dim")
    c.err("ag_select", c.rand([2, 3]), 2, 0, status="AG_ERANGE")
    c = case("range/select_index")
    c.err("ag_select", c.rand([2, 3]), 1, 3, status="AG_ERANGE")
    # inputs of 3 or more dims: PyTorch's nll_loss2d's checks and messages
    for fn in ("ag_nll_loss", "ag_cross_entropy"):
        extra = (0.0,) if fn == "ag_cross_entropy" else ()
        for name, shape, tshape, w, msg in (
                ("target_dims", [2, 3, 4, 5], [2, 4, 5, 1], None,
                 "only batches of spatial targets supported (3D tensors) but got targets of "
                 "dimension: 4"),
                ("target_size", [2, 3, 4, 5], [2, 4, 6], None,
                 "size mismatch (got input: [2, 3, 4, 5] , target: [2, 4, 6]"),
                ("weight_4d", [2, 3, 4, 5], [2, 4, 5], 2,
                 "weight tensor should be defined either for all or no classes"),
                ("weight_3d", [2, 3, 4], [2, 4], 2,
                 "weight tensor should be defined either for all or no classes")):
            c = case("shape_mismatch/%s_spatial/%s" % (fn[3:], name))
            n = 1
            for d in tshape:
                n *= d
            c.err(fn, c.rand(shape), c.ints([0] * n, tshape),
                  c.tensor([1.0] * w) if w else None, RED("mean"), -100, *extra,
                  status="AG_ESHAPE", contains=msg)
    c = case("dtype/nll_loss_spatial_int_input")
    c.err("ag_nll_loss", c.ints([0] * 24, [2, 3, 4]), c.ints([0] * 8, [2, 4]), None, RED("mean"),
          -100, status="AG_EDTYPE",
          contains="\"nll_loss2d_forward_out_frame\" not implemented for 'Long'")
    c = case("range/narrow")
    c.err("ag_narrow", c.rand([4]), 0, 2, 3, status="AG_ERANGE")
    c = case("range/softmax_dim")
    c.err("ag_softmax", c.rand([2, 3]), 2, status="AG_ERANGE")
    c = case("range/max_dim")
    c.err("ag_max_dim", c.rand([2, 3]), -3, 0, status="AG_ERANGE")
    c = case("range/argmax")
    c.err("ag_argmax", c.rand([2, 3]), 2, 0, status="AG_ERANGE")
    c = case("range/cat_dim")
    c.err("ag_cat", TS(c.rand([2]), c.rand([2])), 1, status="AG_ERANGE")
    c = case("range/index_select")
    c.err("ag_index_select", c.rand([3, 2]), 0, c.ints([0, 3]), status="AG_ERANGE")
    c = case("range/index_select_negative")
    c.err("ag_index_select", c.rand([3, 2]), 0, c.ints([-1]), status="AG_ERANGE")
    c = case("range/gather")
    c.err("ag_gather", c.rand([2, 2]), 1, c.ints([0, 2, 1, 1], [2, 2]), status="AG_ERANGE")
    c = case("range/scatter_add")
    c.err("ag_scatter_add", c.rand([3]), 0, c.ints([5]), c.rand([1]), status="AG_ERANGE")
    c = case("range/embedding")
    c.err("ag_embedding", c.rand([3, 2]), c.ints([1, 3]), status="AG_ERANGE")
    c = case("range/cross_entropy_class")
    c.err("ag_cross_entropy", c.rand([2, 3]), c.ints([0, 3]), None, RED("mean"), -100, 0.0,
          status="AG_ERANGE")
    c = case("range/nll_loss_class")
    c.err("ag_nll_loss", c.rand([2, 3]), c.ints([-1, 0]), None, RED("sum"), -100,
          status="AG_ERANGE")
    c = case("range/size")
    c.err("ag_tensor_size", c.rand([2]), 1, status="AG_ERANGE")
    c = case("range/too_many_dims")
    c.err("ag_zeros", DT("float32"), [1] * 9, status="AG_ERANGE", torch_ok=True)
    c = case("invalid/slice_step")
    c.err("ag_slice", c.rand([4]), 0, 0, 4, 0, status="AG_EINVAL")
    c = case("invalid/split_size")
    c.err("ag_split", c.rand([4]), 0, 0, status="AG_EINVAL", out=["err"])
    c = case("invalid/split_wrong_count")
    c.err("ag_split", c.rand([4]), 2, 0, status="AG_EINVAL", out=["err", "err2", "err3"],
          torch_ok=True)
    c = case("invalid/chunk_zero")
    c.err("ag_chunk", c.rand([4]), 0, 0, status="AG_EINVAL", out=["err"])
    c = case("invalid/arange_step_zero")
    c.err("ag_arange", DT("float32"), 0.0, 1.0, 0.0, status="AG_EINVAL")
    c = case("invalid/arange_wrong_sign")
    c.err("ag_arange", DT("float32"), 0.0, 1.0, -1.0, status="AG_EINVAL")
    c = case("invalid/arange_inf")
    c.err("ag_arange", DT("float64"), 0.0, float("inf"), 1.0, status="AG_EINVAL")
    c = case("invalid/eye_negative")
    c.err("ag_eye", DT("float32"), -1, 2, status="AG_EINVAL")
    c = case("invalid/negative_shape")
    c.err("ag_ones", DT("float32"), [2, -1], status="AG_EINVAL")
    c = case("invalid/randint_range")
    c.err("ag_randint", None, 5, 5, DT("int64"), [2], status="AG_EINVAL")
    c = case("invalid/permute_repeated")
    c.err("ag_permute", c.rand([2, 3]), [0, 0], status="AG_EINVAL")
    c = case("invalid/reshape_two_infer")
    c.err("ag_reshape", c.rand([2, 3]), [-1, -1], status="AG_EINVAL")
    c = case("invalid/dropout_p")
    c.err("ag_dropout", None, c.rand([2]), 1.5, 1, status="AG_EINVAL")
    c = case("invalid/clamp_nan")
    c.err("ag_clamp", c.rand([2]), float("nan"), 1.0, status="AG_EINVAL", torch_ok=True)
    c = case("invalid/flatten_order")
    c.err("ag_flatten", c.rand([2, 3, 4]), 2, 1, status="AG_EINVAL")
    c = case("invalid/sgd_lr")
    c.err("ag_optimizer_sgd", TS(c.rand([2])), -1.0, 0.0, 0.0, 0.0, 0, status="AG_EINVAL",
          contains="Invalid learning rate")
    c = case("invalid/sgd_nesterov_without_momentum")
    c.err("ag_optimizer_sgd", TS(c.rand([2])), 0.1, 0.0, 0.0, 0.0, 1, status="AG_EINVAL")
    c = case("invalid/sgd_momentum")
    c.err("ag_optimizer_sgd", TS(c.rand([2])), 0.1, -0.5, 0.0, 0.0, 0, status="AG_EINVAL")
    c = case("invalid/adam_beta")
    c.err("ag_optimizer_adam", TS(c.rand([2])), 0.1, 1.0, 0.999, 1e-8, 0.0, 0,
          status="AG_EINVAL")
    c = case("invalid/adamw_eps")
    c.err("ag_optimizer_adamw", TS(c.rand([2])), 0.1, 0.9, 0.999, -1e-8, 0.01, 0,
          status="AG_EINVAL")
    c = case("invalid/adam_weight_decay")
    c.err("ag_optimizer_adam", TS(c.rand([2])), 0.1, 0.9, 0.999, 1e-8, -0.1, 0,
          status="AG_EINVAL")
    c = case("invalid/label_smoothing")
    c.err("ag_cross_entropy", c.rand([2, 3]), c.ints([0, 1]), None, RED("mean"), -100, 1.5,
          status="AG_EINVAL", torch_ok=True)
    c = case("empty/max")
    c.err("ag_max", c.tensor([], [0]), status="AG_ESHAPE")
    c = case("empty/argmax_all")
    c.err("ag_argmax_all", c.tensor([], [0, 2]), status="AG_ESHAPE")
    c = case("item/not_one_element")
    c.err("ag_tensor_item", c.rand([2]), status="AG_ESHAPE")
    c = case("t/3d")
    c.err("ag_t", c.rand([2, 2, 2]), status="AG_ESHAPE")
    c = case("null/tensor_arg")
    c.err("ag_add", c.rand([2]), None, status="AG_EINVAL", torch_ok=False)
    c = case("null/embedding_weight")
    c.err("ag_embedding", None, c.ints([0]), status="AG_EINVAL", torch_ok=False)
    # after a failure nothing changed: a failing op leaves the graph usable
    c = case("recover/after_failure")
    x = c.rand([2, 3])
    c.err("ag_matmul", x, x, status="AG_ESHAPE")
    c.backward(c.call("ag_sum", c.call("ag_mul", x, x)))
    return cases


FAMILIES = [
    ("arith", fam_arith), ("unary", fam_unary), ("compare", fam_compare),
    ("reduce", fam_reduce), ("linalg", fam_linalg), ("shape", fam_shape),
    ("index", fam_index), ("nn", fam_nn), ("inplace", fam_inplace),
    ("autograd", fam_autograd), ("optim", fam_optim), ("errors", fam_errors),
    ("creation", fam_creation),
]


def dump(family, cases):
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, "duplicate case names: %s" % sorted(dup)
    lines = ['{"format": 1,', ' "family": %s,' % json.dumps(family),
             ' "tolerances": %s,' % json.dumps(TOLERANCES), ' "cases": [']
    for i, c in enumerate(cases):
        d = c.json()
        head = {k: v for k, v in d.items() if k != "steps"}
        lines.append("  " + json.dumps(head)[:-1] + ', "steps": [')
        for j, s in enumerate(d["steps"]):
            lines.append("    " + json.dumps(s, allow_nan=False)
                         + ("," if j + 1 < len(d["steps"]) else ""))
        lines.append("  ]}" + ("," if i + 1 < len(cases) else ""))
    lines.append(" ]}")
    return "\n".join(lines) + "\n"


def used_functions(steps, acc):
    for s in steps:
        if s["op"] == "call":
            acc.add(s["fn"])
        elif s["op"] == "no_grad":
            used_functions(s["steps"], acc)
    return acc


# ---------------------------------------------------------------------------------------------
# --verify: replay the written files on torch, as FORMAT.md says a runner does
# ---------------------------------------------------------------------------------------------
def same_values(got, want, dtype, tols):
    for g, w in zip(got, want):
        g, w = float(g), float(fnum_in(w))
        if math.isnan(w):
            ok = math.isnan(g)
        elif dtype not in FLOATS or math.isinf(w):
            ok = g == w
        else:
            ok = abs(g - w) <= tols[dtype]["atol"] + tols[dtype]["rtol"] * abs(w)
        if not ok:
            return False
    return len(got) == len(want)


def fnum_in(x):
    return float(x) if isinstance(x, str) else x


def check_fields(t, s, tols):
    if s.get("none"):
        return t is None
    if t is None:
        return False
    checks = {
        "dtype": lambda: DTYPE_NAME[t.dtype], "shape": lambda: list(t.shape),
        "requires_grad": lambda: t.requires_grad, "grad_fn": lambda: node_name(t),
        "is_leaf": lambda: t.is_leaf, "version": lambda: t._version,
        "strides": lambda: list(t.stride()), "storage_offset": t.storage_offset,
        "is_contiguous": t.is_contiguous}
    for key, get in checks.items():
        if key in s and get() != s[key]:
            return False
    return "data" not in s or same_values(flat_list(t), s["data"],
                                          DTYPE_NAME[t.dtype], tols)


def replay(case, steps, tols):
    for s in steps:
        op = s["op"]
        if op == "tensor":
            t = torch.tensor([fnum_in(v) for v in s["data"]],
                             dtype=DTYPES[s["dtype"]]).reshape(s["shape"]).clone()
            case.bind(s["out"], t.requires_grad_(bool(s.get("requires_grad"))), "tensor")
        elif op == "call":
            vals = [case.decode(a) for a in s["args"]]
            err = s.get("error")
            try:
                res = TORCH[s["fn"]](*vals)
            except Exception:  # noqa: BLE001
                if err:
                    continue
                raise
            if err:
                if not err.get("torch_accepts"):
                    return "torch accepted a call expected to fail"
                continue
            out = s.get("out")
            if isinstance(out, str):
                kind = OUTPUTS.get(s["fn"])
                case.bind(out, res, kind if kind in ("opt", "gen") else "tensor")
            elif isinstance(out, list):
                for n, r in zip(out, res):
                    if n is not None:
                        case.bind(n, r, "tensor")
            if "value" in s and not same_values([res], [s["value"]], "float64", tols):
                return "value %r, expected %r" % (res, s["value"])
        elif op in ("expect", "expect_grad"):
            t = case.env[s["t"]]
            if not check_fields(t.grad if op == "expect_grad" else t, s, tols):
                return "%s %s does not hold" % (op, s["t"])
        elif op == "no_grad":
            with torch.no_grad():
                r = replay(case, s["steps"], tols)
            if r:
                return r
        elif op == "release":
            del case.env[s["name"]]
        else:
            return "unknown op %s" % op
    return None


def verify(paths):
    passed = failed = 0
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for cd in data["cases"]:
            tols = dict(data["tolerances"], **cd.get("tolerances", {}))
            case = Case(cd["name"])
            try:
                problem = replay(case, cd["steps"], tols)
            except Exception as e:  # noqa: BLE001
                problem = "raised %r" % e
            if problem:
                print("FAIL %s: %s" % (cd["name"], problem))
                failed += 1
            else:
                passed += 1
    print("%d passed, %d failed, 0 skipped" % (passed, failed))
    return 1 if failed else 0


def same_but_last_bits(a, b):
    """How many numbers differ between two cases files that are otherwise identical, when each
    such difference is within a few float32 ulps; None if they differ in anything else.

    PyTorch's float32 matrix products go through OpenBLAS, which picks its kernels for the
    CPU it runs on: regenerating on another CPU model (this project's hosts are AMD EPYCs of
    more than one generation) changes the last bit or two of a few expected values in
    linalg and nn. Those files are still what generate.py makes, and the runners compare with
    tolerances far wider than this; anything else (a case, a name, a shape, an integer, a
    larger difference) means they are out of date."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return None
        pairs = [(a[k], b[k]) for k in a]
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return None
        pairs = list(zip(a, b))
    elif isinstance(a, float) and isinstance(b, float):
        if a == b or (a != a and b != b):
            return 0
        # 16 float32 ulps of the larger magnitude (2^-19 relative)
        return 1 if abs(a - b) <= 2.0 ** -19 * max(abs(a), abs(b)) else None
    else:
        return 0 if type(a) is type(b) and a == b else None
    n = 0
    for x, y in pairs:
        k = same_but_last_bits(x, y)
        if k is None:
            return None
        n += k
    return n


def main():
    """generate.py: write cases/*.json. --check: regenerate in memory and fail if a committed
    file differs, then replay them (--verify). --verify [FILES]: replay files on torch."""
    files = sorted(os.path.join(OUT_DIR, f) for f in os.listdir(OUT_DIR) if f.endswith(".json")) \
        if os.path.isdir(OUT_DIR) else []
    if sys.argv[1:2] == ["--verify"]:
        return verify(sys.argv[2:] or files)
    check = sys.argv[1:2] == ["--check"]
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    used = set()
    stale = []
    for family, build in FAMILIES:
        cases = build()
        for c in cases:
            used_functions(c.steps, used)
        for c in cases:
            c.name = family + "/" + c.name
        text = dump(family, cases)
        path = os.path.join(OUT_DIR, family + ".json")
        if check:
            try:
                with open(path) as f:
                    old = f.read()
                if old != text:
                    n = same_but_last_bits(json.loads(old), json.loads(text))
                    if n is None:
                        stale.append(path)
                    else:
                        print("%s: %d values differ from the committed ones in their last bits "
                              "(float32 products: the BLAS kernels this CPU gets)" % (path, n))
            except OSError:
                stale.append(path)
        else:
            with open(path, "w") as f:
                f.write(text)
        total += len(cases)
        print("%-9s %4d cases" % (family, len(cases)))
    print("total     %4d cases" % total)
    # FORMAT.md documents the data arguments of every function the data call.
    with open(os.path.join(HERE, "FORMAT.md")) as f:
        doc = f.read()
    missing = sorted(fn for fn in used if "| `%s` |" % fn not in doc)
    if missing:
        print("FORMAT.md's function table lacks: %s" % ", ".join(missing))
        return 1
    if check:
        extra = sorted(set(files) - {os.path.join(OUT_DIR, fam + ".json") for fam, _ in FAMILIES})
        if stale or extra:
            print("out of date (rerun generate.py): %s" % ", ".join(stale + extra))
            return 1
        return verify(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
