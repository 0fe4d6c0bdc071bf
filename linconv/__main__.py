"""Command line: ``python -m linconv matrix ...`` (also installed as ``linconv``)."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

MATRIX_HELP = """\
Print the exact convolution matrix with a symbolic (or numeric) kernel, or draw it.

examples:
  linconv matrix --input 4x4 --kernel 3x3 --mode valid
  linconv matrix --input 5 --kernel 3 --mode same --boundary wrap --format latex
  linconv matrix --input 4x4 --kernel 2x2 --channels 2,3 --format markdown
  linconv matrix --input 6 --values "[1, -2, 1]" --mode same --boundary symmetric
  linconv matrix --input 8x8 --kernel 3x3 --mode same --format png --output A.png
"""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._build import FLAGS, OPTIONS
    parser = argparse.ArgumentParser(prog="linconv", description="linconv: discrete "
                                     "convolution as exact linear algebra.")
    parser.add_argument("--version", action="version", version=f"linconv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("matrix", help="print a symbolic convolution matrix",
                            description=MATRIX_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    metavars = {"input": "SIZES", "kernel": "SIZES", "stride": "S", "dilation": "D",
                "channels": "C_IN,C_OUT", "groups": "G", "max-size": "N", "values": "LIST"}
    for name, text in OPTIONS.items():  # parsed by build_matrix, shared with the directive
        if name in FLAGS:
            m.add_argument(f"--{name}", action="store_true", help=text)
        else:
            m.add_argument(f"--{name}", metavar=metavars.get(name, name.upper()), help=text)
    m.add_argument("--format", choices=("text", "latex", "markdown", "png", "svg"),
                   default="text", help="output format (default text); png and svg draw "
                   "the matrix with linconv.plot (need matplotlib and --output)")
    m.add_argument("--output", metavar="FILE", help="write to FILE instead of printing")
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


# a figure of more entries than this would be unreadable and slow to draw
MAX_FIGURE_ENTRIES = 2 ** 22


def _matrix_command(args) -> str | None:
    from ._build import FLAGS, OPTIONS, build_matrix, render
    options = {name: getattr(args, name.replace("-", "_")) for name in OPTIONS}
    options = {name: value for name, value in options.items()
               if value is not None and not (name in FLAGS and not value)}
    if args.format in ("png", "svg"):
        if not args.output:
            raise ValueError(f"`--format {args.format}` needs `--output FILE`")
        built = build_matrix(options, all_rows=False)  # validates cheaply first
        size = built.matrix.shape[0] * built.matrix.shape[1]
        if size > MAX_FIGURE_ENTRIES:
            raise ValueError(f"the matrix has {size} entries, too many to draw (at most "
                             f"{MAX_FIGURE_ENTRIES}); use a smaller --input")
        from .plot import matrix as plot_matrix
        built = build_matrix(options, all_rows=True)
        ax = plot_matrix(built.matrix, blocks=built.blocks)
        ax.set_title(built.description, fontsize=8)
        _write(args.output, lambda path: ax.figure.savefig(path, format=args.format,
                                                           bbox_inches="tight"))
        return None
    text = render(build_matrix(options), args.format)
    if args.output:
        _write(args.output, lambda path: pathlib.Path(path).write_text(text + "\n"))
        return None
    return text


def _write(path: str, write) -> None:
    try:
        write(path)
    except OSError as exc:
        raise ValueError(f"cannot write `--output` {path!r}: {exc.strerror or exc}") from None


def _check_directory(path: str) -> None:
    """Fail before a long run, not after it, when `path` cannot take the figure."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create `--output` directory {path!r}: "
                         f"{exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"`--output` directory {path!r} is not writable")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "matrix":
            text = _matrix_command(args)
            if text is not None:
                print(text)
        elif args.command == "demo":
            if args.size < 16:
                raise ValueError(f"--size must be at least 16; got {args.size}")
            if not args.noise >= 0:
                raise ValueError(f"--noise must be non-negative; got {args.noise}")
            if args.output:
                _check_directory(args.output)
            from ._demo import run
            run(args.size, args.noise, args.seed, args.output)
    except (ValueError, TypeError, MemoryError, OSError) as exc:
        parser.exit(2, f"linconv {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
