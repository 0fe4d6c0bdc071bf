"""Quickstart: the matrix of a convolution, checked against scipy, and its operator."""

import numpy as np
import scipy.signal

import linconv

# The 1-D "same" convolution with [1, 2, 3] on 5 samples is a Toeplitz matrix.
A = linconv.convolution_matrix([1, 2, 3], 5, mode="same")
print("convolution_matrix([1, 2, 3], 5, 'same'):")
print(A.toarray())

# With the periodic boundary it is circulant.
print("\nthe same with boundary='wrap' (circulant):")
print(linconv.convolution_matrix([1, 2, 3], 5, mode="same", boundary="wrap").toarray())

# 2-D: a doubly-block Toeplitz matrix that reproduces scipy.signal.convolve exactly.
rng = np.random.default_rng(0)
image, kernel = rng.standard_normal((64, 64)), rng.standard_normal((9, 9))
A2 = linconv.convolution_matrix(kernel, image.shape, mode="same")
error = np.abs(A2 @ image.ravel() - scipy.signal.convolve(image, kernel, "same").ravel()).max()
print(f"\n2-D: {A2.shape[0]}x{A2.shape[1]} matrix, {A2.nnz:,} stored entries, "
      f"max difference from scipy.signal.convolve {error:.1e}")

# The matrix-free operator has an exact adjoint: <A x, y> == <x, A^H y>.
op = linconv.ConvolutionOperator(kernel, image.shape, mode="same", boundary="reflect")
y = rng.standard_normal(op.shape[0])
x = image.ravel()
print(f"operator {op.shape}, dot test |<Ax,y> - <x,A^H y>| = "
      f"{abs(np.dot(op @ x, y) - np.dot(x, op.H @ y)):.1e}")
