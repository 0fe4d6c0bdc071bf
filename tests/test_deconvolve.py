"""deconvolve against the dense regularised least-squares solution and its promises."""

import numpy as np
import pytest
import scipy.signal
import warnings

import linconv
from cases import Case, dense_by_columns, oracle_convolve



def gaussian(shape, sigma=1.0):
    grids = np.meshgrid(*[np.arange(k) - k // 2 for k in shape], indexing="ij")
    k = np.exp(-sum(g**2 for g in grids) / (2 * sigma**2))
    return k / k.sum()


def image(shape):
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    x = (sum(g**2 for g in grids) < 0.5).astype(float)
    return x + 0.3 * np.sin(3 * grids[0])


def dense_problem(shape, kernel, mode, boundary):
    case = Case(shape, kernel.shape, mode, boundary)
    return dense_by_columns(lambda e: oracle_convolve(e, kernel, case), int(np.prod(shape)), shape)


def dense_gradient(shape, boundary):
    """Forward differences along each axis (periodic for wrap, else last difference 0)."""
    blocks = []
    for axis, n in enumerate(shape):
        d = -np.eye(n) + np.eye(n, k=1)
        if boundary == "wrap":
            d[-1, 0] = 1.0
        else:
            d[-1, -1] = 0.0
        factors = [np.eye(m) for m in shape]
        factors[axis] = d
        full = factors[0]
        for f in factors[1:]:
            full = np.kron(full, f)
        blocks.append(full)
    return np.vstack(blocks)


def exact_solution(A, y, damp, R):
    return np.linalg.solve(A.T @ A + damp**2 * R.T @ R, A.T @ y.ravel())


PROBLEMS = [  # shape, kernel shape, mode, boundary, solvers
    ((40,), (5,), "same", "zero", ["lsqr", "lsmr", "cg", "gmres"]),
    ((12, 11), (3, 3), "same", "zero", ["lsqr", "lsmr", "cg", "gmres"]),
    ((12, 11), (3, 3), "same", "wrap", ["fft", "cg", "lsqr", "gmres"]),
    ((12, 11), (3, 5), "same", "symmetric", ["fft", "cg", "lsmr"]),
    ((12, 11), (3, 3), "same", "reflect", ["cg", "lsqr"]),
    ((12, 11), (2, 3), "same", "edge", ["cg", "lsqr"]),
    ((6, 5, 7), (3, 3, 1), "same", "zero", ["cg", "lsqr"]),
    ((12, 11), (3, 3), "full", "zero", ["lsqr", "lsmr"]),
    ((14, 13), (3, 3), "valid", "zero", ["lsqr", "cg"]),
]


@pytest.mark.parametrize("regularizer", ["tikhonov", "gradient"])
@pytest.mark.parametrize("shape,kshape,mode,boundary,solvers", PROBLEMS,
                         ids=lambda v: str(v).replace(" ", ""))
def test_every_solver_reaches_the_regularised_minimiser(shape, kshape, mode, boundary, solvers,
                                                        regularizer, rng):
    kernel = gaussian(kshape)
    A = dense_problem(shape, kernel, mode, boundary)
    x_true = image(shape)
    y = (A @ x_true.ravel()).reshape(-1)
    out_shape = linconv.ConvolutionOperator(kernel, shape, mode, boundary=boundary).output_shape
    y = y.reshape(out_shape) + 0.01 * rng.standard_normal(out_shape)
    damp = 0.05
    R = np.eye(A.shape[1]) if regularizer == "tikhonov" else dense_gradient(shape, boundary)
    expected = exact_solution(A, y, damp, R)
    for solver in solvers:
        if solver == "fft" and regularizer == "gradient" and boundary == "symmetric":
            pass  # the DCT diagonalises the Neumann Laplacian too
        result = linconv.deconvolve(y, kernel, mode=mode, boundary=boundary, solver=solver,
                                    damp=damp, tol=1e-10, maxiter=5000, regularizer=regularizer)
        assert result.solver == solver and result.converged, (solver, result)
        assert result.x.shape == shape
        np.testing.assert_allclose(result.x.ravel(), expected, rtol=1e-5, atol=1e-5,
                                   err_msg=solver)


def disk(radius):
    r = np.arange(-radius, radius + 1)
    k = (np.add.outer(r**2, r**2) <= radius**2).astype(float)
    return k / k.sum()


@pytest.mark.parametrize("boundary,kernel,expected_solver", [
    ("zero", "gaussian", "svd"), ("zero", "disk", "cg"), ("wrap", "disk", "fft"),
    ("symmetric", "gaussian", "fft"), ("reflect", "disk", "cg"), ("edge", "gaussian", "svd")])
def test_auto_solver_choice(boundary, kernel, expected_solver, rng):
    y = rng.standard_normal((16, 16))
    kernel = gaussian((3, 3)) if kernel == "gaussian" else disk(1)
    result = linconv.deconvolve(y, kernel, boundary=boundary, damp=0.1)
    assert result.solver == expected_solver and "solver " + expected_solver in result.message
    assert linconv.deconvolve(y[:-2, :-2], disk(1), mode="valid", damp=0.1).solver == "lsqr"
    assert linconv.deconvolve(y, kernel, damp=0.1, bounds=(0, None)).solver == "lsq_linear"


def matrix_1d(g, n, boundary):
    """The 1-D 'same' convolution matrix from np.pad and scipy.linalg (no linconv)."""
    import scipy.linalg
    from cases import NUMPY_PAD_MODE
    lo, hi = len(g) // 2, (len(g) - 1) // 2
    P = np.pad(np.eye(n), ((lo, hi), (0, 0)), mode=NUMPY_PAD_MODE[boundary])
    return scipy.linalg.convolution_matrix(g, n + lo + hi, "valid") @ P


def best_tikhonov_psnr(svd, y, truth, damps=np.geomspace(1e-7, 1, 57)):
    """PSNR of the best Tikhonov damp of a sweep, by the dense SVD (the exact oracle)."""
    U, s, Vh = svd
    z = U.T @ y.ravel()
    return max(linconv.datasets.psnr((Vh.T @ (s / (s**2 + d**2) * z)).reshape(truth.shape), truth)
               for d in damps)


# damp="auto" over the whole noise range, against the best damp of an exact dense sweep.
# Given the noise level, the discrepancy damp lands within 1 dB of the best for Gaussian
# blur down to 1e-3 noise; for a disk (spectral zeros) the discrepancy principle itself
# over-smooths at low noise (measured 2.4 dB at 1e-3 on this 32x32 image).  With the noise
# estimated: never worse with less noise, never worse than the data, >= 40 dB on exact data
# (benchmarks/bench_deconvolve.py sweeps larger images, more kernels and every boundary).
@pytest.mark.parametrize("boundary,kernel", [("zero", "gaussian"), ("reflect", "gaussian"),
                                             ("zero", "disk"), ("edge", "disk")])
def test_auto_damp_over_the_noise_range(boundary, kernel):
    rng = np.random.default_rng(3)
    n = 32
    truth = np.clip(image((n, n)), 0, 1)
    if kernel == "gaussian":
        g = gaussian((7,), 1.5)
        h = np.outer(g, g)
        A = np.kron(matrix_1d(g, n, boundary), matrix_1d(g, n, boundary))
    else:
        h = disk(2)
        A = dense_problem((n, n), h, "same", boundary)
    clean = (A @ truth.ravel()).reshape(n, n)
    svd = np.linalg.svd(A)
    slack = 1.0 if kernel == "gaussian" else 2.5
    previous = -np.inf
    for sigma in (0.1, 0.01, 1e-3, 1e-4, 0.0):
        y = clean + sigma * rng.standard_normal((n, n))
        if sigma >= 1e-3:  # the damp chooser, with the true noise level
            told = linconv.deconvolve(y, h, boundary=boundary, noise_std=sigma)
            best = best_tikhonov_psnr(svd, y, truth)
            assert linconv.datasets.psnr(told.x, truth) >= best - slack, (sigma, told.damp)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the right model: no boundary-mismatch warning
            result = linconv.deconvolve(y, h, boundary=boundary)  # and the noise estimate
        got = linconv.datasets.psnr(result.x, truth)
        assert got >= previous - 0.2, (sigma, got, previous)  # less noise: no worse
        assert got > linconv.datasets.psnr(y, truth) - 1.0    # never clearly worse than the data
        previous = got
    if kernel == "gaussian":
        assert previous >= 40.0


@pytest.mark.parametrize("boundary,regularizer", [("zero", "gradient"), ("wrap", "gradient")])
def test_auto_damp_gradient_regularizer(boundary, regularizer):
    rng = np.random.default_rng(0)
    kernel = gaussian((7, 7), 1.5)
    x_true = image((48, 48))
    y = linconv.convolve(x_true, kernel, "same", boundary=boundary)
    y = y + 0.02 * rng.standard_normal(y.shape)
    auto = linconv.deconvolve(y, kernel, boundary=boundary, regularizer=regularizer)
    damps = auto.damp * np.geomspace(1 / 10, 10, 11)
    errors = [np.linalg.norm(linconv.deconvolve(y, kernel, boundary=boundary, damp=d,
                                                regularizer=regularizer).x - x_true)
              for d in damps]
    best = damps[int(np.argmin(errors))]
    assert best / 4 <= auto.damp <= best * 4, (auto.damp, best)


@pytest.mark.parametrize("boundary,kernel,solver", [
    ("wrap", "gaussian", "fft"), ("zero", "gaussian", "svd"), ("zero", "disk", "cg"),
    ("reflect", "disk", "cg")])
def test_discrepancy_principle_is_met(boundary, kernel, solver, rng):
    kernel = gaussian((5, 5)) if kernel == "gaussian" else disk(2)
    y = linconv.convolve(image((32, 32)), kernel, "same", boundary=boundary)
    y = y + 0.03 * rng.standard_normal(y.shape)
    result = linconv.deconvolve(y, kernel, boundary=boundary, noise_std=0.03)
    A = dense_problem((32, 32), kernel, "same", boundary)
    residual = np.linalg.norm(A @ result.x.ravel() - y.ravel())
    assert result.solver == solver and result.noise_std == 0.03
    np.testing.assert_allclose(residual, 0.03 * np.sqrt(y.size), rtol=2e-2)
    assert "discrepancy principle" in result.message


@pytest.mark.parametrize("shape", [(4096,), (256, 256), (24, 24, 24)])
def test_noise_estimate(shape, rng):
    smooth = image(shape)
    smooth = linconv.convolve(smooth, gaussian((5,) * len(shape)), "same")
    estimate = linconv.estimate_noise_std(smooth + 0.05 * rng.standard_normal(shape))
    assert 0.045 < estimate < 0.056


@pytest.mark.parametrize("solver", ["cg", "gmres", "fft", "svd", "lsqr", "lsmr"])
def test_callback_and_residual_history(solver):
    kernel = gaussian((3, 3))
    shape = (10, 9)
    A = dense_problem(shape, kernel, "same", "wrap")
    y = linconv.convolve(image(shape), kernel, "same", boundary="wrap") + 0.01
    seen = []
    result = linconv.deconvolve(y, kernel, boundary="wrap", solver=solver, damp=0.1, tol=1e-8,
                                callback=lambda xk: seen.append(xk.copy()))
    per_iteration = solver in ("cg", "gmres")
    assert len(seen) == len(result.residual_norms) == (result.iterations if per_iteration else 1)
    assert all(xk.shape == shape for xk in seen)
    for xk, norm in zip(seen, result.residual_norms):
        expected = np.sqrt(np.sum((A @ xk.ravel() - y.ravel()) ** 2) + 0.01 * np.sum(xk**2))
        np.testing.assert_allclose(norm, expected, rtol=1e-8)
    np.testing.assert_allclose(seen[-1], result.x, rtol=1e-12, atol=1e-12)


def test_cg_history_costs_no_extra_operator_application(monkeypatch, rng):
    from linconv._operator import GeometryOperator
    calls = {"forward": 0}
    original = GeometryOperator._forward

    def counting(self, x):
        calls["forward"] += 1
        return original(self, x)
    monkeypatch.setattr(GeometryOperator, "_forward", counting)
    y = rng.standard_normal((24, 24))
    result = linconv.deconvolve(y, disk(1), damp=0.05, solver="cg", maxiter=30, tol=1e-12)
    assert result.iterations == 30 == len(result.residual_norms)
    assert calls["forward"] <= result.iterations + 2  # one A p per iteration, plus setup


def test_weights_remove_masked_samples(rng):
    shape, kernel = (14, 13), disk(1)
    A = dense_problem(shape, kernel, "same", "zero")
    y = linconv.convolve(image(shape), kernel, "same") + 0.01 * rng.standard_normal(shape)
    weights = np.ones(shape)
    weights[3:6, 4:9] = 0.0
    weights[10, :] = 0.5
    damp = 0.05
    keep = weights.ravel() > 0
    W = np.diag(weights.ravel()[keep])
    Ak = A[keep]
    expected = np.linalg.solve(Ak.T @ W @ Ak + damp**2 * np.eye(A.shape[1]),
                               Ak.T @ W @ y.ravel()[keep])
    for solver in ("cg", "lsqr"):
        result = linconv.deconvolve(y, kernel, damp=damp, weights=weights, solver=solver,
                                    tol=1e-10)
        np.testing.assert_allclose(result.x.ravel(), expected, atol=1e-7, err_msg=solver)
        corrupted = y.copy()
        corrupted[weights == 0] = 1e6  # saturated samples have no influence
        again = linconv.deconvolve(corrupted, kernel, damp=damp, weights=weights,
                                   solver=solver, tol=1e-10)
        np.testing.assert_allclose(again.x, result.x, atol=1e-7)
    auto = linconv.deconvolve(y, kernel, weights=weights)  # the auto damp copes too
    assert auto.solver == "cg" and np.isfinite(auto.damp)


def test_bounds_match_lsq_linear_on_the_dense_system(rng):
    import scipy.optimize
    shape, kernel = (12, 11), gaussian((3, 3))
    A = dense_problem(shape, kernel, "same", "zero")
    y = linconv.convolve(np.clip(image(shape), 0, None), kernel, "same")
    y = y + 0.05 * rng.standard_normal(shape)
    damp = 0.1
    stacked = np.vstack([A, damp * np.eye(A.shape[1])])
    rhs = np.concatenate([y.ravel(), np.zeros(A.shape[1])])
    expected = scipy.optimize.lsq_linear(stacked, rhs, bounds=(0, np.inf), tol=1e-12).x
    result = linconv.deconvolve(y, kernel, damp=damp, bounds=(0, None), tol=1e-12)
    assert result.solver == "lsq_linear" and result.x.min() >= 0
    np.testing.assert_allclose(result.x.ravel(), expected, atol=1e-6)
    capped = linconv.deconvolve(y, kernel, damp=damp, bounds=(None, 0.5))
    assert capped.x.max() <= 0.5 + 1e-12


def test_frames_are_independent_with_a_damp_each(rng):
    shape, kernel = (16, 16), gaussian((5, 5))
    A = dense_problem(shape, kernel, "same", "reflect")
    clean = linconv.convolve(image(shape), kernel, "same", boundary="reflect")
    stack = np.stack([clean + s * rng.standard_normal(shape) for s in (0.1, 0.01, 0.001)])
    stack = stack.reshape(3, 1, *shape)
    result = linconv.deconvolve(stack, kernel, boundary="reflect")
    assert result.x.shape == stack.shape and result.damp.shape == (3, 1)
    assert result.damp[0, 0] > result.damp[1, 0] > result.damp[2, 0]
    for frame, damp, x in zip(stack[:, 0], result.damp[:, 0], result.x[:, 0]):
        expected = np.linalg.solve(A.T @ A + damp**2 * np.eye(A.shape[1]), A.T @ frame.ravel())
        np.testing.assert_allclose(x.ravel(), expected, atol=1e-8)
    given = linconv.deconvolve(stack, kernel, boundary="reflect", damp=[[0.1], [0.2], [0.3]])
    np.testing.assert_array_equal(given.damp.ravel(), [0.1, 0.2, 0.3])


@pytest.mark.parametrize("kernel_dtype", [np.float64, np.float32, np.int64])
def test_float32_in_float32_out(kernel_dtype, rng):
    y = rng.standard_normal((16, 16)).astype(np.float32)
    kernel = np.ones((3, 3), dtype=kernel_dtype)
    result = linconv.deconvolve(y, kernel, damp=0.5)
    assert result.x.dtype == np.float32
    assert linconv.deconvolve(y.astype(np.float64), kernel, damp=0.5).x.dtype == np.float64


def test_arguments_the_solver_cannot_use(rng):
    y, kernel = rng.standard_normal((12, 12)), gaussian((3, 3))
    M = np.eye(144)
    with pytest.raises(ValueError, match=r"solver 'fft' does not use `preconditioner`"):
        linconv.deconvolve(y, kernel, boundary="wrap", solver="fft", damp=0.1, preconditioner=M)
    with pytest.raises(ValueError, match=r"solver 'svd' does not use `x0`"):
        linconv.deconvolve(y, kernel, solver="svd", damp=0.1, x0=np.zeros((12, 12)))
    with pytest.raises(ValueError, match=r"does not use `bounds`"):
        linconv.deconvolve(y, kernel, solver="cg", damp=0.1, bounds=(0, None))
    with pytest.raises(ValueError, match=r"does not use `damp`"):
        linconv.deconvolve(np.abs(y), kernel, solver="rl", damp=0.1)
    with pytest.warns(UserWarning, match=r"solver 'auto' chose 'fft', which does not use "
                                         r"`preconditioner`, `x0`"):
        result = linconv.deconvolve(y, kernel, boundary="wrap", damp=0.1, preconditioner=M,
                                    x0=np.zeros((12, 12)))
    assert result.solver == "fft"


def test_undamped_solve_of_noisy_data_warns(rng):
    kernel = gaussian((7, 7), 2.0)
    y = linconv.convolve(image((32, 32)), kernel, "same") + 0.01 * rng.standard_normal((32, 32))
    with pytest.warns(UserWarning, match=r"`damp`=0 on data with noise"):
        linconv.deconvolve(y, kernel, damp=0, solver="cg", maxiter=5)


def test_progress_line_without_tqdm(monkeypatch, capsys, rng):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    linconv.deconvolve(rng.standard_normal((32, 32)), disk(1), damp=0.1, progress=True)
    assert "deconvolve (cg): iteration" in capsys.readouterr().err  # disk: not separable


def test_inputs_are_not_modified(rng):
    y = rng.standard_normal((16, 16))
    kernel = gaussian((3, 3))
    x0 = np.ones((16, 16))
    copies = y.copy(), kernel.copy(), x0.copy()
    for solver in ("cg", "lsqr"):
        linconv.deconvolve(y, kernel, damp="auto", x0=x0, solver=solver)
    for original, copy in zip((y, kernel, x0), copies):
        np.testing.assert_array_equal(original, copy)


def test_x0_warm_start_converges_at_once(rng):
    kernel = gaussian((3, 3))
    y = rng.standard_normal((16, 16))
    first = linconv.deconvolve(y, kernel, damp=0.1, tol=1e-10, solver="cg")
    again = linconv.deconvolve(y, kernel, damp=0.1, tol=1e-8, x0=first.x, solver="cg")
    assert again.iterations <= 1


@pytest.mark.parametrize("call,error,match", [
    (lambda: linconv.deconvolve(np.ones(8), np.ones((3, 3))), ValueError, r"at least the kernel's 2 axes"),
    (lambda: linconv.deconvolve(np.array([1.0, np.nan, 2.0]), np.ones(3)), ValueError, r"`y` must be finite"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), damp=-0.1), ValueError, r"`damp` must be a non-negative"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), damp="gcv"), ValueError, r"`damp` must be a non-negative number or 'auto'"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="bicg"), ValueError, r"`solver` must be one of"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="fft"), ValueError, r"solver='cg' or 'lsqr'"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="fft", damp=0.1), ValueError, r"`solver`='fft' needs an operator the FFT or DCT diagonalises"),
    # before the damp search, which needs the exact solver's factorisation too
    (lambda: linconv.deconvolve(np.ones((8, 8)), [[1.0, 2.0], [3.0, 1.0]], solver="svd"), ValueError, r"`solver`='svd' needs a separable kernel"),
    (lambda: linconv.deconvolve(np.ones((8, 8)), [[1.0, 2.0], [3.0, 1.0]], solver="svd", damp=0.1), ValueError, r"`solver`='svd' needs a separable kernel"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), noise_std=0), ValueError, r"`noise_std` must be a positive"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), maxiter=0), ValueError, r"`maxiter` must be a positive"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), tol=2), ValueError, r"`tol` must be a number in"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), x0=np.ones(7)), ValueError, r"`x0` must have the image's shape"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), regularizer="l1"), ValueError, r"`regularizer` must be"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="cg", regularizer="tv"), ValueError, r"`regularizer`='tv'"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), weights=-np.ones(8)), ValueError, r"`weights` must be finite, real and non-negative"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), weights=np.ones(7)), ValueError, r"`weights` must have the shape"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), weights=np.zeros(8)), ValueError, r"`weights` are all zero"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), bounds=(1, 0)), ValueError, r"`bounds` must have lo <= hi"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), bounds=0), ValueError, r"`bounds` must be a pair"),
    (lambda: linconv.deconvolve(np.ones(8), [1.0, 1.0, 0.0], solver="svd", regularizer="gradient", damp=1), ValueError, r"solver .svd. does not use .regularizer.=.gradient."),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), callback=3), TypeError, r"`callback` must be callable"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="lsqr", preconditioner=np.eye(8)), ValueError, r"solver 'lsqr' does not use `preconditioner`"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="cg", preconditioner="dct"), ValueError, r"`preconditioner` must be"),
    (lambda: linconv.deconvolve(np.ones(8), np.ones(3), solver="cg", preconditioner=object()), TypeError, r"`preconditioner` must be"),
    (lambda: linconv.deconvolve(np.ones(2), np.ones(5), mode="full"), ValueError, r"no input gives an output"),
    (lambda: linconv.estimate_noise_std(np.ones((1, 8))), ValueError, r"at least 2 samples"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_demo_runs_and_the_exact_operator_wins(tmp_path):
    from linconv._demo import run
    lines = []
    rows = run(size=64, output=None, out=lines.append)
    by_name = {r["method"]: r for r in rows}
    best = by_name["exact SVD of the separable blur, Tikhonov"]["psnr"]
    assert abs(best - by_name["CG + DCT preconditioner, Tikhonov"]["psnr"]) < 0.3
    assert best > by_name["blurred and noisy input"]["psnr"]
    assert best > by_name["FFT, assuming a periodic boundary (linconv warns: wrong boundary)"]["psnr"]
    assert any("PSNR (dB)" in line for line in lines)


def test_demo_command_line(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "linconv", "demo", "--size", "48", "--output",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "PSNR (dB)" in out.stdout
    pytest.importorskip("matplotlib")
    assert (tmp_path / "linconv_demo.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "linconv", "demo", "--size", "4"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--size must be at least 16" in bad.stderr


@pytest.mark.parametrize("shape,kshape,mode,boundary", [
    ((200,), (9,), "same", "zero"), ((200,), (9,), "valid", "zero"),
    ((180,), (7,), "full", "zero"), ((10, 12, 11), (3, 5, 3), "same", "reflect"),
    ((10, 12, 11), (3, 3, 3), "valid", "edge")])
def test_auto_damp_in_1d_3d_and_every_mode(shape, kshape, mode, boundary):
    rng = np.random.default_rng(5)
    kernel = gaussian(kshape, 1.5)
    op = linconv.ConvolutionOperator(kernel, shape, mode, boundary=boundary)
    A = dense_problem(shape, kernel, mode, boundary)
    truth = np.clip(image(shape), 0, 1)
    clean = (A @ truth.ravel()).reshape(op.output_shape)
    svd = np.linalg.svd(A, full_matrices=False)
    previous = -np.inf
    for sigma in (0.05, 0.01, 1e-3, 0.0):
        y = clean + sigma * rng.standard_normal(clean.shape)
        if sigma:
            told = linconv.deconvolve(y, kernel, mode=mode, boundary=boundary, noise_std=sigma)
            U, s, Vh = svd
            z = U.T @ y.ravel()
            best = max(linconv.datasets.psnr((Vh.T @ (s / (s**2 + d**2) * z)).reshape(shape),
                                             truth) for d in np.geomspace(1e-6, 1, 61))
            assert linconv.datasets.psnr(told.x, truth) >= best - 1.0, sigma
        got = linconv.datasets.psnr(linconv.deconvolve(y, kernel, mode=mode,
                                                       boundary=boundary).x, truth)
        assert got >= previous - 0.2, (sigma, got, previous)
        previous = got
    for solver in ("cg", "lsqr") if op.input_shape == op.output_shape else ("lsqr",):
        # the iterative discrepancy damp also meets the target on the exact residual
        y = clean + 0.01 * rng.standard_normal(clean.shape)
        result = linconv.deconvolve(y, kernel, mode=mode, boundary=boundary, solver=solver,
                                    noise_std=0.01, tol=1e-8)
        residual = np.linalg.norm(A @ result.x.ravel() - y.ravel())
        np.testing.assert_allclose(residual, 0.01 * np.sqrt(y.size), rtol=0.05)


def test_a_boundary_rule_that_does_not_fit_the_data_warns(rng):
    """Data cut out of a larger scene (no inverse crime): zero and periodic models ring."""
    n, k = 96, 7
    kernel = gaussian((k, k), 1.5)
    scene = np.clip(image((n + k - 1, n + k - 1)), 0, 1) + np.linspace(0, 1, n + k - 1)
    y = scipy.signal.correlate(scene, kernel, "valid")       # the scene continues past the frame
    y = y + 0.01 * np.random.default_rng(0).standard_normal(y.shape)
    for boundary in ("zero", "wrap"):
        with pytest.warns(UserWarning, match=f"the boundary rule '{boundary}' does not fit"):
            linconv.deconvolve(y, kernel, boundary=boundary)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        linconv.deconvolve(y, kernel, boundary="symmetric")
        linconv.deconvolve(y, kernel, mode="valid")
        for boundary in ("zero", "wrap", "reflect"):
            model_data = linconv.convolve(scene[:n, :n], kernel, "same", boundary=boundary)
            linconv.deconvolve(model_data + 0.01 * rng.standard_normal((n, n)), kernel,
                               boundary=boundary)
