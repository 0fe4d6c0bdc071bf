"""Every application method ("direct", "fft", "sparse", "auto") against independent oracles.

Forward results are compared with the np.pad oracle; adjoints with dense linear
algebra on the oracle's matrix (small cases) or the dot test and the sparse
matrix's transpose (large cases, where banding and overlap-save kick in).
"""

import numpy as np
import pytest

import linconv
from cases import (BOUNDARIES, CASES, SWEEP, Case, case_params, check_operator_contract,
                   dense_by_columns, oracle_convolve, oracle_correlate, random_array)

METHODS = ["direct", "fft", "sparse", "auto"]


def _assert_close(actual, expected, rtol, x=None, h=None):
    """Relative to the output's magnitude, or to ||h||_1 max|x| (all-padding outputs are 0)."""
    scale = np.abs(expected).max()
    if x is not None:
        scale = max(scale, np.abs(h).sum() * np.abs(x).max())
    assert np.abs(actual - expected).max() <= rtol * (scale + 1e-300)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", case_params())
@pytest.mark.parametrize("kernel_dtype,data_dtype", [
    (np.float64, np.float64), (np.complex128, np.float64), (np.float64, np.complex128)])
def test_methods_against_oracle(method, case, kernel_dtype, data_dtype, rng):
    h = random_array(rng, case.kernel_shape, kernel_dtype)
    x = random_array(rng, (2,) + case.input_shape, data_dtype)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, correlate=True,
                                     method=method, **case.options())
    expected = np.stack([oracle_correlate(xi, h, case) for xi in x])
    _assert_close(op.apply(x), expected, 1e-12, x, h)
    # adjoint against dense linear algebra on the oracle's matrix
    n = int(np.prod(case.input_shape))
    dense = np.stack([oracle_correlate(e.reshape(case.input_shape), h, case).ravel()
                      for e in np.eye(n)], axis=1)
    y = random_array(rng, (2, dense.shape[0]), data_dtype)
    _assert_close(op.H.matmat(y.T).T, y @ dense.conj(), 1e-12, y, h)
    _assert_close(op.T.matmat(y.T).T, y @ dense, 1e-12, y, h)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_methods_on_random_sweep(method):
    rng = np.random.default_rng(5)
    for case in SWEEP[::3]:
        h = random_array(rng, case.kernel_shape, np.complex128)
        x = random_array(rng, case.input_shape, np.complex128)
        op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, correlate=True,
                                         method=method, **case.options())
        _assert_close(op.apply(x), oracle_correlate(x, h, case), 1e-12, x, h)
        y = random_array(rng, op.shape[0], np.complex128)
        bound = 1e-12 * np.abs(h).sum() * np.linalg.norm(x) * np.linalg.norm(y)
        assert abs(np.vdot(y, op @ x.ravel()) - np.vdot(op.H @ y, x.ravel())) <= bound


LARGE = [  # with the thresholds lowered below: row bands (direct), overlap-save (fft)
    *[Case((61, 47), (3, 3), "same", b) for b in BOUNDARIES],
    *[Case((61, 47), (4, 5), ((1, 2), (3, 0)), b, (2, 1)) for b in BOUNDARIES],
    *[Case((61, 47), (7, 2), "valid", b, 1, (2, 3)) for b in BOUNDARIES],
    *[Case((40, 9, 8), (3, 2, 3), "same", b, (1, 2, 1)) for b in BOUNDARIES],
    *[Case((50000,), (31,), "same", b) for b in BOUNDARIES],
    *[Case((40001,), (17,), "full", b, 3, 2) for b in BOUNDARIES],
    *[Case((30000,), (9,), (40, 3), b, 2) for b in BOUNDARIES],
]


@pytest.fixture
def bands(monkeypatch):
    """Split even small arrays into row bands, on any number of cores."""
    import linconv._engines as engines
    monkeypatch.setattr(engines, "BAND_MIN", 64)
    calls = []
    real = engines._pool

    def counting_pool(workers):
        calls.append(1)
        return real(workers)
    monkeypatch.setattr(engines, "_pool", counting_pool)
    with linconv.set_workers(3):
        yield calls


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", case_params(LARGE))
def test_large_inputs(method, case, bands, rng):
    h = random_array(rng, case.kernel_shape, np.float64)
    x = random_array(rng, (2,) + case.input_shape, np.float64)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, correlate=True,
                                     method=method, **case.options())
    expected = np.stack([oracle_correlate(xi, h, case) for xi in x])
    _assert_close(op.apply(x), expected, 1e-12, x, h)
    # the adjoint by the dot test against the oracle's forward: <A x, y> = <x, A^H y>
    y = random_array(rng, (2,) + op.output_shape, np.float64)
    lhs = np.vdot(expected, y)
    rhs = np.vdot(x, op.H.apply(y))
    assert abs(lhs - rhs) <= 1e-12 * np.abs(h).sum() * np.linalg.norm(x) * np.linalg.norm(y)
    if method == "direct" and len(case.input_shape) > 1:
        assert bands, "the banded path was not exercised"


@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
@pytest.mark.parametrize("case", case_params(CASES[::3] + LARGE[::4]))
def test_float32_stays_float32(method, case, rng):
    h = random_array(rng, case.kernel_shape, np.float32)
    x = random_array(rng, case.input_shape, np.float32)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, correlate=True,
                                     method=method, **case.options())
    assert op.dtype == np.float32
    y = op.apply(x)
    assert y.dtype == np.float32 and (op.H @ y.ravel()).dtype == np.float32
    _assert_close(y, oracle_correlate(x.astype(float), h.astype(float), case), 1e-5, x, h)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_complex64(method, rng):
    h = random_array(rng, (4, 3), np.complex64)
    x = random_array(rng, (20, 17), np.complex64)
    case = Case((20, 17), (4, 3), "same", "reflect")
    op = linconv.ConvolutionOperator(h, x.shape, "same", boundary="reflect", correlate=True,
                                     method=method)
    assert op.apply(x).dtype == np.complex64
    _assert_close(op.apply(x), oracle_correlate(x.astype(complex), h.astype(complex), case), 1e-5)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", case_params(CASES[::5]))
