"""linconv.fft against dense linear algebra on the np.pad oracle's matrices."""

import numpy as np
import pytest
import scipy.fft
import scipy.sparse.linalg as spla

import linconv
from cases import (CASES, Case, case_params, check_operator_contract, dense_by_columns,
                   oracle_convolve, oracle_correlate, random_array)



def dense(case, kernel, correlate=False):
    oracle = oracle_correlate if correlate else oracle_convolve
    return dense_by_columns(lambda e: oracle(e, kernel, case), int(np.prod(case.input_shape)),
                            case.input_shape, dtype=np.result_type(kernel, float))


def symmetric_kernel(shape, rng):
    k = rng.random(shape) + 0.5
    for axis in range(k.ndim):
        k = k + np.flip(k, axis)
    return k


@pytest.mark.parametrize("case", case_params(CASES))
@pytest.mark.parametrize("correlate", [False, True])
def test_fft_convolve_every_geometry(case, correlate, rng):
    h = random_array(rng, case.kernel_shape, np.complex128)
    x = random_array(rng, case.input_shape, np.float64)
    fn = linconv.fft.correlate if correlate else linconv.fft.convolve
    oracle = oracle_correlate if correlate else oracle_convolve
    np.testing.assert_allclose(fn(x, h, case.mode, **case.options()), oracle(x, h, case),
                               rtol=1e-12, atol=1e-12 * np.abs(h).sum() * np.abs(x).max())


CIRCULANT = [((8,), (3,)), ((7,), (4,)), ((5,), (9,)), ((6, 5), (3, 3)), ((6, 5), (2, 4)),
             ((3, 4), (5, 6)), ((4, 3, 5), (3, 2, 3))]


@pytest.mark.parametrize("shape,kshape", CIRCULANT)
@pytest.mark.parametrize("correlate", [False, True])
def test_eigenvalues_diagonalise_the_periodic_operator(shape, kshape, correlate, rng):
    h = random_array(rng, kshape, np.complex128)
    lam = linconv.fft.eigenvalues(h, shape, correlate=correlate)
    assert lam.shape == shape
    A = dense(Case(shape, kshape, "same", "wrap"), h, correlate)
    x = random_array(rng, shape, np.complex128)
    np.testing.assert_allclose(np.fft.ifftn(lam * np.fft.fftn(x)).ravel(), A @ x.ravel(),
                               rtol=1e-12, atol=1e-12)
    # the eigenvalues of a circulant matrix are its spectrum: compare as multisets
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(A)),
                               np.sort_complex(lam.ravel()), rtol=1e-9, atol=1e-9)


def test_eigenvalues_explicit_padding_is_circulant_too(rng):
    h = rng.standard_normal(4)
    lam = linconv.fft.eigenvalues(h, (9,), mode=(3, 0))
    A = dense(Case((9,), (4,), (3, 0), "wrap"), h)
    x = rng.standard_normal(9)
    np.testing.assert_allclose(np.fft.ifft(lam * np.fft.fft(x)).real, A @ x, rtol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="full"), r"not circulant"), (dict(mode="valid"), r"not circulant"),
    (dict(boundary="zero"), r"`boundary` must be 'wrap'")])
