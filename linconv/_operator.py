"""Matrix-free convolution operators (scipy LinearOperator subclasses)."""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._display import operator_html
from ._engines import make_engine
from ._geometry import Geometry
from ._sparse import correlation_weights
from ._validation import (as_array, as_format, as_kernel, as_method, check_memory,
                          is_dask_array)

__all__ = ["ShapedOperator", "GeometryOperator", "ConvolutionOperator", "operator_dtype"]


def frozen_copy(array: np.ndarray) -> np.ndarray:
    """A read-only private copy: an operator never sees later changes to the caller's array."""
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


_APPLY_ADVICE = ("apply it to smaller batches, or to a dask array (linconv applies "
                 "operators to dask arrays chunk by chunk)")


class _Frozen(type(LinearOperator)):
    """Operators are immutable: attributes are fixed once the constructor returns."""

    def __call__(cls, *args, **kwargs):
        obj = super().__call__(*args, **kwargs)
        object.__setattr__(obj, "_frozen", True)
        return obj


_OPERATOR_DTYPES = tuple(map(np.dtype, (np.float32, np.float64, np.longdouble, np.complex64,
                                       np.complex128, np.clongdouble)))


def operator_dtype(kernel: np.ndarray, dtype=None) -> np.dtype:
    """Compute dtype of an operator: ``result_type(kernel, float32)`` unless `dtype` says."""
    if dtype is None:
        return np.result_type(kernel, np.float32)
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"`dtype` must be a numpy dtype; got {dtype!r}") from exc
    if dtype not in _OPERATOR_DTYPES:  # float16 has no engines: it computes in float32
        raise ValueError("`dtype` must be float32, float64, longdouble, complex64, complex128 "
                         f"or clongdouble; got {dtype}")
    if kernel.dtype.kind == "c" and dtype.kind != "c":
        raise ValueError(
            f"`dtype` {dtype} would drop the imaginary part of the complex kernel; "
            "use a complex dtype"
        )
    return dtype


class ShapedOperator(LinearOperator, metaclass=_Frozen):
    """A LinearOperator between N-D arrays, with exact transpose and adjoint.

    Subclasses implement ``_forward(x)`` and ``_backward(y)`` on batches
    ``x`` of shape ``(B, *input_shape)`` (already cast to the compute dtype,
    C-contiguous, at least one) and ``tosparse()``.  Instances are immutable:
    assigning or deleting an attribute after construction is an AttributeError.
    """

    _frozen = False

    def __setattr__(self, name, value):
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r} "
                                 "(build a new operator instead)")
        super().__setattr__(name, value)

    def __delattr__(self, name):
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")
        super().__delattr__(name)

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    _repr_html_ = operator_html  # Jupyter: the repr and, for small operators, the matrix

    def __init__(self, dtype, input_shape, output_shape):
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        super().__init__(dtype, (int(np.prod(output_shape)), int(np.prod(input_shape))))

    # -- what subclasses provide -------------------------------------------
    def _forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def tosparse(self, format: str = "csr"):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- application --------------------------------------------------------
    def _result_dtype(self, x: np.ndarray) -> np.dtype:
        return np.result_type(x.dtype, self.dtype)

    def _workspace_bytes(self, batch: int, itemsize: int, adjoint: bool) -> int:
        """Estimated peak bytes of one application (subclasses refine it)."""
        return 3 * batch * (self.shape[0] + self.shape[1]) * itemsize

    def _run(self, x: np.ndarray, in_shape, adjoint: bool) -> np.ndarray:
        """Apply to ``x`` of shape ``(B, prod(in_shape))``; returns ``(B, prod(out))``.

        Computes at ``result_type(x, dtype)`` on a C-contiguous copy where the
        layout needs one (broadcast, strided, Fortran or byte-swapped views), and
        refuses an application whose buffers cannot fit in memory.
        """
        dtype = self._result_dtype(x)
        batch = x.shape[0]
        out_size = self.shape[1] if adjoint else self.shape[0]
        if batch == 0:
            return np.zeros((0, out_size), dtype=dtype)
        check_memory(self._workspace_bytes(batch, dtype.itemsize, adjoint),
                     lambda: f"applying {self!r} to {batch} input(s)", _APPLY_ADVICE)
        x = np.ascontiguousarray(x, dtype=dtype).reshape((batch,) + tuple(in_shape))
        y = self._backward(x) if adjoint else self._forward(x)
        return y.reshape(batch, out_size)

    # scipy's matvec, matmat and dot take np.asarray of a dask array (computing it); a dask
    # array of flat vectors goes through `apply` instead and stays lazy
    def _flat_dask(self, x, adjoint: bool):
        op, shape = (self.H, self.output_shape) if adjoint else (self, self.input_shape)
        n = math.prod(shape)
        if x.ndim not in (1, 2) or x.shape[0] != n:
            raise ValueError(f"dimension mismatch: `x` must have shape ({n},) or ({n}, k); got "
                             f"{x.shape}")
        if x.ndim == 1:
            return op.apply(x.reshape(shape)).reshape(-1)
        k = x.shape[1]
        return op.apply(x.T.reshape((k,) + tuple(shape))).reshape(k, -1).T

    def dot(self, x):
        return self._flat_dask(x, False) if is_dask_array(x) else super().dot(x)

    def matvec(self, x):
        return self._flat_dask(x, False) if is_dask_array(x) else super().matvec(x)

    def matmat(self, X):
        return self._flat_dask(X, False) if is_dask_array(X) else super().matmat(X)

    def rmatvec(self, x):
        return self._flat_dask(x, True) if is_dask_array(x) else super().rmatvec(x)

    def rmatmat(self, X):
        return self._flat_dask(X, True) if is_dask_array(X) else super().rmatmat(X)

    def _matvec(self, x):
        return self._run(np.asarray(x).reshape(1, -1), self.input_shape, False)[0]

    def _rmatvec(self, y):
        return self._run(np.asarray(y).reshape(1, -1), self.output_shape, True)[0]

    def _matmat(self, X):
        return self._run(np.asarray(X).T, self.input_shape, False).T

    def _rmatmat(self, Y):
        return self._run(np.asarray(Y).T, self.output_shape, True).T

    def apply(self, x) -> np.ndarray:
        """Apply to `x` of shape ``(*batch, *input_shape)``; returns ``(*batch, *output_shape)``.

        The result dtype is ``np.result_type(x, self.dtype)``.  A dask array gives
        a lazy dask array with the same values (see :doc:`/larger_than_memory`).
        """
        if is_dask_array(x):
            from ._dask import apply as apply_dask
            return apply_dask(self, x)
        x = as_array(x)
        nd = len(self.input_shape)
        if x.shape[x.ndim - nd:] != self.input_shape or x.ndim < nd:
            raise ValueError(
                f"`x` must have shape (*batch, {', '.join(map(str, self.input_shape))}); "
                f"got {x.shape}"
            )
        batch = x.shape[: x.ndim - nd]
        y = self._run(x.reshape((math.prod(batch), self.shape[1])), self.input_shape, False)
        return y.reshape(batch + self.output_shape)

    def toarray(self) -> np.ndarray:
        """The dense matrix."""
        return self.tosparse().toarray()

    # -- transpose and adjoint ----------------------------------------------
    def _adjoint(self):
        return _View(self, adjoint=True, conjugate=False)

    def _transpose(self):
        return _View(self, adjoint=True, conjugate=True)

    def __reduce__(self):
        # LinearOperator.__new__ warns on argument-free construction; plain
        # object reconstruction keeps pickling quiet and exact.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls, state):
    obj = object.__new__(cls)
    obj.__dict__.update(state)
    return obj


