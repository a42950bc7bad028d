"""agpy: a thin ctypes layer over libautograd.so for the differential fuzzers against PyTorch.

Nothing is loaded at import: the fuzzers call load() with the library CTest built (the path
comes from their command line), so the layer never looks outside the build it is given.
"""
import ctypes as C
import traceback

import torch

LIB = None
P = C.c_void_p
# Python exceptions raised inside hooks and custom functions: a bug of the fuzzer, not of the
# library, but the library only sees AG_ECALLBACK; the harness reports these as failures.
CALLBACK_ERRORS = []


def load(path, threads=None):
    """Opens the library at `path` (once) and declares the signatures that are not int(...)."""
    global LIB
    LIB = C.CDLL(path)
    LIB.ag_last_error.restype = C.c_char_p
    LIB.ag_status_name.restype = C.c_char_p
    LIB.ag_tensor_release.argtypes = [P]
    LIB.ag_tensor_release.restype = None
    LIB.ag_node_release.argtypes = [P]
    LIB.ag_node_release.restype = None
    LIB.ag_optimizer_release.argtypes = [P]
    LIB.ag_optimizer_release.restype = None
    LIB.ag_set_error.argtypes = [C.c_int, C.c_char_p]
    if threads is not None:
        LIB.ag_set_num_threads(int(threads))


DT = {torch.float32: 0, torch.float64: 1, torch.int64: 2, torch.bool: 3}
DT_INV = {v: k for k, v in DT.items()}
RED = {"none": 0, "mean": 1, "sum": 2}

# C signatures of the ops, one code per C parameter after the status return: o = out tensor
# (ag_tensor **), t = tensor (NULL for None), d = double, L = int64, i = int, r = reduction
# name, y = dtype, D = int64 array + count, T = tensor array + count.
SIGS = {}


def sig(names, s):
    for n in names.split():
        SIGS["ag_" + n] = s

sig("neg exp log log1p expm1 sqrt rsqrt abs sin cos tanh sigmoid relu silu", "o t")
sig("leaky_relu clamp_min clamp_max", "o t d")
sig("gelu", "o t i")
sig("softplus clamp", "o t d d")
sig("add sub mul div pow maximum minimum eq ne lt le gt ge matmul", "o t t")
sig("where linear", "o t t t")
sig("add_scalar sub_scalar rsub_scalar mul_scalar div_scalar rdiv_scalar pow_scalar rpow_scalar "
    "eq_scalar ne_scalar lt_scalar le_scalar gt_scalar ge_scalar", "o t d")
sig("sum mean max min argmax_all argmin_all t squeeze contiguous clone", "o t")
sig("sum_dims mean_dims amax amin logsumexp", "o t D i")
sig("max_dim min_dim", "o o t L i")
sig("var std", "o t D L i")
sig("norm", "o t d D i")
sig("argmax argmin", "o t L i")
sig("reshape view permute expand", "o t D")
sig("transpose flatten select", "o t L L")
sig("slice", "o t L L L L")
sig("narrow", "o t L L L")
sig("squeeze_dim unsqueeze softmax log_softmax", "o t L")
sig("to_dtype", "o t y")
sig("index_select gather", "o t L t")
sig("scatter_add", "o t L t t")
sig("masked_fill", "o t t d")
sig("cat stack", "o T L")
sig("cross_entropy", "o t t t r L d")
sig("nll_loss", "o t t t r L")
sig("mse_loss", "o t t r")
sig("binary_cross_entropy_with_logits", "o t t t t r")
sig("layer_norm", "o t D t t d")
sig("embedding", "o t t")
sig("add_ sub_ mul_ copy_", "t t")
sig("add_scalar_ mul_scalar_ fill_", "t d")
sig("zero_", "t")


class AgError(Exception):
    def __init__(self, status, msg):
        super().__init__("%s: %s" % (LIB.ag_status_name(status).decode(), msg))
        self.status = status
        self.msg = msg


