#!/usr/bin/python3
"""fuzz_autograd: differential fuzzer of libautograd's autograd machinery against PyTorch 1.13.

Three families of random programs, each seed one program per family (--mode picks one):
  hooks   tensor hooks (recording, replacing, wrong dtype/shape), retain_grad, repeated
          backward with retain_graph/create_graph, ag_grad, .grad's values, layout and
          identity across passes, set_grad/zero_grad/requires_grad toggles between passes,
          in-place ops, detach, no_grad, custom functions inside the graph;
  custom  ag_function_apply against torch.autograd.Function: 1-3 inputs and outputs,
          outputs returned as is, as views, integral, saved tensors, backward results that
          are None, broadcast, of another dtype or of a wrong shape;
  optim   SGD, Adam and AdamW steps against torch.optim, with gradients missing, zero,
          transposed, learning-rate changes and zero_grad.
Hooks follow PyTorch 2.0's rules, as abi/autograd.h documents; where 1.13 differs the
programs avoid the case (see hooks_add_hook and hooks_run). See README.md.

usage: fuzz_autograd.py --lib build/libautograd.so [--mode hooks|custom|optim] [--seeds A:B]
"""
import random
import warnings
import sys

import torch

import agpy as A
import harness
from harness import Known, Mismatch

F32, F64 = torch.float32, torch.float64


# ---------------------------------------------------------------------- hooks, retain_grad, backward passes
# Whether the running program holds float32 values: they reach float64 results through
# casts and promotion, so every tolerance is float32's then (reset by each family).
HAS_F32 = [False]


def tol(dt):
    return (1e-5, 1e-6) if dt == F32 or HAS_F32[0] else (1e-11, 1e-12)


def cmpval(what, a, t, strides=True):
    """Compares a (agpy.T or None) with t (torch tensor or None): presence, dtype, shape,
    values, and strides where they matter (dims of size > 1, more than one element)."""
    if (a is None) != (t is None):
        raise Mismatch("%s: presence ag=%s torch=%s" % (what, a is not None, t is not None))
    if a is None:
        return
    at = A.to_torch(a)
    if at.dtype != t.dtype:
        raise Mismatch("%s: dtype ag=%s torch=%s" % (what, at.dtype, t.dtype))
    if list(at.shape) != list(t.shape):
        raise Mismatch("%s: shape ag=%s torch=%s" % (what, list(at.shape), list(t.shape)))
    td = t.detach()
    rt, at_ = tol(t.dtype)
    if not torch.allclose(at, td, rtol=rt, atol=at_, equal_nan=True):
        raise Mismatch("%s: values\n ag=%s\n torch=%s" % (what, at, td))
    if strides:
        sa = A.strides(a)
        st = list(td.stride())
        # strides of size-1 dims are irrelevant
        sa2 = [s for s, n in zip(sa, t.shape) if n != 1]
        st2 = [s for s, n in zip(st, t.shape) if n != 1]
        if t.numel() > 1 and sa2 != st2:
            raise Mismatch("%s: strides ag=%s torch=%s shape=%s" % (what, sa, st, list(t.shape)))


class V:
    """One tensor of the program, on both sides: a (agpy.T) and t (torch)."""
    __slots__ = ("a", "t", "name")

    def __init__(self, a, t, name):
        self.a, self.t, self.name = a, t, name


def both(log, desc, fa, ft):
    """Runs fa() (libautograd) and ft() (PyTorch) and requires both to fail or both to
    succeed. Returns (ra, rt, both_failed)."""
    ea = et = None
    ra = rt = None
    try:
        ra = fa()
    except A.AgError as e:
        ea = e
    try:
        rt = ft()
    except (RuntimeError, TypeError, ValueError, IndexError) as e:  # PyTorch's refusals
        et = e
    log.append("%s -> ag:%s torch:%s" % (desc, "ERR " + str(ea)[:200] if ea else "ok",
                                         "ERR " + str(et).split("\n")[0][:200] if et else "ok"))
    if (ea is None) != (et is None):
        raise Mismatch("%s: error mismatch ag=%s torch=%s" % (desc, ea, et))
    return ra, rt, ea is not None


