"""Drawing primitives: lengths at scale, masks from polygons and discs, textures, and small random draws."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from craft_agent.models import BBox
from craft_agent.synthetic.canvas import BoolMask, Colour, FloatImage, Point

Extent = tuple[int, int, int, int]
"""A trial placement's (x0, y0, x1, y1) on the canvas, end exclusive: it may lie partly or wholly off the canvas,
so it is checked with :func:`within` before it becomes a :class:`~craft_agent.models.BBox`."""


def extent(points: NDArray[Any], margin: int = 1) -> Extent:
    """The extent holding every (x, y) point, ``margin`` px wider on each side (``BBox.of(*extent(...))`` for a box
    on the canvas)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return (int(x0) - margin, int(y0) - margin, int(x1) + 1 + margin, int(y1) + 1 + margin)


def within(placement: Extent, low: int, high: int, grow: int = 0) -> bool:
    """Whether ``placement``, grown by ``grow`` px on each side, lies within ``low`` <= x, y <= ``high``."""
    x0, y0, x1, y1 = placement
    return x0 - grow >= low and y0 - grow >= low and x1 + grow <= high and y1 + grow <= high


def px(value: float, scale: float, minimum: int = 1) -> int:
    """A length given at 512 px, at this scene's scale."""
    return max(minimum, round(value * scale))


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def size_word(u: float) -> str:
    """Size word from the uniform draw that set the object's size."""
    return "small" if u < 1 / 3 else ("medium" if u < 2 / 3 else "large")


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> FloatImage:
    """Band-limited noise (std about 0.6) whose features are about ``cell`` px wide."""
    gh = max(2, math.ceil(h / max(cell, 1.0)) + 1)
    gw = max(2, math.ceil(w / max(cell, 1.0)) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return np.asarray(cv2.resize(grid, (max(w, 1), max(h, 1)), interpolation=cv2.INTER_CUBIC), np.float32)


def texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    colour: Colour,
    grain: float,
    blotch: float = 0.0,
    cell: float = 8.0,
) -> FloatImage:
    """A flat colour with soft blotches and per-pixel grain, as real surfaces never are uniform."""
    image = np.empty((h, w, 3), np.float32)
    image[:] = colour
    if blotch:
        image *= (1.0 + blotch * smooth_noise(rng, h, w, cell))[..., None]
    if grain:
        image += grain * rng.standard_normal((h, w, 1), dtype=np.float32)
    return image


def sigmoid(x: FloatImage) -> FloatImage:
    """The logistic function, elementwise, in float32."""
    return np.asarray(1.0 / (1.0 + np.exp(-x)), np.float32)


def polygon_mask(polygons: Sequence[NDArray[Any]], box: BBox) -> BoolMask:
    """Pixels inside any of the polygons (canvas coordinates), as a mask local to ``box``."""
    canvas = np.zeros((box.height, box.width), np.uint8)
    origin = np.array([box.x0, box.y0], dtype=np.float64)
    for polygon in polygons:
        # One call per polygon: fillPoly with several contours uses even-odd filling, which would punch
        # holes where the parts of an L-shaped building overlap.
        pts = np.round(np.asarray(polygon, np.float64).reshape(-1, 2) - origin).astype(np.int32)
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def disc_mask(centres: Sequence[Point], radii: Sequence[float], box: BBox) -> BoolMask:
    """Pixels inside any of the discs (canvas coordinates), as a mask local to ``box``."""
    ys = np.arange(box.y0, box.y1, dtype=np.float32)[:, None]
    xs = np.arange(box.x0, box.x1, dtype=np.float32)[None, :]
    mask = np.zeros((box.height, box.width), bool)
    for (cx, cy), r in zip(centres, radii, strict=True):
        mask |= (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    return mask


def edge_ring(mask: BoolMask, width: int) -> BoolMask:
    """The pixels of ``mask`` within ``width`` px of its edge."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    eroded = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~eroded.astype(bool)


def pixel_grid(box: BBox) -> tuple[FloatImage, FloatImage]:
    """Canvas x (1 x w) and y (h x 1) coordinates of the pixels of ``box``, for broadcasting."""
    xs = np.arange(box.x0, box.x1, dtype=np.float32)[None, :]
    ys = np.arange(box.y0, box.y1, dtype=np.float32)[:, None]
    return xs, ys


def rect(x0: float, y0: float, x1: float, y1: float) -> NDArray[np.float64]:
    """The four corners of an axis-aligned rectangle, as a polygon."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def rotated(points: NDArray[np.float64], angle: float, centre: Point) -> NDArray[np.float64]:
    """``points`` turned by ``angle`` radians about the origin, then moved to ``centre``."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return np.asarray(points @ rotation.T + np.asarray(centre), np.float64)
