"""The deep-learning front door against torch.nn.functional, and torch-free identities."""

import itertools
import pickle

import numpy as np
import pytest
import scipy.signal

import linconv
from cases import check_operator_contract, random_array

METHODS = ["sparse", "direct", "fft", "auto"]


# -- parameter grids -------------------------------------------------------------
def conv_grid():
    """(ndim, C_in, C_out, groups, kernel, stride, padding, dilation) covering the options."""
    cases = [
        (1, 3, 4, 1, (3,), 1, 0, 1), (1, 4, 6, 2, (4,), 2, 1, 1), (1, 2, 2, 2, (3,), 1, "same", 2),
        (1, 3, 2, 1, (5,), 3, (2,), 2), (1, 2, 3, 1, (2,), 1, "valid", 1),
        (2, 3, 4, 1, (3, 3), 1, 1, 1), (2, 4, 6, 2, (3, 2), (2, 1), (1, 0), (1, 2)),
        (2, 4, 4, 4, (3, 3), 1, "same", 1),  # depthwise
        (2, 4, 8, 4, (2, 2), 1, "same", 1),  # depthwise multiplier, even kernel
        (2, 2, 3, 1, (4, 3), 1, "same", (2, 1)), (2, 3, 2, 1, (1, 1), 2, 0, 1),  # 1x1
        (2, 2, 2, 1, (3, 3), 3, 2, 2), (2, 3, 3, 1, (2, 4), 1, "valid", 1),
        (3, 2, 3, 1, (3, 2, 2), (1, 2, 1), 1, 1), (3, 4, 4, 2, (2, 3, 3), 1, "same", (1, 1, 2)),
    ]
    return cases


def _spatial(ndim):
    return {1: (11,), 2: (9, 8), 3: (6, 5, 7)}[ndim]


def _torch_conv(torch, ndim):
    import torch.nn.functional as F
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[ndim]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", conv_grid(), ids=lambda c: "-".join(map(str, c)))
def test_conv_against_torch(case, method, rng):
    torch = pytest.importorskip("torch")
    ndim, c_in, c_out, groups, kernel, stride, padding, dilation = case
    w = rng.standard_normal((c_out, c_in // groups) + kernel)
    x = rng.standard_normal((2, c_in) + _spatial(ndim))
    expected = _torch_conv(torch, ndim)(torch.tensor(x), torch.tensor(w), stride=stride,
                                        padding=padding, dilation=dilation, groups=groups).numpy()
    op = linconv.conv_operator(w, x.shape[1:], stride=stride, padding=padding,
                               dilation=dilation, groups=groups, method=method)
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-11, atol=1e-11)
    A = linconv.conv_matrix(w, x.shape[1:], stride=stride, padding=padding, dilation=dilation,
                            groups=groups)
    np.testing.assert_allclose(A @ x[0].ravel(), expected[0].ravel(), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ndim,kernel,stride,padding,dilation,groups", [
    (1, (3,), 1, 2, 1, 1), (2, (3, 3), 1, "same", 1, 1), (2, (2, 3), (2, 1), (1, 2), (1, 1), 2),
    (2, (4, 4), 1, "same", 1, 2), (3, (3, 2, 3), 1, 1, (1, 1, 2), 1)])
def test_conv_padding_modes_against_torch_module(padding_mode, method, ndim, kernel, stride,
                                                 padding, dilation, groups, rng):
    torch = pytest.importorskip("torch")
    c_in, c_out = 4, 2
    module = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[ndim](
        c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
        bias=False, padding_mode=padding_mode, dtype=torch.float64)
    x = rng.standard_normal((2, c_in) + _spatial(ndim))
    expected = module(torch.tensor(x)).detach().numpy()
    w = module.weight.detach().numpy()
    op = linconv.conv_operator(w, x.shape[1:], stride=stride, padding=padding,
                               dilation=dilation, groups=groups, padding_mode=padding_mode,
                               method=method)
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-11, atol=1e-11)


def transpose_grid():
    return [
        (1, 3, 4, 1, (3,), 2, 1, 1, 1), (1, 2, 4, 2, (4,), 3, 0, 2, 1),
        (2, 4, 6, 2, (3, 2), (2, 1), 1, (1, 0), 1), (2, 2, 2, 1, (3, 3), 1, 0, 1, 2),
        (2, 3, 6, 3, (2, 3), 3, (1, 2), (2, 1), 1), (2, 4, 4, 4, (3, 3), 2, 1, 1, 1),
        (3, 2, 3, 1, (2, 3, 2), (2, 1, 2), (0, 1, 1), (1, 0, 0), 1),
    ]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", transpose_grid(), ids=lambda c: "-".join(map(str, c)))