class T:
    """Owning wrapper of an ag_tensor*."""
    __slots__ = ("h",)

    def __init__(self, h):
        self.h = h

    def __del__(self):
        # (LIB is None when the interpreter tears the module down before the last handle)
        if self.h and LIB is not None:
            LIB.ag_tensor_release(P(self.h))
            self.h = None

    @property
    def _as_parameter_(self):
        return P(self.h)


def check(st):
    if st != 0:
        raise AgError(st, LIB.ag_last_error().decode())


def call(fn, *args):
    s = SIGS[fn].split()
    f = getattr(LIB, fn)
    cargs = []
    outs = []
    ai = 0
    for code in s:
        if code == "o":
            o = P()
            outs.append(o)
            cargs.append(C.byref(o))
            continue
        a = args[ai]
        ai += 1
        if code == "t":
            cargs.append(P(a.h) if a is not None else P())
        elif code == "d":
            cargs.append(C.c_double(a))
        elif code == "L":
            cargs.append(C.c_int64(a))
        elif code in ("i", "r", "y"):
            if code == "r":
                a = RED[a]
            if code == "y":
                a = DT[a]
            cargs.append(C.c_int(a))
        elif code == "D":
            if a is None:
                cargs += [P(), C.c_size_t(0)]
            else:
                arr = (C.c_int64 * max(1, len(a)))(*a)
                cargs += [arr, C.c_size_t(len(a))]
        elif code == "T":
            arr = (P * max(1, len(a)))(*[x.h for x in a])
            cargs += [arr, C.c_size_t(len(a))]
        else:
            raise ValueError(code)
    assert ai == len(args), (fn, args)
    f.restype = C.c_int
    st = f(*cargs)
    check(st)
    res = [T(o.value) if o.value else None for o in outs]
    if len(res) == 0:
        return None
    if len(res) == 1:
        return res[0]
    return res


def split_like(fn, t, a, dim):
    cnt = C.c_size_t()
    check(getattr(LIB, fn + "_count")(C.byref(cnt), P(t.h), C.c_int64(a), C.c_int64(dim)))
    n = cnt.value
    arr = (P * max(1, n))()
    check(getattr(LIB, fn)(arr, C.c_size_t(n), P(t.h), C.c_int64(a), C.c_int64(dim)))
    return [T(arr[i]) for i in range(n)]


def from_torch(x):
    x = x.detach().contiguous()
    shape = (C.c_int64 * max(1, x.dim()))(*x.shape)
    o = P()
    if x.dtype == torch.bool:
        buf = bytes(x.to(torch.uint8).reshape(-1).tolist())
        data = C.create_string_buffer(buf, max(1, len(buf)))
    elif x.numel() == 0:
        data = C.create_string_buffer(8)
    else:
        data = C.c_void_p(x.data_ptr())
    check(LIB.ag_tensor_from_data(C.byref(o), data, C.c_int(DT[x.dtype]), shape,
                                  C.c_size_t(x.dim())))
    return T(o.value)


def dtype(t):
    d = C.c_int()
    check(LIB.ag_tensor_dtype(C.byref(d), P(t.h)))
    return DT_INV[d.value]


def _per_dim(t, getter):
    """t's ndim values that getter (ag_tensor_shape or ag_tensor_strides) writes."""
    n = C.c_size_t()
    check(LIB.ag_tensor_ndim(C.byref(n), P(t.h)))
    a = (C.c_int64 * 8)()
    check(getter(a, C.c_size_t(8), P(t.h)))
    return list(a[:n.value])


def shape(t):
    return _per_dim(t, LIB.ag_tensor_shape)


def strides(t):
    return _per_dim(t, LIB.ag_tensor_strides)


