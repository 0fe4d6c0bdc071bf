"""Matrix-free application: linconv's operator against the peers a user would call.

Run: python benchmarks/bench_apply.py [--repeat 7] [--methods]

For every case, forward (A x) and adjoint (A^H y) are timed (median of
`--repeat` runs, after a warm-up), and the table gives linconv's time divided
by the best peer's time: below 1.0 linconv is faster.  Peers run with
scipy.fft's workers set to all cores, as linconv's FFT does.  The adjoint of a
"same" convolution with an odd kernel is the "same" correlation, which is what
the peers compute for it.  `--methods` also times every linconv method, which is
how the "auto" cost model was calibrated.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
import scipy.signal as ss

import linconv
from _harness import print_table, race

NDIMAGE = {"zero": "constant", "wrap": "grid-wrap", "symmetric": "reflect"}


def peers(h, boundary, adjoint):
    """name -> function(x) computing the same as the linconv operator ("same" mode)."""
    k = np.flip(h) if adjoint else h  # the adjoint correlates: convolve with the flip
    flipped = np.flip(k)
    out = {}
    if boundary == "zero":
        out["signal.convolve"] = lambda x: ss.convolve(x, k, "same")
        out["fftconvolve"] = lambda x: ss.fftconvolve(x, k, "same")
        out["oaconvolve"] = lambda x: ss.oaconvolve(x, k, "same")
    else:
        pads = [(n // 2, (n - 1) // 2) for n in k.shape]
        mode = {"wrap": "wrap", "symmetric": "symmetric"}[boundary]
        out["np.pad+fftconvolve"] = lambda x: ss.fftconvolve(np.pad(x, pads, mode), k, "valid")
    out["ndimage.correlate"] = lambda x: ndi.correlate(x, flipped, mode=NDIMAGE[boundary])
    try:
        import pylops
    except ImportError:
        return out
    if boundary == "zero":
        if h.ndim == 1:
            make = lambda n: pylops.signalprocessing.Convolve1D(n, h, offset=len(h) // 2,
                                                                method="fft")
        else:
            make = lambda n: pylops.signalprocessing.Convolve2D(n, h, offset=tuple(
                s // 2 for s in h.shape))
        cache = {}

        def run(x):
            if x.shape not in cache:
                cache[x.shape] = make(x.shape if h.ndim > 1 else x.size)
            op = cache[x.shape]
            return op.rmatvec(x.ravel()) if adjoint else op.matvec(x.ravel())
        out["PyLops"] = run
    return out


CASES = [  # (label, input shape, kernel shape, boundary)
    ("2-D 1024^2 k3x3", (1024, 1024), (3, 3), "zero"),
    ("2-D 1024^2 k9x9", (1024, 1024), (9, 9), "zero"),
    ("2-D 1024^2 k31x31", (1024, 1024), (31, 31), "zero"),
    ("1-D 1e6 k31", (10**6,), (31,), "zero"),
    ("1-D 1e6 k1023", (10**6,), (1023,), "zero"),
    ("2-D 1024^2 k3x3 wrap", (1024, 1024), (3, 3), "wrap"),
    ("2-D 1024^2 k9x9 wrap", (1024, 1024), (9, 9), "wrap"),
    ("2-D 1024^2 k3x3 symmetric", (1024, 1024), (3, 3), "symmetric"),
    ("2-D 1024^2 k9x9 symmetric", (1024, 1024), (9, 9), "symmetric"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--methods", action="store_true", help="time every linconv method")
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for label, shape, kshape, boundary in CASES:
        h = rng.standard_normal(kshape).astype(args.dtype)
        x = rng.standard_normal(shape).astype(args.dtype)
        op = linconv.ConvolutionOperator(h, shape, "same", boundary=boundary)
        others = {m: linconv.ConvolutionOperator(h, shape, "same", boundary=boundary, method=m)
                  for m in (("fft", "direct") if args.methods else ())}
        ours = {}
        for direction in ("fwd", "adj"):
            adjoint = direction == "adj"
            contenders = {"linconv": (op.H if adjoint else op).apply}
            contenders.update({f"linconv {m}": (o.H if adjoint else o).apply
                               for m, o in others.items()})
            contenders.update(peers(h, boundary, adjoint))
            with scipy.fft.set_workers(os.cpu_count()):
                times = race({name: (lambda f=f: f(x)) for name, f in contenders.items()},
                             args.repeat)
            ours[direction] = times.pop("linconv")
            methods = " ".join(f"{m}={times.pop(f'linconv {m}') * 1e3:.1f}" for m in others)
            best = min(times, key=times.get)
            rows.append([label, direction, op.method, f"{ours[direction] * 1e3:.1f}",
                         f"{best} {times[best] * 1e3:.1f}",
                         f"{ours[direction] / times[best]:.2f}",
                         " ".join(f"{n}={t * 1e3:.0f}" for n, t in times.items()),
                         *([methods] if args.methods else [])])
        rows.append([f"  adjoint/forward {label}", "", "", f"{ours['adj'] / ours['fwd']:.2f}",
                     "", "", "", *([""] if args.methods else [])])
    headers = ["case", "dir", "auto chose", "linconv ms", "best peer ms",
               "ratio", "all peers (ms)"] + (["linconv per method (ms)"] if args.methods else [])
    print(f"dtype {args.dtype}, median of {args.repeat}, {os.cpu_count()} cores")
    print_table(headers, rows)


if __name__ == "__main__":
    main()