def test_conv_transpose_against_torch(case, method, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    ndim, c_in, c_out, groups, kernel, stride, padding, output_padding, dilation = case
    w = rng.standard_normal((c_in, c_out // groups) + kernel)
    x = rng.standard_normal((2, c_in) + _spatial(ndim))
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[ndim]
    expected = fn(torch.tensor(x), torch.tensor(w), stride=stride, padding=padding,
                  output_padding=output_padding, groups=groups, dilation=dilation).numpy()
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    op = linconv.conv_transpose_operator(w, x.shape[1:], method=method, **kw)
    assert op.output_shape == expected.shape[1:]
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-11, atol=1e-11)
    A = linconv.conv_transpose_matrix(w, x.shape[1:], **kw)
    np.testing.assert_allclose(A @ x[1].ravel(), expected[1].ravel(), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kernel,dilation,padding,stride", [
    ((2, 2), 1, 0, 1), ((3, 2), (1, 2), 1, (2, 1)), ((3, 3), 2, (2, 1), 3), (2, 1, 0, 2)])
def test_unfold_fold_against_torch(kernel, dilation, padding, stride, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rng.standard_normal((2, 3, 9, 8))
    kw = dict(dilation=dilation, padding=padding, stride=stride)
    expected = F.unfold(torch.tensor(x), kernel, **kw).numpy()
    cols = linconv.unfold(x, kernel, **kw)
    np.testing.assert_array_equal(cols, expected)
    np.testing.assert_array_equal(linconv.unfold(x[0], kernel, **kw), expected[0])
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(linconv.fold(c, (9, 8), kernel, **kw),
                               F.fold(torch.tensor(c), (9, 8), kernel, **kw).numpy(), rtol=1e-13)


def test_worked_im2col_example_matches_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = np.array([[16, 24, 32], [47, 18, 26], [68, 12, 9]], dtype=float)
    w = np.array([[[[0, -1], [1, 0]]], [[[5, 4], [3, 2]]]], dtype=float)
    expected = F.conv2d(torch.tensor(x)[None, None], torch.tensor(w)).numpy()[0]
    # the worked numbers of test_worked_im2col_example are torch's
    np.testing.assert_array_equal(expected, [[[23, -14], [50, -14]], [[353, 354], [535, 248]]])
    cols = linconv.unfold(x[None], 2)
    np.testing.assert_array_equal(cols, F.unfold(torch.tensor(x)[None, None], 2).numpy()[0])
    np.testing.assert_array_equal((w.reshape(2, 4) @ cols).reshape(expected.shape), expected)
    np.testing.assert_array_equal((linconv.conv_matrix(w, (1, 3, 3)) @ x.ravel()).reshape(
        expected.shape), expected)


@pytest.mark.parametrize("dtype", ["float32", "complex128"])
def test_dtypes_against_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    w = random_array(rng, (4, 2, 3, 3), dtype)
    x = random_array(rng, (2, 4, 7, 6), dtype)
    expected = F.conv2d(torch.tensor(x), torch.tensor(w), padding=1, groups=2).numpy()
    for method in ("sparse", "direct", "fft"):
        y = linconv.conv_operator(w, x.shape[1:], padding=1, groups=2, method=method).apply(x)
        assert y.dtype == np.dtype(dtype)
        tol = 1e-5 if dtype == "float32" else 1e-11
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


# -- torch-free identities -----------------------------------------------------------
def test_worked_im2col_example():
    x = np.array([[16, 24, 32], [47, 18, 26], [68, 12, 9]])
    w = np.array([[[[0, -1], [1, 0]]], [[[5, 4], [3, 2]]]])
    expected = [[[23, -14], [50, -14]], [[353, 354], [535, 248]]]
    A = linconv.conv_matrix(w, (1, 3, 3))
    assert A.dtype == w.dtype  # integer weights: an exact integer matrix
    np.testing.assert_array_equal((A @ x.ravel()).reshape(2, 2, 2), expected)
    # the same through im2col: weights as rows times the unfolded input
    cols = linconv.unfold(x[None], 2)
    np.testing.assert_array_equal((w.reshape(2, 4) @ cols).reshape(2, 2, 2), expected)
    for method in ("sparse", "direct", "fft"):
        y = linconv.conv_operator(w, (1, 3, 3), method=method).apply(x[None])
        np.testing.assert_allclose(y, expected, atol=1e-10)


def test_transposed_convolution_is_the_transpose_4x4_3x3(rng):
    w = rng.standard_normal((1, 1, 3, 3))
    A = linconv.conv_matrix(w, (1, 4, 4), padding="valid")
    assert A.shape == (4, 16)
    T = linconv.conv_transpose_matrix(w, (1, 2, 2))
    assert T.shape == (16, 4)
    np.testing.assert_array_equal(T.toarray(), A.toarray().T)
    # and it is scipy's full convolution of each 2x2 input with the kernel
    y = rng.standard_normal((2, 2))
    np.testing.assert_allclose((T @ y.ravel()).reshape(4, 4),
                               scipy.signal.convolve(y, w[0, 0], "full"), rtol=1e-13)


@pytest.mark.parametrize("case", transpose_grid(), ids=lambda c: "-".join(map(str, c)))
def test_conv_transpose_matrix_is_conv_matrix_transposed(case, rng):
    ndim, c_in, c_out, groups, kernel, stride, padding, output_padding, dilation = case
    w = rng.standard_normal((c_in, c_out // groups) + kernel)
    in_shape = (c_in,) + _spatial(ndim)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    T = linconv.conv_transpose_matrix(w, in_shape, output_padding=output_padding, **kw)
    out_shape = linconv.conv_transpose_operator(w, in_shape, output_padding=output_padding,
                                                **kw).output_shape
    conv = linconv.conv_operator(w, out_shape, **kw)
    A = linconv.conv_matrix(w, out_shape, **kw).toarray()
    # The convolution of the transposed output has the transposed input's size, or more
    # trailing outputs when output_padding >= stride: those rows are not transposed.
    rows = np.ravel_multi_index(np.indices(in_shape).reshape(len(in_shape), -1),
                                conv.output_shape)
    np.testing.assert_array_equal(T.toarray(), A[rows].T)


def test_block_structure_and_groups(rng):
    w = rng.integers(-3, 4, (4, 1, 2, 2))  # depthwise-style: groups = 2, 2 in -> 4 out
    A = linconv.conv_matrix(w, (2, 5, 5), groups=2).toarray()
    n_out, n_in = 16, 25
    for o, c in itertools.product(range(4), range(2)):
        block = A[o * n_out:(o + 1) * n_out, c * n_in:(c + 1) * n_in]
        if o // 2 == c:  # in the group: the single-channel correlation matrix
            single = linconv.correlation_matrix(w[o, 0], (5, 5), "valid").toarray()
            np.testing.assert_array_equal(block, single)
        else:
            assert not block.any()


def test_pointwise_is_kron(rng):
    W = rng.standard_normal((3, 5))
    for ndim, spatial in ((1, (7,)), (2, (4, 3)), (3, (2, 3, 2))):
        A = linconv.conv_matrix(linconv.pointwise_conv_weight(W, ndim), (5,) + spatial)
        np.testing.assert_allclose(A.toarray(), np.kron(W, np.eye(int(np.prod(spatial)))))


def test_dense_layer_as_convolution_slides_over_windows(rng):
    W = rng.standard_normal((6, 2 * 3 * 3))
    conv_w = linconv.dense_to_conv(W, (2, 3, 3))
    big = rng.standard_normal((2, 7, 6))
    y = linconv.conv_operator(conv_w, big.shape).apply(big)
    for i, j in itertools.product(range(5), range(4)):
        np.testing.assert_allclose(y[:, i, j], W @ big[:, i:i + 3, j:j + 3].ravel(), rtol=1e-12)


@pytest.mark.parametrize("kernel,dilation,padding,stride", [
    ((2, 2), 1, 0, 1), ((3, 2), (1, 2), 1, (2, 1)), ((3,), 2, (2, 1), 3), ((2, 2, 2), 1, 1, 2)])
def test_unfold_matrix_and_fold_adjoint(kernel, dilation, padding, stride, rng):
    shape = (3,) + (7, 6, 5)[:len(kernel)]
    x = rng.standard_normal(shape)
    kw = dict(dilation=dilation, padding=padding, stride=stride)
    cols = linconv.unfold(x, kernel, **kw)
    M = linconv.unfold_matrix(shape, kernel, **kw)
    np.testing.assert_array_equal(M @ x.ravel(), cols.ravel())
    # fold is the exact adjoint of unfold: <unfold x, c> == <x, fold c>
    c = rng.standard_normal(cols.shape)
    folded = linconv.fold(c, shape[1:], kernel, **kw)
    assert folded.shape == shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, folded), rtol=1e-12)
    np.testing.assert_allclose(folded.ravel(), M.T @ c.ravel(), rtol=1e-12)
    # unfold against a direct gather from np.pad
    xp = np.pad(x, [(0, 0)] + [(p, p) if isinstance(p, int) else p for p in (
        [padding] * len(kernel) if isinstance(padding, int) else
        [padding] if len(kernel) == 1 else padding)])
    dil = np.broadcast_to(dilation, len(kernel))
    st = np.broadcast_to(stride, len(kernel))
    taps = list(itertools.product(*[range(k) for k in kernel]))
    first = tuple(slice(j * d, None, s) for j, d, s in zip(taps[-1], dil, st))
    out_shape = xp[(slice(None),) + first].shape[1:]
    for t, tap in enumerate(taps):
        window = tuple(slice(j * d, j * d + (n - 1) * s + 1, s)
                       for j, d, s, n in zip(tap, dil, st, out_shape))
        np.testing.assert_array_equal(cols[t::len(taps)].reshape((3,) + out_shape),
                                      xp[(slice(None),) + window])


@pytest.mark.parametrize("method", ["sparse", "direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_layer_operator_contract(method, dtype, rng):
    w = random_array(rng, (4, 2, 3, 2), dtype)
    op = linconv.conv_operator(w, (4, 6, 7), stride=(2, 1), padding=1, groups=2,
                               padding_mode="reflect", method=method)
    check_operator_contract(op, rng)
    t = linconv.conv_transpose_operator(w, (4, 5, 6), stride=2, padding=1, output_padding=1,
                                        groups=2, method=method)
    check_operator_contract(t, rng)
    # transposed convolution = transpose of the convolution's operator, never conjugated
    x = random_array(rng, t.shape[1], dtype)
    np.testing.assert_allclose(t @ x, t.H.T.T.H @ x, rtol=1e-12)
    assert pickle.loads(pickle.dumps(t)).output_shape == t.output_shape


def test_apply_takes_batches_and_single_inputs(rng):
    w = rng.standard_normal((3, 2, 3, 3))
    op = linconv.conv_operator(w, (2, 8, 8), padding="same")
    x = rng.standard_normal((5, 2, 8, 8))
    y = op.apply(x)
    assert y.shape == (5, 3, 8, 8)
    np.testing.assert_allclose(op.apply(x[3]), y[3], rtol=1e-12)
    np.testing.assert_allclose(op.matmat(x.reshape(5, -1).T).T, y.reshape(5, -1), rtol=1e-12)


@pytest.mark.parametrize("call,error,match", [
    (lambda: linconv.conv_operator(np.ones((2, 3)), (3, 4)), ValueError, r"`weight` must have shape"),
    (lambda: linconv.conv_operator(np.ones((2, 3, 3)), (3, 4, 4)), ValueError, r"`input_shape` must be \(C_in, \*spatial\)"),
    (lambda: linconv.conv_operator(np.ones((2, 2, 3)), (3, 8)), ValueError, r"expects 2 input channels"),
    (lambda: linconv.conv_operator(np.ones((3, 2, 3)), (4, 8), groups=2), ValueError, r"`groups`=2 must divide out_channels \(3\)"),
    (lambda: linconv.conv_operator(np.ones((2, 2, 3)), (4, 8), groups=0), ValueError, r"`groups` must be a positive integer; got 0"),
    (lambda: linconv.conv_operator(np.ones((2, 2, 3)), (2, 8), stride=2, padding="same"), ValueError, r"'same' is not supported with `stride`"),
    (lambda: linconv.conv_operator(np.ones((2, 2, 3)), (2, 8), padding="full"), ValueError, r"`padding` must be 'same', 'valid'"),
    (lambda: linconv.conv_operator(np.ones((2, 2, 3)), (2, 8), padding_mode="mirror"), ValueError, r"`padding_mode` must be.*'mirror'"),
    (lambda: linconv.conv_operator(np.ones((2, 2, 9)), (2, 8)), ValueError, r"output would be empty"),
    (lambda: linconv.conv_transpose_operator(np.ones((2, 2, 3)), (3, 8)), ValueError, r"C_in = 3 rows"),
    (lambda: linconv.conv_transpose_operator(np.ones((2, 2, 3)), (2, 8), stride=2, output_padding=2), ValueError, r"`output_padding` must be smaller"),
    (lambda: linconv.conv_transpose_operator(np.ones((2, 2, 3)), (2, 8), padding="same"), ValueError, r"`padding` must be an int"),
    (lambda: linconv.conv_transpose_operator(np.ones((2, 2, 3)), (2, 1), padding=3), ValueError, r"would be empty"),
    (lambda: linconv.unfold(np.ones((3, 4)), (2, 2)), ValueError, r"`x` must be \(C, \*spatial\)"),
    (lambda: linconv.fold(np.ones((5, 4)), (3, 3), 2), ValueError, r"`cols` must have C \* 4 rows"),
    (lambda: linconv.fold(np.ones((4, 5)), (3, 3), 2), ValueError, r"`cols` must have 4 columns"),
    (lambda: linconv.dense_to_conv(np.ones((3, 5)), (2, 2)), ValueError, r"`weight` must be \(out_features, 4\)"),
    (lambda: linconv.pointwise_conv_weight(np.ones(3)), ValueError, r"`matrix` must be \(C_out, C_in\)"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
