"""Application engines of the operators: each executes a plan, none repeats its arithmetic.

An engine applies the correlation ``A = S C P`` (``forward``) and its
conjugate transpose ``A^H = P^T C^H S^T`` (``adjoint``) to batches of shape
``(B, *input_shape)`` / ``(B, *output_shape)`` already cast to the compute
dtype.  Every size and offset it uses comes from its plan
(:mod:`linconv._plans`, computed from the geometry on first use); the factors
on arrays are :mod:`linconv._factors`.

- "sparse": the CSR matrix (built on first use) and its CSC transpose view.
- "direct": scipy.ndimage's C correlation on bands of rows, one per worker
  (ndimage releases the GIL); it extends the input itself when it can.  Data
  types ndimage lacks (long double) run one numpy multiply-add per tap.
- "fft": the convolution theorem with the kernel spectrum computed on first
  use, once per compute dtype; long 1-D signals use overlap-save blocks
  (cache-sized transforms).

Threads: :func:`get_workers` (linconv's own :func:`set_workers`, else
scipy.fft's setting, else the CPUs available to the process); the band pool
is rebuilt in a forked child (``os.register_at_fork``).

How "auto" decides (:func:`choose_method`): tiny problems (at most
``SPARSE_LIMIT`` stored entries) use "sparse", whose per-call overhead is
lowest.  Otherwise it compares two cost estimates calibrated on this 2-core
machine with ``benchmarks/bench_apply.py --methods``:

- direct: ``DIRECT_NS * taps * outputs`` over the threads' speed-up
  ``1 + DIRECT_THREADS * (bands - 1)`` (ndimage visits every non-zero tap for
  every stride-1 output),
- fft: ``FFT_NS * M * log2(M)`` for the transform size ``M`` (whole signal, or
  the overlap-save blocks), times ``FFT_AXES`` over the speed-up
  ``1 + FFT_THREADS * (threads - 1)`` for transforms over 2 or more axes, and
  times ``FFT_SINGLE`` in single precision,

and takes the cheaper.  With a 1024x1024 image this picks "direct" up to 3x3
kernels in float32 and 5x5 in float64, and "fft" above.  With channels,
"direct" is the cheaper of two layer engines (:func:`layer_costs`), each
executing a :class:`~linconv._plans.LayerPlan`: channel-mixing GEMMs on chunks of
stacked shifted copies (``GEMM_NS * C_out * C_in/groups * taps * outputs``
for the products plus ``COPY_NS * C_in * taps * outputs`` for the copies),
or, with one input channel per group (depthwise, single channel), batched
single-channel multiply-adds, one BLAS ``axpy`` per row and tap
(``DEPTHWISE_NS * C_out * taps * outputs``; rows shorter than
``DEPTHWISE_MIN_ROW`` samples run the GEMM instead); "fft" adds the
per-frequency channel mixing (``MIX_NS * C_out * C_in/groups * M/2``): a 3x3
layer with 64 channels runs "direct".  ``op.plan`` says which engine runs and
why.  ``benchmarks/calibrate.py`` fits the layer constants.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sp_fft
from scipy import ndimage

from . import _pattern
from ._factors import (dilate, extend, extend_adjoint, place_circular,
                       subsample, tap_slices, upsample)
from ._geometry import Geometry
from ._plans import SparsePlan, direct_plan, fft_plan, layer_plan, polyphase
from ._sparse import correlation_csr

__all__ = ["make_engine", "choose_method", "SparseEngine", "FFTEngine", "DirectEngine",
           "GemmEngine", "DepthwiseEngine", "available_cpus", "get_workers", "set_workers"]
# -- the cost model and tuning constants, all in one place --------------------------------
# Calibrated on a 2-core machine; recalibrate on another one with
# ``python benchmarks/bench_apply.py --methods`` (DIRECT_NS, FFT_NS, SPARSE_LIMIT, wall
# clock) and ``python benchmarks/calibrate.py`` (GEMM_NS, COPY_NS, DEPTHWISE_NS, in CPU
# time: steady on a loaded machine, and their ratios decide between the layer engines);
# MIX_NS against FFT_NS with bench_apply.py --methods and bench_nn.py.
SPARSE_LIMIT = 20_000  # stored entries below which the sparse matrix is fastest
DIRECT_NS = 0.55       # ns per (tap x output) of ndimage, one core
FFT_NS = 0.45          # ns per M*log2(M) of a forward+inverse real 1-D transform pair, float64
FFT_AXES = 1.65        # the factor of transforms over 2 or more axes (strided passes)
FFT_SINGLE = 0.45      # the factor of single-precision transforms (float32, complex64)
# speed-up each thread after the first adds: measured 1.57-1.72x on 2 threads for the banded
# direct engine, 1.18-1.29x for scipy.fft over 2 or more axes, none for 1-D transforms
DIRECT_THREADS = 0.65
FFT_THREADS = 0.25
BAND_MIN = 1 << 16     # outputs per band below which threads do not pay
GEMM_NS = 0.0114       # ns per multiply-add of the layer GEMMs (BLAS)
COPY_NS = 0.225        # ns per sample of each tap's shifted copy of an input channel (GEMM)
DEPTHWISE_NS = 0.106   # ns per output sample and tap of the depthwise multiply-adds
MIX_NS = 1.2           # ns per complex multiply-add of the per-frequency channel mixing
# elements per block of channels of the depthwise engine: a block is placed, run and cropped
# in one go, so larger blocks save Python calls (CPU time of one thread for the depthwise
# layer of bench_nn.py, two runs: 1 << 17 8.1-9.3 ms forward, 8.5-8.8 ms adjoint; 1 << 15
# 9.5-10.4 and 11.7-12.2 ms)
DEPTHWISE_BLOCK = 1 << 17
# samples per axpy call, a piece that stays in the L2 cache through the taps.  OpenBLAS runs
# an axpy of more than 10,000 samples on all its threads (interface/axpy.c), and each such
# call then waits for its threads: with torch's or another process's threads busy on the
# cores, the single-channel layer of bench_nn.py took 237 ms with 32k-sample pieces against
# 9.5-16.5 ms below the threshold (and 7.2 against 6.2 ms on idle cores)
AXPY_CHUNK = 10_000
AXPY_MIN = 1024            # row length from which the depthwise engine runs BLAS axpy per row
DEPTHWISE_MIN_ROW = 1024   # shorter rows (batch x grid samples) run the GEMM engine
# bytes of the GEMM's chunk of shifted copies: 2 MB chunks were 5 % faster on one thread,
# but each chunk is a threaded BLAS call, and with the cores busy elsewhere 30 such calls
# took 3-4x longer than 4 (measured with two competing processes on this machine)
GEMM_BLOCK = 1 << 24


# -- threads: the CPUs this process may use, scipy.fft's setting, linconv's own ---------
@functools.lru_cache(maxsize=1)
def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask and the cgroup CPU quota.

    Read once per process (and again in a forked child).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()[:2]),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), None])):
        try:
            with open(path) as f:
                quota, period = parse(f.read())
            if period is None:
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                    period = f.read().strip()
            if quota not in ("max", "-1") and int(period) > 0:
                cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
            break
        except (OSError, ValueError):
            continue
    return max(cpus, 1)


_SETTINGS = threading.local()


def _scipy_workers() -> int | None:
    """The worker count of an active ``scipy.fft.set_workers`` (None outside one).

    scipy keeps it per thread and reports 1 by default, which is not a choice of
    the user's; its thread-local record tells the two apart.
    """
    config = getattr(getattr(sp_fft, "_pocketfft", None), "helper", None)
    config = getattr(config, "_config", None)
    if config is not None:
        return getattr(config, "default_workers", None)
    workers = sp_fft.get_workers()  # scipy without the record: only a change is visible
    return workers if workers != 1 else None


def get_workers() -> int:
    """Threads linconv uses for one application (FFTs and the banded direct engine).

    In order: the value of an active :func:`linconv.set_workers`, else that of
    :func:`scipy.fft.set_workers` once it has been used in this thread, else
    every CPU the process may use (affinity mask and cgroup quota, not
    ``os.cpu_count()``).

    Examples
    --------
    >>> import linconv
    >>> with linconv.set_workers(1):
    ...     linconv.get_workers()
    1
    """
    workers = getattr(_SETTINGS, "workers", None)
    if workers is None:
        workers = _scipy_workers()
    cpus = available_cpus()
    if workers is None:
        return cpus
    return workers if workers > 0 else max(cpus + 1 + workers, 1)


@contextlib.contextmanager
def set_workers(workers: int):
    """Set the threads linconv uses in this thread (a context manager).

    As :func:`scipy.fft.set_workers`, and it takes precedence over it.  Note
    that scipy keeps its setting after its ``with`` block ends (back to 1 in
    that thread), and linconv follows it there too.

    Parameters
    ----------
    workers : int
        A positive count, or negative to count back from the available CPUs
        (``-1``: all of them), as scipy.fft.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> op = linconv.ConvolutionOperator(np.ones((9, 9)), (256, 256), "same", method="fft")
    >>> with linconv.set_workers(1):
    ...     y = op.apply(np.ones((256, 256)))
    """
    from ._validation import _index, _is_int
    if not _is_int(workers) or _index(workers) == 0:
        raise ValueError(f"`workers` must be a non-zero integer; got {workers!r}")
    old = getattr(_SETTINGS, "workers", None)
    _SETTINGS.workers = _index(workers)
    try:
        yield
    finally:
        _SETTINGS.workers = old


_LAZIES: "weakref.WeakSet[_Lazy]" = weakref.WeakSet()


class _Lazy:
    """Per-key results computed on first use, thread-safely; dropped when pickled."""

    def __init__(self, compute):
        self._compute, self._cache, self._lock = compute, {}, threading.RLock()
        _LAZIES.add(self)

    def __call__(self, key):
        try:
            return self._cache[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._compute(key)
            return self._cache[key]

    def __getstate__(self):
        return {"_compute": self._compute}

    def __setstate__(self, state):
        self.__init__(state["_compute"])


class SparseEngine:
    """The CSR matrix, built on first use and cached per compute precision (float64 data
    with a float32 kernel uses a float64 matrix of the same kernel: the entries the
    boundary adds up are summed in float64); the adjoint reads its CSC transpose (a
    view: no index arrays sized by the number of columns)."""

    name = "sparse"

    def __init__(self, geometry: Geometry, weights: np.ndarray, reason: str = ""):
        self.geometry = geometry
        self.weights_given = weights
        self.plan = SparsePlan("sparse", reason, _pattern.pattern_bound(
            geometry, len(geometry.active_taps(weights)[1])))
        self._matrices = _Lazy(self._build)

    def _build(self, key):
        adjoint, dtype = key
        if adjoint:
            return self._matrices((False, dtype)).T.conj()
        return correlation_csr(self.geometry, self.weights_given.astype(dtype, copy=False))

    def _key(self, x, adjoint: bool):
        """The matrix for data `x`: the weights at the data's precision (real stays real)."""
        dtype = np.result_type(x.dtype, self.weights_given.dtype)
        if self.weights_given.dtype.kind != "c":
            dtype = np.empty(0, dtype).real.dtype
        return adjoint, dtype

    def matrix(self):
        return self._matrices((False, self.weights_given.dtype))

    def workspace_bytes(self, batch: int, itemsize: int) -> int:
        """Peak bytes of one application; before the first one, refuses a matrix too large
        for memory (MemoryError, suggesting the matrix-free methods)."""
        g = self.geometry
        built = 0
        if not self._matrices._cache:
            ntaps = len(g.active_taps(self.weights_given)[1])
            itemsize_matrix = max(itemsize, self.weights_given.itemsize)
            _pattern.check_pattern_memory(g, ntaps, itemsize_matrix)
            built = _pattern.pattern_nbytes(g, ntaps, itemsize_matrix)
        copies = 1 if batch == 1 else 2  # a batch is transposed through the product
        return built + copies * batch * (g.input_size + g.output_size) * itemsize

    @staticmethod
    def _apply(matrix, x, out_shape):
        batch = len(x)
        flat = x.reshape(batch, -1)
        y = matrix @ flat[0] if batch == 1 else (matrix @ flat.T).T
        return np.asarray(y).reshape((batch,) + out_shape)

    def forward(self, x):
        return self._apply(self._matrices(self._key(x, False)), x, self.geometry.output_shape)

    def adjoint(self, y):
        return self._apply(self._matrices(self._key(y, True)), y, self.geometry.input_shape)


