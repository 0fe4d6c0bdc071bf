"""Convolution layers as linconv operators against torch on the CPU.

Run: python benchmarks/bench_nn.py [--repeat 9] [--dtype float32 float64] [--case NAME ...]
     [--baseline DIR] [--cpu]

Every layer case of issue 13, forward and adjoint, float32 and float64, in
one run.  Each row races linconv (``method="auto"``) against the torch call
computing the same map, round-robin (so drift in the machine's load hits both
alike), and reports medians and the ratio linconv / torch (below 1: linconv
is faster).  torch runs with as many threads as linconv uses.  The adjoint of
a convolution is torch's transposed convolution with the same weight, and the
adjoint of a transposed convolution is the convolution.

Cases:

- ``conv``: batch 8, 64 -> 64 channels, 56x56, 3x3, padding 1 (a ResNet layer),
- ``conv_transpose``: batch 8, 64 -> 64 channels, 28x28 -> 56x56, 3x3, stride 2,
  padding 1, output_padding 1 (a decoder's upsampling layer),
- ``depthwise``: batch 8, 128 channels, 56x56, 3x3, groups 128, padding 1,
- ``depthwise_x2``: batch 8, 64 -> 128 channels, 56x56, 3x3, groups 64 (depth multiplier 2),
- ``single``: one channel, 1024x1024, 5x5, stride 2, dilation 2, padding 4.

``--baseline DIR`` also races another copy of linconv (the package in
``DIR/linconv``, e.g. ``git archive <commit> linconv | tar -x -C DIR``) in the same
round-robin, for before/after tables from one run.

``--cpu`` measures CPU seconds of one thread instead (linconv, BLAS and torch
limited to one thread, ``time.thread_time``): on a shared, overloaded machine
wall-clock times of multi-threaded code mostly measure the scheduler, while
CPU time per core stays steady.

For the dense layers the table also shows numpy's bare matrix product with
the layer's multiply-adds and nothing else (``BLAS``): the floor of any
GEMM-based engine on this BLAS, against the whole torch layer.  For the
depthwise layers ``BLAS`` is the bare BLAS ``axpy`` passes of the multiply-adds
(one per tap and channel, on rows already in place): the floor of any engine
made of numpy and BLAS calls, since neither has a fused stencil with a weight
per channel.

``--skip-matrix`` skips the build time of the ResNet layer's sparse matrix
(64*56*56 = 200,704 rows, about 115 million entries).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

import linconv
from _harness import cpu_race, print_table, race

# name -> (batch, C_in, C_out, spatial, kernel, keyword arguments, transposed)
CASES = {
    "conv": (8, 64, 64, (56, 56), (3, 3), dict(padding=1), False),
    "conv_transpose": (8, 64, 64, (28, 28), (3, 3),
                       dict(stride=2, padding=1, output_padding=1), True),
    "depthwise": (8, 128, 128, (56, 56), (3, 3), dict(padding=1, groups=128), False),
    "depthwise_x2": (8, 64, 128, (56, 56), (3, 3), dict(padding=1, groups=64), False),
    "single": (1, 1, 1, (1024, 1024), (5, 5), dict(stride=2, dilation=2, padding=4), False),
}


def load_baseline(directory):
    """The linconv package in ``directory/linconv``, imported as ``linconv_baseline``."""
    import importlib.util
    import pathlib
    import sys

    root = pathlib.Path(directory) / "linconv"
    spec = importlib.util.spec_from_file_location(
        "linconv_baseline", root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["linconv_baseline"] = module
    spec.loader.exec_module(module)
    return module


def layer(name, dtype, rng, lib=linconv):
    """(operator, torch forward, torch adjoint, x, y) for one case."""
    import torch
    import torch.nn.functional as F

    batch, c_in, c_out, spatial, kernel, kw, transposed = CASES[name]
    groups = kw.get("groups", 1)
    conv_kw = {k: v for k, v in kw.items() if k != "output_padding"}
    if transposed:  # weight (C_in, C_out // groups, *k)
        w = rng.standard_normal((c_in, c_out // groups) + kernel)
        op = lib.conv_transpose_operator(w.astype(dtype), (c_in,) + spatial, **kw)
        tw = torch.from_numpy(w.astype(dtype))
        fwd = lambda t: F.conv_transpose2d(t, tw, **kw)
        adj = lambda t: F.conv2d(t, tw, **conv_kw)
    else:
        w = rng.standard_normal((c_out, c_in // groups) + kernel)
        op = lib.conv_operator(w.astype(dtype), (c_in,) + spatial, **kw)
        tw = torch.from_numpy(w.astype(dtype))
        fwd = lambda t: F.conv2d(t, tw, **conv_kw)
        # torch's output_padding recovers the input size the stride rounds away
        s, p, d = (kw.get(k, v) for k, v in (("stride", 1), ("padding", 0), ("dilation", 1)))
        extra = tuple(n - ((m - 1) * s - 2 * p + d * (k - 1) + 1) for n, m, k
                      in zip(spatial, op.output_shape[1:], kernel))
        adj = lambda t: F.conv_transpose2d(t, tw, output_padding=extra, **conv_kw)
    x = rng.standard_normal((batch,) + op.input_shape).astype(dtype)
    y = rng.standard_normal((batch,) + op.output_shape).astype(dtype)
    return op, fwd, adj, x, y


def bare_gemms(name, op, dtype):
    """numpy's matmul with the layer's multiply-adds and nothing else, per direction:
    ``(M, K) @ (K, N)`` with ``M`` output channels, ``N = batch * output samples`` and
    ``K`` = multiply-adds / (M N) (the floor of any GEMM-based engine on this BLAS)."""
    batch, c_in, c_out, spatial, kernel, kw, transposed = CASES[name]
    conv_in, conv_out = (op.output_shape, op.input_shape) if transposed else \
        (op.input_shape, op.output_shape)  # the convolution's shapes (C, *spatial)
    macs = batch * int(np.prod(conv_out)) * conv_in[0] * int(np.prod(kernel))
    funcs = {}
    for d, out_shape in (("fwd", op.output_shape), ("adj", op.input_shape)):
        m, n = out_shape[0], batch * int(np.prod(out_shape[1:]))
        a = np.ones((m, round(macs / (m * n))), dtype=dtype)
        b, c = np.ones((a.shape[1], n), dtype=dtype), np.empty((m, n), dtype=dtype)
        funcs[f"BLAS {d}"] = lambda a=a, b=b, c=c: np.matmul(a, b, out=c)
    return funcs


def bare_axpys(name, op, dtype):
    """The depthwise layers' multiply-adds as bare BLAS ``axpy`` passes and nothing else, per
    direction: for each output channel, one pass per tap over a row of ``batch * output
    samples`` already in place (no placement of the input, no crop of the output), in
    pieces that stay in the L2 cache.  This is the floor of any engine built from numpy
    and BLAS calls: numpy and scipy have no fused stencil with a weight per channel."""
    from scipy.linalg import blas
    batch, c_in, c_out, spatial, kernel, kw, transposed = CASES[name]
    axpy = getattr(blas, {"float32": "saxpy", "float64": "daxpy"}[dtype])
    taps, piece = int(np.prod(kernel)), 1 << 15
    funcs = {}
    for d, out_shape in (("fwd", op.output_shape), ("adj", op.input_shape)):
        rows = (c_out if d == "fwd" else c_in) * (1 if d == "fwd" else c_out // c_in)
        n = batch * int(np.prod(out_shape[1:]))
        x, y = np.ones(n + taps, dtype=dtype), np.empty(n, dtype=dtype)

        def passes(x=x, y=y, n=n, rows=rows):
            for _ in range(rows):
                for c0 in range(0, n, piece):
                    k = min(piece, n - c0)
                    np.multiply(x[c0:c0 + k], 0.5, out=y[c0:c0 + k])
                    for t in range(1, taps):
                        axpy(x, y, k, 0.5, c0 + t, 1, c0, 1)
        funcs[f"BLAS {d}"] = passes
    return funcs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--case", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--baseline", help="directory holding another linconv to race")
    parser.add_argument("--cpu", action="store_true", help="CPU time of one thread")
    args = parser.parse_args(argv)
    if args.cpu and os.environ.get("OPENBLAS_NUM_THREADS") != "1":  # read at import
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        sys.exit(subprocess.call([sys.executable] + sys.argv, env=env))
    baseline = load_baseline(args.baseline) if args.baseline else None
    import torch

    threads = 1 if args.cpu else linconv.get_workers()
    with contextlib.ExitStack() as stack:
        if args.cpu:
            stack.enter_context(linconv.set_workers(1))  # one thread: CPU time is steady
            if baseline is not None:
                stack.enter_context(baseline.set_workers(1))
        torch.set_num_threads(threads)
        run(args, baseline, threads, cpu_race if args.cpu else race)


def run(args, baseline, threads, timer):
    import torch
    rng = np.random.default_rng(0)
    rows = []
    for name in args.case:
        for dtype in args.dtype:
            state = rng.bit_generator.state
            op, fwd, adj, x, y = layer(name, dtype, rng)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            funcs = {"linconv fwd": lambda: op.apply(x), "torch fwd": lambda: fwd(tx),
                     "linconv adj": lambda: op.H.apply(y), "torch adj": lambda: adj(ty)}
            if baseline is not None:
                rng.bit_generator.state = state
                old = layer(name, dtype, rng, baseline)[0]
                funcs.update({"before fwd": lambda: old.apply(x),
                              "before adj": lambda: old.H.apply(y)})
            groups = CASES[name][5].get("groups", 1)
            if groups == 1 and CASES[name][1] > 1:
                funcs.update(bare_gemms(name, op, dtype))
            elif groups == CASES[name][1] > 1:  # depthwise
                funcs.update(bare_axpys(name, op, dtype))
            with torch.inference_mode():
                times = timer(funcs, args.repeat)
                errors = {}
                for d, ours, theirs in (("fwd", op.apply(x), fwd(tx).numpy()),
                                        ("adj", op.H.apply(y), adj(ty).numpy())):
                    errors[d] = np.abs(ours - theirs).max() / np.abs(theirs).max()
            plan = getattr(op, "plan", None)
            engine = getattr(plan, "engine", op.method)
            for d in ("fwd", "adj"):
                ours, theirs = times[f"linconv {d}"], times[f"torch {d}"]
                before = ([f"{times[f'before {d}'] * 1e3:.1f}",
                           f"{times[f'before {d}'] / theirs:.2f}"] if baseline else [])
                blas = times.get(f"BLAS {d}")
                blas = [f"{blas * 1e3:.1f}", f"{blas / theirs:.2f}"] if blas else ["", ""]
                rows.append([name, dtype, d, engine, f"{ours * 1e3:.1f}", f"{theirs * 1e3:.1f}",
                             f"{ours / theirs:.2f}", *before, *blas, f"{errors[d]:.1e}"])
    print(f"median of {args.repeat} round-robin runs; linconv and torch threads {threads}"
          + ("; CPU time of one thread" if args.cpu else "; wall-clock time"))
    print_table(["case", "dtype", "dir", "engine", "linconv ms", "torch ms", "ratio",
                 *(["before ms", "ratio before"] if baseline else []), "BLAS ms", "BLAS / torch",
                 "rel. max |diff|"], rows)
    if not args.skip_matrix:
        w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        start = time.perf_counter()
        A = linconv.conv_matrix(w, (64, 56, 56), padding=1)
        seconds = time.perf_counter() - start
        print(f"\nconv_matrix of the layer (float32): {A.shape[0]:,} x {A.shape[1]:,}, "
              f"{A.nnz:,} entries, built in {seconds:.2f} s ({A.nnz / seconds / 1e6:.0f} M/s)")


if __name__ == "__main__":
    main()
