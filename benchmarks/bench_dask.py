"""linconv on dask: out-of-core, exactness of the dask solve, scaling, overhead, frames.

Run: python benchmarks/bench_dask.py [--part all|outofcore|exact|scaling|overhead|frames]
     [--size 16384] [--frames 64]                 (needs the extra: pip install ".[dask]")

- outofcore: a float32 image of size x size (16384: 1 GiB) generated lazily and
  written to a zarr store in /tmp, blurred (5x5 Gaussian, "same", zero
  boundary) into a second store, then deconvolved (cg, 30 iterations, damp
  0.05) into a third, on a LocalCluster of 2 single-thread workers with a
  1 GiB memory limit each (the iterates, 5 GiB, do not fit: "auto" keeps
  them in zarr stores in the run's directory).  Reports wall time, time per
  iteration (from the callback) and, per phase, the peak resident memory of
  the worst worker above the baseline of an idle worker that has imported
  linconv, dask and zarr (the kernel's high-water mark VmHWM, reset at the
  start of each phase: exact, no sampling), in MiB and in chunks, and the RSS
  at the phase's end (the part of the peak that an idle worker keeps:
  allocator and bookkeeping, not chunks).  --size, --chunks, --memory-limit,
  --iterations scale it down; --workers tuned (or both) runs it with the
  settings of TUNED; with --iterates disk a scaled-down run keeps the
  iterates on disk as the full one does (same number of chunks per axis:
  --size 4096 --chunks 256, --size 8192 --chunks 512).  The cluster keeps
  dask's root-task queuing (distributed.scheduler.worker-saturation 1.1, the
  default): without it (inf) the workers read chunks far ahead of their use,
  1.7x the peak on a 2048^2 / 256^2 proxy.
- exact: the 4096x4096 central crop of the same data solved on dask (1024
  chunks, float64) against the in-memory CG on the normal equations (scipy's
  cg through linconv.deconvolve, no preconditioner): same Krylov iterates, so
  they agree to rounding.  (The crop of the 16384^2 solution is not compared:
  CG's step sizes are global inner products, so a crop is a different solve.)
- scaling: throughput of the blur of an 8192^2 float32 image with 1 and 2
  single-thread workers, for chunks of 512^2, 1024^2 and 2048^2 (--chunks),
  with dask's worker defaults and with the tuned settings of TUNED (--workers
  dask|tuned|both; both by default).  Each task costs the scheduler and the
  worker's event loop CPU of their own (a few ms), which two workers on two
  cores must share: the smaller the chunks, the larger that share.
- overhead: a 4096x4096 float32 image in one chunk, op.apply on dask (threaded
  scheduler) against op.apply in memory.
- frames: a time-lapse of `frames` 1024x1024 frames deconvolved frame-parallel
  on dask (2 single-thread workers) against a Python loop of linconv.deconvolve.

Every timing is a median of repeats where the part allows it; the machine is
shared, so expect noise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import dask
import numpy as np

import linconv
from linconv.datasets import gaussian_kernel

ROOT = "/tmp/linconv_bench_dask"
KERNEL = gaussian_kernel(5, 1.0).astype(np.float32)
DAMP = 0.05


# The worker settings of docs/larger_than_memory.rst ("Settings for a cluster"): dask's
# nanny sets MALLOC_TRIM_THRESHOLD_, which makes glibc map every allocation over 128 KiB
# afresh (page faults on every block-sized temporary: half a block's time here); a higher
# mmap threshold reuses freed heap memory instead.  The statistical profiler keeps an hour
# of call trees per worker, memory that grows with the run.
TUNED = {"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 64 * 2**20,
         "distributed.worker.profile.enabled": False}


def cluster(n_workers, memory_limit="1GiB", tuned=False):
    """A LocalCluster of `n_workers` single-thread worker processes (dask's defaults, or
    with `tuned` the settings of :data:`TUNED`)."""
    from distributed import Client, LocalCluster
    with dask.config.set(TUNED if tuned else {}):
        c = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                         memory_limit=memory_limit, dashboard_address=":0",
                         local_directory=os.path.join(ROOT, "spill"))
    return c, Client(c)


def _rss():
    """(current, peak) resident memory of this process in bytes, and the peak reset."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS (Linux >= 4.0)
    return fields["VmRSS"], fields["VmHWM"]


def _warm():
    import linconv._dask  # noqa: F401 - what every task of the run imports
    import zarr  # noqa: F401
    return _rss()


