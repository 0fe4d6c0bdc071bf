"""Sparse Toeplitz / multilevel Toeplitz matrices read from the geometry's pattern."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import _pattern
from ._geometry import Geometry
from ._validation import as_format, as_kernel

__all__ = ["convolution_matrix", "correlation_matrix", "correlation_csr", "correlation_weights"]


def correlation_weights(kernel: np.ndarray, correlate: bool) -> np.ndarray:
    """The correlation kernel: convolution flips the values, never the indices."""
    return kernel if correlate else np.flip(kernel)


def correlation_csr(geometry: Geometry, weights: np.ndarray) -> sp.csr_array:
    """CSR matrix of the correlation with `weights` (values exact, zeros not stored).

    `weights` has the kernel's shape, or ``(C_out, C_in // groups, *kernel)``
    for a geometry with channels.  The matrix keeps their dtype (float16,
    which scipy.sparse cannot store, becomes float32, exactly), except that
    integers narrower than 64 bits become int64 (uint64) where the boundary
    adds entries up, as :func:`numpy.sum` does, so that the sums are exact.
    """
    if weights.dtype == np.float16:  # scipy.sparse cannot store float16: exact in float32
        weights = weights.astype(np.float32)
    per_tap, taps = geometry.active_taps(weights)
    folded_itemsize = 8 if weights.dtype.kind in "iub" else weights.itemsize
    pattern = _pattern.pattern(geometry, taps, itemsize=folded_itemsize)
    if not pattern.canonical and weights.dtype.kind in "iub":
        per_tap = per_tap.astype(np.sum(np.zeros(1, weights.dtype)).dtype)  # no wrap-around
    chosen = per_tap[:, :, taps]
    matrix = sp.csr_array((pattern.values(chosen), pattern.indices, pattern.indptr),
                          shape=(geometry.output_size, geometry.input_size))
    if pattern.canonical:
        matrix.has_canonical_format = True
    else:  # boundary folding: several taps read the same input sample
        matrix.sum_duplicates()
    if not pattern.canonical or not np.all(chosen != 0):
        matrix.eliminate_zeros()  # zero weights of some channels, or folds that cancel
    return matrix


def _matrix(kernel, input_shape, mode, boundary, stride, dilation, format, correlate):
    kernel = as_kernel(kernel)
    format = as_format(format)
    geometry = Geometry.from_args(kernel.shape, input_shape, mode, boundary, stride, dilation)
    matrix = correlation_csr(geometry, correlation_weights(kernel, correlate))
    return matrix if format == "csr" else matrix.asformat(format)


def convolution_matrix(kernel, input_shape, mode="full", *, boundary="zero", stride=1,
                       dilation=1, format="csr"):
    r"""Sparse matrix of the N-D convolution with `kernel`.

    ``A @ x.ravel() == convolve(x, kernel, mode, ...).ravel()`` for every `x` of
    shape `input_shape` (C-order flattening).  In 1-D this is a Toeplitz
    matrix, in N-D a multilevel (doubly-block in 2-D) Toeplitz matrix; other
    boundaries than "zero" fold the padded samples back onto the input and add
    their entries.

    Parameters
    ----------
    kernel : array_like
        The convolution kernel, one axis per input axis (a size-1 axis means no
        convolution along that axis).  Integer, real or complex; the matrix
        keeps its dtype.
    input_shape : int or tuple of int
        Shape of the input signal.
    mode : {"full", "same", "valid"}, int or sequence, optional
        Output size.  "full": every overlap; "same": the input's size, anchored
        as :func:`scipy.signal.convolve`; "valid": no padding.  Explicit
        padding: an int ``p`` (``(p, p)`` on every axis), or one int or
        ``(lo, hi)`` pair per axis (in 1-D a bare ``(lo, hi)`` pair).
    boundary : {"zero", "wrap", "reflect", "symmetric", "edge"}, optional
        How the input is extended into the padding, as :func:`numpy.pad` modes
        (``"zero"`` is numpy's "constant" with 0).  Pads wider than the input
        are allowed.
    stride : int or tuple of int, optional
        Output subsampling step.
    dilation : int or tuple of int, optional
        Spacing between kernel taps.
    format : str, optional
        Any scipy sparse format name ("csr", "csc", "coo", "bsr", "lil", "dok",
        "dia").

    Returns
    -------
    A : scipy.sparse array, shape ``(prod(output_shape), prod(input_shape))``

    Raises
    ------
    ValueError, TypeError
        For bad arguments, naming the argument and the value received.
    MemoryError
        When the matrix would not fit in the available memory (use
        :class:`ConvolutionOperator` instead).

    See Also
    --------
    correlation_matrix, ConvolutionOperator, scipy.linalg.convolution_matrix

    Notes
    -----
    Convolution is correlation with the kernel flipped along every axis.  Per
    axis, with padding ``(lo, hi)``, stride ``s`` and dilation ``d``, the zero-boundary
    correlation matrix has entries

    .. math:: A[i, j] = w[(j + lo - i s) / d]

    where the index is an integer in ``[0, k)``, and 0 elsewhere.  Only
    non-zero entries are stored: zero kernel taps, and entries that cancel when
    boundary folding adds them, are left out.  Stored entries number at most
    ``prod(output_shape) * kernel.size``; the matrix is built in O(nnz) from
    index arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import linconv
    >>> linconv.convolution_matrix([1, 2, 3], 4, mode="same").toarray()
    array([[2, 1, 0, 0],
           [3, 2, 1, 0],
           [0, 3, 2, 1],
           [0, 0, 3, 2]])

    The periodic boundary makes the matrix circulant:

    >>> linconv.convolution_matrix([1, 2, 3], 4, mode="same", boundary="wrap").toarray()
    array([[2, 1, 0, 3],
           [3, 2, 1, 0],
           [0, 3, 2, 1],
           [1, 0, 3, 2]])

    A 2-D kernel gives a doubly-block Toeplitz matrix:

    >>> A = linconv.convolution_matrix(np.ones((3, 3)), (64, 64), mode="same")
    >>> A.shape, A.nnz
    ((4096, 4096), 36100)
    """
    return _matrix(kernel, input_shape, mode, boundary, stride, dilation, format, False)


def correlation_matrix(kernel, input_shape, mode="full", *, boundary="zero", stride=1,
                       dilation=1, format="csr"):
    r"""Sparse matrix of the N-D correlation with `kernel` (not conjugated).

    Same arguments and conventions as :func:`convolution_matrix`; the kernel is
    not flipped.  Per axis ``y[i] = sum_j w[j] * xp[i*s + j*d]`` where ``xp`` is
    the input extended by the boundary rule.  For complex kernels this equals
    ``scipy.signal.correlate(x, conj(kernel))`` (torch's convention).

    Examples
    --------
    >>> import linconv
    >>> linconv.correlation_matrix([1, 2, 3], 5, mode="valid", stride=2).toarray()
    array([[1, 2, 3, 0, 0],
           [0, 0, 1, 2, 3]])
    >>> linconv.correlation_matrix([1, 2], 3, mode=(1, 0), boundary="reflect").toarray()
    array([[2, 1, 0],
           [1, 2, 0],
           [0, 1, 2]])
    """
    return _matrix(kernel, input_shape, mode, boundary, stride, dilation, format, True)
