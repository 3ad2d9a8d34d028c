"""Seeded synthetic bi-temporal scenes with exact change ground truth.

The generator draws pairs of images of one made-up place at two times, lists what changed between them
(appear / disappear / state_change, with a category, an exact mask, a grid position and a CRAFT
stage-1 style phrase) and writes them as an examples folder. The demo, the tests and the benchmarks use it
so that the pipeline can be scored against a ground truth that is right by construction.

What it models:

* Aerial ("rs") scenes seen from above: textured ground (grass, dry grass and soil patches with
  low-frequency variation and fine grain), roads with kerbs and dashed lane markings (sometimes a
  crossing), parking lots, buildings (rectangular or L-shaped footprints, pitched or flat roofs in several
  colours, a darker edge and a cast shadow away from one sun shared by the whole scene), clusters of round
  tree canopies with shadows, a pond, and vehicles on roads and in parking stalls.
* Street ("ns") scenes seen from the ground: a sky gradient with soft clouds, facades with windows and a
  door, a paved pavement and a road band, cars in side view, statues, signs, benches, planters, lamps.
* Changes that do not overlap each other: new buildings on cleared lots, demolitions leaving rubble, trees
  cleared to soil, repainted roofs, lawns paved or dug up, vehicles coming and going, a pond drying up, a
  resurfaced road (rs); cars parked or gone, objects placed or removed, a tarp taken off an entrance, a
  facade or door repainted, a planter's grass turning lush (ns).
* Acquisition nuisances on the post image only, inside and outside changes alike: a global gain, gamma and
  colour cast, a faint low-frequency illumination field, sensor noise, and an integer misregistration of at
  most 2 px (recorded in ``SyntheticScene.shift``).

What it does not model: perspective or relief displacement, seasons, moving shadows (the sun is the same at
both dates), clouds over aerial scenes, sensor artefacts beyond Gaussian noise, or objects partly
occluding changes in aerial scenes. Shadows of objects that appear or disappear change the pixels next to
the object; they are real differences but are not part of any change mask, as in hand-labelled data.

Ground truth is exact: every thing is painted through layers that also write an owner label, so a change's
mask is the set of pixels its object owns in the post scene (appear), in the pre scene (disappear), or in
both (state_change: the surface whose appearance changed). Masks are in the pre image's pixel grid.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from craft_agent.errors import ExamplesError
from craft_agent.grid import position_of_box
from craft_agent.models import CATEGORIES

__all__ = [
    "CATEGORIES",
    "CHANGE_TYPES",
    "ChangeTypeName",
    "ExamplesSummary",
    "SyntheticChange",
    "SyntheticScene",
    "generate_scene",
    "write_examples",
]

ChangeTypeName = Literal["appear", "disappear", "state_change"]
DomainName = Literal["rs", "ns"]
CHANGE_TYPES: tuple[ChangeTypeName, ...] = ("appear", "disappear", "state_change")


MIN_SIZE = 128
MAX_SIZE = 4096
# Scenes are drawn this much larger on every side, so that shifting the post image by up to this many
# pixels never exposes an undrawn border.
_PAD = 2
_MAX_SHIFT = _PAD

BoolMask = NDArray[np.bool_]
FloatImage = NDArray[np.float32]
LabelImage = NDArray[np.int32]
Colour = tuple[float, float, float]
Point = tuple[float, float]


# ---------------------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SyntheticChange:
    """One change between the pre and the post image of a synthetic scene.

    Attributes:
        change_type: "appear", "disappear" or "state_change".
        category: one of :data:`CATEGORIES`.
        mask: bool H x W, the exact pixels of the changed object in the pre image's pixel grid.
        position: 3 x 3 grid position of the mask's bounding-box centre ("top-left", "center", ...).
        description: a short phrase with an absolute position, CRAFT stage-1 style.
        attributes: words describing the object: always "colour", "size" and "shape"; state changes add
            "colour_before" and, where the material changed, "before" / "after".
    """

    change_type: ChangeTypeName
    category: str
    mask: NDArray[np.bool_]
    position: str
    description: str
    attributes: dict[str, str]


@dataclass(frozen=True, eq=False)
class SyntheticScene:
    """A generated pair with its ground truth.

    Attributes:
        name: the scene's name ("scene_0000", "street_0003", ...).
        domain: "rs" (aerial, remote sensing) or "ns" (street-level, normal scene).
        pre: uint8 H x W x 3 RGB image at the first date.
        post: uint8 H x W x 3 RGB image at the second date.
        changes: every change, with masks that never overlap.
        shift: (dx, dy) misregistration of the post image: what lies at pre pixel (x, y) appears at post
            pixel (x + dx, y + dy).
    """

    name: str
    domain: DomainName
    pre: NDArray[np.uint8]
    post: NDArray[np.uint8]
    changes: list[SyntheticChange]
    shift: tuple[int, int]

    @property
    def change_mask(self) -> NDArray[np.bool_]:
        """Bool H x W union of all change masks."""
        union = np.zeros(self.pre.shape[:2], dtype=bool)
        for change in self.changes:
            union |= change.mask
        return union


@dataclass(frozen=True)
class ExamplesSummary:
    """What :func:`write_examples` wrote.

    Attributes:
        out: the examples folder.
        pairs: number of pairs written.
        changes: number of changes over all pairs.
        by_type: number of changes per change type (every type is a key, possibly 0).
        manifest: path of ``manifest.jsonl``.
    """

    out: Path
    pairs: int
    changes: int
    by_type: dict[str, int]
    manifest: Path


# ---------------------------------------------------------------------------------------------------------
# Drawing primitives: boxes, layers, textures
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Box:
    """Pixel rectangle on the canvas, end exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def grown(self, margin: int) -> _Box:
        return _Box(self.x0 - margin, self.y0 - margin, self.x1 + margin, self.y1 + margin)

    def clipped(self, n: int) -> _Box:
        return _Box(max(0, self.x0), max(0, self.y0), min(n, self.x1), min(n, self.y1))

    def inside(self, low: int, high: int) -> bool:
        return self.x0 >= low and self.y0 >= low and self.x1 <= high and self.y1 <= high

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @classmethod
    def around(cls, points: NDArray[Any], margin: int = 1) -> _Box:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        return cls(int(x0) - margin, int(y0) - margin, int(x1) + 1 + margin, int(y1) + 1 + margin)


@dataclass(frozen=True, eq=False)
class _Layer:
    """One paint operation: colours (or a multiplicative shade) written where ``mask`` is set.

    ``own`` says whether the painted pixels belong to the thing drawing them; shadows and the rubble
    left behind by a removed object do not, so they never enter a change mask.
    """

    box: _Box
    mask: BoolMask
    colour: FloatImage | None = None
    shade: float = 1.0
    own: bool = True
    whole: bool = False  # mask is all set: paint the box without consulting it


def _whole_layer(box: _Box, colour: FloatImage) -> _Layer:
    return _Layer(box, np.ones((box.height, box.width), bool), colour, whole=True)


@dataclass(frozen=True, eq=False)
class _Thing:
    """Something in the scene, as painted at each date (an empty tuple: absent at that date)."""

    pre: tuple[_Layer, ...]
    post: tuple[_Layer, ...]


@dataclass(frozen=True, eq=False)
class _PlannedChange:
    """A change whose mask is known only once the scene is rendered; ``phrase`` holds ``{pos}``."""

    thing: _Thing
    change_type: ChangeTypeName
    category: str
    phrase: str
    attributes: dict[str, str]


@dataclass
class _Draft:
    """The things of one scene in paint order, and which of them changed."""

    n: int
    things: list[_Thing] = field(default_factory=list)
    changes: list[_PlannedChange] = field(default_factory=list)

    def add(self, pre: Sequence[_Layer], post: Sequence[_Layer] | None = None) -> _Thing:
        thing = _Thing(tuple(pre), tuple(pre if post is None else post))
        self.things.append(thing)
        return thing

    def replace(self, old: _Thing, new: _Thing) -> None:
        self.things[next(i for i, t in enumerate(self.things) if t is old)] = new

    def note(
        self,
        thing: _Thing,
        change_type: ChangeTypeName,
        category: str,
        phrase: str,
        attributes: dict[str, str],
    ) -> None:
        self.changes.append(_PlannedChange(thing, change_type, category, phrase, attributes))


def _px(value: float, scale: float, minimum: int = 1) -> int:
    """A length given at 512 px, at this scene's scale."""
    return max(minimum, round(value * scale))


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _colour_distance(a: Colour, b: Colour) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / 3.0


def _contrasting(rng: np.random.Generator, palette: dict[str, Colour], against: Colour, min_distance: float) -> str:
    """A palette name far enough from ``against`` that the change stays visible after nuisances."""
    far = [name for name, colour in palette.items() if _colour_distance(colour, against) >= min_distance]
    if not far:
        return max(palette, key=lambda name: _colour_distance(palette[name], against))
    return _pick(rng, far)


def _size_word(u: float) -> str:
    """Size word from the uniform draw that set the object's size."""
    return "small" if u < 1 / 3 else ("medium" if u < 2 / 3 else "large")


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> FloatImage:
    """Band-limited noise (std about 0.6) whose features are about ``cell`` px wide."""
    gh = max(2, math.ceil(h / max(cell, 1.0)) + 1)
    gw = max(2, math.ceil(w / max(cell, 1.0)) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return np.asarray(cv2.resize(grid, (max(w, 1), max(h, 1)), interpolation=cv2.INTER_CUBIC), np.float32)


def _texture(
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
        image *= (1.0 + blotch * _smooth_noise(rng, h, w, cell))[..., None]
    if grain:
        image += grain * rng.standard_normal((h, w, 1), dtype=np.float32)
    return image


def _sigmoid(x: FloatImage) -> FloatImage:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), np.float32)