class PeakMemory:
    """Peak resident memory of every worker per phase, from the kernel's high-water mark
    (VmHWM, reset at the start of each phase): exact, no sampling.

    The baseline is the RSS of an idle worker that has imported linconv, dask and zarr.
    """

    def __init__(self, client):
        self.client = client
        self.baseline = {w: rss for w, (rss, _) in client.run(_warm).items()}
        self.phases = {}

    def phase(self, name):
        self.client.run(_rss)  # resets the peaks
        self.name = name
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.phases[self.name] = self.client.run(_rss)

    def above(self, name, which=1):
        """Peak (`which` 1; 0: the RSS at the phase's end) above the baseline of the worst
        worker, bytes."""
        return max(v[which] - self.baseline[w] for w, v in self.phases[name].items())

    def report(self, name, chunk_bytes):
        above, after = self.above(name), self.above(name, 0)
        return (f"peak RSS above baseline {above / 2**20:.0f} MiB = {above / chunk_bytes:.1f} "
                f"chunks, {after / 2**20:.0f} MiB = {after / chunk_bytes:.1f} chunks at the "
                f"end (worst worker; baselines "
                f"{', '.join(f'{b / 2**20:.0f}' for b in self.baseline.values())} MiB)")


def test_image(size, chunks=1024, dtype=np.float32):
    """A lazily generated image: smooth structure plus texture, in [0, ~2]."""
    import dask.array as da
    i = da.arange(size, chunks=chunks, dtype=dtype)[:, None]
    j = da.arange(size, chunks=chunks, dtype=dtype)[None, :]
    smooth = 1 + da.sin(i / 97.0) * da.cos(j / 61.0)
    texture = da.random.default_rng(0).random((size, size), chunks=chunks, dtype=dtype)
    return (smooth + 0.5 * (texture > 0.97)).astype(dtype)


def part_outofcore(size, iterations=30, chunks=1024, memory_limit="1GiB", iterates="auto",
                   tuned=False):
    import dask.array as da
    from linconv._dask import deconvolve_dask
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    c, client = cluster(2, memory_limit=memory_limit, tuned=tuned)
    chunk_bytes = chunks * chunks * 4
    ticks = []
    try:
        peak = PeakMemory(client)
        with peak.phase("write"):
            start = time.perf_counter()
            da.to_zarr(test_image(size, chunks), os.path.join(ROOT, "image.zarr"))
            t_write = time.perf_counter() - start
        image = da.from_zarr(os.path.join(ROOT, "image.zarr"))
        with peak.phase("blur"):
            start = time.perf_counter()
            da.to_zarr(linconv.convolve(image, KERNEL, "same"), os.path.join(ROOT, "blur.zarr"))
            t_blur = time.perf_counter() - start
        blurred = da.from_zarr(os.path.join(ROOT, "blur.zarr"))
        loads = [os.getloadavg()[0]]
        with peak.phase("solve"), dask.config.set({"linconv.temporary-directory": ROOT,
                                                   "linconv.iterates": iterates}):
            start = time.perf_counter()
            ticks.append(start)
            result = deconvolve_dask(blurred, KERNEL, damp=DAMP, solver="cg",
                                     maxiter=iterations, tol=1e-12,
                                     callback=lambda x: ticks.append(time.perf_counter()))
            da.to_zarr(result.x, os.path.join(ROOT, "x.zarr"))
            t_solve = time.perf_counter() - start
        loads.append(os.getloadavg()[0])
        steps = np.diff(ticks)
        later = steps[1:] if len(steps) > 1 else np.array([np.nan])
        print(f"out-of-core {size}x{size} float32 ({size * size * 4 / 2**30:.3g} GiB), "
              f"2 workers x 1 thread ({'tuned' if tuned else 'dask defaults'}), memory_limit "
              f"{memory_limit} each, {chunks}^2 chunks "
              f"({chunk_bytes / 2**20:.3g} MiB, {(size // chunks) ** 2} of them; load average "
              f"{loads[0]:.1f} before the solve, {loads[1]:.1f} after)")
        print(f"  write image {t_write:.1f} s ({peak.report('write', chunk_bytes)})")
        print(f"  blur {t_blur:.1f} s ({peak.report('blur', chunk_bytes)})")
        print(f"  deconvolve (cg, {result.iterations} iterations, iterates "
              f"{'on disk' if 'disk' in result.message else 'in memory'}) {t_solve:.1f} s: "
              f"first pass {steps[0]:.2f} s, then per iteration median "
              f"{statistics.median(later):.2f} s (min {later.min():.2f}, max {later.max():.2f})")
        print(f"  solve: {peak.report('solve', chunk_bytes)}; residual norm "
              f"{result.residual_norms[0]:.4g} -> {result.residual_norms[-1]:.4g}")
    finally:
        client.close()
        c.close()
        shutil.rmtree(ROOT, ignore_errors=True)


