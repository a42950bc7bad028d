#!/usr/bin/python3
"""Generates tests/unit/format_cases.h: tensors and the string PyTorch 1.13 prints for each.

Run with Debian's torch 1.13:
    /usr/bin/python3 tests/unit/gen_format_cases.py > tests/unit/format_cases.h
Values are written exactly (hex floats, int64 literals) so the C test rebuilds the very
tensors that PyTorch printed.
"""
import decimal
import math

import torch

torch.manual_seed(20240601)
nan, inf = math.nan, math.inf
F32, F64, I64, BOOL = torch.float32, torch.float64, torch.int64, torch.bool
AG_DTYPE = {F32: "AG_FLOAT32", F64: "AG_FLOAT64", I64: "AG_INT64", BOOL: "AG_BOOL"}

cases = []


def add(name, base, grad=0, transpose=None):
    """base: the tensor as created (contiguous); grad 1: a leaf requiring grad, 2: that leaf
    times 1.0 (MulBackward0); transpose: dims swapped after creation (and after grad 1)."""
    base = base.contiguous()
    t = base.clone()
    if grad:
        t.requires_grad_()
    if transpose:
        t = t.transpose(*transpose)
    if grad == 2:
        t = t * 1.0
    cases.append((name, base, grad, transpose, str(t)))


def q(t):
    """Large tensors get values of few bits (multiples of 1/64) to keep the data file small."""
    return (t * 64).round() / 64


def T(values, dtype=F32):
    return torch.tensor(values, dtype=dtype)


# ---- 0-d ----
for v in [2.0, -0.5, 0.0, -0.0, nan, inf, -inf, 1e-5, 123456789.0, 3.14159, 1e8, 0.00015]:
    add(f"scalar f32 {v!r}", T(v))
add("scalar f64", T(2.0, F64))
add("scalar f64 frac", T(-1.0 / 3.0, F64))
add("scalar i64", T(5, I64))
add("scalar i64 negative", T(-7, I64))
add("scalar i64 min", T(-(2**63), I64))
add("scalar bool true", T(True, BOOL))
add("scalar bool false", T(False, BOOL))
add("scalar requires_grad", T(1.5), grad=1)
add("scalar f64 requires_grad", T(2.0, F64), grad=1)
add("scalar non-leaf", T(2.0), grad=2)

# ---- 1-d: modes and widths ----
add("ints", T([1.0, 2.0, 3.0]))
add("ints negative", T([-1.0, 2.0, -30.0]))
add("fixed", T([0.1, 0.2, 0.3]))
add("randn f32", torch.randn(5))
add("randn f64", torch.randn(6, dtype=F64))
add("randn x1000", torch.randn(6) * 1000)
add("randn x1e-3", torch.randn(6) * 1e-3)
add("tiny and one", T([1e-5, 1.0]))
add("ratio > 1000 non-int", T([1.5, 10000.0]))
add("ratio > 1000 ints", T([1.0, 10000.0]))
add("ratio == 1000 ints", T([1.0, 1000.0]))
add("ratio == 1000 non-int", T([0.5, 500.0]))
add("max 1e8 ints", T([1e8, 5e7]))
add("max > 1e8 ints", T([100000008.0, 1.0]))
add("max > 1e8 non-int f64", T([100000000.5, 2.0], F64))
add("1e-4 f32 (just below)", T([1e-4, 0.5]))
add("1e-4 f64 (exact)", T([1e-4, 0.5], F64))
add("huge f64", T([1e300, -2.5e-300], F64))
add("huge ints f64", T([1e20, -3.0], F64))
add("zeros", T([0.0, 0.0, 0.0]))
add("signed zeros", T([-0.0, 0.0]))
add("neg zero with ints", T([-0.0, 1.0]))
add("neg zero with fixed", T([-0.0, 1.5]))
add("neg zero with sci", T([-0.0, 1e-6, 1.0]))
add("nan and fixed", T([0.0, nan, 1.5]))
add("nan alone", T([nan]))
add("nonfinite only", T([inf, -inf, nan]))
add("nonfinite and zero", T([0.0, nan, -inf]))
add("nonfinite with ints", T([inf, 2.0, -inf, nan]))
add("nonfinite with sci", T([1e-5, nan, 0.0, -inf]))
add("nonfinite wide", T([nan, 123.25, -inf], F64))
add("ties half-even", T([0.03125, 0.09375, 0.15625, 1.00005, 2.5e-5 * 4], F64))
add("ties sci", T([1.00005e-7, 1.23445e10, 5.0], F64))
add("rounding up width", T([9.99996, 0.5]))
add("negative width", T([-9.99996, 0.5]))
add("sci negative", T([-1.5e-7, 2.0, -3e5]))
add("sci three-digit exponent", T([1e-200, 1.0], F64))
add("i64", T([1, -2, 300], I64))
add("i64 extremes", T([-(2**63), 2**63 - 1, 0], I64))
add("i64 zeros", T([0, 0], I64))
add("bool", T([True, False], BOOL))
add("bool all true", T([True, True, True], BOOL))
add("float32 rounding", T([1 / 3, 2 / 3, 1e-3 / 3]))

