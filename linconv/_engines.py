"""Application engines of the operators: each reads the geometry, none repeats it.

An engine applies the correlation ``A`` (``forward``) and its conjugate
transpose ``A^H`` (``adjoint``) to batches of shape ``(B, *input_shape)`` /
``(B, *output_shape)`` already cast to the compute dtype.
"""

from __future__ import annotations

import numpy as np

from ._geometry import Geometry
from ._sparse import correlation_csr

__all__ = ["make_engine", "SparseEngine"]


class SparseEngine:
    """The CSR matrix and its conjugate transpose, built once and cached."""

    name = "sparse"

    def __init__(self, geometry: Geometry, weights: np.ndarray):
        self.geometry = geometry
        self._matrix = correlation_csr(geometry, weights)
        self._adjoint = self._matrix.T.conj().tocsr()

    def matrix(self):
        return self._matrix

    @staticmethod
    def _apply(matrix, x, out_shape):
        batch = len(x)
        flat = x.reshape(batch, -1)
        y = matrix @ flat[0] if batch == 1 else (matrix @ flat.T).T
        return np.asarray(y).reshape((batch,) + out_shape)

    def forward(self, x):
        return self._apply(self._matrix, x, self.geometry.output_shape)

    def adjoint(self, y):
        return self._apply(self._adjoint, y, self.geometry.input_shape)


_ENGINES = {"sparse": SparseEngine}


def make_engine(method: str, geometry: Geometry, weights: np.ndarray):
    """Build the engine for `method` ("auto" picks the fastest available)."""
    if method == "auto":
        method = "sparse"
    if method not in _ENGINES:
        raise NotImplementedError(f"`method` {method!r} is not available yet; use 'sparse'")
    return _ENGINES[method](geometry, weights)
