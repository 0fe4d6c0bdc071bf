"""Sphinx configuration for the linconv documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
Matrices are rendered by linconv itself (the ``linconv-matrix`` directive) and
figures by linconv.plot through matplotlib's plot directive, both at build time, and the
maths is rendered by a local MathJax (no network).
"""

import os

import linconv

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
    "linconv.sphinxext",
]

autosummary_generate = True
templates_path = ["_templates"]  # classes without member tables (numpydoc documents them)
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
exclude_patterns = ["_build", "_inventories"]
nitpicky = True  # every cross-reference must resolve (the build runs with -W)

# Cross-links into the projects linconv builds on, from the committed snapshot of
# their real inventories in _inventories/ (refresh: python docs/refresh_inventories.py).
# The build never reaches the network; a project without a snapshot gets no links.
INVENTORIES = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "scipy": "https://docs.scipy.org/doc/scipy",
    "sympy": "https://docs.sympy.org/latest",
}
_here = os.path.dirname(os.path.abspath(__file__))
intersphinx_mapping = {
    name: (url, (os.path.join(_here, "_inventories", f"{name}.inv"),))
    for name, url in INVENTORIES.items()
    if os.path.exists(os.path.join(_here, "_inventories", f"{name}.inv"))
}
# targets of projects without a snapshot cannot resolve: do not fail on those
nitpick_ignore = [("py:class", "AxisGeometry"), ("py:class", "Channels")]  # private
nitpick_ignore_regex = [(r"py:.*", rf"{name}\..*") for name in INVENTORIES
                        if name not in intersphinx_mapping]

# MathJax from a local copy (the sphinx-mathjax-offline package of the docs extra),
# so the maths renders with no network.  Only the TeX-to-HTML component and its
# fonts are copied into the build.
mathjax_path = "mathjax/tex-chtml.js"


def _copy_mathjax(app, exc):
    import importlib.util
    import shutil
    if exc is not None or app.builder.format != "html":
        return
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None:
        raise RuntimeError("the docs need a local MathJax: pip install -e '.[docs]' "
                           "(sphinx-mathjax-offline)")
    source = os.path.join(spec.submodule_search_locations[0], "static", "mathjax")
    target = os.path.join(app.outdir, "_static", "mathjax")
    os.makedirs(target, exist_ok=True)
    shutil.copy2(os.path.join(source, "tex-chtml.js"), target)
    fonts = os.path.join("output", "chtml", "fonts", "woff-v2")
    shutil.copytree(os.path.join(source, fonts), os.path.join(target, fonts),
                    dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", _copy_mathjax)


plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.autolayout": True, "font.size": 9}
plot_pre_code = "import numpy as np\nimport linconv"

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
