"""Application engines of the operators: each reads the geometry, none repeats it.

An engine applies the correlation ``A = S C P`` (``forward``) and its
conjugate transpose ``A^H = P^T C^H S^T`` (``adjoint``) to batches of shape
``(B, *input_shape)`` / ``(B, *output_shape)`` already cast to the compute
dtype.

- "sparse": the CSR matrix and its conjugate transpose, built once.
- "direct": scipy.ndimage's C correlation on bands of rows, one per core
  (ndimage releases the GIL); it extends the input itself when it can.
- "fft": the convolution theorem with the kernel spectrum computed once;
  long 1-D signals use overlap-save blocks (cache-sized transforms).

How "auto" decides (:func:`choose_method`): tiny problems (at most
``SPARSE_LIMIT`` stored entries) use "sparse", whose per-call overhead is
lowest.  Otherwise it compares two cost estimates calibrated on this 2-core
machine with ``benchmarks/bench_apply.py --methods``:

- direct: ``DIRECT_NS * taps * outputs / cores`` (ndimage visits every
  non-zero tap for every stride-1 output),
- fft: ``FFT_NS * M * log2(M)`` for the transform size ``M`` (whole signal, or
  the overlap-save blocks),

and takes the cheaper.  With a 1024x1024 image this picks "direct" up to 5x5
kernels and "fft" from 7x7 on.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sp_fft
from scipy import ndimage

from ._geometry import Geometry, align_leads, place_circular
from ._sparse import correlation_csr

__all__ = ["make_engine", "choose_method", "SparseEngine", "FFTEngine", "DirectEngine"]

CORES = os.cpu_count() or 1
SPARSE_LIMIT = 20_000  # stored entries below which the sparse matrix is fastest
DIRECT_NS = 0.55       # ns per (tap x output) of ndimage, one core
FFT_NS = 0.45          # ns per M*log2(M) of a forward+inverse real transform pair
BAND_MIN = 1 << 16     # outputs per band below which threads do not pay


class SparseEngine:
    """The CSR matrix and its conjugate transpose, built once and cached."""

    name = "sparse"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self._matrix = correlation_csr(geometry, weights)
        self._adjoint = self._matrix.T.conj().tocsr()

    def matrix(self):
        return self._matrix

    @staticmethod
    def _apply(matrix, x, out_shape):
        batch = len(x)
        flat = x.reshape(batch, -1)
        y = matrix @ flat[0] if batch == 1 else (matrix @ flat.T).T
        return np.asarray(y).reshape((batch,) + out_shape)

    def forward(self, x):
        return self._apply(self._matrix, x, self.geometry.output_shape)

    def adjoint(self, y):
        return self._apply(self._adjoint, y, self.geometry.input_shape)


class _MatrixOnDemand:
    """``matrix()`` for the matrix-free engines: built on request, never cached."""

    geometry: Geometry
    weights_given: np.ndarray

    def matrix(self):
        return correlation_csr(self.geometry, self.weights_given)


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


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(CORES, thread_name_prefix="linconv")
        return _POOL


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
    bands = min(CORES, x.size // BAND_MIN, rows // (2 * span))
    if bands <= 1:
        return ndimage.correlate(x, weights, mode=mode, cval=0.0, origin=origin)[crop]

    # Bands of rows in parallel (ndimage releases the GIL), each written in place and
    # extended by ndimage as if it were the whole image; then the rows that read
    # across a band seam (or, for "grid-wrap", across the image edge) are redone.
    out = np.empty(x.shape, dtype=np.result_type(x, weights))
    edges = np.linspace(0, rows, bands + 1).astype(int)
    jobs = [_pool().submit(ndimage.correlate, x[:, r0:r1], weights, mode=mode, cval=0.0,
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
        self.native = geometry.boundary == "zero" or all(
            0 <= ax.lo <= ax.span - 1 and ax.sampled_length <= ax.n for ax in geometry.axes)

    def forward(self, x):
        g = self.geometry
        sampled = tuple(ax.sampled_length for ax in g.axes)
        if self.native:
            y1 = _ndimage_correlate(x, self.weights, [ax.lo for ax in g.axes], sampled,
                                    _NDIMAGE_MODE[g.boundary])
        else:
            y1 = _ndimage_correlate(g.extend(x), self.weights, [0] * g.ndim, sampled, "constant")
        return g.subsample(y1)

    def adjoint(self, y):
        # C^H (full correlation with the flipped conjugate kernel) on the input's
        # window of the padded domain, plus the thin frame slabs folded back (P^T).
        g = self.geometry
        if any(ax.stride > 1 for ax in g.axes):
            y = g.upsample(y, tuple(ax.sampled_length for ax in g.axes))
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


# -- fft ---------------------------------------------------------------------------
class _Transform:
    """Circular correlation with a fixed kernel spectrum over the last `ndim` axes."""

    def __init__(self, spectrum: np.ndarray, shape: tuple[int, ...], real: bool):
        self.spectrum, self.shape, self.real = spectrum, shape, real
        self.axes = tuple(range(-len(shape), 0))

    @classmethod
    def of_kernel(cls, kernel_circular: np.ndarray, real: bool) -> "_Transform":
        forward = sp_fft.rfftn if real else sp_fft.fftn
        return cls(forward(kernel_circular, workers=-1), kernel_circular.shape, real)

    def conjugate(self) -> "_Transform":
        """Circular convolution with the conjugate spectrum: the adjoint."""
        return _Transform(self.spectrum.conj(), self.shape, self.real)

    def __call__(self, x):
        if self.real:
            X = sp_fft.rfftn(x, s=self.shape, axes=self.axes, workers=-1)
            X *= self.spectrum
            return sp_fft.irfftn(X, s=self.shape, axes=self.axes, workers=-1)
        X = sp_fft.fftn(x, s=self.shape, axes=self.axes, workers=-1)
        X *= self.spectrum
        return sp_fft.ifftn(X, s=self.shape, axes=self.axes, overwrite_x=True, workers=-1)


def _ols_block(span: int, length: int, real: bool) -> int:
    """Overlap-save block length for a 1-D kernel `span` on a `length` signal (0: none)."""
    block = sp_fft.next_fast_len(max(8 * span, 4096), real=real)
    return block if 4 * block <= length else 0


class _OverlapSave:
    """1-D valid correlation ``y[i] = sum_t k[t] * x[i + t]`` by overlap-save blocks."""

    def __init__(self, kernel: np.ndarray, block: int, real: bool):
        self.span = len(kernel)
        self.step = block - self.span + 1
        self.transform = _Transform.of_kernel(place_circular(kernel, (block,), (0,)), real)

    def __call__(self, x, out_len):
        blocks = -(-out_len // self.step)
        need = (blocks - 1) * self.step + self.transform.shape[0]
        if x.shape[-1] < need:
            x = np.pad(x, ((0, 0), (0, need - x.shape[-1])))
        windows = np.lib.stride_tricks.sliding_window_view(
            x, self.transform.shape[0], axis=-1)[:, :need - self.transform.shape[0] + 1:self.step]
        y = self.transform(windows)[..., :self.step]
        return y.reshape(len(x), -1)[:, :out_len]


class FFTEngine(_MatrixOnDemand):
    """The convolution theorem with the kernel spectrum computed once.

    Whole-signal transforms of length ``next_fast_len(padded_length)``: long
    enough that the circular correlation equals the linear one on every output
    read.  For the zero boundary the padding offset is folded into the kernel
    (no padded copy of the input); other boundaries extend the input first.
    The adjoint runs the factors in reverse: zero insertion (``S^T``), the
    conjugate spectrum, and the fold (``P^T``).  Long 1-D signals with short
    kernels use overlap-save blocks instead.
    """

    name = "fft"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.weights_given = weights
        self.real_kernel = real = weights.dtype.kind != "c"
        self.zero = geometry.boundary == "zero"
        ax = geometry.axes[0]
        self.block = _ols_block(ax.span, ax.padded_length, real) if geometry.ndim == 1 else 0
        if self.block:
            dilated = geometry.dilate(weights)
            self.ols_forward = _OverlapSave(dilated, self.block, real)
            self.ols_adjoint = _OverlapSave(np.flip(dilated).conj(), self.block, real)
            return
        shape = tuple(sp_fft.next_fast_len(n, real=real) for n in geometry.padded_shape)
        offsets = tuple(lo for lo, _ in geometry.pads) if self.zero else (0,) * geometry.ndim
        self.transform = _Transform.of_kernel(geometry.circular_kernel(weights, shape, offsets),
                                              real)
        self.adjoint_transform = self.transform.conjugate()

    @_split_complex
    def forward(self, x):
        g = self.geometry
        if self.block:
            ax = g.axes[0]
            return g.subsample(self.ols_forward(g.extend(x), ax.sampled_length))
        return g.subsample(self.transform(x if self.zero else g.extend(x)))

    @_split_complex
    def adjoint(self, y):
        g = self.geometry
        if any(ax.stride > 1 for ax in g.axes):
            y = g.upsample(y, tuple(ax.sampled_length for ax in g.axes))
        crop = g.input_shape if self.zero else g.padded_shape
        if self.block:
            ax = g.axes[0]
            lead = ax.span - 1 - (ax.lo if self.zero else 0)
            z, _ = align_leads(y, [lead], [ax.span], [crop[0]], zero_lead=True)
            r = self.ols_adjoint(z, crop[0])
        else:
            r = self.adjoint_transform(y)[(slice(None),) + tuple(slice(0, n) for n in crop)]
        return r if self.zero else g.extend_adjoint(r)


# -- choosing -------------------------------------------------------------------
_ENGINES = {"sparse": SparseEngine, "fft": FFTEngine, "direct": DirectEngine}


def make_engine(method: str, geometry: Geometry, weights: np.ndarray):
    """Build the engine for `method`; "auto" asks :func:`choose_method`."""
    if method == "auto":
        method = choose_method(geometry, weights)
    return _ENGINES[method](geometry, weights)


def estimated_seconds(geometry: Geometry, weights: np.ndarray) -> dict[str, float]:
    """The cost model: estimated seconds of one forward application per method."""
    taps = max(int(np.count_nonzero(weights)), 1)
    outputs = math.prod(max(ax.sampled_length, ax.n) for ax in geometry.axes)
    direct = DIRECT_NS * 1e-9 * taps * outputs / min(CORES, max(1, outputs // BAND_MIN))
    real = weights.dtype.kind != "c"
    ax = geometry.axes[0]
    block = _ols_block(ax.span, ax.padded_length, real) if geometry.ndim == 1 else 0
    if block:
        size = block * -(-ax.sampled_length // (block - ax.span + 1))
        log = math.log2(block)
    else:
        size = math.prod(sp_fft.next_fast_len(n, real=real) for n in geometry.padded_shape)
        log = math.log2(max(size, 2))
    fft = FFT_NS * 1e-9 * size * log * (1 if real else 2)
    return {"direct": direct, "fft": fft}


def choose_method(geometry: Geometry, weights: np.ndarray) -> str:
    """The method "auto" uses for this geometry and kernel (see the module docs)."""
    if geometry.pattern_bound(int(np.count_nonzero(weights))) <= SPARSE_LIMIT:
        return "sparse"
    costs = estimated_seconds(geometry, weights)
    return min(costs, key=costs.get)
