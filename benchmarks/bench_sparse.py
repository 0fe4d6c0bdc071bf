"""Build time of linconv's sparse convolution matrices, against PyLops' tosparse().

Run: python benchmarks/bench_sparse.py  [--skip-pylops]

Cases (issue 2):
- linconv.convolution_matrix, 1024x1024 image, 5x5 kernel, "same", zero boundary
  (26,152,996 stored entries).  First build (includes the operating system's
  first-touch page faults on fresh memory) and the median of warm builds, beside
  the memory-write floor: writing the same number of bytes as the CSR arrays.
- PyLops Convolve2D(...).tosparse() on a 64x64 image with a 9x9 kernel (the
  same "same" convolution) against linconv on the same case: time, stored
  entries and the largest deviation from the exact matrix (scipy.signal.convolve
  of unit impulses).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.signal

import linconv
from _harness import print_table, timeit


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
    first, median = timeit(build, repeat=args.repeat)  # first: a cold process
    matrix = build()
    nnz = matrix.nnz
    nbytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    del matrix
    write_first, write_median = timeit(lambda: np.ones(nbytes // 8), repeat=args.repeat)
    rows.append(["linconv convolution_matrix 1024x1024 k5x5 same", f"{nnz:,}",
                 f"{median * 1e3:.0f} ms (first {first * 1e3:.0f} ms)",
                 f"{nnz / median / 1e6:.0f} M/s", "exact", "-"])
    rows.append([f"memory-write floor ({nbytes / 1e6:.0f} MB)", "-",
                 f"{write_median * 1e3:.0f} ms (first {write_first * 1e3:.0f} ms)",
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
