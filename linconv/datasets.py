"""Test images, blur kernels and a quality metric for examples and benchmarks (no download).

phantom          -- a procedural test image in [0, 1] (Shepp-Logan ellipses, shaded)
gaussian_kernel  -- a normalised Gaussian blur kernel (point spread function)
psnr             -- peak signal-to-noise ratio of an estimate, for images in [0, 1]
"""

from ._demo import gaussian_kernel, phantom, psnr

__all__ = ["gaussian_kernel", "phantom", "psnr"]
