"""What numpy accepts as an array, linconv accepts, with the same results (issue 12).

A seeded property test feeds every front door non-contiguous, Fortran-ordered,
big-endian, read-only, broadcast and empty inputs and compares with the plain
C-contiguous result and with an independent oracle (np.pad + scipy.signal for
signals, torch for layers).  Then one regression test per reported defect.
"""

import math
import pickle
import tracemalloc

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

import linconv
import linconv._pattern
from cases import BOUNDARIES, Case, oracle_convolve, oracle_correlate, random_array


def layouts(x: np.ndarray):
    """The same values in every layout numpy hands out."""
    yield "C", np.ascontiguousarray(x)
    yield "fortran", np.asfortranarray(x)
    big = np.zeros((2,) + x.shape, x.dtype)
    big[1] = x
    yield "non-contiguous", np.flip(np.flip(big, -1)[1], -1)  # negative strides, offset
    yield "strided", np.repeat(x, 2, axis=-1)[..., ::2]
    yield "big-endian", x.astype(x.dtype.newbyteorder(">"))
    ro = x.copy()
    ro.flags.writeable = False
    yield "read-only", ro
    yield "list", x.tolist()


def random_geometries(seed: int, count: int):
    """Geometries for the layout test: sizes of at least 3, unit dilation, stride <= 2."""
    rng = np.random.default_rng(seed)
    return [_random_geometry(rng) for _ in range(count)]


def _random_geometry(rng):
    ndim = int(rng.integers(1, 4))
    n = tuple(int(v) for v in rng.integers(3, 9 if ndim < 3 else 6, ndim))
    k = tuple(int(v) for v in rng.integers(1, 4, ndim))
    mode = str(rng.choice(["full", "same", "valid"]))
    if mode == "valid":
        n = tuple(max(a, 2 * b) for a, b in zip(n, k))
    boundary = str(rng.choice(BOUNDARIES))
    stride = tuple(int(v) for v in rng.integers(1, 3, ndim))
    return Case(n, k, mode, boundary, stride, 1)


GEOMETRIES = random_geometries(seed=1212, count=12)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in GEOMETRIES])
def test_every_layout_gives_the_same_result(case, rng):
    h = random_array(rng, case.kernel_shape)
    x = random_array(rng, case.input_shape)
    expected = oracle_convolve(x, h, case)
    for method in ("direct", "fft", "sparse"):
        op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, method=method,
                                         **case.options())
        plain = op.apply(x)
        np.testing.assert_allclose(plain, expected, rtol=1e-12, atol=1e-12)
        y = random_array(rng, op.output_shape)
        adjoint = op.H.apply(y)
        for name, variant in layouts(x):
            np.testing.assert_allclose(op.apply(variant), plain, rtol=1e-13, atol=1e-13,
                                       err_msg=f"{method} {name}")
            np.testing.assert_allclose(op @ np.ravel(variant), plain.ravel(), rtol=1e-13,
                                       atol=1e-13, err_msg=f"{method} {name} matvec")
            np.testing.assert_allclose(
                linconv.convolve(variant, h, case.mode, method=method, **case.options()),
                plain, rtol=1e-13, atol=1e-13)
        for name, variant in layouts(y):
            np.testing.assert_allclose(op.H.apply(variant), adjoint, rtol=1e-13, atol=1e-13,
                                       err_msg=f"{method} {name} adjoint")
        # the kernel in every layout too: the same operator and the same matrix
        matrix = linconv.convolution_matrix(h, case.input_shape, case.mode, **case.options())
        for name, variant in layouts(h):
            other = linconv.ConvolutionOperator(variant, case.input_shape, case.mode,
                                                method=method, **case.options())
            np.testing.assert_allclose(other.apply(x), plain, rtol=1e-13, atol=1e-13,
                                       err_msg=f"{method} kernel {name}")
            A = linconv.convolution_matrix(variant, case.input_shape, case.mode,
                                           **case.options())
            assert A.dtype == np.float64 and A.dtype.isnative, name
            assert abs(A - matrix).max() == 0, name
        # a broadcast (all-zero strides along an axis) input: the oracle on its copy
        row = np.broadcast_to(x[..., :1], x.shape)
        np.testing.assert_allclose(op.apply(row), oracle_convolve(np.array(row), h, case),
                                   rtol=1e-12, atol=1e-12, err_msg=f"{method} broadcast")
        # empty batches, as numpy would give them
        assert op.apply(np.zeros((0,) + case.input_shape)).shape == (0,) + op.output_shape
        assert op.H.apply(np.zeros((2, 0) + op.output_shape)).shape == (2, 0) + op.input_shape
        assert op.matmat(np.zeros((op.shape[1], 0))).shape == (op.shape[0], 0)
        assert op.rmatmat(np.zeros((op.shape[0], 0))).shape == (op.shape[1], 0)


