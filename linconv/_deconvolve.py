"""Deconvolution: regularised least squares with scipy's solvers on linconv's operators."""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.sparse.linalg as spla

from ._fft import SpectralModel, _damp
from ._geometry import Geometry
from ._operator import ConvolutionOperator
from ._validation import as_array, as_kernel

__all__ = ["deconvolve", "DeconvolutionResult", "estimate_noise_std", "SOLVERS"]

SOLVERS = ("auto", "lsqr", "lsmr", "cg", "gmres", "fft")
MAD_TO_STD = 0.6744897501960817  # Phi^{-1}(3/4): the MAD of a standard Gaussian


@dataclass(frozen=True)
class DeconvolutionResult:
    """What :func:`deconvolve` found.

    Attributes
    ----------
    x : ndarray
        The estimate, shaped like the unknown image.
    damp : float
        The regularisation weight used (chosen, with ``damp="auto"``).
    solver : str
        The solver used (chosen, with ``solver="auto"``).
    iterations : int
        Iterations run (1 for the direct "fft" solve; restart cycles for gmres).
    converged : bool
        Whether the solver met its tolerance.
    residual_norms : ndarray
        ``sqrt(||A x_k - y||^2 + damp^2 ||R x_k||^2)`` after each iteration ``k``
        (``R = I`` for Tikhonov, the gradient for ``regularizer="gradient"``).
    noise_std : float or None
        The noise level used by ``damp="auto"`` (given or estimated).
    regularizer : str
    message : str
        How damp and solver were chosen.
    """

    x: np.ndarray
    damp: float
    solver: str
    iterations: int
    converged: bool
    residual_norms: np.ndarray = field(repr=False)
    noise_std: float | None = None
    regularizer: str = "tikhonov"
    message: str = ""

    def __repr__(self):
        return (f"DeconvolutionResult(solver={self.solver!r}, damp={self.damp:.4g}, "
                f"iterations={self.iterations}, converged={self.converged}, "
                f"x.shape={self.x.shape}, regularizer={self.regularizer!r})")