def to_torch(t):
    dt = dtype(t)
    sh = shape(t)
    n = 1
    for s in sh:
        n *= s
    out = torch.empty(sh, dtype=dt)
    if n:
        check(LIB.ag_tensor_copy_data(C.c_void_p(out.data_ptr()),
                                      C.c_size_t(n * out.element_size()), P(t.h)))
    return out


def requires_grad(t):
    r = C.c_int()
    check(LIB.ag_tensor_requires_grad(C.byref(r), P(t.h)))
    return bool(r.value)


def set_requires_grad(t, v):
    check(LIB.ag_tensor_set_requires_grad(P(t.h), C.c_int(int(v))))


def is_leaf(t):
    r = C.c_int()
    check(LIB.ag_tensor_is_leaf(C.byref(r), P(t.h)))
    return bool(r.value)


def grad_fn_name(t):
    n = P()
    check(LIB.ag_tensor_grad_fn(C.byref(n), P(t.h)))
    if not n.value:
        return None
    s = C.c_char_p()
    check(LIB.ag_node_name(C.byref(s), n))
    name = s.value.decode()
    LIB.ag_node_release(n)
    return name


def grad(t):
    o = P()
    check(LIB.ag_tensor_grad(C.byref(o), P(t.h)))
    return T(o.value) if o.value else None


def backward(root, g=None, flags=0):
    check(LIB.ag_backward(P(root.h), P(g.h) if g is not None else P(), C.c_uint(flags)))


def autograd_grad(outputs, inputs, flags=0, grad_outputs=None):
    no = len(outputs)
    ni = len(inputs)
    oa = (P * no)(*[o.h for o in outputs])
    ia = (P * ni)(*[i.h for i in inputs])
    ga = None
    if grad_outputs is not None:
        ga = (P * no)(*[g.h if g is not None else None for g in grad_outputs])
    res = (P * ni)()
    check(LIB.ag_grad(res, oa, ga, C.c_size_t(no), ia, C.c_size_t(ni), C.c_uint(flags)))
    return [T(res[i]) if res[i] else None for i in range(ni)]


def version(t):
    v = C.c_int64()
    check(LIB.ag_tensor_version(C.byref(v), P(t.h)))
    return v.value


# ---------------------------------------------------------------- callbacks
HOOKFN = C.CFUNCTYPE(C.c_int, C.POINTER(P), P, P)
FWDFN = C.CFUNCTYPE(C.c_int, P, C.POINTER(P), C.c_size_t, C.POINTER(P), C.c_size_t, P)
BWDFN = C.CFUNCTYPE(C.c_int, P, C.POINTER(P), C.c_size_t, C.POINTER(P), C.c_size_t, P)
FREEFN = C.CFUNCTYPE(None, P)
# The library may call a callback as long as a hook or a graph node holds it: each ctypes
# thunk stays here, under the key passed as its userdata, until the library's free_userdata
# says nothing can call it any more. (Kept for the whole process, the thunks kept their
# closures, and with them every program's tensors: 4 MB more per fuzz_defer seed.)
KEEP = {}
_next_key = [1]


@FREEFN
def _unkeep(ud):
    KEEP.pop(ud, None)


def _keep(thunks):
    """Keeps thunks until the library frees the userdata returned (a key, as a pointer)."""
    key = _next_key[0]
    _next_key[0] += 1
    KEEP[key] = thunks
    return P(key)
AG_ECALLBACK = 11


def borrowed(h):
    """Wraps a borrowed handle, taking a reference of our own."""
    check(LIB.ag_tensor_retain(P(h)))
    return T(h)


def give(t):
    """A new reference to t's handle, for out-parameters the library takes ownership of."""
    check(LIB.ag_tensor_retain(P(t.h)))
    return t.h


