"""Deconvolution quality and time against scikit-image, on its "camera" image.

Run: python benchmarks/bench_deconvolve.py   (needs scikit-image: pip install ".[bench]")

The issue's case: the 512x512 "camera" image in [0, 1], a 9x9 Gaussian PSF
(sigma 2) applied with the zero boundary ("same"), Gaussian noise sigma 0.01.
linconv.deconvolve with damp="auto" is not told the noise level.  The peers
are given every advantage: skimage.restoration.wiener swept over its balance
and richardson_lucy over its iteration count, each reported at its best PSNR
(which needs the ground truth, unavailable in practice).
"""

from __future__ import annotations

import time

import numpy as np

import linconv
from linconv.datasets import gaussian_kernel, psnr


def main():
    from skimage import data, restoration
    truth = data.camera().astype(float) / 255.0
    kernel = gaussian_kernel(9, 2.0)
    rng = np.random.default_rng(0)
    blurred = linconv.convolve(truth, kernel, "same") + 0.01 * rng.standard_normal(truth.shape)
    rows = [["blurred input", f"{psnr(blurred, truth):.2f}", "-", "-"]]
    for regularizer in ("tikhonov", "gradient"):
        start = time.perf_counter()
        result = linconv.deconvolve(blurred, kernel, damp="auto", regularizer=regularizer)
        seconds = time.perf_counter() - start
        rows.append([f"linconv.deconvolve damp='auto', {regularizer} ({result.solver}, "
                     f"{result.iterations} it)", f"{psnr(result.x, truth):.2f}",
                     f"{seconds:.2f}", f"damp {result.damp:.3g}, noise est "
                     f"{result.noise_std:.4f}"])
    best = (-np.inf, None, None)
    for balance in np.geomspace(1e-3, 10, 25):
        start = time.perf_counter()
        estimate = restoration.wiener(blurred, kernel, balance)
        seconds = time.perf_counter() - start
        best = max(best, (psnr(estimate, truth), balance, seconds), key=lambda t: t[0])
    rows.append(["skimage wiener, best balance (oracle)", f"{best[0]:.2f}", f"{best[2]:.2f}",
                 f"balance {best[1]:.3g} of 25 tried"])
    best = (-np.inf, None, None)
    for iterations in (5, 10, 15, 20, 30, 40, 60):
        start = time.perf_counter()
        estimate = restoration.richardson_lucy(np.clip(blurred, 0, None), kernel,
                                               num_iter=iterations)
        seconds = time.perf_counter() - start
        best = max(best, (psnr(estimate, truth), iterations, seconds), key=lambda t: t[0])
    rows.append(["skimage richardson_lucy, best num_iter (oracle)", f"{best[0]:.2f}",
                 f"{best[2]:.2f}", f"num_iter {best[1]}"])
    from _harness import print_table
    print("camera 512x512, 9x9 Gaussian sigma 2, zero boundary, noise sigma 0.01")
    print_table(["method", "PSNR (dB)", "seconds", "notes"], rows)


if __name__ == "__main__":
    main()
