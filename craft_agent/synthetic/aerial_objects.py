"""What aerial things look like from above: ground, roads, parking lots, buildings, trees, ponds, cars.

Each function takes the scene's random generator first and draws from it in a fixed order, so the same
seed gives the same scene; where a thing goes and whether it changes is the planner's business
(:mod:`craft_agent.synthetic.aerial`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from craft_agent.models import BBox
from craft_agent.synthetic.canvas import (
    BoolMask,
    Colour,
    FloatImage,
    Layer,
    Point,
    Surface,
    shade_layer,
    tinted,
    whole_layer,
)
from craft_agent.synthetic.palettes import (
    ASPHALT,
    CONCRETE,
    DRY_GRASS,
    DRY_MUD,
    GLASS,
    GRASS,
    PAINT_WHITE,
    SHORE,
    SOIL,
    WATER,
)
from craft_agent.synthetic.primitives import (
    disc_mask,
    edge_ring,
    extent,
    pixel_grid,
    polygon_mask,
    px,
    rect,
    rotated,
    sigmoid,
    smooth_noise,
    texture,
)


@dataclass(frozen=True)
class Road:
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
class Footprint:
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
        return rotated(rect(-hx, -hy, hx, hy), self.angle, self.centre)


@dataclass(frozen=True)
class Slot:
    """Where a vehicle can stand: centre, heading (radians) and whether it is a parking stall."""

    x: float
    y: float
    heading: float
    in_lot: bool


@dataclass(frozen=True, eq=False)
class TreeCluster:
    """The trees of one cluster (centres, radii, shadow offsets) and the box they and their shadows fill."""

    centres: NDArray[np.float64]
    radii: NDArray[np.float64]
    offsets: NDArray[np.float64]  # shadow offset of each tree
    box: BBox
    u: float
    count: int


@dataclass(frozen=True, eq=False)
class Pond:
    """A pond's muddy shore and water, the dry mud that replaces the water, and the box they fill."""

    shore: Layer
    water: Layer
    mud: Layer
    box: BBox
    u: float


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """The painted roads (asphalt, kerbs and markings in one layer) and the masks placement needs."""

    layer: Layer
    asphalt: BoolMask
    markings: BoolMask
    verge: BoolMask  # the roads with their kerbs and a margin: nothing else is built there


def ground_image(rng: np.random.Generator, n: int, scale: float) -> FloatImage:
    """Grass with dry patches and bare soil, lit unevenly, with fine grain."""
    s = scale
    soil = sigmoid(5.0 * (smooth_noise(rng, n, n, 150 * s) - 0.45))[..., None]
    dry = 0.7 * sigmoid(4.0 * (smooth_noise(rng, n, n, 80 * s) - 0.3))[..., None]
    colour = np.asarray(GRASS, np.float32) * (1 - dry) + np.asarray(DRY_GRASS, np.float32) * dry
    colour = colour * (1 - soil) + np.asarray(SOIL, np.float32) * soil
    light = 1.0 + 0.08 * smooth_noise(rng, n, n, 45 * s) + 0.06 * smooth_noise(rng, n, n, 3 * s)
    image = np.asarray(colour * light[..., None], np.float32)
    image += 5.0 * rng.standard_normal((n, n, 1), dtype=np.float32)
    return image


def road_lines(rng: np.random.Generator, n: int, scale: float) -> list[Road]:
    """One to three straight roads: a main one, often a crossing one, sometimes a parallel one."""
    s = scale

    def road(angle_deg: float, through: Point) -> Road:
        a = math.radians(angle_deg)
        width = float(rng.uniform(16, 24)) * s
        return Road(through[0], through[1], math.cos(a), math.sin(a), width, bool(rng.random() < 0.7))

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


