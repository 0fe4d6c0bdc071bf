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
(``P``) and the tap positions.  Built on it: the sparse pattern
``(indptr, indices, taps)`` (:mod:`linconv._pattern`), the factors applied to
arrays (:mod:`linconv._factors`) and the engines' plans (:mod:`linconv._plans`).
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

    def tap_positions(self, outputs: np.ndarray | None = None) -> np.ndarray:
        """Padded-signal position ``i*s + j*d`` of tap ``j`` for output ``i`` (every output,
        or those given); shape (outputs, k)."""
        i = (np.arange(self.n_out, dtype=np.int64) if outputs is None
             else np.asarray(outputs, dtype=np.int64))[:, None]
        j = np.arange(self.k, dtype=np.int64)[None, :]
        return i * self.stride + j * self.dilation

    def outputs_meeting(self, start: int, stop: int) -> tuple[int, int]:
        """The outputs ``[o0, o1)`` whose windows meet the input samples ``[start, stop)``
        (not clipped to ``[0, n_out)``: beyond it, windows of outputs that do not exist)."""
        s = self.stride
        return -(-(start - self.span + 1 + self.lo) // s), -(-(stop + self.lo) // s)

    def is_margin(self, positions: np.ndarray) -> np.ndarray:
        """Whether each padded position is in a margin (outside the input's copy)."""
        positions = np.asarray(positions)
        return (positions < self.lo) | (positions >= self.lo + self.n)

    def block_positions(self, start: int, stop: int, first: bool, last: bool):
        """For a block of inputs ``[start, stop)`` (`first` / `last` along the axis): the
        padded positions ``[j0, j1)`` that are its own (its samples, and the margins at
        the ends of the axis for the first and last blocks), and ``[p0, p1)``, those
        that the outputs reading ``[j0, j1)`` read (stride 1)."""
        h = self.span - 1
        j0 = 0 if first else self.lo + start
        j1 = self.padded_length if last else self.lo + stop
        return (j0, j1), (max(j0 - h, 0), min(j1 + h, self.padded_length))

    def columns(self, boundary: str, outputs: np.ndarray | None = None) -> np.ndarray:
        """Input index read by tap ``j`` for output ``i`` (``-1``: zero); shape (outputs, k)."""
        return self.extension_index(self.tap_positions(outputs), boundary)


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

    @property
    def is_circulant(self) -> bool:
        """True for the periodic boundary, stride 1 and as many outputs as inputs."""
        return self.boundary == "wrap" and self.channels is None and all(
            ax.stride == 1 and ax.n_out == ax.n for ax in self.axes)
