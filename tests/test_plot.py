"""linconv.plot on the Agg backend: what is drawn is the matrix given."""

import numpy as np
import pytest
import scipy.sparse as sp

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import linconv  # noqa: E402
import linconv.plot  # noqa: E402
import linconv.symbolic as ls  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def image_of(ax):
    return np.ma.filled(ax.images[0].get_array().astype(float), np.nan)


@pytest.mark.parametrize("kind", ["sparse", "dense", "sympy", "operator"])
def test_heat_map_shows_exactly_the_entries(kind):
    rng = np.random.default_rng(0)
    dense = rng.integers(-3, 4, (6, 9)).astype(float)
    dense[dense == 0] = 0.0
    A = {"sparse": sp.csr_array(dense), "dense": dense,
         "sympy": __import__("sympy").Matrix(dense.astype(int).tolist())}.get(kind)
    if kind == "operator":
        op = linconv.ConvolutionOperator(rng.standard_normal((2, 2)), (3, 3), "valid")
        A, dense = op, op.toarray()
    fig, ax = plt.subplots()
    assert linconv.plot.matrix(A, ax=ax) is ax
    shown = image_of(ax)
    np.testing.assert_allclose(np.nan_to_num(shown), dense)  # zeros are blank (NaN)
    assert np.array_equal(np.isnan(shown), dense == 0)
    assert ax.get_title() == f"{dense.shape[0]} x {dense.shape[1]}, {np.count_nonzero(dense)} " \
                             "stored entries"


def test_block_lines_and_symbol_labels():
    A = ls.convolution_matrix(ls.kernel_symbols((2, 2)), (3, 3), "full")  # 16 x 9
    ax = linconv.plot.matrix(A, blocks=(4, 3))
    horizontal = sorted(line.get_ydata()[0] for line in ax.lines if line.get_ydata()[0]
                        == line.get_ydata()[1])
    vertical = sorted(line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0]
                      == line.get_xdata()[1])
    assert horizontal == [3.5, 7.5, 11.5] and vertical == [2.5, 5.5]
    labels = sorted(t.get_text() for t in ax.texts)
    assert len(labels) == 36 and labels[0] == "$h_{0,0}$"  # 4 taps x 9 columns
    # one colour code per symbol: the four taps
    assert len(np.unique(image_of(ax)[~np.isnan(image_of(ax))])) == 4


def test_large_sparse_matrices_are_scattered_not_densified():
    A = linconv.convolution_matrix(np.ones((3, 3)), (64, 40), "same")  # 2560 x 2560 > limit
    ax = linconv.plot.matrix(A)
    assert not ax.images
    assert len(ax.collections[0].get_offsets()) == A.nnz


def test_receptive_field_marks_the_row_and_the_window():
    kernel = np.arange(1.0, 10.0).reshape(3, 3)
    op = linconv.ConvolutionOperator(kernel, (6, 5), "same", boundary="wrap", correlate=True)
    fig = linconv.plot.receptive_field(op, (0, 4))
    ax_in, ax_A, ax_out = fig.axes[:3]
    window = image_of(ax_in)
    # oracle: output (0, 4) of the wrapped correlation reads rows -1..1 and columns 3..5 (mod)
    expected = np.full((6, 5), np.nan)
    expected[np.ix_([5, 0, 1], [3, 4, 0])] = kernel
    np.testing.assert_array_equal(window, expected)
    assert ax_A.patches[0].get_y() == 4 - 0.5  # row 4 of the matrix
    marker = image_of(ax_out)
    assert marker[0, 4] == 1 and np.isnan(marker).sum() == 29
    assert linconv.plot.receptive_field(op, 4).axes[1].patches[0].get_y() == 3.5


def test_receptive_field_of_a_layer_stacks_channels():
    w = np.ones((2, 3, 3, 3))
    fig = linconv.plot.receptive_field(linconv.conv_operator(w, (3, 4, 4), padding=1), (1, 0, 0))
    assert image_of(fig.axes[0]).shape == (12, 4)
    assert np.count_nonzero(~np.isnan(image_of(fig.axes[0]))) == 3 * 4  # corner: 2x2 per channel


@pytest.mark.parametrize("call, error, match", [
    (lambda: linconv.plot.matrix(np.ones((2, 2, 2))), ValueError, "must be a 2-D matrix"),
    (lambda: linconv.plot.matrix(np.eye(3), blocks=(0, 1)), ValueError, "`blocks` must be"),
    (lambda: linconv.plot.receptive_field(
        linconv.ConvolutionOperator([1.0, 2.0], 4), 5), ValueError, r"`index` must be in \[0, 5\)"),
    (lambda: linconv.plot.receptive_field(
        linconv.ConvolutionOperator([1.0, 2.0], 4), (0, 0)), ValueError, "must index"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_import_is_lazy():
    import subprocess
    import sys
    code = "import linconv.plot, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
