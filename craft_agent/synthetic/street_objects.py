"""What street things look like from the pavement: sky, walls, windows, doors, paving, road, cars and props.

Each function takes the scene's random generator first and draws from it in a fixed order, so the same
seed gives the same scene; where a thing goes and whether it changes is the planner's business
(:mod:`craft_agent.synthetic.street`). ``n`` is the canvas side: street things are sized relative to it.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from craft_agent.models import BBox
from craft_agent.synthetic.canvas import Colour, Layer, Surface, shade_layer, whole_layer
from craft_agent.synthetic.palettes import GLASS, PAINT_WHITE
from craft_agent.synthetic.primitives import (
    disc_mask,
    edge_ring,
    extent,
    pixel_grid,
    polygon_mask,
    px,
    rect,
    smooth_noise,
    texture,
)

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

# How a statue, a sign or a bench is drawn: (rng, cx, base_y, u, colour, n, scale) -> (layer, box).
PropMaker = Callable[[np.random.Generator, float, float, float, Colour, int, float], tuple[Layer, BBox]]


def sky_layer(rng: np.random.Generator, box: BBox, scale: float) -> Layer:
    """A blue gradient, paler at the horizon, with soft clouds."""
    n, s = box.width, scale
    t = np.linspace(0.0, 1.0, box.height, dtype=np.float32)[:, None, None]
    top, horizon = np.array([92.0, 146.0, 212.0]), np.array([196.0, 214.0, 234.0])
    image = np.asarray(top * (1 - t) + horizon * t, np.float32) * np.ones((1, n, 1), np.float32)
    cloud = np.clip(smooth_noise(rng, box.height, n, 60 * s) * 1.4 - 0.5, 0.0, 1.0)[..., None]
    clouded = image * (1 - 0.8 * cloud) + 245.0 * 0.8 * cloud
    clouded += 1.5 * rng.standard_normal((box.height, n, 1), dtype=np.float32)
    return whole_layer(box, np.asarray(clouded, np.float32))


def wall_surface(rng: np.random.Generator, box: BBox, colour_name: str, scale: float) -> Surface:
    """A facade's wall with a cornice, a seam to its neighbour and a plinth; brick walls get mortar lines."""
    s = scale
    relief = 1.0 + 0.04 * smooth_noise(rng, box.height, box.width, 20 * s)
    if colour_name == "brick-red":
        _, ys = pixel_grid(box)
        mortar = ((ys - box.y0) % px(5, s)) < max(1, px(1, s))
        relief = np.where(mortar, relief * 1.25, relief)
    cornice = px(8, s)
    relief[:cornice] *= 0.78
    relief[:, : px(2, s)] *= 0.8  # the seam between neighbouring buildings
    relief[-px(6, s) :] *= 0.86  # plinth
    return Surface(box, np.ones((box.height, box.width), bool), np.asarray(relief, np.float32))


