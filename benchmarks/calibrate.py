"""Calibrate the layer cost model of linconv._engines for this machine.

Run: python benchmarks/calibrate.py [--repeat 7] [--dtype float32]

Times the two spatial-domain layer engines (GemmEngine, DepthwiseEngine)
forward on a range of layers, fits the constants of
:func:`linconv._engines.layer_costs` by least squares (median seconds over
repeated, round-robin runs), and prints them as the lines to paste into
``linconv/_engines.py``, next to the values in use.  The model, per sample and
tap of the phase grid (``work = taps * grid * C_out``):

    gemm      = work * (GEMM_NS * C_in/groups + COPY_NS * C_in/C_out)
    depthwise = work * DEPTHWISE_NS                      (C_in/groups == 1 only)

(the GEMM's multiply-adds, and its shifted copy of every input channel per tap).

The timings are CPU seconds of one thread (BLAS and linconv's pool limited to
one thread, ``time.thread_time``), divided by the number of cores linconv
uses: on a shared, loaded machine that is far steadier than wall-clock time,
and it assumes the engines scale over the cores (they split the work; BLAS
threads).  ``--wall`` times wall-clock seconds with all threads instead.

The single-channel engines' constants (DIRECT_NS, FFT_NS) are calibrated by
``python benchmarks/bench_apply.py --methods``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys

import numpy as np

import linconv
from linconv import _engines
from _harness import cpu_race, race

# (batch, C_in, C_out, groups, spatial, kernel, stride): padding k // 2
LAYERS = [
    (8, 64, 64, 1, (56, 56), 3, 1),
    (8, 32, 32, 1, (56, 56), 3, 1),
    (8, 128, 128, 1, (28, 28), 3, 1),
    (8, 64, 128, 1, (56, 56), 3, 2),
    (8, 256, 256, 1, (14, 14), 3, 1),
    (8, 64, 64, 8, (56, 56), 3, 1),
    (8, 64, 64, 32, (56, 56), 3, 1),
    (8, 128, 128, 128, (56, 56), 3, 1),
    (8, 32, 32, 32, (112, 112), 3, 1),
    (8, 256, 256, 256, (14, 14), 3, 1),
    (8, 128, 128, 128, (56, 56), 5, 1),
    (8, 128, 128, 128, (56, 56), 3, 2),
    (8, 64, 128, 64, (28, 28), 3, 1),
    (2, 1, 1, 1, (512, 512), 3, 1),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--wall", action="store_true", help="wall-clock time, all threads")
    args = parser.parse_args(argv)
    cores = linconv.get_workers()
    if not args.wall:
        if os.environ.get("OPENBLAS_NUM_THREADS") != "1":  # BLAS reads it at import
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                       MKL_NUM_THREADS="1", LINCONV_CALIBRATE_CORES=str(cores))
            sys.exit(subprocess.call([sys.executable] + sys.argv, env=env))
        cores = int(os.environ.get("LINCONV_CALIBRATE_CORES", cores))
    with contextlib.ExitStack() as stack:
        if not args.wall:
            stack.enter_context(linconv.set_workers(1))  # one thread: CPU time is steady
        measure(args, cores)


def measure(args, cores):
    rng = np.random.default_rng(0)
    gemm_rows, gemm_times, dw_work, dw_times = [], [], [], []
    for batch, c_in, c_out, groups, spatial, k, stride in LAYERS:
        w = rng.standard_normal((c_out, c_in // groups, k, k)).astype(args.dtype)
        x = rng.standard_normal((batch, c_in) + spatial).astype(args.dtype)
        g = linconv.conv_operator(w, (c_in,) + spatial, padding=k // 2, stride=stride,
                                  groups=groups).geometry
        engines = {"gemm": _engines.GemmEngine(g, w)}
        if c_in == groups:
            engines["depthwise"] = _engines.DepthwiseEngine(g, w)
        funcs = {name: (lambda e=e: e.forward(x)) for name, e in engines.items()}
        if args.wall:
            times = race(funcs, args.repeat)
        else:
            times = {k: v / cores for k, v in cpu_race(funcs, args.repeat).items()}
        work = k * k * math.prod(engines["gemm"].plan.grid) * c_out * batch
        gemm_rows.append([work * c_in // groups, work * c_in / c_out])
        gemm_times.append(times["gemm"])
        if "depthwise" in times:
            dw_work.append(work)
            dw_times.append(times["depthwise"])
        print(f"  N{batch} {c_in}->{c_out} groups {groups} {spatial} {k}x{k} stride {stride}: "
              + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items()))
    (gemm_ns, copy_ns), *_ = np.linalg.lstsq(np.array(gemm_rows, float),
                                             np.array(gemm_times) * 1e9, rcond=None)
    depthwise_ns = float(np.dot(dw_work, dw_times) / np.dot(dw_work, dw_work)) * 1e9
    how = "wall-clock" if args.wall else f"CPU time of one thread / {cores} cores"
    print(f"\n# {args.dtype}, median of {args.repeat}, {how}")
    for name, value in (("GEMM_NS", gemm_ns), ("COPY_NS", copy_ns),
                        ("DEPTHWISE_NS", depthwise_ns)):
        print(f"{name} = {max(value, 0.0):.3g}   # in use: {getattr(_engines, name)}")


if __name__ == "__main__":
    main()
