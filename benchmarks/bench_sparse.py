"""Build time of linconv's sparse convolution matrices, against PyLops' tosparse().

Run: python benchmarks/bench_sparse.py  [--skip-pylops]

Cases (issue 2):
- linconv.convolution_matrix, 1024x1024 image, 5x5 kernel, "same", zero boundary
  (26,152,996 stored entries): the median of repeated builds, and one build in
  a fresh process (which pays the operating system's first-touch page faults),
  beside the memory-write floor measured the same two ways: np.ones of as many
  bytes as the CSR arrays.
- PyLops Convolve2D(...).tosparse() on a 64x64 image with a 9x9 kernel (the
  same "same" convolution) against linconv on the same case: time, stored
  entries and the largest deviation from the exact matrix (scipy.signal.convolve
  of unit impulses).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import scipy.signal

import linconv
from _harness import print_table, timeit


def _cold(setup: str, statement: str) -> float:
    """Seconds of `statement` run once in a fresh Python process (first-touch page faults)."""
    code = (f"{setup}\nimport time\nt = time.perf_counter()\n{statement}\n"
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-pylops", action="store_true", help="skip the slow PyLops case")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []

    # -- 1024x1024, 5x5, same ------------------------------------------------
    kernel = rng.standard_normal((5, 5))
    build = lambda: linconv.convolution_matrix(kernel, (1024, 1024), "same")
    _, median = timeit(build, repeat=args.repeat)
    matrix = build()
    nnz = matrix.nnz
    nbytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    del matrix
    _, write_median = timeit(lambda: np.ones(nbytes // 8), repeat=args.repeat)
    cold_build = _cold("import linconv, numpy as np; k = np.random.default_rng(0)"
                       ".standard_normal((5, 5))",
                       "linconv.convolution_matrix(k, (1024, 1024), 'same')")
    cold_write = _cold("import numpy as np", f"np.ones({nbytes // 8})")
    rows.append(["linconv convolution_matrix 1024x1024 k5x5 same", f"{nnz:,}",
                 f"{median * 1e3:.0f} ms (fresh process {cold_build * 1e3:.0f} ms)",
                 f"{nnz / median / 1e6:.0f} M/s", "exact", "-"])
    rows.append([f"memory-write floor: np.ones of the CSR's {nbytes / 1e6:.0f} MB", "-",
                 f"{write_median * 1e3:.0f} ms (fresh process {cold_write * 1e3:.0f} ms)",
                 "-", "-", "-"])

    # -- 64x64, 9x9, same, against PyLops and the exact oracle ---------------
    kernel9 = rng.standard_normal((9, 9))
    shape = (64, 64)
    exact_cols = []
    for j in range(shape[0] * shape[1]):  # oracle: scipy.signal.convolve of unit impulses
        e = np.zeros(shape[0] * shape[1])
        e[j] = 1.0
        exact_cols.append(scipy.signal.convolve(e.reshape(shape), kernel9, "same",
                                                method="direct").ravel())
    exact = np.stack(exact_cols, axis=1)
    exact_nnz = int(np.count_nonzero(exact))

    first9, median9 = timeit(lambda: linconv.convolution_matrix(kernel9, shape, "same"),
                             repeat=args.repeat)
    ours = linconv.convolution_matrix(kernel9, shape, "same")
    ours_err = np.abs(ours.toarray() - exact).max()
    rows.append(["linconv convolution_matrix 64x64 k9x9 same", f"{ours.nnz:,}",
                 f"{median9 * 1e3:.2f} ms", f"{ours.nnz / median9 / 1e6:.0f} M/s",
                 f"max err {ours_err:.0e}", "1.0"])
    if not args.skip_pylops:
        try:
            import pylops
        except ImportError:
            print("pylops not installed: skipping the PyLops comparison", file=sys.stderr)
        else:
            op = pylops.signalprocessing.Convolve2D(shape, kernel9, offset=(4, 4))
            start = time.perf_counter()
            theirs = op.tosparse()
            pylops_time = time.perf_counter() - start
            theirs_err = np.abs(theirs.toarray() - exact).max()
            rows.append([f"PyLops {pylops.__version__} Convolve2D(...).tosparse() 64x64 k9x9",
                         f"{theirs.nnz:,}", f"{pylops_time:.1f} s",
                         f"{theirs.nnz / pylops_time / 1e6:.1f} M/s",
                         f"max err {theirs_err:.0e}", f"{pylops_time / median9:,.0f}"])
    print(f"exact stored entries, 64x64 k9x9 same: {exact_nnz:,}")
    print_table(["case", "stored entries", "build time (median)", "entries/s", "exactness",
                 "PyLops time / linconv time"], rows)


if __name__ == "__main__":
    main()
