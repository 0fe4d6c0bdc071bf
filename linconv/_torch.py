"""``from_torch``: the linconv operator of a torch module's linear part.

torch is imported by :func:`from_torch` only (``import linconv`` never does).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ._nn import (_unfold_geometry, conv_operator, conv_transpose_operator, fold, unfold,
                  unfold_matrix)
from ._operator import ShapedOperator, operator_dtype
from ._validation import _is_int, as_format, as_shape

__all__ = ["from_torch", "LinearLayerOperator", "UnfoldOperator"]


class LinearLayerOperator(ShapedOperator):
    """``y = x @ W.T`` over the last axis of ``(*lead, in_features)`` (torch.nn.Linear, no bias).

    Its matrix is ``kron(I_lead, W)``.
    """

    def __init__(self, weight: np.ndarray, input_shape):
        self.weight = weight
        lead = input_shape[:-1]
        super().__init__(operator_dtype(weight), input_shape, lead + (weight.shape[0],))

    def _forward(self, x):
        return x @ self.weight.T.astype(x.dtype, copy=False)

    def _backward(self, y):
        return y @ self.weight.conj().astype(y.dtype, copy=False)

    def tosparse(self, format: str = "csr"):
        """``kron(I, W)``: the dense layer on every leading position."""
        lead = math.prod(self.input_shape[:-1])
        return sp.kron(sp.eye_array(lead, dtype=self.weight.dtype), sp.csr_array(self.weight),
                       format=as_format(format))

    def __repr__(self):
        return f"<LinearLayerOperator: {self.input_shape} -> {self.output_shape}>"


class UnfoldOperator(ShapedOperator):
    """im2col as an operator, ``(C, *spatial) -> (C * prod(kernel_size), L)``
    (:func:`linconv.unfold`); its adjoint is :func:`linconv.fold`."""

    def __init__(self, input_shape, kernel_size, *, dilation=1, padding=0, stride=1):
        self.kernel_size, self.dilation, self.padding, self.stride = (kernel_size, dilation,
                                                                      padding, stride)
        self._matrix_args = dict(kernel_size=kernel_size, dilation=dilation, padding=padding,
                                 stride=stride)
        input_shape = as_shape(input_shape)
        nd = 2 if _is_int(kernel_size) else len(kernel_size)
        g = _unfold_geometry(input_shape, kernel_size, dilation, padding, stride, nd)
        if len(input_shape) != nd + 1:
            raise ValueError(f"`input_shape` must be (C, *spatial) with {nd} spatial axes; "
                             f"got {input_shape}")
        self.spatial = g.spatial_input_shape
        shape = (input_shape[0] * math.prod(g.kernel_shape), math.prod(g.spatial_output_shape))
        super().__init__(np.dtype(np.float32), input_shape, shape)

    def _forward(self, x):
        return unfold(x, **self._matrix_args)

    def _backward(self, y):
        return fold(y, self.spatial, **self._matrix_args)

    def tosparse(self, format: str = "csr"):
        """The 0/1 matrix of unfold (:func:`linconv.unfold_matrix`)."""
        return unfold_matrix(self.input_shape, **self._matrix_args, format=format)

    def __repr__(self):
        return f"<UnfoldOperator: {self.input_shape} -> {self.output_shape}>"


def _numpy(tensor):
    """A parameter as numpy (half precisions as float32), or None."""
    if tensor is None:
        return None
    import torch
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy().copy()


def _with_bias(op, bias):
    object.__setattr__(op, "bias", bias)  # the affine offset, kept beside the linear map
    return op


def from_torch(module, input_shape):
    """The linconv operator of a torch module's linear part, with the same numbers.

    Parameters
    ----------
    module : torch.nn.Module
        ``Conv1d``/``Conv2d``/``Conv3d`` (any ``padding``, ``padding_mode``,
        ``groups``, ``dilation``, ``stride``), ``ConvTranspose1d/2d/3d``
        (``output_padding`` included), ``Linear``, ``Unfold`` or ``Fold``.
    input_shape : tuple of int
        One input, without the batch axis: ``(C_in, *spatial)`` for convolutions
        and ``Unfold``, ``(*, in_features)`` for ``Linear``, ``(C * prod(kernel_size), L)``
        for ``Fold``.

    Returns
    -------
    LinearOperator
        With ``input_shape``, ``output_shape``, ``apply``, ``tosparse`` and exact
        ``.T``/``.H`` like every linconv operator.  ``op.bias`` is the module's
        bias as a numpy array (None without one): ``module(x) == op.apply(x) + bias``
        broadcast over the channel axis (the last axis for ``Linear``).

    Raises
    ------
    TypeError
        For any other module.

    Examples
    --------
    >>> import numpy as np, torch, linconv
    >>> conv = torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular").double()
    >>> op = linconv.from_torch(conv, (3, 8, 8))
    >>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    >>> y = op.apply(x.numpy()) + op.bias[:, None, None]
    >>> bool(np.allclose(y, conv(x).detach().numpy()))
    True
    """
    import torch
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}")
    input_shape = as_shape(input_shape)
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        if module.padding_mode != "zeros":  # torch itself refuses this
            raise ValueError(f"`padding_mode` {module.padding_mode!r} is not supported by "
                             "ConvTranspose (as torch)")
        op = conv_transpose_operator(_numpy(module.weight), input_shape,
                                     stride=module.stride, padding=module.padding,
                                     output_padding=module.output_padding,
                                     dilation=module.dilation, groups=module.groups)
        return _with_bias(op, _numpy(module.bias))
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        op = conv_operator(_numpy(module.weight), input_shape, stride=module.stride,
                           padding=module.padding, dilation=module.dilation,
                           groups=module.groups, padding_mode=module.padding_mode)
        return _with_bias(op, _numpy(module.bias))
    if isinstance(module, nn.Linear):
        if input_shape[-1] != module.in_features:
            raise ValueError(f"`input_shape` must end in in_features={module.in_features} "
                             f"for {module}; got {input_shape}")
        return _with_bias(LinearLayerOperator(_numpy(module.weight), input_shape),
                          _numpy(module.bias))
    args = dict(kernel_size=module.kernel_size, dilation=module.dilation,
                padding=module.padding, stride=module.stride) if isinstance(
                    module, (nn.Unfold, nn.Fold)) else None
    if isinstance(module, nn.Unfold):
        return _with_bias(UnfoldOperator(input_shape, **args), None)
    if isinstance(module, nn.Fold):
        size = module.output_size
        size = (size,) * 2 if isinstance(size, int) else tuple(size)
        kernel = module.kernel_size
        taps = math.prod((kernel,) * len(size) if isinstance(kernel, int) else kernel)
        if len(input_shape) != 2 or input_shape[0] % taps:
            raise ValueError(f"`input_shape` must be (C * {taps}, L) for {module}; got "
                             f"{input_shape}")
        unfold_op = UnfoldOperator((input_shape[0] // taps,) + size, **args)
        if unfold_op.output_shape != input_shape:
            raise ValueError(f"`input_shape` must be {unfold_op.output_shape} for {module} "
                             f"(one column per window); got {input_shape}")
        return _with_bias(unfold_op.T, None)
    raise TypeError("`module` must be torch.nn.Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear, "
                    f"Unfold or Fold; got {type(module).__name__}")
