"""Rich display of operators in Jupyter: a summary and, for small ones, the matrix."""

from __future__ import annotations

import html

import numpy as np

__all__ = ["operator_html"]

MAX_ENTRIES = 2 ** 20  # build the matrix for display only up to this many entries
MAX_CELLS = 12         # rows / columns shown; the middle of larger matrices is elided


def _shown(size: int) -> list[int | None]:
    if size <= MAX_CELLS:
        return list(range(size))
    head = MAX_CELLS // 2
    return list(range(head)) + [None] + list(range(size - head, size))


def _cell(value) -> str:
    if value == 0:
        return '<td style="color:#bbb">0</td>'
    text = f"{value:.4g}" if np.isrealobj(value) else f"{value:.3g}"
    return f"<td>{html.escape(text)}</td>"


def matrix_html(matrix) -> str:
    """An HTML table of a scipy sparse matrix, eliding the middle of large ones."""
    csr = matrix.tocsr()
    rows, cols = _shown(csr.shape[0]), _shown(csr.shape[1])
    picked = [i for i in rows if i is not None]
    block = csr[picked][:, [j for j in cols if j is not None]].toarray()
    lines = []
    r = 0
    for i in rows:
        cells = []
        c = 0
        for j in cols:
            if i is None:
                cells.append("<td>⋱</td>" if j is None else "<td>⋮</td>")
            elif j is None:
                cells.append("<td>⋯</td>")
            else:
                cells.append(_cell(block[r, c]))
                c += 1
        r += i is not None
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table style="font-family:monospace;font-size:85%;text-align:right">'
            + "".join(lines) + "</table>")


def operator_html(op) -> str:
    """``_repr_html_`` of a linconv operator: its repr and, when small, its matrix."""
    summary = f"<code>{html.escape(repr(op))}</code>"
    if op.shape[0] * op.shape[1] > MAX_ENTRIES:
        return f"<div>{summary}<br><i>{op.shape[0]} x {op.shape[1]}: too large to show " \
               "the matrix here; see linconv.plot.matrix</i></div>"
    return f"<div>{summary}{matrix_html(op.tosparse())}</div>"
