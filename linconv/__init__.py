"""linconv: discrete convolution as exact linear algebra.

Convolution is a linear map, so it has a matrix.  linconv builds it exactly,
as a :mod:`scipy.sparse` array or as a matrix-free
:class:`scipy.sparse.linalg.LinearOperator` with an exact adjoint, for every
padding mode, boundary rule, stride and dilation, in any number of dimensions.

Matrices
--------
convolution_matrix   -- sparse (multilevel) Toeplitz matrix of a convolution
correlation_matrix   -- the same for correlation

Operators and data
------------------
ConvolutionOperator  -- matrix-free LinearOperator with exact ``.T`` and ``.H``
convolve             -- convolve data
correlate            -- correlate data

Deconvolution
-------------
deconvolve           -- regularised least squares with scipy's solvers (or FFT/DCT)
estimate_noise_std   -- noise level of data, for damp="auto"

Deep-learning layers (PyTorch semantics)
----------------------------------------
conv_operator            -- a convolution layer (channels, groups) as a LinearOperator
conv_matrix              -- its sparse block-Toeplitz matrix
conv_transpose_operator  -- the transposed convolution (the transpose of the matrix)
conv_transpose_matrix    -- its sparse matrix
unfold, fold             -- im2col and its adjoint col2im, any number of spatial axes
unfold_matrix            -- the 0/1 matrix of unfold
dense_to_conv            -- a dense layer as a convolution whose kernel covers the input
pointwise_conv_weight    -- a 1x1 convolution, whose matrix is kron(W, I)

Threads
-------
set_workers          -- context manager for the threads linconv uses (as scipy.fft's)
get_workers          -- the threads linconv uses now (CPUs available to the process)

Tools for layers and documents
------------------------------
singular_values      -- exact singular values (all of them for circulant operators)
operator_norm        -- the largest singular value (the Lipschitz constant of a layer)
dottest              -- check that an operator's adjoint is its adjoint
from_torch           -- the linconv operator of a torch module's linear part

Submodules
----------
linconv.fft       -- the convolution theorem: eigenvalues, spectral solves, preconditioners
linconv.symbolic  -- symbolic matrices with sympy (imported on first use)
linconv.plot      -- heat maps of matrices and receptive fields (needs matplotlib)
linconv.sphinxext -- the ``.. linconv-matrix::`` Sphinx directive
linconv.datasets  -- a test image, Gaussian kernels and PSNR for examples

Conventions
-----------
Arrays are flattened in C order: ``A @ x.ravel() == y.ravel()``.  Correlation
is the primitive; convolution flips the kernel.  Boundary names follow
:func:`numpy.pad` ("zero", "wrap", "reflect", "symmetric", "edge").

Examples
--------
>>> import linconv
>>> linconv.convolution_matrix([1, -1], 3, mode="valid").toarray()
array([[-1,  1,  0],
       [ 0, -1,  1]])
"""

from . import datasets, fft
from ._convolve import convolve, correlate
from ._deconvolve import DeconvolutionResult, deconvolve, estimate_noise_std
from ._engines import get_workers, set_workers
from ._geometry import Geometry
from ._nn import (ConvOperator, ConvTransposeOperator, conv_matrix, conv_operator,
                  conv_transpose_matrix, conv_transpose_operator, dense_to_conv, fold,
                  pointwise_conv_weight, unfold, unfold_matrix)
from ._operator import ConvolutionOperator
from ._sparse import convolution_matrix, correlation_matrix
from ._tools import dottest, operator_norm, singular_values
from ._torch import from_torch
from . import plot
from ._validation import BOUNDARIES

__version__ = "0.1.0"

__all__ = [
    "BOUNDARIES",
    "ConvOperator",
    "ConvTransposeOperator",
    "ConvolutionOperator",
    "DeconvolutionResult",
    "Geometry",
    "conv_matrix",
    "conv_operator",
    "conv_transpose_matrix",
    "conv_transpose_operator",
    "convolution_matrix",
    "convolve",
    "correlate",
    "correlation_matrix",
    "deconvolve",
    "datasets",
    "dense_to_conv",
    "dottest",
    "estimate_noise_std",
    "fft",
    "fold",
    "from_torch",
    "get_workers",
    "operator_norm",
    "plot",
    "pointwise_conv_weight",
    "set_workers",
    "singular_values",
    "unfold",
    "unfold_matrix",
]