@pytest.mark.parametrize("seed", range(4))
def test_layers_accept_every_layout(seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    c_in, groups = 4, int(rng.choice([1, 2]))
    w = rng.standard_normal((2 * groups, c_in // groups, 3, 2))
    shape = (c_in, int(rng.integers(5, 9)), int(rng.integers(5, 9)))
    stride, padding = int(rng.integers(1, 3)), int(rng.integers(0, 2))
    x = rng.standard_normal((3,) + shape)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride,
                        padding=padding, groups=groups).numpy()
    for method in ("direct", "fft", "sparse"):
        op = linconv.conv_operator(w, shape, stride=stride, padding=padding, groups=groups,
                                   method=method)
        for name, variant in layouts(x):
            np.testing.assert_allclose(op.apply(variant), expected, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{method} {name}")
        empty = op.apply(np.zeros((0,) + shape))
        assert empty.shape == tuple(F.conv2d(torch.zeros((0,) + shape, dtype=torch.float64),
                                             torch.from_numpy(w), stride=stride,
                                             padding=padding, groups=groups).shape)
    cols = F.unfold(torch.from_numpy(x), (3, 2), padding=padding, stride=stride).numpy()
    for name, variant in layouts(x):
        np.testing.assert_allclose(linconv.unfold(variant, (3, 2), padding=padding,
                                                  stride=stride), cols, err_msg=name)
    for name, variant in layouts(cols):
        np.testing.assert_allclose(
            linconv.fold(variant, shape[1:], (3, 2), padding=padding, stride=stride),
            F.fold(torch.from_numpy(cols), shape[1:], (3, 2), padding=padding,
                   stride=stride).numpy(), rtol=1e-12, err_msg=name)
    empty = np.zeros((0,) + shape)
    assert linconv.unfold(empty, (3, 2), padding=padding, stride=stride).shape == tuple(
        F.unfold(torch.from_numpy(empty), (3, 2), padding=padding, stride=stride).shape)
    empty_cols = np.zeros((0,) + cols.shape[1:])
    assert linconv.fold(empty_cols, shape[1:], (3, 2), padding=padding,
                        stride=stride).shape == (0,) + shape


# -- silently wrong results -------------------------------------------------------
def test_fully_broadcast_vector_matches_scipy():
    L = linconv.ConvolutionOperator(np.ones((3, 3)) / 9, (256, 256), "same")
    expected = scipy.signal.convolve(np.ones((256, 256)), np.ones((3, 3)) / 9, "same")
    np.testing.assert_allclose(L @ np.broadcast_to(1.0, 65536), expected.ravel(), rtol=1e-13)
    assert (L @ np.broadcast_to(1.0, 65536))[1000] == pytest.approx(1.0)
    np.testing.assert_allclose(L.H @ np.broadcast_to(1.0, 65536), expected.ravel(), rtol=1e-13)


@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
def test_operator_copies_the_kernel(method):
    rng = np.random.default_rng(3)
    h = rng.standard_normal((3, 3))
    original = h.copy()
    L = linconv.ConvolutionOperator(h, (12, 12), "same", method=method)
    h[1, 1] += 10  # the caller changes their array afterwards
    x, y = rng.standard_normal((12, 12)), rng.standard_normal((12, 12))
    Ax = scipy.signal.convolve(x, original, "same")
    np.testing.assert_allclose(L.apply(x), Ax, rtol=1e-12)
    np.testing.assert_allclose(L.tosparse() @ x.ravel(), Ax.ravel(), rtol=1e-12)
    # dot test against the oracle's forward
    assert np.vdot(Ax, y) == pytest.approx(np.vdot(x, L.H.apply(y)), rel=1e-12)
    np.testing.assert_array_equal(L.kernel, original)
    with pytest.raises(ValueError, match="read-only"):
        L.kernel[0, 0] = 5.0


def test_layer_copies_the_weight():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    w = rng.standard_normal((2, 3, 3, 3))
    original = w.copy()
    op = linconv.conv_operator(w, (3, 8, 8), padding=1)
    w[...] = 0
    x = rng.standard_normal((1, 3, 8, 8))
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(original),
                                          padding=1).numpy()
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-12)
    assert not op.weight.flags.writeable


@pytest.mark.parametrize("make", [
    lambda: linconv.ConvolutionOperator(np.ones((3, 3)), (8, 8), "same", method="fft"),
    lambda: linconv.ConvolutionOperator(np.ones(3), 9, method="direct"),
    lambda: linconv.conv_operator(np.ones((2, 1, 3)), (1, 8)),
    lambda: linconv.conv_operator(np.ones((2, 1, 3)), (1, 8)).T,
    lambda: linconv.conv_transpose_operator(np.ones((1, 2, 3)), (1, 8)),
    lambda: linconv.ConvolutionOperator(np.ones(3), 9).H,
], ids=["fft", "direct", "layer", "layer.T", "transpose-layer", "adjoint"])
def test_attributes_cannot_be_reassigned(make):
    op = make()
    x = np.arange(op.shape[1], dtype=float)
    before = op @ x
    for name in ("kernel", "weight", "output_shape", "input_shape", "method", "geometry",
                 "dtype", "shape", "_engine", "anything_new"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(op, name, (7, 6))
    with pytest.raises(AttributeError, match="immutable"):
        del op.input_shape
    np.testing.assert_array_equal(op @ x, before)
    clone = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(clone @ x, before)
    with pytest.raises(AttributeError):
        clone.output_shape = (1,)


def test_pickle_stays_small_after_use():
    op = linconv.ConvolutionOperator(np.ones((9, 9)), (256, 256), "same", method="fft")
    op.apply(np.ones((256, 256)))  # the spectrum now exists (256 x 129 complex: 0.5 MB)
    op.apply(np.ones((256, 256), np.float32))
    assert len(pickle.dumps(op)) < 20_000
    clone = pickle.loads(pickle.dumps(op))
    np.testing.assert_allclose(clone.apply(np.ones((256, 256))),
                               scipy.signal.convolve(np.ones((256, 256)), np.ones((9, 9)),
                                                     "same"), rtol=1e-12)


@pytest.mark.parametrize("kernel_dtype", [np.float32, np.int8, np.int16])
@pytest.mark.parametrize("method", ["fft", "auto", "direct"])
def test_float64_data_is_computed_in_float64(kernel_dtype, method):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 200))
    h = random_array(rng, (9, 9), kernel_dtype)
    expected = scipy.signal.convolve(x, h.astype(np.float64), "same", method="direct")
    y = linconv.convolve(x, h, "same", method=method)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max())
    op = linconv.ConvolutionOperator(h, x.shape, "same", method=method)
    assert op.dtype == np.float32
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-11,
                               atol=1e-11 * np.abs(expected).max())
    # the same operator, then float32 data: float32 result at float32 accuracy
    y32 = op.apply(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_float64_data_long_1d_overlap_save():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(100_000)
    h = rng.standard_normal(31).astype(np.float32)
    expected = scipy.signal.oaconvolve(x, h.astype(np.float64))
    y = linconv.convolve(x, h, method="fft")
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


# -- dtypes numpy has ---------------------------------------------------------------
@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_long_double_is_exact(method, dtype):
    rng = np.random.default_rng(7)
    x = random_array(rng, 40, dtype) / 3
    h = random_array(rng, 5, np.float64) / 7
    expected = np.convolve(x, h.astype(dtype))  # numpy's own long double loops
    op = linconv.ConvolutionOperator(h, 40, method=method)
    y = op.apply(x)
    assert y.dtype == dtype
    eps = np.finfo(np.longdouble).eps
    np.testing.assert_allclose(y, expected, rtol=0, atol=200 * eps * np.abs(expected).max())
    z = random_array(rng, op.output_shape, dtype)
    adj = op.H.apply(z)
    assert adj.dtype == dtype
    # the adjoint is the correlation with the kernel (numpy, long double)
    np.testing.assert_allclose(adj, np.correlate(z, h.astype(dtype), "valid"), rtol=0,
                               atol=200 * eps * np.abs(adj).max())


@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_dtype_long_double_computes_float64_data_in_long_double(method, dtype):
    rng = np.random.default_rng(10)
    x, h = rng.standard_normal(40) / 3, rng.standard_normal(5) / 7  # float64
    op = linconv.ConvolutionOperator(h, 40, method=method, dtype=dtype)
    assert op.dtype == dtype
    y = op.apply(x)
    assert y.dtype == dtype
    expected = np.convolve(x.astype(np.longdouble), h.astype(np.longdouble))
    eps = np.finfo(np.longdouble).eps
    np.testing.assert_allclose(y, expected, rtol=0, atol=200 * eps * np.abs(expected).max())


def test_dtype_float16_is_refused_naming_the_dtypes_that_work():
    with pytest.raises(ValueError, match=r"`dtype` must be float32, .*longdouble.*; got float16"):
        linconv.ConvolutionOperator(np.ones(3), 8, dtype=np.float16)


def test_long_double_with_strides_and_boundaries():
    rng = np.random.default_rng(8)
    for boundary in BOUNDARIES:
        case = Case((9, 8), (3, 2), "same", boundary, (2, 1), (1, 2))
        x = rng.standard_normal(case.input_shape)
        h = rng.standard_normal(case.kernel_shape)
        y = linconv.convolve(x.astype(np.longdouble), h, "same", method="direct",
                             **case.options())
        assert y.dtype == np.longdouble
        np.testing.assert_allclose(y.astype(float), oracle_convolve(x, h, case), rtol=1e-12,
                                   atol=1e-12)


def test_float16_kernels_and_data_compute_in_float32():
    rng = np.random.default_rng(9)
    h = rng.standard_normal((3, 3)).astype(np.float16)
    x = rng.standard_normal((10, 10)).astype(np.float16)
    expected = scipy.signal.convolve(x.astype(np.float32), h.astype(np.float32), "same")
    for method in ("direct", "fft", "sparse"):
        y = linconv.convolve(x, h, "same", method=method)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    A = linconv.convolution_matrix(h, (10, 10), "same")
    assert A.dtype == np.float32
    np.testing.assert_array_equal(A @ x.astype(np.float32).ravel(),
                                  linconv.convolution_matrix(h.astype(np.float32), (10, 10),
                                                             "same") @ x.astype(np.float32).ravel())


def test_zero_dim_arrays_where_ints_are_taken(rng):
    case = Case((9, 8), (3, 3), 1, "zero", (2, 1), (1, 2))
    x = rng.standard_normal(case.input_shape)
    h = rng.standard_normal(case.kernel_shape)
    y = linconv.correlate(x, h, np.array(1), stride=(np.array(2), 1),
                          dilation=[1, np.int64(2)])
    np.testing.assert_allclose(y, oracle_correlate(x, h, case), rtol=1e-12)
    A = linconv.convolution_matrix(np.ones(3), np.array(5), stride=np.array(2))
    np.testing.assert_array_equal(A.toarray(), linconv.convolution_matrix(np.ones(3), 5,
                                                                         stride=2).toarray())
    assert linconv.conv_operator(np.ones((2, 2, 3)), (2, 7), groups=np.array(1),
                                 padding=np.array(1)).output_shape == (2, 7)


@pytest.mark.parametrize("call", [
    lambda: linconv.convolve([[1, 2], [3]], np.ones((2, 2))),
    lambda: linconv.ConvolutionOperator(np.ones(2), 3).apply([[1, 2, 3], [4, 5]]),
    lambda: linconv.unfold([[[1, 2], [3]]], 1),
], ids=["convolve", "apply", "unfold"])
def test_ragged_data_names_the_argument(call):
    with pytest.raises(TypeError, match=r"`x` must be a numeric array-like with a regular "
                                        r"shape \(a ragged list"):
        call()


# -- sizes: cheap construction, refusals before allocating ------------------------------
def _refused(call, match):
    def run():
        with pytest.raises(MemoryError, match=match):
            call()
    return run


def _peak_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("make", [
    lambda: linconv.ConvolutionOperator(np.ones((9, 9)), (100_000, 100_000), "same"),
    lambda: linconv.ConvolutionOperator(np.ones((31, 31)), (100_000, 100_000), "same"),
    lambda: linconv.ConvolutionOperator(np.ones((9, 9)), (100_000, 100_000), "same",
                                        method="fft", boundary="reflect"),
    lambda: linconv.ConvolutionOperator(np.ones(1023), 10**10, "same"),
    lambda: linconv.conv_operator(np.ones((64, 64, 5, 5)), (64, 20_000, 20_000), padding=2,
                                  method="fft"),
    lambda: linconv.conv_operator(np.ones((64, 64, 5, 5)), (64, 20_000, 20_000), padding=2),
], ids=["9x9", "31x31", "9x9-reflect", "1d", "layer-fft", "layer-auto"])
def test_construction_is_cheap_at_any_size(make):
    peak, op = _peak_bytes(make)
    assert peak < 2_000_000, peak  # kernel-sized work only (no spectrum, no plan arrays)
    x = np.broadcast_to(np.float32(1), (op.shape[1],))
    with pytest.raises(MemoryError, match=r"applying .* needs about .* GiB but only .* "
                                          r"available; apply it to smaller batches"):
        op @ x


def test_apply_too_large_for_memory_is_refused_with_linconv_message(monkeypatch):
    import linconv._validation as validation
    op = linconv.ConvolutionOperator(np.ones((5, 5)), (512, 512), "same", method="fft")
    monkeypatch.setattr(validation, "available_memory", lambda: 1_000_000)
    monkeypatch.setattr(validation, "_SMALL", 0)
    with pytest.raises(MemoryError, match=r"needs about .* GiB but only 0.0 GiB is available"):
        op.apply(np.ones((4, 512, 512)))
    with pytest.raises(MemoryError, match=r"adjoint"):
        op.H.apply(np.ones((4, 512, 512)))
    monkeypatch.undo()
    np.testing.assert_allclose(op.apply(np.ones((512, 512))),
                               scipy.signal.convolve(np.ones((512, 512)), np.ones((5, 5)),
                                                     "same"), rtol=1e-12)


def test_sparse_build_reads_only_the_tap_positions():
    # 3 outputs of a stride-2**30 correlation over 2**31 + 10 samples: 9 entries
    n, s = 2**31 + 10, 2**30
    peak, A = _peak_bytes(lambda: linconv.correlation_matrix([1, 2, 3], n, "valid", stride=s))
    assert peak < 1_000_000, peak
    assert A.shape == ((n - 3) // s + 1, n)
    coo = A.tocoo()
    # y[i] = sum_j w[j] x[i*s + j]  (the contract's definition)
    rows = np.repeat(np.arange(3), 3)
    cols = (rows * s + np.tile(np.arange(3), 3))
    order = np.lexsort((coo.col, coo.row))
    np.testing.assert_array_equal(coo.row[order], rows)
    np.testing.assert_array_equal(coo.col[order], cols)
    np.testing.assert_array_equal(coo.data[order], np.tile([1, 2, 3], 3))
    # a boundary rule, pads wider than the input: the map is np.pad's, at the read positions
    B = linconv.correlation_matrix([1, 2, 3], 2**31 + 10, (5, 4), boundary="reflect",
                                   stride=2**30)
    index = np.pad(np.arange(20), (5, 4), mode="reflect")  # a short axis with the same rule
    assert B.shape[0] == (n + 9 - 3) // s + 1
    first = B[[0]].tocoo()
    assert sorted(first.col.tolist()) == sorted(set(index[:3].tolist()))


def test_sparse_adjoint_of_few_outputs_allocates_only_its_result():
    # 4 outputs, 16 million inputs: the adjoint's result is 128 MB; no CSR transpose
    # with a 16-million-row index pointer on top of it
    n = 4001

    def build_and_apply_adjoint():
        op = linconv.ConvolutionOperator(np.ones((2, 2)), (n, n), "valid", stride=n - 2,
                                         method="sparse")
        assert op.output_shape == (2, 2)
        return op.H @ np.ones(4)
    peak, y = _peak_bytes(build_and_apply_adjoint)
    assert peak < 1.2 * n * n * 8, peak / (n * n * 8)
    # A^H of a 2x2 box with stride n-2 and 'valid': ones at rows/cols {0, 1, n-2, n-1}
    expected = np.zeros((n, n))
    idx = np.ix_([0, 1, n - 2, n - 1], [0, 1, n - 2, n - 1])
    expected[idx] = 1
    np.testing.assert_array_equal(y.reshape(n, n), expected)


def test_unfold_matrix_refusal_is_sized_before_any_pattern(monkeypatch):
    def no_pattern(*args, **kwargs):
        raise AssertionError("the pattern was built before the memory check")
    monkeypatch.setattr(linconv._pattern, "pattern", no_pattern)
    peak, _ = _peak_bytes(_refused(
        lambda: linconv.unfold_matrix((64, 8192, 8192), (3, 3), padding=1),
        r"the unfold matrix needs about .* GiB.*matrix-free"))
    assert peak < 1_000_000


def test_huge_matrices_are_refused_before_allocating():
    for call in (lambda: linconv.convolution_matrix(np.ones((31, 31)), (10**6, 10**6), "same"),
                 lambda: linconv.conv_matrix(np.ones((64, 64, 3, 3)), (64, 8192, 8192),
                                             padding=1),
                 lambda: linconv.ConvolutionOperator(np.ones((31, 31)), (10**6, 10**6),
                                                     "same", method="sparse").apply(
                     np.broadcast_to(0.0, (10**6, 10**6)))):
        peak, _ = _peak_bytes(_refused(call, "matrix-free"))
        assert peak < 1_000_000


# -- each front door's vocabulary ----------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: linconv.conv_operator(np.ones((1, 1, 5)), (1, 3)),
     r"output would be empty.*more `padding`.*\(got `padding`=\(\(0, 0\),\)\)"),
    (lambda: linconv.conv_operator(np.ones((1, 1, 3)), (1, 5), padding=-1),
     r"^`padding` must be non-negative \(explicit padding\); got -1$"),
    (lambda: linconv.conv_operator(np.ones((1, 1, 3)), (1, 5), padding="sme"),
     r"`padding` must be 'same', 'valid' \(torch\), 'SAME', 'VALID'"),
    (lambda: linconv.unfold(np.ones((1, 3, 3)), 5), r"\(got `padding`="),
    (lambda: linconv.convolution_matrix(np.ones(5), 3, "valid"),
     r"use mode='full' or 'same'.*\(got `mode`='valid'\)"),
])
def test_messages_speak_the_callers_vocabulary(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    message = str(info.value)
    if "`padding`" in message:
        assert "mode" not in message
    for word in message.split():
        assert f"{word} {word}" not in message.replace("`", "")


def test_fold_validates_output_size():
    cols = np.ones((1, 4, 12))
    with pytest.raises(ValueError, match=r"`output_size` must have one entry per spatial axis "
                                         r"of `kernel_size` 2 \(2\); got \(7, 3, 3\)"):
        linconv.fold(cols, (7, 3, 3), 2)
    with pytest.raises(ValueError, match=r"`output_size` must be a non-empty tuple of positive"):
        linconv.fold(cols, (0, 3), 2)


# -- TensorFlow's "SAME" / "VALID" -------------------------------------------------------
def _tensorflow_pads(n, k, s, d):
    """TensorFlow's documented rule: out = ceil(n / s), the odd padding sample at the end."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("n,k,s,d", [(7, 3, 2, 1), (8, 3, 2, 1), (8, 4, 3, 1), (5, 2, 1, 1),
                                     (9, 3, 2, 2), (6, 5, 4, 1), (10, 1, 3, 1), (4, 4, 1, 2)])
def test_tensorflow_same_and_valid(n, k, s, d):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(n * 100 + k * 10 + s)
    w = rng.standard_normal((3, 2, k, k - 1 if k > 1 else 1))
    x = rng.standard_normal((2, 2, n, n + 1))
    (lo0, hi0), (lo1, hi1) = (_tensorflow_pads(n, k, s, d),
                              _tensorflow_pads(n + 1, w.shape[3], s, d))
    xp = F.pad(torch.from_numpy(x), (lo1, hi1, lo0, hi0))
    expected = F.conv2d(xp, torch.from_numpy(w), stride=s, dilation=d).numpy()
    op = linconv.conv_operator(w, x.shape[1:], padding="SAME", stride=s, dilation=d)
    assert op.output_shape[1:] == (math.ceil(n / s), math.ceil((n + 1) / s))
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-12, atol=1e-12)
    A = linconv.conv_matrix(w, x.shape[1:], padding="SAME", stride=s, dilation=d)
    np.testing.assert_allclose((A @ x[0].ravel()).reshape(op.output_shape), expected[0],
                               rtol=1e-12, atol=1e-12)
    span = [(kk - 1) * d + 1 for kk in w.shape[2:]]
    if all(m >= sp for m, sp in zip((n, n + 1), span)):
        valid = linconv.conv_operator(w, x.shape[1:], padding="VALID", stride=s, dilation=d)
        assert valid.output_shape[1:] == tuple(math.ceil((m - sp + 1) / s)
                                               for m, sp in zip((n, n + 1), span))
        np.testing.assert_allclose(valid.apply(x), F.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), stride=s, dilation=d).numpy(),
            rtol=1e-12, atol=1e-12)


def test_lower_case_same_with_stride_is_still_refused():
    with pytest.raises(ValueError, match=r"`padding`='same' is not supported with `stride` 2 "
                                         r"\(as torch\).*'SAME'"):
        linconv.conv_operator(np.ones((1, 1, 3)), (1, 8), padding="same", stride=2)


def test_scipy_ndimage_oracle_for_broadcast_rows():
    # a view with zero strides along one axis (a constant column) through every boundary
    col = np.broadcast_to(np.arange(40.0)[:, None], (40, 30))
    for boundary, ndmode in (("zero", "constant"), ("wrap", "grid-wrap"),
                             ("symmetric", "reflect"), ("edge", "nearest")):
        h = np.arange(9.0).reshape(3, 3)
        y = linconv.correlate(col, h, "same", boundary=boundary, method="direct")
        np.testing.assert_allclose(y, scipy.ndimage.correlate(np.array(col), h, mode=ndmode),
                                   rtol=1e-12)