def _callback_status(e):
    """The status a callback returns for exception e. A library error raised by a call made
    inside the callback is passed on as PyTorch would re-raise it; any other exception is a
    bug of the fuzzer, kept for the harness to report."""
    if isinstance(e, AgError):
        LIB.ag_set_error(e.status, e.msg.encode())
        return e.status
    CALLBACK_ERRORS.append(traceback.format_exc())
    LIB.ag_set_error(AG_ECALLBACK, ("fuzzer callback raised %r" % e).encode())
    return AG_ECALLBACK


def register_hook(t, fn, flags=0):
    """fn(grad: T) -> T or None (None keeps the gradient)."""
    def cb(newp, g, ud):
        try:
            r = fn(borrowed(g))
            if r is not None:
                newp[0] = give(r)
            return 0
        except Exception as e:  # noqa: BLE001 (reported through _callback_status)
            return _callback_status(e)
    c = HOOKFN(cb)
    ud = _keep(c)
    h = C.c_uint64()
    try:
        check(LIB.ag_tensor_register_hook(C.byref(h), P(t.h), c, C.c_uint(flags), ud, _unkeep))
    except AgError:
        KEEP.pop(ud.value, None)  # (refused: the library did not take the userdata)
        raise
    return h.value


def remove_hook(t, h):
    check(LIB.ag_tensor_remove_hook(P(t.h), C.c_uint64(h)))


class Ctx:
    """The ag_function_ctx a custom function's forward and backward receive (borrowed)."""

    def __init__(self, p):
        self.p = p

    def save(self, t):
        check(LIB.ag_function_ctx_save(P(self.p), P(t.h)))

    def num_saved(self):
        n = C.c_size_t()
        check(LIB.ag_function_ctx_num_saved(C.byref(n), P(self.p)))
        return n.value

    def saved(self, i):
        o = P()
        check(LIB.ag_function_ctx_saved(C.byref(o), P(self.p), C.c_size_t(i)))
        return T(o.value)

    def needs_input_grad(self, i):
        o = C.c_int()
        check(LIB.ag_function_ctx_needs_input_grad(C.byref(o), P(self.p), C.c_size_t(i)))
        return bool(o.value)


def function_apply(inputs, n_out, name, fwd, bwd, flags=0):
    """ag_function_apply: fwd(ctx, [T]) -> [T] * n_out; bwd(ctx, [grad T]) -> [T or None]."""
    def cf(ctx, outs, no, ins, ni, ud):
        try:
            xs = [borrowed(ins[i]) if ins[i] else None for i in range(ni)]
            r = fwd(Ctx(ctx), xs)
            for i in range(no):
                outs[i] = give(r[i])
            return 0
        except Exception as e:  # noqa: BLE001
            return _callback_status(e)

    def cb(ctx, gins, ni, gouts, no, ud):
        try:
            gs = [borrowed(gouts[i]) if gouts[i] else None for i in range(no)]
            r = bwd(Ctx(ctx), gs)
            for i in range(ni):
                if r[i] is not None:
                    gins[i] = give(r[i])
            return 0
        except Exception as e:  # noqa: BLE001
            return _callback_status(e)
    f1, f2 = FWDFN(cf), BWDFN(cb)
    ud = _keep((f1, f2))
    ni = len(inputs)
    ia = (P * max(1, ni))(*[x.h if x is not None else None for x in inputs])
    oa = (P * n_out)()
    try:
        check(LIB.ag_function_apply(oa, C.c_size_t(n_out), ia, C.c_size_t(ni), name.encode(),
                                    f1, f2, C.c_uint(flags), ud, _unkeep))
    except AgError:
        KEEP.pop(ud.value, None)  # (failed: the library did not take the userdata)
        raise
    return [T(oa[i]) for i in range(n_out)]


def set_grad_enabled(v):
    return LIB.ag_set_grad_enabled(C.c_int(int(v)))


def detach(t):
    o = P()
    check(LIB.ag_tensor_detach(C.byref(o), P(t.h)))
    return T(o.value)


def retain_grad(t):
    check(LIB.ag_tensor_retain_grad(P(t.h)))


