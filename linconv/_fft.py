"""The convolution theorem: spectra, exact spectral solves and preconditioners.

For the periodic boundary ("wrap", stride 1, output the size of the input) the
matrix is circulant (multilevel circulant in N-D) and the DFT diagonalises it:
``A = ifftn . diag(lam) . fftn``.  For the half-sample symmetric boundary and a
kernel symmetric along every axis (odd sizes) the orthonormal DCT-II does:
``A = C^T diag(lam) C``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import scipy.fft as sp_fft

from ._convolve import _apply as _apply_kernel
from ._engines import get_workers
from ._factors import circular_kernel
from ._geometry import Geometry
from ._operator import ConvolutionOperator, ShapedOperator
from ._sparse import correlation_weights
from ._validation import as_array, as_kernel, as_shape, check_memory

__all__ = ["convolve", "correlate", "eigenvalues", "dct_eigenvalues", "solve", "preconditioner",
           "SpectralOperator", "SpectralModel", "IllConditionedWarning"]


class IllConditionedWarning(RuntimeWarning):
    """A spectral solve without damping on a nearly singular operator."""


def convolve(x, kernel, mode="full", *, boundary="zero", stride=1, dilation=1):
    """N-D convolution by the convolution theorem, for every geometry of :func:`linconv.convolve`.

    The same engine as ``ConvolutionOperator(..., method="fft")``: boundary
    extension, crop and stride from the geometry, the kernel's spectrum on a
    ``next_fast_len`` grid (overlap-save blocks for long 1-D signals).

    Examples
    --------
    >>> import linconv
    >>> linconv.fft.convolve([1.0, 2.0, 3.0], [1.0, 1.0])
    array([1., 3., 5., 3.])
    """
    return _apply_kernel(x, kernel, mode, boundary, stride, dilation, "fft", False)


def correlate(x, kernel, mode="full", *, boundary="zero", stride=1, dilation=1):
    """N-D correlation (kernel not conjugated) by the convolution theorem.

    Examples
    --------
    >>> import linconv
    >>> linconv.fft.correlate([1.0, 2.0, 3.0], [1.0, -1.0], "valid")
    array([-1., -1.])
    """
    return _apply_kernel(x, kernel, mode, boundary, stride, dilation, "fft", True)


def _circulant(kernel, input_shape, mode, correlate) -> Geometry:
    geometry = Geometry.from_args(kernel.shape, input_shape, mode, "wrap")
    if not geometry.is_circulant:
        raise ValueError(
            f"the operator is not circulant with `mode`={mode!r}: eigenvalues need an output "
            f"the size of the input (mode 'same' or padding lo + hi = kernel size - 1 on every "
            f"axis); got output {geometry.output_shape} for input {geometry.input_shape}")
    return geometry


def eigenvalues(kernel, input_shape, *, mode="same", boundary="wrap", correlate=False):
    """Eigenvalues of the circulant (BCCB in 2-D, multilevel circulant in N-D) operator.

    ``ConvolutionOperator(kernel, input_shape, mode, boundary="wrap")`` equals
    ``ifftn(lam * fftn(x))``; `lam` has shape `input_shape` in numpy's fftn
    ordering.  Kernels longer than the input wrap around (their taps add).

    Raises
    ------
    ValueError
        For any other geometry (not periodic, or an output of another size).

    Examples
    --------
    >>> import numpy as np, linconv
    >>> lam = linconv.fft.eigenvalues([1.0, 2.0, 1.0], (4,))
    >>> lam.real
    array([4., 2., 0., 2.])
    >>> x = np.array([1.0, 0.0, 0.0, 0.0])
    >>> np.fft.ifft(lam * np.fft.fft(x)).real
    array([2., 1., 0., 1.])
    """
    kernel = as_kernel(kernel)
    if boundary != "wrap":
        raise ValueError(f"`boundary` must be 'wrap' for circulant eigenvalues; got "
                         f"{boundary!r} (see linconv.fft.dct_eigenvalues for 'symmetric')")
    geometry = _circulant(kernel, input_shape, mode, correlate)
    return sp_fft.fftn(circular_kernel(geometry, correlation_weights(kernel, correlate)),
                       workers=get_workers())


def _check_symmetric(kernel, what="kernel") -> None:
    odd = all(k % 2 == 1 for k in kernel.shape)
    symmetric = all(np.allclose(kernel, np.flip(kernel, axis), rtol=1e-12, atol=0)
                    for axis in range(kernel.ndim))
    if not (odd and symmetric):
        raise ValueError(
            f"the DCT diagonalises the 'symmetric' boundary only for a {what} symmetric along "
            f"every axis with odd sizes (h == flip(h, axis)); got shape {kernel.shape}"
            f"{'' if symmetric else ', not symmetric'}; use linconv.deconvolve instead")


def _is_symmetric(kernel) -> bool:
    try:
        _check_symmetric(kernel)
    except ValueError:
        return False
    return True


def dct_eigenvalues(kernel, input_shape, *, correlate=False):
    """Eigenvalues of the "same" operator with the "symmetric" boundary and a symmetric kernel.

    With ``C`` the orthonormal N-D DCT-II,
    ``ConvolutionOperator(kernel, input_shape, "same", boundary="symmetric") == C^T diag(lam) C``
    for a kernel symmetric along every axis with odd sizes (Ng, Chan & Tang,
    1999); `lam` is real, of shape `input_shape`.

    Examples
    --------
    >>> import numpy as np, scipy.fft, linconv
    >>> lam = linconv.fft.dct_eigenvalues([1.0, 2.0, 1.0], (4,))
    >>> x = np.array([3.0, 1.0, 4.0, 1.0])
    >>> y = scipy.fft.idct(lam * scipy.fft.dct(x, norm="ortho"), norm="ortho")
    >>> bool(np.allclose(y, linconv.convolve(x, [1, 2, 1], "same", boundary="symmetric")))
    True
    """
    kernel = as_kernel(kernel)
    _check_symmetric(kernel)
    input_shape = as_shape(input_shape)
    if kernel.ndim != len(input_shape):
        raise ValueError(f"`kernel` must have one axis per input axis ({len(input_shape)}); "
                         f"got shape {kernel.shape}")
    # A e0 lives within the kernel's reach of the corner and never meets the far edge,
    # so a (k + 1)-sized problem gives it exactly.
    small = tuple(min(n, k + 1) for n, k in zip(input_shape, kernel.shape))
    impulse = np.zeros(small)
    impulse[(0,) * len(small)] = 1.0
    op = ConvolutionOperator(kernel, small, "same", boundary="symmetric", correlate=correlate)
    response = np.zeros(input_shape)
    response[tuple(slice(0, m) for m in small)] = op.apply(impulse).real
    # C A e0 = lam * C e0, and C e0 (an outer product of 1-D columns) has no zero
    first_columns = [sp_fft.dct(np.eye(n, 1)[:, 0], norm="ortho") for n in input_shape]
    denominator = first_columns[0]
    for column in first_columns[1:]:
        denominator = np.multiply.outer(denominator, column)
    return sp_fft.dctn(response, norm="ortho", workers=get_workers()) / denominator


class SpectralOperator(ShapedOperator):
    """``T^{-1} diag(d) T`` for the orthonormal N-D DFT (``transform="fft"``) or
    DCT-II (``"dct"``): what :func:`preconditioner` returns.

    Applies in O(N log N) with scipy.fft on all cores.
    """

    def __init__(self, multiplier: np.ndarray, transform: str, dtype=np.float64):
        if transform not in ("fft", "dct"):
            raise ValueError(f"`transform` must be 'fft' or 'dct'; got {transform!r}")
        self.multiplier = np.asarray(multiplier)
        self.transform = transform
        shape = self.multiplier.shape
        super().__init__(np.dtype(dtype), shape, shape)

    def _apply(self, x, d):
        axes = tuple(range(-len(self.input_shape), 0))
        if self.transform == "dct":
            X = sp_fft.dctn(x, norm="ortho", axes=axes, workers=get_workers())
            return sp_fft.idctn(X * d, norm="ortho", axes=axes, workers=get_workers())
        y = sp_fft.ifftn(sp_fft.fftn(x, axes=axes, workers=get_workers()) * d, axes=axes, workers=get_workers())
        if x.dtype.kind != "c" and self.dtype.kind != "c" and np.isrealobj(d):
            return y.real  # a real, even spectrum maps real data to real data
        return y

    def _forward(self, x):
        return self._apply(x, self.multiplier)

    def _backward(self, y):
        return self._apply(y, np.conj(self.multiplier))

    def tosparse(self, format: str = "csr"):
        """The (dense) matrix as a sparse array: for small sizes only."""
        import scipy.sparse as sp
        n = self.shape[0]
        check_memory(n * n * 16, "the dense matrix of a spectral operator")
        columns = self._forward(np.eye(n).reshape((n,) + self.input_shape)).reshape(n, n)
        return sp.csr_array(columns.T).asformat(format)


def _damp(damp) -> float:
    if isinstance(damp, np.ndarray) and damp.ndim == 0:  # np.array(0.1): its number
        damp = damp[()]
    if isinstance(damp, (bool, np.bool_)) or not isinstance(damp, (int, float, np.number)):
        raise TypeError(f"`damp` must be a non-negative number; got {damp!r}")
    if not np.isfinite(damp) or damp < 0 or np.iscomplexobj(damp):
        raise ValueError(f"`damp` must be a non-negative finite number; got {damp!r}")
    return float(damp)


def _check_conditioning(magnitude: np.ndarray, damp: float) -> None:
    """Refuse a singular undamped solve; warn about an ill-conditioned one."""
    if damp > 0:
        return
    largest, smallest = magnitude.max(), magnitude.min()
    if smallest <= largest * np.finfo(float).eps * math.sqrt(magnitude.size):
        raise ValueError(
            "the operator is singular (an eigenvalue is zero to rounding): an undamped solve "
            "would return garbage; pass `damp` > 0 (Tikhonov regularisation)")
    if largest / smallest > 1e8:
        warnings.warn(
            f"the operator is ill-conditioned (condition number {largest / smallest:.1e}): "
            "noise in `y` is amplified up to that factor; consider `damp` > 0",
            IllConditionedWarning, stacklevel=3)


def solve(y, kernel, *, boundary="wrap", damp=0.0, correlate=False):
    """Exact minimiser of ``||A x - y||^2 + damp^2 ||x||^2`` for the "same" operator, in O(N log N).

    By the FFT for ``boundary="wrap"`` (circulant ``A``), by the DCT for
    ``boundary="symmetric"`` with a kernel symmetric along every axis (odd
    sizes).  ``damp`` is scipy lsqr's damping (Tikhonov regularisation).

    Parameters
    ----------
    y : array_like
        The data, of the input's shape (a "same" convolution).
    kernel : array_like
        Same number of axes as `y`.
    boundary : {"wrap", "symmetric"}
    damp : float
    correlate : bool

    Returns
    -------
    x : ndarray, shaped like `y`

    Raises
    ------
    ValueError
        For other boundaries or non-symmetric kernels with "symmetric" (use
        :func:`linconv.deconvolve`), or a singular operator with ``damp=0``.
    IllConditionedWarning
        When ``damp=0`` and the condition number exceeds 1e8.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> x = np.array([0.0, 1.0, 4.0, 2.0, 0.0, 3.0])
    >>> y = linconv.convolve(x, [0.2, 1.0, 0.3], "same", boundary="wrap")
    >>> linconv.fft.solve(y, [0.2, 1.0, 0.3]).round(12)
    array([0., 1., 4., 2., 0., 3.])
    """
    y = as_array(y, "y")
    kernel = as_kernel(kernel)
    damp = _damp(damp)
    if y.ndim != kernel.ndim:
        raise ValueError(f"`y` and `kernel` must have the same number of dimensions; got y of "
                         f"shape {y.shape} and kernel of shape {kernel.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` must be finite; it contains NaN or inf")
    dtype = np.result_type(y, kernel, np.float32)
    if boundary == "symmetric":
        _check_symmetric(kernel)
        lam = dct_eigenvalues(kernel, y.shape, correlate=correlate)
        _check_conditioning(np.abs(lam), damp)
        Y = sp_fft.dctn(y.astype(dtype, copy=False), norm="ortho", workers=get_workers())
        x = sp_fft.idctn(lam * Y / (lam**2 + damp**2), norm="ortho", workers=get_workers())
        return x.astype(dtype, copy=False)
    if boundary != "wrap":
        raise ValueError(f"`boundary` must be 'wrap' (FFT) or 'symmetric' (DCT, symmetric "
                         f"kernel) for an O(N log N) solve; got {boundary!r}: use "
                         "linconv.deconvolve, which solves any boundary iteratively")
    geometry = _circulant(kernel, y.shape, "same", correlate)
    g = circular_kernel(geometry, correlation_weights(kernel, correlate))
    real = y.dtype.kind != "c" and kernel.dtype.kind != "c"
    forward, inverse = (sp_fft.rfftn, sp_fft.irfftn) if real else (sp_fft.fftn, sp_fft.ifftn)
    lam = forward(g, workers=get_workers())
    _check_conditioning(np.abs(lam), damp)  # a half spectrum has the same extremes
    Y = forward(y.astype(dtype, copy=False), workers=get_workers())
    Y *= lam.conj() / (np.abs(lam) ** 2 + damp**2)
    x = inverse(Y, s=y.shape, workers=get_workers()) if real else inverse(Y, workers=get_workers())
    return x.astype(dtype, copy=False)


class SpectralModel:
    """A square, stride-1 operator and its regulariser in the basis that diagonalises them.

    ``kind="fft"``: the operator's kernel with the periodic boundary (exact for
    "wrap", Strang's circulant approximation otherwise); ``kind="dct"``: with
    the symmetric boundary (exact for "symmetric" with a symmetric kernel).
    The regulariser is ``I`` ("tikhonov") or ``D^H D`` ("gradient": forward
    differences along every axis, with the periodic boundary for "fft" and
    the symmetric one for "dct", whose ``D^T D`` is the Neumann Laplacian).
    Transforms are orthonormal, so norms carry over (Parseval).
    """

    def __init__(self, operator, regularizer: str = "tikhonov", kind: str = "auto"):
        if not isinstance(operator, ConvolutionOperator):
            raise TypeError(f"`operator` must be a linconv.ConvolutionOperator; got "
                            f"{type(operator).__name__}")
        if kind not in ("auto", "dct", "fft", "circulant"):
            raise ValueError(f"`kind` must be 'auto', 'dct' or 'circulant'; got {kind!r}")
        geometry = operator.geometry
        if geometry.output_shape != geometry.input_shape or any(s != 1 for s in geometry.strides):
            raise ValueError(f"`operator` must be square with stride 1 (a 'same'-sized "
                             f"output); got {geometry.input_shape} -> {geometry.output_shape}")
        kernel = operator.kernel
        dct_able = _is_symmetric(kernel) and all(ax.lo == ax.hi for ax in geometry.axes) and \
            all(d == 1 for d in geometry.dilations)
        if kind == "auto":  # the exact basis when there is one, else the better approximation
            kind = "dct" if dct_able and geometry.boundary != "wrap" else "fft"
        elif kind == "dct" and not dct_able:
            raise ValueError("the DCT model needs a kernel symmetric along every axis (odd "
                             "sizes), centred, with dilation 1; use kind='circulant'")
        self.kind = "dct" if kind == "dct" else "fft"
        self.shape = geometry.input_shape
        if self.kind == "dct":
            self.lam = dct_eigenvalues(kernel, self.shape, correlate=operator.correlate)
            self.exact = geometry.boundary == "symmetric"
        else:
            periodic = dataclasses.replace(geometry, boundary="wrap")
            weights = correlation_weights(kernel, operator.correlate)
            self.lam = sp_fft.fftn(circular_kernel(periodic, weights), workers=get_workers())
            self.exact = geometry.boundary == "wrap"
        self.power = np.abs(self.lam) ** 2
        if regularizer == "tikhonov":
            self.mu = np.ones(self.shape)
        elif regularizer == "gradient":
            period = 1 if self.kind == "dct" else 2  # cos(pi k / n) or cos(2 pi k / n)
            self.mu = sum(np.reshape(2 - 2 * np.cos(period * np.pi * np.arange(n) / n),
                                     [n if a == b else 1 for b in range(len(self.shape))])
                          for a, n in enumerate(self.shape)) * np.ones(self.shape)
        else:
            raise ValueError(f"`regularizer` must be 'tikhonov' or 'gradient'; got "
                             f"{regularizer!r}")
        self.regularizer = regularizer
        self.real = operator.dtype.kind != "c"

    def forward(self, x):
        if self.kind == "dct":
            return sp_fft.dctn(x, norm="ortho", workers=get_workers())
        return sp_fft.fftn(x, norm="ortho", workers=get_workers())

    def inverse(self, X, real: bool = True):
        """Back from the transform; `real`: the result is real (real data and operator)."""
        if self.kind == "dct":
            return sp_fft.idctn(X, norm="ortho", workers=get_workers())
        x = sp_fft.ifftn(X, norm="ortho", workers=get_workers())
        return x.real if real else x

    def denominator(self, damp: float) -> np.ndarray:
        """``|lam|^2 + damp^2 mu``, floored so that zero modes stay finite."""
        total = self.power + damp**2 * self.mu
        return np.maximum(total, np.finfo(float).eps * total.max())

    def solve(self, Y, damp: float):
        """Transform of ``argmin ||A x - y||^2 + damp^2 ||R x||^2`` from the transform of y."""
        return np.conj(self.lam) * Y / self.denominator(damp)

    def residual_norm(self, Y, damp: float) -> float:
        """``||A x_damp - y||`` of that minimiser (exact when the model is exact)."""
        return float(np.sqrt(np.sum((damp**2 * self.mu / self.denominator(damp)) ** 2
                                    * np.abs(Y) ** 2)))

    def normal_inverse(self, damp: float) -> "SpectralOperator":
        """``(A^H A + damp^2 R^H R)^{-1}`` in this basis, as a SpectralOperator."""
        return SpectralOperator(1.0 / self.denominator(damp), self.kind,
                                dtype=np.float64 if self.real else np.complex128)


def preconditioner(operator, *, damp=0.0, kind="auto"):
    """A LinearOperator approximating ``(A^H A + damp^2 I)^{-1}``, for ``M=`` of
    :func:`scipy.sparse.linalg.cg` on the normal equations.

    Parameters
    ----------
    operator : ConvolutionOperator
        Square, stride 1 (a "same"-sized output), any boundary.
    damp : float
    kind : {"auto", "dct", "circulant"}
        "circulant": Strang's preconditioner, the same kernel with the
        periodic boundary, inverted by the FFT.  "dct": the same kernel with
        the symmetric boundary, inverted by the DCT (needs a kernel symmetric
        along every axis, odd sizes).  "auto" takes "dct" when the kernel
        allows, else "circulant": for zero-boundary blur the DCT one is far
        better, because the reflective boundary is much closer to the truth
        than the periodic one (no jump where the image wraps around), and in
        2-D no circulant preconditioner can be superlinear (Serra-Capizzano &
        Tyrtyshnikov, 1999).

    Returns
    -------
    SpectralOperator

    Examples
    --------
    >>> import numpy as np, scipy.sparse.linalg as spla, linconv
    >>> g = np.exp(-np.arange(-3, 4) ** 2 / 4.0)
    >>> op = linconv.ConvolutionOperator(np.outer(g, g) / g.sum() ** 2, (64, 64), "same")
    >>> M = linconv.fft.preconditioner(op, damp=0.05)
    >>> M.transform, M.shape
    ('dct', (4096, 4096))
    >>> normal = spla.LinearOperator(op.shape, dtype=float,
    ...                              matvec=lambda v: op.H @ (op @ v) + 0.05**2 * v)
    >>> y = op @ np.ones(4096)
    >>> x, info = spla.cg(normal, op.H @ y, M=M, rtol=1e-8)
    >>> info
    0
    """
    model = SpectralModel(operator, "tikhonov", kind)
    return model.normal_inverse(_damp(damp))
