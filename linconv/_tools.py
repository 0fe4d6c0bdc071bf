"""Spectral tools and the dot test for any operator: singular values, operator norm.

The circulant case (periodic boundary, stride 1, output shape = input shape)
is diagonalised by the DFT per channel pair, so all singular values come from
one FFT of the weights and one small SVD per frequency (Sedghi, Gupta and
Long, "The singular values of convolutional layers", ICLR 2019).  Any other
operator goes to :func:`scipy.sparse.linalg.svds` on the exact matrix-free
operator.
"""

from __future__ import annotations

import inspect

import numpy as np
import scipy.fft as sp_fft
from scipy.sparse.linalg import LinearOperator, aslinearoperator, svds

from ._factors import circular_kernel
from ._validation import _is_int

__all__ = ["singular_values", "operator_norm", "dottest"]

# operators with at most this many entries get the dense SVD (exact, and faster than
# ARPACK there); larger ones go to svds
DENSE_LIMIT = 2 ** 20
# svds' tolerance; it hands ARPACK SVDS_TOL**2 for the eigenvalues of A^H A (squared
# singular values), whose Ritz values are then within a relative 1e-12, so the
# singular values (svds' Rayleigh-Ritz ||A v||) within 5e-13
SVDS_TOL = 1e-6


def _layer_parts(op):
    """``(geometry, correlation weights (C_out, C_in // groups, *k))`` of a linconv
    operator or of a transpose/adjoint view of one (same singular values); else None."""
    from ._nn import ConvOperator
    from ._operator import ConvolutionOperator, _View
    from ._sparse import correlation_weights
    while isinstance(op, _View):
        op = op.parent
    if isinstance(op, ConvolutionOperator):
        weights = correlation_weights(np.asarray(op.kernel), op.correlate)
        return op.geometry, weights.reshape(op.geometry.weight_shape)
    if isinstance(op, ConvOperator):
        return op.geometry, np.asarray(op.weight)
    return None


def _is_circulant(geometry) -> bool:
    """Periodic boundary, stride 1, as many outputs as inputs on every axis."""
    return geometry.boundary == "wrap" and all(
        ax.stride == 1 and ax.n_out == ax.n for ax in geometry.axes)


