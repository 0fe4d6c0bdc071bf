"""Sphinx extension: the ``.. linconv-matrix::`` directive renders a convolution matrix at
build time, so documents cannot drift from the code.

Add it to any Sphinx project's ``conf.py``::

    extensions = ["linconv.sphinxext"]

and write, with the options of ``python -m linconv matrix`` (same names, same
meaning, read by the same function)::

    .. linconv-matrix::
       :input: 4x4
       :kernel: 3x3
       :mode: valid
       :caption: A 3x3 kernel on a 4x4 image.

Options: ``input`` (required), ``kernel`` or ``values`` (a numeric or sympy
kernel such as ``[1, -2, 1]``), ``mode``, ``boundary``, ``stride``,
``dilation``, ``correlate`` (flag), ``channels`` and ``groups`` (a layer),
``max-size`` (larger matrices are elided with ``\\cdots``, ``\\vdots`` and
``\\ddots``), ``no-blocks`` (flag: no partition lines between the blocks of a
multi-axis matrix) and ``caption``.  The matrix is emitted as display maths
(any Sphinx maths extension renders it).  A bad option is a build error that
names the file and line.
"""

from __future__ import annotations

from functools import lru_cache

from ._build import FLAGS, OPTIONS, build_matrix, render

__all__ = ["setup", "directive"]


@lru_cache(maxsize=None)
def directive():
    """The ``LinconvMatrix`` directive class (docutils and Sphinx are imported here, so
    ``import linconv.sphinxext`` works without them)."""
    from docutils import nodes
    from docutils.parsers.rst import directives
    from sphinx.util.docutils import SphinxDirective

    class LinconvMatrix(SphinxDirective):
        """``.. linconv-matrix::`` -- see :mod:`linconv.sphinxext`."""

        has_content = False
        option_spec = {name: directives.flag if name in FLAGS
                       else directives.unchanged_required for name in OPTIONS}
        option_spec["caption"] = directives.unchanged

        def run(self):
            options = {name: True if name in FLAGS else value
                       for name, value in self.options.items() if name != "caption"}
            try:
                latex = render(build_matrix(options), "latex")
            except (ValueError, TypeError, MemoryError) as exc:
                raise self.error(f"linconv-matrix: {exc}") from None
            node = nodes.math_block(latex, latex, nowrap=False, number=None)
            node["docname"] = self.env.docname
            self.set_source_info(node)
            result = [node]
            if "caption" in self.options:
                result.append(nodes.paragraph(text=self.options["caption"],
                                              classes=["matrix-caption"]))
            return result

    return LinconvMatrix


def setup(app):
    """Register the directive (Sphinx calls this for ``extensions = ["linconv.sphinxext"]``)."""
    from . import __version__
    app.add_directive("linconv-matrix", directive())
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
