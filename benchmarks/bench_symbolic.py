"""Build time of symbolic convolution matrices (sympy).

Run: python benchmarks/bench_symbolic.py

A 32x32 input with a 3x3 symbolic kernel, "same" (a 1024x1024 matrix with 8,836
entries), in a fresh process (sympy's import excluded) and warm, plus its
LaTeX rendering; beside it the naive way a user would write it with sympy
alone: sympy.zeros and a loop over outputs and taps.
"""

from __future__ import annotations

import subprocess
import sys
import time

import linconv.symbolic as ls
from _harness import print_table, timeit


def naive(h, n):
    """Hand-written sympy: one entry at a time (what linconv replaces)."""
    import sympy
    k = h.shape[0]
    A = sympy.zeros(n * n, n * n)
    for i in range(n):
        for j in range(n):
            for a in range(k):
                for b in range(k):
                    r, c = i + a - k // 2, j + b - k // 2
                    if 0 <= r < n and 0 <= c < n:
                        A[i * n + j, r * n + c] += h[k - 1 - a, k - 1 - b]
    return sympy.ImmutableSparseMatrix(A)


def main():
    code = ("import sympy, time, linconv.symbolic as ls\nh = ls.kernel_symbols((3, 3))\n"
            "t = time.perf_counter()\nls.convolution_matrix(h, (32, 32), 'same')\n"
            "print(time.perf_counter() - t)")
    cold = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)
    h = ls.kernel_symbols((3, 3))
    _, warm = timeit(lambda: ls.convolution_matrix(h, (32, 32), "same"), repeat=5)
    M = ls.convolution_matrix(h, (32, 32), "same")
    _, latex = timeit(lambda: ls.to_latex(M), repeat=5)
    start = time.perf_counter()
    reference = naive(h, 32)
    hand = time.perf_counter() - start
    assert reference == M
    print_table(["case", "time", "vs hand-written sympy"], [
        ["linconv.symbolic.convolution_matrix 32x32, 3x3 (fresh process)",
         f"{cold * 1e3:.0f} ms", f"{hand / cold:.0f}x faster"],
        ["linconv.symbolic.convolution_matrix 32x32, 3x3 (warm)", f"{warm * 1e3:.0f} ms",
         f"{hand / warm:.0f}x faster"],
        ["to_latex of it (16x16 shown)", f"{latex * 1e3:.0f} ms", "-"],
        ["hand-written sympy loop", f"{hand * 1e3:.0f} ms", "1x"],
    ])
    print(f"matrix {M.shape[0]}x{M.shape[1]}, {len(M.todok())} entries; equal to the "
          "hand-written one")


if __name__ == "__main__":
    main()
