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
(``P``) and the tap positions; the sparse pattern ``(indptr, indices, taps)``
built from them lives in :mod:`linconv._pattern`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import (
    as_boundary,
    as_int_tuple,
    as_padding,
    as_shape,
)

__all__ = ["AxisGeometry", "Channels", "Geometry", "index_dtype"]

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
    limit: int | None = None  # cap on the outputs (a transposed conv's input size)

    @property
    def span(self) -> int:
        """Extent of the dilated kernel, ``d*(k-1) + 1``."""
        return self.dilation * (self.k - 1) + 1

    @property
    def padded_length(self) -> int:
        return self.n + self.lo + self.hi

    @property
    def n_out(self) -> int:
        natural = (self.padded_length - self.span) // self.stride + 1
        return natural if self.limit is None else min(natural, self.limit)

    @property
    def sampled_length(self) -> int:
        """Stride-1 correlation outputs up to the last one the stride keeps."""
        return (self.n_out - 1) * self.stride + 1

    def extension_map(self, boundary: str) -> np.ndarray:
        """Input index of every padded sample (``-1`` where the zero boundary puts 0).

        Equals ``np.pad(np.arange(n), (lo, hi), mode)`` (with a ``-1`` fill for
        "zero"), pads wider than ``n`` included.
        """
        return self.extension_index(np.arange(self.padded_length), boundary)

    def extension_index(self, positions: np.ndarray, boundary: str) -> np.ndarray:
        """:meth:`extension_map` at the given padded `positions` only (sized by what is read)."""
        n = self.n
        p = np.asarray(positions, dtype=np.int64) - self.lo
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
        i = np.arange(self.n_out, dtype=np.int64)[:, None]
        j = np.arange(self.k, dtype=np.int64)[None, :]
        return i * self.stride + j * self.dilation

    def columns(self, boundary: str) -> np.ndarray:
        """Input index read by tap ``j`` for output ``i`` (``-1``: zero); shape (n_out, k)."""
        return self.extension_index(self.tap_positions(), boundary)


@dataclass(frozen=True)
class Channels:
    """Channel structure of a multi-channel correlation (PyTorch's conv layout)."""

    in_channels: int
    out_channels: int
    groups: int = 1

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups


