#!/usr/bin/python3
"""fuzz_ops: differential fuzzer of libautograd's operations against PyTorch 1.13.

Each seed is one random program over float32/float64/int64/bool tensors (elementwise,
comparisons, reductions, matrix products, views, indexing, nn losses, in-place ops on clones
and views, detach, retain_grad), run through libautograd (agpy, ctypes) and PyTorch side by
side; every result is compared (values, dtype, shape, strides, requires_grad, grad_fn,
is_leaf, error vs success), then the program ends with backward or with ag_grad under
create_graph followed by a second-order ag_grad. See README.md.

usage: fuzz_ops.py --lib build/libautograd.so [--seeds A:B] [-v] [--findings FILE]
"""
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

import agpy as A
import harness
from harness import Known, Mismatch

F32, F64, I64, B = torch.float32, torch.float64, torch.int64, torch.bool
FLOATS = (F32, F64)


def pyscalar(s):
    return int(s) if math.isfinite(s) and s == math.trunc(s) else s


def dims_of(a, dims):
    return list(range(a.dim())) if dims is None or len(dims) == 0 else list(dims)


def torch_slice(t, dim, start, end, step):
    return torch.ops.aten.slice(t, dim, start, end, step)


def torch_index_select(t, d, i):
    # torch 1.13 writes out of bounds (heap corruption) for a 0-d self with an index of
    # numel != 1; torch 2.x raises "Index to scalar can have only 1 value". Mirror 2.x.
    if t.dim() == 0 and i.numel() != 1:
        raise RuntimeError("index_select(): Index to scalar can have only 1 value")
    return t.index_select(d, i)


def floats_only(*ts):
    """abi/autograd.h, ag_matmul and ag_linear: AG_EDTYPE for mixed or non-float dtypes,
    where PyTorch 1.13 multiplies int64 matrices on the CPU (and mixed ones in some shapes):
    the reference refuses them too."""
    dts = set(t.dtype for t in ts if t is not None)
    if len(dts) > 1 or not dts <= set(FLOATS):
        raise RuntimeError("matrix products take one float dtype (autograd.h ag_matmul)")
    return ts


# The conformance generator's map from ABI functions to PyTorch calls (one map for both: a
# new op gets its reference once), with the fuzzer's own where they differ: references that
# refuse what the library documents refusing (floats_only), mirror a PyTorch 1.13 bug's fix
# (torch_index_select), take the library's documented int64 condition (ag_where), or slice
# through aten.slice itself (torch_slice).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance"))
import generate  # noqa: E402

TORCH = dict(generate.TORCH)
TORCH.update({
    "ag_where": lambda c, a, b: torch.where(c != 0 if c.dtype == I64 else c, a, b),
    "ag_matmul": lambda a, b: torch.matmul(*floats_only(a, b)),
    "ag_linear": lambda x, w, b: F.linear(*floats_only(x, w, b)),
    "ag_slice": torch_slice,
    "ag_index_select": torch_index_select,
})

INPLACE = {"ag_add_", "ag_sub_", "ag_mul_", "ag_add_scalar_", "ag_mul_scalar_", "ag_zero_",
           "ag_fill_", "ag_copy_"}



class Pair:
    """One value of the program, on both sides. parents: the tensors it was computed from
    (an in-place op adds its operands to its target's). free_layout: derived from a gradient
    whose strides are the engine's own (see Prog.gradient_layout); its strides are then
    not compared. atol: absolute rounding noise its values may carry from a float32
    layer_norm (see layer_norm_atol), grown by each op it went through. th64: the same value
    computed by PyTorch from float64 leaves (see Prog.shadow), or None."""
    __slots__ = ("ag", "th", "name", "parents", "free_layout", "atol", "th64")

    def __init__(self, ag, th, name, parents=(), free_layout=False, atol=0.0, th64=None):
        self.ag, self.th, self.name = ag, th, name
        self.parents = list(parents)
        self.free_layout = free_layout
        self.atol = atol
        self.th64 = th64


def widened(x):
    """x in float64 where it is float32 (a fresh tensor either way)."""
    return x.double() if x.dtype == F32 else x.clone()


def tensor_args(args):
    """The Pairs among an op's arguments (tensor-array arguments flattened)."""
    out = []
    for a in args:
        if isinstance(a, Pair):
            out.append(a)
        elif isinstance(a, list):
            out += [x for x in a if isinstance(x, Pair)]
    return out


def dense_strides_differ(ag_t, th_t, shape):
    """The strides of ag_t and th_t, or None if they agree where it matters: a tensor of at
    most one element has no layout, and the stride of a size-1 dimension is never used."""
    if th_t.numel() <= 1:
        return None
    st = A.strides(ag_t)
    ts = list(th_t.stride())
    if [a for a, n in zip(st, shape) if n > 1] == [a for a, n in zip(ts, shape) if n > 1]:
        return None
    return st, ts


def layer_norm_atol(fn, args):
    """layer_norm divides x - mean by sqrt(var + eps): on a row of (nearly) equal values the
    float32 rounding of the mean, about 2^-24 |x|, comes out multiplied by 1/sqrt(eps) and
    by the weight. PyTorch's float32 mean rounds; the library's may be exact (a row of
    -2.71875 normalises to 0 here and to -6e-5 in PyTorch): that much is rounding, not a
    divergence."""
    if fn != "ag_layer_norm" or args[0].th.dtype != F32 or args[0].th.numel() == 0:
        return 0.0
    def finite_max(t):  # (NaN and inf come out NaN on both sides: no noise to allow)
        m = t.detach().abs()[torch.isfinite(t.detach())]
        return float(m.max()) if m.numel() else 0.0
    x, w = args[0].th, args[2]
    scale = finite_max(w.th) if w is not None else 1.0
    return 8 * 2.0 ** -24 * finite_max(x) / math.sqrt(args[4]) * scale


def per_pair(a, side, other):
    """An op argument mapped: side(p) for a Pair, [side(p)...] for a list of them, other(a)
    for the rest."""
    if isinstance(a, Pair):
        return side(a)
    if isinstance(a, list) and a and isinstance(a[0], Pair):
        return [side(x) for x in a]
    return other(a)