class _View(ShapedOperator):
    """``A^H`` (adjoint), ``conj(A)`` or ``A^T = conj(A^H)`` of a ShapedOperator."""

    def __init__(self, parent: ShapedOperator, adjoint: bool, conjugate: bool):
        self.parent, self.adjoint, self.conjugate = parent, adjoint, conjugate
        shapes = (parent.output_shape, parent.input_shape)
        if not adjoint:
            shapes = shapes[::-1]
        super().__init__(parent.dtype, *shapes)

    @property
    def plan(self):
        """The parent's plan (a view runs it, or its reverse)."""
        return getattr(self.parent, "plan", None)

    def _workspace_bytes(self, batch, itemsize, adjoint):
        return self.parent._workspace_bytes(batch, itemsize, adjoint != self.adjoint)

    def _apply_parent(self, x, adjoint):
        conj = self.conjugate and self.dtype.kind == "c"
        if conj:
            x = x.conj()
        y = self.parent._backward(x) if adjoint else self.parent._forward(x)
        return y.conj() if conj else y

    def _forward(self, x):
        return self._apply_parent(x, self.adjoint)

    def _backward(self, y):
        return self._apply_parent(y, not self.adjoint)

    def _adjoint(self):
        if self.adjoint and not self.conjugate:
            return self.parent
        return _View(self.parent, not self.adjoint, self.conjugate)

    def _transpose(self):
        if self.adjoint and self.conjugate:
            return self.parent
        return _View(self.parent, not self.adjoint, not self.conjugate)

    def tosparse(self, format: str = "csr"):
        format = as_format(format)
        matrix = self.parent.tosparse("csr")
        if self.adjoint:
            matrix = matrix.T.conj()  # CSC, no copy of the index arrays
            if format not in ("csc", "coo"):  # a row-compressed copy: one pointer per row
                check_memory((matrix.shape[0] + 1) * matrix.indices.itemsize
                             + matrix.nnz * (matrix.indices.itemsize + matrix.dtype.itemsize),
                             f"the {format} matrix of the {self!r}")
        if self.conjugate:
            matrix = matrix.conj()
        return matrix.asformat(format)

    def __repr__(self):
        kind = {(True, False): "adjoint", (True, True): "transpose",
                (False, True): "conjugate"}[(self.adjoint, self.conjugate)]
        return f"<{kind} of {self.parent!r}>"


