"""One object, one tile: which tile of an overlapping tiling owns a change.

Ingestion cuts large scenes into tiles that overlap (128 px by default), so an object near a seam is seen
on two or four tiles, whole on some and cut on others. Each tile decides alone, from the list of the
scene's tile windows, whether it keeps a change; every tile reaches the same answer, so the object is kept
exactly once. The tiles form a grid, so the rule is applied per axis (columns, then rows) and a tile keeps a
change when it is the keeper on both:

- each tile has a core: its interval up to the middle of the overlap with each neighbour. The cores do
  not overlap and cover the scene;
- a change is kept by the tile whose core holds the centre of the part of the change that tile sees. An
  object smaller than the overlap is then kept exactly once, whether it is whole or cut on either tile;
- an object that spans a whole overlap (larger than it) is kept by the tile that sees where it begins.
"""

from __future__ import annotations

from craft_agent.models import BBox, TileWindow


def _keeps_on_axis(start: int, end: int, lo: int, hi: int, starts: list[int], ends: list[int]) -> bool:
    """Whether the interval [start, end) of a tile keeps a change seen there over [lo, hi) (scene pixels).

    ``starts`` / ``ends`` are the sorted distinct tile intervals on this axis.
    """
    index = starts.index(start)
    previous_end = ends[index - 1] if index > 0 else None
    next_start = starts[index + 1] if index + 1 < len(starts) else None
    if previous_end is not None and lo <= start and hi >= previous_end:
        return False  # cut here and spanning the whole overlap below: the previous tile sees where it begins
    if next_start is not None and hi >= end and lo <= next_start:
        return True  # cut at the far end and spanning the whole overlap above: it begins here
    core_low = (start + previous_end) / 2 if previous_end is not None else float("-inf")
    core_high = (next_start + end) / 2 if next_start is not None else float("inf")
    centre = (lo + hi) / 2
    return core_low <= centre < core_high


def owns(box: BBox, tile: TileWindow | None, windows: list[TileWindow]) -> bool:
    """Whether ``tile`` keeps the change with ``box`` (in tile pixels) among the scene's tile ``windows``.

    Args:
        box: the change's box in the tile's own pixel grid.
        tile: the tile the change was found on; None for an untiled pair (it owns everything).
        windows: every tile window of the scene (``tile`` included).

    Returns:
        True when this tile is the one that keeps the change (see the module's rules).
    """
    if tile is None or len(windows) < 2:
        return True
    columns = sorted({(w.col_off, w.col_off + w.width) for w in windows})
    rows = sorted({(w.row_off, w.row_off + w.height) for w in windows})
    return _keeps_on_axis(
        tile.col_off,
        tile.col_off + tile.width,
        box.x0 + tile.col_off,
        box.x1 + tile.col_off,
        [c[0] for c in columns],
        [c[1] for c in columns],
    ) and _keeps_on_axis(
        tile.row_off,
        tile.row_off + tile.height,
        box.y0 + tile.row_off,
        box.y1 + tile.row_off,
        [r[0] for r in rows],
        [r[1] for r in rows],
    )
