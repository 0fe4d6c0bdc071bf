"""One-shot convolution and correlation of data."""

from __future__ import annotations

from ._operator import ConvolutionOperator
from ._validation import as_array, as_kernel, is_dask_array

__all__ = ["convolve", "correlate"]


def _apply(x, kernel, mode, boundary, stride, dilation, method, correlate):
    if is_dask_array(x):  # lazily: dask in, dask out
        from ._dask import convolve_dask
        return convolve_dask(x, kernel, mode, boundary, stride, dilation, method, correlate)
    x = as_array(x)
    kernel = as_kernel(kernel)
    if x.ndim != kernel.ndim:
        raise ValueError(
            f"`x` and `kernel` must have the same number of dimensions; got x of shape "
            f"{x.shape} and kernel of shape {kernel.shape}"
        )
    op = ConvolutionOperator(kernel, x.shape, mode, boundary=boundary, stride=stride,
                             dilation=dilation, correlate=correlate, method=method)
    return op.apply(x)


def convolve(x, kernel, mode="full", *, boundary="zero", stride=1, dilation=1, method="auto"):
    """N-D convolution of `x` with `kernel`, for every padding, boundary, stride and dilation.

    Equals ``convolution_matrix(kernel, x.shape, mode, ...) @ x.ravel()``
    reshaped to the output shape; with stride 1, dilation 1 and the zero
    boundary it equals :func:`scipy.signal.convolve`.

    Parameters
    ----------
    x : array_like
        The input, with as many axes as `kernel`.
    kernel : array_like
        The kernel.
    mode, boundary, stride, dilation
        As in :func:`convolution_matrix`.
    method : {"auto", "direct", "fft", "sparse"}, optional
        How to compute; all give the same result to rounding.

    Returns
    -------
    y : ndarray
        Of dtype ``np.result_type(x, kernel, np.float32)``.

    See Also
    --------
    correlate, convolution_matrix, ConvolutionOperator

    Examples
    --------
    >>> import linconv
    >>> linconv.convolve([1, 2, 3], [0, 1, 0.5])
    array([0. , 1. , 2.5, 4. , 1.5])
    >>> linconv.convolve([1, 2, 3, 4], [1, 1], mode="valid", boundary="wrap", stride=2)
    array([3., 7.])
    """
    return _apply(x, kernel, mode, boundary, stride, dilation, method, False)


def correlate(x, kernel, mode="full", *, boundary="zero", stride=1, dilation=1, method="auto"):
    """N-D correlation of `x` with `kernel` (the kernel is not conjugated).

    Same arguments as :func:`convolve`.  For complex kernels this is
    ``scipy.signal.correlate(x, kernel.conj())`` (torch's convention).

    Examples
    --------
    >>> import linconv
    >>> linconv.correlate([1, 2, 3], [0, 1, 0.5], mode="same")
    array([2. , 3.5, 3. ])
    """
    return _apply(x, kernel, mode, boundary, stride, dilation, method, True)