class _MatrixOnDemand:
    """``matrix()`` for the matrix-free engines: built on request, never cached."""

    geometry: Geometry
    weights_given: np.ndarray

    def matrix(self):
        return correlation_csr(self.geometry, self.weights_given)

    def workspace_bytes(self, batch: int, itemsize: int) -> int:
        """Estimated peak bytes of one application to `batch` inputs."""
        g = self.geometry
        ch = g.channels
        c = max(ch.in_channels, ch.out_channels) if ch else 1
        return 3 * batch * c * math.prod(g.padded_shape) * itemsize


def _split_complex(apply):
    """Run a real-kernel engine on complex data as two real passes (real, imaginary)."""
    def wrapper(self, x):
        if self.real_kernel and x.dtype.kind == "c":
            return apply(self, x.real) + 1j * apply(self, x.imag)
        return apply(self, x)
    return wrapper


# -- direct: scipy.ndimage, banded over the cores ------------------------------
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="linconv")
        return _POOL


def _after_fork_in_child() -> None:
    """A forked child has the pool's threads and lock state but not its threads: start over."""
    global _POOL, _POOL_LOCK
    _POOL_LOCK = threading.Lock()
    _POOL = None
    available_cpus.cache_clear()
    for lazy in list(_LAZIES):  # a lock held by a parent's thread would never be released
        lazy._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cut_and_pad(x, step):
    """The crop and zero pad of an :class:`~linconv._plans.NdimagePass` on a batch."""
    if step.crop is None:
        return x
    return np.pad(x[(slice(None),) + tuple(slice(*c) for c in step.crop)], ((0, 0),) + step.pad)