class HookProg:
    def __init__(self, seed, log, stats):
        self.r = random.Random(seed)
        self.seed = seed
        self.log = log
        self.stats = stats
        self.vars = []
        self.hooklog_a = []
        self.hooklog_t = []
        self.summed_hooks = set()  # hooks whose tensor's gradient this pass sums over paths
        self.hooks = []   # (var, handle_a, handle_t, id)
        self.custom_none = False  # a custom function whose backward returns None ran
        self.saved_hook_grads = []   # pairs of grads stored by hooks (for identity checks)
        self.nhook = 0
        self.prev_grads = {}

    def known_pass_error(self, e):
        """Raises Known where a pass's error mismatch is documented. A PyTorch 1.13 bug, under
        its conditions: retain_grad's hook fails
        on an undefined gradient (a custom backward that returned None), in backward and in
        autograd.grad alike, where 2.0 leaves .grad unset:
          y = torch.ones(2, requires_grad=True) * 1; y.retain_grad()
          F.apply(y).sum().backward()  (F.backward returns None)
          -> RuntimeError: Expected a proper Tensor but got None ... 'self'"""
        if self.custom_none and any(v.t.retains_grad for v in self.vars) and \
                "error mismatch ag=None" in str(e) and \
                "Expected a proper Tensor but got None" in str(e):
            raise Known("pytorch-1.13 retain_grad of an undefined gradient")
        # Documented (abi/autograd.h, in-place operations): a backward through zero_ or fill_
        # of an expanded view of a tensor that requires grad gives the gradient, where
        # PyTorch 1.13's CopySlices copies it into the expanded region in place and fails:
        #   y = torch.ones(1, 3, requires_grad=True) * 1; y.expand(3, 3).zero_()
        #   y.sum().backward()  -> RuntimeError: unsupported operation: more than one element
        #   of the written-to tensor refers to a single memory location ...
        if "error mismatch ag=None" in str(e) and \
                "more than one element of the written-to tensor" in str(e):
            raise Known("documented: backward through fill_/zero_ of an expanded view")

    def leaf_hook_in_grad(self, e, ins):
        """Raises Known for the PyTorch 1.13 bug below (autograd.grad running the
        AccumulateGrad of a leaf behind an in-place op on a view) when it shows as that
        leaf's hook failing (a hook returning a wrong dtype or shape) before the .grad write
        could be seen: the failing hook was the last PyTorch called, on a leaf that is not an
        input of the call, and the library called none there (it runs no AccumulateGrad)."""
        if "error mismatch ag=None" not in str(e) or "hook 'ht' has changed" not in str(e) or \
                not self.hooklog_t:
            return
        hid = self.hooklog_t[-1][0]
        for v, _, _, h in self.hooks:
            if h == hid and self.leafy(v) and all(v is not i for i in ins) and \
                    all(x[0] != hid for x in self.hooklog_a):
                raise Known("pytorch-1.13 autograd.grad wrote a leaf's .grad")

    # ------------------------------------------------------------------ creation

    def leaf(self):
        r = self.r
        dt = r.choice([F32, F32, F64])
        HAS_F32[0] = HAS_F32[0] or dt == F32
        shp = r.choice([(3,), (2, 3), (3, 4), (2, 3, 2), (), (1, 3), (4, 1)])
        base = torch.randn(*shp, dtype=dt) if shp else torch.randn((), dtype=dt)
        layout = r.choice(["c", "c", "t", "step", "exp"])
        if layout == "t" and base.dim() == 2:
            tb = base.t().contiguous()  # storage in transposed order
            a = A.call("ag_t", A.from_torch(tb))
            t = tb.t()
        elif layout == "step" and base.dim() >= 1:
            big = torch.randn(*((base.shape[0] * 2,) + tuple(base.shape[1:])), dtype=dt)
            a = A.call("ag_slice", A.from_torch(big), 0, 0, big.shape[0], 2)
            t = big[::2]
        elif layout == "exp" and base.dim() >= 1 and 1 in base.shape:
            d = list(base.shape).index(1)
            sh = list(base.shape)
            sh[d] = 3
            a = A.call("ag_expand", A.from_torch(base), sh)
            t = base.expand(*sh)
        else:
            layout = "c"
            a = A.from_torch(base)
            t = base.clone()
        rg = r.random() < 0.85
        if rg:
            A.set_requires_grad(a, True)
            t.requires_grad_(True)
        v = V(a, t, "L%d" % len(self.vars))
        self.log.append("%s = leaf(%s, %s, %s, rg=%s)" % (v.name, list(shp), dt, layout, rg))
        self.vars.append(v)
        return v

    def fvars(self, need_rg=False):
        return [v for v in self.vars if v.t.dtype in (F32, F64) and (not need_rg or v.t.requires_grad)]

    # ------------------------------------------------------------------ graph ops
    def op(self):
        r = self.r
        src = r.choice(self.fvars())
        x = src
        k = r.choice(["exp", "tanh", "mul_s", "mul", "add", "t", "slice", "select", "unsq",
                      "sum_d", "clone", "to", "reshape", "expand", "detach", "inpl", "inpl_view",
                      "custom", "custom2", "matmul", "sq", "split", "nograd"])
        nd = x.t.dim()
        name = "v%d" % len(self.vars)
        if k == "exp":
            fa, ft, d = (lambda: A.call("ag_tanh", x.a)), (lambda: torch.tanh(x.t)), "tanh"
        elif k == "tanh":
            fa, ft, d = (lambda: A.call("ag_sin", x.a)), (lambda: torch.sin(x.t)), "sin"
        elif k == "mul_s":
            s = r.choice([2.0, -0.5, 3.0])
            fa, ft, d = (lambda: A.call("ag_mul_scalar", x.a, s)), (lambda: x.t * s), "mul_s %s" % s
        elif k == "sq":
            fa, ft, d = (lambda: A.call("ag_mul", x.a, x.a)), (lambda: x.t * x.t), "x*x"
        elif k in ("mul", "add"):
            cands = [v for v in self.fvars() if v.t.shape == x.t.shape or v.t.dim() == 0]
            y = r.choice(cands)
            fn = "ag_" + k
            tf = torch.mul if k == "mul" else torch.add
            fa, ft, d = (lambda: A.call(fn, x.a, y.a)), (lambda: tf(x.t, y.t)), "%s(%s)" % (k, y.name)
        elif k == "matmul" and nd == 2:
            cands = [v for v in self.fvars() if v.t.dim() == 2 and v.t.shape[0] == x.t.shape[1] and v.t.dtype == x.t.dtype]
            if not cands:
                return
            y = r.choice(cands)
            fa, ft, d = (lambda: A.call("ag_matmul", x.a, y.a)), (lambda: x.t @ y.t), "matmul(%s)" % y.name
        elif k == "t" and nd >= 2:
            fa, ft, d = (lambda: A.call("ag_transpose", x.a, 0, 1)), (lambda: x.t.transpose(0, 1)), "transpose"
        elif k == "slice" and nd >= 1 and x.t.shape[0] >= 2:
            st = r.choice([1, 2])
            fa, ft, d = (lambda: A.call("ag_slice", x.a, 0, 0, x.t.shape[0], st)), (lambda: x.t[::st]), "slice step %d" % st
        elif k == "select" and nd >= 1:
            i = r.randrange(x.t.shape[0])
            fa, ft, d = (lambda: A.call("ag_select", x.a, 0, i)), (lambda: x.t.select(0, i)), "select %d" % i
        elif k == "unsq":
            fa, ft, d = (lambda: A.call("ag_unsqueeze", x.a, 0)), (lambda: x.t.unsqueeze(0)), "unsqueeze"
        elif k == "sum_d" and nd >= 1:
            kd = r.choice([0, 1])
            fa, ft, d = (lambda: A.call("ag_sum_dims", x.a, [0], kd)), (lambda: x.t.sum([0], keepdim=bool(kd))), "sum0 kd=%d" % kd
        elif k == "clone":
            fa, ft, d = (lambda: A.call("ag_clone", x.a)), (lambda: x.t.clone()), "clone"
        elif k == "to":
            dt = F64 if x.t.dtype == F32 else F32
            HAS_F32[0] = HAS_F32[0] or dt == F32  # (a float64 leaf's values through float32)
            fa, ft, d = (lambda: A.call("ag_to_dtype", x.a, dt)), (lambda: x.t.to(dt)), "to %s" % dt
        elif k == "reshape":
            fa, ft, d = (lambda: A.call("ag_reshape", x.a, [-1])), (lambda: x.t.reshape(-1)), "reshape -1"
        elif k == "expand" and nd >= 1 and 1 in x.t.shape:
            sh = [3 if s == 1 else s for s in x.t.shape]
            fa, ft, d = (lambda: A.call("ag_expand", x.a, sh)), (lambda: x.t.expand(*sh)), "expand %s" % sh
        elif k == "split" and nd >= 1 and x.t.shape[0] >= 2:
            j = r.choice([0, 1])
            fa = lambda: A.split_like("ag_split", x.a, 1, 0)[j]
            ft = lambda: x.t.split(1, 0)[j]
            d = "split(1)[%d]" % j
        elif k == "nograd":
            def fa():
                prev = A.set_grad_enabled(0)
                try:
                    return A.call("ag_mul_scalar", x.a, 2.0)
                finally:
                    A.set_grad_enabled(prev)
            def ft():
                with torch.no_grad():
                    return x.t * 2.0
            d = "nograd mul 2"
        elif k == "detach":
            fa, ft, d = (lambda: A.detach(x.a)), (lambda: x.t.detach()), "detach"
        elif k == "custom":
            fa, ft, d = self.custom_pair(x)
        elif k == "custom2":
            fa, ft, d = self.custom_pair2(x)
        elif k in ("inpl", "inpl_view"):
            self.inplace(x, k == "inpl_view")
            return
        else:
            return
        ra, rt, err = both(self.log, "%s = %s.%s" % (name, x.name, d), fa, ft)
        if err:
            return
        v = V(ra, rt, name)
        self.vars.append(v)
        self.meta(v)

    def inplace(self, x, view):
        r = self.r
        s = r.choice([2.0, 0.5])
        operands = [x]
        if view and x.t.dim() >= 1:
            i = r.randrange(x.t.shape[0])
            def fa():
                va = A.call("ag_select", x.a, 0, i)
                A.inplace("ag_mul_scalar_", va, s)
            def ft():
                x.t.select(0, i).mul_(s)
            d = "%s.select(0,%d).mul_(%s)" % (x.name, i, s)
        else:
            kind = r.choice(["mul_s", "add_", "zero"])
            if kind == "mul_s":
                fa = lambda: A.inplace("ag_mul_scalar_", x.a, s)
                ft = lambda: x.t.mul_(s)
            elif kind == "zero":
                fa = lambda: A.inplace("ag_zero_", x.a)
                ft = lambda: x.t.zero_()
            else:
                cands = [v for v in self.fvars() if v.t.dim() == 0 or v.t.shape == x.t.shape]
                y = r.choice(cands)
                operands.append(y)
                fa = lambda: A.inplace("ag_add_", x.a, y.a)
                ft = lambda: x.t.add_(y.t)
                kind = "add_(%s)" % y.name
            d = "%s.%s %s" % (x.name, kind, s)
        try:
            both(self.log, d, fa, ft)
        except Mismatch as e:
            # Strides of size-1 dimensions may differ between the two sides (not compared:
            # they take no step), and PyTorch's partial-overlap check compares every stride,
            # as the library's does: a [1, 1] view of a transposed leaf and its transpose were
            # [1, 4] and [4, 1] here, (1, 1) and (1, 1) in PyTorch, so refused here only (seed
            # 411367). PyTorch refuses them as well where its strides differ so.
            if "some elements of the input tensor" in str(e) and any(
                    any(n == 1 and sa != st for n, sa, st in
                        zip(v.t.shape, A.strides(v.a), v.t.stride()))
                    for v in operands):
                raise Known("size-1 strides differ between the sides: the partial-overlap check")
            raise
        self.meta(x)
        self.poison()

    def poison(self):
        keep = []
        for v in self.vars:
            try:
                v.t.grad_fn
                keep.append(v)
            except RuntimeError as e:
                try:
                    A.call("ag_mul_scalar", v.a, 1.0)
                    raise Mismatch("%s: torch refuses use of stale view (%s) but ag allows ag_mul_scalar" % (v.name, str(e)[:80]))
                except A.AgError:
                    self.log.append("%s poisoned in both" % v.name)
        self.vars = keep

    def custom_pair(self, x):
        """MyScale: y = 3*x (clone), backward 3*g; optionally saves input, reads it."""
        r = self.r
        save = r.random() < 0.5
        ret_none = r.random() < 0.2
        self.custom_none = self.custom_none or ret_none

        def afwd(ctx, xs):
            if save:
                ctx.save(xs[0])
            return [A.call("ag_mul_scalar", xs[0], 3.0)]

        def abwd(ctx, gs):
            if save:
                ctx.saved(0)
            if ret_none:
                return [None]
            return [A.call("ag_mul_scalar", gs[0], 3.0)]

        class TF(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                if save:
                    ctx.save_for_backward(a)
                return a * 3.0

            @staticmethod
            def backward(ctx, g):
                if save:
                    ctx.saved_tensors
                if ret_none:
                    return None
                return g * 3.0
        fa = lambda: A.function_apply([x.a], 1, "MyScale", afwd, abwd)[0]
        ft = lambda: TF.apply(x.t)
        return fa, ft, "custom MyScale save=%s none=%s" % (save, ret_none)

    def custom_pair2(self, x):
        """two outputs: (x*2, x+1); backward g0*2 + g1; second output sometimes unused."""
        r = self.r
        which = r.choice([0, 1])

        def afwd(ctx, xs):
            return [A.call("ag_mul_scalar", xs[0], 2.0), A.call("ag_add_scalar", xs[0], 1.0)]

        def abwd(ctx, gs):
            assert gs[0] is not None and gs[1] is not None
            return [A.call("ag_add", A.call("ag_mul_scalar", gs[0], 2.0), gs[1])]

        class TF(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2.0, a + 1.0

            @staticmethod
            def backward(ctx, g0, g1):
                return g0 * 2.0 + g1
        fa = lambda: A.function_apply([x.a], 2, "Two", afwd, abwd)[which]
        ft = lambda: TF.apply(x.t)[which]
        return fa, ft, "custom Two[%d]" % which

    def leafy(self, v):
        """v's is_leaf on both sides, or None where both refuse to say: reading it regenerates
        a view's grad_fn, which fails for an output of a multi-output view function made
        under no_grad whose base changed in place since (seed 704232)."""
        try:
            lt = v.t.is_leaf
        except RuntimeError as e:
            try:
                A.is_leaf(v.a)
            except A.AgError:
                return None
            raise Mismatch("%s is_leaf: torch refused (%s), ag answered" % (v.name, e))
        la = A.is_leaf(v.a)
        if la != lt:
            raise Mismatch("%s is_leaf ag=%s torch=%s" % (v.name, la, lt))
        return lt

    def meta(self, v):
        ra = A.requires_grad(v.a)
        if ra != v.t.requires_grad:
            raise Mismatch("%s requires_grad ag=%s torch=%s" % (v.name, ra, v.t.requires_grad))
        self.leafy(v)
        cmpval(v.name + " value", v.a, v.t, strides=True)

    # ------------------------------------------------------------------ hooks
    def add_hook(self):
        r = self.r
        cands = self.fvars(need_rg=True)
        if not cands:
            return
        v = r.choice(cands)
        hid = self.nhook
        self.nhook += 1
        kind = r.choice(["rec", "rec", "scale", "scale", "noncontig", "clone", "keep", "wrongdt", "wrongshape", "zero"])
        if kind == "noncontig" and v.t.dim() != 2:
            kind = "scale"
        if kind == "wrongshape" and v.t.dim() == 0:
            kind = "rec"
        if not v.t.is_leaf and v.t.retains_grad and kind not in ("rec", "wrongdt", "wrongshape"):
            # abi/autograd.h, ag_tensor_retain_grad: the retained gradient is what all of the
            # tensor's hooks made of it (PyTorch 2.0's rule); in 1.13 retain_grad was one
            # more hook, blind to those registered after it. A hook added after retain_grad
            # therefore leaves the gradient as it is here (or fails in both).
            kind = "rec"
        la, lt = self.hooklog_a, self.hooklog_t
        sh_a, sh_t = self.saved_hook_grads, []

        def ha(g):
            la.append((hid, A.to_torch(g), A.strides(g)))
            if kind == "scale":
                return A.call("ag_mul_scalar", g, 2.0)
            if kind == "noncontig":
                tt = A.call("ag_contiguous", A.call("ag_t", g))
                return A.call("ag_t", A.call("ag_mul_scalar", tt, 2.0))
            if kind == "clone":
                return A.call("ag_clone", g)
            if kind == "keep":
                h = A.call("ag_mul_scalar", g, 0.5)
                sh_a.append(h)
                return h
            if kind == "wrongdt":
                return A.call("ag_to_dtype", g, F64 if A.dtype(g) == F32 else F32)
            if kind == "wrongshape":
                return A.call("ag_reshape", g, [-1, 1])
            if kind == "zero":
                return A.call("ag_mul_scalar", g, 0.0)
            return None

        def ht(g):
            if g is None:
                # PyTorch calls a Python hook with None where the gradient is undefined (a
                # custom backward returned None); the library has no gradient there and
                # calls no hook: not a call to compare
                return None
            lt.append((hid, g.detach().clone(), list(g.stride())))
            if kind == "scale":
                return g * 2.0
            if kind == "noncontig":
                return (g.t().contiguous() * 2.0).t()
            if kind == "clone":
                return g.clone()
            if kind == "keep":
                h = g * 0.5
                sh_t.append(h)
                return h
            if kind == "wrongdt":
                return g.to(F64 if g.dtype == F32 else F32)
            if kind == "wrongshape":
                return g.reshape(-1, 1)
            if kind == "zero":
                return g * 0.0
            return None
        ra, rt, err = both(self.log, "hook%d on %s kind=%s" % (hid, v.name, kind),
                           lambda: A.register_hook(v.a, ha), lambda: v.t.register_hook(ht))
        if not err:
            self.hooks.append((v, ra, rt, hid))

    def remove_hook(self):
        if not self.hooks:
            return
        i = self.r.randrange(len(self.hooks))
        v, ha, ht, hid = self.hooks.pop(i)
        both(self.log, "remove hook%d" % hid, lambda: A.remove_hook(v.a, ha), lambda: ht.remove())

    def retain(self):
        cands = [v for v in self.fvars() if self.leafy(v) is False]
        if not cands:
            return
        v = self.r.choice(cands)
        both(self.log, "%s.retain_grad()" % v.name, lambda: A.retain_grad(v.a), lambda: v.t.retain_grad())

    # ------------------------------------------------------------------ between passes
    def tweak(self):
        r = self.r
        k = r.choice(["none", "none", "setnone", "zero", "toggle", "setgrad", "setgrad_nc", "hook", "unhook", "optzero"])
        leaves = [v for v in self.vars if self.leafy(v) and v.t.dtype in (F32, F64)]
        if k == "setnone" and leaves:
            v = r.choice(leaves)
            both(self.log, "%s.grad = None" % v.name, lambda: A.set_grad(v.a, None), lambda: setattr(v.t, "grad", None))
        elif k == "zero" and leaves:
            v = r.choice(leaves)
            def zt():
                if v.t.grad is not None:
                    if v.t.grad.grad_fn is not None:
                        v.t.grad.detach_()
                    else:
                        v.t.grad.requires_grad_(False)
                    v.t.grad.zero_()
            both(self.log, "%s zero_grad" % v.name, lambda: A.zero_grad(v.a), zt)
        elif k == "toggle" and leaves:
            v = r.choice(leaves)
            nv = not v.t.requires_grad
            both(self.log, "%s.requires_grad_(%s)" % (v.name, nv), lambda: A.set_requires_grad(v.a, nv),
                 lambda: v.t.requires_grad_(nv))
        elif k in ("setgrad", "setgrad_nc") and leaves:
            v = r.choice(leaves)
            g = torch.randn(v.t.shape, dtype=v.t.dtype)
            if k == "setgrad_nc" and g.dim() == 2:
                gt = g.t().contiguous()
                ga = A.call("ag_t", A.from_torch(gt))
                g = gt.t()
            else:
                ga = A.from_torch(g)
            both(self.log, "%s.grad = %s(%s)" % (v.name, k, list(g.stride())), lambda: A.set_grad(v.a, ga),
                 lambda: setattr(v.t, "grad", g))
        elif k == "hook":
            self.add_hook()
        elif k == "unhook":
            self.remove_hook()

    # ------------------------------------------------------------------ passes
    def root_and_grad(self):
        r = self.r
        cands = [v for v in self.vars if v.t.requires_grad and v.t.dtype in (F32, F64)]
        if not cands:
            return None
        v = r.choice(cands)
        if v.t.numel() == 1 and r.random() < 0.5:
            return v, None, None, "%s (no grad arg)" % v.name
        kind = r.choice(["c", "t", "exp", "dt", "ones"])
        sh = tuple(v.t.shape)
        if kind == "t" and len(sh) == 2:
            g = torch.randn(sh[1], sh[0], dtype=v.t.dtype)
            ga = A.call("ag_t", A.from_torch(g))
            gt = g.t()
        elif kind == "exp" and len(sh) >= 1:
            g = torch.randn(sh[-1:], dtype=v.t.dtype)
            ga = A.call("ag_expand", A.from_torch(g), list(sh))
            gt = g.expand(*sh)
        elif kind == "dt":
            g = torch.randn(sh, dtype=F64 if v.t.dtype == F32 else F32)
            ga, gt = A.from_torch(g), g
        elif kind == "ones":
            g = torch.ones(sh, dtype=v.t.dtype)
            ga, gt = A.from_torch(g), g
        else:
            kind = "c"
            g = torch.randn(sh, dtype=v.t.dtype)
            ga, gt = A.from_torch(g), g
        return v, ga, gt, "%s grad=%s" % (v.name, kind)

    def check_state(self, tag):
        for v in self.vars:
            ga = A.grad(v.a)
            # (a non-leaf's .grad as stored, as PyTorch hands it out, with a warning: one set
            # while the tensor was a leaf stays when it becomes a non-leaf, say a view whose
            # base then starts to require grad)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gt = v.t.grad
            cmpval("%s %s.grad" % (tag, v.name), ga, gt)
            if ga is not None:
                if A.requires_grad(ga) != gt.requires_grad:
                    raise Mismatch("%s %s.grad requires_grad ag=%s torch=%s" % (tag, v.name, A.requires_grad(ga), gt.requires_grad))
                na, nt = A.grad_fn_name(ga), (type(gt.grad_fn).__name__ if gt.grad_fn is not None else None)
                if na != nt:
                    raise Mismatch("%s %s.grad grad_fn ag=%s torch=%s" % (tag, v.name, na, nt))
                # identity: same storage as previous grad?
                if v.name in self.prev_grads:
                    pa, pt = self.prev_grads[v.name]
                    sa = A.shares_storage(ga, pa)
                    st = gt.data_ptr() == pt.data_ptr() or (gt.untyped_storage().data_ptr() == pt.untyped_storage().data_ptr() if hasattr(gt, "untyped_storage") else gt.storage().data_ptr() == pt.storage().data_ptr())
                    if sa != st:
                        raise Mismatch("%s %s.grad identity (same storage as before) ag=%s torch=%s" % (tag, v.name, sa, st))
                self.prev_grads[v.name] = (ga, gt)
            else:
                self.prev_grads.pop(v.name, None)
        # hook logs
        la, lt = self.hooklog_a, self.hooklog_t
        ida = sorted(x[0] for x in la)
        idt = sorted(x[0] for x in lt)
        if ida != idt:
            raise Mismatch("%s hook calls ag=%s torch=%s" % (tag, [x[0] for x in la], [x[0] for x in lt]))
        # per-hook values, in order of call for that hook
        for hid in set(ida):
            ca = [x for x in la if x[0] == hid]
            ct = [x for x in lt if x[0] == hid]
            for (_, va, sa), (_, vt, st) in zip(ca, ct):
                if va.shape != vt.shape or va.dtype != vt.dtype or not torch.allclose(va, vt, *tol(vt.dtype), equal_nan=True):
                    raise Mismatch("%s hook%d grad seen ag=%s torch=%s" % (tag, hid, va, vt))
                sa2 = [s for s, n in zip(sa, vt.shape) if n != 1]
                st2 = [s for s, n in zip(st, vt.shape) if n != 1]
                if vt.numel() > 1 and sa2 != st2:
                    # A sum of contributions laid out differently is laid out by whichever
                    # the engine added first, and PyTorch's order (its ready queue) is not
                    # the library's fixed one (abi/autograd.h, ag_grad; fuzz_ops.py's
                    # gradient_layout): engine-specific, counted, not compared.
                    if hid in self.summed_hooks:
                        self.stats["summed gradients laid out differently"] += 1
                        continue
                    raise Mismatch("%s hook%d grad strides ag=%s torch=%s shape=%s" % (tag, hid, sa, st, list(vt.shape)))
        # order of hooks registered on the same tensor
        hv = {}
        for v, _, _, hid in self.hooks:
            hv[hid] = v.name
        seqa = {}
        seqt = {}
        for x in la:
            seqa.setdefault(hv.get(x[0]), []).append(x[0])
        for x in lt:
            seqt.setdefault(hv.get(x[0]), []).append(x[0])
        if seqa != seqt:
            raise Mismatch("%s per-tensor hook order ag=%s torch=%s" % (tag, seqa, seqt))
        la.clear()
        lt.clear()

    def note_summed_hooks(self, root):
        """The hooks whose tensor gets its gradient from several edges of the graph a pass
        from root walks (counted on PyTorch's graph): its hooks see a sum."""
        self.summed_hooks = set()
        fn = root.t.grad_fn
        if fn is None:
            return
        into, seen, stack = {}, {id(fn)}, [fn]
        while stack:
            n = stack.pop()
            for nxt, nr in n.next_functions:
                if nxt is None:
                    continue
                key = (id(nxt), nr)
                into[key] = into.get(key, 0) + 1
                if hasattr(nxt, "variable"):
                    into.setdefault(("leaf", id(nxt.variable)), 0)
                    into[("leaf", id(nxt.variable))] += 1
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    stack.append(nxt)
        for v, _, _, hid in self.hooks:
            t = v.t
            key = ("leaf", id(t)) if t.grad_fn is None else (id(t.grad_fn), t.output_nr)
            if into.get(key, 0) > 1:
                self.summed_hooks.add(hid)

    def run(self):
        r = self.r
        for _ in range(r.randint(1, 3)):
            self.leaf()
        if not self.fvars(need_rg=True):
            v = self.leaf()
        for _ in range(r.randint(2, 7)):
            self.op()
        # hooks/retain_grad after all in-place ops (1.13 vs 2.0 in-place/hook rules differ)
        for _ in range(r.randint(0, 4)):
            if r.random() < 0.7:
                self.add_hook()
            else:
                self.retain()
        rg = self.root_and_grad()
        if rg is None:
            return
        root, ga, gt, d = rg
        npass = r.randint(1, 3)
        for p in range(npass):
            last = p == npass - 1
            fl = 0 if (last and r.random() < 0.5) else 1
            if r.random() < 0.15:
                fl |= 2
            tfl = dict(retain_graph=bool(fl & 1) or None, create_graph=bool(fl & 2))
            if p > 0 and r.random() < 0.3:
                rg = self.root_and_grad()
                if rg:
                    root, ga, gt, d = rg
            gt2 = gt
            if gt is not None:  # fresh copy with the same strides (torch would alias a user gradient)
                if 0 in gt.stride():
                    b = gt[tuple(slice(0, 1) if st == 0 else slice(None) for st in gt.stride())]
                    gt2 = b.clone().expand(*gt.shape)
                else:
                    gt2 = torch.empty_strided(gt.shape, gt.stride(), dtype=gt.dtype)
                    gt2.copy_(gt)
            # abi/autograd.h, ag_grad: an input's hooks run before its gradient is captured
            # (PyTorch 2.0's rule; 1.13 captured first): inputs are drawn among tensors
            # without hooks. The root's and other tensors' hooks run as in 1.13.
            self.note_summed_hooks(root)
            hooked = set(id(h[0]) for h in self.hooks)
            icands = [v for v in self.vars if v.t.requires_grad and id(v) not in hooked]
            if icands and r.random() < 0.3:
                ins = r.sample(icands, r.randint(1, min(3, len(icands))))
                gfl = fl | 4
                def fa():
                    return A.autograd_grad([root.a], [v.a for v in ins], gfl, [ga] if ga is not None else None)
                def ft():
                    return torch.autograd.grad([root.t], [v.t for v in ins], [gt2] if gt2 is not None else None,
                                               allow_unused=True, **tfl)
                before = [(v, v.t.grad, None if v.t.grad is None else v.t.grad.detach().clone())
                          for v in self.vars if self.leafy(v)]
                try:
                    ra, rt, err = both(self.log, "autograd.grad pass%d root=%s inputs=%s flags=%d" % (p, d, [v.name for v in ins], gfl), fa, ft)
                except Mismatch as e:
                    self.known_pass_error(e)
                    self.leaf_hook_in_grad(e, ins)
                    raise
                # PyTorch 1.13 bug: after an in-place op on a view of a tensor that does not
                # require grad, autograd.grad (which must leave every .grad alone) runs the
                # AccumulateGrad of a leaf behind it:
                #   b = torch.zeros(4, 3); x = b[::2]; w = torch.ones(2, 3, requires_grad=True)
                #   x.add_(w); torch.autograd.grad(x, w, torch.ones(2, 3)); w.grad  -> ones
                # (into a .grad that was there, in place: the same tensor, other values; seed
                # 204038)
                if any(v.t.grad is not g or (g is not None and not torch.allclose(
                        g.detach(), c, rtol=0, atol=0, equal_nan=True)) for v, g, c in before):
                    raise Known("pytorch-1.13 autograd.grad wrote a leaf's .grad")
                if not err:
                    # (strides not compared: a result summed over paths of different layouts
                    # is laid out by the engine's order of addition; see fuzz_ops.py)
                    for v, x1, x2 in zip(ins, ra, rt):
                        cmpval("grad pass%d wrt %s" % (p, v.name), x1, x2, strides=False)
                        self.stats["gradients compared"] += 1
            else:
                try:
                    ra, rt, err = both(self.log, "backward pass%d root=%s flags=%d" % (p, d, fl),
                                       lambda: A.backward(root.a, ga, fl),
                                       lambda: torch.autograd.backward(root.t, gt2, **tfl))
                except Mismatch as e:
                    self.known_pass_error(e)
                    raise
            if err:
                self.hooklog_a.clear(); self.hooklog_t.clear()
                return
            self.check_state("after pass%d" % p)
            self.stats["backward passes compared"] += 1
            if not last:
                for _ in range(r.randint(0, 2)):
                    self.tweak()
                self.poison()
                self.check_state("after tweak%d" % p)
        # break create_graph cycles
        for v in self.vars:
            if self.leafy(v) and v.t.dtype in (F32, F64):
                try:
                    A.set_grad(v.a, None)
                except A.AgError:
                    pass



# ---------------------------------------------------------------------- custom functions
def _nograd_add(x):
    with torch.no_grad():
        x.add_(1.0)


def custom_run(seed, log, stats):
    """One custom-function program: see the module's docstring."""
    torch.set_grad_enabled(True)
    A.set_grad_enabled(1)
    HAS_F32[0] = False
    r = random.Random(seed)
    torch.manual_seed(seed)
    ni = r.randint(1, 3)
    no = r.randint(1, 3)
    shp = r.choice([(2, 3), (3,), ()])
    xs_a, xs_t = [], []
    for i in range(ni):
        dt = r.choice([F32, F64])
        HAS_F32[0] = HAS_F32[0] or dt == F32
        x = torch.randn(shp, dtype=dt)
        rg = r.random() < 0.75
        xa = A.from_torch(x)
        xt = x.clone()
        if rg:
            A.set_requires_grad(xa, 1)
            xt.requires_grad_()
        # sometimes feed a non-leaf
        if r.random() < 0.3 and rg:
            xa = A.call("ag_mul_scalar", xa, 1.5)
            xt = xt * 1.5
            log.append("x%d = (leaf %s rg=%s) * 1.5" % (i, dt, rg))
        else:
            log.append("x%d = leaf %s %s rg=%s" % (i, list(shp), dt, rg))
        xs_a.append(xa)
        xs_t.append(xt)
    # outputs spec
    outs = []
    for j in range(no):
        k = r.choice(["lin", "lin", "lin", "asis", "view", "int", "mulsave"])
        if k in ("view",) and len(shp) != 2:
            k = "lin"
        if k == "int" and len(shp) == 0:
            k = "lin"
        src = r.randrange(ni)
        coef = [r.choice([0.0, 1.0, 2.0, -1.0]) for _ in range(ni)]
        outs.append((k, src, coef))
    bwd_mode = [r.choice(["ok", "ok", "ok", "none", "bcast", "dtype", "badshape"]) for _ in range(ni)]
    save_inputs = r.random() < 0.4
    log.append("outs=%s bwd=%s save=%s" % (outs, bwd_mode, save_inputs))
    nig_a, nig_t = [], []

    def grad_in(i, gs, lib):
        """gradient for input i from grads of outputs gs (list)"""
        acc = None
        for j, (k, src, coef) in enumerate(outs):
            g = gs[j]
            if k == "int":
                continue
            if k in ("asis",):
                c = 1.0 if src == i else 0.0
            elif k == "view":
                c = 1.0 if src == i else 0.0
                if c:
                    g = lib["t"](g)
            elif k == "mulsave":
                c = 2.0 if src == i else 0.0
            else:
                c = coef[i]
            if c == 0.0:
                continue
            term = lib["muls"](g, c)
            acc = term if acc is None else lib["add"](acc, term)
        return acc

    LA = {"t": lambda g: A.call("ag_t", g), "muls": lambda g, c: A.call("ag_mul_scalar", g, c),
          "add": lambda a, b: A.call("ag_add", a, b), "zeros": lambda x: A.like("zeros", x)}
    LT = {"t": lambda g: g.t(), "muls": lambda g, c: g * c, "add": lambda a, b: a + b,
          "zeros": lambda x: torch.zeros_like(x)}

    def fix(i, g, lib, xs_shape_like, is_a):
        m = bwd_mode[i]
        if m == "none":
            return None
        if g is None:
            return None
        if m == "bcast":
            # return a gradient of a broadcast shape (1, *shape): should be summed back
            return A.call("ag_unsqueeze", g, 0) if is_a else g.unsqueeze(0)
        if m == "dtype":
            return A.call("ag_to_dtype", g, F64 if A.dtype(g) == F32 else F32) if is_a else g.to(F64 if g.dtype == F32 else F32)
        if m == "badshape":
            return A.call("ag_reshape", g, [-1, 1]) if is_a else g.reshape(-1, 1)
        return g

    def afwd(ctx, xs):
        nig_a.append([ctx.needs_input_grad(i) for i in range(ni)])
        if save_inputs:
            for x in xs:
                ctx.save(x)
        res = []
        for k, src, coef in outs:
            x = xs[src]
            if k == "asis":
                res.append(x)
            elif k == "view":
                res.append(A.call("ag_t", x))
            elif k == "int":
                res.append(A.call("ag_gt_scalar", x, 0.0))
            elif k == "mulsave":
                res.append(A.call("ag_mul_scalar", x, 2.0))
            else:
                acc = A.call("ag_mul_scalar", xs[0], coef[0])
                for i in range(1, ni):
                    acc = A.call("ag_add", acc, A.call("ag_mul_scalar", xs[i], coef[i]))
                res.append(acc)
        return res

    def abwd(ctx, gs):
        if save_inputs:
            for i in range(ctx.num_saved()):
                ctx.saved(i)
        res = []
        for i in range(ni):
            g = grad_in(i, gs, LA)
            if g is None:
                g = LA["zeros"](ctx_x_a[i])
            res.append(fix(i, g, LA, None, True))
        return res

    class Fz(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            nig_t.append(list(ctx.needs_input_grad))
            if save_inputs:
                ctx.save_for_backward(*xs)
            res = []
            for k, src, coef in outs:
                x = xs[src]
                if k == "asis":
                    res.append(x)
                elif k == "view":
                    res.append(x.t())
                elif k == "int":
                    res.append(x > 0)
                elif k == "mulsave":
                    res.append(x * 2.0)
                else:
                    acc = xs[0] * coef[0]
                    for i in range(1, ni):
                        acc = acc + xs[i] * coef[i]
                    res.append(acc)
            return tuple(res)

        @staticmethod
        def backward(ctx, *gs):
            if save_inputs:
                ctx.saved_tensors
            res = []
            for i in range(ni):
                g = grad_in(i, gs, LT)
                if g is None:
                    g = torch.zeros_like(ctx_x_t[i])
                res.append(fix(i, g, LT, None, False))
            return tuple(res)

    ctx_x_a = [A.detach(x) for x in xs_a]
    ctx_x_t = [x.detach() for x in xs_t]
    ya, yt, err = both(log, "apply", lambda: A.function_apply(xs_a, no, "Fz", afwd, abwd),
                       lambda: Fz.apply(*xs_t))
    if err:
        return
    if not isinstance(yt, tuple):
        yt = (yt,)
    if nig_a != nig_t:
        raise Mismatch("needs_input_grad fwd ag=%s torch=%s" % (nig_a, nig_t))
    stats["custom functions compared"] += 1
    for j in range(no):
        cmpval("y%d" % j, ya[j], yt[j])
        ra, rt = A.requires_grad(ya[j]), yt[j].requires_grad
        if ra != rt:
            raise Mismatch("y%d requires_grad ag=%s torch=%s" % (j, ra, rt))
        na = A.grad_fn_name(ya[j])
        nt = type(yt[j].grad_fn).__name__ if yt[j].grad_fn is not None else None
        if na != nt:
            raise Mismatch("y%d grad_fn ag=%s torch=%s" % (j, na, nt))
        if A.is_leaf(ya[j]) != yt[j].is_leaf:
            raise Mismatch("y%d is_leaf ag=%s torch=%s" % (j, A.is_leaf(ya[j]), yt[j].is_leaf))
        if yt[j].grad_fn is not None:
            nn_a = A.node_next(ya[j])
            nn_t = [(type(f).__name__ if f is not None else None, nr) for f, nr in yt[j].grad_fn.next_functions]
            if nn_a != nn_t:
                raise Mismatch("y%d next_functions ag=%s torch=%s" % (j, nn_a, nn_t))
    # optional in-place on an output
    if r.random() < 0.3:
        j = r.randrange(no)
        both(log, "y%d.mul_(2)" % j, lambda: A.inplace("ag_mul_scalar_", ya[j], 2.0), lambda: yt[j].mul_(2.0))
    # optional in-place on a saved input
    if r.random() < 0.15:
        i = r.randrange(ni)
        both(log, "x%d.add_(1) (no_grad)" % i, lambda: (A.set_grad_enabled(0), A.inplace("ag_add_scalar_", xs_a[i], 1.0), A.set_grad_enabled(1)),
             lambda: _nograd_add(xs_t[i]))
        torch.set_grad_enabled(True)
        A.set_grad_enabled(1)
    # loss
    ws = [torch.randn(shp if outs[j][0] != "view" else tuple(reversed(shp)), dtype=torch.float64) for j in range(no)]
    used = [j for j in range(no) if yt[j].requires_grad and r.random() < 0.8]
    if not used:
        return
    log.append("loss uses %s" % used)

    def lossa():
        acc = None
        for j in used:
            term = A.call("ag_sum", A.call("ag_mul", ya[j], A.from_torch(ws[j])))
            acc = term if acc is None else A.call("ag_add", acc, term)
        return acc

    def losst():
        acc = None
        for j in used:
            term = (yt[j] * ws[j]).sum()
            acc = term if acc is None else acc + term
        return acc
    la, lt, err = both(log, "loss", lossa, losst)
    if err:
        return
    npass = r.randint(1, 2)
    for p in range(npass):
        fl = 1 if (p < npass - 1 or r.random() < 0.3) else 0
        if r.random() < 0.2:
            fl |= 2
        _, _, err = both(log, "backward%d flags=%d" % (p, fl), lambda: A.backward(la, None, fl),
                         lambda: lt.backward(retain_graph=bool(fl & 1) or None, create_graph=bool(fl & 2)))
        if err:
            return
        for i in range(ni):
            if xs_t[i].is_leaf:
                cmpval("pass%d x%d.grad" % (p, i), A.grad(xs_a[i]), xs_t[i].grad)
                stats["gradients compared"] += 1
    for i in range(ni):
        if xs_t[i].is_leaf:
            A.set_grad(xs_a[i], None)



# ---------------------------------------------------------------------- optimizers
def ulps(a, b):
    """The largest distance between a and b in units in the last place."""
    if a.dtype == F32:
        ia = a.contiguous().view(torch.int32).to(torch.int64)
        ib = b.contiguous().view(torch.int32).to(torch.int64)
    else:
        ia = a.contiguous().view(torch.int64)
        ib = b.contiguous().view(torch.int64)
    bits = 32 if a.dtype == F32 else 64
    if bits == 32:
        ia = torch.where(ia < 0, -(ia & 0x7fffffff), ia)
        ib = torch.where(ib < 0, -(ib & 0x7fffffff), ib)
        return (ia - ib).abs().max().item() if a.numel() else 0
    else:
        # float64: use float comparisons relative to spacing
        sp = torch.abs(b).clamp_min(1e-300) * 2.0 ** -52
        return ((a - b).abs() / sp).max().item() if a.numel() else 0


def opt_cmp(what, a, t, stats):
    """Equal, or within 4 ulp (the library computes PyTorch's formulas, not necessarily in
    PyTorch's order of rounding; counted apart so that drift shows in the summary)."""
    at = A.to_torch(a)
    tt = t.detach()
    if at.shape != tt.shape or at.dtype != tt.dtype:
        raise Mismatch("%s shape/dtype ag=%s %s torch=%s %s" % (what, at.shape, at.dtype, tt.shape, tt.dtype))
    if torch.equal(at, tt):
        stats["optimizer values exact"] += 1
        return
    nan_a, nan_t = torch.isnan(at), torch.isnan(tt)
    if not torch.equal(nan_a, nan_t):
        raise Mismatch("%s NaN pattern ag=%s torch=%s" % (what, at, tt))
    u = ulps(torch.where(nan_a, torch.zeros_like(at), at), torch.where(nan_t, torch.zeros_like(tt), tt))
    if u <= 4:
        stats["optimizer values within 4 ulp"] += 1
        return
    raise Mismatch("%s values (%.1f ulp)\n ag=%s\n torch=%s\n diff=%s" % (what, u, at, tt, at - tt))


def optim_run(seed, log, stats):
    """One optimizer program: see the module's docstring."""
    r = random.Random(seed)
    torch.manual_seed(seed)
    kind = r.choice(["sgd", "adam", "adamw"])
    n = r.randint(1, 3)
    pa, pt = [], []
    for i in range(n):
        dt = r.choice([F32, F32, F64])
        shp = r.choice([(3,), (2, 3), (4, 2), (), (5,)])
        base = torch.randn(shp, dtype=dt) * r.choice([1.0, 10.0, 1e-3])
        lay = "c"
        if len(shp) == 2 and r.random() < 0.3:
            tb = base.t().contiguous()
            a = A.call("ag_t", A.from_torch(tb))
            t = tb.t().clone(memory_format=torch.preserve_format)
            lay = "t"
        else:
            a = A.from_torch(base)
            t = base.clone()
        A.set_requires_grad(a, True)
        t.requires_grad_(True)
        pa.append(a)
        pt.append(t)
        log.append("p%d %s %s %s" % (i, list(shp), dt, lay))
    if kind == "sgd":
        lr = r.choice([0.1, 0.01, 1.0, 0.0])
        mom = r.choice([0.0, 0.0, 0.9, 0.5])
        damp = r.choice([0.0, 0.0, 0.1]) 
        wd = r.choice([0.0, 0.0, 0.01, 0.5])
        nest = mom > 0 and damp == 0 and r.random() < 0.5
        log.append("SGD lr=%s mom=%s damp=%s wd=%s nest=%s" % (lr, mom, damp, wd, nest))
        oa = A.sgd(pa, lr, mom, damp, wd, nest)
        ot = torch.optim.SGD(pt, lr=lr, momentum=mom, dampening=damp, weight_decay=wd, nesterov=nest)
    else:
        lr = r.choice([1e-3, 0.1, 0.01])
        b1 = r.choice([0.9, 0.5, 0.0])
        b2 = r.choice([0.999, 0.9, 0.99])
        eps = r.choice([1e-8, 1e-3, 1e-6])
        wd = r.choice([0.0, 0.01, 0.1]) if kind == "adam" else r.choice([1e-2, 0.0, 0.5])
        ams = r.random() < 0.4
        log.append("%s lr=%s b=(%s,%s) eps=%s wd=%s ams=%s" % (kind, lr, b1, b2, eps, wd, ams))
        oa = A.adam(pa, lr, b1, b2, eps, wd, ams, w=(kind == "adamw"))
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        ot = cls(pt, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=ams)
    nsteps = r.randint(1, 6)
    for s in range(nsteps):
        for i in range(n):
            c = r.random()
            if c < 0.15:
                # no grad this step
                A.set_grad(pa[i], None)
                pt[i].grad = None
                log.append("step%d p%d grad None" % (s, i))
                continue
            g = torch.randn(pt[i].shape, dtype=pt[i].dtype) * r.choice([1.0, 1e-3, 100.0])
            if c < 0.25:
                g = torch.zeros_like(g)
            if g.dim() == 2 and r.random() < 0.3:
                gtc = g.t().contiguous()
                ga = A.call("ag_t", A.from_torch(gtc))
                gt = gtc.t()
            else:
                ga = A.from_torch(g)
                gt = g.clone()
            A.set_grad(pa[i], ga)
            pt[i].grad = gt
        if r.random() < 0.15:
            nl = r.choice([0.05, 0.001, 0.5])
            oa.set_lr(nl)
            for grp in ot.param_groups:
                grp["lr"] = nl
            log.append("set lr %s" % nl)
        log.append("step %d" % s)
        oa.step()
        with torch.no_grad():
            ot.step()
        for i in range(n):
            opt_cmp("step%d p%d" % (s, i), pa[i], pt[i], stats)
        if r.random() < 0.2:
            sn = r.random() < 0.5
            oa.zero_grad(sn)
            ot.zero_grad(set_to_none=sn)
            log.append("zero_grad(set_to_none=%s)" % sn)
            for i in range(n):
                ga = A.grad(pa[i])
                if (ga is None) != (pt[i].grad is None):
                    raise Mismatch("zero_grad presence p%d" % i)
                if ga is not None:
                    opt_cmp("zero_grad p%d grad" % i, ga, pt[i].grad, stats)



def hooks_run(seed, log, stats):
    """One hooks program: see the module's docstring."""
    torch.manual_seed(seed)
    HAS_F32[0] = False
    HookProg(seed, log, stats).run()


FAMILIES = {"hooks": hooks_run, "custom": custom_run, "optim": optim_run}

if __name__ == "__main__":
    sys.exit(harness.main(__doc__.split("\n")[0], FAMILIES, "0:1000"))