def documented_refusal(fn, args, th_err, ag_err):
    """The tag of a documented divergence where one side refused a call and the other did
    not, or None."""
    ins = tensor_args(args)
    dts = set(p.th.dtype for p in ins)
    # PyTorch 1.13 bug: an in-place op on a view whose base gained a history after it was
    # made (so its grad_fn is regenerated when read) is refused as on "a leaf Variable that
    # requires grad" unless something read the view's grad_fn first; the library treats the
    # view as the non-leaf it is, as PyTorch does once grad_fn was read:
    #   b = torch.zeros(2, 3); v = b.expand(2, 2, 3); b.copy_(torch.rand(2, 3,
    #   requires_grad=True)); v.copy_(v)  -> RuntimeError: a leaf Variable that requires grad
    #   ... (with v.grad_fn read before the copy_: fine, v's grad_fn AsStridedBackward0)
    if th_err is not None and ag_err is None and fn in INPLACE and \
            "a leaf Variable that requires grad" in str(th_err) and args[0].th._is_view() and \
            args[0].th.grad_fn is not None:
        return "pytorch-1.13 in-place on a view before its grad_fn was regenerated"
    if th_err is not None:
        return None
    # Documented (abi/autograd.h, ag_split, ag_cat): a node counts its outputs and edges in
    # 16 bits, so more than 65535 pieces of a tensor that requires grad (or tensors to cat)
    # are refused under grad mode; PyTorch has no such limit (seed 510547: 95 574 pieces)
    if "at most 65535 are supported" in str(ag_err):
        return "documented: at most 65535 outputs or inputs of a recorded node"
    # PyTorch 1.13 bug: a kernel's dtype check runs only when the kernel has work to do, so
    # an op refused for a dtype goes through on an empty tensor (or argmax when nothing is
    # reduced):
    #   torch.zeros(0, 3).long().softmax(1)          -> empty tensor (of 2 x 3: "not implemented for 'Long'")
    #   torch.tensor([[True]]).argmax(-1)            -> tensor([0]) (of [[True, False]]: "not implemented for 'Bool'")
    #   torch.zeros(1, 0).bool().masked_fill(torch.tensor([-4]), 3.)  -> empty tensor (of a
    #   non-empty self: "Mask tensor can take 0 and 1 values only")
    if any(p.th.numel() == 0 for p in ins) and (
            (ag_err.status == 2 and not dts <= set(FLOATS)) or
            (fn == "ag_masked_fill" and "Mask tensor can take 0 and 1 values only" in str(ag_err))):
        return "pytorch-1.13 skips the checks of an empty operand"
    if ag_err.status == 2 and not dts <= set(FLOATS):
        if fn in ("ag_argmax", "ag_argmin", "ag_argmax_all", "ag_argmin_all") and \
                args[0].th.dtype == B:
            t = args[0].th
            n = t.numel() if fn.endswith("_all") or t.dim() == 0 else t.shape[args[1]]
            if n <= 1:
                return "pytorch-1.13 argmax/argmin of bool with nothing to compare"
    return None