def road_network(rng: np.random.Generator, roads: Sequence[Road], n: int, scale: float) -> RoadNetwork:
    """Asphalt bands with concrete kerbs and dashed centre lines (none inside crossings)."""
    s = scale
    kerb = np.zeros((n, n), np.uint8)
    asphalt = np.zeros((n, n), bool)
    markings = np.zeros((n, n), bool)
    per_road = []
    reach = 2.0 * n
    for road in roads:
        p0 = tuple(round(v) for v in road.point(-reach))
        p1 = tuple(round(v) for v in road.point(reach))
        cv2.line(kerb, p0, p1, 1, thickness=round(road.width + 2 * px(2.5, s)))
        own = np.zeros((n, n), np.uint8)
        cv2.line(own, p0, p1, 1, thickness=round(road.width))
        per_road.append(own.astype(bool))
    for i, road in enumerate(roads):
        asphalt |= per_road[i]
        if not road.marked:
            continue
        dashes = np.zeros((n, n), np.uint8)
        dash, gap = 9.0 * s, 8.0 * s
        t = -reach
        while t < reach:
            a = tuple(round(v) for v in road.point(t))
            b = tuple(round(v) for v in road.point(t + dash))
            cv2.line(dashes, a, b, 1, thickness=px(1.5, s))
            t += dash + gap
        others = np.zeros((n, n), bool)
        for j, mask in enumerate(per_road):
            if j != i:
                others |= mask
        markings |= dashes.astype(bool) & per_road[i] & ~others
    base = np.where(asphalt[..., None], np.asarray(ASPHALT, np.float32), np.asarray(CONCRETE, np.float32)).astype(
        np.float32
    )
    image = texture(rng, n, n, (1.0, 1.0, 1.0), grain=0.0, blotch=0.06, cell=25 * s) * base
    image += 5.0 * rng.standard_normal((n, n, 1), dtype=np.float32)
    image[markings] = PAINT_WHITE
    verge = cv2.dilate(kerb, np.ones((3, 3), np.uint8), iterations=px(3, s)).astype(bool)
    return RoadNetwork(Layer(BBox.of(0, 0, n, n), kerb.astype(bool), image), asphalt, markings, verge)