def test_contract_for_every_method(method, case, rng):
    h = random_array(rng, case.kernel_shape, np.complex128)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, method=method,
                                     **case.options())
    assert op.method == method
    check_operator_contract(op, rng)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", case_params([
    Case((9, 8), (3, 4), "same", "edge"), Case((9, 8), (3, 4), "same", "reflect", (2, 1), (1, 2)),
    Case((7, 6), (2, 3), ((0, 3), (2, 1)), "wrap", (1, 2))]))
def test_tosparse_from_matrix_free_methods(method, case, rng):
    """A matrix-free operator's matrix is the oracle's, built column by column."""
    h = rng.integers(-9, 10, case.kernel_shape).astype(float)  # integer taps: exact sums
    dense = dense_by_columns(lambda e: oracle_convolve(e, h, case),
                             int(np.prod(case.input_shape)), case.input_shape)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, method=method,
                                     **case.options())
    assert op.method == method
    np.testing.assert_array_equal(op.tosparse().toarray(), dense)


@pytest.mark.parametrize("shape,kernel,expected", [
    ((8, 8), (3, 3), "sparse"), ((1024, 1024), (3, 3), "direct"),
    ((1024, 1024), (31, 31), "fft"), ((10**6,), (1023,), "fft")])
def test_auto_choices(shape, kernel, expected):
    from linconv._engines import choose_method
    from linconv._geometry import Geometry
    g = Geometry.from_args(kernel, shape, "same")
    assert choose_method(g, np.ones(kernel)) == expected


@pytest.mark.parametrize("dtype,workers,kernel,expected", [
    (np.float64, 1, (5, 5), "direct"), (np.float64, 2, (5, 5), "direct"),
    (np.float32, 1, (5, 5), "fft"), (np.float32, 2, (5, 5), "fft"),
    (np.float32, 2, (3, 3), "direct"), (np.float64, 2, (7, 7), "fft")])
def test_auto_choices_follow_precision_and_threads(dtype, workers, kernel, expected):
    """The choices the timed sweep of benchmarks/bench_apply.py found fastest on a
    1024x1024 image (single-precision transforms run about twice as fast; ndimage
    does not)."""
    op_kernel = np.ones(kernel, dtype)
    with linconv.set_workers(workers):
        op = linconv.ConvolutionOperator(op_kernel, (1024, 1024), "same", boundary="reflect")
    assert op.method == expected


def test_cost_model_scales_with_precision_and_threads():
    """The estimates' factors: single precision only cheapens the transforms; a second
    thread speeds the direct bands by DIRECT_THREADS and transforms over 2 axes by
    FFT_THREADS, and 1-D transforms not at all."""
    from linconv import _engines
    from linconv._geometry import Geometry
    g2, g1 = Geometry.from_args((5, 5), (1024, 1024), "same"), \
        Geometry.from_args((63,), (10**6,), "same")
    for g in (g1, g2):
        with linconv.set_workers(1):
            one = _engines.estimated_seconds(g, np.ones(g.kernel_shape))
            single = _engines.estimated_seconds(g, np.ones(g.kernel_shape, np.float32))
        with linconv.set_workers(2):
            two = _engines.estimated_seconds(g, np.ones(g.kernel_shape))
        assert single["direct"] == one["direct"]
        assert single["fft"] == pytest.approx(_engines.FFT_SINGLE * one["fft"])
        assert two["direct"] == pytest.approx(one["direct"] / (1 + _engines.DIRECT_THREADS))
        speedup = 1 + _engines.FFT_THREADS if g is g2 else 1
        assert two["fft"] == pytest.approx(one["fft"] / speedup)


def test_convolve_methods_agree_with_scipy(rng):
    import scipy.signal
    x = rng.standard_normal((70, 65))
    h = rng.standard_normal((6, 5))
    expected = scipy.signal.convolve(x, h, "full")
    for method in METHODS:
        _assert_close(linconv.convolve(x, h, method=method), expected, 1e-12)


@pytest.mark.parametrize("method", ["sparse", "direct", "fft"])
@pytest.mark.parametrize("boundary", ["reflect", "symmetric", "edge", "wrap"])
def test_float32_kernel_with_float64_data_is_computed_in_float64(method, boundary, rng):
    """The entries the boundary adds up (1 + 1e-7 is 1 in float32) must be summed at the
    data's precision: float64 oracle (np.pad + scipy) to 1e-15."""
    import scipy.signal
    h = np.array([1.0, 0.0, 1e-7], np.float32)
    x = rng.standard_normal(6)
    op = linconv.ConvolutionOperator(h, 6, "same", boundary=boundary, method=method)
    mode = {"reflect": "reflect", "symmetric": "symmetric", "edge": "edge", "wrap": "wrap"}
    xp = np.pad(x, 1, mode=mode[boundary])
    expected = scipy.signal.convolve(xp, h.astype(np.float64), "valid")
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-14, atol=1e-15)
    y = rng.standard_normal(6)
    dense = np.stack([scipy.signal.convolve(np.pad(e, 1, mode=mode[boundary]),
                                            h.astype(np.float64), "valid") for e in np.eye(6)], 1)
    np.testing.assert_allclose(op.H.apply(y), dense.T @ y, rtol=1e-14, atol=1e-15)
    assert op.apply(x.astype(np.float32)).dtype == np.float32