def _ndimage_correlate(x, weights, step) -> np.ndarray:
    """Run the :class:`~linconv._plans.NdimagePass` `step` on a batch ``(B, *shape)``.

    ``weights`` is ``(1, *k)`` (ndimage conjugates complex weights: pass them
    conjugated).  Bands of rows run in parallel (ndimage releases the GIL), each
    written in place, then the plan's seam rows are redone.
    """
    x = _cut_and_pad(x, step)
    if weights.dtype.kind == "c" and x.dtype.kind != "c":
        x = x.astype(np.result_type(x, weights))
    origin = (0,) + step.origin
    crop = (slice(None),) + tuple(slice(0, n) for n in step.out_shape)
    workers = get_workers()
    count = step.band_count(workers, len(x), BAND_MIN)
    if count == 1:
        return ndimage.correlate(x, weights, mode=step.mode, cval=0.0, origin=origin)[crop]
    bands = step.bands(count)
    out = np.empty(x.shape, dtype=np.result_type(x, weights))
    edges = bands.edges
    jobs = [_pool(workers).submit(ndimage.correlate, x[:, r0:r1], weights, mode=step.mode,
                                  cval=0.0, origin=origin, output=out[:, r0:r1])
            for r0, r1 in zip(edges[:-1], edges[1:])]
    for job in jobs:
        job.result()
    for f0, f1, source in bands.redo:
        local = ndimage.correlate(x.take(source, axis=1), weights, mode=step.mode, cval=0.0,
                                  origin=origin)
        out[:, f0:f1] = local[:, bands.lead:bands.lead + f1 - f0]
    return out[crop]


class DirectEngine(_MatrixOnDemand):
    """Spatial-domain correlation with scipy.ndimage (C loops over the non-zero taps),
    executing a :class:`~linconv._plans.DirectPlan`.

    Forward: ndimage extends the input by the boundary rule itself when the
    padding is within the kernel span and the outputs lie inside the input;
    otherwise the input is extended first.  Adjoint: the full correlation
    with the flipped conjugate kernel, then the fold ``P^T`` (for the zero
    boundary, directly on the input's window).
    """

    name = "direct"

    def __init__(self, geometry: Geometry, weights: np.ndarray, reason: str = ""):
        self.geometry = geometry
        self.weights_given = weights
        self.real_kernel = weights.dtype.kind != "c"
        self._reason = reason
        self._plan = None

    @property
    def plan(self):
        """The :class:`~linconv._plans.DirectPlan` this engine executes (computed once)."""
        if self._plan is None:
            g = self.geometry
            dilated = dilate(g, self.weights_given)
            self.weights = np.conj(dilated)[None]  # ndimage conjugates: undo it
            self.adjoint_weights = np.flip(dilated, axis=tuple(range(g.ndim)))[None]
            self._plan = direct_plan(g, self._reason)
        return self._plan

    def forward(self, x):
        g = self.geometry
        if x.dtype.char not in _NDIMAGE_DTYPES:
            return self._taps_forward(x)
        plan = self.plan
        y1 = _ndimage_correlate(x if plan.native else extend(g, x), self.weights, plan.forward)
        return subsample(g, y1)

    def adjoint(self, y):
        # C^H (full correlation with the flipped conjugate kernel) on the input's
        # window of the padded domain, plus the thin frame slabs folded back (P^T).
        g = self.geometry
        if y.dtype.char not in _NDIMAGE_DTYPES:
            return self._taps_adjoint(y)
        plan = self.plan
        if plan.strided:
            y = upsample(g, y)
        result = None
        for part in plan.adjoint:
            window = _ndimage_correlate(y, self.adjoint_weights, part.passes)
            if part.axis is None:
                result = window
                continue
            window = extend_adjoint(g, window, axes=range(part.axis + 1, g.ndim))
            np.add.at(np.moveaxis(result, part.axis + 1, 0), part.targets,
                      np.moveaxis(window, part.axis + 1, 0))
        return result

    # numpy, one vectorised multiply-add per non-zero tap: any dtype numpy has
    # (long double included, which scipy.ndimage does not take)
    def _taps(self):
        flat = self.weights_given.reshape(-1)
        for t, window in enumerate(tap_slices(self.geometry)):
            if flat[t] != 0:
                yield flat[t], window

    def _taps_forward(self, x):
        g = self.geometry
        xp = extend(g, x)
        y = np.zeros(x.shape[:1] + g.spatial_output_shape,
                     dtype=np.result_type(x, self.weights_given))
        for w, window in self._taps():
            y += w * xp[window]
        return y

    def _taps_adjoint(self, y):
        g = self.geometry
        xp = np.zeros(y.shape[:1] + g.padded_shape, dtype=np.result_type(y, self.weights_given))
        for w, window in self._taps():
            xp[window] += np.conj(w) * y
        return extend_adjoint(g, xp)


