"""linconv.fft: spectral solves and preconditioned CG.

Run: python benchmarks/bench_fft.py

1. fft.solve on a 1024x1024 periodic problem (9x9 Gaussian, damp 0.01) beside
   the hand-written numpy version a user would write (np.fft.fft2 of the
   kernel padded and rolled to the centre, conj(H) Y / (|H|^2 + damp^2)); and the
   DCT solve for the symmetric boundary.
2. The issue's preconditioning case: zero boundary, "same", 256x256, 9x9
   Gaussian (sigma 2), damp 0.02, scipy cg on the normal equations to rtol 1e-6:
   iterations and time without a preconditioner, with the circulant (Strang)
   one and with the DCT one.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse.linalg as spla

import linconv
from _harness import print_table, race


def gaussian(size, sigma):
    r = np.arange(size) - size // 2
    g = np.exp(-r**2 / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


def numpy_tikhonov(y, kernel, damp):
    padded = np.zeros_like(y)
    padded[:kernel.shape[0], :kernel.shape[1]] = kernel
    padded = np.roll(padded, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), axis=(0, 1))
    H = np.fft.fft2(padded)
    return np.fft.ifft2(np.conj(H) * np.fft.fft2(y) / (np.abs(H) ** 2 + damp**2)).real


def main():
    rng = np.random.default_rng(0)
    kernel = gaussian(9, 2.0)
    n, damp = 1024, 0.01
    x_true = rng.random((n, n))
    y = linconv.convolve(x_true, kernel, "same", boundary="wrap")
    times = race({
        "linconv.fft.solve wrap": lambda: linconv.fft.solve(y, kernel, damp=damp),
        "hand-written numpy.fft": lambda: numpy_tikhonov(y, kernel, damp),
        "linconv.fft.solve symmetric (DCT)":
            lambda: linconv.fft.solve(y, kernel, boundary="symmetric", damp=damp),
    }, repeat=7)
    difference = np.abs(linconv.fft.solve(y, kernel, damp=damp)
                        - numpy_tikhonov(y, kernel, damp)).max()
    print(f"1024x1024, 9x9 Gaussian, damp {damp}; median of 7; max |linconv - numpy| = "
          f"{difference:.1e}")
    base = times["hand-written numpy.fft"]
    print_table(["solve", "ms", "vs hand-written numpy"],
                [[k, f"{v * 1e3:.0f}", f"{v / base:.2f}"] for k, v in times.items()])

    kernel, n, damp = gaussian(9, 2.0), 256, 0.02
    op = linconv.ConvolutionOperator(kernel, (n, n), "same")
    x_true = np.zeros((n, n))
    x_true[64:192, 64:192] = 1.0
    y = op.apply(x_true) + 0.01 * rng.standard_normal((n, n))
    normal = spla.LinearOperator(op.shape, dtype=float,
                                 matvec=lambda v: op.H @ (op @ v) + damp**2 * v)
    b = op.H @ y.ravel()
    rows = []
    for name, kind in (("none", None), ("circulant (Strang)", "circulant"), ("DCT", "dct")):
        start = time.perf_counter()
        M = None if kind is None else linconv.fft.preconditioner(op, damp=damp, kind=kind)
        calls = []
        _, info = spla.cg(normal, b, M=M, rtol=1e-6, maxiter=2000,
                          callback=lambda xk: calls.append(1))
        seconds = time.perf_counter() - start
        rows.append([name, len(calls), "yes" if info == 0 else "no", f"{seconds * 1e3:.0f}"])
    print(f"\nzero boundary, 'same', {n}x{n}, 9x9 Gaussian sigma 2, damp {damp}, cg rtol 1e-6")
    print_table(["preconditioner", "iterations", "converged", "total ms (incl. setup)"], rows)


if __name__ == "__main__":
    main()
