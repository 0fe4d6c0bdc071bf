"""Sphinx configuration for the linconv documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
Matrices are rendered by linconv itself (the ``linconv-matrix`` directive) and
figures by matplotlib's plot directive, both at build time.
"""

import os
import sys

sys.path.insert(0, os.path.abspath("_ext"))
import linconv  # noqa: E402

project = "linconv"
author = "linconv developers"
copyright = "2026, the linconv developers"
release = version = linconv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "linconv_matrix",
]

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
exclude_patterns = ["_build"]

# Cross-links into the projects linconv builds on.  The published inventories
# come first; offline (CI reaches only the package registries) a small local
# inventory of the objects these pages cite, written at build time under those
# projects' documented URL schemes, keeps the links.
_CITED = {
    "numpy": ("reference/generated/{}.html#{}", {
        "py:function": ["numpy.pad", "numpy.convolve", "numpy.ravel", "numpy.fft.fftn"],
        "py:class": ["numpy.ndarray", "numpy.dtype"]}),
    "scipy": ("reference/generated/{}.html#{}", {
        "py:function": ["scipy.signal.convolve", "scipy.signal.correlate",
                        "scipy.signal.fftconvolve", "scipy.signal.oaconvolve",
                        "scipy.signal.convolve2d", "scipy.ndimage.correlate",
                        "scipy.ndimage.convolve", "scipy.linalg.convolution_matrix",
                        "scipy.sparse.linalg.lsqr", "scipy.sparse.linalg.lsmr",
                        "scipy.sparse.linalg.cg", "scipy.sparse.linalg.gmres",
                        "scipy.fft.fftn", "scipy.fft.dctn"],
        "py:class": ["scipy.sparse.linalg.LinearOperator", "scipy.sparse.csr_array"]}),
    "sympy": ("", {}),
    "python": ("", {}),
}


def _local_inventory(project: str) -> str:
    import zlib
    pattern, objects = _CITED[project]
    lines = [f"{name} {role} 1 {pattern.format(name, name)} -"
             for role, names in objects.items() for name in names]
    path = os.path.join(os.path.dirname(__file__), "_build", "inventories", f"{project}.inv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
                "# The remainder of this file is compressed using zlib.\n".encode())
        f.write(zlib.compress("\n".join(lines).encode() + b"\n"))
    return path


intersphinx_mapping = {
    name: (url, (None, _local_inventory(name)))
    for name, url in (("python", "https://docs.python.org/3"),
                      ("numpy", "https://numpy.org/doc/stable"),
                      ("scipy", "https://docs.scipy.org/doc/scipy"),
                      ("sympy", "https://docs.sympy.org/latest"))
}
intersphinx_timeout = 5

plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.autolayout": True, "font.size": 9}
plot_pre_code = "import numpy as np\nimport linconv"

# MathJax comes from Sphinx's default CDN.  LINCONV_DOCS_MATHJAX=/path/to/tex-chtml.js
# uses a local copy instead (to check the rendering on a machine without a network).
if os.environ.get("LINCONV_DOCS_MATHJAX"):
    mathjax_path = "file://" + os.path.abspath(os.environ["LINCONV_DOCS_MATHJAX"])

html_theme = "pydata_sphinx_theme"
html_title = "linconv"
html_static_path = ["_static"]
html_css_files = ["linconv.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "header_links_before_dropdown": 6,
}
html_sidebars = {"**": []}
