"""operator_norm and singular_values of a layer, beside the dense SVD they replace.

Run: python benchmarks/bench_tools.py [--quick] [--dense-8x8]

(--quick skips the svds run at 56x56, which takes minutes; --dense-8x8 adds the
4096 x 4096 dense SVD.)

The issue's case: a 64 -> 64 channel 3x3 layer on 56x56 (N = 200,704 inputs).
Its dense matrix (200,704^2 float64 = 322 GB) cannot be formed, so the dense SVD
is timed on the same layer at small images where it fits (4x4, 6x6, and 8x8 with --dense-8x8) and
extrapolated as O(N^3) from the largest; linconv is timed at those sizes too
(ratios in the same run) and at 56x56.

- circular padding: exact, one FFT of the weight + one small SVD per frequency;
- zero padding: scipy's svds (ARPACK) on the exact matrix-free operator.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import linconv
from _harness import print_table, race


def layer(size, padding_mode, channels=64, seed=0):
    w = np.random.default_rng(seed).standard_normal((channels, channels, 3, 3)) / 24
    return w, linconv.conv_operator(w, (channels, size, size), padding=1,
                                    padding_mode=padding_mode)


def once(func):
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def main(quick: bool = False, dense_8x8: bool = False) -> None:
    import linconv._tools as tools
    rows = []
    sizes = (4, 6, 8) if dense_8x8 else (4, 6)
    largest = None
    for size in sizes:
        _, circ = layer(size, "circular")
        _, zero = layer(size, "zeros")
        dense_c, dense_z = circ.toarray(), zero.toarray()
        saved = tools.DENSE_LIMIT
        tools.DENSE_LIMIT = 0  # time the svds path, not linconv's own dense fallback
        try:
            t = race({"dense": lambda: np.linalg.svd(dense_c, compute_uv=False),
                      "fft": lambda: linconv.operator_norm(circ),
                      "svds": lambda: linconv.operator_norm(zero)}, repeat=3, settle=0)
        finally:
            tools.DENSE_LIMIT = saved
        err_c = abs(linconv.operator_norm(circ) / np.linalg.norm(dense_c, 2) - 1)
        err_z = abs(linconv.operator_norm(zero) / np.linalg.norm(dense_z, 2) - 1)
        n = circ.shape[1]
        rows.append([f"{size}x{size}", n, f"{t['dense']:.3f}", f"{t['fft']:.4f}",
                     f"{t['dense'] / t['fft']:.0f}x", f"{err_c:.1e}", f"{t['svds']:.3f}",
                     f"{t['dense'] / t['svds']:.1f}x", f"{err_z:.1e}"])
        largest = (n, t["dense"])
    n_big = 64 * 56 * 56
    _, circ = layer(56, "circular")
    t_norm = race({"norm": lambda: linconv.operator_norm(circ)}, repeat=3, settle=0)["norm"]
    t_all, s_all = once(lambda: linconv.singular_values(circ))
    _, zero = layer(56, "zeros")
    t_svds, norm_zero = once(lambda: linconv.operator_norm(zero)) if not quick else (
        float("nan"), float("nan"))
    dense_big = largest[1] * (n_big / largest[0]) ** 3
    rows.append(["56x56", n_big, f"~{dense_big:.1e} (extrapolated; 322 GB)",
                 f"{t_norm:.2f}", f"~{dense_big / t_norm:.0e}x", "exact",
                 f"{t_svds:.1f} (1 run)", f"~{dense_big / t_svds:.0e}x", "5e-13 (tol)"])
    print("operator_norm of a 64 -> 64 3x3 layer (seconds, medians of 3, one run; "
          "ratio = dense / linconv)")
    print_table(["image", "N", "dense SVD", "circular: FFT", "ratio", "rel. err",
                 "zeros: svds", "ratio", "rel. err"], rows)
    print(f"\nall {s_all.size} singular values of the circular 56x56 layer: {t_all:.2f} s; "
          f"norm circular {s_all[0]:.6f}, zeros {norm_zero:.6f}")
    try:
        import torch
    except ImportError:
        return
    w, _ = layer(56, "zeros")
    sigma = np.linalg.norm(w.reshape(64, -1), 2)
    print(f"torch spectral_norm's sigma (reshaped 64 x 576 weight): {sigma:.6f} "
          f"(the operator norm: {norm_zero:.6f} zero padding, {s_all[0]:.6f} circular)")


if __name__ == "__main__":
    main("--quick" in sys.argv, "--dense-8x8" in sys.argv)