class Prog:
    def __init__(self, seed, stats):
        self.r = random.Random(seed)
        self.seed = seed
        self.log = []
        self.pool = []
        self.leaves = []
        self.n = 0
        self.stats = stats
        self.big = self.r.random() < 0.12
        self.retained = []
        self.inplace_ran = False
        # ops whose double backward PyTorch 1.13 gets wrong (see second_order)
        self.layer_norm_no_weight = False
        self.empty_embedding = False
        self.layer_norm_zero = False  # a float32 layer_norm gave values 0 within its noise
        self.layer_norm_noise = 0.0  # the largest such noise bound (layer_norm_atol)
        self.shadow_broken = False  # an in-place op's float64 shadow failed (see shadow)
        self.mixed_mse = False
        self.inplace_on_empty_view = False
        self.gathered = []  # (torch input of a gather that requires grad, its version then)
        # float32 anywhere in the program loosens every tolerance: its values reach float64
        # results through promotion and through gradients
        self.has_f32 = False

    def say(self, s):
        self.log.append(s)

    def fresh(self):
        self.n += 1
        return "t%d" % self.n

    # ---------------------------------------------------------------- comparison
    def tol(self, dt):
        return (2e-5, 2e-6) if dt == F32 or self.has_f32 else (1e-9, 1e-12)

    def compare_values(self, what, ag_t, th_t, check_strides=True, loose=False, atol=0.0):
        th_t = th_t.detach()
        if th_t._is_zerotensor():
            th_t = torch.zeros(th_t.shape, dtype=th_t.dtype)
        dt = A.dtype(ag_t)
        if th_t.dtype == F32:
            self.has_f32 = True
        if dt != th_t.dtype:
            raise Mismatch("%s: dtype ag=%s torch=%s" % (what, dt, th_t.dtype))
        sh = A.shape(ag_t)
        if sh != list(th_t.shape):
            raise Mismatch("%s: shape ag=%s torch=%s" % (what, sh, list(th_t.shape)))
        v = A.to_torch(ag_t)
        extra = atol
        if dt in FLOATS:
            if v.numel():
                rtol, atol = self.tol(dt)
                if loose and (dt == F32 or self.has_f32):
                    rtol, atol = 1e-3, 1e-4  # gradients: sums in another order
                mag = th_t.abs()[torch.isfinite(th_t)]
                mag = float(mag.max()) if mag.numel() else 1.0
                close = torch.isclose(v.double(), th_t.double(), rtol=rtol * 4,
                                      atol=atol + rtol * mag + extra, equal_nan=True)
                if not close.all():
                    far = ~close
                    if self.layer_norm_zero and not (torch.isfinite(v[far]).all() and
                                                     torch.isfinite(th_t[far]).all()):
                        # a float32 layer_norm gave 0 where PyTorch's rounding gave a tiny
                        # value (or a zero of the other sign): after log, 1/x and the like
                        # the reference is inf where ours is finite, or of the other sign;
                        # neither side is wrong (see layer_norm_atol)
                        raise Known("layer_norm rounding at zero met a pole")
                    # The same noise reaches gradients through sums of products with values
                    # of at most ~5, over a few dozen elements at most (a weight's gradient
                    # sums the normalized rows, which are that noise where they are zero)
                    if loose and self.layer_norm_zero and \
                            float((v[far].double() - th_t[far].double()).abs().max()) <= \
                            100 * self.layer_norm_noise:
                        raise Known("layer_norm rounding at zero reached a gradient")
                    raise Mismatch("%s: values differ\n ag=%s\n torch=%s" % (
                        what, v.tolist(), th_t.tolist()))
        elif not torch.equal(v, th_t):
            raise Mismatch("%s: values differ\n ag=%s\n torch=%s" % (what, v.tolist(),
                                                                       th_t.tolist()))
        self.stats["values compared"] += 1
        if check_strides:
            d = dense_strides_differ(ag_t, th_t, sh)
            if d:
                raise Mismatch("%s: strides ag=%s torch=%s shape=%s" % (what, d[0], d[1], sh))
            self.stats["layouts compared"] += 1

    def compare_meta(self, what, p):
        ag_rg = A.requires_grad(p.ag)
        if ag_rg != p.th.requires_grad:
            raise Mismatch("%s: requires_grad ag=%s torch=%s" % (what, ag_rg,
                                                                p.th.requires_grad))
        # (Reading the grad_fn of a view made by a multi-output op whose base changed in
        # place fails on both sides, as using it does: seed 427126, contiguous() of such a
        # view, which returns the view itself. Then neither side has more to compare.)
        ag_fn = th_fn = ag_err = th_err = None
        try:
            ag_fn = A.grad_fn_name(p.ag)
        except A.AgError as e:
            ag_err = e
        try:
            th_fn = type(p.th.grad_fn).__name__ if p.th.grad_fn is not None else None
        except RuntimeError as e:
            th_err = e
        if ag_err is not None or th_err is not None:
            if (ag_err is None) != (th_err is None):
                raise Mismatch("%s: reading grad_fn: ag=%s torch=%s" % (what, ag_err, th_err))
            return
        if ag_fn != th_fn:
            raise Mismatch("%s: grad_fn ag=%s torch=%s" % (what, ag_fn, th_fn))
        if A.is_leaf(p.ag) != p.th.is_leaf:
            raise Mismatch("%s: is_leaf ag=%s torch=%s" % (what, A.is_leaf(p.ag),
                                                           p.th.is_leaf))

    # ---------------------------------------------------------------- data
    def rand_shape(self, maxd=3):
        r = self.r
        nd = r.choice([0, 1, 1, 2, 2, 2, 3, 3] + ([4] if maxd >= 4 else []))
        nd = min(nd, maxd)
        if self.big and nd >= 1:
            return [r.choice([1, 5, 16, 33, 64, 70]) for _ in range(nd)]
        return [r.choice([0, 1, 1, 2, 2, 3, 3, 4]) if r.random() < 0.9 else r.choice([1, 2, 3])
                for _ in range(nd)]

    def rand_data(self, shape, dt, positive=False):
        r = self.r
        n = 1
        for s in shape:
            n *= s
        if dt in FLOATS:
            if positive:
                vals = [r.randint(1, 200) / 32.0 for _ in range(n)]
            else:
                mode = r.random()
                if mode < 0.15:
                    vals = [r.randint(-3, 3) / 2.0 for _ in range(n)]   # many ties
                else:
                    vals = [r.randint(-160, 160) / 32.0 for _ in range(n)]
            return torch.tensor(vals, dtype=dt).reshape(shape)
        if dt == I64:
            return torch.tensor([r.randint(-4, 4) for _ in range(n)], dtype=I64).reshape(shape)
        return torch.tensor([r.random() < 0.5 for _ in range(n)], dtype=B).reshape(shape)

    def rand_dtype(self):
        return self.r.choice([F32, F32, F32, F32, F64, F64, I64, B])

    def leaf(self, shape=None, dt=None, rg=None, positive=False):
        if shape is None:
            shape = self.rand_shape()
        if dt is None:
            dt = self.rand_dtype()
        x = self.rand_data(shape, dt, positive)
        if dt == F32:
            self.has_f32 = True
        if rg is None:
            rg = dt in FLOATS and self.r.random() < 0.75
        name = self.fresh()
        ag = A.from_torch(x)
        th = x.clone()
        th64 = widened(x)
        if rg:
            A.set_requires_grad(ag, True)
            th.requires_grad_(True)
            th64.requires_grad_(True)
        self.say("%s = leaf(%s, rg=%s)  # %s" % (name, dt, rg, x.tolist()))
        p = Pair(ag, th, name, th64=th64)
        if rg:
            self.leaves.append(p)
        return p

    def bcast_shape(self, shape):
        r = self.r
        out = []
        for s in shape:
            c = r.random()
            if c < 0.25:
                out.append(1)
            else:
                out.append(s)
        # drop some leading dims
        k = r.randint(0, len(out))
        if r.random() < 0.5:
            out = out[k:]
        if r.random() < 0.2:
            out = [r.choice([1, 2])] + out
        if r.random() < 0.03 and out:
            out[r.randrange(len(out))] += 1  # likely incompatible
        return out

    # ---------------------------------------------------------------- execution
    def run(self, fn, args):
        """Runs op fn on both sides. args: Pairs, Python values, lists of Pairs. Returns the
        result Pair (a list of them for several outputs; the target for an in-place op), or
        None when both sides refused the call."""
        def ag_arg(a):
            return per_pair(a, lambda p: p.ag, lambda v: v)

        def th_arg(a):
            return per_pair(a, lambda p: p.th, lambda v: v)

        def fmt(a):
            r = per_pair(a, lambda p: p.name, repr)
            return "[" + ", ".join(r) + "]" if isinstance(r, list) else r

        line = "%s(%s)" % (fn, ", ".join(fmt(a) for a in args))
        th_err = None
        th_out = None
        try:
            if fn in ("ag_split", "ag_chunk"):
                t, a, d = th_arg(args[0]), args[1], args[2]
                th_out = list(torch.split(t, a, d) if fn == "ag_split" else torch.chunk(t, a, d))
            else:
                th_out = TORCH[fn](*[th_arg(a) for a in args])
        except Exception as e:  # noqa: BLE001: any refusal of PyTorch's is compared
            th_err = e
        ag_err = None
        ag_out = None
        try:
            if fn in ("ag_split", "ag_chunk"):
                ag_out = A.split_like(fn, ag_arg(args[0]), args[1], args[2])
            else:
                ag_out = A.call(fn, *[ag_arg(a) for a in args])
        except A.AgError as e:
            ag_err = e
        th64_out = self.shadow(fn, args) if th_err is None and ag_err is None else None
        if (th_err is None) != (ag_err is None):
            self.say(line)
            tag = documented_refusal(fn, args, th_err, ag_err)
            if tag:
                raise Known(tag)
            raise Mismatch("error mismatch in %s: torch=%r ag=%s" % (line, th_err, ag_err))
        self.stats["ops run"] += 1
        if th_err is not None:
            self.stats["errors compared"] += 1
            self.say("%s  -> both error (torch: %s | ag: %s)" % (
                line, str(th_err).split("\n")[0][:100], str(ag_err)[:100]))
            return None
        ins = tensor_args(args)
        free = any(p.free_layout for p in ins)
        # (a sum over n elements adds n times the noise; other ops at most pass it on)
        atol = max([layer_norm_atol(fn, args)] +
                   [p.atol * max(1, p.th.numel()) for p in ins])
        if fn == "ag_layer_norm" and args[2] is None:
            self.layer_norm_no_weight = True
        if fn == "ag_embedding" and args[1].th.numel() == 0:
            self.empty_embedding = True
        if fn == "ag_mse_loss" and args[0].th.dtype != args[1].th.dtype:
            self.mixed_mse = True
        if fn in INPLACE and args[0].th._is_view() and args[0].th.numel() == 0:
            self.inplace_on_empty_view = True
        if fn == "ag_gather" and args[0].th.requires_grad:
            self.gathered.append((args[0].th, args[0].th._version))
        if fn in INPLACE:
            self.say(line)
            self.inplace_ran = True
            tgt = args[0]
            if th64_out is None:  # (its shadow, and every view's of it, was not written)
                self.shadow_broken = True
            tgt.parents += ins[1:]
            tgt.free_layout = tgt.free_layout or free
            tgt.atol = max(tgt.atol, atol)
            self.compare_values("after %s: %s" % (line, tgt.name), tgt.ag, tgt.th,
                                check_strides=not tgt.free_layout, atol=tgt.atol)
            self.compare_meta("after %s: %s" % (line, tgt.name), tgt)
            return tgt
        if isinstance(th_out, (list, tuple)):
            if len(ag_out) != len(th_out):
                self.say(line)
                raise Mismatch("%s: #outputs ag=%d torch=%d" % (line, len(ag_out), len(th_out)))
            res = [Pair(ao, to, self.fresh(), ins, free, atol,
                        th64_out[k] if isinstance(th64_out, (list, tuple)) and
                        len(th64_out) == len(th_out) else None)
                   for k, (ao, to) in enumerate(zip(ag_out, th_out))]
            self.say("%s = %s" % (", ".join(p.name for p in res), line))
            for p in res:
                self.compare_values("%s of %s" % (p.name, line), p.ag, p.th,
                                    check_strides=not free, atol=atol)
                self.compare_meta("%s of %s" % (p.name, line), p)
            return res
        p = Pair(ag_out, th_out, self.fresh(), ins, free, atol,
                 th64_out if isinstance(th64_out, torch.Tensor) else None)
        self.say("%s = %s" % (p.name, line))
        if fn == "ag_layer_norm" and atol > 0 and \
                (th_out.detach().abs() <= atol).any():
            self.layer_norm_zero = True
            self.layer_norm_noise = max(self.layer_norm_noise, atol)
        try:
            self.compare_values("%s = %s" % (p.name, line), p.ag, p.th, check_strides=not free,
                                atol=atol)
        except Mismatch as e:
            self.amplified(e, fn, args, p.ag, p.th)
            raise
        self.compare_meta("%s = %s" % (p.name, line), p)
        return p

    def shadow(self, fn, args):
        """The op run by PyTorch on the operands' float64 shadows (an in-place op changes its
        target's shadow in place), or None where an operand has none or PyTorch refuses
        (dtype rules differ there): a reference for the float32 rounding of gradients, which
        PyTorch and the library accumulate differently (see nearer_exact)."""
        if any(p.th64 is None for p in tensor_args(args)):
            return None
        a64 = [per_pair(a, lambda p: p.th64, lambda v: v) for a in args]
        try:
            if fn in ("ag_split", "ag_chunk"):
                t, a, d = a64[0], a64[1], a64[2]
                return list(torch.split(t, a, d) if fn == "ag_split" else torch.chunk(t, a, d))
            return TORCH[fn](*a64)
        except Exception:  # noqa: BLE001: no shadow then
            return None

    def shadow_grad(self, root, leaves, create_graph=False):
        """The float64 shadow's gradients of root with respect to leaves (None entries where
        a leaf has none), or None where the shadow cannot give them."""
        if self.shadow_broken or root.th64 is None or not root.th64.requires_grad or \
                any(lf.th64 is None for lf in leaves):
            return None
        try:
            return list(torch.autograd.grad([root.th64], [lf.th64 for lf in leaves],
                                            create_graph=create_graph, allow_unused=True))
        except Exception:  # noqa: BLE001: no reference then
            return None

    def nearer_exact(self, e, g64, g_ag, g_th):
        """Raises Known when a float32 gradient that differs from PyTorch's is off the
        gradient PyTorch computes from float64 leaves by no more than twice what PyTorch's
        own is off it: float32 rounding, no worse than PyTorch's. Seed 201398, log1p of a
        float32 layer_norm output 1e-5 from -1: the exact 1.249976, the library's 1.251057,
        PyTorch's 1.261719. Seed 608791, a second derivative that is 0 exactly (t / x * x
        differentiated twice): 1e-4 of noise on either side, at other elements. Seed 84837,
        a 0-d operand broadcast over a float32 layer_norm's input: its gradient sums terms
        that cancel to 0 exactly: 1e-4 here, -6e-3 in PyTorch."""
        if "values differ" not in str(e) or g64 is None or not self.has_f32:
            return
        v = A.to_torch(g_ag).double()
        r = g64.detach().double()
        t = g_th.detach().double()
        if v.shape != r.shape or v.shape != t.shape or not v.numel():
            return
        fin = torch.isfinite(r) & torch.isfinite(v) & torch.isfinite(t)
        if not bool((fin | (torch.isnan(v) & torch.isnan(t))).all()):
            return
        err_ag = float((v - r).abs()[fin].max()) if bool(fin.any()) else 0.0
        err_th = float((t - r).abs()[fin].max()) if bool(fin.any()) else 0.0
        if err_ag <= 2 * err_th:
            raise Known("PyTorch's float32 rounding: the library's gradient is as near the exact one")

    def amplified(self, e, fn, args, ag_out, th_out=None):
        """Raises Known when a result's values differ only because its operands did, within
        their tolerances, and the op magnified that (log1p near -1 of a float32 sin that is
        1 ulp off PyTorch's; a product of gradients that cancelled to ~1e-5): PyTorch's own
        op, run on the library's operands, gives the library's result; or when PyTorch's
        float32 result is the one further from the exact value (see below)."""
        if "values differ" not in str(e) or fn in INPLACE or not tensor_args(args):
            return
        try:
            ref = TORCH[fn](*[per_pair(a, lambda p: A.to_torch(p.ag), lambda v: v)
                              for a in args]).detach()
        except Exception:  # noqa: BLE001: no verdict then; the mismatch stands
            return
        got = A.to_torch(ag_out)
        if ref.shape == got.shape and ref.dtype == got.dtype and \
                torch.allclose(got.double(), ref.double(), rtol=1e-6, atol=0, equal_nan=True):
            raise Known("operands' rounding magnified by the op")
        # A float32 result that PyTorch rounds worse than the library: its reductions
        # accumulate in float32 (norm(x, 0.5) of 71 680 elements, seed 122724: 2e-4 off the
        # exact value, the library's 5e-9). The op in float64 on the same operands decides:
        # the library's must be as near it as PyTorch's, and near it in float32's terms.
        if got.dtype != F32:
            return
        try:
            ref64 = TORCH[fn](*[per_pair(a, lambda p: A.to_torch(p.ag).double()
                                         if A.to_torch(p.ag).dtype == F32 else A.to_torch(p.ag),
                                         lambda v: v) for a in args]).detach()
        except Exception:  # noqa: BLE001: no verdict then; the mismatch stands
            return
        if ref64.shape != got.shape or not ref64.is_floating_point() or th_out is None:
            return
        r64 = ref64.double()
        ok = torch.isclose(got.double(), r64, rtol=1e-5, atol=0, equal_nan=True) & \
            ((got.double() - r64).abs() <= (th_out.detach().double() - r64).abs())
        if bool(ok.all()):
            raise Known("PyTorch's float32 rounding: the library's result is nearer the exact one")

    # ---------------------------------------------------------------- op choice
    def pick(self, pred=None):
        c = [p for p in self.pool if pred is None or pred(p)]
        if not c:
            return None
        # prefer recent
        if self.r.random() < 0.6:
            return c[-1] if self.r.random() < 0.5 else c[max(0, len(c) - 3):][self.r.randrange(min(3, len(c)))]
        return self.r.choice(c)

    def scalar(self):
        r = self.r
        return r.choice([0.0, 1.0, 2.0, -1.0, 3.0, 0.5, -1.5, 2.5, 0.25, -2.0, 1e-3])

    def rand_dims(self, t, allow_none=True):
        nd = t.th.dim()
        r = self.r
        if nd == 0:
            return r.choice([[], [0], [-1]]) if allow_none else [0]
        if allow_none and r.random() < 0.2:
            return []
        k = r.randint(1, nd)
        ds = r.sample(range(nd), k)
        ds = [d - nd if r.random() < 0.3 else d for d in ds]
        if r.random() < 0.02:
            ds.append(nd)  # out of range
        return ds

    def rand_dim(self, t, extra=0):
        nd = max(1, t.th.dim() + extra)
        d = self.r.randrange(-nd, nd)
        if self.r.random() < 0.02:
            d = nd
        return d

    def unary(self, a):
        """A random unary op (or cast, clone, contiguous) of a."""
        r = self.r
        fn = r.choice(["neg", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "abs", "sin",
                       "cos", "tanh", "sigmoid", "relu", "silu", "leaky_relu", "gelu",
                       "softplus", "clamp", "clamp_min", "clamp_max", "to_dtype", "clone",
                       "contiguous"])
        args = [a]
        if fn == "leaky_relu":
            args.append(r.choice([0.01, 0.2, -0.5, 0.0]))
        elif fn == "gelu":
            args.append(r.randint(0, 1))
        elif fn == "softplus":
            args += [r.choice([1.0, 2.0, 0.5]), r.choice([20.0, 1.0, 0.5])]
        elif fn == "clamp":
            lo = r.choice([-1.0, -0.5, 0.0, 1.0])
            args += [lo, lo + r.choice([-0.5, 0.0, 0.5, 2.0])]
        elif fn in ("clamp_min", "clamp_max"):
            args.append(r.choice([-1.0, 0.0, 0.5, 1.0]))
        elif fn == "to_dtype":
            args.append(self.rand_dtype())
        return self.run("ag_" + fn, args)

    def step(self):
        r = self.r
        kind = r.choices(
            ["unary", "binary", "scalar", "reduce", "view", "linalg", "index", "nn",
             "inplace", "noncontig", "compare", "detach_inplace", "retain"],
            [12, 14, 8, 12, 12, 5, 7, 7, 8, 8, 4, 2, 2])[0]
        a = self.pick()
        if a is None:
            return
        out = None
        if kind == "detach_inplace":
            # an in-place op on a detached alias changes the original's values too, and
            # bumps the version counter both share
            d = Pair(A.detach(a.ag), a.th.detach(), self.fresh(), [], a.free_layout, a.atol,
                     a.th64.detach() if a.th64 is not None else None)
            self.say("%s = detach(%s)" % (d.name, a.name))
            if r.random() < 0.5:
                self.run("ag_add_scalar_", [d, self.scalar()])
            else:
                self.run("ag_mul_", [d, self.leaf(self.bcast_shape(d.th.shape))])
            return
        if kind == "retain":
            if a.th.requires_grad and not a.th.is_leaf:
                a.th.retain_grad()
                if a.th64 is not None and a.th64.requires_grad and not a.th64.is_leaf:
                    a.th64.retain_grad()
                A.retain_grad(a.ag)
                self.say("retain_grad(%s)" % a.name)
                self.retained.append(a)
            return
        if kind == "unary":
            out = self.unary(a)
        elif kind == "binary":
            fn = r.choice(["add", "sub", "mul", "div", "pow", "maximum", "minimum", "where",
                           "mse_loss"])
            c = r.random()
            if c < 0.35:
                b = self.leaf(self.bcast_shape(a.th.shape), dt=self.rand_dtype())
            elif c < 0.5:
                b = self.leaf([], dt=self.rand_dtype())
            else:
                b = self.pick() or a
            if r.random() < 0.5:
                a, b = b, a
            if fn == "where":
                cond = self.leaf(self.bcast_shape(a.th.shape), dt=r.choice([B, B, I64]))
                out = self.run("ag_where", [cond, a, b])
            elif fn == "mse_loss":
                out = self.run("ag_mse_loss", [a, b, r.choice(["none", "mean", "sum"])])
            else:
                out = self.run("ag_" + fn, [a, b])
        elif kind == "compare":
            if r.random() < 0.5:
                fn = r.choice(["eq", "ne", "lt", "le", "gt", "ge"])
                b = self.leaf(self.bcast_shape(a.th.shape), dt=self.rand_dtype())
                out = self.run("ag_" + fn, [a, b])
            else:
                fn = r.choice(["eq", "ne", "lt", "le", "gt", "ge"]) + "_scalar"
                out = self.run("ag_" + fn, [a, self.scalar()])
        elif kind == "scalar":
            fn = r.choice(["add", "sub", "rsub", "mul", "div", "rdiv", "pow", "rpow"]) + "_scalar"
            out = self.run("ag_" + fn, [a, self.scalar()])
        elif kind == "reduce":
            fn = r.choice(["sum", "sum_dims", "mean", "mean_dims", "max", "min", "max_dim",
                           "min_dim", "amax", "amin", "var", "std", "logsumexp", "norm",
                           "argmax", "argmin", "argmax_all", "argmin_all"])
            k = r.randint(0, 1)
            if fn in ("sum", "mean", "max", "min", "argmax_all", "argmin_all"):
                out = self.run("ag_" + fn, [a])
            elif fn in ("sum_dims", "mean_dims", "amax", "amin", "logsumexp"):
                out = self.run("ag_" + fn, [a, self.rand_dims(a), k])
            elif fn in ("var", "std"):
                out = self.run("ag_" + fn, [a, self.rand_dims(a), r.choice([0, 1, 1, 2]), k])
            elif fn == "norm":
                out = self.run("ag_norm", [a, r.choice([2.0, 1.0, math.inf, -math.inf, 0.0, 3.0,
                                                        0.5]), self.rand_dims(a), k])
            elif fn in ("max_dim", "min_dim"):
                outs = self.run("ag_" + fn, [a, self.rand_dim(a), k])
                if outs:
                    self.pool += outs
                return
            else:
                out = self.run("ag_" + fn, [a, self.rand_dim(a), k])
        elif kind == "view":
            fn = r.choice(["reshape", "view", "transpose", "t", "permute", "expand", "slice",
                           "narrow", "select", "squeeze", "squeeze_dim", "unsqueeze", "flatten",
                           "split", "chunk"])
            sh = list(a.th.shape)
            nd = len(sh)
            if fn in ("reshape", "view"):
                n = a.th.numel()
                cands = [[n], [-1], [1, n], [n, 1], sh[::-1], []]
                if n % 2 == 0 and n:
                    cands += [[2, -1], [-1, 2], [2, n // 2]]
                if n == 0:
                    cands += [[0, 3], [3, 0, -1]]
                new = r.choice(cands)
                out = self.run("ag_" + fn, [a, new])
            elif fn == "transpose":
                out = self.run(fn and "ag_transpose", [a, self.rand_dim(a), self.rand_dim(a)])
            elif fn == "t":
                out = self.run("ag_t", [a])
            elif fn == "permute":
                p = list(range(nd))
                r.shuffle(p)
                out = self.run("ag_permute", [a, p])
            elif fn == "expand":
                new = [(r.choice([s, 2, 3]) if s == 1 else (s if r.random() < 0.8 else -1))
                       for s in sh]
                if r.random() < 0.4:
                    new = [r.choice([1, 2])] + new
                out = self.run("ag_expand", [a, new])
            elif fn == "slice":
                d = self.rand_dim(a)
                out = self.run("ag_slice", [a, d, r.randint(-3, 3), r.choice([-1, 1, 2, 4, 100]),
                                            r.choice([1, 1, 2, 3])])
            elif fn == "narrow":
                d = self.rand_dim(a)
                s = sh[d] if -nd <= d < nd else 1
                st = r.randint(-s, s) if s else r.choice([0, -1])
                ln = r.randint(0, max(0, s - (st % s if s else 0)))
                out = self.run("ag_narrow", [a, d, st, ln])
            elif fn == "select":
                d = self.rand_dim(a)
                s = sh[d] if -nd <= d < nd else 1
                out = self.run("ag_select", [a, d, r.randint(-s, max(0, s - 1)) if s else 0])
            elif fn == "squeeze":
                out = self.run("ag_squeeze", [a])
            elif fn in ("squeeze_dim",):
                out = self.run("ag_squeeze_dim", [a, self.rand_dim(a)])
            elif fn == "unsqueeze":
                out = self.run("ag_unsqueeze", [a, self.rand_dim(a, 1)])
            elif fn == "flatten":
                d1 = self.rand_dim(a)
                d2 = self.rand_dim(a)
                out = self.run("ag_flatten", [a, d1, d2])
            elif fn in ("split", "chunk"):
                d = self.rand_dim(a)
                outs = self.run("ag_" + fn, [a, r.choice([1, 2, 3]), d])
                if outs:
                    self.pool += outs
                return
        elif kind == "noncontig":
            # build a non-contiguous view of a fresh leaf and use it
            sh = self.rand_shape()
            if len(sh) < 2:
                sh = sh + [r.choice([2, 3])] * (2 - len(sh))
            base = self.leaf(sh)
            c = r.random()
            if c < 0.35:
                out = self.run("ag_transpose", [base, 0, -1])
            elif c < 0.7:
                out = self.run("ag_slice", [base, r.randrange(len(sh)), r.randint(0, 1), 100, 2])
            else:
                new = [2 if s == 1 else s for s in sh]
                b2 = self.run("ag_unsqueeze", [base, 0])
                out = self.run("ag_expand", [b2, [2] + new]) if b2 else None
            if out is not None and r.random() < 0.5:
                # at once a unary op of it: the layout each one gives such an input, for
                # every dtype
                self._push(out)
                out = self.unary(out)
        elif kind == "linalg":
            fn = r.choice(["matmul", "matmul", "linear"])
            sh = list(a.th.shape)
            if fn == "matmul":
                if len(sh) == 0:
                    out = self.run("ag_matmul", [a, a])
                    return self._push(out)
                k = sh[-1]
                c = r.random()
                if c < 0.3:
                    bs = [k]
                elif c < 0.7:
                    bs = [k, r.choice([1, 2, 3])]
                else:
                    bs = [r.choice([1, 2])] + [k, r.choice([1, 3])]
                if r.random() < 0.05:
                    bs[0] += 1
                b = self.leaf(bs, dt=a.th.dtype if r.random() < 0.9 else self.rand_dtype())
                if r.random() < 0.3:
                    bt = self.run("ag_t", [b]) if len(bs) == 2 else None
                    if bt is not None:
                        b2 = self.run("ag_contiguous", [bt])
                        b = self.run("ag_t", [b2]) if b2 else b
                if r.random() < 0.3:
                    a, b = self.run("ag_t", [b]) if len(bs) <= 2 else b, a
                    if a is None:
                        return
                out = self.run("ag_matmul", [a, b])
            else:
                if len(sh) == 0:
                    return
                k = sh[-1]
                o = r.choice([1, 2, 3])
                w = self.leaf([o, k] if r.random() < 0.9 else [k], dt=a.th.dtype)
                bias = None
                c = r.random()
                if c < 0.4:
                    bias = self.leaf([o], dt=a.th.dtype)
                elif c < 0.55:
                    bias = self.leaf([], dt=a.th.dtype)
                elif c < 0.65:
                    bias = self.leaf([1], dt=a.th.dtype)
                out = self.run("ag_linear", [a, w, bias])
        elif kind == "index":
            fn = r.choice(["index_select", "gather", "scatter_add", "masked_fill", "cat", "stack",
                           "embedding"])
            sh = list(a.th.shape)
            nd = len(sh)
            if fn == "index_select":
                d = self.rand_dim(a)
                s = sh[d] if -nd <= d < nd else 1
                idx = torch.tensor([r.randrange(s) if s else 0 for _ in range(r.randint(0, 4))],
                                   dtype=I64)
                ip = self._const(idx)
                out = self.run("ag_index_select", [a, d, ip])
            elif fn == "gather":
                d = self.rand_dim(a)
                s = sh[d] if -nd <= d < nd else 1
                ish = [max(0, x - r.randint(0, 1)) for x in sh]
                if -nd <= d < nd:
                    ish[d] = r.randint(0, 3)
                n = 1
                for x in ish:
                    n *= x
                idx = torch.tensor([r.randrange(s) if s else 0 for _ in range(n)],
                                   dtype=I64).reshape(ish)
                out = self.run("ag_gather", [a, d, self._const(idx)])
            elif fn == "scatter_add":
                d = self.rand_dim(a)
                s = sh[d] if -nd <= d < nd else 1
                ish = [max(0, x - r.randint(0, 1)) for x in sh]
                n = 1
                for x in ish:
                    n *= x
                idx = torch.tensor([r.randrange(s) if s else 0 for _ in range(n)],
                                   dtype=I64).reshape(ish)
                src = self.leaf(ish, dt=a.th.dtype if a.th.dtype in FLOATS else F32)
                out = self.run("ag_scatter_add", [a, d, self._const(idx), src])
            elif fn == "masked_fill":
                m = self.leaf(self.bcast_shape(sh), dt=B if r.random() < 0.9 else I64)
                out = self.run("ag_masked_fill", [a, m, self.scalar()])
            elif fn in ("cat", "stack"):
                others = [a]
                for _ in range(r.randint(0, 2)):
                    sh2 = list(sh)
                    if fn == "cat" and sh2 and r.random() < 0.7:
                        d = r.randrange(len(sh2))
                        sh2[d] = r.randint(0, 3)
                    others.append(self.leaf(sh2, dt=self.rand_dtype() if r.random() < 0.3
                                            else a.th.dtype))
                r.shuffle(others)
                out = self.run("ag_" + fn, [others, self.rand_dim(a, 1 if fn == "stack" else 0)])
            elif fn == "embedding":
                w = self.leaf([r.randint(1, 4), r.randint(1, 3)], dt=r.choice(FLOATS))
                num = w.th.shape[0]
                ish = self.rand_shape(2)
                n = 1
                for x in ish:
                    n *= x
                idx = torch.tensor([r.randrange(num) for _ in range(n)], dtype=I64).reshape(ish)
                out = self.run("ag_embedding", [w, self._const(idx)])
        elif kind == "nn":
            fn = r.choice(["softmax", "log_softmax", "cross_entropy", "nll_loss", "bce",
                           "layer_norm"])
            sh = list(a.th.shape)
            nd = len(sh)
            if fn in ("softmax", "log_softmax"):
                out = self.run("ag_" + fn, [a, self.rand_dim(a)])
            elif fn in ("cross_entropy", "nll_loss"):
                C_ = r.randint(1, 4)
                nb = r.randint(0, 3)
                xs = r.choice([[nb, C_], [C_], [nb, C_, r.randint(1, 2)]])
                x = self.leaf(xs, dt=r.choice(FLOATS))
                ts = [xs[0]] + xs[2:] if len(xs) != 1 else []
                n = 1
                for s in ts:
                    n *= s
                tv = [r.randrange(C_) if r.random() < 0.85 else -100 for _ in range(n)]
                tgt = self._const(torch.tensor(tv, dtype=I64).reshape(ts))
                w = self.leaf([C_], dt=x.th.dtype, rg=False, positive=True) \
                    if r.random() < 0.3 else None
                red = r.choice(["none", "mean", "sum"])
                if fn == "cross_entropy":
                    out = self.run("ag_cross_entropy", [x, tgt, w, red, -100,
                                                        r.choice([0.0, 0.0, 0.1])])
                else:
                    ls = self.run("ag_log_softmax", [x, 1 if len(xs) > 1 else 0])
                    if ls is None:
                        return
                    out = self.run("ag_nll_loss", [ls, tgt, w, red, -100])
            elif fn == "bce":
                if a.th.dtype not in FLOATS:
                    return
                y = self.leaf(sh, dt=a.th.dtype, rg=False)
                y2 = self.run("ag_sigmoid", [y])
                w = self.leaf(self.bcast_shape(sh), dt=a.th.dtype, rg=False, positive=True) \
                    if r.random() < 0.3 else None
                pw = self.leaf(sh[-1:] if r.random() < 0.7 else [], dt=a.th.dtype, rg=False,
                               positive=True) if r.random() < 0.3 else None
                out = self.run("ag_binary_cross_entropy_with_logits",
                               [a, y2, w, pw, r.choice(["none", "mean", "sum"])])
            elif fn == "layer_norm":
                if nd == 0:
                    return
                k = r.randint(1, nd)
                ns = sh[nd - k:]
                nn_ = 1
                for x in ns:
                    nn_ *= x
                if nn_ < 2:
                    return
                w = self.leaf(ns, dt=a.th.dtype) if r.random() < 0.5 else None
                b = self.leaf(ns, dt=a.th.dtype) if r.random() < 0.5 else None
                out = self.run("ag_layer_norm", [a, ns, w, b, 1e-5])
        elif kind == "inplace":
            fn = r.choice(["add_", "sub_", "mul_", "add_scalar_", "mul_scalar_", "zero_", "fill_",
                           "copy_"])
            # target: usually a fresh non-leaf clone or view of one
            if r.random() < 0.6:
                t = self.run("ag_clone", [a])
                if t is None:
                    return
                self.pool.append(t)
                if r.random() < 0.4 and t.th.dim() >= 1:
                    c = r.random()
                    if c < 0.4:
                        t = self.run("ag_transpose", [t, 0, -1])
                    elif c < 0.8:
                        t = self.run("ag_slice", [t, 0, r.randint(0, 1), 100, r.choice([1, 2])])
                    else:
                        t = self.run("ag_select", [t, 0, 0]) if t.th.shape[0] else t
                    if t is None:
                        return
                    self.pool.append(t)
            else:
                t = a
            if fn in ("add_", "sub_", "mul_", "copy_"):
                c = r.random()
                if c < 0.7:
                    o = self.leaf(self.bcast_shape(t.th.shape), dt=self.rand_dtype())
                else:
                    o = self.pick() or t
                out = self.run("ag_" + fn, [t, o])
            elif fn in ("add_scalar_", "mul_scalar_", "fill_"):
                out = self.run("ag_" + fn, [t, self.scalar()])
            else:
                out = self.run("ag_zero_", [t])
            return
        self._push(out)

    def _push(self, out):
        if out is not None:
            if isinstance(out, list):
                self.pool += out
            else:
                self.pool.append(out)

    def _const(self, x):
        name = self.fresh()
        self.say("%s = const(%s)  # %s" % (name, x.dtype, x.tolist()))
        return Pair(A.from_torch(x), x.clone(), name, th64=widened(x))

    # ---------------------------------------------------------------- gradients
    def weighted_root(self, outs):
        """sum_i sum(o_i * w_i) with random constant weights w_i, or None if an op refused."""
        terms = []
        for o in outs:
            w = self.leaf(list(o.th.shape), dt=o.th.dtype, rg=False)
            m = self.run("ag_mul", [o, w])
            if m is None:
                return None
            s = self.run("ag_sum", [m])
            if s is None:
                return None
            terms.append(s)
        root = terms[0]
        for t in terms[1:]:
            root = self.run("ag_add", [root, t])
            if root is None:
                return None
        return root

    def summed_from_paths(self, root, leaf):
        """Whether the gradient of root with respect to leaf may be a sum of contributions
        that reached some tensor through more than one path: a tensor between leaf and root
        that two ops (or one op twice) consumed. An in-place op ties a view to its base
        through edges the parents do not record, so after one any gradient counts as summed."""
        if self.inplace_ran:
            return True
        anc = {}
        stack = [root]
        while stack:
            p = stack.pop()
            if id(p) not in anc:
                anc[id(p)] = p
                stack += p.parents
        uses = {}
        for p in anc.values():
            for q in p.parents:
                uses[id(q)] = uses.get(id(q), 0) + 1
        behind = {}  # id -> whether leaf lies behind (or is) that tensor

        def reaches(p):
            if id(p) not in behind:
                behind[id(p)] = False
                behind[id(p)] = p is leaf or any(reaches(q) for q in p.parents)
            return behind[id(p)]
        return any(uses.get(k, 0) >= 2 and reaches(p) for k, p in anc.items())

    def pytorch_double_backward_bug(self, torch_says):
        """Raises Known where PyTorch 1.13's double backward of an op the program ran is
        wrong and torch_says is how it shows; returns otherwise."""
        # PyTorch 1.13 bug: layer_norm without a weight loses the bias's path in double
        # backward (None for the bias; or an undefined tensor met in the formula):
        #   b = torch.zeros(3, requires_grad=True); g, = torch.autograd.grad(torch.tanh(
        #   F.layer_norm(torch.arange(3.), [3], None, b)).sum(), b, create_graph=True);
        #   torch.autograd.grad(g.sum(), b, allow_unused=True)  -> (None,), nonzero with
        #   F.layer_norm(torch.arange(3.), [3]) + b
        if self.layer_norm_no_weight and (torch_says == "torch None" or
                                          "Expected a proper Tensor but got None" in torch_says):
            raise Known("pytorch-1.13 layer_norm without weight: double backward")
        # PyTorch 1.13 bug: embedding's double backward reshapes with -1 and fails on empty
        # indices:
        #   w = torch.ones(3, 2, requires_grad=True); g, = torch.autograd.grad(F.embedding(
        #   torch.zeros(2, 0).long(), w).cos().sum(), w, create_graph=True);
        #   torch.autograd.grad(g.sum(), w)  -> RuntimeError: cannot reshape tensor of 0 ...
        if self.empty_embedding and "cannot reshape tensor of 0 elements" in torch_says:
            raise Known("pytorch-1.13 embedding of empty indices: double backward")

    def gradient_layout(self, what, g, root, leaf, summed=False):
        """Compares the strides of a gradient ag_grad handed out. When they differ and the
        gradient was summed from several paths, the layout is the engine's own: the header
        promises each op's formula's layout (abi/autograd.h, ag_grad), but a sum of two
        contributions laid out differently is laid out by whichever the engine added first,
        and PyTorch's order (its ready queue) is not the library's fixed one. Such a gradient
        is marked free_layout, and so is everything computed from it. Returns the tag of the
        divergence met, or None."""
        d = dense_strides_differ(g.ag, g.th, list(g.th.shape))
        if d is None:
            self.stats["layouts compared"] += 1
            return None
        if not summed and not self.summed_from_paths(root, leaf):
            raise Mismatch("%s: strides ag=%s torch=%s shape=%s (gradient from a single path)"
                           % (what, d[0], d[1], list(g.th.shape)))
        self.say("  (%s: strides ag=%s torch=%s: a sum over paths, engine-specific)" % (
            what, d[0], d[1]))
        g.free_layout = True
        self.stats["summed gradients laid out differently"] += 1
        return True

    def compare_error(self, what, th_err, ag_err):
        if (th_err is None) != (ag_err is None):
            # PyTorch 1.13 bug: mse_loss's backward kernel wants both operands in the
            # gradient's dtype, so a mixed-dtype mse_loss cannot be differentiated (2.x
            # promotes first, as the library does):
            #   F.mse_loss(torch.ones(2, requires_grad=True), torch.ones(2).long()).backward()
            #   -> RuntimeError: Found dtype Long but expected Float
            if self.mixed_mse and ag_err is None and "Found dtype" in str(th_err):
                raise Known("pytorch-1.13 mse_loss of mixed dtypes: backward")
            # Documented (abi/autograd.h, ag_gather): gather's backward keeps its input's
            # shape, where PyTorch saves the input, so changing it in place before backward
            # fails there only:
            #   x = torch.ones(2, 2, requires_grad=True); t = x * 1; y = t.gather(0,
            #   torch.zeros(1, 2).long()); t.add_(1); y.sum().backward()  -> RuntimeError:
            #   one of the variables needed for gradient computation has been modified ...
            if ag_err is None and "modified by an inplace operation" in str(th_err) and \
                    any(t._version != v for t, v in self.gathered):
                raise Known("documented: gather keeps its input's shape, not the input")
            raise Mismatch("%s error mismatch: torch=%r ag=%s" % (what, th_err, ag_err))
        if th_err is not None:
            self.stats["errors compared"] += 1
            self.say("  both error: %s | %s" % (str(th_err).split("\n")[0][:80],
                                                 str(ag_err)[:80]))
            return True
        return False

    def grads(self):
        r = self.r
        outs = [p for p in self.pool if p.th.requires_grad and p.th.dtype in FLOATS]
        if not outs:
            return
        outs = r.sample(outs, min(len(outs), r.randint(1, 3)))
        root = self.weighted_root(outs)
        if root is None:
            return
        leaves = list(self.leaves)
        if r.random() < 0.6:
            self.backward(root, leaves)
        else:
            self.second_order(root, leaves)

    def backward(self, root, leaves):
        self.say("backward(%s)" % root.name)
        th_err = ag_err = None
        try:
            root.th.backward()
        except Exception as e:  # noqa: BLE001
            th_err = e
        try:
            A.backward(root.ag)
        except A.AgError as e:
            ag_err = e
        if th_err is None and root.th64 is not None and root.th64.requires_grad:
            try:
                root.th64.backward()
            except Exception:  # noqa: BLE001: no reference then
                for lf in leaves:
                    lf.th64 = None
        self.retain_grad_of_undefined(th_err, ag_err)
        if self.compare_error("backward", th_err, ag_err):
            return
        # .grad's layout is the gradient layout contract's (the leaf's strides if it is
        # dense, else contiguous) and a retained one is contiguous, whatever the paths:
        # compared in full
        for lf in leaves + self.retained:
            g_th = lf.th.grad
            g_ag = A.grad(lf.ag)
            if (g_th is None) != (g_ag is None):
                raise Mismatch("grad of %s: presence ag=%s torch=%s" % (
                    lf.name, g_ag is not None, g_th is not None))
            if g_th is not None:
                try:
                    self.compare_values("grad of %s" % lf.name, g_ag, g_th, loose=True)
                except Mismatch as e:
                    g64 = None
                    if not self.shadow_broken and lf.th64 is not None and \
                            (lf.th64.is_leaf or lf.th64.retains_grad):
                        g64 = lf.th64.grad
                    self.nearer_exact(e, g64, g_ag, g_th)
                    raise

    def retain_grad_of_undefined(self, th_err, ag_err):
        """Raises Known where PyTorch failed as below and the library did not."""
        # PyTorch 1.13 bug: retain_grad's hook fails on an undefined gradient, which an
        # output of a multi-output node that nothing downstream used receives when another
        # output is used, in backward and in autograd.grad alike (2.0 leaves its .grad unset,
        # as the library does; fuzz_autograd.py meets it through custom functions):
        #   x = torch.ones(3, 1, requires_grad=True); a, b = x.split(2); b.retain_grad()
        #   a.sum().backward()  -> RuntimeError: Expected a proper Tensor but got None ...
        if th_err is not None and ag_err is None and \
                "Expected a proper Tensor but got None" in str(th_err) and \
                any(A.grad(t.ag) is None for t in self.retained):
            raise Known("pytorch-1.13 retain_grad of an undefined gradient")

    def second_order(self, root, leaves):
        """ag_grad(root, leaves, create_graph, allow_unused), then ag_grad of a weighted sum
        of those gradients: the second order through each op's double-backward formula."""
        if not leaves:
            return
        self.say("g = grad(%s, leaves, create_graph, allow_unused)" % root.name)
        th_err = ag_err = None
        try:
            gth = torch.autograd.grad([root.th], [lf.th for lf in leaves], create_graph=True,
                                      allow_unused=True)
        except Exception as e:  # noqa: BLE001
            th_err = e
        try:
            gag = A.autograd_grad([root.ag], [lf.ag for lf in leaves], flags=2 | 4)
        except A.AgError as e:
            ag_err = e
        self.retain_grad_of_undefined(th_err, ag_err)
        if self.compare_error("grad", th_err, ag_err):
            return
        g64 = self.shadow_grad(root, leaves, create_graph=True)
        gp = []
        for k, (lf, a_, t_) in enumerate(zip(leaves, gag, gth)):
            if (a_ is None) != (t_ is None):
                raise Mismatch("1st-order grad of %s presence ag=%s torch=%s" % (
                    lf.name, a_ is not None, t_ is not None))
            if t_ is None:
                continue
            what = "1st-order grad of %s" % lf.name
            try:
                self.compare_values(what, a_, t_, check_strides=False, loose=True)
            except Mismatch as e:
                self.nearer_exact(e, g64[k] if g64 else None, a_, t_)
                raise
            p = Pair(a_, t_, "g_" + lf.name, th64=g64[k] if g64 else None)
            self.gradient_layout(what, p, root, lf)
            if A.requires_grad(a_) != t_.requires_grad:
                # PyTorch 1.13 bug: CopySlices over an empty view hands out a gradient cut
                # from the graph under create_graph (with a non-empty view, or without the
                # in-place op, it requires grad, as the library's always does):
                #   x = torch.ones(1, 3, requires_grad=True); c = x.clone(); v = c[1:];
                #   v.add_(2.); g, = torch.autograd.grad(torch.log_softmax(v.sum(0), 0).sum(),
                #   x, create_graph=True); g.requires_grad  -> False (True without add_)
                if self.inplace_on_empty_view and not t_.requires_grad:
                    raise Known("pytorch-1.13 CopySlices over an empty view: create_graph")
                raise Mismatch("%s requires_grad ag=%s torch=%s" % (
                    what, A.requires_grad(a_), t_.requires_grad))
            if t_.requires_grad:
                gp.append(p)
        if not gp:
            return
        root2 = self.weighted_root(gp)
        if root2 is None:
            return
        self.say("g2 = grad(%s, leaves, allow_unused)" % root2.name)
        th_err = ag_err = None
        try:
            g2th = torch.autograd.grad([root2.th], [lf.th for lf in leaves], allow_unused=True)
        except Exception as e:  # noqa: BLE001
            th_err = e
        try:
            g2ag = A.autograd_grad([root2.ag], [lf.ag for lf in leaves], flags=4)
        except A.AgError as e:
            ag_err = e
        if th_err is not None and ag_err is None:
            self.pytorch_double_backward_bug(str(th_err))
        if self.compare_error("2nd grad", th_err, ag_err):
            return
        g2_64 = self.shadow_grad(root2, leaves)
        for k, (lf, a_, t_) in enumerate(zip(leaves, g2ag, g2th)):
            what = "2nd-order grad of %s" % lf.name
            # PyTorch's double-backward formulas may hand out an undefined gradient where
            # ours hand out zeros, or the reverse: both mean zero (autograd.h, ag_grad)
            if t_ is None and a_ is None:
                continue
            if t_ is None:
                av = A.to_torch(a_)
                if av.numel() and av.abs().max():
                    self.pytorch_double_backward_bug("torch None")
                    raise Mismatch("%s: torch None ag=%s" % (what, av.tolist()))
                continue
            if a_ is None:
                if t_.numel() and t_.abs().max():
                    raise Mismatch("%s: ag None torch=%s" % (what, t_.tolist()))
                continue
            try:
                self.compare_values(what, a_, t_, check_strides=False, loose=True)
            except Mismatch as e:
                self.nearer_exact(e, g2_64[k] if g2_64 else None, a_, t_)
                raise
            # a second-order gradient is a sum over paths where the first-order one was,
            # and where two first-order gradients enter root2 (both read the forward graph)
            self.gradient_layout(what, Pair(a_, t_, "g2_" + lf.name), root, lf,
                                 summed=len(gp) > 1)

    def go(self):
        r = self.r
        for _ in range(r.randint(1, 3)):
            self.pool.append(self.leaf())
        for _ in range(r.randint(2, 6)):
            self.step()
        # every value again at the end: in-place ops may have changed bases and aliases
        for p in self.pool:
            self.compare_values("final %s" % p.name, p.ag, p.th, check_strides=False,
                                atol=p.atol)
        self.grads()


def run_program(seed, log, stats):
    prog = Prog(seed, stats)
    prog.log = log
    prog.go()


if __name__ == "__main__":
    sys.exit(harness.main(__doc__.split("\n")[0], {"ops": run_program}, "0:1500"))
