"""The factors ``A = S . C . P`` of a geometry, applied to arrays.

:class:`~linconv._geometry.Geometry` holds sizes and index maps only; the
engines (and the layer reference in :mod:`linconv._nn`) apply its factors to
arrays with these functions.  Each acts on the trailing ``geometry.ndim``
(spatial) axes and keeps any leading (batch, channel) axes:

- :func:`extend` (``P``) and :func:`extend_adjoint` (``P^T``): the boundary
  extension into the padding, and the fold of the padding back onto the input;
- :func:`windows` and :func:`tap_slices` (``C``): what each output, or each
  kernel tap, reads of the padded array;
- :func:`subsample` (``S``) and :func:`upsample` (``S^T``): the stride;
- :func:`dilate`, :func:`place_circular` and :func:`circular_kernel`: the
  kernel as the spatial-domain and circular (FFT) engines use it.

How an engine combines them, and every size it needs, is its plan
(:mod:`linconv._plans`).
"""

from __future__ import annotations

import numpy as np

from ._geometry import Geometry

__all__ = ["NUMPY_PAD", "extend", "extend_adjoint", "windows", "tap_slices", "subsample",
           "upsample", "dilate", "place_circular", "circular_kernel"]

# numpy.pad's names for linconv's boundaries
NUMPY_PAD = {"zero": "constant", "wrap": "wrap", "reflect": "reflect",
             "symmetric": "symmetric", "edge": "edge"}


def _slices(geometry: Geometry, which) -> tuple:
    return (Ellipsis,) + tuple(which(ax) for ax in geometry.axes)


def _kept(ax) -> slice:
    """The stride-1 outputs the stride keeps."""
    return slice(0, ax.sampled_length, ax.stride)


def extend(geometry: Geometry, x: np.ndarray) -> np.ndarray:
    """``P``: extend the trailing spatial axes of `x` by the boundary rule (a copy).

    numpy.pad is the definition of the boundary rules.

    Examples
    --------
    >>> import numpy as np
    >>> g = Geometry.from_args((3,), (4,), "same", "reflect")
    >>> extend(g, np.arange(4))
    array([1, 0, 1, 2, 3, 2])
    """
    g = geometry
    if g.boundary in ("reflect", "symmetric") and any(
            max(ax.lo, ax.hi) >= ax.n - 1 for ax in g.axes):
        # several reflections: numpy < 2.1 pads these wrongly (numpy#25926), so
        # gather with the geometry's own index map (the same rule, any numpy)
        for axis, ax in enumerate(g.axes):
            x = np.take(x, ax.extension_map(g.boundary), axis=axis - g.ndim)
        return x
    pads = ((0, 0),) * (x.ndim - g.ndim) + g.pads
    return np.pad(x, pads, mode=NUMPY_PAD[g.boundary])


def extend_adjoint(geometry: Geometry, xp: np.ndarray, axes=None) -> np.ndarray:
    """``P^T``: fold padded trailing axes back onto the input, adding folded samples.

    ``P`` extends one axis after the other, so ``P^T`` folds them one by one
    (only `axes`, 0-based spatial axes, if given), in place: `xp` is
    overwritten and the result is a view into it.

    Examples
    --------
    >>> import numpy as np
    >>> g = Geometry.from_args((3,), (4,), "same", "reflect")
    >>> extend_adjoint(g, np.ones(6))  # samples 1 and 2 are read twice
    array([1., 2., 2., 1.])
    """
    g = geometry
    out = xp
    for axis in range(g.ndim) if axes is None else axes:
        ax = g.axes[axis]
        moved = np.moveaxis(out, axis - g.ndim, 0)
        inside = moved[ax.lo:ax.lo + ax.n]
        if g.boundary != "zero" and (ax.lo or ax.hi):
            outside = np.r_[0:ax.lo, ax.lo + ax.n:ax.padded_length]
            np.add.at(inside, ax.extension_index(outside, g.boundary), moved[outside])
        out = np.moveaxis(inside, 0, axis - g.ndim)
    return out


def windows(geometry: Geometry, xp: np.ndarray) -> np.ndarray:
    """View ``(..., *output, *kernel)`` of a padded array: the samples each output reads."""
    g = geometry
    view = np.lib.stride_tricks.sliding_window_view(
        xp, tuple(ax.span for ax in g.axes), axis=tuple(range(-g.ndim, 0)))
    return view[_slices(g, _kept) + tuple(slice(None, None, ax.dilation) for ax in g.axes)]


def tap_slices(geometry: Geometry):
    """For every tap (C order), the slices of the padded domain it reads, per axis."""
    for taps in np.ndindex(*geometry.kernel_shape):
        yield (Ellipsis,) + tuple(slice(j * ax.dilation, j * ax.dilation + ax.sampled_length,
                                        ax.stride) for j, ax in zip(taps, geometry.axes))


def subsample(geometry: Geometry, y1: np.ndarray) -> np.ndarray:
    """``S``: keep every stride-th stride-1 output (``y1`` from position 0)."""
    return y1[_slices(geometry, _kept)]


def upsample(geometry: Geometry, y: np.ndarray) -> np.ndarray:
    """``S^T``: zero-insert the trailing output axes of `y` into the sampled shape."""
    g = geometry
    z = np.zeros(y.shape[:y.ndim - g.ndim] + g.sampled_shape, dtype=y.dtype)
    z[_slices(g, _kept)] = y
    return z


def dilate(geometry: Geometry, weights: np.ndarray) -> np.ndarray:
    """The kernel (trailing axes of `weights`) with ``dilation - 1`` zeros between taps."""
    g = geometry
    if all(ax.dilation == 1 for ax in g.axes):
        return weights
    lead = weights.shape[:weights.ndim - g.ndim]
    out = np.zeros(lead + tuple(ax.span for ax in g.axes), dtype=weights.dtype)
    out[_slices(g, lambda ax: slice(None, None, ax.dilation))] = weights
    return out


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


def circular_kernel(geometry: Geometry, weights: np.ndarray,
                    shape: tuple[int, ...] | None = None,
                    offsets: tuple[int, ...] | None = None) -> np.ndarray:
    """The dilated kernel placed for circular convolution (see :func:`place_circular`).

    By default on the input's shape with the padding offsets: the first
    column of the periodic ("wrap", stride 1, ``lo + hi = span - 1``) operator.

    Examples
    --------
    >>> import numpy as np
    >>> g = Geometry.from_args((3,), (5,), "same", "wrap")
    >>> circular_kernel(g, np.array([1, 2, 3]))
    array([2, 1, 0, 0, 3])
    """
    g = geometry
    shape = g.spatial_input_shape if shape is None else shape
    offsets = tuple(ax.lo for ax in g.axes) if offsets is None else offsets
    return place_circular(dilate(g, weights), shape, offsets)