def estimate_noise_std(y) -> float:
    """Standard deviation of white Gaussian noise in `y`, from its finest details.

    The median absolute deviation of the finest "all-detail" Haar wavelet
    coefficients (differences along every axis of non-overlapping 2x...x2
    blocks), divided by 0.6745 (Donoho & Johnstone, 1994).  Blur removes the
    image's own finest details, so these coefficients are almost pure noise;
    the median ignores the few edges that remain.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> rng = np.random.default_rng(0)
    >>> smooth = np.add.outer(np.linspace(0, 1, 256), np.linspace(0, 2, 256))
    >>> round(linconv.estimate_noise_std(smooth + 0.05 * rng.standard_normal((256, 256))), 3)
    0.05
    """
    y = as_array(y, "y")
    if any(n < 2 for n in y.shape):
        raise ValueError(f"`y` needs at least 2 samples along every axis; got shape {y.shape}")
    detail = y.astype(np.result_type(y, float))
    for axis in range(y.ndim):
        even = (detail.shape[axis] // 2) * 2
        lower = np.take(detail, np.arange(0, even, 2), axis=axis)
        upper = np.take(detail, np.arange(1, even, 2), axis=axis)
        detail = (upper - lower) / math.sqrt(2)
    return float(np.median(np.abs(detail)) / MAD_TO_STD)


def _gradient_operators(op: ConvolutionOperator):
    """Forward differences along every axis (periodic for "wrap", else symmetric: Neumann)."""
    shape = op.input_shape
    boundary = "wrap" if op.geometry.boundary == "wrap" else "symmetric"
    operators = []
    for axis in range(len(shape)):
        kernel = np.ones([2 if a == axis else 1 for a in range(len(shape))])
        kernel[(0,) * len(shape)] = -1.0
        pads = [(0, 1) if a == axis else (0, 0) for a in range(len(shape))]
        operators.append(ConvolutionOperator(kernel, shape, pads, boundary=boundary,
                                             correlate=True, dtype=op.dtype))
    return operators


class _Problem:
    """``min ||A x - y||^2 + damp^2 ||R x||^2`` and the pieces the solvers need."""

    def __init__(self, op, y, regularizer):
        self.op, self.y = op, y
        self.regularizer = regularizer
        self.gradients = _gradient_operators(op) if regularizer == "gradient" else []

    def objective_norm(self, x, damp):
        value = np.linalg.norm(self.op @ x - self.y.ravel()) ** 2
        if damp:
            penalty = sum(np.linalg.norm(d @ x) ** 2 for d in self.gradients) \
                if self.gradients else np.linalg.norm(x) ** 2
            value += damp**2 * penalty
        return math.sqrt(value)

    def normal(self, damp):
        """``A^H A + damp^2 R^H R`` as a LinearOperator."""
        op, gradients = self.op, self.gradients

        def matvec(v):
            out = op.H @ (op @ v)
            if gradients:
                return out + damp**2 * sum(d.H @ (d @ v) for d in gradients)
            return out + damp**2 * v
        n = op.shape[1]
        return spla.LinearOperator((n, n), matvec=matvec, rmatvec=matvec,
                                   dtype=np.result_type(op.dtype, self.y))

    def stacked(self, damp):
        """``[A; damp D_1; ...]`` for lsqr/lsmr with a gradient regulariser."""
        op, gradients = self.op, self.gradients
        m = op.shape[0]

        def matvec(v):
            return np.concatenate([op @ v] + [damp * (d @ v) for d in gradients])

        def rmatvec(u):
            n_out = op.shape[1]
            parts = np.split(u, [m + i * n_out for i in range(len(gradients))])
            return op.H @ parts[0] + sum(damp * (d.H @ p) for d, p in zip(gradients, parts[1:]))
        shape = (m + len(gradients) * op.shape[1], op.shape[1])
        return spla.LinearOperator(shape, matvec=matvec, rmatvec=rmatvec,
                                   dtype=np.result_type(op.dtype, self.y))


class _Monitor:
    """Per-iteration bookkeeping: residual norms, the user's callback, progress."""

    def __init__(self, problem, damp, callback, progress, maxiter, label):
        self.problem, self.damp = problem, damp
        self.callback = callback
        self.norms: list[float] = []
        self.progress = _Progress(maxiter, label) if progress else None

    def __call__(self, xk):
        self.norms.append(self.problem.objective_norm(xk, self.damp))
        if self.callback is not None:
            self.callback(np.array(xk).reshape(self.problem.op.input_shape))
        if self.progress is not None:
            self.progress.update(len(self.norms), self.norms[-1])

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


class _Iterates(spla.LinearOperator):
    """Reports scipy lsqr/lsmr iterates, which they expose through no hook.

    Both loops start an iteration with ``itn = itn + 1`` and then one
    ``A.matvec``; at that call the solver's frame holds ``x_{itn-1}``.  If a
    future scipy renames those locals, iterates are reported at the end only,
    with a warning.
    """

    def __init__(self, A, solver, report):
        self.A, self.report = A, report
        self.code = solver.__code__
        self.warned = False
        super().__init__(A.dtype, A.shape)

    def _matvec(self, v):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code is not self.code:
            frame = frame.f_back
        if frame is not None:
            itn, x = frame.f_locals.get("itn"), frame.f_locals.get("x")
            if itn is None or x is None:
                if not self.warned:
                    self.warned = True
                    warnings.warn("this scipy's lsqr/lsmr has no `itn`/`x` locals: iterates "
                                  "are reported at the end only", RuntimeWarning, stacklevel=2)
            elif itn >= 2:
                self.report(x)
        return self.A.matvec(v)

    def _rmatvec(self, u):
        return self.A.rmatvec(u)


def _choose_solver(solver, model):
    if solver != "auto":
        return solver
    if model is not None and model.exact:
        return "fft"
    return "cg" if model is not None else "lsqr"


def _discrepancy_damp(residual, target, scale, exact_residual):
    """The damp whose residual norm equals `target` (Morozov's discrepancy principle).

    The residual grows with damp; search ``log(damp)`` over a wide bracket.
    """
    lo, hi = scale * 1e-8, scale * 1e3
    f = lambda log_d: residual(math.exp(log_d)) - target
    f_lo, f_hi = f(math.log(lo)), f(math.log(hi))
    if f_lo >= 0:
        return lo, "the residual exceeds the noise level even without regularisation"
    if f_hi <= 0:
        return hi, "the noise level exceeds the data: the largest damp was taken"
    log_d = scipy.optimize.brentq(f, math.log(lo), math.log(hi), xtol=1e-3)
    how = "exactly" if exact_residual else "on the spectral approximation of the operator"
    return math.exp(log_d), f"discrepancy principle ({how})"


def _calibrate(problem, model, Y, damp, target, scale, x0, rounds=2):
    """Correct the spectral model's discrepancy damp with the exact operator.

    Where the model is an approximation (a zero boundary seen as symmetric or
    periodic), its residual misses the boundary mismatch, an energy ``c`` that
    hardly depends on damp: ``||A x_d - y||^2 ~ r_model(d)^2 + c``.  Measure ``c``
    with a quick preconditioned solve, re-solve the model equation, repeat.
    Returns the damp, the last solution (a warm start) and how it was found.
    """
    y = problem.y.ravel()
    for _ in range(rounds):
        normal, b = problem.normal(damp), problem.op.H @ y
        x0, _ = spla.cg(normal, b, x0=x0, rtol=1e-3, maxiter=200, M=model.normal_inverse(damp))
        exact = np.linalg.norm(problem.op @ x0 - y)
        if abs(exact - target) <= 0.01 * target:
            break
        offset = exact**2 - model.residual_norm(Y, damp) ** 2
        corrected = lambda d: math.sqrt(max(model.residual_norm(Y, d) ** 2 + offset, 0.0))
        damp, _ = _discrepancy_damp(corrected, target, scale, False)
    return damp, x0, "discrepancy principle (spectral model, calibrated on the exact operator)"


def deconvolve(y, kernel, *, mode="same", boundary="zero", correlate=False, solver="auto",
               damp=0.0, noise_std=None, maxiter=None, tol=1e-6, preconditioner="auto",
               x0=None, callback=None, progress=False, regularizer="tikhonov"):
    r"""Undo a convolution: ``argmin_x ||A x - y||^2 + damp^2 ||R x||^2`` with scipy's solvers.

    ``A`` is the convolution with `kernel` (any boundary and mode of
    :class:`ConvolutionOperator`); ``R`` is the identity (``regularizer="tikhonov"``)
    or the gradient (``"gradient"``: forward differences along every axis,
    periodic for ``boundary="wrap"``, else with the symmetric boundary).

    Parameters
    ----------
    y : array_like
        The blurred (noisy) data, the operator's output.
    kernel : array_like
        The blur, one axis per axis of `y`.
    mode, boundary, correlate
        The forward model, as :class:`ConvolutionOperator` (stride 1).
    solver : {"auto", "lsqr", "lsmr", "cg", "gmres", "fft"}
        "lsqr"/"lsmr": scipy's, on ``[A; damp R]``.  "cg": scipy's on the normal
        equations, preconditioned.  "gmres": scipy's on ``A x = y`` (square,
        ``damp=0``, Tikhonov) or on the normal equations.  "fft": the exact
        O(N log N) solve (periodic boundary, or symmetric boundary with a
        symmetric kernel).  "auto": "fft" when exact, else "cg" for square
        operators, else "lsqr"; the result says which.
    damp : float or "auto"
        Regularisation weight (scipy lsqr's ``damp``).  "auto" applies the
        discrepancy principle: the damp whose residual ``||A x - y||`` equals
        ``noise_std * sqrt(y.size)``, with `noise_std` given or estimated by
        :func:`estimate_noise_std` (median absolute deviation of the finest
        Haar details).  For square operators the residual is evaluated on the
        spectral model (exact for "wrap", and "symmetric" with a symmetric
        kernel; the DCT or circulant approximation otherwise), else by solving.
        Where the model is approximate (e.g. a zero boundary seen as
        symmetric), the boundary mismatch is measured on the exact operator
        with a quick solve and the damp corrected.  Generalized
        cross-validation is known to pick a damp about 10x too small on
        zero-boundary blur, so it is not used.  With Tikhonov the chosen damp
        lands within about 1.1x of the best one in our tests; with the gradient
        regulariser the discrepancy principle is less faithful (0.7x to 3x).
    noise_std : float, optional
        Standard deviation of the noise in `y`, for ``damp="auto"``.
    maxiter : int, optional
        Iteration limit (default 1000; gmres: restart cycles of 20).
    tol : float
        Relative tolerance handed to the solver.
    preconditioner : "auto", None or LinearOperator
        For "cg" and "gmres" on the normal equations: "auto" uses the spectral
        model's ``(A^H A + damp^2 R^H R)^{-1}`` (DCT for symmetric kernels,
        circulant otherwise; see :func:`linconv.fft.preconditioner`).
    x0 : array_like, optional
        Starting image (not modified).
    callback : callable, optional
        ``callback(xk)`` once per iteration with `xk` shaped like the image, for
        every solver.
    progress : bool
        Show progress (a tqdm bar if installed, else a line on stderr).
    regularizer : {"tikhonov", "gradient"}

    Returns
    -------
    DeconvolutionResult

    Examples
    --------
    >>> import numpy as np, linconv
    >>> rng = np.random.default_rng(0)
    >>> x = np.zeros((64, 64)); x[20:44, 16:48] = 1.0
    >>> k = np.outer(*2 * [np.exp(-np.arange(-3, 4) ** 2 / 4.0)]); k /= k.sum()
    >>> y = linconv.convolve(x, k, "same") + 0.01 * rng.standard_normal((64, 64))
    >>> result = linconv.deconvolve(y, k, damp="auto")
    >>> result.solver, result.converged
    ('cg', True)
    >>> rms = lambda estimate: np.sqrt(np.mean((estimate - x) ** 2))
    >>> bool(rms(result.x) < rms(y))
    True
    """
    y = as_array(y, "y")
    kernel = as_kernel(kernel)
    if y.dtype.kind not in "fc":
        y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` must be finite; it contains NaN or inf")
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
    if regularizer not in ("tikhonov", "gradient"):
        raise ValueError(f"`regularizer` must be 'tikhonov' or 'gradient'; got {regularizer!r}")
    auto_damp = isinstance(damp, str)
    if auto_damp and damp != "auto":
        raise ValueError(f"`damp` must be a non-negative number or 'auto'; got {damp!r}")
    damp = None if auto_damp else _damp(damp)
    if noise_std is not None and (not np.isscalar(noise_std) or not noise_std > 0
                                  or not np.isfinite(noise_std)):
        raise ValueError(f"`noise_std` must be a positive number; got {noise_std!r}")
    if maxiter is not None and (not isinstance(maxiter, (int, np.integer)) or maxiter < 1):
        raise ValueError(f"`maxiter` must be a positive integer; got {maxiter!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
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
        if solver in ("lsqr", "lsmr", "fft"):
            raise ValueError(f"`preconditioner` is not used by {solver}; pass 'auto' or None, "
                             "or use solver='cg'")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable; got {type(callback).__name__}")
    geometry = Geometry.from_output(kernel.shape, y.shape, mode, boundary)
    op = ConvolutionOperator(kernel, geometry.input_shape, mode, boundary=boundary,
                             correlate=correlate, dtype=np.result_type(kernel, y, np.float64))
    if x0 is not None:
        x0 = as_array(x0, "x0")
        if x0.shape != op.input_shape:
            raise ValueError(f"`x0` must have the image's shape {op.input_shape}; got {x0.shape}")
        x0 = x0.astype(op.dtype).ravel()  # a copy: the caller's array is never touched
    problem = _Problem(op, y, regularizer)
    square = op.input_shape == op.output_shape
    model = SpectralModel(op, regularizer) if square else None
    messages = []

    if auto_damp:
        sigma = noise_std if noise_std is not None else estimate_noise_std(y)
        if noise_std is None:
            messages.append(f"noise std {sigma:.3g} estimated from the data")
        target = sigma * math.sqrt(y.size)
        scale = float(np.abs(kernel).sum())
        if model is not None:
            Y = model.forward(y)
            residual = lambda d: model.residual_norm(Y, d)
        else:
            residual = lambda d: np.linalg.norm(
                op @ _run_lsqr(problem, d, tol=1e-4, maxiter=200) - y.ravel())
        damp, how = _discrepancy_damp(residual, target, scale, model is None or model.exact)
        if model is not None and not model.exact:
            damp, x0, how = _calibrate(problem, model, Y, damp, target, scale, x0)
        messages.append(f"damp {damp:.4g} by {how}")

    solver = _choose_solver(solver, model)
    messages.append(f"solver {solver}")
    maxiter = 1000 if maxiter is None else int(maxiter)
    monitor = _Monitor(problem, damp, callback, progress, maxiter, f"deconvolve ({solver})")
    try:
        x, iterations, converged = _SOLVE[solver](problem, model, damp, maxiter, tol,
                                                  preconditioner, x0, monitor)
    finally:
        monitor.close()
    x = np.asarray(x).reshape(op.input_shape)
    if y.dtype.kind != "c" and kernel.dtype.kind != "c":
        x = x.real
    return DeconvolutionResult(x=x, damp=float(damp), solver=solver, iterations=iterations,
                               converged=converged, residual_norms=np.array(monitor.norms),
                               noise_std=sigma if auto_damp else noise_std,
                               regularizer=regularizer, message="; ".join(messages))


def _run_lsqr(problem, damp, tol, maxiter, x0=None, report=None, solver=spla.lsqr):
    """lsqr/lsmr on ``A`` with lsqr's damp (Tikhonov) or on ``[A; damp D]`` (gradient)."""
    if problem.gradients:
        A = problem.stacked(damp)
        b = np.concatenate([problem.y.ravel(), np.zeros(A.shape[0] - problem.y.size)])
        kwargs = {}
    else:
        A, b, kwargs = problem.op, problem.y.ravel(), {"damp": damp}
    if report is not None:
        A = _Iterates(A, solver, report)
    limit = {"iter_lim": maxiter} if solver is spla.lsqr else {"maxiter": maxiter}
    out = solver(A, b, atol=tol, btol=tol, x0=x0, **limit, **kwargs)
    return out if report is not None else out[0]


def _least_squares(solver):
    def run(problem, model, damp, maxiter, tol, preconditioner, x0, monitor):
        x, istop, itn = _run_lsqr(problem, damp, tol, maxiter, x0, monitor, solver)[:3]
        if itn >= 1:
            monitor(x)
        # istop 0: x = 0 is exact; 1, 2: converged; 4, 5: to machine precision
        return x, int(itn), istop in (0, 1, 2, 4, 5)
    return run


def _preconditioner(preconditioner, model, damp):
    """The spectral model's inverse normal matrix for "auto"; else what the user gave."""
    if isinstance(preconditioner, str):
        return model.normal_inverse(damp) if model is not None else None
    return preconditioner


def _cg(problem, model, damp, maxiter, tol, preconditioner, x0, monitor):
    normal = problem.normal(damp)
    b = problem.op.H @ problem.y.ravel()
    x, info = spla.cg(normal, b, x0=x0, rtol=tol, maxiter=maxiter,
                      M=_preconditioner(preconditioner, model, damp), callback=monitor)
    return x, len(monitor.norms), info == 0


def _gmres(problem, model, damp, maxiter, tol, preconditioner, x0, monitor):
    op = problem.op
    if damp == 0 and not problem.gradients and op.shape[0] == op.shape[1]:
        A, b = op, problem.y.ravel()
        M = None if isinstance(preconditioner, str) else preconditioner
    else:
        A, b = problem.normal(damp), op.H @ problem.y.ravel()
        M = _preconditioner(preconditioner, model, damp)
    x, info = spla.gmres(A, b, x0=x0, rtol=tol, restart=20, maxiter=maxiter, M=M,
                         callback=monitor, callback_type="x")
    return x, len(monitor.norms), info == 0


def _fft(problem, model, damp, maxiter, tol, preconditioner, x0, monitor):
    if model is None or not model.exact:
        raise ValueError(
            "`solver`='fft' needs an operator the FFT or DCT diagonalises exactly: mode 'same' "
            "with boundary 'wrap', or boundary 'symmetric' with a kernel symmetric along every "
            f"axis (odd sizes); got mode/boundary {problem.op.geometry.boundary!r} here. Use "
            "solver='cg' or 'lsqr'")
    if damp == 0:
        from ._fft import _check_conditioning
        _check_conditioning(np.sqrt(model.power), 0.0)
    real = problem.y.dtype.kind != "c" and problem.op.dtype.kind != "c"
    x = model.inverse(model.solve(model.forward(problem.y), damp), real=real).ravel()
    monitor(x)
    return x, 1, True


_SOLVE = {"lsqr": _least_squares(spla.lsqr), "lsmr": _least_squares(spla.lsmr), "cg": _cg,
          "gmres": _gmres, "fft": _fft}
