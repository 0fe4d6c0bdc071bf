"""linconv.symbolic against sympy algebra and the numeric matrices after substitution."""

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy

import linconv
import linconv.symbolic as ls
from cases import CASES, case_params, dense_by_columns, oracle_convolve, oracle_correlate


def _substitute(matrix, symbols, values):
    mapping = dict(zip(np.ravel(symbols), np.ravel(values)))
    return np.array(matrix.xreplace(mapping).tolist(), dtype=object)


def _exact(values):
    """Numbers as sympy exact objects for comparison (ints, Rationals)."""
    return np.vectorize(sympy.nsimplify, otypes=[object])(values)


@pytest.mark.parametrize("case", case_params(CASES[::2]))
@pytest.mark.parametrize("correlate", [False, True])
def test_substitution_gives_the_numeric_matrix(case, correlate, rng):
    h = ls.kernel_symbols(case.kernel_shape)
    build = ls.correlation_matrix if correlate else ls.convolution_matrix
    numeric = linconv.correlation_matrix if correlate else linconv.convolution_matrix
    M = build(h, case.input_shape, case.mode, **case.options())
    values = rng.integers(-9, 10, case.kernel_shape)
    A = numeric(values, case.input_shape, case.mode, **case.options())
    assert M.shape == A.shape
    np.testing.assert_array_equal(_substitute(M, h, values).astype(np.int64), A.toarray())
    # both against the np.pad oracle's matrix, column by column (integer taps: exact)
    oracle = oracle_correlate if correlate else oracle_convolve
    dense = dense_by_columns(lambda e: oracle(e, values.astype(float), case),
                             int(np.prod(case.input_shape)), case.input_shape)
    np.testing.assert_array_equal(_substitute(M, h, values).astype(np.int64), dense)


@pytest.mark.parametrize("case", case_params(CASES[1::5]))
def test_rationals_stay_exact(case, rng):
    h = ls.kernel_symbols(case.kernel_shape)
    fractions = rng.integers(1, 7, case.kernel_shape) / 7  # as floats for the numeric side
    rationals = np.vectorize(lambda v: sympy.Rational(Fraction(v).limit_denominator(7)),
                             otypes=[object])(fractions)
    M = ls.convolution_matrix(rationals, case.input_shape, case.mode, **case.options())
    assert all(isinstance(v, sympy.Rational) for v in M.values())
    A = linconv.convolution_matrix(fractions, case.input_shape, case.mode, **case.options())
    np.testing.assert_allclose(np.array(M.tolist(), dtype=float), A.toarray(), rtol=1e-14)
    # and symbolic then substituted equals the rational matrix exactly
    assert ls.convolution_matrix(h, case.input_shape, case.mode, **case.options()).xreplace(
        dict(zip(h.ravel(), rationals.ravel()))) == M


@pytest.mark.parametrize("kw", [
    dict(stride=1, padding=0, groups=1), dict(stride=2, padding=1, groups=2),
    dict(stride=1, padding="same", groups=1, padding_mode="reflect"),
    dict(stride=(1, 2), padding=1, groups=1, padding_mode="replicate"),
    dict(stride=1, padding=(1, 2), dilation=(2, 1), groups=2, padding_mode="circular")])
def test_layer_matrices_substitute_to_numeric(kw, rng):
    w = ls.kernel_symbols((4, 2, 2, 3), "w")
    values = rng.integers(-5, 6, w.shape)
    shape = (4 if kw["groups"] == 2 else 2, 5, 6)
    if kw["groups"] == 1:
        w, values = w[:, :2], values[:, :2]
    M = ls.conv_matrix(w, shape, **kw)
    A = linconv.conv_matrix(values, shape, **kw)
    np.testing.assert_array_equal(_substitute(M, w, values).astype(np.int64), A.toarray())
    t_kw = {k: v for k, v in kw.items() if k in ("stride", "groups")}
    wt = ls.kernel_symbols((4, 2, 3, 2), "w")
    vt = rng.integers(-5, 6, wt.shape)
    T = ls.conv_transpose_matrix(wt, (4, 3, 3), padding=1, output_padding=0, **t_kw)
    At = linconv.conv_transpose_matrix(vt, (4, 3, 3), padding=1, **t_kw)
    np.testing.assert_array_equal(_substitute(T, wt, vt).astype(np.int64), At.toarray())


def test_transpose_and_adjoint_match_numeric(rng):
    h = ls.kernel_symbols((2, 3))
    values = rng.integers(-4, 5, (2, 3)) + 1j * rng.integers(-4, 5, (2, 3))
    M = ls.convolution_matrix(h, (4, 4), "same", boundary="reflect", stride=(1, 2))
    A = linconv.convolution_matrix(values, (4, 4), "same", boundary="reflect", stride=(1, 2))
    mapping = dict(zip(h.ravel(), [sympy.sympify(complex(v)) for v in values.ravel()]))
    to_array = lambda S: np.array(S.xreplace(mapping).tolist(), dtype=complex)
    np.testing.assert_allclose(to_array(M.T), A.T.toarray())
    np.testing.assert_allclose(to_array(M.H), A.conj().T.toarray())
    op = linconv.ConvolutionOperator(values, (4, 4), "same", boundary="reflect", stride=(1, 2))
    np.testing.assert_allclose(to_array(M.H), op.H.toarray(), atol=1e-12)


# -- independent oracles --------------------------------------------------------------
def test_full_convolution_is_polynomial_multiplication():
    t = sympy.Symbol("t")
    h = ls.kernel_symbols(4)
    x = ls.kernel_symbols(6, "x")
    y = ls.convolution_matrix(h, 6, "full") * sympy.Matrix(x.tolist())
    product = sympy.Poly(sum(c * t**i for i, c in enumerate(h)), t) * \
        sympy.Poly(sum(c * t**i for i, c in enumerate(x)), t)
    coefficients = product.all_coeffs()[::-1]  # lowest degree first
    assert [sympy.expand(a - b) for a, b in zip(y, coefficients)] == [0] * 9
    assert list(ls.convolve(x, h)) == list(y)


