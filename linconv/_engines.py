"""Application engines of the operators: each reads the geometry, none repeats it.

An engine applies the correlation ``A = S C P`` (``forward``) and its
conjugate transpose ``A^H = P^T C^H S^T`` (``adjoint``) to batches of shape
``(B, *input_shape)`` / ``(B, *output_shape)`` already cast to the compute
dtype.

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

- direct: ``DIRECT_NS * taps * outputs / cores`` (ndimage visits every
  non-zero tap for every stride-1 output),
- fft: ``FFT_NS * M * log2(M)`` for the transform size ``M`` (whole signal, or
  the overlap-save blocks),

and takes the cheaper.  With a 1024x1024 image this picks "direct" up to 5x5
kernels and "fft" from 7x7 on.  With channels, "direct" is one GEMM per tap
(``GEMM_NS * C_out * C_in/groups * taps * outputs``) and "fft" adds the
per-frequency channel mixing (``MIX_NS * C_out * C_in/groups * M/2``): a 3x3
layer with 64 channels runs "direct".
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

from ._geometry import Geometry, align_leads, place_circular
from ._sparse import correlation_csr

__all__ = ["make_engine", "choose_method", "SparseEngine", "FFTEngine", "DirectEngine",
           "available_cpus", "get_workers", "set_workers"]
SPARSE_LIMIT = 20_000  # stored entries below which the sparse matrix is fastest
DIRECT_NS = 0.55       # ns per (tap x output) of ndimage, one core
FFT_NS = 0.45          # ns per M*log2(M) of a forward+inverse real transform pair
BAND_MIN = 1 << 16     # outputs per band below which threads do not pay


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
    """The CSR matrix, built on first use and cached; the adjoint reads its CSC transpose
    (a view: no index arrays sized by the number of columns)."""

    name = "sparse"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.weights_given = weights
        geometry.check_pattern_memory(len(geometry.active_taps(weights)[1]), weights.itemsize)
        self._matrices = _Lazy(self._build)

    def _build(self, adjoint: bool):
        if adjoint:
            return self._matrices(False).T.conj()
        return correlation_csr(self.geometry, self.weights_given)

    def matrix(self):
        return self._matrices(False)

    def workspace_bytes(self, batch: int, itemsize: int) -> int:
        g = self.geometry
        built = 0 if False in self._matrices._cache else g.pattern_nbytes(
            len(g.active_taps(self.weights_given)[1]), self.weights_given.itemsize)
        copies = 1 if batch == 1 else 2  # a batch is transposed through the product
        return built + copies * batch * (g.input_size + g.output_size) * itemsize

    @staticmethod
    def _apply(matrix, x, out_shape):
        batch = len(x)
        flat = x.reshape(batch, -1)
        y = matrix @ flat[0] if batch == 1 else (matrix @ flat.T).T
        return np.asarray(y).reshape((batch,) + out_shape)

    def forward(self, x):
        return self._apply(self._matrices(False), x, self.geometry.output_shape)

    def adjoint(self, y):
        return self._apply(self._matrices(True), y, self.geometry.input_shape)


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


def _ndimage_correlate(x, weights, leads, out_shape, mode):
    """``y[i] = sum_m w[m] * ext(x)[i + m - lead]`` for ``i < out_shape`` on every axis.

    ``x`` is a batch ``(B, *shape)``, ``weights`` ``(1, *k)`` (ndimage conjugates
    complex weights: pass them conjugated).  Needs ``0 <= lead <= span - 1`` and
    ``out <= len`` per axis unless `mode` is "constant" (then it pads).
    """
    spans = weights.shape[1:]
    if mode == "constant":
        x, leads = align_leads(x, leads, spans, out_shape)
    if weights.dtype.kind == "c" and x.dtype.kind != "c":
        x = x.astype(np.result_type(x, weights))
    origin = [0] + [lead - span // 2 for lead, span in zip(leads, spans)]
    crop = (slice(None),) + tuple(slice(0, n) for n in out_shape)
    rows, span, lead = x.shape[1], spans[0], leads[0]
    workers = get_workers()
    bands = min(workers, x.size // BAND_MIN, rows // (2 * span))
    if bands <= 1:
        return ndimage.correlate(x, weights, mode=mode, cval=0.0, origin=origin)[crop]

    # Bands of rows in parallel (ndimage releases the GIL), each written in place and
    # extended by ndimage as if it were the whole image; then the rows that read
    # across a band seam (or, for "grid-wrap", across the image edge) are redone.
    out = np.empty(x.shape, dtype=np.result_type(x, weights))
    edges = np.linspace(0, rows, bands + 1).astype(int)
    jobs = [_pool(workers).submit(ndimage.correlate, x[:, r0:r1], weights, mode=mode, cval=0.0,
                           origin=origin, output=out[:, r0:r1])
            for r0, r1 in zip(edges[:-1], edges[1:])]
    for job in jobs:
        job.result()
    after = span - 1 - lead  # rows read past the output row
    redo = [(e - after, e + lead) for e in edges[1:-1]]
    if mode == "grid-wrap":
        redo += [(0, lead), (rows - after, rows)]
    for f0, f1 in redo:
        if f1 > f0:
            source = np.arange(f0 - lead, f1 + after) % rows
            local = ndimage.correlate(x.take(source, axis=1), weights, mode=mode, cval=0.0,
                                      origin=origin)
            out[:, f0:f1] = local[:, lead:lead + f1 - f0]
    return out[crop]


# scipy.ndimage's names for linconv's boundaries
_NDIMAGE_MODE = {"zero": "constant", "wrap": "grid-wrap", "reflect": "mirror",
                 "symmetric": "reflect", "edge": "nearest"}


class DirectEngine(_MatrixOnDemand):
    """Spatial-domain correlation with scipy.ndimage (C loops over the non-zero taps).

    Forward: ndimage extends the input by the boundary rule itself when the
    padding is within the kernel span and the outputs lie inside the input;
    otherwise the geometry extends it first.  Adjoint: the full correlation
    with the flipped conjugate kernel, then the fold ``P^T`` (for the zero
    boundary, directly on the input's window).
    """

    name = "direct"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.weights_given = weights
        self.real_kernel = weights.dtype.kind != "c"
        dilated = geometry.dilate(weights)
        self.weights = np.conj(dilated)[None]  # ndimage conjugates: undo it
        self.adjoint_weights = np.flip(dilated, axis=tuple(range(geometry.ndim)))[None]
        self.native = geometry.boundary == "zero" or geometry.pads_within_span

    def forward(self, x):
        g = self.geometry
        if x.dtype.char not in _NDIMAGE_DTYPES:
            return self._taps_forward(x)
        if self.native:
            y1 = _ndimage_correlate(x, self.weights, [ax.lo for ax in g.axes], g.sampled_shape,
                                    _NDIMAGE_MODE[g.boundary])
        else:
            y1 = _ndimage_correlate(g.extend(x), self.weights, [0] * g.ndim, g.sampled_shape,
                                    "constant")
        return g.subsample(y1)

    def adjoint(self, y):
        # C^H (full correlation with the flipped conjugate kernel) on the input's
        # window of the padded domain, plus the thin frame slabs folded back (P^T).
        g = self.geometry
        if y.dtype.char not in _NDIMAGE_DTYPES:
            return self._taps_adjoint(y)
        if any(ax.stride > 1 for ax in g.axes):
            y = g.upsample(y, g.sampled_shape)
        result = None
        for axis, starts, shape, targets in g.padded_windows():
            window = _ndimage_correlate(y, self.adjoint_weights, g.full_correlation_leads(starts),
                                        shape, "constant")
            if axis is None:
                result = window
                continue
            window = g.extend_adjoint(window, axes=range(axis + 1, g.ndim))
            np.add.at(np.moveaxis(result, axis + 1, 0), targets, np.moveaxis(window, axis + 1, 0))
        return result


    # numpy, one vectorised multiply-add per non-zero tap: any dtype numpy has
    # (long double included, which scipy.ndimage does not take)
    def _taps(self):
        flat = self.weights_given.reshape(-1)
        for t, window in enumerate(self.geometry.tap_slices()):
            if flat[t] != 0:
                yield flat[t], window

    def _taps_forward(self, x):
        g = self.geometry
        xp = g.extend(x)
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
        return g.extend_adjoint(xp)


# ndimage's C loops take these (not float16, long double or complex long double)
_NDIMAGE_DTYPES = set(np.typecodes["AllInteger"] + "fdFD")


# -- fft ---------------------------------------------------------------------------
class _Transform:
    """Circular correlation with a fixed kernel spectrum over the trailing axes.

    With channels the spectrum is ``(C_out, C_in // groups, *F)`` and each
    frequency mixes the channels of a group (``adjoint`` mixes back with the
    conjugate).
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
        return cls(spectrum, tuple(shape), real, groups)

    def conjugate(self) -> "_Transform":
        """Circular convolution with the conjugate spectrum: the adjoint."""
        return _Transform(self.spectrum.conj(), self.shape, self.real, self.groups,
                          not self.adjoint)

    def _mix(self, X):
        if not self.groups:
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
            X = sp_fft.rfftn(x, s=self.shape, axes=self.axes, workers=workers)
            return sp_fft.irfftn(self._mix(X), s=self.shape, axes=self.axes, workers=workers)
        X = sp_fft.fftn(x, s=self.shape, axes=self.axes, workers=workers)
        return sp_fft.ifftn(self._mix(X), s=self.shape, axes=self.axes, overwrite_x=True,
                            workers=workers)


def _ols_block(geometry: Geometry, real: bool) -> int:
    """Overlap-save block length for a long single-channel 1-D signal (0: transform it whole)."""
    if geometry.ndim != 1 or geometry.channels is not None:
        return 0
    ax = geometry.axes[0]
    block = sp_fft.next_fast_len(max(8 * ax.span, 4096), real=real)
    return block if 4 * block <= ax.padded_length else 0


class _OverlapSave:
    """1-D valid correlation ``y[i] = sum_t k[t] * x[i + t]`` by overlap-save blocks."""

    def __init__(self, kernel: np.ndarray, block: int, real: bool):
        self.span = len(kernel)
        self.step = block - self.span + 1
        self.transform = _Transform.of_kernel(place_circular(kernel, (block,), (0,)), (block,),
                                              real)

    @staticmethod
    def blocks(out_len: int, block: int, span: int) -> int:
        """How many blocks cover `out_len` outputs."""
        return -(-out_len // (block - span + 1))

    def __call__(self, x, out_len):
        blocks = self.blocks(out_len, self.transform.shape[0], self.span)
        need = (blocks - 1) * self.step + self.transform.shape[0]
        if x.shape[-1] < need:
            x = np.pad(x, ((0, 0), (0, need - x.shape[-1])))
        windows = np.lib.stride_tricks.sliding_window_view(
            x, self.transform.shape[0], axis=-1)[:, :need - self.transform.shape[0] + 1:self.step]
        y = self.transform(windows)[..., :self.step]
        return y.reshape(len(x), -1)[:, :out_len]


class FFTEngine(_MatrixOnDemand):
    """The convolution theorem with the kernel spectrum computed on first use.

    Whole-signal transforms of length ``next_fast_len(padded_length)``: long
    enough that the circular correlation equals the linear one on every output
    read.  For the zero boundary the padding offset is folded into the kernel
    (no padded copy of the input); other boundaries extend the input first.
    The adjoint runs the factors in reverse: zero insertion (``S^T``), the
    conjugate spectrum, and the fold (``P^T``).  Long 1-D signals with short
    kernels use overlap-save blocks instead.

    Spectra are computed per compute dtype (float64 data with a float32 kernel
    uses a float64 spectrum of the same kernel), once, on first use, under a
    lock; construction only records the sizes.
    """

    name = "fft"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.weights_given = weights
        self.real_kernel = real = weights.dtype.kind != "c"
        self.zero = geometry.boundary == "zero"
        self.block = _ols_block(geometry, real)
        self.shape = tuple(sp_fft.next_fast_len(n, real=real) for n in geometry.padded_shape)
        self._plans = _Lazy(self._plan)

    def _plan(self, dtype):
        """(forward, adjoint) transforms with the kernel spectrum in `dtype`'s precision."""
        g = self.geometry
        weights = self.weights_given.astype(dtype, copy=False)
        if self.block:
            dilated = g.dilate(weights)
            return (_OverlapSave(dilated, self.block, self.real_kernel),
                    _OverlapSave(np.flip(dilated).conj(), self.block, self.real_kernel))
        offsets = tuple(lo for lo, _ in g.pads) if self.zero else (0,) * g.ndim
        groups = g.channels.groups if g.channels else 0
        transform = _Transform.of_kernel(g.circular_kernel(weights, self.shape, offsets),
                                         self.shape, self.real_kernel, groups)
        return transform, transform.conjugate()

    def _plans_for(self, x):
        return self._plans(np.result_type(x.dtype, self.weights_given.dtype))

    def workspace_bytes(self, batch: int, itemsize: int) -> int:
        g = self.geometry
        ch = g.channels
        if self.block:
            size = self.block * _OverlapSave.blocks(g.axes[0].sampled_length, self.block,
                                                    g.axes[0].span)
        else:
            size = math.prod(self.shape)
        per_item = (ch.in_channels + ch.out_channels) if ch else 2
        spectrum = size * (ch.out_channels * ch.in_per_group if ch else 1)
        return 2 * itemsize * (spectrum + 2 * batch * per_item * size) + \
            super().workspace_bytes(batch, itemsize)

    @_split_complex
    def forward(self, x):
        g = self.geometry
        transform = self._plans_for(x)[0]
        if self.block:
            return g.subsample(transform(g.extend(x), g.axes[0].sampled_length))
        return g.subsample(transform(x if self.zero else g.extend(x)))

    @_split_complex
    def adjoint(self, y):
        g = self.geometry
        transform = self._plans_for(y)[1]
        if any(ax.stride > 1 for ax in g.axes):
            y = g.upsample(y, g.sampled_shape)
        crop = g.spatial_input_shape if self.zero else g.padded_shape
        if self.block:
            lead = g.full_correlation_leads([g.axes[0].lo if self.zero else 0])
            z, _ = align_leads(y, lead, [g.axes[0].span], [crop[0]], zero_lead=True)
            r = transform(z, crop[0])
        else:
            r = transform(y)[(Ellipsis,) + tuple(slice(0, n) for n in crop)]
        return r if self.zero else g.extend_adjoint(r)


# -- channels: shifted GEMMs ------------------------------------------------------
class GemmEngine(_MatrixOnDemand):
    """Multi-channel correlation as one channel-mixing GEMM per kernel tap.

    The (extended) input is split into stride phases and flattened per channel
    over ``(batch, *grid)`` (:meth:`Geometry.polyphase`); tap ``t`` then reads a
    contiguous slice of one phase at a constant offset, so the output is
    ``sum_t W_t @ X[phase_t][:, offset_t : offset_t + N]`` with ``W_t`` the
    ``(C_out, C_in)`` matrix of the tap (block-diagonal over groups): BLAS on
    views, no im2col copy, no strided outputs computed and thrown away.  The
    adjoint scatters ``W_t^H @ Y`` back into the same slices.
    """

    name = "direct"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.weights_given = weights
        ch = geometry.channels
        self.grid, self.phase, self.offset = geometry.polyphase()
        per_tap, self.taps = geometry.active_taps(weights)
        per_tap = per_tap.reshape(ch.groups, ch.out_per_group, ch.in_per_group, -1)
        self.w = np.ascontiguousarray(np.moveaxis(per_tap, -1, 0))  # (T, G, out/g, in/g)
        self.w_adjoint = np.ascontiguousarray(self.w.conj().swapaxes(-1, -2))
        self.tail = int(self.offset.max())

    def _flat_size(self, batch: int) -> int:
        return batch * math.prod(self.grid)

    def forward(self, x):
        g, ch = self.geometry, self.geometry.channels
        batch = len(x)
        n = self._flat_size(batch)
        phases = g.to_phases(np.swapaxes(g.extend(x), 0, 1))  # (S, C_in, B, *grid)
        source = np.zeros((len(phases), ch.in_channels, n + self.tail), dtype=x.dtype)
        source[..., :n] = phases.reshape(len(phases), ch.in_channels, n)
        source = source.reshape(len(phases), ch.groups, ch.in_per_group, -1)
        dtype = np.result_type(x, self.w)
        out = np.zeros((ch.groups, ch.out_per_group, n), dtype=dtype)
        term = np.empty_like(out)
        for i, t in enumerate(self.taps):
            start = self.offset[t]
            view = source[self.phase[t], :, :, start:start + n]
            np.matmul(self.w[t], view, out=out if i == 0 else term)
            if i:
                out += term
        out = out.reshape((ch.out_channels, batch) + self.grid)
        out = out[(Ellipsis,) + tuple(slice(0, m) for m in g.spatial_output_shape)]
        return np.swapaxes(out, 0, 1)

    def adjoint(self, y):
        g, ch = self.geometry, self.geometry.channels
        batch = len(y)
        n = self._flat_size(batch)
        grid_y = np.zeros((ch.out_channels, batch) + self.grid, dtype=y.dtype)
        grid_y[(Ellipsis,) + tuple(slice(0, m) for m in g.spatial_output_shape)] = \
            np.swapaxes(y, 0, 1)
        grid_y = grid_y.reshape(ch.groups, ch.out_per_group, n)
        n_phases = math.prod(g.strides)
        dtype = np.result_type(y, self.w)
        target = np.zeros((n_phases, ch.groups, ch.in_per_group, n + self.tail), dtype=dtype)
        term = np.empty((ch.groups, ch.in_per_group, n), dtype=dtype)
        for t in self.taps:
            start = self.offset[t]
            np.matmul(self.w_adjoint[t], grid_y, out=term)
            target[self.phase[t], :, :, start:start + n] += term
        phases = target[..., :n].reshape((n_phases, ch.in_channels, batch) + self.grid)
        return g.extend_adjoint(np.swapaxes(g.from_phases(phases), 0, 1))


# -- choosing -------------------------------------------------------------------
_ENGINES = {"sparse": SparseEngine, "fft": FFTEngine, "direct": DirectEngine}
_CHANNEL_ENGINES = {"sparse": SparseEngine, "fft": FFTEngine, "direct": GemmEngine}
GEMM_NS = 0.04  # ns per multiply-add of the per-tap GEMMs (BLAS, all cores)
MIX_NS = 1.2    # ns per complex multiply-add of the per-frequency channel mixing


def make_engine(method: str, geometry: Geometry, weights: np.ndarray):
    """Build the engine for `method`; "auto" asks :func:`choose_method`."""
    if method == "auto":
        method = choose_method(geometry, weights)
    engines = _CHANNEL_ENGINES if geometry.channels else _ENGINES
    return engines[method](geometry, weights)


def estimated_seconds(geometry: Geometry, weights: np.ndarray) -> dict[str, float]:
    """The cost model: estimated seconds of one forward application per method."""
    real = weights.dtype.kind != "c"
    taps = max(len(geometry.active_taps(weights)[1]), 1)
    ax = geometry.axes[0]
    ch = geometry.channels
    block = _ols_block(geometry, real)
    if block:
        size = block * _OverlapSave.blocks(ax.sampled_length, block, ax.span)
        log = math.log2(block)
    else:
        size = math.prod(sp_fft.next_fast_len(n, real=real) for n in geometry.padded_shape)
        log = math.log2(max(size, 2))
    factor = 1 if real else 2
    if ch is None:
        outputs = math.prod(max(ax.sampled_length, ax.n) for ax in geometry.axes)
        direct = DIRECT_NS * taps * outputs / min(get_workers(), max(1, outputs // BAND_MIN))
        fft = FFT_NS * size * log
    else:  # transforms of every channel plus the per-frequency channel mixing
        outputs = math.prod(geometry.polyphase()[0])  # the grid every tap's GEMM covers
        macs = ch.out_channels * ch.in_per_group
        direct = GEMM_NS * macs * taps * outputs
        fft = FFT_NS * size * log * (ch.in_channels + ch.out_channels) / 2 + \
            MIX_NS * macs * size / 2
    return {"direct": direct * factor * 1e-9, "fft": fft * factor * 1e-9}


def choose_method(geometry: Geometry, weights: np.ndarray) -> str:
    """The method "auto" uses for this geometry and weights (see the module docs)."""
    if geometry.pattern_bound(len(geometry.active_taps(weights)[1])) <= SPARSE_LIMIT:
        return "sparse"
    costs = estimated_seconds(geometry, weights)
    return min(costs, key=costs.get)
