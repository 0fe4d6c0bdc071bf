"""The convolution theorem: spectra, exact O(N log N) solves and preconditioners.

convolve, correlate  -- any geometry by FFT (the operators' "fft" engine)
eigenvalues          -- of the circulant / multilevel-circulant ("wrap", "same") operator
dct_eigenvalues      -- of the "symmetric"-boundary operator with a symmetric kernel
solve                -- min ||A x - y||^2 + damp^2 ||x||^2 by FFT ("wrap") or DCT ("symmetric")
preconditioner       -- approximates (A^H A + damp^2 I)^{-1} for scipy's cg
SpectralOperator     -- T^{-1} diag(d) T for the orthonormal DFT or DCT-II
"""

from ._fft import (IllConditionedWarning, SpectralModel, SpectralOperator, convolve, correlate,
                   dct_eigenvalues, eigenvalues, preconditioner, solve)

__all__ = ["IllConditionedWarning", "SpectralOperator", "convolve", "correlate",
           "dct_eigenvalues", "eigenvalues", "preconditioner", "solve", "SpectralModel"]
