"""Richardson-Lucy against a plain numpy RL on dense matrices built from np.pad + scipy.signal."""

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

import linconv
from linconv._richardson_lucy import noise_variance_model, richardson_lucy

NUMPY_PAD = {"zero": "constant", "wrap": "wrap", "reflect": "reflect",
             "symmetric": "symmetric", "edge": "edge"}


def dense_matrix(kernel, shape, mode, boundary):
    """Dense convolution matrix, column by column: np.pad then scipy.signal.convolve 'valid'."""
    kernel = np.asarray(kernel, float)
    if mode == "same":
        pads = [(k // 2, (k - 1) // 2) for k in kernel.shape]
    elif mode == "full":
        pads = [(k - 1, k - 1) for k in kernel.shape]
    else:
        pads = [(0, 0)] * kernel.ndim
    columns = []
    for j in range(int(np.prod(shape))):
        e = np.zeros(shape)
        e.flat[j] = 1
        padded = np.pad(e, pads, mode=NUMPY_PAD[boundary])
        columns.append(scipy.signal.convolve(padded, kernel, "valid").ravel())
    return np.array(columns).T


def rl_oracle(A, y, iterations, w=None, b=0.0, x0=None):
    """The formula x <- x * A^T(w y / (A x + b)) / A^T w, in plain numpy; iterates and norms."""
    b = np.broadcast_to(b, y.shape).ravel()
    y = y.ravel()
    w = np.ones_like(y) if w is None else w.ravel()
    s = A.T @ w
    x = (np.full(A.shape[1], np.sum(w * (y - b)) / s.sum()) if x0 is None else x0.ravel())
    norms, start, seen = [], x, s > 0  # unobserved pixels keep their start value
    for _ in range(iterations):
        x = np.where(seen, x * (A.T @ (w * y / (A @ x + b))) / np.where(seen, s, 1), start)
        norms.append(np.sqrt(np.sum(w * (A @ x + b - y) ** 2)))
    return x, np.array(norms)


def problem(shape, kernel_shape, mode, boundary, seed=0):
    rng = np.random.default_rng(seed)
    kernel = rng.uniform(0.1, 1.0, kernel_shape)
    kernel /= kernel.sum()
    op = linconv.ConvolutionOperator(kernel, shape, mode, boundary=boundary)
    A = dense_matrix(kernel, shape, mode, boundary)
    truth = rng.uniform(0, 50, shape)
    y = rng.poisson(A @ truth.ravel() + 2.0).astype(float).reshape(op.output_shape)
    return op, A, y


CASES = [((17,), (5,), "same", b) for b in ("zero", "wrap", "reflect", "symmetric", "edge")]
CASES += [((17,), (4,), "same", "symmetric"), ((17,), (5,), "valid", "zero"),
          ((17,), (5,), "full", "zero"), ((9, 8), (3, 5), "same", "zero"),
          ((9, 8), (3, 5), "same", "symmetric"), ((9, 8), (3, 3), "same", "wrap"),
          ((9, 8), (3, 5), "valid", "zero"), ((5, 6, 4), (3, 3, 2), "same", "reflect")]


@pytest.mark.parametrize("shape, kshape, mode, boundary", CASES,
                         ids=[f"{'x'.join(map(str, c[0]))}-k{'x'.join(map(str, c[1]))}-"
                              f"{c[2]}-{c[3]}" for c in CASES])
def test_matches_dense_oracle(shape, kshape, mode, boundary):
    op, A, y = problem(shape, kshape, mode, boundary)
    out = richardson_lucy(op, y, background=2.0, maxiter=15, tol=0, accelerate=False)
    x, norms = rl_oracle(A, y, 15, b=2.0)
    assert out.x.shape == op.input_shape and out.iterations == 15
    np.testing.assert_allclose(out.x.ravel(), x, rtol=1e-9, atol=1e-9 * x.max())
    np.testing.assert_allclose(out.residual_norms, norms, rtol=1e-9)
    assert out.stop_reason == "maxiter" and not out.converged


def test_zero_boundary_against_scipy_linalg_convolution_matrix():
    rng = np.random.default_rng(3)
    kernel = rng.uniform(0.1, 1, 4)
    y = rng.uniform(1, 5, 14 + 4 - 1)
    A = scipy.linalg.convolution_matrix(kernel, 14, "full")
    op = linconv.ConvolutionOperator(kernel, 14, "full")
    x, _ = rl_oracle(A, y, 20)
    np.testing.assert_allclose(richardson_lucy(op, y, maxiter=20, tol=0,
                                               accelerate=False).x, x, rtol=1e-9)


def test_weights_background_and_masked_samples_removed():
    op, A, y = problem((10, 9), (3, 3), "valid", "zero", seed=1)
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2, y.shape)
    w[rng.random(y.shape) < 0.3] = 0
    b = rng.uniform(0.5, 3, y.shape)
    out = richardson_lucy(op, y, weights=w, background=b, maxiter=12, tol=0,
                          accelerate=False)
    x, norms = rl_oracle(A, y, 12, w=w, b=b)
    np.testing.assert_allclose(out.x.ravel(), x, rtol=1e-9)
    np.testing.assert_allclose(out.residual_norms, norms, rtol=1e-9)
    # masked samples: same as dropping their rows, whatever y holds there
    keep = w.ravel() > 0
    x_rows, _ = rl_oracle(A[keep], y.ravel()[keep], 12, w=w.ravel()[keep], b=b.ravel()[keep])
    np.testing.assert_allclose(out.x.ravel(), x_rows, rtol=1e-9)
    other = np.where(w > 0, y, np.nan)
    again = richardson_lucy(op, other, weights=w, background=b, maxiter=12, tol=0,
                            accelerate=False)
    np.testing.assert_array_equal(again.x, out.x)


def test_unobserved_pixels_keep_their_start():
    kernel = np.array([1.0, 2.0, 1.0]) / 4
    op = linconv.ConvolutionOperator(kernel, 20, "same")
    y = np.full(20, 3.0)
    w = np.ones(20)
    w[6:12] = 0  # pixels 7..10 are seen by no weighted sample
    x0 = np.arange(20.0) + 1
    out = richardson_lucy(op, y, weights=w, x0=x0, maxiter=5, tol=0)
    np.testing.assert_array_equal(out.x[7:11], x0[7:11])
    assert np.all(np.isfinite(out.x))
    np.testing.assert_array_equal(x0, np.arange(20.0) + 1)  # x0 not modified


def test_zero_data_gives_zero_ratio_and_stays_finite():
    op = linconv.ConvolutionOperator(np.ones(3) / 3, 12, "same")
    y = np.zeros(12)
    y[5] = 4.0
    x0 = np.zeros(12)
    x0[4:7] = 1.0  # A x0 == 0 far from the spike, where y == 0 too
    out = richardson_lucy(op, y, x0=x0, maxiter=30, tol=0)
    assert np.all(np.isfinite(out.x)) and out.x[:2].max() == 0 and out.x[-2:].max() == 0


def biggs_andrews_oracle(A, y, iterations):
    s = A.T @ np.ones_like(y)
    v = np.full(A.shape[1], y.sum() / s.sum())
    x_prev, g_prev = v, None
    for _ in range(iterations):
        x = v * (A.T @ (y / (A @ v))) / s
        g = x - v
        alpha = 0.0 if g_prev is None else np.clip(g @ g_prev / (g_prev @ g_prev), 0, 1 - 1e-3)
        v, x_prev, g_prev = np.maximum(x + alpha * (x - x_prev), 0), x, g
    return v


def test_acceleration_against_oracle_and_faster():
    op, A, y = problem((30,), (7,), "same", "symmetric", seed=2)
    y = y.ravel()
    out = richardson_lucy(op, y, maxiter=25, tol=0, accelerate=True)
    np.testing.assert_allclose(out.x, biggs_andrews_oracle(A, y, 25), rtol=1e-8)
    plain = richardson_lucy(op, y, maxiter=25, tol=0, accelerate=False)
    assert out.residual_norms[-1] < plain.residual_norms[-1]


def test_tv_against_1d_oracle_and_flattens():
    rng = np.random.default_rng(4)
    truth = np.repeat([5.0, 40.0, 10.0, 30.0], 10)
    kernel = np.exp(-np.arange(-3, 4) ** 2 / 4.0)
    kernel /= kernel.sum()
    A = dense_matrix(kernel, truth.shape, "same", "symmetric")
    y = rng.poisson(A @ truth).astype(float)
    op = linconv.ConvolutionOperator(kernel, truth.shape, "same", boundary="symmetric")
    tv = 0.01
    out = richardson_lucy(op, y, tv=tv, maxiter=40, tol=0, accelerate=False)
    s = A.T @ np.ones_like(y)
    x = np.full(40, y.sum() / s.sum())
    eps = 1e-3 * x.mean()
    for _ in range(40):
        grad = np.append(np.diff(x), 0.0)
        u = grad / np.sqrt(grad ** 2 + eps ** 2)
        div = u - np.concatenate([[0.0], u[:-1]])
        x = x * (A.T @ (y / (A @ x))) / np.maximum(s - tv * div, 1e-3 * s)
    np.testing.assert_allclose(out.x, x, rtol=1e-8)
    plain = richardson_lucy(op, y, maxiter=40, tol=0, accelerate=False)
    assert np.abs(np.diff(out.x)).sum() < np.abs(np.diff(plain.x)).sum()


def test_nonnegative_iterates():
    rng = np.random.default_rng(5)
    truth = np.zeros((24, 24))
    truth[rng.integers(0, 24, 15), rng.integers(0, 24, 15)] = 200.0
    op = linconv.ConvolutionOperator(linconv.datasets.gaussian_kernel(5, 1.0), (24, 24), "same")
    y = rng.poisson(op.apply(truth)).astype(float)
    minima = []
    for accelerate, tv in [(True, 0.0), (False, 0.0), (True, 0.05)]:
        richardson_lucy(op, y, maxiter=60, tol=0, accelerate=accelerate, tv=tv,
                        callback=lambda x: minima.append(x.min()))
    assert len(minima) == 180 and min(minima) >= 0


def test_noise_variance_model_recovers_the_noise():
    rng = np.random.default_rng(6)
    mean = 10 + 200 * np.add.outer(np.linspace(0, 1, 150), np.linspace(0, 1, 150))
    gain, variance = noise_variance_model(rng.poisson(mean))
    assert abs(gain - 1) < 0.1 and variance < 5
    gain, variance = noise_variance_model(mean / 100 + 0.02 * rng.standard_normal(mean.shape))
    assert gain < 1e-4 and abs(np.sqrt(variance) - 0.02) < 0.002
    low = 1 + 25 * np.add.outer(np.linspace(0, 1, 150), np.linspace(0, 1, 150))
    mixed = 2 * rng.poisson(low) + 3 * rng.standard_normal(low.shape)  # Var = 2 E + 9
    gain, variance = noise_variance_model(mixed)
    levels = np.array([8.0, 20.0, 50.0])  # predicted variance in the bulk of the data
    np.testing.assert_allclose(gain * levels + variance, 2 * levels + 9, rtol=0.2)


def psnr(x, truth):
    return 10 * np.log10(truth.max() ** 2 / np.mean((x - truth) ** 2))


@pytest.mark.parametrize("accelerate", [True, False])
def test_stopping_rule_lands_near_best_iteration(accelerate):
    rng = np.random.default_rng(7)
    truth = 100 * linconv.datasets.phantom(64) + 5
    op = linconv.ConvolutionOperator(linconv.datasets.gaussian_kernel(7, 1.5), truth.shape,
                                     "same", boundary="symmetric")
    y = rng.poisson(op.apply(truth)).astype(float)
    seen = []
    out = richardson_lucy(op, y, accelerate=accelerate, callback=lambda x: seen.append(x))
    assert out.stop_reason == "risk" and out.converged
    assert len(seen) > out.iterations and len(out.residual_norms) == out.iterations
    np.testing.assert_array_equal(out.x, seen[out.iterations - 1])  # the k-th iterate
    gain, _ = out.noise_model
    assert abs(gain - 1) < 0.2
    curve = [psnr(x, truth) for x in seen]
    assert psnr(out.x, truth) > max(curve) - 0.5


def test_noise_free_data_runs_long():
    truth = 50 + 100 * linconv.datasets.phantom(32)
    op = linconv.ConvolutionOperator(linconv.datasets.gaussian_kernel(5, 1.0), truth.shape,
                                     "same")
    out = richardson_lucy(op, op.apply(truth))
    assert out.iterations > 100
    assert np.abs(out.x - truth).mean() < 0.5 * np.abs(op.apply(truth) - truth).mean()


def test_callback_and_tol():
    op, _, y = problem((40,), (5,), "same", "zero", seed=8)
    calls = []
    out = richardson_lucy(op, y, maxiter=7, tol=0, callback=lambda x: calls.append(x.shape))
    assert calls == [(40,)] * 7 and out.iterations == 7
    out = richardson_lucy(op, y, maxiter=400, tol=1e-3)
    assert out.stop_reason == "tol" and out.converged and out.iterations < 400


def test_float32_in_float32_out():
    op, _, y = problem((12, 11), (3, 3), "same", "reflect", seed=9)
    out32 = richardson_lucy(op, y.astype(np.float32), maxiter=10, tol=0)
    out64 = richardson_lucy(op, y, maxiter=10, tol=0)
    assert out32.x.dtype == np.float32 and out64.x.dtype == np.float64
    np.testing.assert_allclose(out32.x, out64.x, rtol=1e-4)


def test_errors():
    op = linconv.ConvolutionOperator(np.ones(3) / 3, 10, "same")
    y = np.ones(10)
    with pytest.raises(ValueError, match="`y` must be non-negative; got minimum -1"):
        richardson_lucy(op, np.r_[-1.0, y[1:]])
    with pytest.raises(ValueError, match="`y` must be finite"):
        richardson_lucy(op, np.r_[np.nan, y[1:]])
    with pytest.raises(ValueError, match="`weights` must be non-negative"):
        richardson_lucy(op, y, weights=np.r_[-0.5, y[1:]])
    with pytest.raises(ValueError, match=r"`weights` must be a scalar or have shape \(10,\)"):
        richardson_lucy(op, y, weights=np.ones(9))
    with pytest.raises(ValueError, match="`background` must be non-negative"):
        richardson_lucy(op, y, background=-1.0)
    with pytest.raises(ValueError, match="`x0` must be non-negative"):
        richardson_lucy(op, y, x0=-np.ones(10))
    with pytest.raises(ValueError, match=r"`x0` must have the operator's input shape \(10,\)"):
        richardson_lucy(op, y, x0=np.ones(11))
    with pytest.raises(ValueError, match=r"`y` must have the operator's output shape \(10,\)"):
        richardson_lucy(op, np.ones(11))
    with pytest.raises(TypeError, match="`y` must be real"):
        richardson_lucy(op, y + 0j)
    complex_op = linconv.ConvolutionOperator(np.ones(3) * (1 + 1j), 10, "same")
    with pytest.raises(TypeError, match="operator is complex"):
        richardson_lucy(complex_op, y)
    negative = linconv.ConvolutionOperator(np.array([1.0, -0.5, 1.0]), 10, "same")
    with pytest.raises(ValueError, match="`kernel` must be non-negative"):
        richardson_lucy(negative, y)
    with pytest.raises(ValueError, match="`maxiter` must be a positive integer or None"):
        richardson_lucy(op, y, maxiter=0)
    with pytest.raises(ValueError, match="`tv` must be a non-negative number"):
        richardson_lucy(op, y, tv=-1)
    with pytest.raises(ValueError, match="`tol` must be a non-negative number"):
        richardson_lucy(op, y, tol=-1)
    with pytest.raises(ValueError, match="no pixel of the image is observed"):
        richardson_lucy(op, y, weights=np.zeros(10))
    with pytest.raises(ValueError, match="needs at least 100 observed samples"):
        richardson_lucy(op, y)
    with pytest.raises(TypeError, match="`callback` must be callable"):
        richardson_lucy(op, y, maxiter=2, callback=3)