class GeometryOperator(ShapedOperator):
    """A correlation operator read from a :class:`Geometry`: the common core of the
    signal-processing and deep-learning front doors."""

    def __init__(self, geometry: Geometry, weights: np.ndarray, method: str, dtype):
        self.geometry = geometry
        self._engine = make_engine(method, geometry, weights.astype(dtype, copy=False))
        self.method = self._engine.name
        self._method_asked = method  # what dask's blocks use (each resolves "auto" itself)
        super().__init__(dtype, geometry.input_shape, geometry.output_shape)

    @property
    def plan(self):
        """How the engine runs this operator and why (None for engines without a plan)."""
        return getattr(self._engine, "plan", None)

    def _workspace_bytes(self, batch, itemsize, adjoint):
        return self._engine.workspace_bytes(batch, itemsize)

    def _forward(self, x):
        return self._engine.forward(x)

    def _backward(self, y):
        return self._engine.adjoint(y)

    def tosparse(self, format: str = "csr"):
        """The sparse matrix of this operator (a copy), in any scipy format."""
        return self._engine.matrix().asformat(as_format(format), copy=True)


class ConvolutionOperator(GeometryOperator):
    r"""Matrix-free N-D convolution (or correlation) as a scipy LinearOperator.

    Applies the same linear map as :func:`convolution_matrix` without storing
    it (or, with ``method="sparse"``, through the cached sparse matrix), with
    exact transpose ``.T`` and conjugate transpose ``.H``.

    Parameters
    ----------
    kernel : array_like
        The kernel, one axis per input axis.  Kept as given (not flipped) in
        the ``kernel`` attribute.
    input_shape : int or tuple of int
        Shape of the input signal.
    mode, boundary, stride, dilation
        As in :func:`convolution_matrix`.
    correlate : bool, optional
        Correlate (no kernel flip, no conjugation) instead of convolve.
    method : {"auto", "direct", "fft", "sparse"}, optional
        How to apply the operator.  Every method gives the same result to
        rounding; "auto" picks the fastest available.
    dtype : dtype, optional
        Compute dtype; by default ``np.result_type(kernel, np.float32)`` (so
        float32 kernels stay float32).  One of float32, float64, longdouble
        and their complex types.

    Attributes
    ----------
    input_shape, output_shape : tuple of int
    kernel : ndarray
        A read-only copy of the kernel given: later changes to the caller's
        array do not reach the operator.
    geometry : Geometry
        The sizes-only description of the convolution.
    method : str
        The method in use (after "auto" has chosen).

    The operator is immutable: assigning any attribute raises AttributeError.

    See Also
    --------
    convolution_matrix, convolve

    Notes
    -----
    Applied to data ``x`` the result dtype is ``np.result_type(x, op.dtype)``,
    and the computation runs at that precision (float64 data with a float32
    kernel is float64 throughout; float16 runs in float32, long double in
    long double).  ``apply`` takes leading batch axes (empty ones too);
    ``matvec``/``matmat`` work on flattened (C-order) vectors as for any
    LinearOperator.  Any array numpy accepts is accepted (lists, strided,
    Fortran-ordered, byte-swapped, read-only and broadcast views).

    Construction is cheap at any size: spectra and matrices are computed on
    first use (and cached, thread-safely, per compute dtype; pickles stay
    small).  An application whose buffers cannot fit in the available memory
    raises MemoryError before allocating.

    Examples
    --------
    >>> import numpy as np
    >>> import linconv
    >>> op = linconv.ConvolutionOperator(np.ones((3, 3)) / 9, (32, 32), mode="same")
    >>> op.shape, op.output_shape
    ((1024, 1024), (32, 32))
    >>> y = op.apply(np.ones((32, 32)))
    >>> y[15:17, 15:17].round(12)  # interior: the full 3x3 average
    array([[1., 1.],
           [1., 1.]])
    >>> round(float(y[0, 0]), 12)  # corner: 4 of 9 taps inside (zero boundary)
    0.444444444444

    Its adjoint satisfies ``<A x, y> == <x, A^H y>``:

    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal(1024), rng.standard_normal(1024)
    >>> bool(np.isclose(np.dot(op @ x, y), np.dot(x, op.H @ y)))
    True
    """

    def __init__(self, kernel, input_shape, mode="full", *, boundary="zero", stride=1,
                 dilation=1, correlate=False, method="auto", dtype=None):
        kernel = frozen_copy(as_kernel(kernel))
        method = as_method(method)
        geometry = Geometry.from_args(kernel.shape, input_shape, mode, boundary, stride, dilation)
        dtype = operator_dtype(kernel, dtype)
        self.kernel = kernel
        self.correlate = bool(correlate)
        super().__init__(geometry, correlation_weights(kernel, self.correlate), method, dtype)

    def __repr__(self):
        kind = "correlation" if self.correlate else "convolution"
        return (f"<ConvolutionOperator: {kind} {self.input_shape} -> {self.output_shape}, "
                f"kernel {self.kernel.shape}, boundary={self.geometry.boundary!r}, "
                f"method={self.method!r}, dtype={self.dtype}>")