# ndimage's C loops take these (not float16, long double or complex long double)
_NDIMAGE_DTYPES = set(np.typecodes["AllInteger"] + "fdFD")


# -- fft ---------------------------------------------------------------------------
class _Transform:
    """Circular correlation with a fixed kernel spectrum over the trailing axes.

    With channels the spectrum is ``(C_out, C_in // groups, *F)`` and each
    frequency mixes the channels of a group (``adjoint`` mixes back with the
    conjugate).  Without channels the adjoint shares the forward spectrum and
    multiplies by its conjugate in place: one spectrum in memory, not two.
    """

    def __init__(self, spectrum: np.ndarray, shape: tuple[int, ...], real: bool,
                 groups: int = 0, adjoint: bool = False):
        self.spectrum, self.shape, self.real = spectrum, shape, real
        self.groups, self.adjoint = groups, adjoint
        self.axes = tuple(range(-len(shape), 0))

    @classmethod
    def of_kernel(cls, kernel_circular: np.ndarray, shape, real: bool,
                  groups: int = 0) -> "_Transform":
        forward = sp_fft.rfftn if real else sp_fft.fftn
        spectrum = forward(kernel_circular, axes=tuple(range(-len(shape), 0)),
                           workers=get_workers())
        spectrum.flags.writeable = False  # engines may share it
        return cls(spectrum, tuple(shape), real, groups)

    def conjugate(self) -> "_Transform":
        """Circular convolution with the conjugate spectrum: the adjoint."""
        spectrum = self.spectrum.conj() if self.groups else self.spectrum
        return _Transform(spectrum, self.shape, self.real, self.groups, not self.adjoint)

    def _mix(self, X):
        if not self.groups:
            if self.adjoint:  # X conj(K) = conj(conj(X) K), all in place
                np.conjugate(X, out=X)
                X *= self.spectrum
                return np.conjugate(X, out=X)
            X *= self.spectrum
            return X
        g = self.groups
        K = self.spectrum.reshape((g, -1) + self.spectrum.shape[1:])
        Xg = X.reshape(X.shape[:1] + (g, -1) + X.shape[2:])
        rule = "goc...,bgo...->bgc..." if self.adjoint else "goc...,bgc...->bgo..."
        Y = np.einsum(rule, K, Xg, optimize=True)
        return Y.reshape(Y.shape[:1] + (-1,) + Y.shape[3:])

    def __call__(self, x):
        workers = get_workers()
        if self.real:
            X = self._mix(sp_fft.rfftn(x, s=self.shape, axes=self.axes, workers=workers))
            if len(self.axes) > 1:  # the inner axes in place (irfftn would copy X first)
                X = sp_fft.ifftn(X, axes=self.axes[:-1], overwrite_x=True, workers=workers)
            return sp_fft.irfft(X, n=self.shape[-1], axis=-1, workers=workers)
        X = sp_fft.fftn(x, s=self.shape, axes=self.axes, workers=workers)
        return sp_fft.ifftn(self._mix(X), s=self.shape, axes=self.axes, overwrite_x=True,
                            workers=workers)


class _OverlapSave:
    """1-D valid correlation ``y[i] = sum_t k[t] * x[i + t]`` by overlap-save blocks."""

    def __init__(self, kernel: np.ndarray, block: int, real: bool):
        self.transform = _Transform.of_kernel(place_circular(kernel, (block,), (0,)), (block,),
                                              real)

    def __call__(self, x, blocks):
        """Run the :class:`~linconv._plans.OverlapSavePlan` `blocks` on a batch ``(B, n)``."""
        if x.shape[-1] < blocks.need:
            x = np.pad(x, ((0, 0), (0, blocks.need - x.shape[-1])))
        windows = np.lib.stride_tricks.sliding_window_view(
            x, blocks.block, axis=-1)[:, :blocks.need - blocks.block + 1:blocks.step]
        y = self.transform(windows)[..., :blocks.step]
        return y.reshape(len(x), -1)[:, :blocks.out_len]


class FFTEngine(_MatrixOnDemand):
    """The convolution theorem, executing a :class:`~linconv._plans.FFTPlan`.

    Whole-signal transforms long enough that the circular correlation equals
    the linear one on every output read.  For the zero boundary the padding
    offset is folded into the kernel (no padded copy of the input); other
    boundaries extend the input first.  The adjoint runs the factors in
    reverse: zero insertion (``S^T``), the conjugate spectrum, and the fold
    (``P^T``).  Long 1-D signals with short kernels use overlap-save blocks.

    Spectra are computed per compute dtype (float64 data with a float32 kernel
    uses a float64 spectrum of the same kernel), once, on first use, under a
    lock; construction only records the sizes.
    """

    name = "fft"

    def __init__(self, geometry: Geometry, weights: np.ndarray, reason: str = ""):
        self.geometry = geometry
        self.weights_given = weights
        self.real_kernel = weights.dtype.kind != "c"
        self._reason = reason
        self._plan = None
        self._transforms = _Lazy(self._transform)

    @property
    def plan(self):
        """The :class:`~linconv._plans.FFTPlan` this engine executes (computed once)."""
        if self._plan is None:
            self._plan = fft_plan(self.geometry, self.real_kernel, self._reason)
        return self._plan

    def _transform(self, dtype):
        """(forward, adjoint) transforms with the kernel spectrum in `dtype`'s precision."""
        g, plan = self.geometry, self.plan
        weights = self.weights_given.astype(dtype, copy=False)
        if plan.blocks:
            dilated = dilate(g, weights)
            block = plan.shape[0]
            return (_OverlapSave(dilated, block, self.real_kernel),
                    _OverlapSave(np.flip(dilated).conj(), block, self.real_kernel))
        groups = g.channels.groups if g.channels else 0
        return self.transform_pair(dilate(g, weights), plan.shape, plan.offsets,
                                   self.real_kernel, groups)

    @staticmethod
    def transform_pair(kernel, shape, offsets, real, groups):
        """(forward, adjoint) transforms of the dilated `kernel` placed at `offsets` on a
        grid of `shape`.  Everything the spectrum depends on is an argument, so a cache
        of this function is shared by every engine with the same grid (the blocks of a
        dask array, :func:`linconv._dask._local_operator`, set one per instance)."""
        transform = _Transform.of_kernel(place_circular(kernel, shape, offsets), shape, real,
                                         groups)
        return transform, transform.conjugate()

    def _transforms_for(self, x):
        return self._transforms(np.result_type(x.dtype, self.weights_given.dtype))

    def workspace_bytes(self, batch: int, itemsize: int) -> int:
        g = self.geometry
        ch = g.channels
        size = self.plan.transform_size
        per_item = (ch.in_channels + ch.out_channels) if ch else 2
        spectrum = size * (ch.out_channels * ch.in_per_group if ch else 1)
        return 2 * itemsize * (spectrum + 2 * batch * per_item * size) + \
            super().workspace_bytes(batch, itemsize)

    @_split_complex
    def forward(self, x):
        g, plan = self.geometry, self.plan
        transform = self._transforms_for(x)[0]
        if plan.blocks:
            return subsample(g, transform(extend(g, x), plan.blocks[0]))
        return subsample(g, transform(extend(g, x) if plan.extend else x))

    @_split_complex
    def adjoint(self, y):
        g, plan = self.geometry, self.plan
        transform = self._transforms_for(y)[1]
        if plan.strided:
            y = upsample(g, y)
        if plan.blocks:
            r = transform(_cut_and_pad(y, plan.adjoint_pass), plan.blocks[1])
        else:
            r = transform(y)[(Ellipsis,) + tuple(slice(0, n) for n in plan.adjoint_crop)]
        return extend_adjoint(g, r) if plan.extend else r


