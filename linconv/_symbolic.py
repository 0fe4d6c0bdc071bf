"""Symbolic convolution matrices (sympy), read from the same geometry pattern.

sympy is imported on first use only, so ``import linconv`` stays light.
"""

from __future__ import annotations

import numpy as np

from . import _pattern
from ._geometry import Geometry
from ._nn import _conv_geometry, _transpose_geometry
from ._sparse import correlation_weights
from ._validation import as_shape

__all__ = ["kernel_symbols", "convolution_matrix", "correlation_matrix", "conv_matrix",
           "conv_transpose_matrix", "convolve", "correlate", "block_partition",
           "to_latex", "to_markdown", "to_text"]


def _sympy():
    import sympy
    return sympy


def as_symbolic(values, name: str = "kernel") -> np.ndarray:
    """`values` as an object array of sympy expressions (numbers stay exact)."""
    sympy = _sympy()
    try:
        array = np.array(values, dtype=object)
    except ValueError as exc:
        raise TypeError(f"`{name}` must be a rectangular array-like; got {values!r}") from exc
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in array.flat):  # ragged input
        raise TypeError(f"`{name}` must be a rectangular array-like; got {values!r}")
    if array.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension; got {values!r}")
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty; got shape {array.shape}")
    try:
        converted = np.frompyfunc(sympy.sympify, 1, 1)(array)
    except (sympy.SympifyError, TypeError) as exc:
        raise TypeError(f"`{name}` entries must be sympy expressions or numbers; "
                        f"{exc}") from exc
    return np.asarray(converted, dtype=object).reshape(array.shape)


def kernel_symbols(shape, name: str = "h") -> np.ndarray:
    """An array of sympy Symbols ``h_{i}`` / ``h_{i,j}`` / ... that render well in LaTeX.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> ls.kernel_symbols((2, 2))
    array([[h_{0,0}, h_{0,1}],
           [h_{1,0}, h_{1,1}]], dtype=object)
    """
    sympy = _sympy()
    shape = as_shape(shape, "shape")
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string; got {name!r}")
    names = [f"{name}_{{{','.join(map(str, index))}}}" for index in np.ndindex(*shape)]
    symbols = np.empty(len(names), dtype=object)
    symbols[:] = [sympy.Symbol(n) for n in names]  # symbols() would split at the commas
    return symbols.reshape(shape)


def _sparse_matrix(geometry: Geometry, rows, cols, values):
    sympy = _sympy()
    keep = np.asarray(values != 0, dtype=bool)
    entries = dict(zip(zip(rows[keep].tolist(), cols[keep].tolist()), values[keep]))
    return sympy.ImmutableSparseMatrix(geometry.output_size, geometry.input_size, entries)


def _matrix(geometry: Geometry, weights: np.ndarray, rows=None):
    """The ImmutableSparseMatrix of the correlation with symbolic `weights`; with `rows`
    (flat output indices), only the entries of those rows (the rest of the matrix
    zero): a printed corner of a huge matrix never builds the rest."""
    per_tap, taps = geometry.active_taps(weights)
    pattern = _pattern.pattern(geometry, taps, rows=rows, what="the symbolic matrix")
    local_rows, cols, values = pattern.folded(pattern.values(per_tap[:, :, taps]))
    if rows is not None:
        local_rows = np.asarray(rows, dtype=np.intp).reshape(-1)[local_rows]
    return _sparse_matrix(geometry, local_rows, cols, values)


def rows_matrix(geometry: Geometry, weights: np.ndarray, rows):
    """The matrix of :func:`_matrix` with only the entries of `rows` (flat output indices)."""
    return _matrix(geometry, weights, rows)


def _single(kernel, input_shape, mode, boundary, stride, dilation, correlate):
    kernel = as_symbolic(kernel)
    geometry = Geometry.from_args(kernel.shape, input_shape, mode, boundary, stride, dilation)
    return geometry, _matrix(geometry, correlation_weights(kernel, correlate))


