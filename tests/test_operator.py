"""ConvolutionOperator: the LinearOperator contract, dtypes and scipy's solvers."""

import pickle

import numpy as np
import pytest
import scipy.signal
import scipy.sparse.linalg as spla

import linconv
from cases import (CASES, case_params, check_operator_contract, oracle_convolve,
                   oracle_correlate, random_array)



@pytest.mark.parametrize("case", case_params())
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_operator_contract(case, dtype, rng):
    h = random_array(rng, case.kernel_shape, dtype)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, **case.options())
    assert op.dtype == dtype
    check_operator_contract(op, rng)


@pytest.mark.parametrize("case", case_params(CASES[::4]))
@pytest.mark.parametrize("correlate", [False, True])
def test_operator_against_oracle_forward_and_dense_adjoint(case, correlate, rng):
    h = random_array(rng, case.kernel_shape, np.complex128)
    x = random_array(rng, case.input_shape, np.complex128)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, correlate=correlate,
                                     **case.options())
    oracle = oracle_correlate if correlate else oracle_convolve
    expected = oracle(x, h, case)
    assert op.output_shape == expected.shape
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-12, atol=1e-12)
    # adjoint and transpose against dense linear algebra on the oracle's matrix
    dense = np.stack([oracle(e.reshape(case.input_shape), h, case).ravel()
                      for e in np.eye(x.size)], axis=1)
    y = random_array(rng, expected.size, np.complex128)
    np.testing.assert_allclose(op.H @ y, dense.conj().T @ y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.T @ y, dense.T @ y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.toarray(), dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.H.toarray(), dense.conj().T, rtol=1e-12, atol=1e-12)


def test_attributes_and_kernel_not_flipped(rng):
    h = rng.standard_normal((2, 3))
    op = linconv.ConvolutionOperator(h, (5, 6), "valid", stride=(1, 2))
    assert op.input_shape == (5, 6) and op.output_shape == (4, 2)
    assert op.shape == (8, 30)
    np.testing.assert_array_equal(op.kernel, h)
    assert op.method == "sparse"
    assert op.T.input_shape == (4, 2) and op.T.output_shape == (5, 6)
    assert op.H.H is op and op.T.T is op
    assert "ConvolutionOperator" in repr(op) and "adjoint" in repr(op.H)


@pytest.mark.parametrize("kernel_dtype,expected", [
    (np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float64),
    (np.int16, np.float32), (np.complex64, np.complex64), (np.complex128, np.complex128)])
def test_dtype_rule(kernel_dtype, expected, rng):
    h = random_array(rng, (3,), kernel_dtype)
    op = linconv.ConvolutionOperator(h, 8)
    assert op.dtype == expected
    for x_dtype in (np.float32, np.float64, np.complex64, np.int64):
        x = random_array(rng, 8, x_dtype)
        want = np.result_type(x, op.dtype)
        assert (op @ x).dtype == want
        assert op.apply(x).dtype == want
        assert (op.H @ random_array(rng, 10, x_dtype)).dtype == want


def test_float32_accuracy(rng):
    h = rng.standard_normal((5, 5)).astype(np.float32)
    x = rng.standard_normal((16, 16)).astype(np.float32)
    y = linconv.ConvolutionOperator(h, x.shape, "same").apply(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, scipy.signal.convolve(x.astype(float), h.astype(float), "same"),
                               rtol=1e-5, atol=1e-5)


def test_explicit_dtype():
    op = linconv.ConvolutionOperator([1, 2, 3], 6, dtype=np.complex64)
    assert op.dtype == np.complex64
    assert (op @ np.ones(6, np.float32)).dtype == np.complex64


def test_apply_batch_axes(rng):
    h = rng.standard_normal((3, 2))
    op = linconv.ConvolutionOperator(h, (6, 5), "same", boundary="wrap")
    x = rng.standard_normal((4, 2, 6, 5))
    y = op.apply(x)
    assert y.shape == (4, 2, 6, 5)
    for idx in np.ndindex(4, 2):
        np.testing.assert_allclose(y[idx], (op @ x[idx].ravel()).reshape(6, 5), rtol=1e-14)


def test_tosparse_returns_independent_copy():
    op = linconv.ConvolutionOperator([1.0, 2.0], 4, method="sparse")
    A = op.tosparse()
    A.data[:] = 0
    assert op.tosparse().count_nonzero() == 8
    assert op.tosparse("csc").format == "csc"


def test_operators_pickle(rng):
    op = linconv.ConvolutionOperator(rng.standard_normal((3, 3)), (7, 7), "same",
                                     boundary="reflect")
    for o in (op, op.T, op.H):
        clone = pickle.loads(pickle.dumps(o))
        x = rng.standard_normal(o.shape[1])
        np.testing.assert_array_equal(clone @ x, o @ x)


# -- scipy's solvers recover a known signal through the operator -------------
def _signal(shape):
    return np.sin(np.linspace(0, 3, int(np.prod(shape)))).reshape(shape) + 0.5


@pytest.mark.parametrize("solver", ["lsqr", "lsmr"])
def test_least_squares_solvers_recover_signal(solver):
    h = np.array([[0.1, 0.3], [1.0, 0.2]])
    op = linconv.ConvolutionOperator(h, (12, 10), "full")  # tall and injective
    x_true = _signal((12, 10))
    y = op @ x_true.ravel()
    limit = {"lsqr": "iter_lim", "lsmr": "maxiter"}[solver]
    result = getattr(spla, solver)(op, y, atol=1e-14, btol=1e-14, **{limit: 2000})
    np.testing.assert_allclose(result[0], x_true.ravel(), rtol=1e-8, atol=1e-8)


def test_cg_on_normal_equations_recovers_signal():
    op = linconv.ConvolutionOperator([0.2, 1.0, 0.3], 50, "full")
    x_true = _signal(50)
    normal = op.H @ op
    x, info = spla.cg(normal, op.H @ (op @ x_true), rtol=1e-12, maxiter=500)
    assert info == 0
    np.testing.assert_allclose(x, x_true, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("boundary", ["zero", "wrap", "symmetric"])
def test_gmres_recovers_signal_square_operator(boundary):
    h = np.array([[0.05, 0.1, 0.05], [0.1, 1.0, 0.1], [0.05, 0.1, 0.05]])
    op = linconv.ConvolutionOperator(h, (9, 8), "same", boundary=boundary)
    x_true = _signal((9, 8))
    x, info = spla.gmres(op, op @ x_true.ravel(), rtol=1e-12, restart=80, maxiter=200)
    assert info == 0
    np.testing.assert_allclose(x, x_true.ravel(), rtol=1e-8, atol=1e-8)
