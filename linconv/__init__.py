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

from ._convolve import convolve, correlate
from ._geometry import Geometry
from ._operator import ConvolutionOperator
from ._sparse import convolution_matrix, correlation_matrix
from ._validation import BOUNDARIES

__version__ = "0.1.0"

__all__ = [
    "BOUNDARIES",
    "ConvolutionOperator",
    "Geometry",
    "convolution_matrix",
    "convolve",
    "correlate",
    "correlation_matrix",
]
