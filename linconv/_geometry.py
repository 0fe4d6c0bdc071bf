"""The one convolution geometry: all pad / stride / dilation arithmetic lives here.

Every padded, strided, dilated correlation factors as

    A = S_stride . C_valid(w, dilation) . P_pad,boundary

per axis, with input length ``n``, kernel length ``k``, dilation ``d``,
stride ``s`` and padding ``(lo, hi)``::

    span  = d*(k-1) + 1
    y[i]  = sum_j w[j] * xp[i*s + j*d]          i = 0 .. n_out-1
    n_out = (n + lo + hi - span) // s + 1

where ``xp`` is ``x`` extended by the boundary rule.  The geometry holds sizes
only (frozen, hashable); backends read from it the boundary index map
(``P``), the tap positions, and the sparse pattern ``(indptr, indices, taps)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import numpy as np

from ._validation import (
    as_boundary,
    as_int_tuple,
    as_padding,
    as_shape,
    check_memory,
)

__all__ = ["AxisGeometry", "Geometry", "Pattern", "index_dtype"]

_INT32_MAX = np.iinfo(np.int32).max
_NUMPY_PAD = {"zero": "constant", "wrap": "wrap", "reflect": "reflect",
              "symmetric": "symmetric", "edge": "edge"}


def index_dtype(*sizes: int) -> type:
    """Smallest index dtype scipy.sparse accepts for arrays of these sizes."""
    return np.int32 if max(sizes) <= _INT32_MAX else np.int64


@dataclass(frozen=True)
class AxisGeometry:
    """One axis of a correlation: sizes, stride, dilation and padding."""

    n: int
    k: int
    stride: int = 1
    dilation: int = 1
    lo: int = 0
    hi: int = 0

    @property
    def span(self) -> int:
        """Extent of the dilated kernel, ``d*(k-1) + 1``."""
        return self.dilation * (self.k - 1) + 1

    @property
    def padded_length(self) -> int:
        return self.n + self.lo + self.hi

    @property
    def n_out(self) -> int:
        return (self.padded_length - self.span) // self.stride + 1

    @property
    def sampled_length(self) -> int:
        """Stride-1 correlation outputs up to the last one the stride keeps."""
        return (self.n_out - 1) * self.stride + 1

    def extension_map(self, boundary: str) -> np.ndarray:
        """Input index of every padded sample (``-1`` where the zero boundary puts 0).

        Equals ``np.pad(np.arange(n), (lo, hi), mode)`` (with a ``-1`` fill for
        "zero"), pads wider than ``n`` included.
        """
        n = self.n
        p = np.arange(-self.lo, n + self.hi)
        if boundary == "zero":
            return np.where((p >= 0) & (p < n), p, -1)
        if boundary == "edge":
            return np.clip(p, 0, n - 1)
        if boundary == "wrap":
            return p % n
        if boundary == "symmetric":  # period 2n: abcd|dcba
            m = p % (2 * n)
            return np.where(m < n, m, 2 * n - 1 - m)
        if boundary == "reflect":  # period 2n-2: abcd|cb
            if n == 1:
                return np.zeros_like(p)
            m = p % (2 * n - 2)
            return np.where(m < n, m, 2 * n - 2 - m)
        raise ValueError(f"unknown boundary {boundary!r}")

    def tap_positions(self) -> np.ndarray:
        """Padded-signal position ``i*s + j*d`` of tap ``j`` for output ``i``; shape (n_out, k)."""
        i = np.arange(self.n_out)[:, None]
        j = np.arange(self.k)[None, :]
        return i * self.stride + j * self.dilation

    def columns(self, boundary: str) -> np.ndarray:
        """Input index read by tap ``j`` for output ``i`` (``-1``: zero); shape (n_out, k)."""
        return self.extension_map(boundary)[self.tap_positions()]


class Pattern:
    """Sparse pattern of a correlation matrix in CSR order.

    Row ``r`` holds the entries ``indptr[r]:indptr[r+1]``; entry ``e`` reads input
    sample ``indices[e]`` with kernel tap ``taps[e]`` (flat C-order index into the
    correlation kernel).  ``canonical`` is True when every row's indices are
    strictly increasing (nothing to fold); otherwise entries that read the same
    input sample must be summed.

    Entries are laid out in C order over ``(*output_index, selected_tap)`` with
    the out-of-range (zero boundary) ones removed, so per-entry values are a
    broadcast of the per-tap values through that mask (see :meth:`values`).
    """

    def __init__(self, indptr, indices, selected_taps, grid_shape, mask, canonical):
        self.indptr = indptr
        self.indices = indices
        self.canonical = canonical
        self._selected = selected_taps
        self._grid_shape = grid_shape
        self._mask = mask

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def values(self, tap_values) -> np.ndarray:
        """Per-entry values from one value per selected tap (any dtype, object too)."""
        grid = np.broadcast_to(np.asarray(tap_values), self._grid_shape)
        return grid[self._mask] if self._mask is not None else grid.flatten()

    @property
    def taps(self) -> np.ndarray:
        """Flat kernel index of every entry."""
        return self.values(self._selected.astype(self.indices.dtype))

    def rows(self) -> np.ndarray:
        """Row index of every entry (the COO form)."""
        counts = np.diff(self.indptr)
        return np.repeat(np.arange(len(counts), dtype=self.indices.dtype), counts)


@dataclass(frozen=True)
class Geometry:
    """An N-D correlation geometry: one :class:`AxisGeometry` per axis and a boundary."""

    axes: tuple[AxisGeometry, ...]
    boundary: str = "zero"

    @classmethod
    def from_args(cls, kernel_shape, input_shape, mode="full", boundary="zero",
                  stride=1, dilation=1) -> "Geometry":
        """Validate the public arguments and build the geometry.

        `mode` is "full", "same", "valid", or explicit padding (see
        :func:`linconv.convolution_matrix`).
        """
        input_shape = as_shape(input_shape)
        kernel_shape = tuple(kernel_shape)
        ndim = len(input_shape)
        if len(kernel_shape) != ndim:
            raise ValueError(
                f"`kernel` must have one axis per input axis ({ndim}); got a kernel of "
                f"shape {kernel_shape} for `input_shape` {input_shape}"
            )
        boundary = as_boundary(boundary)
        strides = as_int_tuple(stride, ndim, "stride")
        dilations = as_int_tuple(dilation, ndim, "dilation")
        spans = [d * (k - 1) + 1 for k, d in zip(kernel_shape, dilations)]
        if isinstance(mode, str):
            if mode == "valid":
                pads = [(0, 0)] * ndim
            elif mode == "full":
                pads = [(span - 1, span - 1) for span in spans]
            elif mode == "same":
                pads = [(span // 2, (span - 1) // 2) for span in spans]
            else:
                raise ValueError(
                    f"`mode` must be 'full', 'same', 'valid' or explicit padding; got {mode!r}"
                )
        else:
            pads = as_padding(mode, ndim)
        geometry = cls(
            tuple(AxisGeometry(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi)
                  in zip(input_shape, kernel_shape, strides, dilations, pads)),
            boundary,
        )
        for axis, ax in enumerate(geometry.axes):
            if ax.n_out < 1:
                raise ValueError(
                    f"the output would be empty along axis {axis}: the padded input "
                    f"(length {ax.n} + {ax.lo} + {ax.hi}) is shorter than the dilated kernel "
                    f"(span {ax.span}); use mode='full' or 'same', or more padding "
                    f"(got `mode`={mode!r})"
                )
        return geometry

    # -- sizes ---------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(ax.n for ax in self.axes)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(ax.k for ax in self.axes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(ax.n_out for ax in self.axes)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(ax.padded_length for ax in self.axes)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        return tuple((ax.lo, ax.hi) for ax in self.axes)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(ax.stride for ax in self.axes)

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(ax.dilation for ax in self.axes)

    # -- the sparse pattern -------------------------------------------------
    def pattern_bound(self, ntaps: int | None = None) -> int:
        """Upper bound on the stored entries with `ntaps` kernel taps (all by default)."""
        ntaps = int(np.prod(self.kernel_shape)) if ntaps is None else ntaps
        return self.output_size * ntaps

    def pattern(self, taps: np.ndarray | None = None, *, itemsize: int = 8,
                what: str = "the sparse matrix") -> Pattern:
        """The CSR pattern of the correlation matrix, built in O(nnz) with index arithmetic.

        Parameters
        ----------
        taps : array of int, optional
            Sorted flat (C-order) kernel indices to include; all taps by default.
            Leaving out zero taps keeps exact zeros out of the matrix.
        itemsize : int
            Bytes per stored value, for the memory check.
        what : str
            What is being built, for the memory error message.
        """
        ntaps_total = int(np.prod(self.kernel_shape))
        taps = np.arange(ntaps_total) if taps is None else np.asarray(taps, dtype=np.intp)
        n_taps = len(taps)
        bound = self.pattern_bound(n_taps)
        idx = index_dtype(self.input_size, self.output_size, bound, ntaps_total)
        isize = np.dtype(idx).itemsize
        # peak: broadcast columns + taps + mask, then the compressed copies and values
        check_memory(bound * (4 * isize + itemsize + 1), what)

        tap_coords = np.unravel_index(taps, self.kernel_shape)
        in_strides = np.cumprod((1,) + self.input_shape[:0:-1])[::-1]
        ndim = self.ndim
        # Entries in C order over (i_0, ..., i_{N-1}, t): rows ascending and, for
        # sorted taps, columns ascending within each row.
        full_shape = self.output_shape + (n_taps,)
        columns = valid = None
        for axis, (ax, stride_in) in enumerate(zip(self.axes, in_strides)):
            shape = [1] * (ndim + 1)
            shape[axis], shape[ndim] = ax.n_out, n_taps
            cols = ax.columns(self.boundary)[:, tap_coords[axis]]
            term = (cols * stride_in).astype(idx, copy=False).reshape(shape)
            columns = term if columns is None else columns + term
            if self.boundary == "zero":
                valid = (valid or []) + [(cols >= 0).reshape(shape)]
        if columns.shape != full_shape:  # only when every output size is 1
            columns = np.broadcast_to(columns, full_shape).copy()
        n_rows = self.output_size
        if valid is None or all(v.all() for v in valid):
            indices = columns.reshape(-1)
            indptr = np.arange(n_rows + 1, dtype=idx) * n_taps
            mask = None
        else:
            mask = np.ones(full_shape, dtype=bool)
            for ok in valid:
                mask &= ok
            indices = columns[mask]
            # entries per output = sum over taps of the product of per-axis validity
            operands = [x for axis, ok in enumerate(valid)
                        for x in (ok.reshape(ok.shape[axis], n_taps).astype(float), [axis, ndim])]
            counts = np.einsum(*operands, list(range(ndim)), optimize=True)
            indptr = np.zeros(n_rows + 1, dtype=idx)
            np.cumsum(np.rint(counts).astype(idx).reshape(-1), out=indptr[1:])
        return Pattern(indptr, indices, taps, full_shape, mask,
                       self._rows_strictly_increasing(tap_coords))

    def _rows_strictly_increasing(self, tap_coords) -> bool:
        """True when, on every axis, each output reads strictly increasing inputs.

        Then the N-D rows (taps in C order) are sorted with no duplicates.
        """
        if self.boundary == "zero":  # columns are positions - lo: increasing
            return True
        for axis, ax in enumerate(self.axes):
            cols = ax.columns(self.boundary)[:, np.unique(tap_coords[axis])]
            if cols.shape[1] > 1 and not np.all(np.diff(cols, axis=1) > 0):
                return False
        return True

    # -- the factors S, C, P applied to batches (B, *shape) -------------------
    def _slices(self, which) -> tuple:
        return (slice(None),) + tuple(which(ax) for ax in self.axes)

    def extend(self, x: np.ndarray) -> np.ndarray:
        """``P``: extend a batch ``(B, *input_shape)`` to ``(B, *padded_shape)``.

        numpy.pad is the definition of the boundary rules (and one copy).
        """
        return np.pad(x, ((0, 0),) + self.pads, mode=_NUMPY_PAD[self.boundary])

    def extend_adjoint(self, xp: np.ndarray, axes=None) -> np.ndarray:
        """``P^T``: fold a padded batch back onto the input, adding folded samples.

        ``P`` extends one axis after the other, so ``P^T`` folds them one by one
        (only `axes`, 0-based spatial axes, if given), in place: `xp` is
        overwritten and the result is a view into it.
        """
        out = xp
        for axis in range(self.ndim) if axes is None else axes:
            ax = self.axes[axis]
            moved = np.moveaxis(out, axis + 1, 0)
            inside = moved[ax.lo:ax.lo + ax.n]
            if self.boundary != "zero" and (ax.lo or ax.hi):
                outside = np.r_[0:ax.lo, ax.lo + ax.n:ax.padded_length]
                np.add.at(inside, ax.extension_map(self.boundary)[outside], moved[outside])
            out = np.moveaxis(inside, 0, axis + 1)
        return out

    def padded_windows(self):
        """Cut the padded domain into the input's window and the frame slabs, for ``P^T``.

        Yields ``(axis, starts, shape, targets)``: the window's first padded index
        and size per axis, and, for a frame slab, the spatial `axis` whose padding
        it covers and the input indices its samples fold onto along it (None for
        the input's window).  Slab ``a`` spans the input's window on axes before
        ``a`` and the whole padded range on axes after it, so after folding those
        later axes (``extend_adjoint(slab, axes=...)``) every padded sample is
        folded exactly once.
        """
        yield None, tuple(ax.lo for ax in self.axes), self.input_shape, None
        if self.boundary == "zero":
            return
        for a, ax in enumerate(self.axes):
            for start, stop in ((0, ax.lo), (ax.lo + ax.n, ax.padded_length)):
                if stop > start:
                    starts = [b.lo for b in self.axes[:a]] + [start] + [0] * (self.ndim - a - 1)
                    shape = list(self.input_shape[:a]) + [stop - start] + list(
                        self.padded_shape[a + 1:])
                    yield a, tuple(starts), tuple(shape), \
                        ax.extension_map(self.boundary)[start:stop]

    def full_correlation_leads(self, starts) -> list[int]:
        """Leads of ``C^H`` (full correlation, flipped kernel) for a padded window at `starts`."""
        return [ax.span - 1 - start for ax, start in zip(self.axes, starts)]

    def subsample(self, y1: np.ndarray) -> np.ndarray:
        """``S``: keep every stride-th stride-1 output (``y1`` from position 0)."""
        return y1[self._slices(lambda ax: slice(0, ax.sampled_length, ax.stride))]

    def upsample(self, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``S^T``: zero-insert a batch ``(B, *output_shape)`` into ``(B, *shape)``."""
        z = np.zeros((len(y),) + tuple(shape), dtype=y.dtype)
        z[self._slices(lambda ax: slice(0, ax.sampled_length, ax.stride))] = y
        return z

    def dilate(self, weights: np.ndarray) -> np.ndarray:
        """The kernel with ``dilation - 1`` zeros inserted between taps."""
        if all(ax.dilation == 1 for ax in self.axes):
            return weights
        out = np.zeros(tuple(ax.span for ax in self.axes), dtype=weights.dtype)
        out[tuple(slice(None, None, ax.dilation) for ax in self.axes)] = weights
        return out

    def circular_kernel(self, weights: np.ndarray, shape: tuple[int, ...],
                        offsets: tuple[int, ...]) -> np.ndarray:
        """The dilated kernel placed for circular convolution (see :func:`place_circular`)."""
        return place_circular(self.dilate(weights), shape, offsets)


def place_circular(kernel: np.ndarray, shape: tuple[int, ...], offsets) -> np.ndarray:
    """Kernel ``g`` of size ``shape`` with ``g[(offset - m) mod M] = kernel[m]`` per axis.

    Circular convolution with ``g`` of an input placed at position 0 gives
    ``y[i] = sum_m kernel[m] * x[i + m - offset]``: a correlation with the
    padding offset folded into the kernel, exact wherever no index wraps.
    """
    g = np.zeros(shape, dtype=kernel.dtype)
    g[tuple(slice(0, k) for k in kernel.shape)] = np.flip(kernel)
    return np.roll(g, [off - (k - 1) for k, off in zip(kernel.shape, offsets)],
                   axis=tuple(range(kernel.ndim)))


def align_leads(x: np.ndarray, leads, spans, out_shape,
                zero_lead: bool = False) -> tuple[np.ndarray, list[int]]:
    """Zero-pad or crop a batch so each axis has ``0 <= lead <= span - 1`` (``lead == 0``
    with `zero_lead`) and room for ``out_shape`` outputs of
    ``y[i] = sum_m w[m] * x[i + m - lead]``; samples never read are cropped.

    Exact for zero extension only: the samples cropped are never read, the ones
    added are zeros.
    """
    pads, crops, new_leads = [(0, 0)], [slice(None)], []
    for axis, (lead, span, n_out) in enumerate(zip(leads, spans, out_shape), start=1):
        front = -min(lead, 0)  # lead < 0: the first -lead samples are never read
        pad_lo = max(lead if zero_lead else lead - (span - 1), 0)
        # nor those past the last output's reach (keep n_out if there, sparing a pad)
        stop = min(x.shape[axis], max(n_out + span - 1 - lead, front + n_out))
        lead = lead + front - pad_lo
        length = max(stop - front, 0) + pad_lo
        pads.append((pad_lo, max(n_out - length, 0)))
        crops.append(slice(front, max(stop, front)))
        new_leads.append(lead)
    x = x[tuple(crops)]
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, pads)
    return x, new_leads
