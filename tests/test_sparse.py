"""convolution_matrix / correlation_matrix against independent oracles."""

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import scipy.signal
import scipy.sparse as sp

import linconv
from cases import (CASES, BOUNDARIES, case_params, dense_by_columns, oracle_convolve,
                   oracle_correlate, random_array)



# -- 1-D against scipy.linalg.convolution_matrix and np.convolve -------------
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [7, 8, 12])
def test_1d_equals_scipy_linalg(n, k, mode, rng):
    a = rng.standard_normal(k)
    expected = scipy.linalg.convolution_matrix(a, n, mode)
    np.testing.assert_array_equal(linconv.convolution_matrix(a, n, mode).toarray(), expected)
    x = rng.standard_normal(n)
    np.testing.assert_allclose(linconv.convolution_matrix(a, n, mode) @ x,
                               np.convolve(x, a, mode), rtol=1e-12, atol=1e-12)


def test_1d_integer_kernel_is_exact_integer_matrix():
    a = np.array([3, -1, 4, 1, -5], dtype=np.int64)
    A = linconv.convolution_matrix(a, 9, "full")
    assert A.dtype == np.int64
    np.testing.assert_array_equal(A.toarray(), scipy.linalg.convolution_matrix(a, 9, "full"))
    x = np.arange(9)
    np.testing.assert_array_equal(A @ x, np.convolve(x, a))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.float32, np.complex64, np.complex128])
def test_matrix_keeps_kernel_dtype(dtype, rng):
    kernel = random_array(rng, (3, 2), dtype)
    assert linconv.convolution_matrix(kernel, (4, 4), "same").dtype == dtype


# -- N-D against scipy.signal --------------------------------------------------
ND_SHAPES = [((9,), (4,)), ((3,), (6,)), ((6, 7), (3, 3)), ((6, 7), (2, 4)), ((3, 4), (5, 6)),
             ((5, 4, 6), (3, 2, 3)), ((3, 3, 4), (4, 4, 1)), ((5, 6), (1, 1))]


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("shape,kshape", ND_SHAPES, ids=lambda v: "x".join(map(str, v)))
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_nd_equals_scipy_signal(shape, kshape, mode, dtype, rng):
    if mode == "valid" and any(k > n for n, k in zip(shape, kshape)):
        pytest.skip("no valid output")
    x = random_array(rng, shape, dtype)
    h = random_array(rng, kshape, dtype)
    conv = linconv.convolution_matrix(h, shape, mode) @ x.ravel()
    np.testing.assert_allclose(conv, scipy.signal.convolve(x, h, mode, method="direct").ravel(),
                               rtol=1e-12, atol=1e-12)
    corr = linconv.correlation_matrix(h, shape, mode) @ x.ravel()
    expected = scipy.signal.correlate(x, np.conj(h), mode, method="direct")
    np.testing.assert_allclose(corr, expected.ravel(), rtol=1e-12, atol=1e-12)


# -- every geometry of the shared table against the np.pad oracle -------------
@pytest.mark.parametrize("case", case_params())
@pytest.mark.parametrize("correlate", [False, True], ids=["conv", "corr"])
def test_cases_against_np_pad_oracle(case, correlate, rng):
    h = rng.standard_normal(case.kernel_shape)
    x = rng.standard_normal(case.input_shape)
    build = linconv.correlation_matrix if correlate else linconv.convolution_matrix
    oracle = oracle_correlate if correlate else oracle_convolve
    A = build(h, case.input_shape, case.mode, **case.options())
    expected = oracle(x, h, case)
    assert A.shape == (expected.size, x.size)
    np.testing.assert_allclose(A @ x.ravel(), expected.ravel(), rtol=1e-12, atol=1e-12)
    # the whole matrix, column by column, against the oracle's impulse responses
    dense = dense_by_columns(lambda e: oracle(e, h, case), x.size, case.input_shape)
    np.testing.assert_allclose(A.toarray(), dense, rtol=1e-13, atol=1e-13)
    assert A.has_canonical_format


@pytest.mark.parametrize("case", case_params([c for c in CASES if c.boundary != "zero"]))
def test_boundary_folding_sums_integer_entries_exactly(case, rng):
    h = rng.integers(-9, 10, case.kernel_shape)
    A = linconv.correlation_matrix(h, case.input_shape, case.mode, **case.options())
    dense = dense_by_columns(lambda e: oracle_correlate(e, h, case), int(np.prod(case.input_shape)),
                             case.input_shape, dtype=np.int64)
    assert A.dtype == h.dtype
    np.testing.assert_array_equal(A.toarray(), dense)
    assert not np.any(A.data == 0), "folded entries that cancel are not stored"


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32])
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.boundary != "zero"][::3]))
def test_narrow_integer_kernels_fold_without_wrapping_around(case, dtype):
    """Kernels at the top of their range: the folded sums exceed the dtype, and must equal
    numpy's int64 oracle (as np.sum would give), never wrap around."""
    top = np.iinfo(dtype).max
    h = np.full(case.kernel_shape, top, dtype=dtype)
    A = linconv.correlation_matrix(h, case.input_shape, case.mode, **case.options())
    dense = dense_by_columns(lambda e: oracle_correlate(e, h.astype(np.int64), case),
                             int(np.prod(case.input_shape)), case.input_shape, dtype=np.int64)
    np.testing.assert_array_equal(A.toarray(), dense)
    folds = dense.max() > top
    assert A.dtype == (np.sum(h).dtype if folds or A.dtype != dtype else dtype)
    canonical = linconv.correlation_matrix(h, case.input_shape, "same")  # zeros: no folds
    assert canonical.dtype == dtype