def part_exact(crop=4096, iterates="auto"):
    import dask.array as da
    from linconv._dask import deconvolve_dask
    image = test_image(crop, dtype=np.float64)
    blurred = linconv.convolve(image, KERNEL.astype(float), "same").compute()
    start = time.perf_counter()
    with dask.config.set({"linconv.iterates": iterates}):
        result = deconvolve_dask(da.from_array(blurred, chunks=1024), KERNEL.astype(float),
                                 damp=DAMP, solver="cg", maxiter=30, tol=1e-12)
        on_dask = result.x.compute()
    t_dask = time.perf_counter() - start
    start = time.perf_counter()
    in_memory = linconv.deconvolve(blurred, KERNEL.astype(float), damp=DAMP, solver="cg",
                                   maxiter=30, tol=1e-12, preconditioner=None).x
    t_mem = time.perf_counter() - start
    error = np.abs(on_dask - in_memory).max() / np.abs(in_memory).max()
    print(f"exact (load average {os.getloadavg()[0]:.1f}): {crop}x{crop} float64, 1024^2 "
          f"chunks, cg 30 iterations, iterates "
          f"{'on disk' if 'on disk' in result.message else 'in memory'}"
          f": dask {t_dask:.1f} s, "
          f"in memory {t_mem:.1f} s; max |x_dask - x_memory| / max |x_memory| = {error:.2e} "
          f"({'<=' if error <= 1e-6 else '>'} 1e-6)")


