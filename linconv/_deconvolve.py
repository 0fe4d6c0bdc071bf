"""Deconvolution: regularised least squares and Richardson-Lucy on linconv's exact operators.

The shape of the problem, in the order :func:`deconvolve` runs it:

1. :func:`_parse` checks every argument once and returns frozen :class:`_Options`.
2. :class:`_Setup` builds what all frames share: the exact operator, the
   spectral model of its "same" neighbour (a guide for the damp and the
   preconditioner), the Kronecker factors of a separable kernel.
3. :func:`_choose_solver` picks the solver; each :class:`_Solver` declares the
   options it can use, and an option given to a solver that cannot use it is
   an error (a warning naming it under ``solver="auto"``).
4. Per frame: the noise level, the damp (:func:`_choose_damp`), the solve.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._fft import SpectralModel, _damp
from ._engines import get_workers
from ._geometry import Geometry
from ._operator import ConvolutionOperator
from ._validation import as_array, as_kernel, is_dask_array

__all__ = ["deconvolve", "DeconvolutionResult", "estimate_noise_std", "SOLVERS"]

SOLVERS = ("auto", "lsqr", "lsmr", "cg", "gmres", "fft", "svd", "lsq_linear",
           "richardson-lucy", "rl")
REGULARIZERS = ("tikhonov", "gradient", "tv")
MAD_TO_STD = 0.6744897501960817  # Phi^{-1}(3/4): the MAD of a standard Gaussian
MAD_STANDARD_ERROR = 1.1664       # sqrt(N) x relative standard error of a MAD estimate of sigma
SVD_AUTO_MAX = 2048      # longest axis for which "auto" takes the Kronecker SVD solve
ITERATIVE_FLOOR = 1e-3   # smallest damp / ||A|| for the iterative solvers (see _choose_damp)
PRECONDITIONER_FLOOR = 3e-2  # smallest damp / ||A|| of an approximate spectral preconditioner
TV_AUTO = 0.002          # Dey et al. (2006)'s total-variation weight for RL-TV, damp="auto"


@dataclass(frozen=True)
class DeconvolutionResult:
    """What :func:`deconvolve` found.

    For a stack of frames (`y` with more axes than the kernel), `damp`,
    `iterations`, `converged` and `noise_std` are arrays with one entry per
    frame (shaped like the leading axes) and `residual_norms` is a list with
    one history per frame, in C order.

    Attributes
    ----------
    x : ndarray
        The estimate, shaped like the unknown image (float32 for float32 `y`).
    damp : float or ndarray
        The regularisation weight used (chosen, with ``damp="auto"``).
    solver : str
        The solver used (chosen, with ``solver="auto"``).
    iterations : int or ndarray
        Iterations run (1 for the direct "fft" and "svd" solves).
    converged : bool or ndarray
        Whether the solver met its tolerance (or its stopping rule).
    residual_norms : ndarray or list of ndarray
        ``sqrt(||A x_k - y||_w^2 + damp^2 ||R x_k||^2)`` after each iteration
        ``k``; for Richardson-Lucy ``||sqrt(w) (A x_k + b - y)||``.
    noise_std : float, ndarray or None
        The noise level used by ``damp="auto"`` (given or estimated).
    regularizer : str
    message : str
        How the damp and the solver were chosen.
    """

    x: np.ndarray
    damp: float | np.ndarray
    solver: str
    iterations: int | np.ndarray
    converged: bool | np.ndarray
    residual_norms: np.ndarray | list = field(repr=False)
    noise_std: float | np.ndarray | None = None
    regularizer: str = "tikhonov"
    message: str = ""

    def __repr__(self):
        damp = f"{self.damp:.4g}" if np.ndim(self.damp) == 0 else f"array{np.shape(self.damp)}"
        return (f"DeconvolutionResult(solver={self.solver!r}, damp={damp}, "
                f"iterations={self.iterations}, converged={self.converged}, "
                f"x.shape={self.x.shape}, regularizer={self.regularizer!r})")


# -- the noise level ---------------------------------------------------------------------------

def _haar_details(y):
    """The finest "all-detail" Haar coefficients: differences along every axis of 2x...x2 blocks."""
    detail = y
    for axis in range(y.ndim):
        even = (detail.shape[axis] // 2) * 2
        lower = np.take(detail, np.arange(0, even, 2), axis=axis)
        upper = np.take(detail, np.arange(1, even, 2), axis=axis)
        detail = (upper - lower) / math.sqrt(2)
    return detail


def _attenuated_coefficients(y, kernel, fraction=0.1):
    """The DCT coefficients of `y` at the frequencies the kernel damps most.

    The DCT (a symmetric extension, so no jump where the frame ends) of white
    noise is white noise of the same deviation; the blurred image has almost
    nothing left where the kernel's frequency response ``|H|`` is smallest.
    """
    import scipy.fft as sp_fft
    response = np.abs(sp_fft.fftn(kernel, [2 * n for n in y.shape]))
    response = response[tuple(slice(0, n) for n in y.shape)]  # |H| at pi k / n
    coefficients = sp_fft.dctn(y, norm="ortho", workers=get_workers())
    # a larger set would spread less but hold more image, which on exact data is all there is
    count = max(32, int(fraction * y.size))
    order = np.argpartition(response.ravel(), min(count, y.size - 1))[:count]
    return coefficients.ravel()[order]


def estimate_noise_std(y, kernel=None, *, weights=None) -> float:
    """Standard deviation of white Gaussian noise in `y`, from what the blur removed.

    Two robust estimates, each the median absolute deviation of coefficients
    that hold almost only noise divided by 0.6745 (Donoho & Johnstone, 1994),
    and the smaller is returned (the signal can only add to either):

    - the finest "all-detail" Haar wavelet coefficients (differences along
      every axis of non-overlapping 2x...x2 blocks): blur removes the finest
      details; the median ignores the few edges that remain;
    - with `kernel`: the orthonormal DCT coefficients of the frame's interior
      (a kernel's size in from every edge, where no boundary rule shows) at
      the 10 % of frequencies where the kernel's frequency response is
      smallest.  This one knows the blur, so it stays
      accurate down to noise levels 100x lower, where the Haar details hold
      more image than noise; it cannot separate noise from image for a kernel
      that hardly attenuates any frequency (pass `noise_std` there).

    Parameters
    ----------
    y : array_like
        The data, at least 2 samples along every axis.
    kernel : array_like, optional
        The blur that `y` went through (one axis per axis of `y`).
    weights : array_like, optional
        Data weights shaped like `y`: samples of weight 0 (missing, saturated)
        are left out (the DCT estimate is then not used).

    Examples
    --------
    >>> import numpy as np, linconv
    >>> rng = np.random.default_rng(0)
    >>> smooth = np.add.outer(np.linspace(0, 1, 256), np.linspace(0, 2, 256))
    >>> round(linconv.estimate_noise_std(smooth + 0.05 * rng.standard_normal((256, 256))), 3)
    0.05
    """
    return _noise_estimate(y, kernel, weights)[0]


def _noise_estimate(y, kernel=None, weights=None) -> tuple[float, int]:
    """:func:`estimate_noise_std` and the number of coefficients behind it."""
    y = as_array(y, "y")
    if any(n < 2 for n in y.shape):
        raise ValueError(f"`y` needs at least 2 samples along every axis; got shape {y.shape}")
    y = y.astype(np.result_type(y, float))
    details = _haar_details(y)
    if weights is not None:
        observed = np.asarray(weights) > 0
        for axis in range(y.ndim):  # keep blocks whose every sample is observed
            even = (observed.shape[axis] // 2) * 2
            observed = np.take(observed, np.arange(0, even, 2), axis=axis) & \
                np.take(observed, np.arange(1, even, 2), axis=axis)
        details = details[observed]
        if details.size == 0:
            raise ValueError("`weights` leave no 2x...x2 block of observed samples to estimate "
                             "the noise from; pass `noise_std`")
    estimate, count = float(np.median(np.abs(details)) / MAD_TO_STD), details.size
    if kernel is not None and weights is None:
        kernel = as_kernel(kernel)
        if kernel.ndim != y.ndim:
            raise ValueError(f"`kernel` must have one axis per axis of `y` ({y.ndim}); got "
                             f"shape {kernel.shape}")
        # in the interior, away from the edges whose boundary rule the DCT does not know
        interior = tuple(slice(k, n - k) if n > 4 * k else slice(None)
                         for n, k in zip(y.shape, kernel.shape))
        coefficients = _attenuated_coefficients(y[interior], kernel)
        spectral = float(np.median(np.abs(coefficients)) / MAD_TO_STD)
        if spectral < estimate:
            estimate, count = spectral, coefficients.size
    return estimate, count


# -- options -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    mode: str
    boundary: str
    correlate: bool
    solver: str
    damp: float | np.ndarray | None   # None: "auto"
    noise_std: float | None
    regularizer: str
    bounds: tuple | None
    weights: np.ndarray | None
    background: float | np.ndarray
    maxiter: int | None
    tol: float
    preconditioner: object
    x0: np.ndarray | None
    callback: object
    progress: bool

    def given(self) -> set[str]:
        """The options set away from their defaults: each must be used by the solver.

        `maxiter` and `tol` are limits, which a direct solve meets; not listed.
        """
        names = {"bounds": self.bounds is not None, "weights": self.weights is not None,
                 "background": np.any(self.background != 0), "x0": self.x0 is not None,
                 "preconditioner": not isinstance(self.preconditioner, str),
                 "gradient": self.regularizer == "gradient",
                 "tv": self.regularizer == "tv"}
        return {name for name, set_ in names.items() if set_}


def _positive_number(value, name):
    if isinstance(value, (bool, np.bool_)) or not np.isscalar(value) or \
            not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}")
    return float(value)


def _parse_scalars(solver, damp, noise_std, regularizer, maxiter, tol, preconditioner, callback):
    """The options that are not arrays, checked (for dask arrays too): ``(solver, damp,
    noise_std, tol, preconditioner)`` parsed."""
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
    solver = "richardson-lucy" if solver == "rl" else solver
    if regularizer not in REGULARIZERS:
        raise ValueError(f"`regularizer` must be one of {', '.join(map(repr, REGULARIZERS))}; "
                         f"got {regularizer!r}")
    if isinstance(damp, str):
        if damp != "auto":
            raise ValueError(f"`damp` must be a non-negative number or 'auto'; got {damp!r}")
        damp = None
    elif np.ndim(damp) == 0:
        damp = _damp(damp)
    else:
        damp = np.asarray(damp, dtype=float)
        if not np.all(np.isfinite(damp)) or np.any(damp < 0):
            raise ValueError(f"`damp` must hold non-negative finite numbers; got {damp!r}")
    if noise_std is not None:
        noise_std = _positive_number(noise_std, "noise_std")
    if maxiter is not None and (isinstance(maxiter, bool) or
                                not isinstance(maxiter, (int, np.integer)) or maxiter < 1):
        raise ValueError(f"`maxiter` must be a positive integer; got {maxiter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not 0 < tol < 1:
        raise ValueError(f"`tol` must be a number in (0, 1); got {tol!r}")
    if isinstance(preconditioner, str):
        if preconditioner != "auto":
            raise ValueError(f"`preconditioner` must be 'auto', None or a LinearOperator; got "
                             f"{preconditioner!r}")
    elif preconditioner is not None:
        try:
            preconditioner = spla.aslinearoperator(preconditioner)
        except TypeError as exc:
            raise TypeError(f"`preconditioner` must be 'auto', None or a LinearOperator; got "
                            f"{type(preconditioner).__name__}") from exc
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable; got {type(callback).__name__}")
    return solver, damp, noise_std, tol, preconditioner


def _parse(y, kernel, mode, boundary, correlate, solver, damp, noise_std, regularizer, bounds,
           weights, background, maxiter, tol, preconditioner, x0, callback, progress):
    solver, damp, noise_std, tol, preconditioner = _parse_scalars(
        solver, damp, noise_std, regularizer, maxiter, tol, preconditioner, callback)
    frame_shape = y.shape[y.ndim - kernel.ndim:]
    if weights is not None:
        weights = as_array(weights, "weights")
        if weights.shape != y.shape and weights.shape != frame_shape:
            raise ValueError(f"`weights` must have the shape of `y` {y.shape} (or of one frame "
                             f"{frame_shape}); got {weights.shape}")
        if weights.dtype.kind not in "biuf" or not np.all(np.isfinite(weights)) or \
                np.any(weights < 0):
            raise ValueError("`weights` must be finite, real and non-negative (0 marks a "
                             "missing sample)")
        if not np.any(weights > 0):
            raise ValueError("`weights` are all zero: no sample is observed")
        weights = np.broadcast_to(weights.astype(float), y.shape)
    background = np.asarray(as_array(background, "background"), dtype=float) \
        if not np.isscalar(background) else float(background)
    if np.ndim(background) and np.shape(background) not in (y.shape, frame_shape):
        raise ValueError(f"`background` must be a number or shaped like `y` {y.shape}; got "
                         f"{np.shape(background)}")
    if not np.all(np.isfinite(background)):
        raise ValueError("`background` must be finite")
    if bounds is not None:
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError(f"`bounds` must be a pair (lo, hi), either may be None; got {bounds!r}")
        lo, hi = (-np.inf if bounds[0] is None else np.asarray(bounds[0], float),
                  np.inf if bounds[1] is None else np.asarray(bounds[1], float))
        if np.any(lo > hi):
            raise ValueError(f"`bounds` must have lo <= hi; got {bounds!r}")
        bounds = (lo, hi)
    return _Options(mode, boundary, bool(correlate), solver, damp, noise_std, regularizer, bounds,
                    weights, background, maxiter, float(tol), preconditioner, x0, callback,
                    bool(progress))


# -- what every frame shares -------------------------------------------------------------------

def _gradient_operators(shape, boundary, dtype):
    """Forward differences along every axis (periodic for "wrap", else symmetric: Neumann)."""
    boundary = "wrap" if boundary == "wrap" else "symmetric"
    operators = []
    for axis in range(len(shape)):
        kernel = np.ones([2 if a == axis else 1 for a in range(len(shape))])
        kernel[(0,) * len(shape)] = -1.0
        pads = [(0, 1) if a == axis else (0, 0) for a in range(len(shape))]
        operators.append(ConvolutionOperator(kernel, shape, pads, boundary=boundary,
                                             correlate=True, dtype=dtype))
    return operators


def _separable_factors(kernel):
    """1-D factors whose outer product is `kernel` (to rounding), or None."""
    peak = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    pivot = kernel[peak]
    if pivot == 0:
        return None
    factors = [kernel[peak[:a] + (slice(None),) + peak[a + 1:]] for a in range(kernel.ndim)]
    factors[1:] = [f / pivot for f in factors[1:]]
    product = factors[0]
    for f in factors[1:]:
        product = np.multiply.outer(product, f)
    if np.max(np.abs(product - kernel)) > 1e-13 * np.max(np.abs(kernel)):
        return None
    return factors


class _Kronecker:
    """The exact SVD ``A = (U_0 x ... x U_{N-1}) diag(S) (V_0 x ...)^H`` of a separable operator.

    A separable kernel and a per-axis boundary make ``A`` the Kronecker product
    of 1-D matrices, so N small SVDs give every singular value: the Tikhonov
    solution and its residual for any damp, exactly, in O(N n) per solve.
    """

    def __init__(self, factors, input_shape, options: _Options):
        from ._sparse import convolution_matrix, correlation_matrix
        build = correlation_matrix if options.correlate else convolution_matrix
        self.U, self.V, values = [], [], []
        for factor, n in zip(factors, input_shape):
            matrix = build(factor, (n,), options.mode, boundary=options.boundary).toarray()
            u, s, vh = np.linalg.svd(matrix.astype(np.result_type(matrix, float)),
                                     full_matrices=False)
            self.U.append(u)
            self.V.append(vh.conj().T)
            values.append(s)
        self.S = values[0]
        for s in values[1:]:
            self.S = np.multiply.outer(self.S, s)

    @staticmethod
    def _along_axes(x, matrices, adjoint):
        for axis, m in enumerate(matrices):
            m = m.conj().T if adjoint else m
            x = np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)
        return x

    def coefficients(self, y):
        """``U^H y`` and the energy of `y` outside the range of ``A``."""
        Z = self._along_axes(y, self.U, adjoint=True)
        outside = max(float(np.vdot(y, y).real - np.vdot(Z, Z).real), 0.0)
        return Z, outside

    def solve(self, Z, damp):
        return self._along_axes(self.S / (self.S**2 + damp**2) * Z, self.V, adjoint=False)

    def residual_norm(self, coefficients, damp):
        Z, outside = coefficients
        filtered = damp**2 / (self.S**2 + damp**2) * np.abs(Z)
        return math.sqrt(float(np.sum(filtered**2)) + outside)


class _Setup:
    """The exact operator and everything the frames share (models, factors, gradients)."""

    def __init__(self, kernel, frame_shape, options: _Options):
        self.options = options
        geometry = Geometry.from_output(kernel.shape, frame_shape, options.mode, options.boundary)
        self.kernel = kernel
        self.dtype = np.result_type(kernel, np.float64)
        self.op = ConvolutionOperator(kernel, geometry.input_shape, options.mode,
                                      boundary=options.boundary, correlate=options.correlate,
                                      dtype=self.dtype)
        self.square = self.op.input_shape == self.op.output_shape
        self.scale = float(np.abs(kernel).sum())  # >= ||A||
        self.gradients = (_gradient_operators(self.op.input_shape, options.boundary, self.dtype)
                          if options.regularizer == "gradient" else [])
        self._models = {}
        self._factors = None   # unknown; False: not separable
        self._kronecker = None

    def model(self, shape):
        """Spectral model of the "same" operator on `shape` (the op itself when square)."""
        if shape not in self._models:
            op = self.op if self.square else ConvolutionOperator(
                self.kernel, shape, "same", boundary=self.options.boundary,
                correlate=self.options.correlate, dtype=self.dtype)
            regularizer = "gradient" if self.gradients else "tikhonov"
            self._models[shape] = SpectralModel(op, regularizer)
        return self._models[shape]

    @property
    def exact_model(self) -> bool:
        return self.square and self.options.regularizer != "tv" and \
            self.model(self.op.input_shape).exact

    @property
    def separable(self) -> bool:
        if self._factors is None:
            self._factors = _separable_factors(self.kernel) or False
        return self._factors is not False

    def kronecker(self) -> _Kronecker:
        if self._kronecker is None and self.separable:
            self._kronecker = _Kronecker(self._factors, self.op.input_shape, self.options)
        return self._kronecker


# -- solvers and what they use -----------------------------------------------------------------

@dataclass(frozen=True)
class _Solver:
    run: object
    uses: frozenset
    exact: bool = False   # a direct solve: x0, maxiter and tol do not apply


def _solver_table():
    least_squares = {"x0", "weights", "background", "gradient"}
    return {
        "lsqr": _Solver(_least_squares(spla.lsqr), frozenset(least_squares)),
        "lsmr": _Solver(_least_squares(spla.lsmr), frozenset(least_squares)),
        "cg": _Solver(_cg, frozenset(least_squares | {"preconditioner"})),
        "gmres": _Solver(_gmres, frozenset(least_squares | {"preconditioner"})),
        "fft": _Solver(_fft, frozenset({"background", "gradient"}), exact=True),
        "svd": _Solver(_svd, frozenset({"background"}), exact=True),
        "lsq_linear": _Solver(_lsq_linear, frozenset({"bounds", "weights", "background",
                                                      "gradient"})),
        "richardson-lucy": _Solver(_richardson_lucy, frozenset({"weights", "background", "x0",
                                                                "tv"})),
    }


def _choose_solver(setup: _Setup, options: _Options) -> str:
    if options.solver != "auto":
        return options.solver
    given = options.given()
    if "tv" in given:
        return "richardson-lucy"
    if "bounds" in given:
        return "lsq_linear"
    if "weights" not in given:
        if setup.exact_model:
            return "fft"
        if setup.separable and options.regularizer == "tikhonov" and \
                max(setup.op.input_shape) <= SVD_AUTO_MAX:
            return "svd"
    return "cg" if setup.square else "lsqr"


def _check_applicable(solver: str, setup: _Setup, options: _Options) -> None:
    """The exact solvers' conditions, checked before any work (the damp search needs them)."""
    if solver == "fft" and not setup.exact_model:
        raise ValueError(
            "`solver`='fft' needs an operator the FFT or DCT diagonalises exactly: mode 'same' "
            "with boundary 'wrap', or boundary 'symmetric' with a kernel symmetric along every "
            f"axis (odd sizes); got mode {options.mode!r}, boundary {options.boundary!r}. Use "
            "solver='cg' or 'lsqr'")
    if solver == "svd" and not setup.separable:
        raise ValueError("`solver`='svd' needs a separable kernel (an outer product of 1-D "
                         "kernels, such as a Gaussian); use solver='cg' or 'lsqr'")
    if solver == "svd" and options.regularizer != "tikhonov":
        raise ValueError("`solver`='svd' solves Tikhonov problems only; use solver='cg' with "
                         f"`regularizer`={options.regularizer!r}")


def _noise_std_used(noise_std, damp, solver, stacklevel) -> bool:
    """Whether a given `noise_std` is used (by damp="auto"'s discrepancy principle, which
    Richardson-Lucy has not); a warning when it is not."""
    if noise_std is None:
        return False
    if damp is None and solver != "richardson-lucy":
        return True
    why = "richardson-lucy" if solver == "richardson-lucy" else "a given `damp`"
    warnings.warn(f"`noise_std` is used only to choose damp='auto' (the discrepancy "
                  f"principle); with {why} it was ignored", UserWarning, stacklevel=stacklevel)
    return False


def _check_uses(solver: str, table, options: _Options) -> None:
    _noise_std_used(options.noise_std, options.damp, solver, stacklevel=4)
    unused = sorted(options.given() - table[solver].uses)
    if solver == "richardson-lucy" and options.damp is not None and \
            options.regularizer != "tv" and np.any(options.damp != 0):
        unused.append("damp")
    if not unused:
        return
    names = ", ".join(f"`{name}`" if name not in ("gradient", "tv") else f"`regularizer`={name!r}"
                      for name in unused)
    users = {name: [s for s, spec in table.items() if name in spec.uses] for name in unused}
    hint = "; ".join(f"{name} is used by {', '.join(map(repr, u))}" for name, u in users.items() if u)
    if options.solver == "auto":
        warnings.warn(f"solver 'auto' chose {solver!r}, which does not use {names}"
                      f"{' (' + hint + ')' if hint else ''}; they were ignored", UserWarning,
                      stacklevel=3)
        return
    raise ValueError(f"solver {solver!r} does not use {names}{'; ' + hint if hint else ''}")


# -- per-frame problem ---------------------------------------------------------------------------

class _Problem:
    """``min ||A x - y||_w^2 + damp^2 ||R x||^2`` for one frame, with its bookkeeping."""

    def __init__(self, setup: _Setup, y, weights, background):
        self.setup, self.op = setup, setup.op
        self.y = np.asarray(y - background, dtype=np.result_type(setup.dtype, y))
        self.raw_y, self.background = y, background
        self.weights = weights
        self.sqrt_w = None if weights is None else np.sqrt(weights).ravel()
        self.gradients = setup.gradients

    def weighted(self, v):
        return v if self.sqrt_w is None else self.sqrt_w * v

    def data_norm(self, Ax):
        return float(np.linalg.norm(self.weighted(Ax - self.y.ravel())))

    def objective(self, Ax, x, Rx, damp):
        value = self.data_norm(Ax) ** 2
        if damp:
            penalty = sum(np.vdot(r, r).real for r in Rx) if self.gradients else \
                np.vdot(x, x).real
            value += damp**2 * penalty
        return math.sqrt(value)

    def regularised(self, v):
        return [d @ v for d in self.gradients]

    def rhs(self):
        return self.op.H @ self.weighted(self.weighted(self.y.ravel()))

    def normal(self, damp, tracker=None):
        """``A^H W A + damp^2 R^H R``; `tracker` sees each ``(v, A v, R v)``."""
        op, gradients, w = self.op, self.gradients, self.weights

        def matvec(v):
            v = np.ravel(v)
            Av = op @ v
            Rv = [d @ v for d in gradients]
            if tracker is not None:
                tracker.saw(v, Av, Rv)
            out = op.H @ (Av if w is None else w.ravel() * Av)
            if gradients:
                return out + damp**2 * sum(d.H @ r for d, r in zip(gradients, Rv))
            return out + damp**2 * v
        n = op.shape[1]
        return spla.LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=op.dtype)

    def stacked(self, damp):
        """``[W^(1/2) A; damp R]`` and its right-hand side, for lsqr/lsmr/lsq_linear."""
        op, gradients = self.op, self.gradients
        m, n = op.shape
        blocks = gradients if gradients else [spla.aslinearoperator(sp.eye_array(n, dtype=op.dtype))]

        def matvec(v):
            return np.concatenate([self.weighted(op @ v)] + [damp * (d @ v) for d in blocks])

        def rmatvec(u):
            parts = np.split(u, [m + i * n for i in range(len(blocks))])
            return op.H @ self.weighted(parts[0]) + \
                sum(damp * (d.H @ p) for d, p in zip(blocks, parts[1:]))
        A = spla.LinearOperator((m + len(blocks) * n, n), matvec=matvec, rmatvec=rmatvec,
                                dtype=op.dtype)
        b = np.concatenate([self.weighted(self.y.ravel()), np.zeros(len(blocks) * n)])
        return A, b

    def preconditioner(self, options: _Options, damp: float):
        """The spectral model's ``(A^H A + damp^2 R^H R)^{-1}`` for "auto", else the user's.

        Where the model is approximate its damp is kept at or above
        ``PRECONDITIONER_FLOOR ||A||``: below it the model's boundary mismatch,
        amplified by ``1 / damp^2``, slows CG down instead of speeding it up
        (measured: with "reflect" and damp 1e-3, 1000 iterations did not
        converge with the model at damp 1e-3; 193 did at 3e-2).  Weights scale
        the model by their mean.
        """
        if not isinstance(options.preconditioner, str):
            return options.preconditioner
        mean_w = 1.0 if self.weights is None else float(np.mean(self.weights))
        model = self.setup.model(self.op.input_shape)
        floor = 0.0 if model.exact and self.weights is None else \
            PRECONDITIONER_FLOOR * self.setup.scale * math.sqrt(mean_w)
        inverse = model.normal_inverse(max(damp, floor) / math.sqrt(mean_w))
        return inverse if mean_w == 1.0 else inverse * (1.0 / mean_w)