# -- channels: the layer engines, executing a LayerPlan (linconv._plans) -------------
def _place(plan, x, grids) -> None:
    """``P`` then the phase split: write `x` (``(*lead, *spatial)``, extended first when the
    plan says so) onto the zeroed phase grids ``(phases, *lead, *grid)``."""
    for phase, source, target in plan.placements:
        grids[(phase, Ellipsis) + target] = x[(Ellipsis,) + source]


def _unplace(plan, geometry, grids, lead, dtype) -> np.ndarray:
    """Transpose of :func:`_place` (then ``P^T``): the phase grids back onto the input."""
    shape = geometry.padded_shape if plan.extend else geometry.spatial_input_shape
    out = np.empty(tuple(lead) + shape, dtype=dtype)
    for phase, source, target in plan.placements:
        out[(Ellipsis,) + source] = grids[(phase, Ellipsis) + target]
    return extend_adjoint(geometry, out) if plan.extend else out


def _crop(plan) -> tuple:
    return (Ellipsis,) + tuple(slice(0, m) for m in plan.output_shape)


class _LayerEngine(_MatrixOnDemand):
    """Shared part of the layer engines: weights per tap and the plan, made on first use."""

    name = "direct"
    engine = ""

    def __init__(self, geometry: Geometry, weights: np.ndarray, reason: str = ""):
        self.geometry = geometry
        self.weights_given = weights
        self.reason = reason or f"method='direct' with the {self.engine} engine"
        self._plan = None

    @property
    def plan(self):
        """The :class:`~linconv._plans.LayerPlan` this engine executes (computed once)."""
        if self._plan is None:
            taps = self.geometry.active_taps(self.weights_given)[1]
            block, reason = GEMM_BLOCK, self.reason
            if self.engine == "depthwise":
                block = DEPTHWISE_BLOCK
                reason += (f"; a batch with rows shorter than {DEPTHWISE_MIN_ROW} samples "
                           "(batch x grid) runs the GEMM engine")
            self._plan = layer_plan(self.geometry, taps, self.engine, reason, block)
        return self._plan

    def _per_tap(self) -> np.ndarray:
        """The weights ``(C_out, C_in // groups, len(plan.taps))`` of the planned taps."""
        per_tap = self.geometry.active_taps(self.weights_given)[0]
        return per_tap[:, :, list(self.plan.taps)]


