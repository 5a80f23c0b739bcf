"""Plain-text tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["format_table"]


def format_table(
    matrix,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    digits: int = 4,
) -> str:
    """Format a 2-D tensor/array as an aligned text table with row and column labels.

    Example::

        >>> print(format_table([[1.0, 0.5]], ["a"], ["x", "y"]))
           x       y
        a  1.0000  0.5000
    """
    rows = torch.as_tensor(matrix).detach().double().reshape(len(matrix), -1).tolist() if len(matrix) else []
    ncols = len(rows[0]) if rows else 0
    row_labels = [str(r) for r in (row_labels if row_labels is not None else range(len(rows)))]
    col_labels = [str(c) for c in (col_labels if col_labels is not None else range(ncols))]
    cells = [[f"{v:.{digits}f}" for v in row] for row in rows]
    lw = max([_width(s) for s in row_labels] + [0])
    cw = [max([_width(col_labels[j])] + [len(r[j]) for r in cells]) for j in range(ncols)]
    lines = [] if title is None else [title]
    lines.append(_pad("", lw) + "  " + "  ".join(_pad(c, w) for c, w in zip(col_labels, cw)))
    for label, row in zip(row_labels, cells):
        lines.append(_pad(label, lw) + "  " + "  ".join(_pad(v, w) for v, w in zip(row, cw)))
    return "\n".join(line.rstrip() for line in lines)


def _width(s: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if "\u2e80" <= ch <= "\uffef" else 1 for ch in s)


def _pad(s: str, width: int) -> str:
    return s + " " * (width - _width(s))
