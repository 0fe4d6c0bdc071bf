"""singular_values, operator_norm and dottest against dense numpy linear algebra.

The dense matrices come from numpy/scipy oracles (np.pad + scipy.signal.correlate,
column by column), never from linconv's own matrices.
"""

import numpy as np
import pytest
import scipy.signal
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import linconv
from cases import dense_by_columns



@pytest.fixture
def rng(request):
    """A generator seeded from the test id (reproducible, different per test)."""
    import zlib
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


PAD = {"wrap": "wrap", "zero": "constant", "reflect": "reflect"}


def layer_oracle(x, w, pad, boundary, stride=1, groups=1):
    """torch-semantics conv of one input (C_in, *spatial) with numpy and scipy only."""
    nd = w.ndim - 2
    xp = np.pad(x, [(0, 0)] + [(pad, pad)] * nd, mode=PAD[boundary])
    c_out, c_in_g = w.shape[:2]
    out_per_group = c_out // groups
    rows = []
    for o in range(c_out):
        first = (o // out_per_group) * c_in_g
        acc = sum(scipy.signal.correlate(xp[first + c], w[o, c], mode="valid")
                  for c in range(c_in_g))
        rows.append(acc[(slice(None, None, stride),) * nd])
    return np.array(rows)


def dense_layer(w, input_shape, pad, boundary, stride=1, groups=1):
    return dense_by_columns(lambda x: layer_oracle(x, w, pad, boundary, stride, groups),
                            int(np.prod(input_shape)), input_shape)


def svd(a):
    return np.linalg.svd(a, compute_uv=False)


@pytest.mark.parametrize("kernel_shape, input_shape", [((3,), (7,)), ((4,), (6,)),
                                                       ((3, 2), (5, 4)), ((5, 5), (3, 4))])
def test_all_singular_values_single_channel_circulant(rng, kernel_shape, input_shape):
    h = rng.standard_normal(kernel_shape)
    op = linconv.ConvolutionOperator(h, input_shape, "same", boundary="wrap")
    # oracle: the dense matrix of circular convolution, column by column with np.pad
    pads = [(k // 2, (k - 1) // 2) for k in kernel_shape]
    dense = dense_by_columns(lambda x: scipy.signal.convolve(np.pad(x, pads, "wrap"), h, "valid"),
                             int(np.prod(input_shape)), input_shape)
    np.testing.assert_allclose(linconv.singular_values(op), svd(dense), rtol=1e-12, atol=1e-12)
    # single channel: |FFT eigenvalues|
    lam = np.abs(linconv.fft.eigenvalues(h, input_shape))
    np.testing.assert_allclose(linconv.singular_values(op), np.sort(lam.ravel())[::-1],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c_in, c_out, groups, shape", [
    (2, 3, 1, (6, 5)), (4, 4, 2, (5, 5)), (3, 3, 3, (4, 6)), (4, 2, 2, (7,)), (2, 4, 1, (3, 3, 4))])
def test_all_singular_values_circular_layers(rng, c_in, c_out, groups, shape):
    w = rng.standard_normal((c_out, c_in // groups) + (3,) * len(shape))
    op = linconv.conv_operator(w, (c_in,) + shape, padding=1, groups=groups,
                               padding_mode="circular")
    dense = dense_layer(w, (c_in,) + shape, 1, "wrap", groups=groups)
    s = linconv.singular_values(op)
    assert s.shape == (min(dense.shape),)
    np.testing.assert_allclose(s, svd(dense), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(linconv.singular_values(op.T), s)  # same for the transpose
    np.testing.assert_allclose(linconv.singular_values(op, k=3), svd(dense)[:3], rtol=1e-11)


@pytest.mark.parametrize("boundary, stride", [("zero", 1), ("zero", 2), ("reflect", 1),
                                              ("wrap", 2)])
def test_top_k_singular_values_of_non_circulant_layers(rng, monkeypatch, boundary, stride):
    import linconv._tools
    monkeypatch.setattr(linconv._tools, "DENSE_LIMIT", 0)  # svds, not the dense SVD
    w = rng.standard_normal((3, 2, 3, 3))
    op = linconv.conv_operator(w, (2, 9, 8), padding=1, stride=stride,
                               padding_mode={"zero": "zeros", "reflect": "reflect",
                                             "wrap": "circular"}[boundary])
    dense = dense_layer(w, (2, 9, 8), 1, boundary, stride)
    np.testing.assert_allclose(linconv.singular_values(op, k=4), svd(dense)[:4], rtol=1e-10)
    assert linconv.operator_norm(op) == pytest.approx(svd(dense)[0], rel=1e-10)
    with pytest.raises(ValueError, match="needs a circulant operator"):
        linconv.singular_values(op)


def test_signal_operators_strided_and_complex(rng):
    h = rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3))
    op = linconv.ConvolutionOperator(h, (8, 7), "full", stride=(2, 1))
    dense = dense_by_columns(
        lambda x: scipy.signal.convolve(x, h, "full")[::2], 56, (8, 7), dtype=complex)
    np.testing.assert_allclose(linconv.singular_values(op, k=5), svd(dense)[:5], rtol=1e-10)
    np.testing.assert_allclose(linconv.singular_values(op, k=min(dense.shape)), svd(dense),
                               rtol=1e-10, atol=1e-12)  # k = min(shape): beyond svds
    circulant = linconv.ConvolutionOperator(h, (8, 7), "same", boundary="wrap")
    assert linconv.operator_norm(circulant) == pytest.approx(
        np.abs(linconv.fft.eigenvalues(h, (8, 7))).max(), rel=1e-13)


def test_float32_layers_are_computed_in_float64(rng):
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    for mode in ("circular", "zeros"):
        op = linconv.conv_operator(w, (2, 6, 6), padding=1, padding_mode=mode)
        dense = dense_layer(w.astype(np.float64), (2, 6, 6), 1,
                            "wrap" if mode == "circular" else "zero")
        s = linconv.singular_values(op, k=2)
        assert s.dtype == np.float64
        np.testing.assert_allclose(s, svd(dense)[:2], rtol=1e-10)


@pytest.mark.parametrize("dense_limit", [0, 2 ** 20])
def test_any_linear_operator(rng, monkeypatch, dense_limit):
    import linconv._tools
    monkeypatch.setattr(linconv._tools, "DENSE_LIMIT", dense_limit)  # svds / dense SVD
    a = rng.standard_normal((30, 20))
    op = aslinearoperator(a)
    np.testing.assert_allclose(linconv.singular_values(op, k=3), svd(a)[:3], rtol=1e-12)
    assert linconv.operator_norm(op) == pytest.approx(svd(a)[0], rel=1e-12)
    assert linconv.operator_norm(aslinearoperator(a[:1])) == pytest.approx(
        np.linalg.norm(a[0]), rel=1e-14)
    with pytest.raises(ValueError, match="needs a circulant operator"):
        linconv.singular_values(op)


@pytest.mark.parametrize("k", [0, 21, 2.5, "3"])
def test_bad_k(k):
    op = aslinearoperator(np.ones((30, 20)))
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 20\]"):
        linconv.singular_values(op, k=k)


# -- dottest ----------------------------------------------------------------------
def test_dottest_passes_exact_adjoints(rng):
    for op in (linconv.ConvolutionOperator(rng.standard_normal((3, 4)), (9, 8), "same",
                                           boundary="symmetric", stride=2),
               linconv.ConvolutionOperator(rng.standard_normal(5) + 1j, 11, "full"),
               linconv.conv_transpose_operator(rng.standard_normal((2, 3, 3)), (2, 5),
                                               stride=2)):
        value = linconv.dottest(op, rng=rng)
        assert 0 <= value < 1e-12
    op32 = linconv.ConvolutionOperator(rng.standard_normal((3, 3)).astype(np.float32), (16, 16))
    assert linconv.dottest(op32, rng=1) < 1e-5
    # the same seed gives the same vectors
    assert linconv.dottest(op32, rng=3) == linconv.dottest(op32, rng=3)


def test_dottest_catches_wrong_adjoints(rng):
    a = rng.standard_normal((6, 5)) + 1j * rng.standard_normal((6, 5))
    transpose_only = LinearOperator(a.shape, matvec=lambda x: a @ x,
                                    rmatvec=lambda y: a.T @ y, dtype=complex)
    with pytest.raises(AssertionError, match="dot test failed"):
        linconv.dottest(transpose_only, rng=0)  # complex x, y expose the missing conjugation
    right = LinearOperator(a.shape, matvec=lambda x: a @ x, rmatvec=lambda y: a.conj().T @ y,
                           dtype=complex)
    assert linconv.dottest(right, rng=0) < 1e-13
    slightly_off = LinearOperator((6, 5), matvec=lambda x: a.real @ x,
                                  rmatvec=lambda y: (1 + 1e-9) * a.real.T @ y, dtype=float)
    with pytest.raises(AssertionError, match="> tol 1e-12"):
        linconv.dottest(slightly_off, rng=0)
    assert 1e-14 < linconv.dottest(slightly_off, tol=1e-6, rng=0) <= 1e-9