class GemmEngine(_LayerEngine):
    """Multi-channel correlation as channel-mixing GEMMs on shifted copies (im2col in chunks).

    The plan's phases are flattened per channel over ``(batch, *grid)``; tap
    ``t`` then reads a contiguous slice of one phase at a constant offset, so
    the output is ``sum_t W_t @ X[phase_t][:, offset_t : offset_t + N]`` with
    ``W_t`` the ``(C_out, C_in)`` matrix of the tap (block-diagonal over
    groups).  One chunk of the grid at a time, the slices of every tap are
    copied into one cache-sized buffer, stacked along the channels, and one
    product with the weights of all taps (``K = taps * C_in / groups``) gives
    the chunk of the output: BLAS at its most efficient shape, no sum of
    partial products and no im2col matrix of the whole input.  The adjoint
    runs the same products in reverse as a gather, one phase at a time: each
    phase is ``sum W_t^H @ Y`` over slices of the output grid placed after
    ``tail`` zeros and shifted back by the tap offsets (the full correlation),
    so nothing is scattered.
    """

    engine = "gemm"

    def _weights(self):
        """``(G, out/g, T * in/g)`` forward weights (slot-major: tap, then channel) and,
        per phase, the adjoint's ``(G, in/g, T_p * out/g)`` over the taps of that phase."""
        if getattr(self, "_w", None) is None:
            ch, plan = self.geometry.channels, self.plan
            per_tap = self._per_tap().reshape(ch.groups, ch.out_per_group, ch.in_per_group, -1)
            forward = per_tap.transpose(0, 1, 3, 2).reshape(ch.groups, ch.out_per_group, -1)
            adjoint = [np.ascontiguousarray(per_tap[..., list(plan.phase_taps(p))].conj()
                                            .transpose(0, 2, 3, 1).reshape(ch.groups,
                                                                           ch.in_per_group, -1))
                       for p in range(plan.phases)]
            self._w = np.ascontiguousarray(forward), adjoint
        return self._w

    @staticmethod
    def _products(weights, chunks) -> None:
        """``dest = weights @ stack(views)`` per chunk ``(dest, views)``: `weights`
        ``(G, rows, k * per)``, `dest` ``(G, rows, *shape)`` and `views` the `k` slices
        ``(G, per, *shape)``, stacked along the channels in one buffer reused by the
        chunks.  The product goes straight into `dest` when it is a matrix view
        (e.g. rows of one batch item of the output), else through a buffer."""
        groups, rows, k = weights.shape
        most = max((math.prod(dest.shape[2:]) for dest, _ in chunks), default=0)
        buffer = np.empty(groups * k * most, dtype=weights.dtype)
        result = np.empty(groups * rows * most, dtype=weights.dtype)
        for dest, views in chunks:
            if not views:
                dest[...] = 0
                continue
            width = math.prod(dest.shape[2:])
            stacked = buffer[:groups * k * width].reshape(
                (groups, len(views), k // len(views)) + dest.shape[2:])
            for slot, view in enumerate(views):
                stacked[:, slot] = view
            into = dest.reshape(groups, rows, width)
            direct = np.may_share_memory(into, dest)  # a view, not a copy
            if not direct:
                into = result[:groups * rows * width].reshape(groups, rows, width)
            np.matmul(weights, stacked.reshape(groups, k, width), out=into)
            if not direct:
                dest[...] = into.reshape(dest.shape)

    def _slabs(self, weights, source, reads, box, batch, dest):
        """The products for the grid positions in `box` (one slice per grid axis) of every
        batch item: each of `reads` ``(phase, offset)`` views `source` ``(phases, G, per,
        len)`` at its offset as grids, cropped to `box`.  Chunks are slabs of rows of
        the first axis of one batch item or, when a whole box is smaller than a chunk,
        several batch items; ``dest(b0, b1, r0, r1)`` is where items ``b0:b1``, rows
        ``r0:r1`` of the box go: a view ``(G, rows, b1 - b0, r1 - r0, *box[1:])``."""
        plan = self.plan
        first, rest = box[0], tuple(box[1:])
        size = plan.grid_size
        spans = plan.slabs(first.stop - first.start, batch,
                           max(len(reads), 1) * source.shape[1] * source.shape[2],
                           weights.itemsize)
        chunks = []
        for b0, b1, r0, r1 in spans:
            crop = (Ellipsis, slice(first.start + r0, first.start + r1)) + rest
            views = [source[p, :, :, o + b0 * size:o + b1 * size]
                     .reshape(source.shape[1:3] + (b1 - b0,) + plan.grid)[crop] for p, o in reads]
            chunks.append((dest(b0, b1, r0, r1), views))
        self._products(weights, chunks)

    def forward(self, x):
        g, ch, plan = self.geometry, self.geometry.channels, self.plan
        batch = len(x)
        n = batch * plan.grid_size
        dtype = np.result_type(x, self.weights_given)
        source = np.zeros((plan.phases, ch.groups, ch.in_per_group, n + plan.tail), dtype=dtype)
        _place(plan, np.swapaxes(extend(g, x) if plan.extend else x, 0, 1),
               source[..., :n].reshape((plan.phases, ch.in_channels, batch) + plan.grid))
        out = np.empty((batch, ch.out_channels) + plan.output_shape, dtype=dtype)
        # the output box of the grid, written straight into the output
        groups = out.reshape((batch, ch.groups, ch.out_per_group) + plan.output_shape)
        self._slabs(self._weights()[0].astype(dtype, copy=False), source,
                    list(zip(plan.phase, plan.offset)),
                    tuple(slice(0, m) for m in plan.output_shape), batch,
                    lambda b0, b1, r0, r1: np.moveaxis(groups[b0:b1, :, :, r0:r1], 0, 2))
        return out

    def adjoint(self, y):
        g, ch, plan = self.geometry, self.geometry.channels, self.plan
        batch = len(y)
        n = batch * plan.grid_size
        dtype = np.result_type(y, self.weights_given)
        shifted = np.zeros((ch.out_channels, plan.tail + n), dtype=dtype)
        shifted[:, plan.tail:].reshape((ch.out_channels, batch) + plan.grid)[_crop(plan)] = \
            np.swapaxes(y, 0, 1)  # S^T, after `tail` zeros
        shifted = shifted.reshape(1, ch.groups, ch.out_per_group, -1)
        weights = [w.astype(dtype, copy=False) for w in self._weights()[1]]
        reads = [[(0, plan.adjoint_offset[i]) for i in plan.phase_taps(p)]
                 for p in range(plan.phases)]
        if all(sl.step in (None, 1) for _, source, _ in plan.placements for sl in source):
            # each phase's placement box of the grid, written straight into the input
            shape = g.padded_shape if plan.extend else g.spatial_input_shape
            out = np.empty((batch, ch.in_channels) + shape, dtype=dtype)
            groups = out.reshape((batch, ch.groups, ch.in_per_group) + shape)
            for phase, source, target in plan.placements:
                def dest(b0, b1, r0, r1, source=source):
                    rows = slice(source[0].start + r0, source[0].start + r1)
                    view = groups[(slice(b0, b1), slice(None), slice(None), rows) + source[1:]]
                    return np.moveaxis(view, 0, 2)

                self._slabs(weights[phase], shifted, reads[phase], target, batch, dest)
            return extend_adjoint(g, out) if plan.extend else out
        target = np.empty((plan.phases, ch.groups, ch.in_per_group, n), dtype=dtype)
        for phase in range(plan.phases):
            columns = plan.columns(max(len(reads[phase]), 1) * ch.out_channels, target.itemsize)
            self._products(weights[phase], [
                (target[phase, :, :, c0:c0 + columns],
                 [shifted[0, :, :, a + c0:a + c0 + min(columns, n - c0)]
                  for _, a in reads[phase]]) for c0 in range(0, n, columns)])
        grids = target.reshape((plan.phases, ch.in_channels, batch) + plan.grid)
        return _unplace(plan, g, np.swapaxes(grids, 1, 2), (batch, ch.in_channels), dtype)


@functools.lru_cache(maxsize=None)
def _blas_axpy(char: str):
    """BLAS ``axpy`` (``y[offy:offy+n] += a * x[offx:offx+n]``, one pass, in place on 1-D
    contiguous arrays) for the dtype of character `char`, or None for the types BLAS
    lacks (float16, long double).  scipy's wrappers hold the GIL while they run."""
    name = {"f": "saxpy", "d": "daxpy", "F": "caxpy", "D": "zaxpy"}.get(char)
    if name is None:
        return None
    from scipy.linalg import blas
    return getattr(blas, name)


def _multiply_add(dst, reads, weights, length, m, fold):
    """Rows of `dst` ``(K, length)`` as sums of scaled rows of flat sources.

    Each of `reads` ``(source, offset, t)`` adds ``weights[t, r] *
    source[s * length + offset:][:length]`` to row ``k``: with ``r = k, s = k // m``
    (an input row feeds `m` output rows) or, with `fold`, for every ``j < m`` with
    ``r = s = k * m + j`` (`m` rows add into one).  Rows of at least ``AXPY_MIN``
    samples run one BLAS ``axpy`` per term on pieces of ``AXPY_CHUNK`` samples (the first
    term a multiply); shorter rows, and dtypes without BLAS, run whole blocks of
    rows with numpy (a multiply and an add per term, a weight column per row).
    """
    rows = len(dst)
    if not reads:
        dst[...] = 0
        return
    axpy = _blas_axpy(dst.dtype.char) if length >= AXPY_MIN else None
    if axpy is None:
        scratch = np.empty_like(dst)
        for i, (j, (source, offset, t)) in enumerate(
                (j, read) for j in range(m if fold else 1) for read in reads):
            if fold:  # rows k * m + j of the source, weights of those rows
                view = source[offset:offset + rows * m * length].reshape(rows, m, length)[:, j]
                w = weights[t].reshape(rows, m)[:, j, None]
                target, term = dst, scratch
            else:  # input row k // m for output row k
                view = source[offset:offset + rows // m * length].reshape(rows // m, 1, length)
                w = weights[t].reshape(rows // m, m, 1)
                target = dst.reshape(rows // m, m, length)
                term = scratch.reshape(target.shape)
            np.multiply(view, w, out=target if i == 0 else term)
            if i:
                target += term
        return
    flat, wl = dst.reshape(-1), weights.tolist()
    for k in range(rows):
        if fold:
            terms = [(source, r * length + offset, wl[t][r]) for r in range(k * m, k * m + m)
                     for source, offset, t in reads]
        else:
            terms = [(source, k // m * length + offset, wl[t][k]) for source, offset, t in reads]
        for c0 in range(0, length, AXPY_CHUNK):
            n = min(AXPY_CHUNK, length - c0)
            start = k * length + c0
            (source, offset, a), *rest = terms
            np.multiply(source[offset + c0:offset + c0 + n], a, out=flat[start:start + n])
            for source, offset, a in rest:
                axpy(source, flat, n, a, offset + c0, 1, start, 1)


def _in_parallel(run, blocks, workers=None) -> None:
    """``run(part)`` on consecutive parts of `blocks`, one per worker thread (at most
    `workers`)."""
    workers = min(workers or get_workers(), len(blocks))
    if workers <= 1:
        if blocks:
            run(blocks)
        return
    edges = np.linspace(0, len(blocks), workers + 1).astype(int)
    futures = [_pool(workers).submit(run, blocks[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    for future in futures:
        future.result()


def _threads(dtype, length: int) -> int | None:
    """Threads of the depthwise engine: one when its rows run BLAS axpy (scipy's wrappers
    hold the GIL, so a second thread only queues for it: the depthwise layer of
    bench_nn.py took 13.9 ms on two threads against 9.6 ms on one), else all."""
    return 1 if length >= AXPY_MIN and _blas_axpy(np.dtype(dtype).char) else None


class DepthwiseEngine(_LayerEngine):
    """Depthwise (one input channel per group) layers as batched single-channel correlation.

    A row is one channel's phase grids flattened over ``(batch, *grid)``; output
    row ``c`` is ``sum_t w[c, t] * phase_t[row, offset_t:]``.  The channels run in
    cache-sized blocks (:meth:`~linconv._plans.LayerPlan.channel_blocks`, shared
    among the threads when the taps run in numpy, see :func:`_threads`): each
    block is placed on zeroed phase grids, run as one multiply-add pass per tap
    (BLAS ``axpy``, see :func:`_multiply_add`) and cropped into the output, so
    the grids never exist for the whole input.  A
    depth multiplier ``C_out / C_in = m > 1`` reads each input row for ``m``
    output rows.  The adjoint gathers with the conjugate weights from the output
    rows placed after ``tail`` zeros (the full correlation), one phase at a time,
    the ``m`` rows of each input channel adding into one, then places the phases
    back onto the input.
    """

    engine = "depthwise"

    def _short(self, length: int):
        """The GEMM engine for rows shorter than ``DEPTHWISE_MIN_ROW`` samples (a small
        batch or grid: there the grouped products beat a BLAS call per row and tap),
        else None."""
        if length >= DEPTHWISE_MIN_ROW:
            return None
        if getattr(self, "_gemm", None) is None:
            self._gemm = GemmEngine(self.geometry, self.weights_given,
                                    "rows shorter than DEPTHWISE_MIN_ROW of the depthwise engine")
        return self._gemm

    def _weights(self):
        """``(T, C_out)`` weights of the planned taps and their conjugates."""
        if getattr(self, "_w", None) is None:
            w = np.ascontiguousarray(self._per_tap()[:, 0, :].T)
            self._w = w, w.conj()
        return self._w

    def forward(self, x):
        g, ch, plan = self.geometry, self.geometry.channels, self.plan
        batch, m = len(x), ch.out_per_group
        length = batch * plan.grid_size  # one row: a channel over the batch
        if self._short(length):
            return self._short(length).forward(x)
        dtype = np.result_type(x, self.weights_given)
        weights = self._weights()[0].astype(dtype, copy=False)
        xe = np.swapaxes(extend(g, x) if plan.extend else x, 0, 1)
        out = np.empty((batch, ch.out_channels) + plan.output_shape, dtype=dtype)

        def run(blocks):
            most = max(c1 - c0 for c0, c1 in blocks)
            source = np.zeros((plan.phases, most * length + plan.tail), dtype=dtype)
            result = np.empty((most * m, length), dtype=dtype)
            reads = [(source[p], o, t) for t, (p, o) in enumerate(zip(plan.phase, plan.offset))]
            for c0, c1 in blocks:
                n = c1 - c0
                _place(plan, xe[c0:c1], source[:, :n * length].reshape(
                    (plan.phases, n, batch) + plan.grid))
                rows = result[:n * m]
                _multiply_add(rows, reads, weights[:, c0 * m:c1 * m], length, m, False)
                out[:, c0 * m:c1 * m] = np.swapaxes(
                    rows.reshape((n * m, batch) + plan.grid)[_crop(plan)], 0, 1)

        _in_parallel(run, plan.channel_blocks(ch.in_channels, m, length),
                     _threads(dtype, length))
        return out

    def adjoint(self, y):
        g, ch, plan = self.geometry, self.geometry.channels, self.plan
        batch, m = len(y), ch.out_per_group
        length = batch * plan.grid_size
        if self._short(length):
            return self._short(length).adjoint(y)
        dtype = np.result_type(y, self.weights_given)
        weights = self._weights()[1].astype(dtype, copy=False)
        ys = np.swapaxes(y, 0, 1)
        shape = g.padded_shape if plan.extend else g.spatial_input_shape
        out = np.empty((batch, ch.in_channels) + shape, dtype=dtype)

        def run(blocks):
            most = max(c1 - c0 for c0, c1 in blocks)
            shifted = np.zeros(plan.tail + most * m * length, dtype=dtype)
            target = np.empty((plan.phases, most, length), dtype=dtype)
            reads = [[(shifted, plan.adjoint_offset[i], i) for i in plan.phase_taps(p)]
                     for p in range(plan.phases)]
            for c0, c1 in blocks:
                n = c1 - c0
                shifted[plan.tail:plan.tail + n * m * length].reshape(
                    (n * m, batch) + plan.grid)[_crop(plan)] = ys[c0 * m:c1 * m]  # S^T
                for p in range(plan.phases):
                    _multiply_add(target[p, :n], reads[p], weights[:, c0 * m:c1 * m], length,
                                  m, True)
                grids = np.swapaxes(target[:, :n].reshape((plan.phases, n, batch) + plan.grid),
                                    1, 2)
                for phase, source, tgt in plan.placements:
                    out[(slice(None), slice(c0, c1)) + source] = grids[(phase, Ellipsis) + tgt]

        _in_parallel(run, plan.channel_blocks(ch.in_channels, m, length),
                     _threads(dtype, length))
        return extend_adjoint(g, out) if plan.extend else out




# -- choosing -------------------------------------------------------------------
_ENGINES = {"sparse": SparseEngine, "fft": FFTEngine, "direct": DirectEngine}


def layer_costs(geometry: Geometry, ntaps: int) -> dict[str, float]:
    """Estimated seconds of the layer engines for one sample (only those that apply)."""
    ch = geometry.channels
    work = max(ntaps, 1) * math.prod(polyphase(geometry)[0]) * ch.out_channels
    costs = {"gemm": work * (GEMM_NS * ch.in_per_group +
                             COPY_NS * ch.in_channels / ch.out_channels) * 1e-9}
    if ch.in_per_group == 1:
        costs["depthwise"] = work * DEPTHWISE_NS * 1e-9
    return costs


def layer_engine(geometry: Geometry, weights: np.ndarray, reason: str = ""):
    """The "direct" engine of a layer: the cheaper of :class:`GemmEngine` and
    :class:`DepthwiseEngine` by :func:`layer_costs`, with the reason in its plan."""
    costs = layer_costs(geometry, len(geometry.active_taps(weights)[1]))
    best = min(costs, key=costs.get)
    if len(costs) == 1:
        why = (f"engine 'gemm': {geometry.channels.in_per_group} input channels per group "
               "(the depthwise engine needs 1)")
    else:
        others = ", ".join(f"{k!r} {v * 1e3:.3g} ms" for k, v in costs.items() if k != best)
        why = f"engine {best!r} estimated {costs[best] * 1e3:.3g} ms per sample < {others}"
    reason = f"{reason}; {why}" if reason else why
    return {"gemm": GemmEngine, "depthwise": DepthwiseEngine}[best](geometry, weights, reason)


_CHANNEL_ENGINES = {"sparse": SparseEngine, "fft": FFTEngine, "direct": layer_engine}


def make_engine(method: str, geometry: Geometry, weights: np.ndarray):
    """Build the engine for `method`; "auto" asks :func:`choose`."""
    if method == "auto":
        method, reason = choose(geometry, weights)
    else:
        reason = f"method={method!r} requested"
    engines = _CHANNEL_ENGINES if geometry.channels else _ENGINES
    return engines[method](geometry, weights, reason)


_SINGLE = (np.dtype(np.float32), np.dtype(np.complex64))


def estimated_seconds(geometry: Geometry, weights: np.ndarray) -> dict[str, float]:
    """The cost model: estimated seconds of one forward application per method."""
    real = weights.dtype.kind != "c"
    taps = max(len(geometry.active_taps(weights)[1]), 1)
    ch = geometry.channels
    plan = fft_plan(geometry, real)
    size = plan.transform_size
    log = math.log2(max(plan.shape[0] if plan.blocks else size, 2))
    factor = 1 if real else 2
    workers = get_workers()
    transform = FFT_NS * size * log * (FFT_SINGLE if weights.dtype in _SINGLE else 1)
    if len(geometry.axes) > 1:
        transform *= FFT_AXES / (1 + FFT_THREADS * (workers - 1))
    if ch is None:
        outputs = math.prod(max(ax.sampled_length, ax.n) for ax in geometry.axes)
        bands = min(workers, max(1, outputs // BAND_MIN))
        direct = DIRECT_NS * taps * outputs / (1 + DIRECT_THREADS * (bands - 1))
        fft = transform
    else:  # transforms of every channel plus the per-frequency channel mixing
        macs = ch.out_channels * ch.in_per_group
        direct = min(layer_costs(geometry, taps).values()) * 1e9
        fft = transform * (ch.in_channels + ch.out_channels) / 2 + MIX_NS * macs * size / 2
    return {"direct": direct * factor * 1e-9, "fft": fft * factor * 1e-9}


def choose(geometry: Geometry, weights: np.ndarray) -> tuple[str, str]:
    """The method "auto" uses for this geometry and weights, and why (see the module docs)."""
    entries = _pattern.pattern_bound(geometry, len(geometry.active_taps(weights)[1]))
    if entries <= SPARSE_LIMIT:
        return "sparse", (f"auto: at most {entries} stored entries (<= {SPARSE_LIMIT}): "
                          "the sparse product has the least overhead")
    costs = estimated_seconds(geometry, weights)
    best = min(costs, key=costs.get)
    others = ", ".join(f"{k!r} {v * 1e3:.3g} ms" for k, v in costs.items() if k != best)
    return best, f"auto: method {best!r} estimated {costs[best] * 1e3:.3g} ms < {others}"


def choose_method(geometry: Geometry, weights: np.ndarray) -> str:
    """The method "auto" uses for this geometry and weights (see :func:`choose`)."""
    return choose(geometry, weights)[0]