def test_eigenvalues_refuse_other_geometries(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linconv.fft.eigenvalues(np.ones(3), (8,), **kwargs)


@pytest.mark.parametrize("shape,kshape", [((8,), (3,)), ((7,), (5,)), ((6, 5), (3, 3)),
                                          ((5, 6), (5, 1)), ((4, 3, 5), (3, 3, 1)), ((3,), (7,))])
def test_dct_eigenvalues_diagonalise_the_symmetric_operator(shape, kshape, rng):
    h = symmetric_kernel(kshape, rng)
    lam = linconv.fft.dct_eigenvalues(h, shape)
    A = dense(Case(shape, kshape, "same", "symmetric"), h)
    n = int(np.prod(shape))
    C = scipy.fft.dctn(np.eye(n).reshape((n,) + shape), norm="ortho",
                       axes=tuple(range(1, len(shape) + 1))).reshape(n, n).T
    np.testing.assert_allclose(C.T @ np.diag(lam.ravel()) @ C, A, rtol=1e-12, atol=1e-12)


def test_dct_eigenvalues_need_a_symmetric_odd_kernel():
    with pytest.raises(ValueError, match=r"symmetric along every axis with odd sizes"):
        linconv.fft.dct_eigenvalues(np.ones(4), (8,))
    with pytest.raises(ValueError, match=r"not symmetric"):
        linconv.fft.dct_eigenvalues([1.0, 2.0, 3.0], (8,))


@pytest.mark.parametrize("boundary,shape,kshape", [
    ("wrap", (9,), (4,)), ("wrap", (6, 5), (3, 2)), ("wrap", (4, 3, 3), (3, 2, 2)),
    ("symmetric", (9,), (3,)), ("symmetric", (6, 5), (3, 5)), ("symmetric", (4, 3, 3), (3, 1, 3))])
@pytest.mark.parametrize("damp", [0.0, 0.3])
def test_solve_equals_dense_normal_equations(boundary, shape, kshape, damp, rng):
    h = symmetric_kernel(kshape, rng) if boundary == "symmetric" else rng.standard_normal(kshape)
    h[(0,) * len(kshape)] += 3.0 if boundary == "wrap" else 0.0  # keep it invertible
    A = dense(Case(shape, kshape, "same", boundary), h)
    y = rng.standard_normal(shape)
    expected = np.linalg.solve(A.T @ A + damp**2 * np.eye(A.shape[1]), A.T @ y.ravel())
    x = linconv.fft.solve(y, h, boundary=boundary, damp=damp)
    assert x.shape == shape
    np.testing.assert_allclose(x.ravel(), expected, rtol=1e-9, atol=1e-10)


def test_solve_complex_kernel_and_correlation(rng):
    h = random_array(rng, (3, 2), np.complex128) + 2
    y = random_array(rng, (5, 6), np.complex128)
    A = dense(Case((5, 6), (3, 2), "same", "wrap"), h, correlate=True)
    expected = np.linalg.solve(A.conj().T @ A + 0.1 * np.eye(30), A.conj().T @ y.ravel())
    x = linconv.fft.solve(y, h, damp=np.sqrt(0.1), correlate=True)
    np.testing.assert_allclose(x.ravel(), expected, rtol=1e-9)


def test_solve_float32_stays_float32(rng):
    y = rng.standard_normal((16, 16)).astype(np.float32)
    assert linconv.fft.solve(y, np.array([[0.1, 1.0, 0.1]], np.float32), damp=0.1).dtype == \
        np.float32


def test_solve_refuses_singular_and_warns_ill_conditioned():
    with pytest.raises(ValueError, match=r"singular.*`damp` > 0"):
        linconv.fft.solve(np.ones(8), [1.0, 1.0])  # eigenvalue 0 at the Nyquist frequency
    assert np.all(np.isfinite(linconv.fft.solve(np.ones(8), [1.0, 1.0], damp=0.1)))
    with pytest.warns(linconv.fft.IllConditionedWarning, match=r"condition number"):
        linconv.fft.solve(np.ones(8), [1.0, 0.0, 1e-9 + 1.0])


@pytest.mark.parametrize("call,error,match", [
    (lambda: linconv.fft.solve(np.ones(8), [1.0, 2.0, 1.0], boundary="zero"), ValueError, r"linconv.deconvolve"),
    (lambda: linconv.fft.solve(np.ones(8), [1.0, 2.0, 3.0], boundary="symmetric"), ValueError, r"linconv.deconvolve"),
    (lambda: linconv.fft.solve(np.ones(8), [1.0, 2.0], damp=-1.0), ValueError, r"`damp` must be a non-negative"),
    (lambda: linconv.fft.solve(np.ones(8), [1.0, 2.0], damp="a"), TypeError, r"`damp` must be a non-negative number"),
    (lambda: linconv.fft.solve(np.ones((8, 8)), [1.0, 2.0]), ValueError, r"same number of dimensions"),
    (lambda: linconv.fft.solve(np.array([1.0, np.nan]), [1.0]), ValueError, r"`y` must be finite"),
    (lambda: linconv.fft.preconditioner(np.eye(3)), TypeError, r"`operator` must be a linconv.ConvolutionOperator"),
    (lambda: linconv.fft.preconditioner(linconv.ConvolutionOperator([1, 2, 1], 8, "full")), ValueError, r"must be square"),
    (lambda: linconv.fft.preconditioner(linconv.ConvolutionOperator([1, 2, 1], 8, "same"), kind="x"), ValueError, r"`kind` must be"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_circulant_preconditioner_inverts_the_periodic_normal_matrix(rng):
    h = rng.standard_normal((3, 4))
    op = linconv.ConvolutionOperator(h, (8, 7), "same", boundary="wrap")
    M = linconv.fft.preconditioner(op, damp=0.3, kind="circulant")
    assert M.transform == "fft"
    v = rng.standard_normal(56)
    np.testing.assert_allclose(M @ (op.H @ (op @ v) + 0.09 * v), v, rtol=1e-10)
    check_operator_contract(M, rng)


def test_dct_preconditioner_inverts_the_symmetric_normal_matrix(rng):
    h = symmetric_kernel((3, 5), rng)
    op = linconv.ConvolutionOperator(h, (8, 7), "same", boundary="symmetric")
    M = linconv.fft.preconditioner(op, damp=0.2)
    assert M.transform == "dct"
    v = rng.standard_normal(56)
    np.testing.assert_allclose(M @ (op.H @ (op @ v) + 0.04 * v), v, rtol=1e-10)


def test_preconditioning_zero_boundary_blur(rng):
    """The issue's case: 256x256, 9x9 Gaussian (sigma 2), damp 0.02, cg to rtol 1e-6."""
    r = np.arange(-4, 5)
    g = np.exp(-r**2 / 8.0)
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    op = linconv.ConvolutionOperator(kernel, (256, 256), "same")
    damp = 0.02
    x_true = np.zeros((256, 256))
    x_true[64:192, 64:192] = 1.0
    y = op.apply(x_true) + 0.01 * rng.standard_normal((256, 256))
    normal = spla.LinearOperator(op.shape, dtype=float,
                                 matvec=lambda v: op.H @ (op @ v) + damp**2 * v)
    b = op.H @ y.ravel()
    counts = {}
    for name, M in (("plain", None), ("dct", linconv.fft.preconditioner(op, damp=damp))):
        calls = []
        x, info = spla.cg(normal, b, M=M, rtol=1e-6, maxiter=1000,
                          callback=lambda xk: calls.append(1))
        assert info == 0
        counts[name] = len(calls)
        assert np.linalg.norm(normal @ x - b) <= 1e-6 * np.linalg.norm(b)  # both converged
    assert counts["plain"] >= 5 * counts["dct"], counts
