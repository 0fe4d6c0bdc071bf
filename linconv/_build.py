"""``build_matrix``: the one reading of the matrix options, shared by ``python -m linconv
matrix`` and the ``.. linconv-matrix::`` Sphinx directive.

Options are text (as typed on the command line or in a directive); every bad
value is a ValueError that names the option, never argparse's SystemExit.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["OPTIONS", "BuiltMatrix", "build_matrix", "render", "parse_sizes"]

# option -> help (the CLI adds "--", the directive uses the names as they are)
OPTIONS = {
    "input": "input size per axis, e.g. 4x4 (2-D) or 8 (1-D); required",
    "kernel": "kernel size per axis, same number of axes as --input (or give --values)",
    "values": "numeric (or sympy) kernel instead of symbols, e.g. '[1, 2, 1]' or "
              "'[[0, 1], [1/2, 1]]'; with --channels the weight (C_out, C_in/groups, *k)",
    "mode": "full (default), same, valid, or explicit padding (filled by --boundary): "
            "one value for every side (1), one per axis in N-D (1x2), or before x after in "
            "1-D (1x2: 1 before, 2 after); for a layer (--channels) the padding, full = "
            "kernel span - 1",
    "boundary": "zero (default), wrap, reflect, symmetric or edge (numpy.pad names)",
    "stride": "stride, one value or one per axis (2x1)",
    "dilation": "dilation, one value or one per axis",
    "correlate": "correlation (kernel not flipped) instead of convolution",
    "channels": "a convolution layer (PyTorch semantics) with C_IN,C_OUT channels; its "
                "weights are w_{o,c,i,j}",
    "groups": "channel groups (needs --channels; default 1)",
    "max-size": "show at most N rows and columns, eliding the middle (default 16)",
    "no-blocks": "no partition lines between the blocks of a multi-axis matrix (LaTeX and "
                 "png/svg output; text and markdown draw none)",
}
FLAGS = ("correlate", "no-blocks")


def parse_sizes(text, option: str) -> tuple[int, ...]:
    """'4x4' -> (4, 4); '5' -> (5,); positive integers only."""
    try:
        sizes = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"`{option}` expected sizes like 4x4 or 5; got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"`{option}` sizes must be positive integers; got {text!r}")
    return sizes


def _positive(text, option: str, minimum: int = 1) -> int:
    try:
        value = int(str(text))
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"`{option}` must be an integer >= {minimum}; got {text!r}")
    return value


def _mode(text):
    if text in ("full", "same", "valid"):
        return text
    try:
        sizes = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        sizes = ()
    if not sizes or any(s < 0 for s in sizes):
        raise ValueError(f"`mode` expected full, same, valid or a padding like 1 or 1x2; "
                         f"got {text!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def _channels(text) -> tuple[int, int]:
    try:
        c_in, c_out = (int(part) for part in str(text).split(","))
    except ValueError:
        raise ValueError(f"`channels` expected C_IN,C_OUT like 2,3; got {text!r}") from None
    if c_in < 1 or c_out < 1:
        raise ValueError(f"`channels` counts must be positive; got {text!r}")
    return c_in, c_out


# what `values` may contain: numbers, symbols, arithmetic and these functions (the text is
# read by sympy's parser, which evaluates Python, so nothing else may reach it)
_VALUE_FUNCTIONS = frozenset({"sqrt", "Rational", "exp", "log", "sin", "cos", "tan", "Abs",
                              "conjugate", "re", "im"})
_VALUE_NODES = (ast.Expression, ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.operator,
                ast.unaryop, ast.Load)


def _check_values_syntax(text: str) -> None:
    """ValueError unless `text` is a nested list of numbers, symbols and arithmetic."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, _VALUE_NODES):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)) \
                and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Name) and not node.id.startswith("_"):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in _VALUE_FUNCTIONS and not node.keywords:
            continue
        raise ValueError(f"`values` may hold numbers, symbols, + - * / ** and the functions "
                         f"{', '.join(sorted(_VALUE_FUNCTIONS))}; got {ast.unparse(node)!r} "
                         f"in {text!r}")


def _values(text) -> np.ndarray:
    import sympy
    text = str(text)
    try:
        _check_values_syntax(text)
        parsed = sympy.sympify(text, rational=True)
    except (sympy.SympifyError, SyntaxError, TypeError) as exc:
        raise ValueError(f"`values` must be a nested list of numbers or sympy expressions "
                         f"like [1, 2, 1]; got {text!r}") from exc
    from ._symbolic import as_symbolic
    try:
        return as_symbolic(parsed if isinstance(parsed, (list, tuple)) else [parsed], "values")
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _per_axis(value: tuple[int, ...]):
    return value[0] if len(value) == 1 else value


def _dims(shape) -> str:
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class BuiltMatrix:
    """What :func:`build_matrix` made.

    ``matrix`` has the full shape but holds only the entries of ``rows`` (all
    rows when ``rows`` is None): the ones that are printed.
    """

    matrix: object
    rows: tuple[int, ...] | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    blocks: tuple[int, int] | None
    max_size: int
    description: str