def parking_lot(rng: np.random.Generator, box: BBox, colour: Colour, scale: float) -> tuple[Layer, list[Slot]]:
    """A paved lot filling ``box`` with two rows of painted stalls; returns the lot and its stalls."""
    s = scale
    image = texture(rng, box.height, box.width, colour, grain=4.0, blotch=0.05, cell=15 * s)
    stall_w, stall_d, inset = 10.0 * s, 18.0 * s, 3.0 * s
    thick = px(1.2, s)
    stalls: list[Slot] = []
    count = int((box.width - 2 * inset) // stall_w)
    lines = np.zeros((box.height, box.width), np.uint8)
    for row_top in (inset, box.height - inset - stall_d):
        for k in range(count + 1):
            x = round(inset + k * stall_w)
            cv2.line(lines, (x, int(row_top)), (x, int(row_top + stall_d)), 1, thickness=thick)
        for k in range(count):
            centre_x = box.x0 + inset + (k + 0.5) * stall_w
            stalls.append(Slot(centre_x, box.y0 + row_top + stall_d / 2, math.pi / 2, True))
    image[lines.astype(bool)] = PAINT_WHITE
    return whole_layer(box, image), stalls


def building_footprint(rng: np.random.Generator, centre: Point, scale: float) -> Footprint:
    u = float(rng.uniform())
    length = (26.0 + 30.0 * u) * scale
    depth = length * float(rng.uniform(0.55, 0.85))
    # Most buildings follow the street grid; some are turned.
    angle = math.radians(float(rng.uniform(-4, 4) if rng.random() < 0.5 else rng.uniform(-30, 30)))
    parts = [rect(-length / 2, -depth / 2, length / 2, depth / 2)]
    shape = "rectangular"
    if rng.random() < 0.4:
        wing_w = length * float(rng.uniform(0.3, 0.45))
        wing_d = depth * float(rng.uniform(0.6, 1.0))
        sx, sy = (1.0 if rng.random() < 0.5 else -1.0), (1.0 if rng.random() < 0.5 else -1.0)
        wing = rect(length / 2 - wing_w, depth / 2 - 1.0, length / 2, depth / 2 + wing_d)
        parts.append(wing * np.array([sx, sy]))
        shape = "L-shaped"
    local = np.concatenate(parts)
    middle = (local.min(axis=0) + local.max(axis=0)) / 2
    half = (local.max(axis=0) - local.min(axis=0)) / 2
    world = tuple(rotated(p - middle, angle, centre) for p in parts)
    return Footprint(world, centre, angle, (float(half[0]), float(half[1])), u, shape)


def _cast_shadow(parts: Sequence[NDArray[np.float64]], offset: Point, box: BBox) -> BoolMask:
    """Shadow of a prism with these convex parts: each part swept along the sun's offset."""
    hulls = []
    for part in parts:
        swept = np.concatenate([part, part + np.asarray(offset)]).astype(np.float32)
        hulls.append(cv2.convexHull(swept).reshape(-1, 2))
    return polygon_mask(hulls, box)


def _roof_surface(rng: np.random.Generator, footprint: Footprint, box: BBox, sun: Point, scale: float) -> Surface:
    """Roof relief: a lit and a shaded slope per part (pitched) or a parapet and units (flat)."""
    mask = polygon_mask(footprint.parts, box)
    relief = np.ones(mask.shape, np.float32)
    xs, ys = pixel_grid(box)
    flat = rng.random() < 0.35
    details: BoolMask | None = None
    if not flat:
        for part in footprint.parts:
            part_mask = polygon_mask([part], box)
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
        inner = mask & ~edge_ring(mask, px(4, scale))
        spots = np.argwhere(inner)
        for _ in range(int(rng.integers(1, 4)) if len(spots) else 0):
            y, x = spots[int(rng.integers(len(spots)))]
            side = px(float(rng.uniform(3, 5)), scale)
            details[y : y + side, x : x + side] = True
        details &= inner
    relief[edge_ring(mask, px(1.5, scale))] *= 0.72
    relief *= 1.0 + 0.03 * smooth_noise(rng, box.height, box.width, 4 * scale)
    return Surface(box, mask, relief, details, (196.0, 198.0, 200.0))


def vehicle_layers(
    rng: np.random.Generator, slot: Slot, colour: Colour, shadow: Point, scale: float
) -> tuple[Layer, Layer, BBox]:
    """A car seen from above: body, windscreen and rear window, and a small shadow."""
    length = max(5.0, float(rng.uniform(13.0, 16.0)) * scale)
    width = max(3.0, float(rng.uniform(6.5, 7.5)) * scale)
    body = rotated(rect(-length / 2, -width / 2, length / 2, width / 2), slot.heading, (slot.x, slot.y))
    offset = np.asarray(shadow) * 2.5 * scale
    box = BBox.of(*extent(np.concatenate([body, body + offset]), 1))
    mask = polygon_mask([body], box)
    xs, ys = pixel_grid(box)
    along = ((xs - slot.x) * math.cos(slot.heading) + (ys - slot.y) * math.sin(slot.heading)) / length
    image = texture(rng, box.height, box.width, colour, grain=3.0)
    glass = ((along > 0.1) & (along < 0.28)) | ((along > -0.42) & (along < -0.3))
    image[np.broadcast_to(glass, mask.shape)] = GLASS
    if scale >= 1:  # below that the outline would swallow the whole car
        image[edge_ring(mask, 1)] *= 0.75
    shadow_mask = polygon_mask([body + offset], box)
    return shade_layer(box, shadow_mask, 0.55), Layer(box, mask, image), box


def building_layers(
    rng: np.random.Generator, footprint: Footprint, offset: Point, box: BBox, colour: Colour, sun: Point, scale: float
) -> tuple[Layer, Surface, Layer]:
    """A building's cast shadow, its roof surface (to repaint it later) and the roof tinted in ``colour``."""
    shadow = shade_layer(box, _cast_shadow(footprint.parts, offset, box), 0.5)
    roof = _roof_surface(rng, footprint, box, sun, scale)
    return shadow, roof, tinted(rng, roof, colour)


def tree_cluster(rng: np.random.Generator, centre: Point, shadow: Point, scale: float) -> TreeCluster:
    """Where the trees of a cluster stand and how far their shadows reach (nothing drawn yet)."""
    s = scale
    u = float(rng.uniform())
    count = int(rng.integers(3, 10))
    spread = (8.0 + 14.0 * u) * s
    centres = np.asarray(centre) + rng.normal(0.0, spread / 2, (count, 2))
    radii = rng.uniform(5.0, 10.0, count) * s
    offsets = np.asarray(np.outer(radii * 1.3, shadow), np.float64)
    reach = np.concatenate([centres, centres + offsets])
    box = BBox.of(*extent(np.concatenate([reach - radii.max() * 1.15, reach + radii.max() * 1.15]), 1))
    return TreeCluster(centres, radii, offsets, box, u, count)


def tree_layers(rng: np.random.Generator, cluster: TreeCluster, sun: Point, scale: float) -> tuple[Layer, Layer]:
    """Round canopies lit from the sun's side, with leafy texture, and their shadows."""
    s, box = scale, cluster.box
    xs, ys = pixel_grid(box)
    wobble = smooth_noise(rng, box.height, box.width, 3 * s)
    canopy = np.zeros((box.height, box.width), bool)
    image = np.zeros((box.height, box.width, 3), np.float32)
    # Southern-most first, so that canopies nearer the viewer's bottom edge overlap the others.
    for k in np.argsort(cluster.centres[:, 1]):
        (cx, cy), r = cluster.centres[k], float(cluster.radii[k])
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / r
        inside = d < 1.0 + 0.12 * wobble
        lit = ((xs - cx) * sun[0] + (ys - cy) * sun[1]) / r
        shade = np.clip(0.82 + 0.28 * lit - 0.18 * d**2, 0.45, 1.25)
        tone = (np.asarray((46.0, 88.0, 38.0)) + rng.uniform(-8, 8, 3)).astype(np.float32)
        np.copyto(image, tone * shade[..., None], where=inside[..., None])
        canopy |= inside
    image *= (1.0 + 0.14 * smooth_noise(rng, box.height, box.width, 1.6 * s))[..., None]
    image += 4.0 * rng.standard_normal((box.height, box.width, 1), dtype=np.float32)
    shadow = disc_mask([tuple(c) for c in cluster.centres + cluster.offsets], list(cluster.radii), box)
    return shade_layer(box, shadow, 0.6), Layer(box, canopy, image)


def pond(rng: np.random.Generator, centre: Point, scale: float) -> Pond:
    """An irregular pond with a muddy shore, darker towards its deep middle; and how it looks dry."""
    s = scale
    u = float(rng.uniform())
    radius = (22.0 + 24.0 * u) * s
    theta = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    wobble = 1.0 + sum(
        float(rng.uniform(0.03, 0.12)) * np.cos(k * theta + float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 5)
    )
    aspect = float(rng.uniform(0.6, 1.0))
    local = np.stack([radius * wobble * np.cos(theta), aspect * radius * wobble * np.sin(theta)], axis=1)
    outline = rotated(local, float(rng.uniform(0, math.pi)), centre)
    shore_width = px(3, s)
    box = BBox.of(*extent(outline, shore_width + 2))
    water = polygon_mask([outline], box)
    shore = cv2.dilate(water.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=shore_width).astype(bool)
    depth = cv2.distanceTransform(water.astype(np.uint8), cv2.DIST_L2, 3)
    depth = np.minimum(depth / max(float(depth.max()), 1.0) * 2.0, 1.0)
    water_image = texture(rng, box.height, box.width, WATER, grain=1.5, blotch=0.05, cell=12 * s)
    water_image *= (1.2 - 0.35 * depth)[..., None]
    shore_image = texture(rng, box.height, box.width, SHORE, grain=7.0, blotch=0.1, cell=3 * s)
    mud = texture(rng, box.height, box.width, DRY_MUD, grain=6.0, blotch=0.08, cell=8 * s)
    cracks = np.abs(smooth_noise(rng, box.height, box.width, 5 * s)) < 0.06
    mud[cracks] *= 0.7
    return Pond(
        Layer(box, shore, shore_image, own=False),
        Layer(box, water, water_image),
        Layer(box, water, mud, own=False),
        box,
        u,
    )