# ---- 1-d: wrapping ----
add("arange 100 f32", torch.arange(100, dtype=F32))
add("randn 50 f32", torch.randn(50))
add("randn 30 f64", torch.randn(30, dtype=F64))
add("randn 40 sci", torch.randn(40) * torch.logspace(-6, 6, 40))
add("i64 arange wrap", torch.arange(-50, 50, dtype=I64))
add("i64 wide wrap", torch.randint(-(10**12), 10**12, (40,), dtype=I64))
add("bool wrap", torch.rand(40) > 0.5)
add("arange 1000 (not summarised)", torch.arange(1000, dtype=F32))
add("randn 1001 summarised", q(torch.randn(1001)))
add("randn 2000 summarised", q(torch.randn(2000)))
add("randn 2000 f64 summarised", q(torch.randn(2000, dtype=F64)))
add("i64 arange 2000 summarised", torch.arange(2000, dtype=I64))
add("bool 2000 summarised", torch.rand(2000) > 0.3)
# the hidden tiny middle would force scientific notation if it counted
add("summarised width from edges only",
    torch.cat([T([1.0, 2.0, 3.0]), T([2.0**-30] * 1000), T([4.0, 5.0, 6.0])]))
add("summarised nan in middle", torch.cat([torch.randn(3), T([nan] * 995), torch.randn(3)]))

# ---- 2-d ----
add("2x2 ints", T([[1.0, 2.0], [3.0, 4.0]]))
add("randn 3x4", torch.randn(3, 4))
add("randn 5x5 x100", torch.randn(5, 5) * 100)
add("randn 4x3 f64", torch.randn(4, 3, dtype=F64))
add("i64 2-d", torch.randint(-100, 100, (3, 5), dtype=I64))
add("bool 2-d", torch.rand(3, 4) > 0.5)
add("2-d with nan", T([[1.5, nan], [-inf, 0.0]]))
add("2-d sci", T([[1e-6, 2.0], [3.0, -4e6]]))
add("2x20 wrapping rows", torch.randn(2, 20))
add("3x30 f64 wrapping rows", torch.randn(3, 30, dtype=F64))
add("1x1", T([[7.0]]))
add("1xN", torch.randn(1, 5))
add("Nx1", torch.randn(5, 1))
add("50x50 summarised", q(torch.randn(50, 50)))
add("3x400 summarised", q(torch.randn(3, 400)))
add("400x3 summarised", q(torch.randn(400, 3)))
add("7x150 summarised", q(torch.randn(7, 150)))
add("i64 40x30 summarised", torch.randint(-1000, 1000, (40, 30), dtype=I64))
add("bool 40x40 summarised", torch.rand(40, 40) > 0.5)

# ---- 3-d, 4-d and deeper ----
add("randn 2x3x4", torch.randn(2, 3, 4))
add("i64 2x2x3", torch.randint(0, 10, (2, 2, 3), dtype=I64))
add("bool 2x2x2", torch.rand(2, 2, 2) > 0.5)
add("ints 2x2x3", torch.arange(12, dtype=F32).reshape(2, 2, 3))
add("20x10x10 summarised", q(torch.randn(20, 10, 10)))
add("9x2x60 summarised", q(torch.randn(9, 2, 60)))
add("2x2x260 summarised", q(torch.randn(2, 2, 260)))
add("3x3x20 wrapping", torch.randn(3, 3, 20))
add("randn 2x2x2x3", torch.randn(2, 2, 2, 3))
add("i64 2x3x1x2", torch.randint(-5, 5, (2, 3, 1, 2), dtype=I64))
add("8x8x4x4 summarised", q(torch.randn(8, 8, 4, 4)))
add("4-d f64 sci", torch.randn(2, 1, 2, 2, dtype=F64) * 1e5)
add("8-d", torch.randn(1, 1, 1, 1, 1, 1, 2, 3))
add("8-d long rows", torch.randn(1, 2, 1, 1, 1, 1, 1, 30) * 1e4)
add("8-d summarised", q(torch.randn(1, 1, 2, 1, 1, 1, 2, 260) * 1e3))

# ---- empty ----
add("empty f32", torch.zeros(0))
add("empty f64", torch.zeros(0, dtype=F64))
add("empty i64", torch.zeros(0, dtype=I64))
add("empty bool", torch.zeros(0, dtype=BOOL))
add("empty 0x3", torch.zeros(0, 3))
add("empty 3x0 f64", torch.zeros(3, 0, dtype=F64))
add("empty 2x0x3 i64", torch.zeros(2, 0, 3, dtype=I64))
add("empty requires_grad", torch.zeros(0), grad=1)
add("empty 0x3 f64 requires_grad", torch.zeros(0, 3, dtype=F64), grad=1)
add("empty non-leaf", torch.zeros(2, 0), grad=2)

