"""The CSR pattern of a correlation matrix, built from the geometry in O(nnz).

The sparse matrices (:mod:`linconv._sparse`), the symbolic backend and the
layer matrices all read this one pattern: rows are outputs, entries the input
samples each output reads through the boundary map, with the flat index of the
weight they are multiplied by.  Sizes and memory estimates come first, so a
refusal costs nothing.
"""

from __future__ import annotations

import math

import numpy as np

from ._geometry import Channels, Geometry, index_dtype
from ._validation import check_memory

__all__ = ["Pattern", "pattern", "pattern_bound", "pattern_nbytes", "check_pattern_memory"]


class Pattern:
    """Sparse pattern of a correlation matrix (or of some of its rows) in CSR order.

    Row ``r`` holds the entries ``indptr[r]:indptr[r+1]``; entry ``e`` reads input
    sample ``indices[e]`` with weight ``taps[e]`` (flat C-order index into the
    weight array ``(C_out, C_in // groups, *kernel)``, or the kernel for a single
    channel).  ``canonical`` is True when every row's indices are strictly
    increasing (nothing to fold); otherwise entries that read the same input
    sample must be summed (:meth:`folded`, or scipy's ``sum_duplicates``).

    Entries are laid out in C order over the grid
    ``(C_out, *output, C_in // groups, selected_tap)`` (or ``(rows, C_in //
    groups, selected_tap)`` for a subset of rows) with the out-of-range (zero
    boundary) ones removed, so per-entry values are a broadcast of per-weight
    values through that mask (see :meth:`values`).
    """

    def __init__(self, indptr, indices, weight_index, weight_shape, grid_shape, mask,
                 canonical, row_channels=None):
        self.indptr = indptr
        self.indices = indices
        self.canonical = canonical
        self._weight_index = weight_index  # (C_out, C_in/g, T): flat weight index
        self._weight_shape = weight_shape  # where the weights sit on the grid
        self._grid_shape = grid_shape
        self._mask = mask
        self._row_channels = row_channels  # output channel of each row (a subset)

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def values(self, weight_values) -> np.ndarray:
        """Per-entry values from ``weight_values`` of shape ``(C_out, C_in // groups, T)``
        (``(T,)`` for a single channel): one value per selected tap, any dtype."""
        weights = np.reshape(weight_values, self._weight_index.shape)
        if self._row_channels is not None:
            weights = weights[self._row_channels]
        grid = np.broadcast_to(weights.reshape(self._weight_shape), self._grid_shape)
        return grid[self._mask] if self._mask is not None else grid.flatten()

    @property
    def taps(self) -> np.ndarray:
        """Flat weight index of every entry."""
        return self.values(self._weight_index.astype(self.indices.dtype))

    def rows(self) -> np.ndarray:
        """Row index of every entry (the COO form)."""
        counts = np.diff(self.indptr)
        return np.repeat(np.arange(len(counts), dtype=self.indices.dtype), counts)

    def folded(self, values: np.ndarray):
        """``(rows, cols, values)`` with the entries that share a position summed, for values
        of any dtype (sympy objects included); numbers can use scipy's ``sum_duplicates``.
        """
        rows, cols = self.rows(), self.indices
        if self.canonical:
            return rows, cols, values
        order = np.lexsort((cols, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(rows) != 0) | (np.diff(cols) != 0)])
        return rows[starts], cols[starts], np.add.reduceat(values, starts)


def pattern_bound(geometry: Geometry, ntaps: int | None = None) -> int:
    """Upper bound on the stored entries with `ntaps` spatial taps (all by default)."""
    ntaps = int(np.prod(geometry.kernel_shape)) if ntaps is None else ntaps
    ch = geometry.channels or Channels(1, 1)
    return geometry.output_size * ch.in_per_group * ntaps


def _index_dtype(geometry: Geometry, ntaps: int) -> type:
    ch = geometry.channels or Channels(1, 1)
    return index_dtype(geometry.input_size, geometry.output_size, pattern_bound(geometry, ntaps),
                       ch.out_channels * ch.in_per_group * int(np.prod(geometry.kernel_shape)))


def pattern_nbytes(geometry: Geometry, ntaps: int | None = None, itemsize: int = 8) -> int:
    """Estimated peak bytes of building the sparse matrix (pattern and values).

    Broadcast columns and the validity mask, then the compressed copies and
    the values, plus the row pointer: computed from sizes alone, so a
    refusal costs nothing.
    """
    ntaps = int(np.prod(geometry.kernel_shape)) if ntaps is None else ntaps
    bound = pattern_bound(geometry, ntaps)
    isize = np.dtype(_index_dtype(geometry, ntaps)).itemsize
    return bound * (3 * isize + itemsize + 1) + (geometry.output_size + 1) * isize


def check_pattern_memory(geometry: Geometry, ntaps: int | None = None, itemsize: int = 8,
                         what: str = "the sparse matrix") -> None:
    """MemoryError (before allocating) when the sparse matrix cannot fit in memory."""
    check_memory(pattern_nbytes(geometry, ntaps, itemsize), what)


