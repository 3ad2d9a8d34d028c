"""The aerial ("rs") planner: where things go on the ground, which of them change, and how.

The planner lays down ground and roads, then the changes (so that they always find room), then the static
scenery; what each thing looks like is drawn by :mod:`craft_agent.synthetic.aerial_objects`. Every random
draw comes from the one generator it is given, in a fixed order, so a seed always gives the same scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from craft_agent.models import BBox, Category
from craft_agent.synthetic.aerial_objects import (
    Footprint,
    Pond,
    Road,
    Slot,
    TreeCluster,
    building_footprint,
    building_layers,
    ground_image,
    parking_lot,
    pond,
    road_lines,
    road_network,
    tree_cluster,
    tree_layers,
    vehicle_layers,
)
from craft_agent.synthetic.canvas import (
    PAD,
    BoolMask,
    Colour,
    Draft,
    Layer,
    Point,
    Surface,
    Thing,
    tinted,
    whole_layer,
)
from craft_agent.synthetic.palettes import (
    BARE_SOIL,
    CAR_COLOURS,
    CONCRETE,
    FRESH_ASPHALT,
    LAWN,
    LOT_ASPHALT,
    LOT_COLOURS,
    ROOF_COLOURS,
    RUBBLE,
    WORN_ASPHALT,
    contrasting,
)
from craft_agent.synthetic.primitives import (
    extent,
    pick,
    pixel_grid,
    polygon_mask,
    px,
    rect,
    rotated,
    size_word,
    smooth_noise,
    texture,
    within,
)


class AerialPlanner:
    """Plans one aerial scene: ground, roads, then changes (so they always find room), then the rest."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.scale = size / 512.0
        self.n = size + 2 * PAD
        self.draft = Draft(self.n)
        azimuth = float(rng.uniform(0, 2 * math.pi))
        # Unit vector pointing away from the sun: shadows fall this way; ``sun`` points towards it.
        self.shadow = (math.cos(azimuth), math.sin(azimuth))
        self.sun = (-self.shadow[0], -self.shadow[1])
        self.edge = PAD + px(4, self.scale)
        self.occupied: BoolMask = np.zeros((self.n, self.n), bool)
        self.change_zone: BoolMask = np.zeros((self.n, self.n), bool)
        self.vehicle_zone: BoolMask = np.zeros((self.n, self.n), bool)
        self.paved: BoolMask = np.zeros((self.n, self.n), bool)
        self.asphalt: BoolMask = np.zeros((self.n, self.n), bool)
        self.markings: BoolMask = np.zeros((self.n, self.n), bool)
        self.roads: list[Road] = []
        self.stalls: list[Slot] = []
        self.done: set[str] = set()

    # -- orchestration ---------------------------------------------------------------------------------

    def plan(self) -> Draft:
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
                self.add_vehicle(slot, pick(self.rng, list(CAR_COLOURS)), "both")
        for stall in self.stalls:
            if self.rng.random() < 0.5 and self.vehicle_fits(stall):
                self.add_vehicle(stall, pick(self.rng, list(CAR_COLOURS)), "both")

    # -- placement -------------------------------------------------------------------------------------

    def random_centre(self, half: float) -> Point:
        low, high = self.edge + half, self.n - self.edge - half
        if high <= low:
            return (self.n / 2, self.n / 2)
        return (float(self.rng.uniform(low, high)), float(self.rng.uniform(low, high)))

    def is_free(self, box: BBox) -> bool:
        spaced = box.grown(px(3, self.scale))
        return box.inside(self.edge, self.n - self.edge) and not self.occupied[spaced.clipped(self.n).slices()].any()

    def take(self, box: BBox, change: bool) -> None:
        self.occupied[box.clipped(self.n).slices()] = True
        if change:
            self.change_zone[box.grown(px(2, self.scale)).clipped(self.n).slices()] = True

    # -- ground and roads ------------------------------------------------------------------------------

    def draw_ground(self) -> None:
        self.draft.add([whole_layer(BBox.of(0, 0, self.n, self.n), ground_image(self.rng, self.n, self.scale))])

    def draw_roads(self) -> None:
        self.roads = road_lines(self.rng, self.n, self.scale)
        network = road_network(self.rng, self.roads, self.n, self.scale)
        self.draft.add([network.layer])
        self.asphalt = network.asphalt
        self.markings = network.markings
        self.paved |= self.asphalt
        self.occupied |= network.verge

    def draw_parking_lot(self) -> None:
        """A static asphalt lot with two rows of stalls that vehicles may use."""
        s = self.scale
        for _ in range(30):
            w, h = float(self.rng.uniform(70, 110)) * s, float(self.rng.uniform(46, 58)) * s
            cx, cy = self.random_centre(max(w, h) / 2)
            box = BBox.of(int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2))
            if not self.is_free(box):
                continue
            layer, stalls = parking_lot(self.rng, box, LOT_ASPHALT, self.scale)
            self.draft.add([layer])
            self.take(box, change=False)
            self.paved[box.slices()] = True
            self.stalls.extend(stalls)
            return

    # -- vehicles --------------------------------------------------------------------------------------

    def roads_slot(self) -> Slot:
        road = self.roads[int(self.rng.integers(len(self.roads)))]
        t = float(self.rng.uniform(-0.7, 0.7)) * self.n
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        x, y = road.point(t, side * road.width * 0.25)
        heading = math.atan2(road.dy, road.dx) + (0.0 if side > 0 else math.pi)
        return Slot(x, y, heading, False)

    def stall_slot(self) -> Slot:
        return self.stalls[int(self.rng.integers(len(self.stalls)))]

    def vehicle_fits(self, slot: Slot) -> bool:
        """Whether the largest car :func:`vehicle_layers` may draw stands here on pavement, clear of others."""
        length, width = max(5.0, 16.0 * self.scale), max(3.0, 7.5 * self.scale)
        body = rotated(rect(-length / 2, -width / 2, length / 2, width / 2), slot.heading, (slot.x, slot.y))
        placement = extent(body, 1)
        if not within(placement, self.edge, self.n - self.edge, grow=px(3, self.scale)):  # room for its shadow
            return False
        box = BBox.of(*placement)
        if self.vehicle_zone[box.slices()].any() or self.change_zone[box.slices()].any():
            return False
        return bool(self.paved[box.slices()][polygon_mask([body], box)].all())

    def vehicle_slot(self, source: Callable[[], Slot]) -> Slot | None:
        for _ in range(40):
            slot = source()
            if self.vehicle_fits(slot):
                return slot
        return None

    def add_vehicle(self, slot: Slot, colour_name: str, when: str) -> tuple[Thing, BBox]:
        shadow, body, box = vehicle_layers(self.rng, slot, CAR_COLOURS[colour_name], self.shadow, self.scale)
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
        colour = pick(self.rng, ["white", "black", "red", "blue", "yellow"])
        thing, box = self.add_vehicle(slot, colour, "post" if change_type == "appear" else "pre")
        self.change_zone[box.grown(px(3, self.scale)).clipped(self.n).slices()] = True
        where = "in the parking lot" if slot.in_lot else "on the road"
        verb = "that appeared" if change_type == "appear" else "that left"
        attributes = {"colour": colour, "size": "small", "shape": "rectangular"}
        self.draft.note(
            thing, change_type, Category.VEHICLE, f"the {colour} car {where} in the {{pos}} {verb}", attributes
        )
        return True

    # -- buildings -------------------------------------------------------------------------------------

    def place_building(self, lot_margin: float = 0.0) -> tuple[Footprint, Point, BBox] | None:
        """Find room for a building (its lot and shadow included)."""
        s = self.scale
        for _ in range(40):
            footprint = building_footprint(self.rng, self.random_centre(40 * s), s)
            height = float(self.rng.uniform(5, 14)) * s
            offset = (self.shadow[0] * height, self.shadow[1] * height)
            corners = footprint.corners()
            reach = np.concatenate([corners, corners + np.asarray(offset), footprint.lot(lot_margin)])
            box = BBox.of(*extent(reach, 2))
            if self.is_free(box):
                return footprint, offset, box
        return None

    def building_layers(
        self, footprint: Footprint, offset: Point, box: BBox, colour: Colour
    ) -> tuple[Layer, Surface, Layer]:
        """:func:`~craft_agent.synthetic.aerial_objects.building_layers` under this scene's sun."""
        return building_layers(self.rng, footprint, offset, box, colour, self.sun, self.scale)

    def add_building(self) -> None:
        placed = self.place_building()
        if placed is None:
            return
        footprint, offset, box = placed
        shadow, _, roof = self.building_layers(footprint, offset, box, ROOF_COLOURS[pick(self.rng, list(ROOF_COLOURS))])
        self.draft.add([shadow, roof])
        self.take(box, change=False)

    def change_new_building(self) -> bool:
        """A building put up on a lot that was cleared before the first date."""
        margin = 5.0 * self.scale
        placed = self.place_building(lot_margin=margin)
        if placed is None:
            return False
        footprint, offset, box = placed
        lot_name = pick(self.rng, list(LOT_COLOURS))
        lot_box = BBox.of(*extent(footprint.lot(margin), 1)).clipped(self.n)
        lot_image = texture(self.rng, lot_box.height, lot_box.width, LOT_COLOURS[lot_name], 6.0, 0.08, 6 * self.scale)
        self.draft.add([Layer(lot_box, polygon_mask([footprint.lot(margin)], lot_box), lot_image)])
        colour = contrasting(self.rng, ROOF_COLOURS, LOT_COLOURS[lot_name], 60.0)
        shadow, _, roof = self.building_layers(footprint, offset, box, ROOF_COLOURS[colour])
        thing = self.draft.add([], [shadow, roof])
        self.take(box, change=True)
        attributes = {"colour": colour, "size": size_word(footprint.u), "shape": footprint.shape}
        phrase = f"the {colour}-roofed building in the {{pos}} that appeared"
        self.draft.note(thing, "appear", Category.BUILDING, phrase, attributes)
        return True

    def change_demolished_building(self) -> bool:
        """A building torn down; its footprint is left as rubble and its shadow goes with it."""
        placed = self.place_building()
        if placed is None:
            return False
        footprint, offset, box = placed
        colour = contrasting(self.rng, ROOF_COLOURS, RUBBLE, 50.0)
        shadow, roof_surface, roof = self.building_layers(footprint, offset, box, ROOF_COLOURS[colour])
        rubble = texture(self.rng, box.height, box.width, RUBBLE, grain=10.0, blotch=0.1, cell=3 * self.scale)
        thing = self.draft.add([shadow, roof], [Layer(box, roof_surface.mask, rubble, own=False)])
        self.take(box, change=True)
        attributes = {"colour": colour, "size": size_word(footprint.u), "shape": footprint.shape}
        phrase = f"the {colour}-roofed building in the {{pos}} that was demolished"
        self.draft.note(thing, "disappear", Category.BUILDING, phrase, attributes)
        return True

    def change_recoloured_roof(self) -> bool:
        placed = self.place_building()
        if placed is None:
            return False
        footprint, offset, box = placed
        before = pick(self.rng, list(ROOF_COLOURS))
        after = contrasting(self.rng, ROOF_COLOURS, ROOF_COLOURS[before], 70.0)
        shadow, surface, old_roof = self.building_layers(footprint, offset, box, ROOF_COLOURS[before])
        new_roof = tinted(self.rng, surface, ROOF_COLOURS[after])
        thing = self.draft.add([shadow, old_roof], [shadow, new_roof])
        self.take(box, change=True)
        attributes = {
            "colour": after,
            "colour_before": before,
            "size": size_word(footprint.u),
            "shape": footprint.shape,
        }
        phrase = f"the roof of the building in the {{pos}} that changed from {before} to {after}"
        self.draft.note(thing, "state_change", Category.ROOF, phrase, attributes)
        return True

    # -- vegetation, water, ground ---------------------------------------------------------------------

    def place_trees(self) -> TreeCluster | None:
        for _ in range(30):
            cluster = tree_cluster(self.rng, self.random_centre(40 * self.scale), self.shadow, self.scale)
            if self.is_free(cluster.box):
                return cluster
        return None

    def add_trees(self) -> None:
        cluster = self.place_trees()
        if cluster is not None:
            self.draft.add(tree_layers(self.rng, cluster, self.sun, self.scale))
            self.take(cluster.box, change=False)

    def change_cleared_trees(self) -> bool:
        cluster = self.place_trees()
        if cluster is None:
            return False
        shadow, canopy = tree_layers(self.rng, cluster, self.sun, self.scale)
        box, u, count = cluster.box, cluster.u, cluster.count
        soil = texture(self.rng, box.height, box.width, BARE_SOIL, grain=9.0, blotch=0.1, cell=4 * self.scale)
        thing = self.draft.add([shadow, canopy], [Layer(box, canopy.mask, soil, own=False)])
        self.take(box, change=True)
        attributes = {"colour": "green", "size": size_word(u), "shape": "cluster", "count": str(count)}
        self.draft.note(
            thing, "disappear", Category.VEGETATION, "the cluster of trees in the {pos} that was cleared", attributes
        )
        return True

    def place_pond(self) -> Pond | None:
        for _ in range(30):
            candidate = pond(self.rng, self.random_centre(50 * self.scale), self.scale)
            if self.is_free(candidate.box):
                return candidate
        return None

    def add_pond(self) -> None:
        placed = self.place_pond()
        if placed is not None:
            self.draft.add([placed.shore, placed.water])
            self.take(placed.box, change=False)

    def change_dried_pond(self) -> bool:
        placed = self.place_pond()
        if placed is None:
            return False
        thing = self.draft.add([placed.shore, placed.water], [placed.shore, placed.mud])
        self.take(placed.box, change=True)
        attributes = {"colour": "dark blue-green", "size": size_word(placed.u), "shape": "irregular"}
        self.draft.note(thing, "disappear", Category.WATER, "the pond in the {pos} that dried up", attributes)
        return True

    def change_resurfaced_ground(self) -> bool:
        """A mown lawn paved into a parking lot, or dug up to bare soil."""
        s = self.scale
        for _ in range(30):
            u = float(self.rng.uniform())
            w, h = (50.0 + 40.0 * u) * s, float(self.rng.uniform(40, 62)) * s
            cx, cy = self.random_centre(max(w, h) / 2)
            box = BBox.of(int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2))
            if self.is_free(box):
                break
        else:
            return False
        mask = np.ones((box.height, box.width), bool)
        xs, _ = pixel_grid(box)
        stripes = np.where(((xs - box.x0) // px(6, s)) % 2 == 0, 1.06, 0.94).astype(np.float32)
        lawn = texture(self.rng, box.height, box.width, LAWN, grain=5.0, blotch=0.05, cell=10 * s)
        lawn *= np.broadcast_to(stripes, mask.shape)[..., None]
        if self.rng.random() < 0.6:
            after_layer, _ = parking_lot(self.rng, box, CONCRETE, self.scale)
            after, colour = "parking lot", "light grey"
            phrase = "the grass field in the {pos} that was paved into a parking lot"
        else:
            soil = texture(self.rng, box.height, box.width, BARE_SOIL, grain=9.0, blotch=0.12, cell=5 * s)
            after_layer, after, colour = Layer(box, mask, soil), "bare soil", "light brown"
            phrase = "the grass field in the {pos} that was dug up to bare soil"
        thing = self.draft.add([Layer(box, mask, lawn)], [after_layer])
        self.take(box, change=True)
        attributes = {
            "colour": colour,
            "colour_before": "green",
            "before": "grass",
            "after": after,
            "size": size_word(u),
            "shape": "rectangular",
        }
        self.draft.note(thing, "state_change", Category.GROUND, phrase, attributes)
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
            placement = extent(corners, 1)
            if not within(placement, self.edge, self.n - self.edge):
                continue
            box = BBox.of(*placement)
            if not self.change_zone[box.slices()].any() and not self.vehicle_zone[box.slices()].any():
                break
        else:
            return False
        xs, ys = pixel_grid(box)
        along = (xs - cx) * road.dx + (ys - cy) * road.dy
        across = -(xs - cx) * road.dy + (ys - cy) * road.dx
        band = (np.abs(along) <= length / 2) & (np.abs(across) <= half)
        mask = band & self.asphalt[box.slices()]
        paint = self.markings[box.slices()]
        worn = texture(self.rng, box.height, box.width, WORN_ASPHALT, grain=6.0, blotch=0.08, cell=6 * s)
        worn[np.abs(smooth_noise(self.rng, box.height, box.width, 6 * s)) < 0.05] *= 0.55
        worn[paint] = (188.0, 188.0, 182.0)
        fresh = texture(self.rng, box.height, box.width, FRESH_ASPHALT, grain=2.5)
        fresh[paint] = (242.0, 242.0, 238.0)
        thing = self.draft.add([Layer(box, mask, worn)], [Layer(box, mask, fresh)])
        self.change_zone[box.grown(px(3, s)).clipped(self.n).slices()] = True
        attributes = {
            "colour": "dark grey",
            "colour_before": "light grey",
            "before": "worn asphalt",
            "after": "fresh asphalt",
            "size": size_word(u),
            "shape": "strip",
        }
        self.draft.note(
            thing, "state_change", Category.ROAD, "the road section in the {pos} that was resurfaced", attributes
        )
        return True