def _channel_spectra(geometry, weights):
    """Per frequency and group the ``C_out/g x C_in/g`` matrices of the channel pairs' DFT
    eigenvalues, shape ``(F, groups, C_out/g, C_in/g)``, and each frequency's multiplicity.

    Real weights have conjugate-symmetric spectra (frequency ``-f`` holds the conjugate
    matrix, with the same singular values): only the ``rfftn`` half is computed.
    """
    nd = geometry.ndim
    g = circular_kernel(geometry, weights.astype(np.result_type(weights, np.float64)))
    axes = tuple(range(-nd, 0))
    n = g.shape[-1]
    if np.isrealobj(g):
        spectra = sp_fft.rfftn(g, axes=axes)  # workers: scipy.fft.set_workers
        half = np.arange(spectra.shape[-1])
        twice = (half > 0) & (2 * half != n)  # j and n - j: the same singular values
        multiplicity = np.broadcast_to(1 + twice, spectra.shape[2:]).ravel()
    else:
        spectra = sp_fft.fftn(g, axes=axes)
        multiplicity = None
    groups = geometry.channels.groups if geometry.channels else 1
    c_out, c_in_g = spectra.shape[:2]
    per_freq = np.moveaxis(spectra.reshape(groups, c_out // groups, c_in_g, -1), -1, 0)
    return per_freq, multiplicity


def _circulant_singular_values(geometry, weights) -> np.ndarray:
    """All singular values of a circulant layer: per frequency and group, the SVD of the
    ``C_out/g x C_in/g`` matrix of the channel pairs' DFT eigenvalues."""
    per_freq, multiplicity = _channel_spectra(geometry, weights)
    values = np.linalg.svd(per_freq, compute_uv=False)  # (F, groups, min(C_out/g, C_in/g))
    if multiplicity is not None:
        values = np.repeat(values, multiplicity, axis=0)
    return np.sort(values.ravel())[::-1]


def _float64_operator(op) -> LinearOperator:
    """`op` as a LinearOperator computing in at least float64 (exact svds on float32 layers)."""
    dtype = np.result_type(op.dtype, np.float64)
    return LinearOperator(op.shape, matvec=lambda x: op.matvec(x.astype(dtype, copy=False)),
                          rmatvec=lambda y: op.rmatvec(y.astype(dtype, copy=False)),
                          matmat=lambda X: op.matmat(X.astype(dtype, copy=False)),
                          rmatmat=lambda Y: op.rmatmat(Y.astype(dtype, copy=False)),
                          dtype=dtype)


def _dense_singular_values(op) -> np.ndarray:
    """All singular values from the dense matrix (small operators only)."""
    m, n = op.shape
    dense = op.matmat(np.eye(n, dtype=np.result_type(op.dtype, np.float64)))
    return np.linalg.svd(np.asarray(dense), compute_uv=False)


def singular_values(op, k: int | None = None) -> np.ndarray:
    r"""Singular values of a convolution operator, exactly, in descending order.

    Parameters
    ----------
    op : LinearOperator
        A linconv operator (:class:`ConvolutionOperator`, :func:`conv_operator`,
        :func:`conv_transpose_operator`, their ``.T``/``.H``) or, with `k`,
        any :class:`scipy.sparse.linalg.LinearOperator`.
    k : int, optional
        How many of the largest to return.  None (default): all of them, which
        needs a circulant operator: ``boundary="wrap"`` (``padding_mode="circular"``),
        stride 1 and an output the shape of the input.

    Returns
    -------
    ndarray of float64, descending
        ``min(op.shape)`` values (or `k`).

    Raises
    ------
    ValueError
        `k` is None and the operator is not circulant, or `k` is not an integer
        in ``[1, min(op.shape)]``.

    See Also
    --------
    operator_norm, linconv.fft.eigenvalues, scipy.sparse.linalg.svds

    Notes
    -----
    A circulant layer is diagonalised by the DFT on every channel pair: at
    frequency :math:`f` the operator acts on the channel vector by the
    ``C_out x C_in`` matrix :math:`\hat W(f)` of the channel pairs'
    eigenvalues (block-diagonal over the groups), so its singular values are
    those of :math:`\hat W(f)` over all :math:`f` (Sedghi, Gupta and Long,
    ICLR 2019).  A single channel gives :math:`|\lambda(f)|`.  This costs one
    FFT of the weights and ``prod(input_shape)`` small SVDs.  Any other
    geometry (zero or reflecting padding, strides) has no such
    diagonalisation; there the `k` largest come from
    :func:`scipy.sparse.linalg.svds` (ARPACK) on the exact operator, computed
    in float64 to a relative accuracy of 5e-13, or, for an
    operator of at most ``2**20`` entries, from the dense SVD.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> op = linconv.ConvolutionOperator([1.0, 2.0, 1.0], 4, "same", boundary="wrap")
    >>> linconv.singular_values(op)
    array([4., 2., 2., 0.])

    A layer with circular padding (``C_out x C_in`` per frequency):

    >>> w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    >>> layer = linconv.conv_operator(w, (2, 8, 8), padding=1, padding_mode="circular")
    >>> s = linconv.singular_values(layer)
    >>> s.shape
    (128,)
    >>> bool(np.allclose(s, np.linalg.svd(layer.toarray(), compute_uv=False)))
    True

    Zero padding: the largest few, by svds.

    >>> zero = linconv.conv_operator(w, (2, 8, 8), padding=1)
    >>> top = linconv.singular_values(zero, k=3)
    >>> bool(np.allclose(top, np.linalg.svd(zero.toarray(), compute_uv=False)[:3]))
    True
    """
    count = min(op.shape)
    if k is not None and (not _is_int(k) or not 1 <= k <= count):
        raise ValueError(f"`k` must be an integer in [1, {count}] (min(op.shape)); got {k!r}")
    parts = _layer_parts(op)
    if parts is not None and _is_circulant(parts[0]):
        values = _circulant_singular_values(*parts)
        return values if k is None else values[:k]
    if k is None:
        what = (f"boundary {parts[0].boundary!r}, strides {parts[0].strides}, output "
                f"{parts[0].spatial_output_shape} for input {parts[0].spatial_input_shape}"
                if parts is not None else f"a {type(op).__name__}")
        raise ValueError(
            "`k`=None (all singular values) needs a circulant operator: boundary 'wrap' "
            "(padding_mode 'circular'), stride 1 and output shape = input shape; got "
            f"{what}. Pass `k` for the k largest (scipy.sparse.linalg.svds)")
    op = aslinearoperator(op)
    if k >= count - 1 or op.shape[0] * op.shape[1] <= DENSE_LIMIT:  # small, or beyond svds
        return np.sort(_dense_singular_values(op))[::-1][:k]
    values = svds(_float64_operator(op), k=k, ncv=min(count - 1, max(2 * k + 1, 40)),
                  tol=SVDS_TOL, return_singular_vectors=False, **_SVDS_SEED)
    return np.sort(values)[::-1]


def operator_norm(op) -> float:
    r"""The operator 2-norm (largest singular value) of a convolution operator.

    Exact from the FFT for circulant operators (see :func:`singular_values`),
    otherwise :func:`scipy.sparse.linalg.svds` with ``k=1`` on the exact
    operator (relative accuracy 5e-13), or the dense SVD for small operators.  This is the Lipschitz
    constant of the layer, which ``torch.nn.utils.spectral_norm`` does *not*
    compute: it normalises the reshaped ``C_out x (C_in k)`` weight matrix.

    Parameters
    ----------
    op : LinearOperator
        Any :class:`scipy.sparse.linalg.LinearOperator`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, linconv
    >>> op = linconv.ConvolutionOperator(np.ones((3, 3)) / 9, (16, 16), "same")
    >>> round(linconv.operator_norm(op), 6)
    0.977426
    >>> round(linconv.operator_norm(linconv.ConvolutionOperator(
    ...     np.ones((3, 3)) / 9, (16, 16), "same", boundary="wrap")), 12)
    1.0
    """
    if min(op.shape) == 1:
        return float(_dense_singular_values(aslinearoperator(op))[0])
    return float(singular_values(op, k=1)[0])


# scipy 1.15 renamed svds' `random_state` to `rng`; the floor (1.12) has only the former
_SVDS_SEED = ({"rng": np.random.default_rng(0)}
              if "rng" in inspect.signature(svds).parameters else {"random_state": 0})


def dottest(op, *, tol: float | None = None, rng=None) -> float:
    r"""The dot test: relative mismatch of ``<A x, y>`` and ``<x, A^H y>`` for random x, y.

    Returns :math:`|\langle A x, y\rangle - \langle x, A^H y\rangle| / (\|A x\|\,\|y\|)`,
    the check that ``op.rmatvec`` is the adjoint of ``op.matvec``; run it on
    operators you compose yourself.

    Parameters
    ----------
    op : LinearOperator
        Any :class:`scipy.sparse.linalg.LinearOperator`.
    tol : float, optional
        Largest mismatch accepted: 1e-12 for 64-bit operators, 1e-5 for 32-bit
        ones (float32, complex64) by default.
    rng : int or numpy.random.Generator, optional
        Seed or generator for ``x`` and ``y`` (standard normal in the
        operator's dtype, complex when it is).

    Returns
    -------
    float
        The relative mismatch.

    Raises
    ------
    AssertionError
        When the mismatch exceeds `tol`.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> op = linconv.ConvolutionOperator(np.ones((3, 3)), (32, 32), "same", boundary="reflect",
    ...                                  stride=2)
    >>> linconv.dottest(op, rng=0) < 1e-12
    True

    A wrong adjoint is caught:

    >>> from scipy.sparse.linalg import LinearOperator
    >>> bad = LinearOperator((3, 3), matvec=lambda x: np.cumsum(x), rmatvec=lambda y: y,
    ...                      dtype=float)
    >>> linconv.dottest(bad, rng=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: dot test failed: |<A x, y> - <x, A^H y>| / (||A x|| ||y||) = ...
    """
    dtype = np.dtype(op.dtype)
    if dtype.kind not in "fc":
        dtype = np.result_type(dtype, np.float64)
    if tol is None:
        tol = 1e-5 if np.finfo(dtype).bits <= 32 else 1e-12
    rng = np.random.default_rng(rng)
    m, n = op.shape

    def random(size):
        v = rng.standard_normal(size)
        if dtype.kind == "c":
            v = v + 1j * rng.standard_normal(size)
        return v.astype(dtype)

    x, y = random(n), random(m)
    ax, ahy = np.asarray(op.matvec(x)).ravel(), np.asarray(op.rmatvec(y)).ravel()
    scale = np.linalg.norm(ax) * np.linalg.norm(y) or np.linalg.norm(x) * np.linalg.norm(ahy)
    difference = abs(np.vdot(ax, y) - np.vdot(x, ahy))
    mismatch = float(difference / scale) if scale else float(difference)
    if not mismatch <= tol:
        raise AssertionError(f"dot test failed: |<A x, y> - <x, A^H y>| / (||A x|| ||y||) = "
                             f"{mismatch:.3g} > tol {tol:.3g} for {op!r}")
    return mismatch
