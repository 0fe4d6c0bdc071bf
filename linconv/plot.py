"""Pictures of convolution matrices (matplotlib, imported only when a function is called).

matrix           -- heat map of a sparse, dense or sympy matrix, with its block structure
receptive_field  -- one output pixel, its matrix row and the input window it reads

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import numpy as np, linconv, linconv.plot
>>> A = linconv.convolution_matrix(np.arange(1, 10).reshape(3, 3), (4, 4), "same")
>>> ax = linconv.plot.matrix(A, blocks=(4, 4))
>>> ax.get_title()
'16 x 16, 100 stored entries'
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["matrix", "receptive_field"]

# more entries than this are drawn as a scatter of the stored ones, not as an image
DENSE_LIMIT = 2 ** 22


def _is_sympy(A) -> bool:
    return type(A).__module__.split(".")[0] == "sympy"


def _entries(A):
    """``(shape, rows, cols, values, labels)``: the stored entries of `A`; `labels` are the
    distinct symbolic entries (values are then their codes) or None for numbers."""
    import scipy.sparse as sp
    if hasattr(A, "tosparse") and not sp.issparse(A):  # a linconv operator
        A = A.tosparse("coo")
    if _is_sympy(A):
        items = A.todok().items()
        keys = [k for k, v in items if v != 0]
        vals = [v for k, v in items if v != 0]
        rows = np.array([k[0] for k in keys], dtype=np.intp)
        cols = np.array([k[1] for k in keys], dtype=np.intp)
        if all(v.is_number for v in vals):
            values = np.array([complex(v) for v in vals])
            values = values.real if not np.any(values.imag) else values
            return A.shape, rows, cols, values, None
        labels = sorted(set(vals), key=str)
        code = {v: i for i, v in enumerate(labels)}
        return A.shape, rows, cols, np.array([code[v] for v in vals], dtype=float), labels
    if sp.issparse(A):
        coo = sp.coo_array(A)
        coo.sum_duplicates()
        return coo.shape, coo.row, coo.col, coo.data, None
    dense = np.asarray(A)
    if dense.ndim != 2:
        raise ValueError(f"`A` must be a 2-D matrix; got shape {dense.shape}")
    rows, cols = np.nonzero(dense)
    return dense.shape, rows, cols, dense[rows, cols], None


def _as_blocks(blocks):
    if blocks is None:
        return None
    if isinstance(blocks, (int, np.integer)):
        blocks = (blocks, blocks)
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 2 or min(blocks) < 1:
        raise ValueError(f"`blocks` must be a positive int or (rows, cols) per block; "
                         f"got {blocks!r}")
    return blocks


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(5, 5))
    return ax


def matrix(A, *, blocks=None, ax=None, cmap=None, labels: bool | None = None):
    """Draw a matrix as a heat map, with lines between its blocks.

    Zero entries stay white; numbers are coloured on a scale symmetric about
    zero (magnitudes for complex matrices); symbolic (sympy) entries get one
    colour per distinct expression and, for small matrices, their label.

    Parameters
    ----------
    A : scipy.sparse array, ndarray, sympy Matrix or linconv operator
    blocks : int or (int, int), optional
        Rows and columns per block: lines between the blocks.  For the
        doubly-block Toeplitz matrix of a 2-D convolution from ``(n0, n1)`` to
        ``(m0, m1)`` that is ``(m1, n1)`` (the input shape for "same").
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    cmap : str or Colormap, optional
    labels : bool, optional
        Write the symbolic entries in their cells (default: when at most 24 x 24).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import linconv, linconv.plot, linconv.symbolic as ls
    >>> A = ls.convolution_matrix(ls.kernel_symbols((2, 2)), (3, 3), "valid")
    >>> ax = linconv.plot.matrix(A, blocks=(2, 3))
    >>> len(ax.texts)        # 4 rows x 4 taps, labelled
    16
    """
    import matplotlib.colors as mcolors
    ax = _axes(ax)
    shape, rows, cols, values, names = _entries(A)
    blocks = _as_blocks(blocks)
    m, n = shape
    if names is not None:
        import matplotlib
        count = max(len(names), 1)
        base = matplotlib.colormaps[cmap or ("tab20" if count <= 20 else "viridis")]
        colormap = mcolors.ListedColormap(base.resampled(count)(np.arange(count)))
        norm = mcolors.Normalize(-0.5, count - 0.5)
        shown = values
    else:
        shown = np.abs(values) if np.iscomplexobj(values) else values.astype(float)
        top = float(np.max(np.abs(shown))) if shown.size else 1.0
        top = top or 1.0
        signed = np.iscomplexobj(values) is False and bool(np.any(shown < 0))
        colormap = cmap or ("RdBu_r" if signed else "viridis")
        norm = mcolors.Normalize(-top if signed else 0.0, top)
    if m * n <= DENSE_LIMIT:
        image = np.full(shape, np.nan)
        image[rows, cols] = shown
        ax.imshow(np.ma.masked_invalid(image), cmap=colormap, norm=norm,
                  interpolation="nearest", aspect="equal")
    else:
        ax.scatter(cols, rows, c=shown, cmap=colormap, norm=norm, marker="s",
                   s=max(0.5, 4e4 / max(m, n)), linewidths=0)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(m - 0.5, -0.5)
        ax.set_aspect("equal")
    if names is not None and (labels if labels is not None else max(m, n) <= 24):
        from sympy import latex
        size = max(4, min(9, 120 / max(m, n)))
        for r, c, v in zip(rows, cols, values.astype(int)):
            ax.text(c, r, f"${latex(names[v])}$", ha="center", va="center", fontsize=size)
    if blocks is not None:
        for y in np.arange(blocks[0], m, blocks[0]):
            ax.axhline(y - 0.5, color="0.35", linewidth=0.8)
        for x in np.arange(blocks[1], n, blocks[1]):
            ax.axvline(x - 0.5, color="0.35", linewidth=0.8)
    ax.set_title(f"{m} x {n}, {len(rows)} stored entries")
    ax.tick_params(labelsize=7)
    return ax


def _image_shape(shape) -> tuple[int, int]:
    """How an array of `shape` is drawn: 1-D as one row, N-D with leading axes stacked."""
    shape = tuple(shape)
    if len(shape) == 1:
        return 1, shape[0]
    return math.prod(shape[:-1]), shape[-1]


def _grid(ax, shape, title):
    rows, cols = _image_shape(shape)
    ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="0.8", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title, fontsize=9)
    if len(shape) > 2:  # stacked leading axes (channels): separate them
        for y in np.arange(shape[-2], rows, shape[-2]):
            ax.axhline(y - 0.5, color="0.2", linewidth=1.2)


def receptive_field(op, index, *, fig=None):
    """One output sample of an operator: its input window, its matrix row, and itself.

    Parameters
    ----------
    op : linconv operator
        Anything with ``input_shape``, ``output_shape`` and ``tosparse()``
        (:class:`linconv.ConvolutionOperator`, :func:`linconv.conv_operator`, ...).
    index : int or tuple of int
        The output sample, as a flat (C-order) row index or an index into
        ``op.output_shape``.
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Three axes: the input with the weights the output reads (boundary
        folds added), the matrix with that row marked, the output.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, linconv, linconv.plot
    >>> op = linconv.ConvolutionOperator(np.ones((3, 3)), (6, 6), "same", boundary="reflect",
    ...                                  stride=2)
    >>> fig = linconv.plot.receptive_field(op, (0, 1))
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['input (6, 6): 6 samples read', 'row 1 of 9 x 36', 'output (3, 3): sample (0, 1)']
    """
    import matplotlib.patches as patches
    A = op.tosparse("csr")
    out_shape, in_shape = tuple(op.output_shape), tuple(op.input_shape)
    if isinstance(index, (int, np.integer)):
        if not 0 <= index < A.shape[0]:
            raise ValueError(f"`index` must be in [0, {A.shape[0]}); got {index}")
        row = int(index)
    else:
        index = tuple(index)
        if len(index) != len(out_shape) or any(not 0 <= i < s for i, s in zip(index, out_shape)):
            raise ValueError(f"`index` must index `op.output_shape` {out_shape}; got {index}")
        row = int(np.ravel_multi_index(index, out_shape))
    if fig is None:
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(11, 3.6))
    ax_in, ax_A, ax_out = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1.3, 1]))
    start, stop = A.indptr[row], A.indptr[row + 1]
    window = np.full(A.shape[1], np.nan)
    window[A.indices[start:stop]] = np.abs(A.data[start:stop]) if np.iscomplexobj(A.data) \
        else A.data[start:stop]
    top = float(np.nanmax(np.abs(window))) if stop > start else 1.0
    signed = bool(np.nanmin(window) < 0) if stop > start else False
    ax_in.imshow(np.ma.masked_invalid(window.reshape(_image_shape(in_shape))),
                 cmap="RdBu_r" if signed else "viridis", vmin=-top if signed else 0, vmax=top,
                 interpolation="nearest")
    _grid(ax_in, in_shape, f"input {in_shape}: {stop - start} samples read")
    matrix(A, ax=ax_A, blocks=(math.prod(out_shape[1:]), math.prod(in_shape[1:]))
           if len(in_shape) > 1 and len(out_shape) > 1 else None)
    ax_A.add_patch(patches.Rectangle((-0.5, row - 0.5), A.shape[1], 1, fill=False,
                                     edgecolor="red", linewidth=1.2))
    ax_A.set_title(f"row {row} of {A.shape[0]} x {A.shape[1]}", fontsize=9)
    ax_A.set_aspect("auto")
    marker = np.full(A.shape[0], np.nan)
    marker[row] = 1.0
    ax_out.imshow(np.ma.masked_invalid(marker.reshape(_image_shape(out_shape))), cmap="Reds",
                  vmin=0, vmax=1, interpolation="nearest")
    where = np.unravel_index(row, out_shape)
    _grid(ax_out, out_shape, f"output {out_shape}: sample "
          f"{tuple(int(i) for i in where) if len(where) > 1 else int(where[0])}")
    return fig
