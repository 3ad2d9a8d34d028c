"""Absolute grid positions ("top-left", "center", "mid-right") used by the CRAFT grid stage.

The names follow the MTRefSeg/CRAFT wording: rows top / mid / bottom, columns left / center / right,
and the middle cell of a 3 x 3 grid is simply "center".
"""

from __future__ import annotations

_ROW_WORDS = {
    1: [""],
    2: ["top", "bottom"],
    3: ["top", "mid", "bottom"],
    4: ["top", "upper-mid", "lower-mid", "bottom"],
    5: ["top", "upper-mid", "mid", "lower-mid", "bottom"],
}
_COL_WORDS = {
    1: [""],
    2: ["left", "right"],
    3: ["left", "center", "right"],
    4: ["left", "center-left", "center-right", "right"],
    5: ["left", "center-left", "center", "center-right", "right"],
}


def cell_name(row: int, col: int, rows: int = 3, cols: int = 3) -> str:
    """Name of grid cell (row, col) in a rows x cols grid.

    Args:
        row: 0-based row index, 0 at the top.
        col: 0-based column index, 0 at the left.
        rows: grid rows (1 to 5 get words; larger grids get "row R, column C").
        cols: grid columns, likewise.

    Returns:
        A position phrase such as "top-left", "mid-right" or "center".

    Raises:
        ValueError: when row or col lies outside the grid.
    """
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"cell ({row}, {col}) is outside a {rows} x {cols} grid")
    if rows not in _ROW_WORDS or cols not in _COL_WORDS:
        return f"row {row + 1}, column {col + 1}"
    r, c = _ROW_WORDS[rows][row], _COL_WORDS[cols][col]
    if r in ("", "mid") and c in ("", "center"):
        return "center" if (r or c) else "whole image"
    if not r:
        return c
    if not c:
        return r
    if c == "center":
        return f"{r}-center"
    return f"{r}-{c}"


def cell_of_point(x: float, y: float, width: int, height: int, rows: int = 3, cols: int = 3) -> tuple[int, int]:
    """The (row, col) of the grid cell holding pixel position (x, y) in a width x height image."""
    col = min(cols - 1, max(0, int(x * cols / width)))
    row = min(rows - 1, max(0, int(y * rows / height)))
    return row, col


def position_of_box(
    x0: float, y0: float, x1: float, y1: float, width: int, height: int, rows: int = 3, cols: int = 3
) -> str:
    """Grid position name of a box (x0, y0, x1, y1 in pixels, end exclusive) by its centre."""
    row, col = cell_of_point((x0 + x1) / 2, (y0 + y1) / 2, width, height, rows, cols)
    return cell_name(row, col, rows, cols)


def all_cell_names(rows: int = 3, cols: int = 3) -> list[str]:
    """Every cell name of the grid, row by row."""
    return [cell_name(r, c, rows, cols) for r in range(rows) for c in range(cols)]
