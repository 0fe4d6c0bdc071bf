"""Sphinx directive ``.. linconv-matrix::``: a convolution matrix rendered by linconv at build time.

Options mirror ``python -m linconv matrix``::

    .. linconv-matrix::
       :input: 4x4
       :kernel: 3x3
       :mode: valid

The matrix is derived with :mod:`linconv.symbolic` and emitted as display math,
so the documentation cannot drift from the code.
"""

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

from linconv.__main__ import _channels, _mode, _sizes, build_parser


class LinconvMatrix(SphinxDirective):
    has_content = False
    option_spec = {
        "input": directives.unchanged_required, "kernel": directives.unchanged_required,
        "mode": directives.unchanged, "boundary": directives.unchanged,
        "stride": directives.unchanged, "dilation": directives.unchanged,
        "correlate": directives.flag, "channels": directives.unchanged,
        "groups": directives.unchanged, "max-size": directives.unchanged,
        "caption": directives.unchanged,
    }

    def run(self):
        from linconv import symbolic
        from linconv.__main__ import _per_axis
        o = self.options
        argv = ["matrix", "--input", o["input"], "--kernel", o["kernel"]]
        for name in ("mode", "boundary", "stride", "dilation", "channels", "groups",
                     "max-size"):
            if name in o:
                argv += [f"--{name}", o[name]]
        if "correlate" in o:
            argv.append("--correlate")
        args = build_parser().parse_args(argv)
        stride, dilation = _per_axis(args.stride), _per_axis(args.dilation)
        if args.channels:
            c_in, c_out = args.channels
            weight = symbolic.kernel_symbols((c_out, c_in // args.groups) + args.kernel, "w")
            matrix = symbolic.conv_matrix(weight, (c_in,) + args.input, stride=stride,
                                          padding=0 if args.mode == "full" else args.mode,
                                          dilation=dilation, groups=args.groups,
                                          padding_mode=args.boundary)
        else:
            build = symbolic.correlation_matrix if args.correlate else symbolic.convolution_matrix
            matrix = build(symbolic.kernel_symbols(args.kernel), args.input, args.mode,
                           boundary=args.boundary, stride=stride, dilation=dilation)
        latex = symbolic.to_latex(matrix, max_rows=args.max_size, max_cols=args.max_size)
        node = nodes.math_block(latex, latex, nowrap=False, number=None)
        node["docname"] = self.env.docname
        result = [node]
        if "caption" in o:
            result.append(nodes.paragraph(text=o["caption"], classes=["matrix-caption"]))
        return result


def setup(app):
    app.add_directive("linconv-matrix", LinconvMatrix)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
