"""python -m linconv: the shared build_matrix, its errors, partial builds and figures."""

import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import sympy

import linconv
import linconv._pattern
import linconv.symbolic
from linconv.__main__ import MATRIX_HELP, main
from linconv._build import build_matrix, render
from cases import Case, dense_by_columns, oracle_convolve, oracle_correlate


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr), SystemExit included."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("line", [line.strip() for line in MATRIX_HELP.splitlines()
                                  if line.strip().startswith("linconv matrix")])
def test_every_help_example_runs(capsys, tmp_path, line):
    argv = shlex.split(line)[1:]
    if "--output" in argv:
        pytest.importorskip("matplotlib")
        argv[argv.index("--output") + 1] = str(tmp_path / "A.png")
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out or (tmp_path / "A.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--groups", "0", "--channels", "2,2"], r"`groups` must be an integer >= 1; got '0'"),
    (["--groups", "2"], r"`groups` needs `channels`"),
    (["--max-size", "0"], r"`max-size` must be an integer >= 2; got '0'"),
    (["--channels", "2,3", "--groups", "2"], r"`groups` 2 must divide both channel counts 2,3"),
    (["--stride", "0"], r"`stride` sizes must be positive integers; got '0'"),
    (["--mode", "sideways"], r"`mode` expected full, same, valid or a padding"),
    (["--values", "[1, 2"], r"`values` must be a nested list"),
    (["--values", "[1, 2]"], r"`values` must have the kernel's shape \(3,\); got \(2,\)"),
    (["--channels", "2,2", "--correlate"], r"`correlate` is for single-channel kernels"),
    (["--format", "png"], r"`--format png` needs `--output FILE`"),
])
def test_matrix_errors_are_messages(capsys, argv, message):
    code, out, err = run(capsys, "matrix", "--input", "4", "--kernel", "3", *argv)
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err), err


@pytest.mark.parametrize("text", [
    "[__import__('os').system('touch {marker}'), 1, 1]",
    "[().__class__.__bases__[0].__subclasses__(), 1, 1]",
    "[open('{marker}', 'w'), 1, 1]", "[exec('import os'), 1, 1]", "['a', 1, 1]"])
def test_values_are_parsed_never_executed(capsys, tmp_path, text):
    """sympy's parser evaluates Python: anything but numbers, symbols and arithmetic is
    refused before it runs (the CLI and the docs directive share this parser)."""
    marker = tmp_path / "ran"
    text = text.format(marker=marker)
    code, out, err = run(capsys, "matrix", "--input", "4", "--values", text)
    assert code == 2 and "`values` may hold numbers, symbols" in err, err
    assert not marker.exists()
    with pytest.raises(ValueError, match="may hold numbers"):
        build_matrix({"input": "4", "values": text})
    assert not marker.exists()


def test_values_take_symbols_functions_and_exact_numbers():
    built = build_matrix({"input": "3", "values": "[a**2, sqrt(2)/3, Rational(1, 7)]",
                          "mode": "valid"})
    import sympy
    a = sympy.Symbol("a")
    # convolution: the first row holds the kernel reversed
    assert list(built.matrix.row(0)) == [sympy.Rational(1, 7), sympy.sqrt(2) / 3, a**2]


def test_version_and_demo_output_errors(capsys, tmp_path):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"linconv {linconv.__version__}"
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run(capsys, "demo", "--size", "16", "--output", str(blocker / "sub"))
    assert code == 2 and "cannot create `--output` directory" in err
    code, _, err = run(capsys, "matrix", "--input", "4", "--kernel", "3", "--output",
                       str(blocker / "x.txt"))
    assert code == 2 and "cannot write `--output`" in err


def test_output_file(capsys, tmp_path):
    path = tmp_path / "m.tex"
    code, out, _ = run(capsys, "matrix", "--input", "4", "--kernel", "2", "--format", "latex",
                       "--output", str(path))
    assert code == 0 and out == ""
    assert path.read_text().startswith("\\begin{bmatrix}")


@pytest.mark.parametrize("case", [
    Case((9, 8), (3, 4), "same", "reflect", (2, 1)),
    Case((7, 6), (2, 3), "full", "wrap", 1, 2),
    Case((30,), (5,), "valid", "zero", 3),
    Case((6, 5), (3, 3), (1, 2), "symmetric", kwargs={"correlate": True}),
], ids=lambda case: case.id)
def test_printed_rows_equal_the_oracle(case):
    """The rows build_matrix computes (only the printed ones) carry exactly the matrix's
    numbers: substitute values and compare with the np.pad + scipy.signal oracle."""
    dims = "x".join
    options = {"input": dims(map(str, case.input_shape)),
               "kernel": dims(map(str, case.kernel_shape)),
               "mode": case.mode if isinstance(case.mode, str) else dims(map(str, case.mode)),
               "boundary": case.boundary, "stride": str(case.stride).strip("()").replace(
                   ", ", "x"), "dilation": str(case.dilation), "max-size": "6"}
    correlate = case.kwargs.get("correlate", False)
    if correlate:
        options["correlate"] = True
    built = build_matrix(options)
    h = np.random.default_rng(0).integers(-5, 6, case.kernel_shape)
    symbols = linconv.symbolic.kernel_symbols(case.kernel_shape)
    numeric = built.matrix.subs(dict(zip(symbols.ravel().tolist(), h.ravel().tolist())))
    oracle = oracle_correlate if correlate else oracle_convolve
    dense = dense_by_columns(lambda x: oracle(x, h.astype(float), case),
                             int(np.prod(case.input_shape)), case.input_shape)
    shown = np.array(built.rows)
    assert built.matrix.shape == dense.shape
    assert len(shown) == 6 and shown[-1] == dense.shape[0] - 1
    got = np.array(numeric.extract(shown.tolist(), list(range(dense.shape[1]))).tolist(),
                   dtype=float)
    np.testing.assert_array_equal(got, dense[shown])
    other = np.setdiff1d(np.arange(dense.shape[0]), shown)[:5]
    assert all(numeric[int(r), :].is_zero_matrix for r in other)  # not computed