def _placed(client, x, chunks):
    """`x` as a dask array of `chunks` held by the workers in bands of block rows, one
    band each (as dask's scheduler assigns root tasks, a zarr store's say): the persisted
    blocks of ``from_array`` land where the scheduler's first choices put them, 10 and 6
    of 16 blocks in one run, which measures the placement instead of the scaling."""
    import dask.array as da
    from dask.base import tokenize
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    name = "placed-" + tokenize(x, chunks, workers)
    rows, cols = (-(-n // chunks) for n in x.shape)
    graph = {}
    for i in range(rows):
        keys = [(name, i, j) for j in range(cols)]
        blocks = [x[i * chunks:(i + 1) * chunks, j * chunks:(j + 1) * chunks] for j in range(cols)]
        graph.update(zip(keys, client.scatter(blocks, workers=[workers[i * len(workers) // rows]])))
    return da.Array(graph, name, chunks=chunks, shape=x.shape, dtype=x.dtype)


def part_scaling(size=8192, repeat=7, chunk_sizes=(512, 1024, 2048), settings=(False, True)):
    """Blur throughput with 1 and 2 workers for each chunk size and worker setting.

    Both clusters are up together and their runs alternate (1 worker, 2 workers, ...), so
    the load of this shared machine drifts over both alike; medians of `repeat` runs.
    """
    from distributed import wait
    x = np.asarray(test_image(size).compute())
    for tuned in settings:
        for chunks in chunk_sizes:
            clusters = {n: cluster(n, memory_limit="4GiB", tuned=tuned) for n in (1, 2)}
            times, tasks = {1: [], 2: []}, 0
            try:
                placed = {n: _placed(client, x, chunks) for n, (_, client) in clusters.items()}
                for i in range(repeat + 1):
                    for n, (_, client) in clusters.items():
                        # a kernel scaled by 1 + 1e-6 i gives each repeat keys of its own:
                        # the same graph again would find its results on the workers, or
                        # (resubmitted while the scheduler still cancels them) fail with
                        # FuturesCancelledError
                        kernel = KERNEL * np.float32(1 + 1e-6 * i)
                        start = time.perf_counter()
                        blur = linconv.convolve(placed[n], kernel, "same", boundary="symmetric")
                        tasks = len(dict(blur.__dask_graph__())) - placed[n].npartitions
                        y = client.persist(blur)
                        wait(y)
                        if i:  # the first run of each warms the workers
                            times[n].append(time.perf_counter() - start)
                        client.cancel(y)
                        del y, blur
            finally:
                for c, client in clusters.values():
                    client.close()
                    c.close()
            rates = {n: statistics.median(t) for n, t in times.items()}
            print(f"scaling ({'tuned workers' if tuned else 'dask defaults'}): blur {size}x{size} "
                  f"float32 (5x5, symmetric), {chunks}^2 chunks ({tasks} tasks; load average "
                  f"{os.getloadavg()[0]:.1f}): 1 worker {rates[1]:.2f} s, 2 workers "
                  f"{rates[2]:.2f} s, speed-up {rates[1] / rates[2]:.2f}x (goal >= 1.7x; "
                  f"medians of {repeat}, alternating)", flush=True)


def part_overhead(size=4096, repeat=7):
    import dask
    import dask.array as da
    from _harness import race
    x = np.asarray(test_image(size).compute())
    rows = []
    for k in (KERNEL, gaussian_kernel(15, 3.0).astype(np.float32)):
        op = linconv.ConvolutionOperator(k, x.shape, "same", boundary="reflect")
        dx = da.from_array(x, chunks=-1)
        with dask.config.set(scheduler="threads"):
            times = race({"memory": lambda: op.apply(x),
                          "dask": lambda: op.apply(dx).compute()}, repeat=repeat)
        rows.append((k.shape, op.method, times["memory"], times["dask"]))
    for shape, method, mem, dsk in rows:
        print(f"overhead: {size}x{size} float32 in one chunk, kernel {shape} ({method}): in "
              f"memory {mem * 1e3:.0f} ms, dask {dsk * 1e3:.0f} ms, ratio {dsk / mem:.2f} "
              "(goal <= 1.3)")


def part_frames(frames=64, size=1024, maxiter=30):
    import dask.array as da
    from distributed import wait
    from linconv._dask import deconvolve_dask
    stack = np.stack([np.asarray(test_image(size).compute()) for _ in range(1)] * frames)
    stack = stack + 0.01 * np.random.default_rng(1).standard_normal(stack.shape, np.float32)
    options = dict(damp=DAMP, solver="cg", maxiter=maxiter)
    start = time.perf_counter()
    loop = [linconv.deconvolve(frame, KERNEL, **options).x for frame in stack]
    t_loop = time.perf_counter() - start
    c, client = cluster(2, memory_limit="4GiB")
    try:
        ys = client.persist(da.from_array(stack, chunks=(1, size, size)))
        wait(ys)
        start = time.perf_counter()
        x = client.compute(deconvolve_dask(ys, KERNEL, **options).x).result()
        t_dask = time.perf_counter() - start
    finally:
        client.close()
        c.close()
    error = max(np.abs(a - b).max() for a, b in zip(loop, x))
    print(f"frames (load average {os.getloadavg()[0]:.1f}): {frames} x {size}x{size} float32, "
          f"cg {maxiter} iterations: Python loop "
          f"{t_loop:.1f} s, dask frame-parallel (2 workers) {t_dask:.1f} s, speed-up "
          f"{t_loop / t_dask:.2f}x; max difference {error:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all",
                        choices=["all", "outofcore", "exact", "scaling", "overhead", "frames"])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=30, help="cg iterations (outofcore)")
    parser.add_argument("--chunks", type=int, nargs="+", default=None,
                        help="chunk size (outofcore: one, default 1024; scaling: any, default "
                             "512 1024 2048)")
    parser.add_argument("--workers", default=None, choices=["dask", "tuned", "both"],
                        help="worker settings: dask's defaults, or TUNED (the allocator and "
                             "profiler settings of docs/larger_than_memory.rst); default "
                             "both for scaling, dask for outofcore")
    parser.add_argument("--memory-limit", default="1GiB", help="per worker (outofcore)")
    parser.add_argument("--iterates", default="auto", choices=["auto", "memory", "disk"],
                        help="dask config linconv.iterates (outofcore and exact; 'disk' for "
                             "the scaled-down runs, where 'auto' keeps them in memory)")
    args = parser.parse_args()
    settings = {None: None, "dask": (False,), "tuned": (True,), "both": (False, True)}[
        args.workers]
    parts = {"overhead": part_overhead, "exact": lambda: part_exact(iterates=args.iterates),
             "scaling": lambda: part_scaling(chunk_sizes=args.chunks or (512, 1024, 2048),
                                             settings=settings or (False, True)),
             "frames": lambda: part_frames(args.frames),
             "outofcore": lambda: [part_outofcore(args.size, args.iterations,
                                                  (args.chunks or [1024])[0], args.memory_limit,
                                                  args.iterates, tuned)
                                   for tuned in settings or (False,)]}
    try:
        for name, run in parts.items():
            if args.part in ("all", name):
                run()
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)  # the clusters' spill directories


if __name__ == "__main__":
    main()