def pattern(geometry: Geometry, taps: np.ndarray | None = None, *, rows=None,
            itemsize: int = 8, what: str = "the sparse matrix") -> Pattern:
    """The CSR pattern of the correlation matrix, built in O(nnz) with index arithmetic.

    Parameters
    ----------
    taps : array of int, optional
        Sorted flat (C-order) spatial kernel indices to include; all by
        default.  Leaving out taps whose weights are all zero keeps exact
        zeros out of the matrix.
    rows : array of int, optional
        Flat output indices: the pattern of those rows only (in that order),
        costing O(len(rows) * entries per row) whatever the matrix size.
    itemsize : int
        Bytes per stored value, for the memory check.
    what : str
        What is being built, for the memory error message.
    """
    ntaps_total = int(np.prod(geometry.kernel_shape))
    taps = np.arange(ntaps_total) if taps is None else np.asarray(taps, dtype=np.intp)
    n_taps = len(taps)
    ch = geometry.channels or Channels(1, 1)
    c_out, c_in_g = ch.out_channels, ch.in_per_group
    spatial_in = int(np.prod(geometry.spatial_input_shape))
    idx = _index_dtype(geometry, n_taps)
    # Grid (*rows, C_in // groups, tap) in C order, rows being (C_out, *output) for the
    # whole matrix: rows ascending and, for sorted taps, columns ascending within each
    # row (channel-major).  Each row coordinate is (values, grid axis).
    if rows is None:
        check_pattern_memory(geometry, n_taps, itemsize, what)
        row_shape = (c_out,) + geometry.spatial_output_shape
        coordinates = [(None, axis) for axis in range(len(row_shape))]  # None: all
        row_channels = None
    else:
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        row_shape = (len(rows),)
        index = np.unravel_index(rows, (c_out,) + geometry.spatial_output_shape)
        coordinates = [(i, 0) for i in index]
        row_channels = index[0]
    cin_axis, tap_axis = len(row_shape), len(row_shape) + 1
    grid_shape = row_shape + (c_in_g, n_taps)

    def on_axes(array, axes):  # place `array` on those grid axes, 1 elsewhere
        shape = [1] * len(grid_shape)
        for axis, size in zip(axes, array.shape):
            shape[axis] = size
        return array.reshape(shape)

    tap_coords = np.unravel_index(taps, geometry.kernel_shape)
    in_strides = np.cumprod((1,) + geometry.spatial_input_shape[:0:-1])[::-1]
    channel, channel_axis = coordinates[0]
    channel = np.arange(c_out) if channel is None else channel
    first_channel = (channel // ch.out_per_group)[:, None] * c_in_g + np.arange(c_in_g)
    columns = on_axes((first_channel * spatial_in).astype(idx), (channel_axis, cin_axis))
    valid = []
    for axis, (ax, stride_in) in enumerate(zip(geometry.axes, in_strides)):
        outputs, row_axis = coordinates[axis + 1]
        cols = ax.columns(geometry.boundary, outputs)[:, tap_coords[axis]]
        columns = columns + on_axes((cols * stride_in).astype(idx, copy=False),
                                    (row_axis, tap_axis))
        if geometry.boundary == "zero":
            valid.append((cols >= 0, row_axis))
    if columns.shape != grid_shape:  # only when every output size is 1
        columns = np.broadcast_to(columns, grid_shape).copy()
    weight_index = np.arange(c_out * c_in_g).reshape(c_out, c_in_g, 1) * ntaps_total + taps
    weight_shape = (on_axes(weight_index, (channel_axis, cin_axis, tap_axis)).shape
                    if rows is None else grid_shape)
    n_rows = math.prod(row_shape)
    if not valid or all(ok.all() for ok, _ in valid):
        indices = columns.reshape(-1)
        indptr = np.arange(n_rows + 1, dtype=idx) * (c_in_g * n_taps)
        mask = None
    else:
        mask = np.ones(grid_shape, dtype=bool)
        for ok, row_axis in valid:
            mask &= on_axes(ok, (row_axis, tap_axis))
        indices = columns[mask]
        # entries per row = C_in/g * sum over taps of the per-axis validity product
        operands = [x for ok, row_axis in valid for x in (ok.astype(float), [row_axis, tap_axis])]
        counts = np.einsum(*operands, sorted({a for _, a in valid}), optimize=True) * c_in_g
        counts = np.broadcast_to(np.rint(counts).astype(idx), row_shape)
        indptr = np.zeros(n_rows + 1, dtype=idx)
        np.cumsum(counts.reshape(-1), out=indptr[1:])
    return Pattern(indptr, indices, weight_index, weight_shape, grid_shape, mask,
                   _rows_strictly_increasing(geometry, tap_coords,
                                             [outputs for outputs, _ in coordinates[1:]]),
                   row_channels)


def _rows_strictly_increasing(geometry: Geometry, tap_coords, outputs) -> bool:
    """True when, on every axis, each output (of `outputs` per axis; None: all) reads
    strictly increasing inputs.

    Then the N-D rows (channels, then taps in C order) are sorted with no
    duplicates.
    """
    if geometry.boundary == "zero":  # columns are positions - lo: increasing
        return True
    for axis, ax in enumerate(geometry.axes):
        cols = ax.columns(geometry.boundary, outputs[axis])[:, np.unique(tap_coords[axis])]
        if cols.shape[1] > 1 and not np.all(np.diff(cols, axis=1) > 0):
            return False
    return True
