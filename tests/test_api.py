"""The public surface and import-time promises."""

import subprocess
import sys

import linconv

CONTRACT = ["convolution_matrix", "correlation_matrix", "convolve", "correlate",
            "ConvolutionOperator", "conv_operator", "conv_matrix", "conv_transpose_operator",
            "conv_transpose_matrix", "unfold", "fold", "unfold_matrix", "set_workers",
            "get_workers", "singular_values", "operator_norm", "from_torch", "dottest",
            "plot"]
SYMBOLIC = ["kernel_symbols", "convolution_matrix", "correlation_matrix", "conv_matrix",
            "conv_transpose_matrix"]


def test_public_names():
    for name in CONTRACT:
        assert name in linconv.__all__ and hasattr(linconv, name)
    assert set(linconv.__all__) <= set(dir(linconv))
    assert isinstance(linconv.__version__, str)
    from linconv import fft, symbolic
    for name in SYMBOLIC:
        assert name in symbolic.__all__ and hasattr(symbolic, name)
    for name in ["convolve", "correlate", "eigenvalues", "solve", "preconditioner"]:
        assert name in fft.__all__ and hasattr(fft, name)
    from linconv import plot, sphinxext
    for name in ["matrix", "receptive_field"]:
        assert name in plot.__all__ and hasattr(plot, name)
    assert callable(sphinxext.setup)


def test_import_does_not_import_sympy_or_optional_packages():
    code = ("import sys, linconv, linconv.plot, linconv.sphinxext; bad = [m for m in "
            "('sympy', 'torch', 'pylops', 'matplotlib', 'sphinx', 'docutils') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
