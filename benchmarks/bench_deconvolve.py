"""damp="auto" over the noise range, against the best damp of an exact oracle; and peers.

Run: python benchmarks/bench_deconvolve.py [--size 128] [--quick]   (scikit-image: ".[bench]")

Noise sweep: for each boundary, two images (the phantom and scikit-image's
"camera", block-averaged to --size) and three separable PSFs (Gaussian 9x9
sigma 2, Gaussian 5x5 sigma 1, an asymmetric 5-tap), Gaussian noise from 10 %
down to exactly 0.  The oracle is exact and independent of linconv: the 1-D
boundary matrices come from np.pad and scipy.linalg.convolution_matrix, the 2-D
operator is their Kronecker product, whose SVD gives the Tikhonov solution for
any damp; "best" is the best PSNR over 81 damps from 1e-8 to 1.  linconv is not
told the noise level.  Columns: linconv's automatic choice (the exact "svd" or
"fft" solve) and the iterative path (solver="cg", which non-separable PSFs use).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg

import linconv
from linconv.datasets import phantom, psnr

NUMPY_PAD = {"zero": "constant", "wrap": "wrap", "reflect": "reflect",
             "symmetric": "symmetric", "edge": "edge"}
NOISES = (0.1, 0.03, 0.01, 3e-3, 1e-3, 1e-4, 0.0)


def gaussian_1d(k, sigma):
    r = np.arange(k) - k // 2
    g = np.exp(-r**2 / (2 * sigma**2))
    return g / g.sum()


PSFS = {"gauss 9x9 s2": gaussian_1d(9, 2.0), "gauss 5x5 s1": gaussian_1d(5, 1.0),
        "asym 5x5": np.array([0.05, 0.15, 0.5, 0.2, 0.1])}


class KroneckerOracle:
    """Exact Tikhonov solutions of the separable 'same' operator, from dense 1-D SVDs."""

    def __init__(self, g, n, boundary):
        lo, hi = len(g) // 2, (len(g) - 1) // 2
        P = np.pad(np.eye(n), ((lo, hi), (0, 0)), mode=NUMPY_PAD[boundary])
        self.A1 = scipy.linalg.convolution_matrix(g, n + lo + hi, "valid") @ P
        self.U, s, self.Vt = np.linalg.svd(self.A1)
        self.S = np.outer(s, s)

    def blur(self, x):
        return self.A1 @ x @ self.A1.T

    def solve(self, y, damp):
        Z = self.U.T @ y @ self.U
        return self.Vt.T @ (self.S / (self.S**2 + damp**2) * Z) @ self.Vt

    def best(self, y, truth):
        damps = np.logspace(-8, 0, 81)
        values = [psnr(self.solve(y, d), truth) for d in damps]
        i = int(np.argmax(values))
        return damps[i], values[i]


def images(n):
    out = {"phantom": phantom(n)}
    try:
        from skimage import data
        camera = data.camera().astype(float) / 255.0
        f = camera.shape[0] // n
        out["camera"] = camera[:n * f, :n * f].reshape(n, f, n, f).mean(axis=(1, 3))
    except ImportError:
        print("(scikit-image not installed: phantom only)")
    return out


def noise_sweep(n, boundaries, psfs, with_cg=True):
    rng = np.random.default_rng(0)
    print(f"\n## Noise sweep, {n}x{n}, PSNR in dB (best: the exact oracle's best damp)\n")
    print("| boundary | PSF | image | noise | data | best (damp) | auto (solver, damp) | "
          "auto - best | cg | cg - best |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = {}
    for boundary in boundaries:
        for name in psfs:
            g = PSFS[name]
            kernel = np.outer(g, g)
            for image_name, truth in images(n).items():
                oracle = KroneckerOracle(g, n, boundary)
                clean = oracle.blur(truth)
                for sigma in NOISES:
                    y = clean + sigma * rng.standard_normal(clean.shape)
                    best_damp, best = oracle.best(y, truth)
                    auto = linconv.deconvolve(y, kernel, boundary=boundary)
                    got = psnr(auto.x, truth)
                    row = (f"| {boundary} | {name} | {image_name} | {sigma:g} | "
                           f"{psnr(y, truth):.2f} | {best:.2f} ({best_damp:.1e}) | {got:.2f} "
                           f"({auto.solver}, {auto.damp:.1e}) | {got - best:+.2f} |")
                    gaps = [got - best]
                    if with_cg and boundary != "wrap":
                        cg = psnr(linconv.deconvolve(y, kernel, boundary=boundary,
                                                     solver="cg").x, truth)
                        row += f" {cg:.2f} | {cg - best:+.2f} |"
                        gaps.append(cg - best)
                    else:
                        row += " - | - |"
                    print(row, flush=True)
                    key = "noise >= 1e-3" if sigma >= 1e-3 else f"noise {sigma:g}"
                    worst[key] = min(worst.get(key, np.inf), *gaps) if sigma >= 1e-3 else \
                        min(worst.get(key, np.inf), got)
    print("\nWorst (auto or cg) - best over noise >= 1e-3: "
          f"{worst.get('noise >= 1e-3', np.nan):+.2f} dB; lowest PSNR at noise 1e-4: "
          f"{worst.get('noise 0.0001', np.nan):.2f} dB, on exact data: "
          f"{worst.get('noise 0', np.nan):.2f} dB")


def peers():
    """The 512x512 camera problem: linconv against scikit-image at its best settings."""
    from skimage import data, restoration
    truth = data.camera().astype(float) / 255.0
    kernel = np.outer(gaussian_1d(9, 2.0), gaussian_1d(9, 2.0))
    rng = np.random.default_rng(0)
    blurred = linconv.convolve(truth, kernel, "same") + 0.01 * rng.standard_normal(truth.shape)
    rows = [("blurred input", psnr(blurred, truth), 0.0, "")]
    for label, options in [("linconv auto (exact SVD), Tikhonov", {}),
                           ("linconv cg + DCT preconditioner, Tikhonov", {"solver": "cg"}),
                           ("linconv cg, gradient regulariser", {"regularizer": "gradient"})]:
        start = time.perf_counter()
        result = linconv.deconvolve(blurred, kernel, **options)
        rows.append((label, psnr(result.x, truth), time.perf_counter() - start,
                     f"damp {result.damp:.3g}, {result.iterations} it"))
    best = max(((psnr(restoration.wiener(blurred, kernel, b), truth), b)
                for b in np.geomspace(1e-3, 10, 25)))
    start = time.perf_counter()
    restoration.wiener(blurred, kernel, best[1])
    rows.append(("skimage wiener, best of 25 balances (uses the truth)", best[0],
                 time.perf_counter() - start, f"balance {best[1]:.3g}"))
    print("\n## camera 512x512, 9x9 Gaussian sigma 2, zero boundary, noise 0.01\n")
    print("| method | PSNR (dB) | seconds | notes |\n|---|---|---|---|")
    for label, value, seconds, note in rows:
        print(f"| {label} | {value:.2f} | {seconds:.2f} | {note} |")


def no_inverse_crime(n=256, sigma=0.01):
    """PRblur-style: blur a larger scene, keep the centre, add noise; models compared.

    The data never saw a boundary rule: the scene continues past the frame.
    ``mode="valid"`` models exactly that (the unknown is larger than the data:
    the scene's margin is reconstructed as well); "same" with a boundary rule
    assumes something about the unseen margin.  PSNR on the data's frame.
    """
    from skimage import data
    scene = data.camera().astype(float) / 255.0
    k = 9
    kernel = np.outer(gaussian_1d(k, 2.0), gaussian_1d(k, 2.0))
    start = (scene.shape[0] - n) // 2
    margin = k // 2
    big = scene[start - margin:start + n + margin, start - margin:start + n + margin]
    truth = big[margin:-margin, margin:-margin]
    y = linconv.convolve(big, kernel, "valid")
    y = y + sigma * np.random.default_rng(0).standard_normal(y.shape)
    print(f"\n## No inverse crime: {n}x{n} crop of a blurred larger scene, noise {sigma}\n")
    print("| model | solver | PSNR on the frame (dB) | seconds |\n|---|---|---|---|")
    print(f"| (blurred data) | - | {psnr(y, truth):.2f} | - |")
    for mode, boundary in [("valid", "zero"), ("same", "zero"), ("same", "wrap"),
                           ("same", "symmetric"), ("same", "reflect"), ("same", "edge")]:
        for solver in ("auto", "cg"):
            if mode == "valid" and solver == "cg":
                continue
            start_time = time.perf_counter()
            result = linconv.deconvolve(y, kernel, mode=mode, boundary=boundary, solver=solver)
            seconds = time.perf_counter() - start_time
            x = result.x[margin:-margin, margin:-margin] if mode == "valid" else result.x
            print(f"| {mode}, {boundary} | {result.solver} | {psnr(x, truth):.2f} | "
                  f"{seconds:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="zero boundary, one PSF")
    args = parser.parse_args()
    boundaries = ("zero",) if args.quick else ("zero", "reflect", "symmetric", "edge", "wrap")
    psfs = ("gauss 9x9 s2",) if args.quick else tuple(PSFS)
    noise_sweep(args.size, boundaries, psfs)
    try:
        no_inverse_crime()
        peers()
    except ImportError:
        print("(scikit-image not installed: no peer comparison)")


if __name__ == "__main__":
    main()