def test_zero_boundary_1d_is_toeplitz():
    M = ls.convolution_matrix(ls.kernel_symbols(4), 7, "same", stride=1)
    for i in range(M.rows):
        for j in range(M.cols):
            if 0 < i and 0 < j:
                assert M[i, j] == M[i - 1, j - 1]


def test_2d_is_block_toeplitz_with_toeplitz_blocks():
    h = ls.kernel_symbols((3, 2))
    M = ls.convolution_matrix(h, (4, 5), "same")
    B = ls.block_partition(M, (4, 5), (4, 5))
    blocks = B.blocks
    for i in range(1, 4):
        for j in range(1, 4):
            assert blocks[i, j] == blocks[i - 1, j - 1]  # block Toeplitz
    for block in (blocks[1, 0], blocks[1, 1], blocks[0, 1]):
        for r in range(1, block.rows):
            for c in range(1, block.cols):
                assert block[r, c] == block[r - 1, c - 1]  # Toeplitz blocks


@pytest.mark.parametrize("ndim_shape,kshape", [((6,), (3,)), ((4, 5), (3, 2))])
def test_wrap_same_is_circulant(ndim_shape, kshape):
    M = ls.convolution_matrix(ls.kernel_symbols(kshape), ndim_shape, "same", boundary="wrap")
    if len(ndim_shape) == 1:
        n = ndim_shape[0]
        for i in range(n):
            assert list(M.row(i)) == list(np.roll(list(M.row(0)), i))
    else:  # block circulant with circulant blocks
        B = ls.block_partition(M, ndim_shape, ndim_shape).blocks
        n0 = ndim_shape[0]
        for i in range(n0):
            for j in range(n0):
                assert B[i, j] == B[0, (j - i) % n0]


def test_symbolic_expressions_and_exact_numbers_mix():
    a = sympy.Symbol("a")
    M = ls.correlation_matrix([1, sympy.Rational(1, 3), a**2], 3, "same", boundary="edge")
    assert M[0, 0] == 1 + sympy.Rational(1, 3) or M[0, 0] == sympy.Rational(4, 3)
    assert M[2, 2] == sympy.Rational(1, 3) + a**2


def test_rendering():
    M = ls.convolution_matrix(ls.kernel_symbols(3), 40, "same")
    latex = ls.to_latex(M, max_rows=6, max_cols=6)
    assert r"\cdots" in latex and r"\vdots" in latex and r"\ddots" in latex
    assert latex.count(r"\\") == 6  # 7 rows: 3 + elision + 3
    text = ls.to_text(M, max_rows=4, max_cols=4)
    assert len(text.splitlines()) == 5 and "..." in text
    markdown = ls.to_markdown(M, max_rows=4, max_cols=5)
    assert markdown.splitlines()[0] == "| | 0 | 1 | 2 | ⋯ | 38 | 39 |"
    with pytest.raises(ValueError, match=r"`max_rows` must be an integer >= 2; got 1"):
        ls.to_latex(M, max_rows=1)


@pytest.mark.parametrize("call,error,match", [
    (lambda: ls.convolution_matrix([[1, 2], [3]], 4), TypeError, r"`kernel` must be a rectangular"),
    (lambda: ls.convolution_matrix([], 4), ValueError, r"`kernel` must not be empty"),
    (lambda: ls.kernel_symbols((2, 0)), ValueError, r"`shape` must be a non-empty"),
    (lambda: ls.kernel_symbols(3, name=""), TypeError, r"`name` must be a non-empty string"),
    (lambda: ls.convolution_matrix(ls.kernel_symbols(3), 4, boundary="mirror"), ValueError, r"'reflect'"),
    (lambda: ls.block_partition(sympy.eye(3), (2,), (3,)), ValueError, r"does not map"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- the command line -------------------------------------------------------------------
GOLDEN = {
    "text": ["--input", "3x3", "--kernel", "2x2", "--mode", "valid"],
    "latex": ["--input", "4", "--kernel", "3", "--mode", "same", "--boundary", "wrap",
              "--format", "latex"],
    "markdown": ["--input", "3", "--kernel", "2", "--channels", "1,2", "--mode", "valid",
                 "--format", "markdown"],
}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "linconv", *args], capture_output=True,
                          text=True)


@pytest.mark.parametrize("fmt", list(GOLDEN))
def test_cli_golden(fmt):
    import pathlib
    expected = (pathlib.Path(__file__).parent / "golden" / f"matrix_{fmt}.txt").read_text()
    out = _cli("matrix", *GOLDEN[fmt])
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected


def test_cli_help_and_errors():
    help_text = _cli("matrix", "--help").stdout
    for option in ("--input", "--kernel", "--mode", "--boundary", "--stride", "--dilation",
                   "--correlate", "--channels", "--groups", "--format", "--max-size"):
        assert option in help_text
    bad = _cli("matrix", "--input", "4xz", "--kernel", "3")
    assert bad.returncode == 2 and "expected sizes like 4x4" in bad.stderr
    bad = _cli("matrix", "--input", "4x4", "--kernel", "3")
    assert bad.returncode == 2 and "must have as many axes" in bad.stderr
    bad = _cli("matrix", "--input", "2", "--kernel", "5", "--mode", "valid")
    assert bad.returncode == 2 and "output would be empty" in bad.stderr
    bad = _cli("matrix", "--input", "4", "--kernel", "3", "--boundary", "nearest")
    assert bad.returncode == 2 and "'edge'" in bad.stderr