class _Tracker:
    """Residual history and callbacks for cg/gmres without extra operator applications.

    The normal operator reports each ``(p, A p, R p)``; CG moves along the last
    ``p``, so ``A x`` is updated with the same step: ``A x += alpha A p``.
    """

    def __init__(self, problem: _Problem, damp, options: _Options, x0, label):
        self.problem, self.damp, self.options = problem, damp, options
        self.norms: list[float] = []
        self.last = None
        n = problem.op.shape[1]
        self.x = np.zeros(n, problem.op.dtype) if x0 is None else np.array(x0)
        self.Ax = problem.op @ self.x if x0 is not None else np.zeros(problem.op.shape[0],
                                                                      problem.op.dtype)
        self.Rx = problem.regularised(self.x) if problem.gradients else []
        self.progress = _Progress(options.maxiter or 1000, label) if options.progress else None

    def saw(self, v, Av, Rv):
        self.last = (np.array(v), Av, Rv)

    def step(self, xk):
        """CG's callback: `xk` = the previous x plus a multiple of the last direction."""
        xk = np.ravel(xk)
        v, Av, Rv = self.last if self.last is not None else (None, None, None)
        delta = xk - self.x
        alpha = 0.0 if v is None else np.vdot(v, delta) / np.vdot(v, v)
        if v is not None and \
                np.linalg.norm(delta - alpha * v) <= 1e-8 * max(np.linalg.norm(delta), 1e-300):
            self.Ax = self.Ax + alpha * Av
            self.Rx = [r + alpha * s for r, s in zip(self.Rx, Rv)]
        else:  # not a CG step (gmres restarts): apply once
            self.Ax = self.problem.op @ xk
            self.Rx = self.problem.regularised(xk)
        self.x = xk.copy()
        self.report(xk)

    def report(self, xk, norm=None):
        if norm is None:
            norm = self.problem.objective(self.Ax, self.x, self.Rx, self.damp)
        self.norms.append(norm)
        if self.options.callback is not None:
            self.options.callback(np.array(xk).reshape(self.problem.op.input_shape))
        if self.progress is not None:
            self.progress.update(len(self.norms), norm)

    def close(self):
        if self.progress is not None:
            self.progress.close()


