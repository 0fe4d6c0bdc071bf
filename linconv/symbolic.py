"""Symbolic convolution matrices with sympy (imported on first use).

Derive the exact matrices of :mod:`linconv` with symbolic kernels, integers or
Rationals, and render them for documents.

Matrices
--------
kernel_symbols         -- an array of sympy Symbols ``h_{i,j}``
convolution_matrix     -- the (multilevel) Toeplitz matrix of a convolution
correlation_matrix     -- the same for correlation
conv_matrix            -- a convolution layer's block-Toeplitz matrix (PyTorch semantics)
conv_transpose_matrix  -- the transposed convolution's matrix

Structure
---------
convolve, correlate    -- the output expressions ``y = A x``
block_partition        -- the Toeplitz / channel blocks as a sympy BlockMatrix

Rendering
---------
to_latex, to_markdown, to_text  -- for documents, eliding large matrices

Substituting numbers for the symbols gives exactly the numeric sparse matrix of
the same call.
"""

from ._symbolic import (block_partition, conv_matrix, conv_transpose_matrix, convolution_matrix,
                        convolve, correlate, correlation_matrix, kernel_symbols, to_latex,
                        to_markdown, to_text)

__all__ = ["block_partition", "conv_matrix", "conv_transpose_matrix", "convolution_matrix",
           "convolve", "correlate", "correlation_matrix", "kernel_symbols", "to_latex",
           "to_markdown", "to_text"]
