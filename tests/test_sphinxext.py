"""linconv.sphinxext in a throwaway Sphinx project built with -W."""

import html
import re
import textwrap

import pytest

sphinx_build = pytest.importorskip("sphinx.cmd.build")


def build(tmp_path, body: str):
    """Build a one-page project; (exit status, index.html text, warnings text)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "conf.py").write_text('extensions = ["sphinx.ext.mathjax", "linconv.sphinxext"]\n')
    (src / "index.rst").write_text("Matrices\n========\n\n" + textwrap.dedent(body))
    warnings = tmp_path / "warnings.txt"
    status = sphinx_build.build_main(["-W", "-q", "-b", "html", "-w", str(warnings),
                                      str(src), str(out)])
    page = (out / "index.html").read_text() if (out / "index.html").exists() else ""
    return status, html.unescape(page), warnings.read_text()


def test_directive_renders_symbolic_and_numeric_matrices(tmp_path):
    status, page, warnings = build(tmp_path, """
        .. linconv-matrix::
           :input: 3x3
           :kernel: 2x2
           :mode: valid
           :caption: A doubly-block Toeplitz matrix.

        .. linconv-matrix::
           :input: 4
           :values: [1/4, 1/2, 1/4]
           :mode: same
           :boundary: wrap

        .. linconv-matrix::
           :input: 8x8
           :kernel: 3x3
           :mode: same
           :max-size: 6

        .. linconv-matrix::
           :input: 4x4
           :kernel: 2x2
           :channels: 2,3
           :no-blocks:
        """)
    assert status == 0, warnings
    # the 2x2 kernel on 3x3: 4 x 9 in blocks of 2 x 3, partition lines
    assert "\\begin{array}{ccc|ccc|ccc}" in page
    assert "h_{1,1} & h_{1,0} & 0 & h_{0,1} & h_{0,0} & 0 & 0 & 0 & 0 \\\\" in page
    assert "A doubly-block Toeplitz matrix." in page
    # exact rationals, circulant
    assert "\\frac{1}{2} & \\frac{1}{4} & 0 & \\frac{1}{4}" in page
    # elision of the 64 x 64 matrix
    for dots in ("\\cdots", "\\vdots", "\\ddots"):
        assert dots in page
    # a layer (mode full: the full-correlation padding), no partition lines
    assert "w_{0,0,1,1}" in page and "\\begin{bmatrix}" in page


@pytest.mark.parametrize("options, message", [
    ([":kernel: 3", ":stride: 0"], "`stride` sizes must be positive integers; got '0'"),
    ([":kernel: 3", ":groups: 2"], "`groups` needs `channels`"),
    ([":kernel: 3", ":boundary: nearest"], "'edge'"),
    ([":kernel: 9", ":mode: valid"], "output would be empty"),
    ([], "give `kernel`"),
    ([":kernel: 3", ":colour: red"], 'unknown option: "colour"'),
])
def test_bad_options_are_errors_naming_file_and_line(tmp_path, options, message):
    lines = "\n".join(["Some text.", "", ".. linconv-matrix::", "   :input: 4"]
                      + [f"   {option}" for option in options]) + "\n"
    status, _, warnings = build(tmp_path, lines)
    assert status != 0
    # the page starts with a 3-line title, then "Some text.", a blank, the directive
    assert re.search(r"index\.rst:6: (ERROR|WARNING)", warnings), warnings
    assert message in warnings
    assert "Traceback" not in warnings


def test_extension_metadata():
    import linconv
    import linconv.sphinxext

    class App:
        def add_directive(self, name, cls):
            self.added = (name, cls)

    app = App()
    meta = linconv.sphinxext.setup(app)
    assert app.added[0] == "linconv-matrix"
    assert meta == {"version": linconv.__version__, "parallel_read_safe": True,
                    "parallel_write_safe": True}