def convolution_matrix(kernel, input_shape, mode="full", *, boundary="zero", stride=1,
                       dilation=1):
    r"""The convolution matrix with a symbolic (or exact) kernel, as sympy.

    Same arguments and geometry as :func:`linconv.convolution_matrix`;
    substituting numbers for the symbols gives exactly that numeric matrix.

    Returns
    -------
    sympy.ImmutableSparseMatrix

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> h = ls.kernel_symbols(3)
    >>> ls.convolution_matrix(h, 4, mode="same")
    Matrix([
    [h_{1}, h_{0},     0,     0],
    [h_{2}, h_{1}, h_{0},     0],
    [    0, h_{2}, h_{1}, h_{0}],
    [    0,     0, h_{2}, h_{1}]])

    Exact rationals stay exact:

    >>> from sympy import Rational
    >>> ls.convolution_matrix([Rational(1, 4), Rational(1, 2), Rational(1, 4)], 3, "same",
    ...                       boundary="wrap")
    Matrix([
    [1/2, 1/4, 1/4],
    [1/4, 1/2, 1/4],
    [1/4, 1/4, 1/2]])
    """
    return _single(kernel, input_shape, mode, boundary, stride, dilation, False)[1]


def correlation_matrix(kernel, input_shape, mode="full", *, boundary="zero", stride=1,
                       dilation=1):
    """The correlation matrix with a symbolic kernel (not conjugated), as sympy.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> ls.correlation_matrix(ls.kernel_symbols(2), 3, "valid")
    Matrix([
    [h_{0}, h_{1},     0],
    [    0, h_{0}, h_{1}]])
    """
    return _single(kernel, input_shape, mode, boundary, stride, dilation, True)[1]