def test_integer_layer_matrix_folds_exactly():
    weight = np.full((1, 1, 3), 200, np.uint8)
    A = linconv.conv_matrix(weight, (1, 5), padding=1, padding_mode="replicate")
    np.testing.assert_array_equal(A.toarray()[0], [400, 200, 0, 0, 0])


# -- scipy.ndimage name mapping ------------------------------------------------
NDIMAGE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
           "grid-wrap": "wrap", "constant": "zero"}


@pytest.mark.parametrize("ndimage_mode", list(NDIMAGE))
@pytest.mark.parametrize("kshape", [(3, 3), (4, 2), (5, 1)])
def test_ndimage_boundaries(ndimage_mode, kshape, rng):
    x = rng.standard_normal((9, 8))
    h = rng.standard_normal(kshape)
    expected = scipy.ndimage.correlate(x, h, mode=ndimage_mode, cval=0.0)
    A = linconv.correlation_matrix(h, x.shape, "same", boundary=NDIMAGE[ndimage_mode])
    np.testing.assert_allclose((A @ x.ravel()).reshape(x.shape), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_convolve2d_boundaries(boundary, rng):
    names = {"zero": "fill", "wrap": "wrap", "symmetric": "symm"}
    if boundary not in names:
        pytest.skip("convolve2d has no such boundary")
    x = rng.standard_normal((7, 6))
    h = rng.standard_normal((3, 5))
    expected = scipy.signal.convolve2d(x, h, "same", boundary=names[boundary])
    A = linconv.convolution_matrix(h, x.shape, "same", boundary=boundary)
    np.testing.assert_allclose(A @ x.ravel(), expected.ravel(), rtol=1e-12, atol=1e-12)


# -- stride and dilation ---------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2, 3, (2, 3)])
@pytest.mark.parametrize("dilation", [1, 2, (3, 1)])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_stride_dilation_equal_dilated_kernel_and_slicing(stride, dilation, mode, rng):
    x = rng.standard_normal((13, 12))
    h = rng.standard_normal((3, 2))
    dil = np.broadcast_to(dilation, 2)
    hd = np.zeros([d * (k - 1) + 1 for k, d in zip(h.shape, dil)])
    hd[::dil[0], ::dil[1]] = h
    s = np.broadcast_to(stride, 2)
    expected = scipy.signal.convolve(x, hd, mode, method="direct")[::s[0], ::s[1]]
    y = linconv.convolve(x, h, mode, stride=stride, dilation=dilation, method="sparse")
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_same_with_stride_is_sampled_same(rng):
    x = rng.standard_normal(11)
    h = rng.standard_normal(4)
    y = linconv.convolve(x, h, "same", stride=3)
    np.testing.assert_allclose(y, scipy.signal.convolve(x, h, "same")[::3], rtol=1e-12)
    assert y.shape == (int(np.ceil(11 / 3)),)


# -- structure ------------------------------------------------------------------
def test_structural_exactness_64x64_9x9():
    h = np.exp(-np.add.outer(np.arange(-4, 5) ** 2, np.arange(-4, 5) ** 2) / 8.0)
    A = linconv.convolution_matrix(h, (64, 64), "same")
    # per axis, each of the 64 rows meets 9 taps less those cut off at the edges (4+3+2+1
    # at each end); the 2-D matrix is the Kronecker product of the two 1-D patterns
    assert A.nnz == (64 * 9 - 2 * (4 + 3 + 2 + 1)) ** 2 == 309_136
    assert A.shape == (4096, 4096)


def test_zero_taps_are_not_stored(rng):
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    A = linconv.convolution_matrix(laplacian, (5, 5), "same")
    assert A.nnz == 25 + 4 * 20 and np.all(A.data != 0)
    x = rng.standard_normal((5, 5))
    np.testing.assert_allclose(A @ x.ravel(), scipy.signal.convolve(x, laplacian, "same").ravel())


def test_1d_zero_boundary_is_toeplitz(rng):
    a = rng.standard_normal(5)
    A = linconv.convolution_matrix(a, 9, "full").toarray()
    i, j = np.indices(A.shape)
    for d in range(-A.shape[1] + 1, A.shape[0]):
        diagonal = A[i - j == d]
        assert np.all(diagonal == diagonal[0])


@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr", "lil", "dok", "dia"])
def test_formats_are_sparse_arrays(format, rng):
    h = rng.standard_normal((2, 3))
    A = linconv.convolution_matrix(h, (4, 5), "same", format=format)
    assert isinstance(A, sp.sparray) and A.format == format
    np.testing.assert_array_equal(
        A.toarray(), linconv.convolution_matrix(h, (4, 5), "same").toarray())


def test_index_dtype_switches_to_int64(monkeypatch, rng):
    import linconv._geometry as geometry
    h = rng.standard_normal((3, 3))
    assert linconv.convolution_matrix(h, (20, 20), "same").indices.dtype == np.int32
    monkeypatch.setattr(geometry, "_INT32_MAX", 100)
    A = linconv.convolution_matrix(h, (20, 20), "same")
    assert A.indices.dtype == np.int64 and A.indptr.dtype == np.int64
    x = rng.standard_normal((20, 20))
    np.testing.assert_allclose(A @ x.ravel(), scipy.signal.convolve(x, h, "same").ravel())


def test_kernel_is_not_modified(rng):
    h = rng.standard_normal((3, 3))
    before = h.copy()
    linconv.convolution_matrix(h, (5, 5), "same", boundary="reflect")
    np.testing.assert_array_equal(h, before)