def windows_layer(rng: np.random.Generator, box: BBox, lowest: int, n: int, scale: float) -> Layer | None:
    """Rows of framed windows with sills above ``lowest``, or None when not one row fits.

    The glass is darker at the bottom, where it reflects less sky.
    """
    s = scale
    floor_h = float(rng.uniform(0.075, 0.1)) * n
    win_w, win_h = floor_h * float(rng.uniform(0.38, 0.5)), floor_h * 0.6
    usable_w = box.width - 2 * px(8, s)
    columns = max(1, int(usable_w // (win_w * 2.0)))
    top = box.y0 + px(8, s) + floor_h * 0.3
    rows = int((lowest - top) // floor_h)
    if rows < 1 or usable_w < win_w:
        return None
    step = usable_w / columns
    mask = np.zeros((box.height, box.width), bool)
    image = np.zeros((box.height, box.width, 3), np.float32)
    frame, sill = px(1.5, s), px(2.5, s)
    glass = texture(rng, box.height, box.width, GLASS, grain=2.0)
    for r in range(rows):
        for c in range(columns):
            x0 = int(box.x0 + px(8, s) + c * step + (step - win_w) / 2) - box.x0
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
    return Layer(box, mask, image)


def door_surface(box: BBox, scale: float) -> Surface:
    """A panelled door with a darker frame and a brass handle."""
    s = scale
    relief = np.ones((box.height, box.width), np.float32)
    inset = px(4, s)
    panel = np.zeros_like(relief, dtype=np.uint8)
    cv2.rectangle(panel, (inset, inset), (box.width - 1 - inset, box.height // 2 - inset // 2), 1, px(1, s))
    cv2.rectangle(
        panel, (inset, box.height // 2 + inset // 2), (box.width - 1 - inset, box.height - 1 - inset), 1, px(1, s)
    )
    relief[panel.astype(bool)] = 0.78
    relief[edge_ring(np.ones_like(relief, dtype=bool), px(1.5, s))] = 0.7
    handle = np.zeros_like(relief, dtype=bool)
    hy, hx = box.height // 2, box.width - inset - px(3, s)
    handle[hy - px(1.5, s) : hy + px(1.5, s) + 1, hx - px(1, s) : hx + px(1, s) + 1] = True
    return Surface(box, np.ones_like(relief, dtype=bool), relief, handle, (214.0, 184.0, 90.0))


def pavement_layer(rng: np.random.Generator, box: BBox, scale: float) -> Layer:
    """Paving slabs in rows that widen towards the viewer, ending in a kerb."""
    n, s = box.width, scale
    image = texture(rng, box.height, n, (178.0, 174.0, 166.0), grain=4.0, blotch=0.05, cell=12 * s)
    joints = np.zeros((box.height, n), np.uint8)
    rows = 5
    edges = [int(box.height * (k / rows) ** 1.3) for k in range(rows + 1)]
    for k in range(rows):
        cv2.line(joints, (0, edges[k]), (n - 1, edges[k]), 1, 1)
        slab = px(26, s) * (1 + k * 0.25)
        for x in np.arange((k % 2) * slab / 2, n, slab):
            cv2.line(joints, (int(x), edges[k]), (int(x), edges[k + 1]), 1, 1)
    image[joints.astype(bool)] *= 0.82
    kerb = px(5, s)
    image[-kerb:] = image[-kerb:] * 1.1
    image[-1:] *= 0.5
    return whole_layer(box, image)


def road_layer(rng: np.random.Generator, box: BBox, scale: float) -> Layer:
    """Asphalt with a dashed white line."""
    n, s = box.width, scale
    image = texture(rng, box.height, n, (78.0, 78.0, 82.0), grain=5.0, blotch=0.06, cell=20 * s)
    line = np.zeros((box.height, n), np.uint8)
    y = int(box.height * 0.7)
    for x in np.arange(-float(rng.uniform(0, 40)) * s, n, 70 * s):
        cv2.line(line, (int(x), y), (int(x + 40 * s), y), 1, px(3, s))
    image[line.astype(bool)] = PAINT_WHITE
    return whole_layer(box, image)


def car(
    rng: np.random.Generator, left: float, base_y: float, u: float, colour: Colour, flip: bool, n: int
) -> tuple[Layer, Layer, BBox]:
    """A car in side view: body, two windows, wheels with hubs, lights and a ground shadow."""
    u_length = (0.2 + 0.05 * u) * n
    height = u_length * 0.36

    def to_canvas(points: NDArray[np.float64]) -> NDArray[np.float64]:
        along = 1.0 - points[:, 0] if flip else points[:, 0]
        return np.stack([left + along * u_length, base_y - points[:, 1] * height], axis=1)

    body = to_canvas(_CAR_BODY)
    wheel_r = 0.17 * height
    wheels = [(left + (1 - a if flip else a) * u_length, base_y - wheel_r) for a in (0.2, 0.8)]
    box = BBox.of(*extent(np.concatenate([body, [[left, base_y + 0.1 * height]]]), 2))
    mask = polygon_mask([body], box) | disc_mask(wheels, [wheel_r, wheel_r], box)
    _, ys = pixel_grid(box)
    up = np.clip((base_y - ys) / height, 0.0, 1.0)
    image = texture(rng, box.height, box.width, colour, grain=2.5)
    image *= (0.8 + 0.3 * up)[..., None]
    glass = polygon_mask([to_canvas(w) for w in _CAR_WINDOWS], box)
    image[glass] = np.asarray((70.0, 86.0, 104.0)) * (0.8 + 0.5 * np.broadcast_to(up, mask.shape)[glass, None])
    tyres = disc_mask(wheels, [wheel_r, wheel_r], box)
    image[tyres] = (28.0, 28.0, 30.0)
    image[disc_mask(wheels, [wheel_r * 0.5] * 2, box)] = (150.0, 150.0, 156.0)
    lights = polygon_mask([to_canvas(rect(0.95, 0.38, 1.0, 0.46)), to_canvas(rect(0.0, 0.38, 0.04, 0.46))], box)
    image[lights & mask] = (240.0, 200.0, 120.0)
    shadow = np.zeros(mask.shape, np.uint8)
    centre = (int(left + u_length / 2 - box.x0), int(base_y - box.y0))
    cv2.ellipse(shadow, centre, (int(u_length * 0.52), max(1, int(height * 0.08))), 0, 0, 360, 1, -1)
    return shade_layer(box, shadow.astype(bool), 0.55), Layer(box, mask, image), box


def statue(
    rng: np.random.Generator, cx: float, base_y: float, u: float, colour: Colour, n: int, scale: float
) -> tuple[Layer, BBox]:
    """A figure on a pedestal, lit from the left."""
    height = (0.18 + 0.07 * u) * n
    ped_w, ped_h = 0.055 * n, 0.22 * height
    body_w, body_h = 0.035 * n, 0.6 * height
    head_r = 0.07 * height
    pedestal = rect(cx - ped_w / 2, base_y - ped_h, cx + ped_w / 2, base_y)
    top = base_y - ped_h
    body = np.array(
        [
            (cx - body_w * 0.35, top), (cx - body_w * 0.5, top - body_h * 0.75),
            (cx - body_w * 0.3, top - body_h), (cx + body_w * 0.3, top - body_h),
            (cx + body_w * 0.5, top - body_h * 0.75), (cx + body_w * 0.35, top),
        ]
    )  # fmt: skip
    head = (cx, top - body_h - head_r * 0.8)
    box = BBox.of(*extent(np.concatenate([pedestal, body, [[head[0], head[1] - head_r]]]), 2))
    figure = polygon_mask([body], box) | disc_mask([head], [head_r], box)
    base = polygon_mask([pedestal], box)
    xs, _ = pixel_grid(box)
    lit = np.clip(1.15 - 0.45 * (xs - (cx - body_w / 2)) / body_w, 0.7, 1.15)
    image = texture(rng, box.height, box.width, colour, grain=3.0)
    image *= np.broadcast_to(lit, figure.shape)[..., None]
    image[base] = texture(rng, box.height, box.width, (112.0, 108.0, 102.0), grain=4.0)[base]
    return Layer(box, figure | base, image), box


def sign(
    rng: np.random.Generator, cx: float, base_y: float, u: float, colour: Colour, n: int, scale: float
) -> tuple[Layer, BBox]:
    """A panel on a grey pole."""
    s = scale
    height = (0.17 + 0.06 * u) * n
    panel_w, panel_h = 0.075 * n, 0.055 * n
    pole_w = max(2.0, 3.0 * s)
    pole = rect(cx - pole_w / 2, base_y - height, cx + pole_w / 2, base_y)
    panel = rect(cx - panel_w / 2, base_y - height - panel_h, cx + panel_w / 2, base_y - height + panel_h * 0.2)
    box = BBox.of(*extent(np.concatenate([pole, panel]), 2))
    panel_mask = polygon_mask([panel], box)
    mask = polygon_mask([pole], box) | panel_mask
    image = texture(rng, box.height, box.width, (124.0, 126.0, 130.0), grain=3.0)
    face = texture(rng, box.height, box.width, colour, grain=2.0)
    image[panel_mask] = face[panel_mask]
    image[edge_ring(panel_mask, px(2, s))] = (236.0, 236.0, 232.0)
    return Layer(box, mask, image), box


def bench(
    rng: np.random.Generator, cx: float, base_y: float, u: float, colour: Colour, n: int, scale: float
) -> tuple[Layer, BBox]:
    """A bench: seat and backrest planks on dark legs."""
    s = scale
    width = (0.11 + 0.05 * u) * n
    seat_y = base_y - 0.03 * n
    plank = max(2.0, 0.011 * n)
    seat = rect(cx - width / 2, seat_y - plank, cx + width / 2, seat_y)
    backs = [
        rect(
            cx - width / 2,
            seat_y - (2.2 + 1.6 * k) * plank - plank,
            cx + width / 2,
            seat_y - (2.2 + 1.6 * k) * plank,
        )
        for k in range(2)
    ]
    leg_w = max(2.0, 2.0 * s)
    legs = [
        rect(x - leg_w / 2, seat_y - 4.5 * plank, x + leg_w / 2, base_y) for x in (cx - width * 0.4, cx + width * 0.4)
    ]
    box = BBox.of(*extent(np.concatenate([seat, *backs, *legs]), 2))
    wood = polygon_mask([seat, *backs], box)
    mask = wood | polygon_mask(legs, box)
    image = np.empty((box.height, box.width, 3), np.float32)
    image[:] = (40.0, 40.0, 44.0)
    image[wood] = texture(rng, box.height, box.width, colour, grain=4.0)[wood]
    return Layer(box, mask, image), box


def planter(rng: np.random.Generator, box: BBox, scale: float) -> tuple[Layer, Layer, Layer]:
    """A planter filling ``box``: its stone rim, its grass dry and sparse, and the same grass lush."""
    s = scale
    rim = px(3, s)
    frame = np.ones((box.height, box.width), bool)
    grass = np.zeros_like(frame)
    grass[: box.height - rim, rim : box.width - rim] = True
    border = Layer(box, frame & ~grass, texture(rng, box.height, box.width, (160.0, 156.0, 148.0), 4.0), own=False)
    # Grass blades: noise stretched vertically.
    blades = cv2.resize(
        rng.standard_normal(
            (max(2, box.height // max(1, px(6, s))), max(2, box.width // max(1, px(2, s)))), dtype=np.float32
        ),
        (box.width, box.height),
        interpolation=cv2.INTER_LINEAR,
    )
    dry = texture(rng, box.height, box.width, (200.0, 180.0, 112.0), grain=8.0)
    dry[blades < -0.3] = (150.0, 122.0, 88.0)  # soil showing through sparse grass
    lush = texture(rng, box.height, box.width, (70.0, 138.0, 50.0), grain=5.0)
    lush *= (1.0 + 0.18 * np.clip(blades, -1.5, 1.5))[..., None]
    return border, Layer(box, grass, dry), Layer(box, grass, lush)
