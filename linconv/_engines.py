"""Application engines of the operators: each reads the geometry, none repeats it.

An engine applies the correlation ``A`` (``forward``) and its conjugate
transpose ``A^H`` (``adjoint``) to batches of shape ``(B, *input_shape)`` /
``(B, *output_shape)`` already cast to the compute dtype.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sp_fft
from scipy import ndimage

from ._geometry import Geometry
from ._sparse import correlation_csr

__all__ = ["make_engine", "choose_method", "SparseEngine", "FFTEngine", "DirectEngine"]


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


def _split_complex(apply):
    """Run a real-kernel engine on complex data as two real passes (real, imaginary)."""
    def wrapper(self, x):
        if self.real_kernel and x.dtype.kind == "c":
            return apply(self, x.real) + 1j * apply(self, x.imag)
        return apply(self, x)
    return wrapper


class FFTEngine:
    """The convolution theorem with a kernel spectrum computed once.

    The transform length per axis is ``next_fast_len(padded_length)``: long
    enough that the circular correlation equals the linear one on every output
    read.  For the zero boundary the padding offset is folded into the kernel
    (no padded copy of the input); other boundaries extend the input first.
    The adjoint runs the factors in reverse: zero insertion (``S^T``), the
    conjugate spectrum, and the scatter-add fold (``P^T``).
    """

    name = "fft"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.real_kernel = weights.dtype.kind != "c"
        self.axes = tuple(range(1, geometry.ndim + 1))
        self.zero = geometry.boundary == "zero"
        self.shape = tuple(sp_fft.next_fast_len(n, real=self.real_kernel)
                           for n in geometry.padded_shape)
        offsets = tuple(lo for lo, _ in geometry.pads) if self.zero else (0,) * geometry.ndim
        kernel = geometry.circular_kernel(weights, self.shape, offsets)
        transform = sp_fft.rfftn if self.real_kernel else sp_fft.fftn
        self.spectrum = transform(kernel, workers=-1)

    def _convolve(self, x, spectrum):
        if self.real_kernel:
            X = sp_fft.rfftn(x, s=self.shape, axes=self.axes, workers=-1)
            return sp_fft.irfftn(X * spectrum, s=self.shape, axes=self.axes, workers=-1)
        X = sp_fft.fftn(x, s=self.shape, axes=self.axes, workers=-1)
        return sp_fft.ifftn(X * spectrum, s=self.shape, axes=self.axes, workers=-1)

    @_split_complex
    def forward(self, x):
        g = self.geometry
        return g.subsample(self._convolve(x if self.zero else g.extend(x), self.spectrum))

    @_split_complex
    def adjoint(self, y):
        g = self.geometry
        if any(ax.stride > 1 for ax in g.axes):
            y = g.upsample(y, tuple(ax.sampled_length for ax in g.axes))
        r = self._convolve(y, self.spectrum.conj())
        crop = g.input_shape if self.zero else g.padded_shape
        r = r[(slice(None),) + tuple(slice(0, n) for n in crop)]
        return r if self.zero else g.extend_adjoint(r)


# scipy.ndimage's names for linconv's boundaries
_NDIMAGE_MODE = {"zero": "constant", "wrap": "grid-wrap", "reflect": "mirror",
                 "symmetric": "reflect", "edge": "nearest"}


class DirectEngine:
    """Spatial-domain correlation with scipy.ndimage (C loops over the non-zero taps).

    The forward pass lets ndimage extend the input itself when the geometry
    allows (padding within the kernel span, outputs inside the input), else it
    extends explicitly first.  A leading size-1 kernel axis keeps a batch in one
    call.  ndimage conjugates complex weights, so it is given ``conj(w)``.
    """

    name = "direct"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self.real_kernel = weights.dtype.kind != "c"
        dilated = geometry.dilate(weights)
        self.weights = np.conj(dilated)[None]  # ndimage conjugates: undo it
        self.adjoint_weights = np.flip(dilated, axis=tuple(range(geometry.ndim)))[None]
        self.native = all(0 <= ax.lo <= ax.span - 1 and ax.sampled_length <= ax.n
                          for ax in geometry.axes)

    @staticmethod
    def _correlate(x, weights, leads, mode):
        """``y[i] = sum_m w[m] * ext(x)[i + m - lead]`` on every axis, shape of ``x``."""
        origin = [0] + [lead - span // 2 for lead, span in zip(leads, weights.shape[1:])]
        if weights.dtype.kind == "c" and x.dtype.kind != "c":
            x = x.astype(np.result_type(x, weights))
        return ndimage.correlate(x, weights, mode=mode, cval=0.0, origin=origin)

    def forward(self, x):
        g = self.geometry
        if self.native:
            leads = [ax.lo for ax in g.axes]
            y1 = self._correlate(x, self.weights, leads, _NDIMAGE_MODE[g.boundary])
        else:
            y1 = self._correlate(g.extend(x), self.weights, [0] * g.ndim, "constant")
        return g.subsample(y1)

    def adjoint(self, y):
        # full correlation with the flipped conjugate kernel into the padded domain
        g = self.geometry
        z = g.upsample(y, g.padded_shape)
        r = self._correlate(z, self.adjoint_weights, [ax.span - 1 for ax in g.axes], "constant")
        return g.extend_adjoint(r)


_ENGINES = {"sparse": SparseEngine, "fft": FFTEngine, "direct": DirectEngine}


def make_engine(method: str, geometry: Geometry, weights: np.ndarray):
    """Build the engine for `method`; "auto" asks the cost model."""
    if method == "auto":
        method = choose_method(geometry, weights)
    return _ENGINES[method](geometry, weights)


def choose_method(geometry: Geometry, weights: np.ndarray, batch: int = 1) -> str:
    """The cheapest method by a cost model (see the module docs)."""
    return "fft"
