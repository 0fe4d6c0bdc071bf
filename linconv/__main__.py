"""Command line: ``python -m linconv matrix ...`` (also installed as ``linconv``)."""

from __future__ import annotations

import argparse
import sys

MATRIX_HELP = """\
Print the exact convolution matrix with a symbolic kernel.

examples:
  linconv matrix --input 4x4 --kernel 3x3 --mode valid
  linconv matrix --input 5 --kernel 3 --mode same --boundary wrap --format latex
  linconv matrix --input 4x4 --kernel 2x2 --channels 2,3 --format markdown
"""


def _sizes(text: str) -> tuple[int, ...]:
    """'4x4' -> (4, 4); '5' -> (5,)."""
    try:
        sizes = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4x4 or 5; got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive; got {text!r}")
    return sizes


def _mode(text: str):
    if text in ("full", "same", "valid"):
        return text
    try:
        return _sizes(text)[0] if "x" not in text else _sizes(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected full, same, valid or a padding like 1 or 1x2; got {text!r}") from None


def _channels(text: str) -> tuple[int, int]:
    try:
        c_in, c_out = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C_IN,C_OUT like 2,3; got {text!r}") from None
    if c_in < 1 or c_out < 1:
        raise argparse.ArgumentTypeError(f"channel counts must be positive; got {text!r}")
    return c_in, c_out


def _per_axis(value: tuple[int, ...]):
    return value[0] if len(value) == 1 else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linconv", description="linconv: discrete "
                                     "convolution as exact linear algebra.")
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("matrix", help="print a symbolic convolution matrix",
                            description=MATRIX_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--input", type=_sizes, required=True, metavar="SIZES",
                   help="input size per axis, e.g. 4x4 (2-D) or 8 (1-D)")
    m.add_argument("--kernel", type=_sizes, required=True, metavar="SIZES",
                   help="kernel size per axis, same number of axes as --input")
    m.add_argument("--mode", type=_mode, default="full",
                   help="full (default), same, valid, or explicit zero padding per side "
                        "(1) or per axis (1x2)")
    m.add_argument("--boundary", default="zero",
                   help="zero (default), wrap, reflect, symmetric or edge (numpy.pad names)")
    m.add_argument("--stride", type=_sizes, default=(1,), metavar="S",
                   help="stride, one value or one per axis (2x1)")
    m.add_argument("--dilation", type=_sizes, default=(1,), metavar="D",
                   help="dilation, one value or one per axis")
    m.add_argument("--correlate", action="store_true",
                   help="correlation (kernel not flipped) instead of convolution")
    m.add_argument("--channels", type=_channels, metavar="C_IN,C_OUT",
                   help="a convolution layer (PyTorch semantics) with these channel counts; "
                        "its weights are w_{o,c,i,j}")
    m.add_argument("--groups", type=int, default=1, help="channel groups (with --channels)")
    m.add_argument("--format", choices=("text", "latex", "markdown"), default="text",
                   help="output format (default text)")
    m.add_argument("--max-size", type=int, default=16, metavar="N",
                   help="show at most N rows and columns, eliding the middle (default 16)")
    d = commands.add_parser("demo", help="deblur a generated image end to end",
                            description="Blur a generated phantom (9x9 Gaussian, zero "
                            "boundary), add noise, deblur it several ways with linconv and "
                            "print PSNR, iterations and time. No download.")
    d.add_argument("--size", type=int, default=256, help="image size (default 256)")
    d.add_argument("--noise", type=float, default=0.01, help="noise sigma (default 0.01)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--output", metavar="DIR",
                   help="also write a before/after PNG there (needs matplotlib)")
    return parser


def _matrix_command(args) -> str:
    from . import symbolic
    if len(args.kernel) != len(args.input):
        raise ValueError(f"--kernel {'x'.join(map(str, args.kernel))} must have as many axes "
                         f"as --input {'x'.join(map(str, args.input))}")
    stride, dilation = _per_axis(args.stride), _per_axis(args.dilation)
    if args.channels:
        c_in, c_out = args.channels
        if c_in % args.groups or c_out % args.groups:
            raise ValueError(f"--groups {args.groups} must divide both channel counts "
                             f"{c_in},{c_out}")
        weight = symbolic.kernel_symbols((c_out, c_in // args.groups) + args.kernel, "w")
        padding = 0 if args.mode == "full" else args.mode
        if args.mode == "full":
            raise ValueError("--mode full is not a layer padding; use same, valid or a number")
        matrix = symbolic.conv_matrix(weight, (c_in,) + args.input, stride=stride,
                                      padding=padding, dilation=dilation, groups=args.groups,
                                      padding_mode=args.boundary)
        what = (f"conv layer {c_in}->{c_out} channels (groups {args.groups}), "
                f"kernel {'x'.join(map(str, args.kernel))}")
    else:
        build = symbolic.correlation_matrix if args.correlate else symbolic.convolution_matrix
        matrix = build(symbolic.kernel_symbols(args.kernel), args.input, args.mode,
                       boundary=args.boundary, stride=stride, dilation=dilation)
        what = (f"{'correlation' if args.correlate else 'convolution'} with kernel "
                f"{'x'.join(map(str, args.kernel))}")
    limits = dict(max_rows=args.max_size, max_cols=args.max_size)
    if args.format == "latex":
        return symbolic.to_latex(matrix, **limits)
    if args.format == "markdown":
        return symbolic.to_markdown(matrix, **limits)
    header = (f"{what} on input {'x'.join(map(str, args.input))}, mode {args.mode}, "
              f"boundary {args.boundary}: {matrix.shape[0]} x {matrix.shape[1]}")
    return header + "\n" + symbolic.to_text(matrix, **limits)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "matrix":
            print(_matrix_command(args))
        elif args.command == "demo":
            if args.size < 16:
                raise ValueError(f"--size must be at least 16; got {args.size}")
            if not args.noise >= 0:
                raise ValueError(f"--noise must be non-negative; got {args.noise}")
            from ._demo import run
            run(args.size, args.noise, args.seed, args.output)
    except (ValueError, TypeError, MemoryError) as exc:
        parser.exit(2, f"linconv {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