def retains_grad(t):
    o = C.c_int()
    check(LIB.ag_tensor_retains_grad(C.byref(o), P(t.h)))
    return bool(o.value)


def set_grad(t, g):
    check(LIB.ag_tensor_set_grad(P(t.h), P(g.h) if g is not None else P()))


def zero_grad(t):
    check(LIB.ag_tensor_zero_grad(P(t.h)))


def shares_storage(a, b):
    o = C.c_int()
    check(LIB.ag_tensor_shares_storage(C.byref(o), P(a.h), P(b.h)))
    return bool(o.value)


def storage_offset(t):
    o = C.c_int64()
    check(LIB.ag_tensor_storage_offset(C.byref(o), P(t.h)))
    return o.value


def like(kind, t, *extra):
    o = P()
    if kind == "full":
        check(LIB.ag_full_like(C.byref(o), P(t.h), C.c_double(extra[0])))
    elif kind in ("rand", "randn"):
        check(getattr(LIB, "ag_%s_like" % kind)(C.byref(o), P(), P(t.h)))
    else:
        check(getattr(LIB, "ag_%s_like" % kind)(C.byref(o), P(t.h)))
    return T(o.value)


class Opt:
    """Owning wrapper of an ag_optimizer*."""

    def __init__(self, h):
        self.h = h

    def __del__(self):
        if self.h and LIB is not None:
            LIB.ag_optimizer_release(P(self.h))
            self.h = None

    def step(self):
        check(LIB.ag_optimizer_step(P(self.h)))

    def zero_grad(self, none):
        check(LIB.ag_optimizer_zero_grad(P(self.h), C.c_int(int(none))))

    def set_lr(self, lr):
        check(LIB.ag_optimizer_set_lr(P(self.h), C.c_double(lr)))

    def get_lr(self):
        o = C.c_double()
        check(LIB.ag_optimizer_get_lr(C.byref(o), P(self.h)))
        return o.value


def sgd(params, lr, momentum=0, dampening=0, wd=0, nesterov=0):
    o = P()
    arr = (P * len(params))(*[p.h for p in params])
    check(LIB.ag_optimizer_sgd(C.byref(o), arr, C.c_size_t(len(params)), C.c_double(lr),
                               C.c_double(momentum), C.c_double(dampening), C.c_double(wd),
                               C.c_int(int(nesterov))))
    return Opt(o.value)


def adam(params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0, amsgrad=0, w=False):
    o = P()
    arr = (P * len(params))(*[p.h for p in params])
    f = LIB.ag_optimizer_adamw if w else LIB.ag_optimizer_adam
    check(f(C.byref(o), arr, C.c_size_t(len(params)), C.c_double(lr), C.c_double(b1),
            C.c_double(b2), C.c_double(eps), C.c_double(wd), C.c_int(int(amsgrad))))
    return Opt(o.value)


def inplace(fn, t, *args):
    f = getattr(LIB, fn)
    cargs = [P(t.h)]
    for a in args:
        if isinstance(a, T):
            cargs.append(P(a.h))
        else:
            cargs.append(C.c_double(a))
    check(f(*cargs))


def node_next(t):
    """list of (name, input_nr) of grad_fn.next_functions"""
    n = P()
    check(LIB.ag_tensor_grad_fn(C.byref(n), P(t.h)))
    if not n.value:
        return None
    k = C.c_size_t()
    check(LIB.ag_node_num_next(C.byref(k), n))
    res = []
    for i in range(k.value):
        f = P()
        nr = C.c_int64()
        check(LIB.ag_node_next(C.byref(f), C.byref(nr), n, C.c_size_t(i)))
        if f.value:
            s = C.c_char_p()
            check(LIB.ag_node_name(C.byref(s), f))
            res.append((s.value.decode(), nr.value))
            LIB.ag_node_release(f)
        else:
            res.append((None, nr.value))
    LIB.ag_node_release(n)
    return res