def _shown_rows(size: int, limit: int) -> list[int]:
    from ._symbolic import _shown
    return [i for i in _shown(size, limit) if i is not None]


def build_matrix(options: Mapping[str, object], *, all_rows: bool = False) -> BuiltMatrix:
    """Build the matrix described by `options` (option name -> text, flags -> True).

    Only the rows that will be printed (``max-size``) are computed unless
    `all_rows` (a figure needs them all).

    Raises
    ------
    ValueError
        For any bad option, naming it.
    """
    from . import _symbolic as sym
    from ._geometry import Geometry
    from ._nn import _conv_geometry
    from ._sparse import correlation_weights

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))}; the options are "
                         f"{', '.join(OPTIONS)}")
    get = options.get
    if get("input") is None:
        raise ValueError("`input` is required (sizes like 4x4 or 5)")
    input_shape = parse_sizes(get("input"), "input")
    values = _values(get("values")) if get("values") is not None else None
    channels = _channels(get("channels")) if get("channels") is not None else None
    groups = _positive(get("groups"), "groups") if get("groups") is not None else 1
    if get("groups") is not None and channels is None:
        raise ValueError("`groups` needs `channels` (groups split a layer's channels)")
    lead = 2 if channels else 0  # weight axes before the kernel's
    if get("kernel") is not None:
        kernel = parse_sizes(get("kernel"), "kernel")
    elif values is not None:
        kernel = values.shape[lead:]
    else:
        raise ValueError("give `kernel` (sizes like 3x3) or `values` (a numeric kernel)")
    if len(kernel) != len(input_shape):
        raise ValueError(f"`kernel` {_dims(kernel)} must have as many axes as `input` "
                         f"{_dims(input_shape)}")
    mode = _mode(get("mode", "full"))
    boundary = str(get("boundary", "zero"))
    stride = _per_axis(parse_sizes(get("stride", "1"), "stride"))
    dilation = _per_axis(parse_sizes(get("dilation", "1"), "dilation"))
    max_size = _positive(get("max-size", 16), "max-size", minimum=2)
    correlate = bool(get("correlate"))

    if channels:
        c_in, c_out = channels
        if c_in % groups or c_out % groups:
            raise ValueError(f"`groups` {groups} must divide both channel counts {c_in},{c_out}")
        shape = (c_out, c_in // groups) + kernel
        weight = sym.kernel_symbols(shape, "w") if values is None else values
        if weight.shape != shape:
            raise ValueError(f"`values` must have shape (C_out, C_in/groups, *kernel) = {shape}; "
                             f"got {weight.shape}")
        padding = mode
        if mode == "full":  # the layer padding of a full correlation, from the geometry
            padding = Geometry.from_args(kernel, input_shape, "full", "zero", stride,
                                         dilation).pads
        if correlate:
            raise ValueError("`correlate` is for single-channel kernels; a layer (`channels`) "
                             "always correlates (PyTorch semantics)")
        weight, geometry = _conv_geometry(weight, (c_in,) + input_shape, stride, padding,
                                          dilation, groups, boundary, check=sym.as_symbolic)
        what = f"conv layer {c_in}->{c_out} channels (groups {groups}), kernel {_dims(kernel)}"
    else:
        weight = sym.kernel_symbols(kernel) if values is None else values
        if weight.shape != kernel:
            raise ValueError(f"`values` must have the kernel's shape {kernel}; got "
                             f"{weight.shape}")
        geometry = Geometry.from_args(kernel, input_shape, mode, boundary, stride, dilation)
        weight = correlation_weights(weight, correlate)
        what = f"{'correlation' if correlate else 'convolution'} with kernel {_dims(kernel)}"
    out_shape, in_shape = geometry.output_shape, geometry.input_shape
    rows = None if all_rows else tuple(_shown_rows(geometry.output_size, max_size))
    matrix = sym.rows_matrix(geometry, weight,
                             np.arange(geometry.output_size) if rows is None else rows)
    blocks = None
    if len(in_shape) > 1 and not get("no-blocks"):
        blocks = (math.prod(out_shape[1:]), math.prod(in_shape[1:]))
    description = (f"{what} on input {_dims(input_shape)}, mode {mode}, boundary {boundary}: "
                   f"{geometry.output_size} x {geometry.input_size}")
    return BuiltMatrix(matrix, rows, in_shape, out_shape, blocks, max_size, description)


def render(built: BuiltMatrix, format: str = "text") -> str:
    """The matrix as text (with a header line), LaTeX or Markdown."""
    from . import _symbolic as sym
    limits = dict(max_rows=built.max_size, max_cols=built.max_size)
    if format == "latex":
        return sym.to_latex(built.matrix, blocks=built.blocks, **limits)
    if format == "markdown":
        return sym.to_markdown(built.matrix, **limits)
    if format == "text":
        return built.description + "\n" + sym.to_text(built.matrix, **limits)
    raise ValueError(f"`format` must be text, latex or markdown; got {format!r}")
