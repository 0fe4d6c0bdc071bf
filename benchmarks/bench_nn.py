"""A convolution layer as a linconv operator against torch on the CPU.

Run: python benchmarks/bench_nn.py [--repeat 7]

Batch 8, 64 -> 64 channels, 56x56, 3x3 kernel, padding 1 (a ResNet layer):
forward (torch conv2d) and adjoint (torch conv_transpose2d, which is the
transpose of the same matrix) in float32 and float64, round-robin in one run,
torch using all its CPU threads.  Also the build time of that layer's sparse
matrix (64*56*56 = 200,704 rows, about 115 million entries).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import linconv
from _harness import print_table, race


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-matrix", action="store_true")
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    rows = []
    for dtype in ("float32", "float64"):
        w = rng.standard_normal((64, 64, 3, 3)).astype(dtype) / 24
        x = rng.standard_normal((8, 64, 56, 56)).astype(dtype)
        op = linconv.conv_operator(w, x.shape[1:], padding=1)
        tw, tx = torch.from_numpy(w), torch.from_numpy(x)
        with torch.inference_mode():
            times = race({
                "linconv fwd": lambda: op.apply(x),
                "torch conv2d": lambda: F.conv2d(tx, tw, padding=1),
                "linconv adj": lambda: op.T.apply(x),
                "torch conv_transpose2d": lambda: F.conv_transpose2d(tx, tw, padding=1),
            }, args.repeat)
            check = np.abs(op.apply(x) - F.conv2d(tx, tw, padding=1).numpy()).max()
        for direction, peer in (("fwd", "torch conv2d"), ("adj", "torch conv_transpose2d")):
            ours = times[f"linconv {direction}"]
            rows.append([dtype, direction, op.method, f"{ours * 1e3:.1f}",
                         f"{peer} {times[peer] * 1e3:.1f}", f"{ours / times[peer]:.2f}",
                         f"{check:.1e}"])
    print(f"batch 8, 64->64 channels, 56x56, 3x3, padding 1; median of {args.repeat}; "
          f"torch threads {torch.get_num_threads()}")
    print_table(["dtype", "dir", "method", "linconv ms", "torch ms", "ratio", "max |diff|"], rows)
    if not args.skip_matrix:
        w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        start = time.perf_counter()
        A = linconv.conv_matrix(w, (64, 56, 56), padding=1)
        seconds = time.perf_counter() - start
        print(f"\nconv_matrix of the layer (float32): {A.shape[0]:,} x {A.shape[1]:,}, "
              f"{A.nnz:,} entries, built in {seconds:.2f} s ({A.nnz / seconds / 1e6:.0f} M/s)")


if __name__ == "__main__":
    main()