@dataclass(frozen=True)
class Geometry:
    """An N-D correlation geometry: one :class:`AxisGeometry` per axis, a boundary,
    and (for multi-channel layers) the :class:`Channels`.

    With channels, arrays are ``(C, *spatial)`` and the matrix is
    block-Toeplitz: block ``(o, c)`` is the single-channel matrix of
    ``weight[o, c % (C_in // groups)]`` when ``c`` is in ``o``'s group, else 0.
    """

    axes: tuple[AxisGeometry, ...]
    boundary: str = "zero"
    channels: Channels | None = None

    @classmethod
    def from_args(cls, kernel_shape, input_shape, mode="full", boundary="zero",
                  stride=1, dilation=1, *, channels: Channels | None = None,
                  same_anchor: str = "scipy", name: str = "mode") -> "Geometry":
        """Validate the public arguments and build the geometry.

        `kernel_shape` and `input_shape` are spatial.  `mode` is "full", "same",
        "valid", or explicit padding (see :func:`linconv.convolution_matrix`).
        "same" pads ``(span // 2, (span - 1) // 2)`` (scipy's anchor) or, with
        ``same_anchor="torch"``, ``((span - 1) // 2, span // 2)``.  `name` is the
        caller's word for the padding argument (``"mode"`` for signals,
        ``"padding"`` for layers), used in error messages.
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
                if same_anchor == "torch":
                    pads = [(hi, lo) for lo, hi in pads]
            else:
                raise ValueError(
                    f"`mode` must be 'full', 'same', 'valid' or explicit padding; got {mode!r}"
                )
        else:
            pads = as_padding(mode, ndim, name)
        geometry = cls(
            tuple(AxisGeometry(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi)
                  in zip(input_shape, kernel_shape, strides, dilations, pads)),
            boundary, channels,
        )
        advice = ("use mode='full' or 'same', or more padding" if name == "mode" else
                  "use padding='same' or more `padding`, or a smaller kernel or dilation")
        for axis, ax in enumerate(geometry.axes):
            if ax.n_out < 1:
                raise ValueError(
                    f"the output would be empty along axis {axis}: the padded input "
                    f"(length {ax.n} + {ax.lo} + {ax.hi}) is shorter than the dilated kernel "
                    f"(span {ax.span}); {advice} (got `{name}`={mode!r})"
                )
        return geometry

    @staticmethod
    def tensorflow_same_pads(kernel_shape, input_shape, strides, dilations):
        """TensorFlow/Keras ``padding="SAME"``: ``ceil(n / s)`` outputs per axis, the total
        padding ``max((n_out - 1) * s + span - n, 0)`` split with the odd sample at the end."""
        pads = []
        for k, n, s, d in zip(kernel_shape, input_shape, strides, dilations):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)

    @classmethod
    def from_output(cls, kernel_shape, output_shape, mode="same", boundary="zero",
                    name: str = "y") -> "Geometry":
        """The stride-1 geometry whose output has `output_shape` (for inverse problems)."""
        output_shape = as_shape(output_shape, name)
        kernel_shape = tuple(kernel_shape)
        if len(kernel_shape) != len(output_shape):
            raise ValueError(f"`kernel` must have one axis per axis of `{name}` "
                             f"({len(output_shape)}); got kernel shape {kernel_shape}")
        probe = cls.from_args(kernel_shape, kernel_shape, mode, boundary)  # pads only
        sizes = tuple(m - lo - hi + k - 1 for m, k, (lo, hi)
                      in zip(output_shape, kernel_shape, probe.pads))
        if mode == "same":
            sizes = output_shape
        if any(n < 1 for n in sizes):
            raise ValueError(f"no input gives an output of shape {output_shape} with "
                             f"`mode`={mode!r} and a kernel of shape {kernel_shape}")
        return cls.from_args(kernel_shape, sizes, mode, boundary)

    @classmethod
    def transposed(cls, kernel_shape, input_shape, strides, dilations, pads, output_padding,
                   channels: Channels) -> "Geometry":
        """The convolution that a transposed convolution transposes.

        A transposed convolution maps ``n`` samples to
        ``(n - 1) * s - lo - hi + span + output_padding``; the convolution of that
        many samples with the same stride, dilation and padding has at least ``n``
        outputs, capped at ``n`` (more only when ``output_padding >= stride``).
        """
        axes = []
        for axis, (n, k, s, d, (lo, hi), extra) in enumerate(
                zip(input_shape, kernel_shape, strides, dilations, pads, output_padding)):
            size = (n - 1) * s - lo - hi + d * (k - 1) + 1 + extra
            if size < 1:
                raise ValueError(f"the output of conv_transpose would be empty along axis "
                                 f"{axis} (size {size}); reduce `padding`")
            axes.append(AxisGeometry(size, k, s, d, lo, hi, limit=n))
        return cls(tuple(axes), "zero", channels)

    # -- sizes ---------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.axes)

    @property
    def spatial_input_shape(self) -> tuple[int, ...]:
        return tuple(ax.n for ax in self.axes)

    @property
    def spatial_output_shape(self) -> tuple[int, ...]:
        return tuple(ax.n_out for ax in self.axes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: ``(C_in, *spatial)`` with channels, else spatial."""
        lead = (self.channels.in_channels,) if self.channels else ()
        return lead + self.spatial_input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        lead = (self.channels.out_channels,) if self.channels else ()
        return lead + self.spatial_output_shape

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(ax.k for ax in self.axes)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(C_out, C_in // groups, *kernel)``; ``(1, 1, *kernel)`` for a single channel."""
        ch = self.channels or Channels(1, 1)
        return (ch.out_channels, ch.in_per_group) + self.kernel_shape

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(ax.padded_length for ax in self.axes)

    @property
    def sampled_shape(self) -> tuple[int, ...]:
        return tuple(ax.sampled_length for ax in self.axes)

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_size(self) -> int:
        return math.prod(self.output_shape)

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        return tuple((ax.lo, ax.hi) for ax in self.axes)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(ax.stride for ax in self.axes)

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(ax.dilation for ax in self.axes)

    @property
    def pads_within_span(self) -> bool:
        """Padding inside the kernel's reach and outputs inside the input, on every axis:
        a filter that extends its input itself (scipy.ndimage) needs no padded copy."""
        return all(0 <= ax.lo <= ax.span - 1 and ax.sampled_length <= ax.n for ax in self.axes)

    def active_taps(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(per_tap, taps)``: the weights as ``(C_out, C_in // groups, kernel taps)`` and the
        flat spatial taps where any channel's weight is non-zero."""
        per_tap = weights.reshape(self.weight_shape[:2] + (-1,))
        return per_tap, np.flatnonzero(np.any(per_tap != 0, axis=(0, 1)))

    # -- the factors S, C, P applied to arrays (..., *spatial) ---------------
    def _slices(self, which) -> tuple:
        return (Ellipsis,) + tuple(which(ax) for ax in self.axes)

    def extend(self, x: np.ndarray) -> np.ndarray:
        """``P``: extend the trailing spatial axes of `x` by the boundary rule.

        numpy.pad is the definition of the boundary rules (and one copy).
        """
        if self.boundary in ("reflect", "symmetric") and any(
                max(ax.lo, ax.hi) >= ax.n - 1 for ax in self.axes):
            # several reflections: numpy < 2.1 pads these wrongly (numpy#25926), so
            # gather with the geometry's own index map (the same rule, any numpy)
            for axis, ax in enumerate(self.axes):
                x = np.take(x, ax.extension_map(self.boundary), axis=axis - self.ndim)
            return x
        pads = ((0, 0),) * (x.ndim - self.ndim) + self.pads
        return np.pad(x, pads, mode=_NUMPY_PAD[self.boundary])

    def extend_adjoint(self, xp: np.ndarray, axes=None) -> np.ndarray:
        """``P^T``: fold padded trailing axes back onto the input, adding folded samples.

        ``P`` extends one axis after the other, so ``P^T`` folds them one by one
        (only `axes`, 0-based spatial axes, if given), in place: `xp` is
        overwritten and the result is a view into it.
        """
        out = xp
        for axis in range(self.ndim) if axes is None else axes:
            ax = self.axes[axis]
            moved = np.moveaxis(out, axis - self.ndim, 0)
            inside = moved[ax.lo:ax.lo + ax.n]
            if self.boundary != "zero" and (ax.lo or ax.hi):
                outside = np.r_[0:ax.lo, ax.lo + ax.n:ax.padded_length]
                np.add.at(inside, ax.extension_index(outside, self.boundary), moved[outside])
            out = np.moveaxis(inside, 0, axis - self.ndim)
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
        yield None, tuple(ax.lo for ax in self.axes), self.spatial_input_shape, None
        if self.boundary == "zero":
            return
        for a, ax in enumerate(self.axes):
            for start, stop in ((0, ax.lo), (ax.lo + ax.n, ax.padded_length)):
                if stop > start:
                    starts = [b.lo for b in self.axes[:a]] + [start] + [0] * (self.ndim - a - 1)
                    shape = list(self.spatial_input_shape[:a]) + [stop - start] + list(
                        self.padded_shape[a + 1:])
                    yield a, tuple(starts), tuple(shape), \
                        ax.extension_index(np.arange(start, stop), self.boundary)

    def full_correlation_leads(self, starts) -> list[int]:
        """Leads of ``C^H`` (full correlation, flipped kernel) for a padded window at `starts`."""
        return [ax.span - 1 - start for ax, start in zip(self.axes, starts)]

    def subsample(self, y1: np.ndarray) -> np.ndarray:
        """``S``: keep every stride-th stride-1 output (``y1`` from position 0)."""
        return y1[self._slices(lambda ax: slice(0, ax.sampled_length, ax.stride))]

    def upsample(self, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``S^T``: zero-insert the trailing ``output`` axes of `y` into `shape`."""
        z = np.zeros(y.shape[:y.ndim - self.ndim] + tuple(shape), dtype=y.dtype)
        z[self._slices(lambda ax: slice(0, ax.sampled_length, ax.stride))] = y
        return z

    def dilate(self, weights: np.ndarray) -> np.ndarray:
        """The kernel (trailing axes of `weights`) with ``dilation - 1`` zeros between taps."""
        if all(ax.dilation == 1 for ax in self.axes):
            return weights
        lead = weights.shape[:weights.ndim - self.ndim]
        out = np.zeros(lead + tuple(ax.span for ax in self.axes), dtype=weights.dtype)
        out[self._slices(lambda ax: slice(None, None, ax.dilation))] = weights
        return out

    def circular_kernel(self, weights: np.ndarray, shape: tuple[int, ...] | None = None,
                        offsets: tuple[int, ...] | None = None) -> np.ndarray:
        """The dilated kernel placed for circular convolution (see :func:`place_circular`).

        By default on the input's shape with the padding offsets: the first
        column of the periodic ("wrap", stride 1, ``lo + hi = span - 1``) operator.
        """
        shape = self.spatial_input_shape if shape is None else shape
        offsets = tuple(ax.lo for ax in self.axes) if offsets is None else offsets
        return place_circular(self.dilate(weights), shape, offsets)

    @property
    def is_circulant(self) -> bool:
        """True for the periodic boundary, stride 1 and as many outputs as inputs."""
        return self.boundary == "wrap" and self.channels is None and all(
            ax.stride == 1 and ax.n_out == ax.n for ax in self.axes)

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """View ``(..., *output, *kernel)`` of a padded array: the samples each output reads."""
        view = np.lib.stride_tricks.sliding_window_view(
            xp, tuple(ax.span for ax in self.axes), axis=tuple(range(-self.ndim, 0)))
        return view[self._slices(lambda ax: slice(0, ax.sampled_length, ax.stride))
                    + tuple(slice(None, None, ax.dilation) for ax in self.axes)]

    def tap_slices(self):
        """For every tap (C order), the slices of the padded domain it reads, per axis."""
        for taps in np.ndindex(*self.kernel_shape):
            yield self._slices_for(taps)

    def _slices_for(self, taps):
        return (Ellipsis,) + tuple(slice(j * ax.dilation, j * ax.dilation + ax.sampled_length,
                                         ax.stride) for j, ax in zip(taps, self.axes))

    def polyphase(self):
        """Stride-free form of the correlation, for shifted GEMMs.

        The padded input is split into ``prod(strides)`` phases (sample ``q``
        of axis ``a`` goes to phase ``q % s`` at position ``q // s``) laid out on
        a grid of ``ceil(padded / s)`` per axis.  Tap ``j`` then reads one phase
        at a constant flat offset of that grid.  Returns ``(grid_shape,
        phase_of_tap, offset_of_tap)``, both flat over the taps in C order.
        """
        grid = tuple(-(-ax.padded_length // ax.stride) for ax in self.axes)
        grid_strides = np.cumprod((1,) + grid[:0:-1])[::-1]
        phase_strides = np.cumprod((1,) + self.strides[:0:-1])[::-1]
        phase = offset = 0
        for axis, ax in enumerate(self.axes):
            reach = np.arange(ax.k) * ax.dilation
            shape = [1] * self.ndim
            shape[axis] = ax.k
            phase = phase + (reach % ax.stride * phase_strides[axis]).reshape(shape)
            offset = offset + (reach // ax.stride * grid_strides[axis]).reshape(shape)
        full = self.kernel_shape
        return (grid, np.broadcast_to(phase, full).reshape(-1),
                np.broadcast_to(offset, full).reshape(-1))


def place_circular(kernel: np.ndarray, shape: tuple[int, ...], offsets) -> np.ndarray:
    """Kernel ``g`` of size ``shape`` with ``g[(offset - m) mod M] += kernel[m]`` per axis.

    Acts on the trailing ``len(shape)`` axes (leading ones, e.g. channels, are
    kept).  Circular convolution with ``g`` of an input placed at position 0
    gives ``y[i] = sum_m kernel[m] * x[(i + m - offset) mod M]``: a correlation
    with the padding offset folded into the kernel (taps that wrap onto the same
    position add, as for a kernel longer than a periodic signal).
    """
    nd = len(shape)
    spatial = kernel.shape[kernel.ndim - nd:]
    g = np.zeros(kernel.shape[:kernel.ndim - nd] + tuple(shape), dtype=kernel.dtype)
    where = np.ix_(*[(off - np.arange(k)) % m for k, off, m in zip(spatial, offsets, shape)])
    np.add.at(g, (Ellipsis,) + where, kernel)
    return g


def align_leads(x: np.ndarray, leads, spans, out_shape,
                zero_lead: bool = False) -> tuple[np.ndarray, list[int]]:
    """Zero-pad or crop a batch so each axis has ``0 <= lead <= span - 1`` (``lead == 0``
    with `zero_lead`) and room for ``out_shape`` outputs of
    ``y[i] = sum_m w[m] * x[i + m - lead]``; samples never read are cropped.

    Exact for zero extension only: the samples cropped are never read, the ones
    added are zeros.
    """
    nd = len(leads)
    pads, crops, new_leads = [(0, 0)] * (x.ndim - nd), [slice(None)] * (x.ndim - nd), []
    for axis, (lead, span, n_out) in enumerate(zip(leads, spans, out_shape), start=x.ndim - nd):
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
