#!/usr/bin/env python3
"""torch_bench.py: PyTorch's side of the reference workloads (docs/workloads.md),
written as bench/bench.c writes them, so bench/run can set the two side by side.

usage: torch_bench.py mlp|wide|scalar|gemm ... [--threads 1,2] [--reps R] [--warmup W]
Prints, per workload and thread count (repetitions of the thread counts interleaved):
  result torch <workload> threads=<t> unit=<unit> median=<m> samples=<s1>,<s2>,...
torch.set_num_threads sets the intra-op threads; OpenBLAS (which Debian's torch calls for
matrix products, with its own thread pool) is set to the same count through its C API.
"""
import argparse
import ctypes
import statistics
import sys
import time

import torch
import torch.nn.functional as F

MLP_INNER, WIDE_INNER, WIDE_HEADS, SCALAR_N, GEMM_N = 10, 4, 32, 20000, 1024

# Seconds spent inside backward since the last reset: the backward part of a repetition,
# reported as <workload>_backward for the scaling table (as bench.c's timed_backward).
backward_seconds = [0.0]


def timed_backward(loss):
    t0 = time.perf_counter()
    loss.backward()
    backward_seconds[0] += time.perf_counter() - t0


def find_openblas():
    """OpenBLAS's openblas_set_num_threads, from the library torch loaded, or None."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "blas" in line and "/" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            setter = lib.openblas_set_num_threads
            core = lib.openblas_get_corename
            core.restype = ctypes.c_char_p
            return setter, path, core().decode()
        except (OSError, AttributeError):
            continue
    return None, None, None


torch.zeros(4, 4) @ torch.zeros(4, 4)  # loads the BLAS library
BLAS_SET_THREADS, BLAS_PATH, BLAS_CORE = find_openblas()


def set_threads(n):
    torch.set_num_threads(n)
    if BLAS_SET_THREADS:
        BLAS_SET_THREADS(n)


def mlp_setup(seed=0):
    torch.manual_seed(seed)
    sizes = [784, 512, 256, 10]
    layers = [torch.nn.Linear(sizes[i], sizes[i + 1]) for i in range(3)]  # its init
    params = [p for layer in layers for p in (layer.weight, layer.bias)]
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(params, lr=0.01)
    w1, b1, w2, b2, w3, b3 = params

    def step():
        opt.zero_grad(set_to_none=True)
        h = F.relu(F.linear(x, w1, b1))
        h = F.relu(F.linear(h, w2, b2))
        loss = F.cross_entropy(F.linear(h, w3, b3), y)
        timed_backward(loss)
        opt.step()

    def rep():
        for _ in range(MLP_INNER):
            step()

    return rep, 1e3 / MLP_INNER, False, "ms", True


def wide_setup(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(64, 256)
    t = torch.randn(64, 1)
    w1 = [torch.randn(256, 256, requires_grad=True) for _ in range(WIDE_HEADS)]
    w2 = [torch.randn(1, 256, requires_grad=True) for _ in range(WIDE_HEADS)]

    def iteration():
        for p in w1 + w2:
            p.grad = None
        loss = None
        for k in range(WIDE_HEADS):
            h = torch.tanh(0.05 * x @ w1[k].t())
            o = h @ w2[k].t()
            m = ((o - t) ** 2).mean()
            loss = m if loss is None else loss + m
        timed_backward(loss)

    def rep():
        for _ in range(WIDE_INNER):
            iteration()

    return rep, 1e3 / WIDE_INNER, False, "ms", True


def scalar_setup(seed=0):
    torch.manual_seed(seed)
    vals = torch.randn(3 * SCALAR_N).tolist()

    def rep():
        # Timed: creating the leaves, forward, backward, releasing everything.
        leaves = []
        s = torch.tensor(0.0)
        for i in range(SCALAR_N):
            a = torch.tensor(vals[3 * i], requires_grad=True)
            b = torch.tensor(vals[3 * i + 1], requires_grad=True)
            c = torch.tensor(vals[3 * i + 2], requires_grad=True)
            leaves += (a, b, c)
            s = s + torch.tanh(a * b + c)
        s.backward()
        del s, a, b, c, leaves

    return rep, 1e9 / (4 * SCALAR_N), False, "ns_per_node", False


def gemm_setup(seed=0):
    torch.manual_seed(seed)
    a = torch.randn(GEMM_N, GEMM_N, requires_grad=True)
    b = torch.randn(GEMM_N, GEMM_N, requires_grad=True)

    def rep():
        a.grad = None
        b.grad = None
        (a @ b).sum().backward()

    return rep, 3 * 2 * GEMM_N**3 * 1e-9, True, "gflops", False


def gemm_kernel_setup(seed=0):
    torch.manual_seed(seed)
    a = torch.randn(GEMM_N, GEMM_N)
    b = torch.randn(GEMM_N, GEMM_N)

    def rep():
        with torch.no_grad():
            a @ b

    return rep, 2 * GEMM_N**3 * 1e-9, True, "gflops", False


SETUPS = {"mlp": mlp_setup, "wide": wide_setup, "scalar": scalar_setup, "gemm": gemm_setup,
          "gemm_kernel": gemm_kernel_setup}


def measure(name, threads, reps, warmup):
    rep, scale, rate, unit, backward_part = SETUPS[name]()
    samples = {t: [] for t in threads}
    backward = {t: [] for t in threads}
    for r in range(-warmup, reps):
        for t in threads:
            set_threads(t)
            backward_seconds[0] = 0.0
            t0 = time.perf_counter()
            rep()
            s = time.perf_counter() - t0
            if r >= 0:
                samples[t].append(scale / s if rate else s * scale)
                backward[t].append(backward_seconds[0] * scale)
    for t in threads:
        for suffix, v in (("", samples[t]), ("_backward", backward[t])):
            if suffix and not backward_part:
                continue
            print(f"result torch {name}{suffix} threads={t} unit={unit} "
                  f"median={statistics.median(v):.6g} "
                  f"samples={','.join(f'{x:.6g}' for x in v)}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workloads", nargs="+", choices=sorted(SETUPS))
    ap.add_argument("--threads", default="1")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(f"info torch_version={torch.__version__} default_threads={torch.get_num_threads()} "
          f"blas={BLAS_PATH or 'unknown'} blas_core={BLAS_CORE or 'unknown'}", flush=True)
    for name in args.workloads:
        measure(name, threads, args.reps, args.warmup)


if __name__ == "__main__":
    sys.exit(main())
