"""Jupyter's _repr_html_ of operators: the numbers are the matrix's (scipy oracle)."""

import re

import numpy as np
import scipy.linalg

import linconv


def cells(text):
    rows = re.findall(r"<tr>(.*?)</tr>", text)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


def test_small_operator_shows_its_matrix():
    h = np.array([1.0, -2.5, 3.0])
    op = linconv.ConvolutionOperator(h, 5, "full")
    expected = scipy.linalg.convolution_matrix(h, 5, "full")
    text = op._repr_html_()
    assert "ConvolutionOperator" in text
    got = np.array(cells(text), dtype=float)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.array(cells(op.H._repr_html_()), dtype=float), expected.T)


def test_larger_operator_is_elided_and_huge_is_summarised(monkeypatch):
    h = np.arange(1.0, 4.0)
    op = linconv.ConvolutionOperator(h, 40, "same")
    grid = cells(op._repr_html_())
    assert len(grid) == 13 and grid[6][6] == "⋱" and grid[0][6] == "⋯" and grid[6][0] == "⋮"
    expected = scipy.linalg.convolution_matrix(h, 40, "same")
    assert [float(v) for v in grid[-1][7:]] == list(expected[-1, -6:])
    huge = linconv.ConvolutionOperator(np.ones((3, 3)), (5000, 5000), "same")

    def refuse(*args, **kwargs):
        raise AssertionError("built the matrix")
    monkeypatch.setattr(type(huge), "tosparse", refuse)
    assert "too large to show" in huge._repr_html_()