def conv_matrix(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros"):
    """The block-Toeplitz matrix of a convolution layer with symbolic weights (PyTorch semantics).

    Same arguments as :func:`linconv.conv_matrix`.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> w = ls.kernel_symbols((2, 1, 2), name="w")       # 1 -> 2 channels
    >>> ls.conv_matrix(w, (1, 3))
    Matrix([
    [w_{0,0,0}, w_{0,0,1},         0],
    [        0, w_{0,0,0}, w_{0,0,1}],
    [w_{1,0,0}, w_{1,0,1},         0],
    [        0, w_{1,0,0}, w_{1,0,1}]])
    """
    weight, geometry = _conv_geometry(weight, input_shape, stride, padding, dilation, groups,
                                      padding_mode, check=as_symbolic)
    return _matrix(geometry, weight)


def conv_transpose_matrix(weight, input_shape, *, stride=1, padding=0, output_padding=0,
                          dilation=1, groups=1):
    """The transposed convolution's matrix with symbolic weights: the convolution's transpose.

    Same arguments as :func:`linconv.conv_transpose_matrix`.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> ls.conv_transpose_matrix(ls.kernel_symbols((1, 1, 2), "w"), (1, 2), stride=2)
    Matrix([
    [w_{0,0,0},         0],
    [w_{0,0,1},         0],
    [        0, w_{0,0,0}],
    [        0, w_{0,0,1}]])
    """
    weight, geometry = _transpose_geometry(weight, input_shape, stride, padding, output_padding,
                                           dilation, groups, check=as_symbolic)
    return _matrix(geometry, weight).T


def _apply(x, kernel, mode, boundary, stride, dilation, correlate):
    sympy = _sympy()
    x = as_symbolic(x, "x")
    geometry, matrix = _single(kernel, x.shape, mode, boundary, stride, dilation, correlate)
    y = matrix * sympy.Matrix(x.reshape(-1).tolist())
    return np.array(list(y), dtype=object).reshape(geometry.output_shape)


def convolve(x, kernel, mode="full", *, boundary="zero", stride=1, dilation=1):
    """The output expressions ``y = A x`` of a convolution, as an object array.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> ls.convolve(ls.kernel_symbols(3, "x"), ls.kernel_symbols(2), "valid")
    array([h_{0}*x_{1} + h_{1}*x_{0}, h_{0}*x_{2} + h_{1}*x_{1}], dtype=object)
    """
    return _apply(x, kernel, mode, boundary, stride, dilation, False)


def correlate(x, kernel, mode="full", *, boundary="zero", stride=1, dilation=1):
    """The output expressions ``y = A x`` of a correlation, as an object array."""
    return _apply(x, kernel, mode, boundary, stride, dilation, True)


def block_partition(matrix, output_shape, input_shape):
    """Partition a matrix by the first axis of its output and input shapes (a BlockMatrix).

    For a 2-D convolution the blocks are the Toeplitz blocks of the
    doubly-block Toeplitz matrix (block ``(i, j)`` maps input row ``j`` to
    output row ``i``); for a layer ``(C, *spatial)`` they are the channel blocks.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> A = ls.correlation_matrix(ls.kernel_symbols((2, 2)), (2, 2), "valid")
    >>> B = ls.block_partition(A, (1, 1), (2, 2))
    >>> B.blockshape
    (1, 2)
    >>> B.blocks[0, 1]
    Matrix([[h_{1,0}, h_{1,1}]])
    """
    sympy = _sympy()
    output_shape, input_shape = as_shape(output_shape, "output_shape"), as_shape(input_shape)
    if matrix.shape != (int(np.prod(output_shape)), int(np.prod(input_shape))):
        raise ValueError(f"`matrix` of shape {matrix.shape} does not map `input_shape` "
                         f"{input_shape} to `output_shape` {output_shape}")
    r, c = int(np.prod(output_shape[1:])), int(np.prod(input_shape[1:]))
    return sympy.BlockMatrix([[matrix[i * r:(i + 1) * r, j * c:(j + 1) * c]
                               for j in range(input_shape[0])] for i in range(output_shape[0])])


# -- rendering ------------------------------------------------------------------
def _shown(size: int, limit: int):
    """Indices to show along an axis of `size`, with None where the rest is elided."""
    if size <= limit:
        return list(range(size))
    head = (limit + 1) // 2
    return list(range(head)) + [None] + list(range(size - (limit - head), size))


def _cells(matrix, max_rows, max_cols, render, zero, dots):
    vertical, horizontal, diagonal = dots
    grid = []
    for i in _shown(matrix.shape[0], max_rows):
        row = []
        for j in _shown(matrix.shape[1], max_cols):
            if i is None:
                row.append(diagonal if j is None else vertical)
            elif j is None:
                row.append(horizontal)
            else:
                value = matrix[i, j]
                row.append(zero if value == 0 else render(value))
        grid.append(row)
    return grid


def _check_limits(max_rows, max_cols):
    for name, value in (("max_rows", max_rows), ("max_cols", max_cols)):
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"`{name}` must be an integer >= 2; got {value!r}")


def _boundaries(size: int, limit: int, block: int | None) -> list[bool]:
    """For each shown index along an axis (None: the elision): is a block boundary right
    after it?  Lines next to the elision stay where the blocks end and start."""
    shown = _shown(size, limit)
    if not block:
        return [False] * len(shown)
    after = []
    for i, nxt in zip(shown, shown[1:] + [size]):
        after.append(nxt != size and (nxt % block == 0 if i is None
                                      else (i + 1) % block == 0))
    return after


