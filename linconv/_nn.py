"""Deep-learning convolution in PyTorch's exact semantics, on the same geometry.

A convolution layer with ``C_in`` input and ``C_out`` output channels is a
block-Toeplitz matrix: block ``(o, c)`` is the single-channel correlation
matrix of ``weight[o, c]`` (groups make it block-diagonal).  The transposed
convolution is its transpose; im2col (``unfold``) is the 0/1 matrix that
gathers every window.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from . import _factors, _pattern
from ._geometry import Channels, Geometry
from ._operator import GeometryOperator, _View, frozen_copy, operator_dtype
from ._validation import (as_array, as_format, as_int_tuple, as_kernel, as_method, as_padding,
                          as_shape, check_memory, _is_int)

__all__ = ["conv_operator", "conv_matrix", "conv_transpose_operator", "conv_transpose_matrix",
           "unfold", "fold", "unfold_matrix", "ConvOperator", "ConvTransposeOperator",
           "dense_to_conv", "pointwise_conv_weight"]

# torch's padding_mode -> linconv's boundary (linconv's own names pass through)
_PADDING_MODES = {"zeros": "zero", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap", "zero": "zero", "wrap": "wrap", "edge": "edge",
                  "symmetric": "symmetric"}


def _as_padding_mode(padding_mode) -> str:
    if not isinstance(padding_mode, str) or padding_mode not in _PADDING_MODES:
        raise ValueError(
            "`padding_mode` must be 'zeros', 'reflect', 'replicate' or 'circular' (torch) or "
            f"one of linconv's boundaries 'zero', 'wrap', 'edge', 'symmetric'; got {padding_mode!r}")
    return _PADDING_MODES[padding_mode]


def _layer(weight, input_shape, groups, transposed: bool, check=as_kernel):
    """Validate weight (with `check`), input shape and groups; return
    (weight, spatial shape, Channels)."""
    weight = check(weight, "weight")
    if weight.ndim < 3:
        raise ValueError(
            "`weight` must have shape (C_out, C_in // groups, *kernel) with at least one "
            f"spatial axis; got shape {weight.shape}")
    input_shape = as_shape(input_shape)
    if len(input_shape) != weight.ndim - 1:
        raise ValueError(
            f"`input_shape` must be (C_in, *spatial) with {weight.ndim - 2} spatial axes to "
            f"match `weight` of shape {weight.shape}; got {input_shape}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"`groups` must be a positive integer; got {groups!r}")
    c_in = input_shape[0]
    first, per_group = weight.shape[0], weight.shape[1]
    if transposed:  # weight (C_in, C_out // groups, *k); the conv it transposes: C_out -> C_in
        if first != c_in:
            raise ValueError(f"`weight` must have C_in = {c_in} rows for conv_transpose (shape "
                             f"(C_in, C_out // groups, *kernel)); got shape {weight.shape}")
        channels = Channels(per_group * groups, c_in, groups)
    else:
        if c_in != per_group * groups:
            raise ValueError(
                f"`weight` of shape {weight.shape} with `groups`={groups} expects "
                f"{per_group * groups} input channels; `input_shape` has {c_in}")
        channels = Channels(c_in, first, groups)
    for name, count in (("in_channels", channels.in_channels),
                        ("out_channels", channels.out_channels)):
        if count % groups:
            raise ValueError(f"`groups`={groups} must divide {name} ({count})")
    return weight, input_shape[1:], channels


def _conv_geometry(weight, input_shape, stride, padding, dilation, groups, padding_mode,
                   check=as_kernel):
    weight, spatial, channels = _layer(weight, input_shape, groups, False, check)
    boundary = _as_padding_mode(padding_mode)
    nd = len(spatial)
    if isinstance(padding, str):
        if padding not in ("same", "valid", "SAME", "VALID"):
            raise ValueError(f"`padding` must be 'same', 'valid' (torch), 'SAME', 'VALID' "
                             f"(TensorFlow), an int or a per-axis sequence; got {padding!r}")
        strides = as_int_tuple(stride, nd, "stride")
        if padding == "same" and any(s != 1 for s in strides):
            raise ValueError(f"`padding`='same' is not supported with `stride` {stride!r} "
                             "(as torch); use explicit padding, or 'SAME' for TensorFlow's "
                             "rule (ceil(n / stride) outputs)")
        if padding == "SAME":
            padding = Geometry.tensorflow_same_pads(weight.shape[2:], spatial, strides,
                                                    as_int_tuple(dilation, nd, "dilation"))
        elif padding == "VALID":
            padding = "valid"
    else:
        padding = as_padding(padding, nd, "padding")
    geometry = Geometry.from_args(weight.shape[2:], spatial, padding, boundary, stride, dilation,
                                  channels=channels, same_anchor="torch", name="padding")
    return weight, geometry


def _transpose_geometry(weight, input_shape, stride, padding, output_padding, dilation, groups,
                        check=as_kernel):
    weight, spatial, channels = _layer(weight, input_shape, groups, True, check)
    nd = len(spatial)
    if isinstance(padding, str):
        raise ValueError(f"`padding` must be an int or a per-axis sequence for "
                         f"conv_transpose (as torch); got {padding!r}")
    pads = as_padding(padding, nd, "padding")
    strides = as_int_tuple(stride, nd, "stride")
    dilations = as_int_tuple(dilation, nd, "dilation")
    extra = as_int_tuple(output_padding, nd, "output_padding", minimum=0)
    for op, s, d in zip(extra, strides, dilations):
        if op >= s and op >= d:
            raise ValueError(f"`output_padding` must be smaller than either `stride` or "
                             f"`dilation` (as torch); got {extra} with stride {strides} and "
                             f"dilation {dilations}")
    return weight, Geometry.transposed(weight.shape[2:], spatial, strides, dilations, pads,
                                       extra, channels)


class ConvOperator(GeometryOperator):
    """A convolution layer (PyTorch semantics, no bias) as a LinearOperator.

    Returned by :func:`conv_operator`; also the base of the transposed layer.
    ``apply(x)`` takes ``(N, C_in, *spatial)`` (or ``(C_in, *spatial)``).
    """

    def __init__(self, weight, geometry: Geometry, method: str, dtype=None):
        self.weight = weight = frozen_copy(weight)
        super().__init__(geometry, weight, as_method(method), operator_dtype(weight, dtype))

    def __repr__(self):
        g = self.geometry
        return (f"<ConvOperator: {g.channels.in_channels} -> {g.channels.out_channels} channels "
                f"(groups={g.channels.groups}), {self.input_shape} -> {self.output_shape}, "
                f"kernel {g.kernel_shape}, method={self.method!r}, dtype={self.dtype}>")


class ConvTransposeOperator(_View):
    """A transposed convolution layer: the transpose ``A^T`` of the convolution it inverts
    the shapes of.  Returned by :func:`conv_transpose_operator`."""

    def __init__(self, conv: ConvOperator):
        super().__init__(conv, adjoint=True, conjugate=True)
        self.weight = conv.weight
        self.geometry = conv.geometry
        self.method = conv.method

    def __repr__(self):
        return f"<ConvTransposeOperator: {self.input_shape} -> {self.output_shape}>"


def conv_operator(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros", method="auto"):
    """The linear map of ``torch.nn.functional.conv{1,2,3}d`` (no bias) as a LinearOperator.

    Parameters
    ----------
    weight : array_like, shape ``(C_out, C_in // groups, *kernel)``
        Any number of spatial axes.
    input_shape : tuple of int
        ``(C_in, *spatial)`` of one input.
    stride, dilation : int or tuple of int
    padding : int, tuple, "same" or "valid"
        As torch; explicit ``(lo, hi)`` pairs per axis are accepted too.
        "same" anchors even kernels as torch does (the extra sample on the
        right) and is refused with a stride, as torch.
    groups : int
        Blocks of the channel-mixing; ``groups == C_in`` is depthwise.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        As ``torch.nn.Conv{1,2,3}d(padding_mode=...)``; linconv's boundary
        names ("zero", "wrap", "edge", "symmetric") are accepted too.
    method : {"auto", "direct", "fft", "sparse"}
        "direct" runs channel-mixing GEMMs on shifted views, or batched
        single-channel correlation for depthwise layers (``op.plan`` says
        which, and why).

    Returns
    -------
    ConvOperator
        Shape ``(C_out * prod(out), C_in * prod(spatial))``; ``apply`` takes
        ``(N, C_in, *spatial)``; ``.T`` is the transposed convolution.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> w = np.arange(2 * 3 * 3 * 3, dtype=float).reshape(2, 3, 3, 3)
    >>> op = linconv.conv_operator(w, (3, 8, 8), padding=1, stride=2)
    >>> op.input_shape, op.output_shape
    ((3, 8, 8), (2, 4, 4))
    >>> op.apply(np.ones((5, 3, 8, 8))).shape
    (5, 2, 4, 4)
    """
    weight, geometry = _conv_geometry(weight, input_shape, stride, padding, dilation, groups,
                                      padding_mode)
    return ConvOperator(weight, geometry, method)


def conv_matrix(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros", format="csr"):
    """Sparse block-Toeplitz matrix of a convolution layer (PyTorch semantics).

    Same arguments as :func:`conv_operator`.  Block ``(o, c)`` (rows of output
    channel ``o``, columns of input channel ``c``) is the single-channel
    correlation matrix of ``weight[o, c - group_start]``; groups make the
    matrix block-diagonal.  Rows and columns are flattened in C order over
    ``(C, *spatial)``.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> w = np.array([[[1, 2]], [[3, 4]]])      # 1 -> 2 channels, kernel 2
    >>> linconv.conv_matrix(w, (1, 3)).toarray()
    array([[1, 2, 0],
           [0, 1, 2],
           [3, 4, 0],
           [0, 3, 4]])
    """
    weight, geometry = _conv_geometry(weight, input_shape, stride, padding, dilation, groups,
                                      padding_mode)
    from ._sparse import correlation_csr
    return correlation_csr(geometry, weight).asformat(as_format(format))


def conv_transpose_operator(weight, input_shape, *, stride=1, padding=0, output_padding=0,
                            dilation=1, groups=1, method="auto"):
    """The linear map of ``torch.nn.functional.conv_transpose{1,2,3}d`` (no bias).

    It is exactly the transpose of the convolution with the same `weight`,
    `stride`, `padding`, `dilation` and `groups` that maps the transposed
    layer's output shape back to `input_shape`.

    Parameters
    ----------
    weight : array_like, shape ``(C_in, C_out // groups, *kernel)``
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride, padding, output_padding, dilation, groups
        As torch: the output size per axis is
        ``(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.
    method : {"auto", "direct", "fft", "sparse"}

    Examples
    --------
    >>> import numpy as np, linconv
    >>> w = np.ones((1, 1, 3))
    >>> op = linconv.conv_transpose_operator(w, (1, 2), stride=2)
    >>> op.apply(np.array([[1.0, 10.0]]))
    array([[ 1.,  1., 11., 10., 10.]])
    """
    weight, geometry = _transpose_geometry(weight, input_shape, stride, padding, output_padding,
                                           dilation, groups)
    return ConvTransposeOperator(ConvOperator(weight, geometry, method))


def conv_transpose_matrix(weight, input_shape, *, stride=1, padding=0, output_padding=0,
                          dilation=1, groups=1, format="csr"):
    """Sparse matrix of a transposed convolution: the transpose of the convolution's matrix.

    Same arguments as :func:`conv_transpose_operator`.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> linconv.conv_transpose_matrix(np.array([[[1, 2]]]), (1, 2)).toarray()
    array([[1, 0],
           [2, 1],
           [0, 2]])
    """
    weight, geometry = _transpose_geometry(weight, input_shape, stride, padding, output_padding,
                                           dilation, groups)
    from ._sparse import correlation_csr
    return correlation_csr(geometry, weight).T.asformat(as_format(format))


# -- im2col --------------------------------------------------------------------------
def _unfold_ndim(kernel_size) -> int:
    """Spatial axes of unfold/fold: those of `kernel_size` (an int means 2-D, as torch)."""
    return 2 if _is_int(kernel_size) else len(kernel_size)


def _check_unfold_memory(g: Geometry, rows: int, itemsize: int, what: str) -> None:
    """Refuse before allocating: the columns plus the padded input (or output), per row."""
    columns = math.prod(g.kernel_shape) * math.prod(g.spatial_output_shape)
    check_memory(rows * (columns + 2 * math.prod(g.padded_shape)) * itemsize,
                 lambda: f"{what} of {rows} channel(s) of {g.spatial_input_shape}",
                 f"{what} smaller batches, or use linconv.conv_operator (matrix-free) instead")


def _unfold_geometry(input_shape, kernel_size, dilation, padding, stride, nd=None):
    if _is_int(kernel_size):
        kernel_size = (kernel_size,) * (2 if nd is None else nd)
    kernel = as_shape(kernel_size, "kernel_size")
    nd = len(kernel)
    spatial = as_shape(input_shape[-nd:], "input_shape")
    if len(input_shape) < nd + 1:
        raise ValueError(f"the input must be (C, *spatial) or (N, C, *spatial) with {nd} "
                         f"spatial axes for `kernel_size` {kernel}; got shape {tuple(input_shape)}")
    if isinstance(padding, str):
        raise ValueError(f"`padding` must be an int or a per-axis sequence; got {padding!r}")
    pads = as_padding(padding, nd, "padding")
    return Geometry.from_args(kernel, spatial, pads, "zero", stride, dilation, name="padding")


def _batched(x, nd, name):
    x = as_array(x, name)
    if x.ndim == nd + 1:
        return x[None], True
    if x.ndim == nd + 2:
        return x, False
    raise ValueError(f"`{name}` must be (C, *spatial) or (N, C, *spatial) with {nd} spatial "
                     f"axes; got shape {x.shape}")


def unfold(x, kernel_size, *, dilation=1, padding=0, stride=1):
    """im2col: every (dilated, strided) window of `x` as a column, as ``torch.nn.functional.unfold``.

    Parameters
    ----------
    x : array_like
        ``(C, *spatial)`` or ``(N, C, *spatial)``.
    kernel_size : int or tuple of int
        The window; an int means 2 spatial axes (as torch), a tuple one entry
        per spatial axis (any number).
    dilation, padding, stride : int or tuple of int
        Zero padding, as torch.

    Returns
    -------
    cols : ndarray, ``(N, C * prod(kernel_size), L)`` (or without ``N``)
        Row ``c * prod(kernel_size) + t`` holds channel ``c`` at kernel tap
        ``t`` (C order) for each of the ``L`` windows (C order).

    Examples
    --------
    >>> import numpy as np, linconv
    >>> x = np.arange(9.0).reshape(1, 3, 3)
    >>> linconv.unfold(x, 2)
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    nd = _unfold_ndim(kernel_size)
    xb, single = _batched(x, nd, "x")
    g = _unfold_geometry(xb.shape, kernel_size, dilation, padding, stride)
    n, c = xb.shape[:2]
    _check_unfold_memory(g, n * c, xb.dtype.itemsize, "unfold")
    windows = _factors.windows(g, _factors.extend(g, xb))  # (N, C, *out, *k)
    order = [0, 1] + list(range(2 + nd, 2 + 2 * nd)) + list(range(2, 2 + nd))
    cols = windows.transpose(order).reshape(n, c * math.prod(g.kernel_shape),
                                            math.prod(g.spatial_output_shape))
    return cols[0] if single else cols


def fold(cols, output_size, kernel_size, *, dilation=1, padding=0, stride=1):
    """col2im, the exact adjoint of :func:`unfold`: sums every column back onto its window.

    As ``torch.nn.functional.fold``: `cols` is ``(N, C * prod(kernel_size), L)``
    or ``(C * prod(kernel_size), L)``, `output_size` the spatial size.

    Examples
    --------
    >>> import numpy as np, linconv
    >>> linconv.fold(np.ones((4, 4)), (3, 3), 2)
    array([[[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]]])
    """
    nd = _unfold_ndim(kernel_size)
    output_size = as_shape((output_size,) * nd if _is_int(output_size) else output_size,
                           "output_size")
    if len(output_size) != nd:
        raise ValueError(f"`output_size` must have one entry per spatial axis of `kernel_size` "
                         f"{kernel_size!r} ({nd}); got {output_size}")
    cb, single = _batched(cols, 1, "cols")
    n, rows, length = cb.shape
    taps = math.prod((kernel_size,) * nd if _is_int(kernel_size) else kernel_size)
    if rows % taps:
        raise ValueError(f"`cols` must have C * {taps} rows for `kernel_size` {kernel_size}; "
                         f"got {rows}")
    g = _unfold_geometry((rows // taps,) + output_size, kernel_size, dilation, padding, stride)
    if length != math.prod(g.spatial_output_shape):
        raise ValueError(f"`cols` must have {math.prod(g.spatial_output_shape)} columns (one "
                         f"per window of {output_size}); got {length}")
    blocks = cb.reshape((n, rows // taps, taps) + g.spatial_output_shape)
    dtype = np.dtype(np.int64 if cb.dtype.kind == "b" else cb.dtype)
    _check_unfold_memory(g, n * (rows // taps), dtype.itemsize, "fold")
    xp = np.zeros((n, rows // taps) + g.padded_shape, dtype=dtype)
    for t, window in enumerate(_factors.tap_slices(g)):  # loop over kernel taps, vectorised inside
        xp[window] += blocks[:, :, t]
    out = _factors.extend_adjoint(g, xp)
    return np.ascontiguousarray(out[0] if single else out)


def unfold_matrix(input_shape, kernel_size, *, dilation=1, padding=0, stride=1, format="csr"):
    """The 0/1 sparse matrix of :func:`unfold` for one input of shape ``(C, *spatial)``.

    ``unfold_matrix(x.shape, k) @ x.ravel() == unfold(x, k).ravel()``.

    Examples
    --------
    >>> import linconv
    >>> linconv.unfold_matrix((1, 3), (2,)).toarray()
    array([[1, 0, 0],
           [0, 1, 0],
           [0, 1, 0],
           [0, 0, 1]], dtype=int8)
    """
    input_shape = as_shape(input_shape)
    nd = _unfold_ndim(kernel_size)
    g = _unfold_geometry(input_shape, kernel_size, dilation, padding, stride, nd)
    channels = input_shape[0]
    # rows, columns (int64) and values, then the CSR copy: refused from sizes alone
    check_memory(_pattern.pattern_nbytes(g, itemsize=1) + _pattern.pattern_bound(g) * channels * 34,
                 "the unfold matrix")
    pattern = _pattern.pattern(g, itemsize=1)
    taps = math.prod(g.kernel_shape)
    windows = math.prod(g.spatial_output_shape)
    spatial = math.prod(g.spatial_input_shape)
    channel = np.arange(channels)[:, None]
    rows = (channel * taps + pattern.taps[None, :]) * windows + pattern.rows()[None, :]
    cols = channel * spatial + pattern.indices[None, :]
    matrix = sp.csr_array((np.ones(rows.size, dtype=np.int8), (rows.ravel(), cols.ravel())),
                          shape=(channels * taps * windows, channels * spatial))
    return matrix.asformat(as_format(format))


# -- textbook facts made concrete ----------------------------------------------
def dense_to_conv(weight, input_shape):
    """A dense (fully connected) layer on a ``(C, *spatial)`` input as a convolution weight.

    The kernel covers the whole input, so with "valid" padding the convolution
    has one output position and equals ``weight @ x.ravel()``; applied to a
    larger input it slides the dense layer over every window.

    Parameters
    ----------
    weight : array_like, ``(out_features, C * prod(spatial))``
    input_shape : tuple of int, ``(C, *spatial)``

    Returns
    -------
    ndarray, ``(out_features, C, *spatial)``

    Examples
    --------
    >>> import numpy as np, linconv
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((4, 2 * 3 * 3))            # dense: 18 -> 4
    >>> conv_w = linconv.dense_to_conv(W, (2, 3, 3))
    >>> x = rng.standard_normal((2, 3, 3))
    >>> bool(np.allclose(linconv.conv_operator(conv_w, x.shape).apply(x).ravel(), W @ x.ravel()))
    True

    On a 5x5 input the same weights give the dense layer at each of the 3x3
    window positions:

    >>> big = rng.standard_normal((2, 5, 5))
    >>> y = linconv.conv_operator(conv_w, big.shape).apply(big)
    >>> bool(np.allclose(y[:, 1, 2], W @ big[:, 1:4, 2:5].ravel()))
    True
    """
    weight = as_kernel(weight, "weight")
    input_shape = as_shape(input_shape)
    if weight.ndim != 2 or weight.shape[1] != math.prod(input_shape):
        raise ValueError(f"`weight` must be (out_features, {math.prod(input_shape)}) for "
                         f"`input_shape` {input_shape}; got shape {weight.shape}")
    return weight.reshape((weight.shape[0],) + input_shape)


def pointwise_conv_weight(matrix, ndim: int = 2):
    """The weight of a 1x1 convolution that mixes channels by `matrix` ``(C_out, C_in)``.

    Its layer matrix is ``kron(matrix, I)``: every pixel's channels are mixed
    by the same matrix, no pixel talks to another.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, linconv
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> w = linconv.pointwise_conv_weight(W)                 # (3, 2, 1, 1)
    >>> A = linconv.conv_matrix(w, (2, 4, 4))
    >>> bool(np.array_equal(A.toarray(), np.kron(W, np.eye(16))))
    True
    """
    matrix = as_kernel(matrix, "matrix")
    if matrix.ndim != 2:
        raise ValueError(f"`matrix` must be (C_out, C_in); got shape {matrix.shape}")
    if not _is_int(ndim) or ndim < 1:
        raise ValueError(f"`ndim` must be a positive integer; got {ndim!r}")
    return matrix.reshape(matrix.shape + (1,) * ndim)