# ---- autograd suffixes ----
add("requires_grad 1-d", torch.randn(4), grad=1)
add("requires_grad f64 2-d", torch.randn(2, 3, dtype=F64), grad=1)
add("non-leaf 2-d", torch.randn(2, 3), grad=2)
add("non-leaf f64", torch.randn(3, dtype=F64), grad=2)
add("non-leaf summarised", q(torch.randn(30, 35)), grad=2)
add("suffix wraps (f64 long row)", torch.randn(7, dtype=F64) * 10, grad=1)
add("suffix wraps (second suffix)", torch.randn(6, dtype=F64), grad=1)
add("suffix wraps (grad_fn)", torch.randn(9), grad=2)
add("suffix fits exactly", torch.arange(1.0, 16.0), grad=1)
add("suffix one too long", torch.arange(1.0, 17.0), grad=1)
add("suffix after multi-line", torch.randn(2, 9, dtype=F64), grad=2)

# ---- non-contiguous (transposed) ----
add("transpose 3x4", torch.randn(3, 4), transpose=(0, 1))
add("transpose i64", torch.randint(-9, 99, (2, 5), dtype=I64), transpose=(0, 1))
add("transpose bool", torch.rand(3, 2) > 0.5, transpose=(0, 1))
add("transpose 3-d (0,2)", torch.randn(2, 3, 4), transpose=(0, 2))
add("transpose 3-d (1,2) f64", torch.randn(2, 3, 4, dtype=F64), transpose=(1, 2))
add("transpose 35x30 summarised", q(torch.randn(35, 30)), transpose=(0, 1))
add("transpose 3x350 summarised", q(torch.randn(3, 350)), transpose=(0, 1))
add("transpose requires_grad", torch.randn(2, 3), grad=1, transpose=(0, 1))
add("transpose non-leaf", torch.randn(2, 3, dtype=F64), grad=2, transpose=(0, 1))


def lit(v, dtype):
    if dtype == I64:
        v = int(v)
        if v == -(2**63):
            return "INT64_MIN"
        return str(v) if abs(v) < 2**31 else f"INT64_C({v})"
    v = float(v)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    if v == 0:
        return "-0.0" if math.copysign(1, v) < 0 else "0.0"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    if decimal.Decimal(repr(v)) == decimal.Decimal(v):  # the short decimal is the exact value
        return repr(v)
    mant, exp = v.hex().split("p")
    return mant.rstrip("0").rstrip(".") + "p" + exp


def c_string(s):
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    lines = s.split("\n")
    parts = [f'"{ln}\\n"' for ln in lines[:-1]] + [f'"{lines[-1]}"']
    return "\n        ".join(parts)


def array(name, ctype, items):
    out, line = [f"static const {ctype} {name}[] = {{"], "   "
    for it in items:
        if len(line) + len(it) + 2 > 100:
            out.append(line)
            line = "   "
        line += " " + it + ","
    out.append(line)
    out.append("};")
    return "\n".join(out)


print("/*")
print(" * format_cases.h: GENERATED by tests/unit/gen_format_cases.py (do not edit): tensors and")
print(" * the string PyTorch 1.13 prints for each (str(t)), for tests/unit/test_format.c.")
print(" * Regenerate: /usr/bin/python3 tests/unit/gen_format_cases.py > tests/unit/format_cases.h")
print(" */")
print("#include <math.h>")
print("#include <stdint.h>")
print()
print("typedef struct format_case {")
print("    const char *name;")
print("    ag_dtype dtype;")
print("    size_t ndim;")
print("    int64_t shape[8];      /* as created, before the transpose */")
print("    int64_t transpose[2];  /* dims swapped after creation; equal: none */")
print("    int grad;              /* 1: leaf requiring grad; 2: that leaf * 1.0 (MulBackward0) */")
print("    size_t numel;")
print("    const double *f;       /* values (float and bool dtypes), row-major */")
print("    const int64_t *i;      /* values (int64) */")
print("    const char *expect;")
print("} format_case;")
print()
rows = []
for k, (name, base, grad, transpose, expect) in enumerate(cases):
    flat = base.reshape(-1).tolist()
    is_int = base.dtype == I64
    arr = "NULL"
    if flat:
        arr = f"fc{k}"
        print(array(arr, "int64_t" if is_int else "double", [lit(v, base.dtype) for v in flat]))
    shape = ", ".join(str(s) for s in base.shape) or "0"
    tr = transpose or (0, 0)
    f_arr, i_arr = ("NULL", arr) if is_int else (arr, "NULL")
    rows.append(
        f'    {{"{name}", {AG_DTYPE[base.dtype]}, {base.dim()}, {{{shape}}}, {{{tr[0]}, {tr[1]}}}, '
        f"{grad}, {len(flat)}, {f_arr}, {i_arr},\n        {c_string(expect)}}},"
    )
print()
print("static const format_case FORMAT_CASES[] = {")
print("\n".join(rows))
print("};")