def test_layer_mode_full_is_the_full_correlation_padding():
    """One mapping for the CLI and the directive: a layer's mode "full" is padding
    dilation * (k - 1), as torch would need for the full correlation."""
    built = build_matrix({"input": "4x3", "kernel": "2x3", "channels": "2,2", "mode": "full",
                          "dilation": "1x2", "max-size": "200"})
    w = linconv.symbolic.kernel_symbols((2, 2, 2, 3), "w")
    expected = linconv.symbolic.conv_matrix(w, (2, 4, 3), padding=((1, 1), (4, 4)),
                                            dilation=(1, 2))
    assert built.matrix == expected
    assert built.blocks == (5 * 7, 12)


def test_numeric_and_rational_values(capsys):
    code, out, _ = run(capsys, "matrix", "--input", "4", "--values", "[1/4, 1/2, 1/4]",
                       "--mode", "same", "--boundary", "wrap")
    assert code == 0
    assert out.splitlines()[1].split() == ["1/2", "1/4", ".", "1/4"]
    built = build_matrix({"input": "3", "values": "[a, b]", "mode": "valid"})
    a, b = sympy.symbols("a b")
    assert built.matrix == sympy.Matrix([[b, a, 0], [0, b, a]])  # convolution flips


def test_huge_inputs_build_only_the_printed_block(monkeypatch, capsys):
    """No full pattern: only the printed rows' pattern is asked for."""
    whole = linconv._pattern.pattern

    def rows_only(*args, rows=None, **kwargs):
        if rows is None or len(rows) > 100:
            raise AssertionError("the whole pattern was built")
        return whole(*args, rows=rows, **kwargs)
    monkeypatch.setattr(linconv._pattern, "pattern", rows_only)
    code, out, err = run(capsys, "matrix", "--input", "100000x100000", "--kernel", "3x3",
                         "--mode", "same", "--max-size", "4")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("10000000000 x 10000000000")
    assert lines[1].split() == ["h_{1,1}", "h_{1,0}", "...", ".", "."]
    code, out, err = run(capsys, "matrix", "--input", "100000", "--kernel", "3")
    assert code == 0 and out.splitlines()[0].endswith("100002 x 100000")


def test_huge_1d_input_costs_only_the_printed_rows():
    """10^9 samples: the printed rows' columns are computed at those rows only (tracemalloc
    sees numpy's allocations; a per-axis table of every output would be gigabytes)."""
    import tracemalloc
    tracemalloc.start()
    try:
        built = build_matrix({"input": "1000000000", "kernel": "3", "mode": "same",
                              "boundary": "reflect", "max-size": "4"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak
    assert built.matrix.shape == (10**9, 10**9)


def test_latex_block_lines_and_elision():
    built = build_matrix({"input": "4x4", "kernel": "3x3", "mode": "valid"})
    latex = render(built, "latex")
    assert latex.startswith("\\left[\\begin{array}{cccc|cccc|cccc|cccc}")
    assert latex.count("\\hline") == 1
    big = render(build_matrix({"input": "8x8", "kernel": "3x3", "mode": "same"}), "latex")
    for dots in ("\\cdots", "\\vdots", "\\ddots"):
        assert dots in big
    # 64 x 64 in 8 x 8 blocks, 8 + 8 columns shown: lines where blocks end and start
    assert big.splitlines()[0] == "\\left[\\begin{array}{cccccccc|c|cccccccc}"
    assert big.count("\\hline") == 2
    plain = render(build_matrix({"input": "4x4", "kernel": "3x3", "mode": "valid",
                                 "no-blocks": True}), "latex")
    assert plain.startswith("\\begin{bmatrix}")


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_figure_formats(capsys, tmp_path, fmt, magic):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"A.{fmt}"
    code, _, err = run(capsys, "matrix", "--input", "5x5", "--kernel", "3x3", "--mode", "same",
                       "--format", fmt, "--output", str(path))
    assert code == 0, err
    assert path.read_bytes().startswith(magic)
    code, _, err = run(capsys, "matrix", "--input", "3000x3000", "--kernel", "3x3",
                       "--format", fmt, "--output", str(path))
    assert code == 2 and "too many to draw" in err


def test_console_entry_point_subprocess():
    out = subprocess.run([sys.executable, "-m", "linconv", "matrix", "--input", "4x4",
                          "--kernel", "2x2", "--channels", "2,3", "--format", "markdown"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("| | 0 | 1 |")