class _Progress:
    """A tqdm bar when tqdm is installed, else a line on stderr refreshed at most 5x/s."""

    def __init__(self, total, label):
        self.label, self.total = label, total
        self.last = 0.0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=label, leave=False)

    def update(self, k, norm):
        if self.bar is not None:
            self.bar.update(k - self.bar.n)
            self.bar.set_postfix(residual=f"{norm:.3e}")
            return
        now = time.monotonic()
        if now - self.last > 0.2:
            self.last = now
            print(f"\r{self.label}: iteration {k}/{self.total}, residual {norm:.4e}",
                  end="", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:
            print(file=sys.stderr, flush=True)


def _cg_rtol(tol, damp, scale):
    """CG's tolerance on the normal equations for a solution accurate to about `tol`.

    The normal residual bounds the error only through ``1 / damp^2``: an
    ``rtol`` of `tol` leaves errors of ``tol ||A||^2 / damp^2``.  Scaling it
    by ``damp / ||A||`` keeps the error near `tol` down to the damp floor.
    """
    return max(tol * min(1.0, damp / scale), 1e-13)


def _cg(problem, options, damp, x0, tracker, maxiter):
    normal = problem.normal(damp, tracker)
    x, info = spla.cg(normal, problem.rhs(), x0=x0, maxiter=maxiter,
                      rtol=_cg_rtol(options.tol, damp, problem.setup.scale),
                      M=problem.preconditioner(options, damp), callback=tracker.step)
    return x, len(tracker.norms), info == 0


def _gmres(problem, options, damp, x0, tracker, maxiter):
    A, b = problem.normal(damp, tracker), problem.rhs()
    x, info = spla.gmres(A, b, x0=x0, rtol=_cg_rtol(options.tol, damp, problem.setup.scale),
                         restart=20, maxiter=maxiter, M=problem.preconditioner(options, damp),
                         callback=tracker.step, callback_type="x")
    return x, len(tracker.norms), info == 0


def _least_squares(solver):
    def run(problem, options, damp, x0, tracker, maxiter):
        if problem.gradients or problem.weights is not None:
            A, b = problem.stacked(damp)
            kwargs = {}
        else:
            A, b, kwargs = problem.op, problem.y.ravel(), {"damp": damp}
        limit = {"iter_lim": maxiter} if solver is spla.lsqr else {"maxiter": maxiter}
        tol = options.tol * min(1.0, max(damp, ITERATIVE_FLOOR * problem.setup.scale)
                                / problem.setup.scale)
        out = solver(A, b, atol=tol, btol=tol, x0=x0, **limit, **kwargs)
        x, istop, itn = out[:3]
        tracker.x, tracker.Ax, tracker.Rx = x, problem.op @ x, problem.regularised(x)
        tracker.report(x)  # lsqr and lsmr have no per-iteration hook: once, with the solution
        # istop 0: x = 0 is exact; 1, 2: converged; 4, 5: to machine precision
        return x, int(itn), istop in (0, 1, 2, 4, 5)
    return run


def _lsq_linear(problem, options, damp, x0, tracker, maxiter):
    A, b = problem.stacked(damp)
    lo, hi = options.bounds
    shape = problem.op.input_shape
    lo = np.broadcast_to(lo, shape).ravel() if np.ndim(lo) else lo
    hi = np.broadcast_to(hi, shape).ravel() if np.ndim(hi) else hi
    out = scipy.optimize.lsq_linear(A, b, bounds=(lo, hi), method="trf", lsmr_tol="auto",
                                    tol=options.tol, max_iter=maxiter)
    x = out.x
    tracker.x, tracker.Ax, tracker.Rx = x, problem.op @ x, problem.regularised(x)
    tracker.report(x)
    return x, int(out.nit), bool(out.success)


def _fft(problem, options, damp, x0, tracker, maxiter):
    setup = problem.setup
    model = setup.model(problem.op.input_shape)
    if damp == 0:
        from ._fft import _check_conditioning
        _check_conditioning(np.sqrt(model.power), 0.0)
    x = model.inverse(model.solve(model.forward(problem.y), damp),
                      real=setup.dtype.kind != "c" and problem.y.dtype.kind != "c").ravel()
    tracker.x, tracker.Ax, tracker.Rx = x, problem.op @ x, problem.regularised(x)
    tracker.report(x)
    return x, 1, True


def _svd(problem, options, damp, x0, tracker, maxiter):
    kron = problem.setup.kronecker()
    x = kron.solve(kron.coefficients(problem.y)[0], damp).ravel()
    tracker.x, tracker.Ax, tracker.Rx = x, problem.op @ x, []
    tracker.report(x)
    return x, 1, True


def _richardson_lucy(problem, options, damp, x0, tracker, maxiter):
    from ._richardson_lucy import richardson_lucy
    outcome = richardson_lucy(problem.op, problem.raw_y, weights=problem.weights,
                              background=problem.background, maxiter=options.maxiter,
                              tol=options.tol, tv=damp if options.regularizer == "tv" else 0.0,
                              x0=None if x0 is None else x0.reshape(problem.op.input_shape),
                              callback=options.callback)
    tracker.norms = list(outcome.residual_norms)
    return outcome.x.ravel(), outcome.iterations, outcome.converged


# -- the damp ----------------------------------------------------------------------------------

def _discrepancy_root(residual, target, lo, hi):
    """The damp in [lo, hi] whose residual equals `target` (the residual grows with damp)."""
    f = lambda log_d: residual(math.exp(log_d)) - target
    if f(math.log(lo)) >= 0:
        return lo, "the smallest damp (the residual reaches the noise level without damping)"
    if f(math.log(hi)) <= 0:
        return hi, "the largest damp (the noise level exceeds the data)"
    return math.exp(scipy.optimize.brentq(f, math.log(lo), math.log(hi), xtol=1e-4)), None


def _choose_damp(problem: _Problem, solver: str, sigma: float, options: _Options):
    """Morozov's discrepancy principle: the damp whose residual ``||A x - y||_w`` is
    ``sigma sqrt(sum w)`` (``sigma sqrt(m)`` without weights).

    - "fft" and "svd" evaluate the residual exactly for every damp (spectral
      or Kronecker SVD), so the root is exact; the damp is kept above
      ``sqrt(eps) ||A||``.
    - The iterative solvers start from the root on the spectral model of the
      "same" operator, then correct it by Newton steps on ``log residual``
      against ``log damp`` with the exact residual of preconditioned CG solves
      (the model gives the slope).  The damp is kept above
      ``ITERATIVE_FLOOR ||A||``: below it the normal equations need more than
      a few hundred iterations and no longer converge in `maxiter`.

    Returns ``(damp, how, x)`` with `x` a warm start (or None).
    """
    setup = problem.setup
    scale = setup.scale
    count = problem.y.size if problem.weights is None else float(problem.weights.sum())
    target = sigma * math.sqrt(count)
    exact = solver in ("fft", "svd")
    floor = scale * (math.sqrt(np.finfo(float).eps) if exact else ITERATIVE_FLOOR)
    hi = scale * 1e3
    if target == 0:
        return floor, "the smallest damp the solver resolves (the data have no noise)", None
    if solver == "svd":
        kron = setup.kronecker()
        coefficients = kron.coefficients(problem.y)
        damp, limit = _discrepancy_root(lambda d: kron.residual_norm(coefficients, d),
                                        target, floor, hi)
        return damp, limit or "discrepancy principle (exact, Kronecker SVD)", None
    model = setup.model(problem.y.shape)
    Y = model.forward(problem.y)
    model_residual = lambda d: model.residual_norm(Y, d)
    damp, limit = _discrepancy_root(model_residual, target, floor, hi)
    if exact:
        return damp, limit or "discrepancy principle (exact, spectral)", None
    # Newton on the exact residual, with the model's slope d log r / d log damp
    x = None
    tracker_options = _Options(**{**options.__dict__, "callback": None, "progress": False})
    for _ in range(8):
        tracker = _Tracker(problem, damp, tracker_options, x, "")
        normal = problem.normal(damp, tracker)
        x, _ = spla.cg(normal, problem.rhs(), x0=x, maxiter=300,
                       rtol=_cg_rtol(1e-3, damp, scale), M=problem.preconditioner(options, damp),
                       callback=tracker.step)
        residual = problem.data_norm(tracker.Ax)
        miss = math.log(max(residual, 1e-300) / target)
        if abs(miss) < 0.01 or (damp <= floor * 1.0001 and miss > 0) or \
                (damp >= hi * 0.9999 and miss < 0):
            break
        step = 0.05
        slope = (math.log(max(model_residual(damp * math.exp(step)), 1e-300)) -
                 math.log(max(model_residual(damp * math.exp(-step)), 1e-300))) / (2 * step)
        damp = min(max(damp * math.exp(-miss / max(slope, 0.25)), floor), hi)
    how = "discrepancy principle (spectral model, corrected by Newton steps on the exact " \
          "residual)"
    if damp <= floor * 1.0001:
        how = f"the iterative floor {ITERATIVE_FLOOR:g} ||A|| (the discrepancy damp is smaller)"
    return damp, how, x


def _warn_undamped(problem: _Problem, sigma: float):
    """``damp=0`` on data whose estimated noise the inverse would amplify past the signal."""
    model = problem.setup.model(problem.y.shape)
    power = np.maximum(model.power, np.finfo(float).eps * model.power.max())
    gain = math.sqrt(float(np.mean(1.0 / power)))
    rms = float(np.sqrt(np.mean(np.abs(problem.y) ** 2)))
    if sigma * gain > 0.1 * rms:
        warnings.warn(
            f"`damp`=0 on data with noise (estimated std {sigma:.3g}): the undamped solution "
            f"amplifies it to an rms of about {sigma * gain:.3g} against data of rms {rms:.3g}; "
            "use damp='auto' (the discrepancy principle) or a positive damp", UserWarning,
            stacklevel=4)


def _boundary_mismatch(problem: _Problem, x, sigma: float, options: _Options):
    """A message when the residual piles up near the edges: the boundary rule is wrong there.

    With the right model the residual ``A x - y`` of the discrepancy solution is
    noise everywhere.  Data cut out of a larger scene under a zero model leave
    a residual concentrated within the kernel's reach of the edges (measured
    1.5-1.9x the interior's rms, against 0.99-1.02 with the right model); the
    damp, chosen for the noise alone, is then far too small there and the
    image rings.  The periodic model fits any data, so there the data are
    checked: a jump across the seam much larger than the steps beside it.
    """
    op = problem.op
    reach = [k for k in problem.setup.kernel.shape]
    shape = op.output_shape
    band = np.zeros(shape, dtype=bool)
    for axis, (n, k) in enumerate(zip(shape, reach)):
        if n <= 4 * k:
            return None  # too small to tell edges from interior
        index = [slice(None)] * len(shape)
        index[axis] = np.r_[0:k, n - k:n]
        band[tuple(index)] = True
    if band.sum() < 100:
        return None
    advice = (f"the boundary rule {options.boundary!r} does not fit these data, and the damp "
              "(chosen for the noise alone) is too small there. For data cut out of a larger "
              "scene use mode='valid' (the unknown extends past the frame) or "
              "boundary='symmetric'")
    rms = lambda a: float(np.sqrt(np.mean(np.abs(a) ** 2)))
    if options.boundary == "wrap":  # the periodic model fits anything: look at the data's seam
        y = problem.y
        for axis, k in enumerate(reach):
            # a circular blur smooths across the seam as everywhere: compare with the steps
            # beside it, within the kernel's reach (not with the image's own edges elsewhere)
            seam = rms(np.take(y, 0, axis) - np.take(y, -1, axis))
            near = np.take(y, np.r_[-k - 1:0, 0:k + 1], axis=axis)
            step = rms(np.delete(np.diff(near, axis=axis), k, axis=axis))
            if seam > 4 * step:
                return (f"the data jump {seam / step:.0f}x more across the periodic seam of "
                        f"axis {axis} than beside it: {advice}")
        return None
    residual = problem.weighted(op @ np.ravel(x) - problem.y.ravel()).reshape(shape)
    edge, inner = rms(residual[band]), rms(residual[~band])
    # only where the residual is noise, not bias (exact data leave bias, piled where the
    # operator is weak: at a zero boundary's edges, with the right model too)
    if 0.7 * sigma <= inner <= 2 * sigma and edge > 1.25 * inner:
        return (f"the residual is {edge / inner:.1f}x larger within the kernel's reach of the "
                f"edges than inside: {advice}")
    return None


# -- the front door ----------------------------------------------------------------------------

def deconvolve(y, kernel, *, mode="same", boundary="zero", correlate=False, solver="auto",
               damp="auto", noise_std=None, regularizer="tikhonov", bounds=None, weights=None,
               background=0.0, maxiter=None, tol=1e-6, preconditioner="auto", x0=None,
               callback=None, progress=False):
    r"""Undo a convolution: ``argmin_x ||A x - y||_w^2 + damp^2 ||R x||^2``, or Richardson-Lucy.

    ``A`` is the exact convolution with `kernel` (any boundary and mode of
    :class:`ConvolutionOperator`, stride 1); ``R`` is the identity
    (``regularizer="tikhonov"``) or the gradient (``"gradient"``: forward
    differences along every axis, periodic for ``boundary="wrap"``, else with
    the symmetric boundary); ``||r||_w^2 = sum w r^2``.

    Parameters
    ----------
    y : array_like or dask array
        The blurred (noisy) data, the operator's output.  More axes than
        `kernel`: the leading axes are independent frames.  A dask array
        returns a dask ``x`` (see :doc:`/larger_than_memory`).
    kernel : array_like
        The blur (point spread function), one axis per axis of a frame.
    mode, boundary, correlate
        The forward model, as :class:`ConvolutionOperator`.  ``mode="valid"``
        models an unknown larger than the data (no inverse crime).
    solver : {"auto", "lsqr", "lsmr", "cg", "gmres", "fft", "svd", "lsq_linear", "richardson-lucy", "rl"}
        "lsqr"/"lsmr": scipy's, on ``[W^(1/2) A; damp R]``.  "cg": scipy's on
        the normal equations, preconditioned by the spectral model.  "gmres":
        scipy's on the normal equations.  "fft": the exact O(N log N) solve
        (periodic boundary, or symmetric boundary with a symmetric kernel).
        "svd": the exact solve for a separable kernel, any boundary and mode,
        from the SVDs of the 1-D factors (Tikhonov).  "lsq_linear": scipy's
        bounded least squares (`bounds`).  "richardson-lucy" (alias "rl"): the
        Poisson maximum-likelihood iteration ``x <- x A^H(w y / (A x + b)) /
        A^H w`` on the exact operator, non-negative.  "auto": "richardson-lucy"
        for ``regularizer="tv"``, "lsq_linear" with `bounds`, else "fft" when
        exact, "svd" for a separable kernel (Tikhonov, axes up to 2048), else
        "cg" (square operators) or "lsqr"; the result says which.
    damp : float, array or "auto"
        Regularisation weight (scipy lsqr's ``damp``; for
        ``regularizer="tv"`` the total-variation weight).  One per frame is
        accepted for stacks.  "auto" (default) applies the discrepancy
        principle (see Notes) with `noise_std`, given or estimated by
        :func:`estimate_noise_std`.  A number, 0 included, is used as given;
        ``damp=0`` on data that looks noisy warns.
    noise_std : float, optional
        Standard deviation of the noise in `y`, for ``damp="auto"``.
    regularizer : {"tikhonov", "gradient", "tv"}
        "tv": total variation, with Richardson-Lucy only (Dey et al. 2006).
    bounds : (lo, hi), optional
        Bounds on ``x`` (either may be None), e.g. ``(0, None)``: solved by
        scipy.optimize.lsq_linear.
    weights : array_like, optional
        Per-sample data weights shaped like `y` (>= 0); 0 marks a missing or
        saturated sample, which then has no influence on ``x``.
    background : float or array_like
        A known offset ``b`` in the data: ``y = A x + b + noise``.
    maxiter : int, optional
        Iteration limit (default 1000 for the least-squares solvers; gmres:
        restart cycles of 20; Richardson-Lucy: its own stopping rule).
    tol : float
        Relative tolerance of the iterative solvers.
    preconditioner : "auto", None or LinearOperator
        For "cg" and "gmres": "auto" uses the spectral model's
        ``(A^H A + damp^2 R^H R)^{-1}`` (see :func:`linconv.fft.preconditioner`).
    x0 : array_like, optional
        Starting image (not modified).
    callback : callable, optional
        ``callback(xk)`` once per iteration with `xk` shaped like the image, by
        "cg", "gmres" and "richardson-lucy"; once with the solution by the
        direct solves and by "lsqr"/"lsmr"/"lsq_linear" (scipy offers no
        per-iteration hook there).
    progress : bool
        Show progress (a tqdm bar if installed, else a line on stderr).

    Returns
    -------
    DeconvolutionResult

    Raises
    ------
    ValueError
        A bad argument, or one the chosen solver does not use (with
        ``solver="auto"``: a warning naming it).

    Notes
    -----
    ``damp="auto"``: the damp whose residual ``||A x - y||_w`` equals
    ``noise_std * sqrt(sum w)`` (Morozov's discrepancy principle).  The noise
    level, when not given, is the smaller of two robust estimates (the finest
    Haar details, and the DCT coefficients the kernel attenuates most; see
    :func:`estimate_noise_std`); an estimated level is raised by two standard
    errors of the estimate (1-7 %), since too low a target collapses the damp
    where the residual curve is flat.  "fft" and "svd" evaluate the residual
    exactly for every damp; the iterative solvers start from the spectral model of the
    "same" operator and correct the damp by Newton steps on the exact residual.
    Over noise levels from 10 % down to 0.1 % this lands within about 1 dB of
    the best Tikhonov damp (``benchmarks/bench_deconvolve.py``; a kernel that
    hardly attenuates any frequency makes the noise estimate high at low
    noise: pass `noise_std` there).  Less noise never
    gives a larger damp; exactly noise-free data give the smallest damp the
    solver resolves (``sqrt(eps) ||A||`` for the direct solves,
    ``1e-3 ||A||`` for the iterative ones).

    Examples
    --------
    >>> import numpy as np, linconv
    >>> rng = np.random.default_rng(0)
    >>> x = np.zeros((64, 64)); x[20:44, 16:48] = 1.0
    >>> k = np.outer(*2 * [np.exp(-np.arange(-3, 4) ** 2 / 4.0)]); k /= k.sum()
    >>> y = linconv.convolve(x, k, "same") + 0.01 * rng.standard_normal((64, 64))
    >>> result = linconv.deconvolve(y, k)
    >>> result.solver, result.converged
    ('svd', True)
    >>> rms = lambda estimate: np.sqrt(np.mean((estimate - x) ** 2))
    >>> bool(rms(result.x) < rms(y))
    True
    """
    if is_dask_array(y):
        from ._dask import deconvolve_dask
        return deconvolve_dask(y, kernel, mode=mode, boundary=boundary, correlate=correlate,
                               solver=solver, damp=damp, noise_std=noise_std,
                               regularizer=regularizer, bounds=bounds, weights=weights,
                               background=background, maxiter=maxiter, tol=tol,
                               preconditioner=preconditioner, x0=x0, callback=callback,
                               progress=progress)
    y = as_array(y, "y")
    kernel = as_kernel(kernel)
    out_dtype = {np.dtype(np.float32): np.float32, np.dtype(np.complex64): np.complex64}.get(y.dtype)
    if y.dtype not in (np.float64, np.complex128):  # solved in double precision
        y = y.astype(np.complex128 if y.dtype.kind == "c" else np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` must be finite; it contains NaN or inf")
    if y.ndim < kernel.ndim:
        raise ValueError(f"`y` must have at least the kernel's {kernel.ndim} axes; got shape "
                         f"{y.shape}")
    options = _parse(y, kernel, mode, boundary, correlate, solver, damp, noise_std, regularizer,
                     bounds, weights, background, maxiter, tol, preconditioner, x0, callback,
                     progress)
    batch = y.shape[:y.ndim - kernel.ndim]
    frame_shape = y.shape[len(batch):]
    setup = _Setup(kernel, frame_shape, options)
    if x0 is not None:
        x0 = as_array(x0, "x0")
        if not np.all(np.isfinite(x0)):
            raise ValueError("`x0` must be finite; it contains NaN or inf")
        if x0.shape != setup.op.input_shape:
            raise ValueError(f"`x0` must have the image's shape {setup.op.input_shape}; got "
                             f"{x0.shape}")
        x0 = x0.astype(setup.dtype).ravel()  # a copy: the caller's array is never touched
    table = _solver_table()
    chosen = _choose_solver(setup, options)
    _check_uses(chosen, table, options)
    _check_applicable(chosen, setup, options)
    if chosen == "richardson-lucy" and (y.dtype.kind == "c" or kernel.dtype.kind == "c"):
        raise TypeError("Richardson-Lucy needs real, non-negative data and kernel; got complex")
    if options.regularizer == "tv" and chosen != "richardson-lucy":
        raise ValueError("`regularizer`='tv' needs solver='richardson-lucy'")
    damps = None if options.damp is None else np.broadcast_to(options.damp, batch)

    frames = []
    for index in np.ndindex(*batch):  # a loop, not a comprehension: warnings' stack level
        frames.append(_solve_frame(setup, table, chosen, options, y[index], index, damps, x0))
    x = np.stack([f["x"] for f in frames]).reshape(batch + setup.op.input_shape)
    if y.dtype.kind != "c" and kernel.dtype.kind != "c":
        x = x.real
    if out_dtype is not None:
        x = x.astype(out_dtype)
    pick = (lambda key: frames[0][key]) if not batch else \
        (lambda key: np.array([f[key] for f in frames]).reshape(batch))
    messages = frames[0]["messages"] + ([f"{len(frames)} frames"] if batch else [])
    return DeconvolutionResult(
        x=x, damp=pick("damp"), solver=chosen, iterations=pick("iterations"),
        converged=pick("converged"),
        residual_norms=frames[0]["norms"] if not batch else [f["norms"] for f in frames],
        noise_std=None if frames[0]["sigma"] is None else pick("sigma"),
        regularizer=options.regularizer, message="; ".join(messages))


def _solve_frame(setup, table, solver, options, y, index, damps, x0):
    weights = None if options.weights is None else options.weights[index]
    background = options.background
    if np.ndim(background) and np.ndim(background) > y.ndim:
        background = background[index]
    problem = _Problem(setup, y, weights, background)
    messages = []
    sigma = options.noise_std if damps is None and solver != "richardson-lucy" else None
    warm = None
    if damps is None and solver == "richardson-lucy":
        damp = TV_AUTO if options.regularizer == "tv" else 0.0
        if options.regularizer == "tv":
            messages.append(f"total-variation weight {damp:g} (Dey et al. 2006)")
    elif damps is None:
        margin = 1.0
        if sigma is None:
            sigma, count = _noise_estimate(problem.y, setup.kernel, weights)
            # an underestimated noise level is costly (where the residual curve is flat the
            # damp collapses), an overestimate benign: aim at its upper bound, two standard
            # errors of a MAD estimate from `count` Gaussian samples above it
            margin = 1.0 + 2 * MAD_STANDARD_ERROR / math.sqrt(count)
            messages.append(f"noise std {sigma:.3g} estimated from the data (target "
                            f"{margin:.3f}x that)")
        damp, how, warm = _choose_damp(problem, solver, sigma * margin, options)
        messages.append(f"damp {damp:.4g} by {how}")
    else:
        damp = float(damps[index])
        if damp == 0 and solver != "richardson-lucy":
            _warn_undamped(problem, _noise_estimate(problem.y, setup.kernel, weights)[0])
    messages.append(f"solver {solver}")
    maxiter = 1000 if options.maxiter is None else int(options.maxiter)
    start = x0 if x0 is not None else (warm if solver in ("cg", "gmres") else None)
    tracker = _Tracker(problem, damp, options, start, f"deconvolve ({solver})")
    try:
        x, iterations, converged = table[solver].run(problem, options, damp, start, tracker,
                                                     maxiter)
    finally:
        tracker.close()
    if damps is None and solver != "richardson-lucy" and options.mode != "valid" and sigma:
        mismatch = _boundary_mismatch(problem, x, sigma, options)
        if mismatch:
            warnings.warn(mismatch, UserWarning, stacklevel=3)  # deconvolve's caller
            messages.append(mismatch)
    return {"x": np.asarray(x).reshape(setup.op.input_shape), "damp": float(damp),
            "iterations": int(iterations), "converged": bool(converged),
            "norms": np.array(tracker.norms), "sigma": sigma, "messages": messages}