def _polygon_mask(polygons: Sequence[NDArray[Any]], box: _Box) -> BoolMask:
    """Pixels inside any of the polygons (canvas coordinates), as a mask local to ``box``."""
    canvas = np.zeros((box.height, box.width), np.uint8)
    origin = np.array([box.x0, box.y0], dtype=np.float64)
    for polygon in polygons:
        # One call per polygon: fillPoly with several contours uses even-odd filling, which would punch
        # holes where the parts of an L-shaped building overlap.
        pts = np.round(np.asarray(polygon, np.float64).reshape(-1, 2) - origin).astype(np.int32)
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def _disc_mask(centres: Sequence[Point], radii: Sequence[float], box: _Box) -> BoolMask:
    ys = np.arange(box.y0, box.y1, dtype=np.float32)[:, None]
    xs = np.arange(box.x0, box.x1, dtype=np.float32)[None, :]
    mask = np.zeros((box.height, box.width), bool)
    for (cx, cy), r in zip(centres, radii, strict=True):
        mask |= (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    return mask


def _pixel_grid(box: _Box) -> tuple[FloatImage, FloatImage]:
    """Canvas x (1 x w) and y (h x 1) coordinates of the pixels of ``box``, for broadcasting."""
    xs = np.arange(box.x0, box.x1, dtype=np.float32)[None, :]
    ys = np.arange(box.y0, box.y1, dtype=np.float32)[:, None]
    return xs, ys


def _rect(x0: float, y0: float, x1: float, y1: float) -> NDArray[np.float64]:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _rotated(points: NDArray[np.float64], angle: float, centre: Point) -> NDArray[np.float64]:
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return np.asarray(points @ rotation.T + np.asarray(centre), np.float64)


def _shade_layer(box: _Box, mask: BoolMask, factor: float) -> _Layer:
    return _Layer(box, mask, None, factor, own=False)


def _render(draft: _Draft, when: Literal["pre", "post"]) -> tuple[FloatImage, LabelImage]:
    """Paint every thing as it was at ``when``; also return which thing owns each pixel (-1: none)."""
    image = np.zeros((draft.n, draft.n, 3), np.float32)
    labels = np.full((draft.n, draft.n), -1, np.int32)
    for index, thing in enumerate(draft.things):
        for layer in thing.pre if when == "pre" else thing.post:
            rows, cols = layer.box.slices()
            region = image[rows, cols]
            if layer.whole and layer.colour is not None:
                region[...] = layer.colour
                if layer.own:
                    labels[rows, cols] = index
                continue
            # copyto / multiply with ``where`` are several times faster than boolean fancy indexing.
            where = layer.mask[..., None]
            if layer.colour is None:
                np.multiply(region, np.float32(layer.shade), out=region, where=where)
            else:
                np.copyto(region, layer.colour, where=where)
            if layer.own:
                np.copyto(labels[rows, cols], np.int32(index), where=layer.mask)
    return image, labels


# ---------------------------------------------------------------------------------------------------------
# Palettes (RGB). Names are the words used in descriptions.
# ---------------------------------------------------------------------------------------------------------

_GRASS: Colour = (84.0, 116.0, 56.0)
_DRY_GRASS: Colour = (146.0, 140.0, 88.0)
_SOIL: Colour = (150.0, 128.0, 96.0)
_LAWN: Colour = (92.0, 140.0, 60.0)
_BARE_SOIL: Colour = (188.0, 162.0, 122.0)
_RUBBLE: Colour = (156.0, 146.0, 128.0)
_ASPHALT: Colour = (98.0, 98.0, 102.0)
_WORN_ASPHALT: Colour = (142.0, 140.0, 135.0)
_FRESH_ASPHALT: Colour = (52.0, 52.0, 56.0)
_LOT_ASPHALT: Colour = (84.0, 84.0, 88.0)
_CONCRETE: Colour = (172.0, 170.0, 164.0)
_PAINT_WHITE: Colour = (228.0, 228.0, 222.0)
_WATER: Colour = (36.0, 72.0, 82.0)
_DRY_MUD: Colour = (156.0, 136.0, 104.0)
_SHORE: Colour = (138.0, 132.0, 100.0)
_GLASS: Colour = (50.0, 60.0, 76.0)

_ROOF_COLOURS: dict[str, Colour] = {
    "red": (168.0, 62.0, 52.0),
    "grey": (128.0, 128.0, 134.0),
    "white": (224.0, 224.0, 218.0),
    "blue": (62.0, 94.0, 156.0),
    "brown": (116.0, 80.0, 56.0),
    "green": (72.0, 120.0, 88.0),
    "orange": (198.0, 114.0, 62.0),
    "dark grey": (66.0, 66.0, 72.0),
}
_LOT_COLOURS: dict[str, Colour] = {"bare soil": (178.0, 156.0, 122.0), "gravel": (160.0, 158.0, 150.0)}
_CAR_COLOURS: dict[str, Colour] = {
    "white": (236.0, 236.0, 232.0),
    "black": (26.0, 26.0, 30.0),
    "red": (184.0, 32.0, 34.0),
    "blue": (34.0, 66.0, 168.0),
    "yellow": (226.0, 192.0, 44.0),
    "silver": (172.0, 174.0, 180.0),
}
_WALL_COLOURS: dict[str, Colour] = {
    "cream": (228.0, 214.0, 182.0),
    "brick-red": (152.0, 74.0, 58.0),
    "ochre": (204.0, 152.0, 80.0),
    "light grey": (188.0, 188.0, 186.0),
    "pale blue": (156.0, 184.0, 206.0),
    "white": (238.0, 236.0, 230.0),
    "salmon": (216.0, 140.0, 120.0),
    "sage green": (146.0, 168.0, 126.0),
}
_DOOR_COLOURS: dict[str, Colour] = {
    "dark green": (30.0, 82.0, 52.0),
    "red": (164.0, 30.0, 36.0),
    "brown": (96.0, 58.0, 36.0),
    "blue": (30.0, 58.0, 128.0),
    "black": (26.0, 26.0, 30.0),
    "yellow": (220.0, 176.0, 40.0),
}
_STATUE_COLOURS: dict[str, Colour] = {
    "white": (232.0, 230.0, 224.0),
    "bronze": (118.0, 86.0, 48.0),
    "grey stone": (150.0, 150.0, 144.0),
    "green bronze": (72.0, 112.0, 92.0),
    "golden": (206.0, 164.0, 60.0),
}
_SIGN_COLOURS: dict[str, Colour] = {
    "red": (198.0, 40.0, 40.0),
    "blue": (36.0, 82.0, 172.0),
    "green": (40.0, 132.0, 72.0),
    "yellow": (232.0, 192.0, 40.0),
}
_BENCH_COLOURS: dict[str, Colour] = {
    "wooden": (146.0, 98.0, 56.0),
    "green": (46.0, 104.0, 62.0),
    "red": (160.0, 50.0, 42.0),
    "white": (226.0, 226.0, 220.0),
}
_TARP_COLOURS: dict[str, Colour] = {
    "dark": (40.0, 44.0, 48.0),
    "blue": (40.0, 80.0, 150.0),
    "green": (50.0, 96.0, 56.0),
    "orange": (210.0, 110.0, 40.0),
}


# ---------------------------------------------------------------------------------------------------------
# Aerial scenes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Road:
    """A straight road through (cx, cy) along unit direction (dx, dy)."""

    cx: float
    cy: float
    dx: float
    dy: float
    width: float
    marked: bool

    def point(self, along: float, across: float = 0.0) -> Point:
        return (self.cx + self.dx * along - self.dy * across, self.cy + self.dy * along + self.dx * across)


@dataclass(frozen=True)
class _Footprint:
    """A building outline made of convex rectangular parts, in canvas coordinates."""

    parts: tuple[NDArray[np.float64], ...]
    centre: Point
    angle: float
    half: Point  # half extents of the outline in the building's own axes
    u: float
    shape: str

    def corners(self) -> NDArray[np.float64]:
        return np.concatenate(self.parts)

    def lot(self, margin: float) -> NDArray[np.float64]:
        hx, hy = self.half[0] + margin, self.half[1] + margin
        return _rotated(_rect(-hx, -hy, hx, hy), self.angle, self.centre)


@dataclass(frozen=True)
class _Slot:
    """Where a vehicle can stand: centre, heading (radians) and whether it is a parking stall."""

    x: float
    y: float
    heading: float
    in_lot: bool


@dataclass(frozen=True, eq=False)
class _TreeCluster:
    centres: NDArray[np.float64]
    radii: NDArray[np.float64]
    offsets: NDArray[np.float64]  # shadow offset of each tree
    box: _Box
    u: float
    count: int


def _building_footprint(rng: np.random.Generator, centre: Point, scale: float) -> _Footprint:
    u = float(rng.uniform())
    length = (26.0 + 30.0 * u) * scale
    depth = length * float(rng.uniform(0.55, 0.85))
    # Most buildings follow the street grid; some are turned.
    angle = math.radians(float(rng.uniform(-4, 4) if rng.random() < 0.5 else rng.uniform(-30, 30)))
    parts = [_rect(-length / 2, -depth / 2, length / 2, depth / 2)]
    shape = "rectangular"
    if rng.random() < 0.4:
        wing_w = length * float(rng.uniform(0.3, 0.45))
        wing_d = depth * float(rng.uniform(0.6, 1.0))
        sx, sy = (1.0 if rng.random() < 0.5 else -1.0), (1.0 if rng.random() < 0.5 else -1.0)
        wing = _rect(length / 2 - wing_w, depth / 2 - 1.0, length / 2, depth / 2 + wing_d)
        parts.append(wing * np.array([sx, sy]))
        shape = "L-shaped"
    local = np.concatenate(parts)
    middle = (local.min(axis=0) + local.max(axis=0)) / 2
    half = (local.max(axis=0) - local.min(axis=0)) / 2
    world = tuple(_rotated(p - middle, angle, centre) for p in parts)
    return _Footprint(world, centre, angle, (float(half[0]), float(half[1])), u, shape)


def _cast_shadow(parts: Sequence[NDArray[np.float64]], offset: Point, box: _Box) -> BoolMask:
    """Shadow of a prism with these convex parts: each part swept along the sun's offset."""
    hulls = []
    for part in parts:
        swept = np.concatenate([part, part + np.asarray(offset)]).astype(np.float32)
        hulls.append(cv2.convexHull(swept).reshape(-1, 2))
    return _polygon_mask(hulls, box)


def _edge_ring(mask: BoolMask, width: int) -> BoolMask:
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    eroded = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~eroded.astype(bool)


@dataclass(frozen=True, eq=False)
class _Surface:
    """A shape with its relief (multiplicative shading) and fixed-colour details, ready to be tinted."""

    box: _Box
    mask: BoolMask
    relief: FloatImage
    details: BoolMask | None = None
    detail_colour: Colour = (0.0, 0.0, 0.0)


def _tinted(rng: np.random.Generator, surface: _Surface, colour: Colour, grain: float = 3.0) -> _Layer:
    """Paint a surface in a colour; the same surface tinted twice gives a pure repaint."""
    h, w = surface.mask.shape
    image = np.empty((h, w, 3), np.float32)
    image[:] = colour
    image *= surface.relief[..., None]
    image += grain * rng.standard_normal((h, w, 1), dtype=np.float32)
    if surface.details is not None:
        image[surface.details] = surface.detail_colour
    return _Layer(surface.box, surface.mask, image)


def _roof_surface(rng: np.random.Generator, footprint: _Footprint, box: _Box, sun: Point, scale: float) -> _Surface:
    """Roof relief: a lit and a shaded slope per part (pitched) or a parapet and units (flat)."""
    mask = _polygon_mask(footprint.parts, box)
    relief = np.ones(mask.shape, np.float32)
    xs, ys = _pixel_grid(box)
    flat = rng.random() < 0.35
    details: BoolMask | None = None
    if not flat:
        for part in footprint.parts:
            part_mask = _polygon_mask([part], box)
            edge_a, edge_b = part[1] - part[0], part[2] - part[1]
            axis = edge_a if np.hypot(*edge_a) >= np.hypot(*edge_b) else edge_b
            nx, ny = -axis[1] / np.hypot(*axis), axis[0] / np.hypot(*axis)
            cx, cy = part.mean(axis=0)
            across = (xs - cx) * nx + (ys - cy) * ny
            facing = float(nx * sun[0] + ny * sun[1])
            slope = np.where(across >= 0, 1.0 + 0.16 * facing, 1.0 - 0.16 * facing)
            slope = np.where(np.abs(across) < max(0.7, 0.8 * scale), 1.12, slope)
            relief[part_mask] = slope[part_mask]
    else:
        details = np.zeros(mask.shape, bool)
        inner = mask & ~_edge_ring(mask, _px(4, scale))
        spots = np.argwhere(inner)
        for _ in range(int(rng.integers(1, 4)) if len(spots) else 0):
            y, x = spots[int(rng.integers(len(spots)))]
            side = _px(float(rng.uniform(3, 5)), scale)
            details[y : y + side, x : x + side] = True
        details &= inner
    relief[_edge_ring(mask, _px(1.5, scale))] *= 0.72
    relief *= 1.0 + 0.03 * _smooth_noise(rng, box.height, box.width, 4 * scale)
    return _Surface(box, mask, relief, details, (196.0, 198.0, 200.0))


def _vehicle_layers(
    rng: np.random.Generator, slot: _Slot, colour: Colour, shadow: Point, scale: float
) -> tuple[_Layer, _Layer, _Box]:
    """A car seen from above: body, windscreen and rear window, and a small shadow."""
    length = max(5.0, float(rng.uniform(13.0, 16.0)) * scale)
    width = max(3.0, float(rng.uniform(6.5, 7.5)) * scale)
    body = _rotated(_rect(-length / 2, -width / 2, length / 2, width / 2), slot.heading, (slot.x, slot.y))
    offset = np.asarray(shadow) * 2.5 * scale
    box = _Box.around(np.concatenate([body, body + offset]), 1)
    mask = _polygon_mask([body], box)
    xs, ys = _pixel_grid(box)
    along = ((xs - slot.x) * math.cos(slot.heading) + (ys - slot.y) * math.sin(slot.heading)) / length
    image = _texture(rng, box.height, box.width, colour, grain=3.0)
    glass = ((along > 0.1) & (along < 0.28)) | ((along > -0.42) & (along < -0.3))
    image[np.broadcast_to(glass, mask.shape)] = _GLASS
    if scale >= 1:  # below that the outline would swallow the whole car
        image[_edge_ring(mask, 1)] *= 0.75
    shadow_mask = _polygon_mask([body + offset], box)
    return _shade_layer(box, shadow_mask, 0.55), _Layer(box, mask, image), box


class _AerialPlanner:
    """Plans one aerial scene: ground, roads, then changes (so they always find room), then the rest."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.scale = size / 512.0
        self.n = size + 2 * _PAD
        self.draft = _Draft(self.n)
        azimuth = float(rng.uniform(0, 2 * math.pi))
        # Unit vector pointing away from the sun: shadows fall this way; ``sun`` points towards it.
        self.shadow = (math.cos(azimuth), math.sin(azimuth))
        self.sun = (-self.shadow[0], -self.shadow[1])
        self.edge = _PAD + _px(4, self.scale)
        self.occupied = np.zeros((self.n, self.n), bool)
        self.change_zone = np.zeros((self.n, self.n), bool)
        self.vehicle_zone = np.zeros((self.n, self.n), bool)
        self.paved = np.zeros((self.n, self.n), bool)
        self.asphalt = np.zeros((self.n, self.n), bool)
        self.markings = np.zeros((self.n, self.n), bool)
        self.roads: list[_Road] = []
        self.stalls: list[_Slot] = []
        self.done: set[str] = set()

    # -- orchestration ---------------------------------------------------------------------------------

    def plan(self) -> _Draft:
        self.draw_ground()
        self.draw_roads()
        if self.rng.random() < 0.5:
            self.draw_parking_lot()
        self.plan_changes()
        self.draw_static_scenery()
        return self.draft

    def plan_changes(self) -> None:
        # Relative frequency of each kind of change, and what adds it (False when it found no room).
        kinds: dict[str, tuple[float, Callable[[], bool]]] = {
            "new_building": (3.0, self.change_new_building),
            "demolished_building": (2.0, self.change_demolished_building),
            "cleared_trees": (2.0, self.change_cleared_trees),
            "recoloured_roof": (2.0, self.change_recoloured_roof),
            "resurfaced_ground": (2.0, self.change_resurfaced_ground),
            "arrived_vehicle": (2.0, lambda: self.change_vehicle("appear")),
            "departed_vehicle": (2.0, lambda: self.change_vehicle("disappear")),
            "dried_pond": (1.0, self.change_dried_pond),
            "resurfaced_road": (1.0, self.change_resurfaced_road),
        }
        once = {"dried_pond", "resurfaced_road"}
        names = list(kinds)
        weights = np.array([kinds[k][0] for k in names])
        want = int(self.rng.integers(2, 7))
        made = 0
        for _ in range(4 * want):
            if made == want:
                break
            kind = names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
            if kind in once and kind in self.done:
                continue
            if kinds[kind][1]():
                self.done.add(kind)
                made += 1

    def draw_static_scenery(self) -> None:
        if "dried_pond" not in self.done and self.rng.random() < 0.4:
            self.add_pond()
        for _ in range(int(self.rng.integers(9, 19))):
            self.add_building()
        for _ in range(int(self.rng.integers(6, 15))):
            self.add_trees()
        for _ in range(int(self.rng.integers(3, 11))):
            slot = self.vehicle_slot(self.roads_slot)
            if slot is not None:
                self.add_vehicle(slot, _pick(self.rng, list(_CAR_COLOURS)), "both")
        for stall in self.stalls:
            if self.rng.random() < 0.5 and self.vehicle_fits(stall):
                self.add_vehicle(stall, _pick(self.rng, list(_CAR_COLOURS)), "both")

    # -- placement -------------------------------------------------------------------------------------

    def random_centre(self, half: float) -> Point:
        low, high = self.edge + half, self.n - self.edge - half
        if high <= low:
            return (self.n / 2, self.n / 2)
        return (float(self.rng.uniform(low, high)), float(self.rng.uniform(low, high)))

    def is_free(self, box: _Box) -> bool:
        spaced = box.grown(_px(3, self.scale))
        return box.inside(self.edge, self.n - self.edge) and not self.occupied[spaced.clipped(self.n).slices()].any()

    def take(self, box: _Box, change: bool) -> None:
        self.occupied[box.clipped(self.n).slices()] = True
        if change:
            self.change_zone[box.grown(_px(2, self.scale)).clipped(self.n).slices()] = True

    # -- ground and roads ------------------------------------------------------------------------------

    def draw_ground(self) -> None:
        """Grass with dry patches and bare soil, lit unevenly, with fine grain."""
        n, s, rng = self.n, self.scale, self.rng
        soil = _sigmoid(5.0 * (_smooth_noise(rng, n, n, 150 * s) - 0.45))[..., None]
        dry = 0.7 * _sigmoid(4.0 * (_smooth_noise(rng, n, n, 80 * s) - 0.3))[..., None]
        colour = np.asarray(_GRASS, np.float32) * (1 - dry) + np.asarray(_DRY_GRASS, np.float32) * dry
        colour = colour * (1 - soil) + np.asarray(_SOIL, np.float32) * soil
        light = 1.0 + 0.08 * _smooth_noise(rng, n, n, 45 * s) + 0.06 * _smooth_noise(rng, n, n, 3 * s)
        image = np.asarray(colour * light[..., None], np.float32)
        image += 5.0 * rng.standard_normal((n, n, 1), dtype=np.float32)
        self.draft.add([_whole_layer(_Box(0, 0, n, n), image)])

    def plan_road_lines(self) -> list[_Road]:
        rng, n, s = self.rng, self.n, self.scale

        def road(angle_deg: float, through: Point) -> _Road:
            a = math.radians(angle_deg)
            width = float(rng.uniform(16, 24)) * s
            return _Road(through[0], through[1], math.cos(a), math.sin(a), width, bool(rng.random() < 0.7))

        def through() -> Point:
            return (float(rng.uniform(0.22 * n, 0.78 * n)), float(rng.uniform(0.22 * n, 0.78 * n)))

        base = (0.0 if rng.random() < 0.5 else 90.0) + float(rng.uniform(-12, 12))
        roads = [road(base, through())]
        if rng.random() < 0.65:
            roads.append(road(base + 90 + float(rng.uniform(-8, 8)), through()))
        if rng.random() < 0.3:
            first = roads[0]
            gap = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.3, 0.45)) * n
            px_, py_ = first.point(0.0, gap)
            if 0.08 * n < px_ < 0.92 * n and 0.08 * n < py_ < 0.92 * n:
                roads.append(road(base + float(rng.uniform(-3, 3)), (px_, py_)))
        return roads

    def draw_roads(self) -> None:
        """Asphalt bands with concrete kerbs and dashed centre lines (none inside crossings)."""
        n, s, rng = self.n, self.scale, self.rng
        self.roads = self.plan_road_lines()
        kerb = np.zeros((n, n), np.uint8)
        per_road = []
        reach = 2.0 * n
        for road in self.roads:
            p0 = tuple(round(v) for v in road.point(-reach))
            p1 = tuple(round(v) for v in road.point(reach))
            cv2.line(kerb, p0, p1, 1, thickness=round(road.width + 2 * _px(2.5, s)))
            own = np.zeros((n, n), np.uint8)
            cv2.line(own, p0, p1, 1, thickness=round(road.width))
            per_road.append(own.astype(bool))
        for i, road in enumerate(self.roads):
            self.asphalt |= per_road[i]
            if not road.marked:
                continue
            dashes = np.zeros((n, n), np.uint8)
            dash, gap = 9.0 * s, 8.0 * s
            t = -reach
            while t < reach:
                a = tuple(round(v) for v in road.point(t))
                b = tuple(round(v) for v in road.point(t + dash))
                cv2.line(dashes, a, b, 1, thickness=_px(1.5, s))
                t += dash + gap
            others = np.zeros((n, n), bool)
            for j, mask in enumerate(per_road):
                if j != i:
                    others |= mask
            self.markings |= dashes.astype(bool) & per_road[i] & ~others
        kerb_mask = kerb.astype(bool)
        base = np.where(
            self.asphalt[..., None], np.asarray(_ASPHALT, np.float32), np.asarray(_CONCRETE, np.float32)
        ).astype(np.float32)
        image = _texture(rng, n, n, (1.0, 1.0, 1.0), grain=0.0, blotch=0.06, cell=25 * s) * base
        image += 5.0 * rng.standard_normal((n, n, 1), dtype=np.float32)
        image[self.markings] = _PAINT_WHITE
        self.draft.add([_Layer(_Box(0, 0, n, n), kerb_mask, image)])
        self.paved |= self.asphalt
        grown = cv2.dilate(kerb, np.ones((3, 3), np.uint8), iterations=_px(3, s))
        self.occupied |= grown.astype(bool)

    def draw_parking_lot(self) -> None:
        """A static asphalt lot with two rows of stalls that vehicles may use."""
        s = self.scale
        for _ in range(30):
            w, h = float(self.rng.uniform(70, 110)) * s, float(self.rng.uniform(46, 58)) * s
            cx, cy = self.random_centre(max(w, h) / 2)
            box = _Box(int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2))
            if not self.is_free(box):
                continue
            layer, stalls = self.parking_lot(box, _LOT_ASPHALT)
            self.draft.add([layer])
            self.take(box, change=False)
            self.paved[box.slices()] = True
            self.stalls.extend(stalls)
            return

    def parking_lot(self, box: _Box, colour: Colour) -> tuple[_Layer, list[_Slot]]:
        s = self.scale
        image = _texture(self.rng, box.height, box.width, colour, grain=4.0, blotch=0.05, cell=15 * s)
        stall_w, stall_d, inset = 10.0 * s, 18.0 * s, 3.0 * s
        thick = _px(1.2, s)
        stalls: list[_Slot] = []
        count = int((box.width - 2 * inset) // stall_w)
        lines = np.zeros((box.height, box.width), np.uint8)
        for row_top in (inset, box.height - inset - stall_d):
            for k in range(count + 1):
                x = round(inset + k * stall_w)
                cv2.line(lines, (x, int(row_top)), (x, int(row_top + stall_d)), 1, thickness=thick)
            for k in range(count):
                centre_x = box.x0 + inset + (k + 0.5) * stall_w
                stalls.append(_Slot(centre_x, box.y0 + row_top + stall_d / 2, math.pi / 2, True))
        image[lines.astype(bool)] = _PAINT_WHITE
        return _whole_layer(box, image), stalls

    # -- vehicles --------------------------------------------------------------------------------------

    def roads_slot(self) -> _Slot:
        road = self.roads[int(self.rng.integers(len(self.roads)))]
        t = float(self.rng.uniform(-0.7, 0.7)) * self.n
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        x, y = road.point(t, side * road.width * 0.25)
        heading = math.atan2(road.dy, road.dx) + (0.0 if side > 0 else math.pi)
        return _Slot(x, y, heading, False)

    def stall_slot(self) -> _Slot:
        return self.stalls[int(self.rng.integers(len(self.stalls)))]

    def vehicle_fits(self, slot: _Slot) -> bool:
        """Whether the largest car _vehicle_layers may draw stands here on pavement, clear of others."""
        length, width = max(5.0, 16.0 * self.scale), max(3.0, 7.5 * self.scale)
        body = _rotated(_rect(-length / 2, -width / 2, length / 2, width / 2), slot.heading, (slot.x, slot.y))
        box = _Box.around(body, 1)
        if not box.grown(_px(3, self.scale)).inside(self.edge, self.n - self.edge):  # room for its shadow
            return False
        if self.vehicle_zone[box.slices()].any() or self.change_zone[box.slices()].any():
            return False
        return bool(self.paved[box.slices()][_polygon_mask([body], box)].all())

    def vehicle_slot(self, source: Callable[[], _Slot]) -> _Slot | None:
        for _ in range(40):
            slot = source()
            if self.vehicle_fits(slot):
                return slot
        return None

    def add_vehicle(self, slot: _Slot, colour_name: str, when: str) -> tuple[_Thing, _Box]:
        shadow, body, box = _vehicle_layers(self.rng, slot, _CAR_COLOURS[colour_name], self.shadow, self.scale)
        layers = [shadow, body]
        thing = self.draft.add(layers if when != "post" else [], layers if when != "pre" else [])
        self.vehicle_zone[box.clipped(self.n).slices()] = True
        return thing, box

    def change_vehicle(self, change_type: Literal["appear", "disappear"]) -> bool:
        use_lot = bool(self.stalls) and self.rng.random() < 0.35
        slot = self.vehicle_slot(self.stall_slot if use_lot else self.roads_slot)
        if slot is None:
            return False
        # Grey cars on grey asphalt would be a change nobody could see; keep the contrasting colours.
        colour = _pick(self.rng, ["white", "black", "red", "blue", "yellow"])
        thing, box = self.add_vehicle(slot, colour, "post" if change_type == "appear" else "pre")
        self.change_zone[box.grown(_px(3, self.scale)).clipped(self.n).slices()] = True
        where = "in the parking lot" if slot.in_lot else "on the road"
        verb = "that appeared" if change_type == "appear" else "that left"
        attributes = {"colour": colour, "size": "small", "shape": "rectangular"}
        self.draft.note(thing, change_type, "vehicle", f"the {colour} car {where} in the {{pos}} {verb}", attributes)
        return True

    # -- buildings -------------------------------------------------------------------------------------

    def place_building(self, lot_margin: float = 0.0) -> tuple[_Footprint, Point, _Box] | None:
        """Find room for a building (its lot and shadow included)."""
        s = self.scale
        for _ in range(40):
            footprint = _building_footprint(self.rng, self.random_centre(40 * s), s)
            height = float(self.rng.uniform(5, 14)) * s
            offset = (self.shadow[0] * height, self.shadow[1] * height)
            corners = footprint.corners()
            extent = np.concatenate([corners, corners + np.asarray(offset), footprint.lot(lot_margin)])
            box = _Box.around(extent, 2)
            if self.is_free(box):
                return footprint, offset, box
        return None

    def building_layers(
        self, footprint: _Footprint, offset: Point, box: _Box, colour: Colour
    ) -> tuple[_Layer, _Surface, _Layer]:
        shadow = _shade_layer(box, _cast_shadow(footprint.parts, offset, box), 0.5)
        roof = _roof_surface(self.rng, footprint, box, self.sun, self.scale)
        return shadow, roof, _tinted(self.rng, roof, colour)

    def add_building(self) -> None:
        placed = self.place_building()
        if placed is None:
            return
        footprint, offset, box = placed
        shadow, _, roof = self.building_layers(
            footprint, offset, box, _ROOF_COLOURS[_pick(self.rng, list(_ROOF_COLOURS))]
        )
        self.draft.add([shadow, roof])
        self.take(box, change=False)

    def change_new_building(self) -> bool:
        """A building put up on a lot that was cleared before the first date."""
        margin = 5.0 * self.scale
        placed = self.place_building(lot_margin=margin)
        if placed is None:
            return False
        footprint, offset, box = placed
        lot_name = _pick(self.rng, list(_LOT_COLOURS))
        lot_box = _Box.around(footprint.lot(margin), 1).clipped(self.n)
        lot_image = _texture(self.rng, lot_box.height, lot_box.width, _LOT_COLOURS[lot_name], 6.0, 0.08, 6 * self.scale)
        self.draft.add([_Layer(lot_box, _polygon_mask([footprint.lot(margin)], lot_box), lot_image)])
        colour = _contrasting(self.rng, _ROOF_COLOURS, _LOT_COLOURS[lot_name], 60.0)
        shadow, _, roof = self.building_layers(footprint, offset, box, _ROOF_COLOURS[colour])
        thing = self.draft.add([], [shadow, roof])
        self.take(box, change=True)
        attributes = {"colour": colour, "size": _size_word(footprint.u), "shape": footprint.shape}
        phrase = f"the {colour}-roofed building in the {{pos}} that appeared"
        self.draft.note(thing, "appear", "building", phrase, attributes)
        return True

    def change_demolished_building(self) -> bool:
        """A building torn down; its footprint is left as rubble and its shadow goes with it."""
        placed = self.place_building()
        if placed is None:
            return False
        footprint, offset, box = placed
        colour = _contrasting(self.rng, _ROOF_COLOURS, _RUBBLE, 50.0)
        shadow, roof_surface, roof = self.building_layers(footprint, offset, box, _ROOF_COLOURS[colour])
        rubble = _texture(self.rng, box.height, box.width, _RUBBLE, grain=10.0, blotch=0.1, cell=3 * self.scale)
        thing = self.draft.add([shadow, roof], [_Layer(box, roof_surface.mask, rubble, own=False)])
        self.take(box, change=True)
        attributes = {"colour": colour, "size": _size_word(footprint.u), "shape": footprint.shape}
        phrase = f"the {colour}-roofed building in the {{pos}} that was demolished"
        self.draft.note(thing, "disappear", "building", phrase, attributes)
        return True

    def change_recoloured_roof(self) -> bool:
        placed = self.place_building()
        if placed is None:
            return False
        footprint, offset, box = placed
        before = _pick(self.rng, list(_ROOF_COLOURS))
        after = _contrasting(self.rng, _ROOF_COLOURS, _ROOF_COLOURS[before], 70.0)
        shadow, surface, old_roof = self.building_layers(footprint, offset, box, _ROOF_COLOURS[before])
        new_roof = _tinted(self.rng, surface, _ROOF_COLOURS[after])
        thing = self.draft.add([shadow, old_roof], [shadow, new_roof])
        self.take(box, change=True)
        attributes = {
            "colour": after,
            "colour_before": before,
            "size": _size_word(footprint.u),
            "shape": footprint.shape,
        }
        phrase = f"the roof of the building in the {{pos}} that changed from {before} to {after}"
        self.draft.note(thing, "state_change", "roof", phrase, attributes)
        return True

    # -- vegetation, water, ground ---------------------------------------------------------------------

    def tree_cluster(self, centre: Point) -> _TreeCluster:
        """Where the trees of a cluster stand and how far their shadows reach (nothing drawn yet)."""
        rng, s = self.rng, self.scale
        u = float(rng.uniform())
        count = int(rng.integers(3, 10))
        spread = (8.0 + 14.0 * u) * s
        centres = np.asarray(centre) + rng.normal(0.0, spread / 2, (count, 2))
        radii = rng.uniform(5.0, 10.0, count) * s
        offsets = np.asarray(np.outer(radii * 1.3, self.shadow), np.float64)
        reach = np.concatenate([centres, centres + offsets])
        box = _Box.around(np.concatenate([reach - radii.max() * 1.15, reach + radii.max() * 1.15]), 1)
        return _TreeCluster(centres, radii, offsets, box, u, count)

    def tree_layers(self, cluster: _TreeCluster) -> tuple[_Layer, _Layer]:
        """Round canopies lit from the sun's side, with leafy texture, and their shadows."""
        rng, s, box = self.rng, self.scale, cluster.box
        xs, ys = _pixel_grid(box)
        wobble = _smooth_noise(rng, box.height, box.width, 3 * s)
        canopy = np.zeros((box.height, box.width), bool)
        image = np.zeros((box.height, box.width, 3), np.float32)
        # Southern-most first, so that canopies nearer the viewer's bottom edge overlap the others.
        for k in np.argsort(cluster.centres[:, 1]):
            (cx, cy), r = cluster.centres[k], float(cluster.radii[k])
            d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / r
            inside = d < 1.0 + 0.12 * wobble
            lit = ((xs - cx) * self.sun[0] + (ys - cy) * self.sun[1]) / r
            shade = np.clip(0.82 + 0.28 * lit - 0.18 * d**2, 0.45, 1.25)
            tone = (np.asarray((46.0, 88.0, 38.0)) + rng.uniform(-8, 8, 3)).astype(np.float32)
            np.copyto(image, tone * shade[..., None], where=inside[..., None])
            canopy |= inside
        image *= (1.0 + 0.14 * _smooth_noise(rng, box.height, box.width, 1.6 * s))[..., None]
        image += 4.0 * rng.standard_normal((box.height, box.width, 1), dtype=np.float32)
        shadow = _disc_mask([tuple(c) for c in cluster.centres + cluster.offsets], list(cluster.radii), box)
        return _shade_layer(box, shadow, 0.6), _Layer(box, canopy, image)

    def place_trees(self) -> _TreeCluster | None:
        for _ in range(30):
            cluster = self.tree_cluster(self.random_centre(40 * self.scale))
            if self.is_free(cluster.box):
                return cluster
        return None

    def add_trees(self) -> None:
        cluster = self.place_trees()
        if cluster is not None:
            self.draft.add(self.tree_layers(cluster))
            self.take(cluster.box, change=False)

    def change_cleared_trees(self) -> bool:
        cluster = self.place_trees()
        if cluster is None:
            return False
        shadow, canopy = self.tree_layers(cluster)
        box, u, count = cluster.box, cluster.u, cluster.count
        soil = _texture(self.rng, box.height, box.width, _BARE_SOIL, grain=9.0, blotch=0.1, cell=4 * self.scale)
        thing = self.draft.add([shadow, canopy], [_Layer(box, canopy.mask, soil, own=False)])
        self.take(box, change=True)
        attributes = {"colour": "green", "size": _size_word(u), "shape": "cluster", "count": str(count)}
        self.draft.note(
            thing, "disappear", "vegetation", "the cluster of trees in the {pos} that was cleared", attributes
        )
        return True

    def pond(self, centre: Point) -> tuple[_Layer, _Layer, _Layer, _Box, float]:
        """An irregular pond with a muddy shore, darker towards its deep middle; and how it looks dry."""
        rng, s = self.rng, self.scale
        u = float(rng.uniform())
        radius = (22.0 + 24.0 * u) * s
        theta = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        wobble = 1.0 + sum(
            float(rng.uniform(0.03, 0.12)) * np.cos(k * theta + float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 5)
        )
        aspect = float(rng.uniform(0.6, 1.0))
        local = np.stack([radius * wobble * np.cos(theta), aspect * radius * wobble * np.sin(theta)], axis=1)
        outline = _rotated(local, float(rng.uniform(0, math.pi)), centre)
        shore_width = _px(3, s)
        box = _Box.around(outline, shore_width + 2)
        water = _polygon_mask([outline], box)
        shore = cv2.dilate(water.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=shore_width).astype(bool)
        depth = cv2.distanceTransform(water.astype(np.uint8), cv2.DIST_L2, 3)
        depth = np.minimum(depth / max(float(depth.max()), 1.0) * 2.0, 1.0)
        water_image = _texture(rng, box.height, box.width, _WATER, grain=1.5, blotch=0.05, cell=12 * s)
        water_image *= (1.2 - 0.35 * depth)[..., None]
        shore_image = _texture(rng, box.height, box.width, _SHORE, grain=7.0, blotch=0.1, cell=3 * s)
        mud = _texture(rng, box.height, box.width, _DRY_MUD, grain=6.0, blotch=0.08, cell=8 * s)
        cracks = np.abs(_smooth_noise(rng, box.height, box.width, 5 * s)) < 0.06
        mud[cracks] *= 0.7
        return (
            _Layer(box, shore, shore_image, own=False),
            _Layer(box, water, water_image),
            _Layer(box, water, mud, own=False),
            box,
            u,
        )

    def place_pond(self) -> tuple[_Layer, _Layer, _Layer, _Box, float] | None:
        for _ in range(30):
            pond = self.pond(self.random_centre(50 * self.scale))
            if self.is_free(pond[3]):
                return pond
        return None

    def add_pond(self) -> None:
        pond = self.place_pond()
        if pond is not None:
            self.draft.add(pond[:2])
            self.take(pond[3], change=False)

    def change_dried_pond(self) -> bool:
        pond = self.place_pond()
        if pond is None:
            return False
        shore, water, mud, box, u = pond
        thing = self.draft.add([shore, water], [shore, mud])
        self.take(box, change=True)
        attributes = {"colour": "dark blue-green", "size": _size_word(u), "shape": "irregular"}
        self.draft.note(thing, "disappear", "water", "the pond in the {pos} that dried up", attributes)
        return True

    def change_resurfaced_ground(self) -> bool:
        """A mown lawn paved into a parking lot, or dug up to bare soil."""
        s = self.scale
        for _ in range(30):
            u = float(self.rng.uniform())
            w, h = (50.0 + 40.0 * u) * s, float(self.rng.uniform(40, 62)) * s
            cx, cy = self.random_centre(max(w, h) / 2)
            box = _Box(int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2))
            if self.is_free(box):
                break
        else:
            return False
        mask = np.ones((box.height, box.width), bool)
        xs, _ = _pixel_grid(box)
        stripes = np.where(((xs - box.x0) // _px(6, s)) % 2 == 0, 1.06, 0.94).astype(np.float32)
        lawn = _texture(self.rng, box.height, box.width, _LAWN, grain=5.0, blotch=0.05, cell=10 * s)
        lawn *= np.broadcast_to(stripes, mask.shape)[..., None]
        if self.rng.random() < 0.6:
            after_layer, _ = self.parking_lot(box, _CONCRETE)
            after, colour = "parking lot", "light grey"
            phrase = "the grass field in the {pos} that was paved into a parking lot"
        else:
            soil = _texture(self.rng, box.height, box.width, _BARE_SOIL, grain=9.0, blotch=0.12, cell=5 * s)
            after_layer, after, colour = _Layer(box, mask, soil), "bare soil", "light brown"
            phrase = "the grass field in the {pos} that was dug up to bare soil"
        thing = self.draft.add([_Layer(box, mask, lawn)], [after_layer])
        self.take(box, change=True)
        attributes = {
            "colour": colour,
            "colour_before": "green",
            "before": "grass",
            "after": after,
            "size": _size_word(u),
            "shape": "rectangular",
        }
        self.draft.note(thing, "state_change", "ground", phrase, attributes)
        return True

    def change_resurfaced_road(self) -> bool:
        """A worn, pale road section laid with fresh dark asphalt and crisp markings."""
        s = self.scale
        for _ in range(30):
            road = self.roads[int(self.rng.integers(len(self.roads)))]
            u = float(self.rng.uniform())
            length = (60.0 + 50.0 * u) * s
            t = float(self.rng.uniform(-0.5, 0.5)) * self.n
            cx, cy = road.point(t)
            half = road.width / 2 + 2
            corners = np.array(
                [road.point(t + a * length / 2, b * half) for a in (-1, 1) for b in (-1, 1)], dtype=np.float64
            )
            box = _Box.around(corners, 1)
            inside = box.inside(self.edge, self.n - self.edge)
            if inside and not self.change_zone[box.slices()].any() and not self.vehicle_zone[box.slices()].any():
                break
        else:
            return False
        xs, ys = _pixel_grid(box)
        along = (xs - cx) * road.dx + (ys - cy) * road.dy
        across = -(xs - cx) * road.dy + (ys - cy) * road.dx
        band = (np.abs(along) <= length / 2) & (np.abs(across) <= half)
        mask = band & self.asphalt[box.slices()]
        paint = self.markings[box.slices()]
        worn = _texture(self.rng, box.height, box.width, _WORN_ASPHALT, grain=6.0, blotch=0.08, cell=6 * s)
        worn[np.abs(_smooth_noise(self.rng, box.height, box.width, 6 * s)) < 0.05] *= 0.55
        worn[paint] = (188.0, 188.0, 182.0)
        fresh = _texture(self.rng, box.height, box.width, _FRESH_ASPHALT, grain=2.5)
        fresh[paint] = (242.0, 242.0, 238.0)
        thing = self.draft.add([_Layer(box, mask, worn)], [_Layer(box, mask, fresh)])
        self.change_zone[box.grown(_px(3, s)).clipped(self.n).slices()] = True
        attributes = {
            "colour": "dark grey",
            "colour_before": "light grey",
            "before": "worn asphalt",
            "after": "fresh asphalt",
            "size": _size_word(u),
            "shape": "strip",
        }
        self.draft.note(thing, "state_change", "road", "the road section in the {pos} that was resurfaced", attributes)
        return True


# ---------------------------------------------------------------------------------------------------------
# Street scenes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Door:
    thing: _Thing
    surface: _Surface
    colour: str
    box: _Box


@dataclass(frozen=True, eq=False)
class _Facade:
    """One building front: its wall (and door, unless it falls outside the view), with the surfaces to
    repaint them."""

    box: _Box
    wall: _Thing
    wall_surface: _Surface
    wall_colour: str
    door: _Door | None


# Side view of a car as (along, up) fractions of its length and height.
_CAR_BODY = np.array(
    [
        (0.0, 0.18), (0.0, 0.45), (0.05, 0.55), (0.25, 0.58), (0.36, 0.94), (0.70, 0.94),
        (0.82, 0.58), (0.97, 0.52), (1.0, 0.40), (1.0, 0.18),
    ]
)  # fmt: skip
_CAR_WINDOWS = (
    np.array([(0.30, 0.60), (0.38, 0.87), (0.51, 0.87), (0.51, 0.60)]),
    np.array([(0.54, 0.60), (0.54, 0.87), (0.68, 0.87), (0.77, 0.60)]),
)


class _StreetPlanner:
    """Plans one street-level scene: sky, facades, pavement and road, then changes, then props."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.scale = size / 512.0
        self.n = size + 2 * _PAD
        self.draft = _Draft(self.n)
        self.edge = _PAD + _px(4, self.scale)
        self.y_ground = int(self.n * float(rng.uniform(0.64, 0.71)))
        self.y_kerb = self.y_ground + int(self.n * float(rng.uniform(0.1, 0.13)))
        self.facades: list[_Facade] = []
        self.used_facades: set[int] = set()
        self.occupied = np.zeros((self.n, self.n), bool)
        self.foreground: list[tuple[float, _Thing]] = []
        self.backdrop: np.ndarray = np.zeros((self.n, self.n, 3), np.float32)

    def plan(self) -> _Draft:
        self.draw_sky()
        self.draw_facades()
        self.draw_pavement()
        self.draw_road()
        # What stands behind a new or removed object, to pick a colour that stands out from it.
        self.backdrop = _render(self.draft, "pre")[0]
        self.plan_changes()
        self.draw_props()
        for _, thing in sorted(self.foreground, key=lambda item: item[0]):
            self.draft.things.append(thing)
        return self.draft

    def plan_changes(self) -> None:
        # Relative frequency of each kind of change, and what adds it (False when it found no room).
        kinds: dict[str, tuple[float, Callable[[], bool]]] = {
            "parked_car": (2.0, lambda: self.change_car("appear")),
            "departed_car": (2.0, lambda: self.change_car("disappear")),
            "placed_object": (2.0, lambda: self.change_object("appear")),
            "removed_object": (2.0, lambda: self.change_object("disappear")),
            "removed_tarp": (1.0, self.change_removed_tarp),
            "repainted_facade": (1.0, self.change_repainted_wall),
            "repainted_door": (1.0, self.change_repainted_door),
            "thriving_grass": (1.0, self.change_thriving_grass),
        }
        names = list(kinds)
        weights = np.array([kinds[k][0] for k in names])
        want = int(self.rng.integers(2, 5))
        made = 0
        for _ in range(4 * want):
            if made == want:
                break
            kind = names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
            if kinds[kind][1]():
                made += 1

    # -- backdrop --------------------------------------------------------------------------------------

    def draw_sky(self) -> None:
        n, s = self.n, self.scale
        box = _Box(0, 0, n, self.y_ground)
        t = np.linspace(0.0, 1.0, box.height, dtype=np.float32)[:, None, None]
        top, horizon = np.array([92.0, 146.0, 212.0]), np.array([196.0, 214.0, 234.0])
        image = np.asarray(top * (1 - t) + horizon * t, np.float32) * np.ones((1, n, 1), np.float32)
        cloud = np.clip(_smooth_noise(self.rng, box.height, n, 60 * s) * 1.4 - 0.5, 0.0, 1.0)[..., None]
        clouded = image * (1 - 0.8 * cloud) + 245.0 * 0.8 * cloud
        clouded += 1.5 * self.rng.standard_normal((box.height, n, 1), dtype=np.float32)
        self.draft.add([_whole_layer(box, np.asarray(clouded, np.float32))])

    def draw_facades(self) -> None:
        n, rng = self.n, self.rng
        x = -float(rng.uniform(0, 0.1)) * n
        while x < n:
            width = float(rng.uniform(0.2, 0.36)) * n
            top = int(float(rng.uniform(0.05, 0.3)) * n)
            box = _Box(int(x), top, int(x + width), self.y_ground).clipped(n)
            if box.width > 4:
                self.facades.append(self.facade(box, int(x), int(x + width)))
            x += width

    def facade(self, box: _Box, left: int, right: int) -> _Facade:
        """A wall with a cornice, rows of windows and a door at street level."""
        rng, n, s = self.rng, self.n, self.scale
        wall_colour = _pick(rng, list(_WALL_COLOURS))
        relief = 1.0 + 0.04 * _smooth_noise(rng, box.height, box.width, 20 * s)
        if wall_colour == "brick-red":
            _, ys = _pixel_grid(box)
            mortar = ((ys - box.y0) % _px(5, s)) < max(1, _px(1, s))
            relief = np.where(mortar, relief * 1.25, relief)
        cornice = _px(8, s)
        relief[:cornice] *= 0.78
        relief[:, : _px(2, s)] *= 0.8  # the seam between neighbouring buildings
        relief[-_px(6, s) :] *= 0.86  # plinth
        wall_surface = _Surface(box, np.ones((box.height, box.width), bool), np.asarray(relief, np.float32))
        wall = self.draft.add([_tinted(rng, wall_surface, _WALL_COLOURS[wall_colour], 2.5)])

        door_w, door_h = float(rng.uniform(0.045, 0.06)) * n, float(rng.uniform(0.09, 0.12)) * n
        door_cx = left + (right - left) * float(rng.uniform(0.3, 0.7))
        door_box = _Box(
            int(door_cx - door_w / 2), int(self.y_ground - door_h), int(door_cx + door_w / 2), self.y_ground
        )
        self.draw_windows(box, door_box.y0 - _px(10, s))
        if not door_box.inside(0, n):
            return _Facade(box, wall, wall_surface, wall_colour, None)
        door_surface = self.door_surface(door_box)
        door_colour = _pick(rng, list(_DOOR_COLOURS))
        door = self.draft.add([_tinted(rng, door_surface, _DOOR_COLOURS[door_colour], 2.0)])
        return _Facade(box, wall, wall_surface, wall_colour, _Door(door, door_surface, door_colour, door_box))

    def draw_windows(self, box: _Box, lowest: int) -> None:
        """Framed windows with a sill, glass darker at the bottom where it reflects less sky."""
        rng, n, s = self.rng, self.n, self.scale
        floor_h = float(rng.uniform(0.075, 0.1)) * n
        win_w, win_h = floor_h * float(rng.uniform(0.38, 0.5)), floor_h * 0.6
        usable_w = box.width - 2 * _px(8, s)
        columns = max(1, int(usable_w // (win_w * 2.0)))
        top = box.y0 + _px(8, s) + floor_h * 0.3
        rows = int((lowest - top) // floor_h)
        if rows < 1 or usable_w < win_w:
            return
        step = usable_w / columns
        mask = np.zeros((box.height, box.width), bool)
        image = np.zeros((box.height, box.width, 3), np.float32)
        frame, sill = _px(1.5, s), _px(2.5, s)
        glass = _texture(rng, box.height, box.width, _GLASS, grain=2.0)
        for r in range(rows):
            for c in range(columns):
                x0 = int(box.x0 + _px(8, s) + c * step + (step - win_w) / 2) - box.x0
                y0 = int(top + r * floor_h) - box.y0
                x1, y1 = x0 + int(win_w), y0 + int(win_h)
                if x0 < 0 or x1 > box.width:
                    continue
                mask[y0 : y1 + sill, x0 - 1 : x1 + 1] = True
                image[y0:y1, x0:x1] = (226.0, 224.0, 216.0)
                image[y1 : y1 + sill, x0 - 1 : x1 + 1] = (198.0, 194.0, 184.0)
                pane = glass[y0 + frame : y1 - frame, x0 + frame : x1 - frame]
                sky = np.linspace(1.5, 0.85, pane.shape[0], dtype=np.float32)[:, None, None]
                image[y0 + frame : y1 - frame, x0 + frame : x1 - frame] = pane * sky
        self.draft.add([_Layer(box, mask, image)])

    def door_surface(self, box: _Box) -> _Surface:
        s = self.scale
        relief = np.ones((box.height, box.width), np.float32)
        inset = _px(4, s)
        panel = np.zeros_like(relief, dtype=np.uint8)
        cv2.rectangle(panel, (inset, inset), (box.width - 1 - inset, box.height // 2 - inset // 2), 1, _px(1, s))
        cv2.rectangle(
            panel, (inset, box.height // 2 + inset // 2), (box.width - 1 - inset, box.height - 1 - inset), 1, _px(1, s)
        )
        relief[panel.astype(bool)] = 0.78
        relief[_edge_ring(np.ones_like(relief, dtype=bool), _px(1.5, s))] = 0.7
        handle = np.zeros_like(relief, dtype=bool)
        hy, hx = box.height // 2, box.width - inset - _px(3, s)
        handle[hy - _px(1.5, s) : hy + _px(1.5, s) + 1, hx - _px(1, s) : hx + _px(1, s) + 1] = True
        return _Surface(box, np.ones_like(relief, dtype=bool), relief, handle, (214.0, 184.0, 90.0))

    def draw_pavement(self) -> None:
        """Paving slabs in rows that widen towards the viewer, ending in a kerb."""
        n, s, rng = self.n, self.scale, self.rng
        box = _Box(0, self.y_ground, n, self.y_kerb)
        image = _texture(rng, box.height, n, (178.0, 174.0, 166.0), grain=4.0, blotch=0.05, cell=12 * s)
        joints = np.zeros((box.height, n), np.uint8)
        rows = 5
        edges = [int(box.height * (k / rows) ** 1.3) for k in range(rows + 1)]
        for k in range(rows):
            cv2.line(joints, (0, edges[k]), (n - 1, edges[k]), 1, 1)
            slab = _px(26, s) * (1 + k * 0.25)
            for x in np.arange((k % 2) * slab / 2, n, slab):
                cv2.line(joints, (int(x), edges[k]), (int(x), edges[k + 1]), 1, 1)
        image[joints.astype(bool)] *= 0.82
        kerb = _px(5, s)
        image[-kerb:] = image[-kerb:] * 1.1
        image[-1:] *= 0.5
        self.draft.add([_whole_layer(box, image)])

    def draw_road(self) -> None:
        n, s, rng = self.n, self.scale, self.rng
        box = _Box(0, self.y_kerb, n, n)
        image = _texture(rng, box.height, n, (78.0, 78.0, 82.0), grain=5.0, blotch=0.06, cell=20 * s)
        line = np.zeros((box.height, n), np.uint8)
        y = int(box.height * 0.7)
        for x in np.arange(-float(rng.uniform(0, 40)) * s, n, 70 * s):
            cv2.line(line, (int(x), y), (int(x + 40 * s), y), 1, _px(3, s))
        image[line.astype(bool)] = _PAINT_WHITE
        self.draft.add([_whole_layer(box, image)])

    # -- placement -------------------------------------------------------------------------------------

    def is_free(self, box: _Box) -> bool:
        if not box.inside(self.edge, self.n - self.edge):
            return False
        return not self.occupied[box.grown(_px(3, self.scale)).clipped(self.n).slices()].any()

    def backdrop_colour(self, layer: _Layer) -> Colour:
        region = self.backdrop[layer.box.slices()][layer.mask]
        mean = region.mean(axis=0) if len(region) else np.zeros(3)
        return (float(mean[0]), float(mean[1]), float(mean[2]))

    def add_foreground(self, base_y: float, pre: Sequence[_Layer], post: Sequence[_Layer]) -> _Thing:
        thing = _Thing(tuple(pre), tuple(post))
        self.foreground.append((base_y, thing))
        return thing

    # -- props -----------------------------------------------------------------------------------------

    def car(self, left: float, base_y: float, u: float, colour: Colour, flip: bool) -> tuple[_Layer, _Layer, _Box]:
        """A car in side view: body, two windows, wheels with hubs, lights and a ground shadow."""
        n = self.n
        u_length = (0.2 + 0.05 * u) * n
        height = u_length * 0.36

        def to_canvas(points: NDArray[np.float64]) -> NDArray[np.float64]:
            along = 1.0 - points[:, 0] if flip else points[:, 0]
            return np.stack([left + along * u_length, base_y - points[:, 1] * height], axis=1)

        body = to_canvas(_CAR_BODY)
        wheel_r = 0.17 * height
        wheels = [(left + (1 - a if flip else a) * u_length, base_y - wheel_r) for a in (0.2, 0.8)]
        box = _Box.around(np.concatenate([body, [[left, base_y + 0.1 * height]]]), 2)
        mask = _polygon_mask([body], box) | _disc_mask(wheels, [wheel_r, wheel_r], box)
        _, ys = _pixel_grid(box)
        up = np.clip((base_y - ys) / height, 0.0, 1.0)
        image = _texture(self.rng, box.height, box.width, colour, grain=2.5)
        image *= (0.8 + 0.3 * up)[..., None]
        glass = _polygon_mask([to_canvas(w) for w in _CAR_WINDOWS], box)
        image[glass] = np.asarray((70.0, 86.0, 104.0)) * (0.8 + 0.5 * np.broadcast_to(up, mask.shape)[glass, None])
        tyres = _disc_mask(wheels, [wheel_r, wheel_r], box)
        image[tyres] = (28.0, 28.0, 30.0)
        image[_disc_mask(wheels, [wheel_r * 0.5] * 2, box)] = (150.0, 150.0, 156.0)
        lights = _polygon_mask([to_canvas(_rect(0.95, 0.38, 1.0, 0.46)), to_canvas(_rect(0.0, 0.38, 0.04, 0.46))], box)
        image[lights & mask] = (240.0, 200.0, 120.0)
        shadow = np.zeros(mask.shape, np.uint8)
        centre = (int(left + u_length / 2 - box.x0), int(base_y - box.y0))
        cv2.ellipse(shadow, centre, (int(u_length * 0.52), max(1, int(height * 0.08))), 0, 0, 360, 1, -1)
        return _shade_layer(box, shadow.astype(bool), 0.55), _Layer(box, mask, image), box

    def statue(self, cx: float, base_y: float, u: float, colour: Colour) -> tuple[_Layer, _Box]:
        """A figure on a pedestal, lit from the left."""
        n = self.n
        height = (0.18 + 0.07 * u) * n
        ped_w, ped_h = 0.055 * n, 0.22 * height
        body_w, body_h = 0.035 * n, 0.6 * height
        head_r = 0.07 * height
        pedestal = _rect(cx - ped_w / 2, base_y - ped_h, cx + ped_w / 2, base_y)
        top = base_y - ped_h
        body = np.array(
            [
                (cx - body_w * 0.35, top), (cx - body_w * 0.5, top - body_h * 0.75),
                (cx - body_w * 0.3, top - body_h), (cx + body_w * 0.3, top - body_h),
                (cx + body_w * 0.5, top - body_h * 0.75), (cx + body_w * 0.35, top),
            ]
        )  # fmt: skip
        head = (cx, top - body_h - head_r * 0.8)
        box = _Box.around(np.concatenate([pedestal, body, [[head[0], head[1] - head_r]]]), 2)
        figure = _polygon_mask([body], box) | _disc_mask([head], [head_r], box)
        base = _polygon_mask([pedestal], box)
        xs, _ = _pixel_grid(box)
        lit = np.clip(1.15 - 0.45 * (xs - (cx - body_w / 2)) / body_w, 0.7, 1.15)
        image = _texture(self.rng, box.height, box.width, colour, grain=3.0)
        image *= np.broadcast_to(lit, figure.shape)[..., None]
        image[base] = _texture(self.rng, box.height, box.width, (112.0, 108.0, 102.0), grain=4.0)[base]
        return _Layer(box, figure | base, image), box

    def sign(self, cx: float, base_y: float, u: float, colour: Colour) -> tuple[_Layer, _Box]:
        """A panel on a grey pole."""
        n, s = self.n, self.scale
        height = (0.17 + 0.06 * u) * n
        panel_w, panel_h = 0.075 * n, 0.055 * n
        pole_w = max(2.0, 3.0 * s)
        pole = _rect(cx - pole_w / 2, base_y - height, cx + pole_w / 2, base_y)
        panel = _rect(cx - panel_w / 2, base_y - height - panel_h, cx + panel_w / 2, base_y - height + panel_h * 0.2)
        box = _Box.around(np.concatenate([pole, panel]), 2)
        panel_mask = _polygon_mask([panel], box)
        mask = _polygon_mask([pole], box) | panel_mask
        image = _texture(self.rng, box.height, box.width, (124.0, 126.0, 130.0), grain=3.0)
        face = _texture(self.rng, box.height, box.width, colour, grain=2.0)
        image[panel_mask] = face[panel_mask]
        image[_edge_ring(panel_mask, _px(2, s))] = (236.0, 236.0, 232.0)
        return _Layer(box, mask, image), box

    def bench(self, cx: float, base_y: float, u: float, colour: Colour) -> tuple[_Layer, _Box]:
        """A bench: seat and backrest planks on dark legs."""
        n, s = self.n, self.scale
        width = (0.11 + 0.05 * u) * n
        seat_y = base_y - 0.03 * n
        plank = max(2.0, 0.011 * n)
        seat = _rect(cx - width / 2, seat_y - plank, cx + width / 2, seat_y)
        backs = [
            _rect(
                cx - width / 2,
                seat_y - (2.2 + 1.6 * k) * plank - plank,
                cx + width / 2,
                seat_y - (2.2 + 1.6 * k) * plank,
            )
            for k in range(2)
        ]
        leg_w = max(2.0, 2.0 * s)
        legs = [
            _rect(x - leg_w / 2, seat_y - 4.5 * plank, x + leg_w / 2, base_y)
            for x in (cx - width * 0.4, cx + width * 0.4)
        ]
        box = _Box.around(np.concatenate([seat, *backs, *legs]), 2)
        wood = _polygon_mask([seat, *backs], box)
        mask = wood | _polygon_mask(legs, box)
        image = np.empty((box.height, box.width, 3), np.float32)
        image[:] = (40.0, 40.0, 44.0)
        image[wood] = _texture(self.rng, box.height, box.width, colour, grain=4.0)[wood]
        return _Layer(box, mask, image), box

    def draw_props(self) -> None:
        """Static street furniture so that not everything in view is a change."""
        for _ in range(int(self.rng.integers(1, 4))):
            self.add_lamp()
        if self.rng.random() < 0.6:
            self.add_street_tree()
        if self.rng.random() < 0.5:
            placed = self.place_car(_pick(self.rng, list(_CAR_COLOURS)))
            if placed is not None:
                base_y, layers, _ = placed
                self.add_foreground(base_y, layers, layers)

    def add_lamp(self) -> None:
        n, s = self.n, self.scale
        for _ in range(20):
            cx = float(self.rng.uniform(0.05, 0.95)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.01 * n, self.y_kerb - 0.01 * n))
            height = float(self.rng.uniform(0.3, 0.4)) * n
            pole_w = max(2.0, 3.5 * s)
            pole = _rect(cx - pole_w / 2, base_y - height, cx + pole_w / 2, base_y)
            head = _rect(cx - 4 * pole_w, base_y - height - 2.5 * pole_w, cx + 4 * pole_w, base_y - height)
            box = _Box.around(np.concatenate([pole, head]), 2)
            if self.is_free(box):
                mask = _polygon_mask([pole, head], box)
                image = _texture(self.rng, box.height, box.width, (48.0, 52.0, 56.0), grain=3.0)
                self.occupied[box.slices()] = True
                layer = _Layer(box, mask, image)
                self.add_foreground(base_y, [layer], [layer])
                return

    def add_street_tree(self) -> None:
        n, s = self.n, self.scale
        for _ in range(20):
            cx = float(self.rng.uniform(0.08, 0.92)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.01 * n, self.y_kerb - 0.01 * n))
            radius = float(self.rng.uniform(0.07, 0.1)) * n
            trunk_h = 0.12 * n
            trunk = _rect(cx - 3 * s, base_y - trunk_h, cx + 3 * s, base_y)
            blobs = [
                (cx + dx * radius, base_y - trunk_h - radius * 0.6 + dy * radius)
                for dx, dy in ((0, -0.3), (-0.45, 0.1), (0.45, 0.1), (0, 0.25))
            ]
            radii = [radius * 0.75] * len(blobs)
            box = _Box.around(
                np.array([[cx - 1.3 * radius, base_y - trunk_h - 1.7 * radius], [cx + 1.3 * radius, base_y]]), 2
            )
            if not self.is_free(box):
                continue
            crown = _disc_mask(blobs, radii, box)
            mask = crown | _polygon_mask([trunk], box)
            image = _texture(self.rng, box.height, box.width, (96.0, 70.0, 46.0), grain=4.0)
            leaves = _texture(self.rng, box.height, box.width, (58.0, 100.0, 44.0), grain=6.0, blotch=0.2, cell=4 * s)
            image[crown] = leaves[crown]
            self.occupied[box.slices()] = True
            layer = _Layer(box, mask, image)
            self.add_foreground(base_y, [layer], [layer])
            return

    def place_car(self, colour_name: str | None) -> tuple[float, list[_Layer], str] | None:
        """Find room for a car on the road; with no colour given, pick one that stands out there."""
        n = self.n
        for _ in range(30):
            left = float(self.rng.uniform(0.0, 0.78)) * n
            base_y = float(self.rng.uniform(self.y_kerb + 0.05 * n, n - 0.02 * n))
            flip = bool(self.rng.random() < 0.5)
            u = float(self.rng.uniform())
            shadow, body, box = self.car(left, base_y, u, (0.0, 0.0, 0.0), flip)
            if not self.is_free(box):
                continue
            name = colour_name or _contrasting(self.rng, _CAR_COLOURS, self.backdrop_colour(body), 70.0)
            shadow, body, box = self.car(left, base_y, u, _CAR_COLOURS[name], flip)
            self.occupied[box.slices()] = True
            return base_y, [shadow, body], name
        return None

    # -- changes ---------------------------------------------------------------------------------------

    def change_car(self, change_type: Literal["appear", "disappear"]) -> bool:
        placed = self.place_car(None)
        if placed is None:
            return False
        base_y, layers, colour = placed
        thing = self.add_foreground(
            base_y, layers if change_type == "disappear" else [], layers if change_type == "appear" else []
        )
        if change_type == "appear":
            phrase = f"the {colour} car parked in the {{pos}} that appeared"
        else:
            phrase = f"the {colour} car in the {{pos}} that drove away"
        attributes = {"colour": colour, "size": "medium", "shape": "car"}
        self.draft.note(thing, change_type, "vehicle", phrase, attributes)
        return True

    def change_object(self, change_type: Literal["appear", "disappear"]) -> bool:
        """A statue, sign or bench placed on, or taken off, the pavement."""
        n = self.n
        kind = _pick(self.rng, ["statue", "sign", "bench"])
        makers: dict[str, tuple[Callable[[float, float, float, Colour], tuple[_Layer, _Box]], dict[str, Colour]]] = {
            "statue": (self.statue, _STATUE_COLOURS),
            "sign": (self.sign, _SIGN_COLOURS),
            "bench": (self.bench, _BENCH_COLOURS),
        }
        draw, palette = makers[kind]
        for _ in range(30):
            cx = float(self.rng.uniform(0.08, 0.92)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.02 * n, self.y_kerb - 0.01 * n))
            u = float(self.rng.uniform())
            layer, box = draw(cx, base_y, u, (0.0, 0.0, 0.0))
            if self.is_free(box):
                break
        else:
            return False
        colour = _contrasting(self.rng, palette, self.backdrop_colour(layer), 70.0)
        layer, box = draw(cx, base_y, u, palette[colour])
        self.occupied[box.slices()] = True
        present = [layer]
        thing = self.add_foreground(
            base_y, present if change_type == "disappear" else [], present if change_type == "appear" else []
        )
        if change_type == "appear":
            phrase = f"the newly placed {colour} {kind} in the {{pos}}"
        else:
            phrase = f"the {colour} {kind} in the {{pos}} that was removed"
        attributes = {"colour": colour, "size": _size_word(u), "shape": kind}
        self.draft.note(thing, change_type, "object", phrase, attributes)
        return True

    def free_facade(self, need_door: bool) -> _Facade | None:
        """A facade with no change yet, mostly in view (its door fully in view when it matters)."""
        low, high = self.edge + _px(6, self.scale), self.n - self.edge - _px(6, self.scale)
        options = []
        for i, facade in enumerate(self.facades):
            if i in self.used_facades:
                continue
            if need_door and (facade.door is None or not (facade.door.box.x0 >= low and facade.door.box.x1 <= high)):
                continue
            visible = min(facade.box.x1, high) - max(facade.box.x0, low)
            if visible >= 0.6 * facade.box.width:
                options.append(i)
        if not options:
            return None
        chosen = options[int(self.rng.integers(len(options)))]
        self.used_facades.add(chosen)
        return self.facades[chosen]

    def change_removed_tarp(self) -> bool:
        """A loose tarp hung over an entrance, taken away by the second date."""
        facade = self.free_facade(need_door=True)
        if facade is None or facade.door is None:
            return False
        s, door = self.scale, facade.door.box
        jitter = lambda: float(self.rng.uniform(-3, 3)) * s  # noqa: E731 - a one-line helper reads best here
        outline = np.array(
            [
                (door.x0 - 8 * s + jitter(), door.y0 - 10 * s + jitter()),
                (door.x1 + 8 * s + jitter(), door.y0 - 10 * s + jitter()),
                (door.x1 + 11 * s + jitter(), self.y_ground + 5 * s),
                ((door.x0 + door.x1) / 2 + jitter(), self.y_ground + 7 * s),
                (door.x0 - 11 * s + jitter(), self.y_ground + 5 * s),
            ]
        )
        box = _Box.around(outline, 2)
        if not self.is_free(box):
            self.used_facades.discard(self.facades.index(facade))
            return False
        mask = _polygon_mask([outline], box)
        colour = _contrasting(self.rng, _TARP_COLOURS, self.backdrop_colour(_Layer(box, mask)), 60.0)
        xs, _ = _pixel_grid(box)
        folds = 1.0 + 0.14 * np.sin(
            (xs - box.x0) / (3.0 * s) + 1.5 * _smooth_noise(self.rng, box.height, box.width, 8 * s)
        )
        image = _texture(self.rng, box.height, box.width, _TARP_COLOURS[colour], grain=3.0)
        image *= folds[..., None]
        self.occupied[box.slices()] = True
        thing = self.draft.add([_Layer(box, mask, np.asarray(image, np.float32))], [])
        attributes = {"colour": colour, "size": "large", "shape": "tarp"}
        phrase = f"the large {colour} tarp covering the entrance in the {{pos}} that was taken away"
        self.draft.note(thing, "disappear", "object", phrase, attributes)
        return True

    def change_repainted_wall(self) -> bool:
        facade = self.free_facade(need_door=False)
        if facade is None:
            return False
        before = facade.wall_colour
        after = _contrasting(self.rng, _WALL_COLOURS, _WALL_COLOURS[before], 60.0)
        new_wall = _Thing(facade.wall.pre, (_tinted(self.rng, facade.wall_surface, _WALL_COLOURS[after], 2.5),))
        self.draft.replace(facade.wall, new_wall)
        attributes = {"colour": after, "colour_before": before, "size": "large", "shape": "facade"}
        phrase = f"the {before} facade in the {{pos}} that was repainted {after}"
        self.draft.note(new_wall, "state_change", "facade", phrase, attributes)
        return True

    def change_repainted_door(self) -> bool:
        facade = self.free_facade(need_door=True)
        if facade is None or facade.door is None:
            return False
        door = facade.door
        before = door.colour
        after = _contrasting(self.rng, _DOOR_COLOURS, _DOOR_COLOURS[before], 70.0)
        new_door = _Thing(door.thing.pre, (_tinted(self.rng, door.surface, _DOOR_COLOURS[after], 2.0),))
        self.draft.replace(door.thing, new_door)
        attributes = {"colour": after, "colour_before": before, "size": "small", "shape": "door"}
        phrase = f"the {before} door in the {{pos}} that was repainted {after}"
        self.draft.note(new_door, "state_change", "facade", phrase, attributes)
        return True

    def change_thriving_grass(self) -> bool:
        """A planter on the pavement whose dry, sparse grass is lush and green at the second date."""
        n, s = self.n, self.scale
        for _ in range(30):
            u = float(self.rng.uniform())
            width = (0.16 + 0.08 * u) * n
            cx = float(self.rng.uniform(0.1, 0.9)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.05 * n, self.y_kerb - 0.01 * n))
            box = _Box(int(cx - width / 2), int(base_y - 0.045 * n), int(cx + width / 2), int(base_y))
            if self.is_free(box):
                break
        else:
            return False
        rim = _px(3, s)
        frame = np.ones((box.height, box.width), bool)
        grass = np.zeros_like(frame)
        grass[: box.height - rim, rim : box.width - rim] = True
        border = _Layer(
            box, frame & ~grass, _texture(self.rng, box.height, box.width, (160.0, 156.0, 148.0), 4.0), own=False
        )
        # Grass blades: noise stretched vertically.
        blades = cv2.resize(
            self.rng.standard_normal(
                (max(2, box.height // max(1, _px(6, s))), max(2, box.width // max(1, _px(2, s)))), dtype=np.float32
            ),
            (box.width, box.height),
            interpolation=cv2.INTER_LINEAR,
        )
        dry = _texture(self.rng, box.height, box.width, (200.0, 180.0, 112.0), grain=8.0)
        dry[blades < -0.3] = (150.0, 122.0, 88.0)  # soil showing through sparse grass
        lush = _texture(self.rng, box.height, box.width, (70.0, 138.0, 50.0), grain=5.0)
        lush *= (1.0 + 0.18 * np.clip(blades, -1.5, 1.5))[..., None]
        self.occupied[box.slices()] = True
        thing = self.add_foreground(base_y, [border, _Layer(box, grass, dry)], [border, _Layer(box, grass, lush)])
        attributes = {"colour": "green", "colour_before": "yellow-brown", "size": _size_word(u), "shape": "planter"}
        self.draft.note(
            thing, "state_change", "vegetation", "the lush green grass now thriving in the {pos}", attributes
        )
        return True


# ---------------------------------------------------------------------------------------------------------
# From a rendered draft to a scene
# ---------------------------------------------------------------------------------------------------------


def _to_uint8(image: FloatImage) -> NDArray[np.uint8]:
    rounded = image + np.float32(0.5)
    np.clip(rounded, 0, 255, out=rounded)
    return rounded.astype(np.uint8)


def _acquired_later(rng: np.random.Generator, image: FloatImage) -> NDArray[np.uint8]:
    """The post image as another acquisition would give it: other light, colour cast, haze and noise."""
    gamma = float(rng.uniform(0.87, 1.15))
    gain = float(rng.uniform(0.92, 1.08))
    cast = rng.uniform(0.97, 1.03, 3)
    levels = np.arange(256, dtype=np.float64) / 255.0
    curves = np.stack([255.0 * levels**gamma * gain * float(c) for c in cast], axis=1)
    lut = np.clip(curves + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    out = cv2.LUT(_to_uint8(image), lut).astype(np.float32)
    h, w = image.shape[:2]
    out *= (1.0 + 0.035 * _smooth_noise(rng, h, w, max(h, w) / 2))[..., None]
    sigma = float(rng.uniform(1.5, 3.5))
    out += sigma * rng.standard_normal(out.shape, dtype=np.float32)
    return _to_uint8(out)


def _ground_truth(draft: _Draft, pre_labels: LabelImage, post_labels: LabelImage, size: int) -> list[SyntheticChange]:
    index = {id(thing): i for i, thing in enumerate(draft.things)}
    inner = (slice(_PAD, _PAD + size), slice(_PAD, _PAD + size))
    claimed = np.zeros((size, size), bool)
    minimum = max(4, int(0.0002 * size * size))
    changes = []
    for plan in draft.changes:
        i = index[id(plan.thing)]
        if plan.change_type == "appear":
            mask = post_labels[inner] == i
        elif plan.change_type == "disappear":
            mask = pre_labels[inner] == i
        else:
            mask = (pre_labels[inner] == i) & (post_labels[inner] == i)
        # Placement keeps changes apart; this guard only protects the "disjoint, non-trivial" contract.
        if mask.sum() < minimum or (mask & claimed).any():
            continue
        claimed |= mask
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        position = position_of_box(x0, y0, x1, y1, size, size)
        changes.append(
            SyntheticChange(
                plan.change_type, plan.category, mask, position, plan.phrase.format(pos=position), plan.attributes
            )
        )
    return changes


def _check_size(size: int) -> None:
    if not isinstance(size, int | np.integer) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ExamplesError(
            f"--size must be between {MIN_SIZE} and {MAX_SIZE} px, got {size!r}.",
            hint=f"pass an integer size in [{MIN_SIZE}, {MAX_SIZE}], e.g. 512",
        )


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ExamplesError(f"--seed must be a non-negative integer, got {seed!r}.", hint="pass e.g. --seed 0")


def generate_scene(seed: int, size: int = 512, domain: DomainName = "rs", name: str | None = None) -> SyntheticScene:
    """Generate one synthetic bi-temporal scene with exact change masks.

    The result depends only on (seed, size, domain): all randomness comes from
    ``np.random.default_rng(seed)``. Object sizes scale with ``size``, so a scene keeps its layout
    density at any resolution.

    Args:
        seed: non-negative integer seed.
        size: side of the square images in pixels, 128 to 4096.
        domain: "rs" for an aerial scene, "ns" for a street-level scene.
        name: the scene's name; defaults to "scene_<seed>" (rs) or "street_<seed>" (ns).

    Returns:
        The scene: pre and post uint8 RGB images (post with illumination change, noise and a shift of
        at most 2 px), and 2 to 6 (rs) or 2 to 4 (ns) non-overlapping changes.

    Raises:
        ExamplesError: when seed, size or domain is out of range.
    """
    _check_seed(seed)
    _check_size(size)
    seed, size = int(seed), int(size)
    if domain not in ("rs", "ns"):
        raise ExamplesError(f"domain must be 'rs' or 'ns', got {domain!r}.", hint="use 'rs' (aerial) or 'ns' (street)")
    rng = np.random.default_rng(seed)
    planner = _AerialPlanner(rng, size) if domain == "rs" else _StreetPlanner(rng, size)
    draft = planner.plan()
    pre_canvas, pre_labels = _render(draft, "pre")
    post_canvas, post_labels = _render(draft, "post")
    dx, dy = (int(v) for v in rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, 2))
    pre = _to_uint8(pre_canvas[_PAD : _PAD + size, _PAD : _PAD + size])
    # Cropping the post canvas at an offset moves its content by (dx, dy) relative to the pre grid.
    shifted = post_canvas[_PAD - dy : _PAD - dy + size, _PAD - dx : _PAD - dx + size]
    post = _acquired_later(rng, shifted)
    changes = _ground_truth(draft, pre_labels, post_labels, size)
    default_name = f"scene_{seed}" if domain == "rs" else f"street_{seed}"
    return SyntheticScene(name or default_name, domain, pre, post, changes, (dx, dy))


# ---------------------------------------------------------------------------------------------------------
# Examples folder
# ---------------------------------------------------------------------------------------------------------


def _pair_seed(seed: int, index: int) -> int:
    """Seed of pair ``index``: depends on (seed, index) only, so adding pairs leaves earlier ones alone."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _is_street(index: int, street_fraction: float) -> bool:
    # Spread street pairs evenly (with 0.25: pairs 3, 7, 11, ...) and independently of the pair count.
    return math.floor((index + 1) * street_fraction) > math.floor(index * street_fraction)


def _acquisition_dates(pair_seed: int) -> tuple[str, str]:
    rng = np.random.default_rng([pair_seed, 1])
    first = date(2015, 1, 1) + timedelta(days=int(rng.integers(0, 5 * 365)))
    second = first + timedelta(days=int(rng.integers(300, 4 * 365)))
    return first.isoformat(), second.isoformat()


def _save_png(array: NDArray[Any], path: Path) -> None:
    Image.fromarray(array).save(path)


def _prepare_out(out: Path) -> None:
    """Make ``out`` ready to receive examples without ever clobbering someone else's data."""
    if out.exists() and not out.is_dir():
        raise ExamplesError(f"{out} exists and is not a folder.", hint="pass a new or empty folder as --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.jsonl").is_file():
        raise ExamplesError(
            f"{out} is a non-empty folder without manifest.jsonl; refusing to write examples into it.",
            hint="pass a new or empty folder, or an examples folder made by 'craft-agent examples make'",
        )
    for sub in ("pre", "post", "mask", "changes"):
        # Stale files of an earlier, larger run would otherwise linger beside the new manifest.
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)


def write_examples(out: Path, pairs: int, seed: int, size: int = 512, street_fraction: float = 0.25) -> ExamplesSummary:
    """Write an examples folder of synthetic pairs with their ground truth.

    Layout (paths in the manifest are relative to ``out``): ``pre/<name>.png``, ``post/<name>.png``,
    ``mask/<name>.png`` (0/255 union of the changes), ``changes/<name>_<k>.png`` (0/255, one per change),
    ``manifest.jsonl`` (one JSON object per pair) and ``README.txt``. Pair ``i`` is named
    ``scene_<i>`` (aerial) or ``street_<i>`` (street level) and is generated from a seed derived from
    (seed, i), so adding pairs never changes the earlier ones.

    Args:
        out: destination folder; created if missing. An existing examples folder (with manifest.jsonl) is
            overwritten.
        pairs: number of pairs, at least 1.
        seed: non-negative base seed.
        size: side of the square images in pixels, 128 to 4096.
        street_fraction: share of street-level pairs, 0 to 1, spread evenly over the indices.

    Returns:
        What was written: counts of pairs and changes (total and per change type), and the manifest path.

    Raises:
        ExamplesError: on an argument out of range, or when ``out`` is a file or a non-empty folder that is
            not an examples folder.
    """
    if not isinstance(pairs, int | np.integer) or pairs < 1:
        raise ExamplesError(f"--pairs must be >= 1, got {pairs!r}.", hint="pass a positive count")
    _check_seed(seed)
    _check_size(size)
    pairs, seed, size = int(pairs), int(seed), int(size)
    if not 0.0 <= street_fraction <= 1.0:
        raise ExamplesError(
            f"--street-fraction must be between 0 and 1, got {street_fraction!r}.", hint="pass e.g. 0.25"
        )
    out = Path(out)
    _prepare_out(out)
    by_type: dict[str, int] = dict.fromkeys(CHANGE_TYPES, 0)
    manifest = out / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as lines:
        for index in range(pairs):
            domain: DomainName = "ns" if _is_street(index, street_fraction) else "rs"
            name = f"{'street' if domain == 'ns' else 'scene'}_{index:04d}"
            pair_seed = _pair_seed(seed, index)
            scene = generate_scene(pair_seed, size, domain, name)
            _save_png(scene.pre, out / "pre" / f"{name}.png")
            _save_png(scene.post, out / "post" / f"{name}.png")
            _save_png(scene.change_mask.astype(np.uint8) * 255, out / "mask" / f"{name}.png")
            records = []
            for k, change in enumerate(scene.changes):
                _save_png(change.mask.astype(np.uint8) * 255, out / "changes" / f"{name}_{k}.png")
                by_type[change.change_type] += 1
                records.append(
                    {
                        "change_type": change.change_type,
                        "category": change.category,
                        "mask": f"changes/{name}_{k}.png",
                        "position": change.position,
                        "description": change.description,
                        "attributes": change.attributes,
                    }
                )
            date_pre, date_post = _acquisition_dates(pair_seed)
            record = {
                "id": name,
                "pre": f"pre/{name}.png",
                "post": f"post/{name}.png",
                "mask": f"mask/{name}.png",
                "domain": domain,
                "group": name,
                "date_pre": date_pre,
                "date_post": date_post,
                "changes": records,
                "generator": {
                    "name": "craft_agent.synthetic",
                    "seed": pair_seed,
                    "size": size,
                    "shift": list(scene.shift),
                },
            }
            lines.write(json.dumps(record) + "\n")
    (out / "README.txt").write_text(
        "Synthetic bi-temporal scenes made by `craft-agent examples make` "
        f"(craft_agent.synthetic) with seed {seed}, {pairs} pairs of {size} x {size} px.\n"
        "pre/ and post/ hold the images, mask/ the union of the changes, changes/ one mask per change;\n"
        "manifest.jsonl lists every pair with its changes (type, category, position, description).\n"
        "The post images carry an illumination change, sensor noise and a shift of up to 2 px\n"
        "(generator.shift = [dx, dy]); masks are in the pre image's pixel grid.\n",
        encoding="utf-8",
    )
    total = sum(by_type.values())
    return ExamplesSummary(out, pairs, total, by_type, manifest)