def to_latex(matrix, *, max_rows: int = 16, max_cols: int = 16, zero: str = "0",
             environment: str = "bmatrix", blocks=None) -> str:
    r"""LaTeX for a matrix, eliding the middle rows/columns of large ones.

    Parameters
    ----------
    matrix : sympy matrix
    max_rows, max_cols : int
        Show at most this many rows / columns; the middle ones become
        ``dots``, ``\cdots`` and ``\ddots``.
    zero : str
        How zero entries are written.
    environment : str
        The LaTeX matrix environment (without `blocks`).
    blocks : (int, int), optional
        Rows and columns per block: partition lines (``\hline`` and ``|`` in an
        ``array``) between the blocks, e.g. the Toeplitz blocks of a 2-D
        convolution's doubly-block matrix.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> print(ls.to_latex(ls.convolution_matrix(ls.kernel_symbols(2), 2, "full")))
    \begin{bmatrix}
    h_{0} & 0 \\
    h_{1} & h_{0} \\
    0 & h_{1}
    \end{bmatrix}
    >>> A = ls.correlation_matrix(ls.kernel_symbols((1, 2)), (2, 2), "valid")
    >>> print(ls.to_latex(A, blocks=(1, 2)))
    \left[\begin{array}{cc|cc}
    h_{0,0} & h_{0,1} & 0 & 0 \\ \hline
    0 & 0 & h_{0,0} & h_{0,1}
    \end{array}\right]
    """
    sympy = _sympy()
    _check_limits(max_rows, max_cols)
    grid = _cells(matrix, max_rows, max_cols, sympy.latex, zero,
                  (r"\vdots", r"\cdots", r"\ddots"))
    if blocks is None:
        body = " \\\\\n".join(" & ".join(row) for row in grid)
        return f"\\begin{{{environment}}}\n{body}\n\\end{{{environment}}}"
    block_rows, block_cols = blocks
    after_row = _boundaries(matrix.shape[0], max_rows, block_rows)
    after_col = _boundaries(matrix.shape[1], max_cols, block_cols)
    spec = "".join("c|" if line else "c" for line in after_col)
    lines = [" & ".join(row) + (" \\\\ \\hline" if line else " \\\\")
             for row, line in zip(grid, after_row)]
    lines[-1] = " & ".join(grid[-1])
    body = "\n".join(lines)
    return f"\\left[\\begin{{array}}{{{spec}}}\n{body}\n\\end{{array}}\\right]"


def to_markdown(matrix, *, max_rows: int = 16, max_cols: int = 16, zero: str = "0") -> str:
    """A Markdown table of a matrix (LaTeX math in the cells), eliding large ones.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> print(ls.to_markdown(ls.correlation_matrix(ls.kernel_symbols(2), 3, "valid")))
    | | 0 | 1 | 2 |
    |---|---|---|---|
    | **0** | $h_{0}$ | $h_{1}$ | 0 |
    | **1** | 0 | $h_{0}$ | $h_{1}$ |
    """
    sympy = _sympy()
    _check_limits(max_rows, max_cols)
    grid = _cells(matrix, max_rows, max_cols, lambda v: f"${sympy.latex(v)}$", zero,
                  ("⋮", "⋯", "⋱"))
    columns = ["⋯" if j is None else str(j) for j in _shown(matrix.shape[1], max_cols)]
    rows = ["⋮" if i is None else f"**{i}**" for i in _shown(matrix.shape[0], max_rows)]
    lines = ["| | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [f"| {label} | " + " | ".join(row) + " |" for label, row in zip(rows, grid)]
    return "\n".join(lines)


def to_text(matrix, *, max_rows: int = 16, max_cols: int = 16, zero: str = ".") -> str:
    """Plain text with aligned columns, zeros as `zero`, eliding large matrices.

    Examples
    --------
    >>> import linconv.symbolic as ls
    >>> print(ls.to_text(ls.convolution_matrix([1, 2, 3], 3, "same", boundary="wrap")))
    2  1  3
    3  2  1
    1  3  2
    """
    _check_limits(max_rows, max_cols)
    grid = _cells(matrix, max_rows, max_cols, str, zero, (":", "...", "`."))
    widths = [max(len(row[j]) for row in grid) for j in range(len(grid[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in grid)
