"""The street-level ("ns") planner: what a street shows, which of it changes, and how.

The planner lays down sky, facades, pavement and road, then the changes, then static props, and paints
foreground things from the back of the pavement to the front of the road; what each thing looks like is
drawn by :mod:`craft_agent.synthetic.street_objects`. Every random draw comes from the one generator it is
given, in a fixed order, so a seed always gives the same scene.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from craft_agent.models import BBox, Category
from craft_agent.synthetic.canvas import PAD, Colour, Draft, Layer, Surface, Thing, render, tinted
from craft_agent.synthetic.palettes import (
    BENCH_COLOURS,
    CAR_COLOURS,
    DOOR_COLOURS,
    SIGN_COLOURS,
    STATUE_COLOURS,
    TARP_COLOURS,
    WALL_COLOURS,
    contrasting,
)
from craft_agent.synthetic.primitives import (
    disc_mask,
    extent,
    pick,
    pixel_grid,
    polygon_mask,
    px,
    rect,
    size_word,
    smooth_noise,
    texture,
    within,
)
from craft_agent.synthetic.street_objects import (
    PropMaker,
    bench,
    car,
    door_surface,
    pavement_layer,
    planter,
    road_layer,
    sign,
    sky_layer,
    statue,
    wall_surface,
    windows_layer,
)


@dataclass(frozen=True, eq=False)
class _Door:
    """A facade's door: its thing, the surface to repaint it, its colour name and its box."""

    thing: Thing
    surface: Surface
    colour: str
    box: BBox


@dataclass(frozen=True, eq=False)
class _Facade:
    """One building front: its wall (and door, unless it falls outside the view), with the surfaces to
    repaint them."""

    box: BBox
    wall: Thing
    wall_surface: Surface
    wall_colour: str
    door: _Door | None


class StreetPlanner:
    """Plans one street-level scene: sky, facades, pavement and road, then changes, then props."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.scale = size / 512.0
        self.n = size + 2 * PAD
        self.draft = Draft(self.n)
        self.edge = PAD + px(4, self.scale)
        self.y_ground = int(self.n * float(rng.uniform(0.64, 0.71)))
        self.y_kerb = self.y_ground + int(self.n * float(rng.uniform(0.1, 0.13)))
        self.facades: list[_Facade] = []
        self.used_facades: set[int] = set()
        self.occupied = np.zeros((self.n, self.n), bool)
        self.foreground: list[tuple[float, Thing]] = []
        self.backdrop: np.ndarray = np.zeros((self.n, self.n, 3), np.float32)

    def plan(self) -> Draft:
        self.draw_sky()
        self.draw_facades()
        self.draw_pavement()
        self.draw_road()
        # What stands behind a new or removed object, to pick a colour that stands out from it.
        self.backdrop = render(self.draft, "pre")[0]
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
        self.draft.add([sky_layer(self.rng, BBox.of(0, 0, self.n, self.y_ground), self.scale)])

    def draw_facades(self) -> None:
        n, rng = self.n, self.rng
        x = -float(rng.uniform(0, 0.1)) * n
        while x < n:
            width = float(rng.uniform(0.2, 0.36)) * n
            top = int(float(rng.uniform(0.05, 0.3)) * n)
            box = BBox.of(int(x), top, int(x + width), self.y_ground).clipped(n)
            if box.width > 4:
                self.facades.append(self.facade(box, int(x), int(x + width)))
            x += width

    def facade(self, box: BBox, left: int, right: int) -> _Facade:
        """A wall with a cornice, rows of windows and a door at street level."""
        rng, n, s = self.rng, self.n, self.scale
        wall_colour = pick(rng, list(WALL_COLOURS))
        wall = wall_surface(rng, box, wall_colour, s)
        wall_thing = self.draft.add([tinted(rng, wall, WALL_COLOURS[wall_colour], 2.5)])

        door_w, door_h = float(rng.uniform(0.045, 0.06)) * n, float(rng.uniform(0.09, 0.12)) * n
        door_cx = left + (right - left) * float(rng.uniform(0.3, 0.7))
        door_extent = (int(door_cx - door_w / 2), int(self.y_ground - door_h), int(door_cx + door_w / 2), self.y_ground)
        windows = windows_layer(rng, box, door_extent[1] - px(10, s), n, s)
        if windows is not None:
            self.draft.add([windows])
        if not within(door_extent, 0, n):
            return _Facade(box, wall_thing, wall, wall_colour, None)
        door_box = BBox.of(*door_extent)
        door = door_surface(door_box, s)
        door_colour = pick(rng, list(DOOR_COLOURS))
        door_thing = self.draft.add([tinted(rng, door, DOOR_COLOURS[door_colour], 2.0)])
        return _Facade(box, wall_thing, wall, wall_colour, _Door(door_thing, door, door_colour, door_box))

    def draw_pavement(self) -> None:
        self.draft.add([pavement_layer(self.rng, BBox.of(0, self.y_ground, self.n, self.y_kerb), self.scale)])

    def draw_road(self) -> None:
        self.draft.add([road_layer(self.rng, BBox.of(0, self.y_kerb, self.n, self.n), self.scale)])

    # -- placement -------------------------------------------------------------------------------------

    def is_free(self, box: BBox) -> bool:
        if not box.inside(self.edge, self.n - self.edge):
            return False
        return not self.occupied[box.grown(px(3, self.scale)).clipped(self.n).slices()].any()

    def backdrop_colour(self, layer: Layer) -> Colour:
        region = self.backdrop[layer.box.slices()][layer.mask]
        mean = region.mean(axis=0) if len(region) else np.zeros(3)
        return (float(mean[0]), float(mean[1]), float(mean[2]))

    def add_foreground(self, base_y: float, pre: Sequence[Layer], post: Sequence[Layer]) -> Thing:
        thing = Thing(tuple(pre), tuple(post))
        self.foreground.append((base_y, thing))
        return thing

    # -- props -----------------------------------------------------------------------------------------

    def draw_props(self) -> None:
        """Static street furniture so that not everything in view is a change."""
        for _ in range(int(self.rng.integers(1, 4))):
            self.add_lamp()
        if self.rng.random() < 0.6:
            self.add_street_tree()
        if self.rng.random() < 0.5:
            placed = self.place_car(pick(self.rng, list(CAR_COLOURS)))
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
            pole = rect(cx - pole_w / 2, base_y - height, cx + pole_w / 2, base_y)
            head = rect(cx - 4 * pole_w, base_y - height - 2.5 * pole_w, cx + 4 * pole_w, base_y - height)
            box = BBox.of(*extent(np.concatenate([pole, head]), 2))
            if self.is_free(box):
                mask = polygon_mask([pole, head], box)
                image = texture(self.rng, box.height, box.width, (48.0, 52.0, 56.0), grain=3.0)
                self.occupied[box.slices()] = True
                layer = Layer(box, mask, image)
                self.add_foreground(base_y, [layer], [layer])
                return

    def add_street_tree(self) -> None:
        n, s = self.n, self.scale
        for _ in range(20):
            cx = float(self.rng.uniform(0.08, 0.92)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.01 * n, self.y_kerb - 0.01 * n))
            radius = float(self.rng.uniform(0.07, 0.1)) * n
            trunk_h = 0.12 * n
            trunk = rect(cx - 3 * s, base_y - trunk_h, cx + 3 * s, base_y)
            blobs = [
                (cx + dx * radius, base_y - trunk_h - radius * 0.6 + dy * radius)
                for dx, dy in ((0, -0.3), (-0.45, 0.1), (0.45, 0.1), (0, 0.25))
            ]
            radii = [radius * 0.75] * len(blobs)
            box = BBox.of(
                *extent(
                    np.array([[cx - 1.3 * radius, base_y - trunk_h - 1.7 * radius], [cx + 1.3 * radius, base_y]]), 2
                )
            )
            if not self.is_free(box):
                continue
            crown = disc_mask(blobs, radii, box)
            mask = crown | polygon_mask([trunk], box)
            image = texture(self.rng, box.height, box.width, (96.0, 70.0, 46.0), grain=4.0)
            leaves = texture(self.rng, box.height, box.width, (58.0, 100.0, 44.0), grain=6.0, blotch=0.2, cell=4 * s)
            image[crown] = leaves[crown]
            self.occupied[box.slices()] = True
            layer = Layer(box, mask, image)
            self.add_foreground(base_y, [layer], [layer])
            return

    def place_car(self, colour_name: str | None) -> tuple[float, list[Layer], str] | None:
        """Find room for a car on the road; with no colour given, pick one that stands out there."""
        n = self.n
        for _ in range(30):
            left = float(self.rng.uniform(0.0, 0.78)) * n
            base_y = float(self.rng.uniform(self.y_kerb + 0.05 * n, n - 0.02 * n))
            flip = bool(self.rng.random() < 0.5)
            u = float(self.rng.uniform())
            shadow, body, box = car(self.rng, left, base_y, u, (0.0, 0.0, 0.0), flip, n)
            if not self.is_free(box):
                continue
            name = colour_name or contrasting(self.rng, CAR_COLOURS, self.backdrop_colour(body), 70.0)
            shadow, body, box = car(self.rng, left, base_y, u, CAR_COLOURS[name], flip, n)
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
        self.draft.note(thing, change_type, Category.VEHICLE, phrase, attributes)
        return True

    def change_object(self, change_type: Literal["appear", "disappear"]) -> bool:
        """A statue, sign or bench placed on, or taken off, the pavement."""
        n = self.n
        kind = pick(self.rng, ["statue", "sign", "bench"])
        makers: dict[str, tuple[PropMaker, dict[str, Colour]]] = {
            "statue": (statue, STATUE_COLOURS),
            "sign": (sign, SIGN_COLOURS),
            "bench": (bench, BENCH_COLOURS),
        }
        draw, palette = makers[kind]
        for _ in range(30):
            cx = float(self.rng.uniform(0.08, 0.92)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.02 * n, self.y_kerb - 0.01 * n))
            u = float(self.rng.uniform())
            layer, box = draw(self.rng, cx, base_y, u, (0.0, 0.0, 0.0), n, self.scale)
            if self.is_free(box):
                break
        else:
            return False
        colour = contrasting(self.rng, palette, self.backdrop_colour(layer), 70.0)
        layer, box = draw(self.rng, cx, base_y, u, palette[colour], n, self.scale)
        self.occupied[box.slices()] = True
        present = [layer]
        thing = self.add_foreground(
            base_y, present if change_type == "disappear" else [], present if change_type == "appear" else []
        )
        if change_type == "appear":
            phrase = f"the newly placed {colour} {kind} in the {{pos}}"
        else:
            phrase = f"the {colour} {kind} in the {{pos}} that was removed"
        attributes = {"colour": colour, "size": size_word(u), "shape": kind}
        self.draft.note(thing, change_type, Category.OBJECT, phrase, attributes)
        return True

    def free_facade(self, need_door: bool) -> _Facade | None:
        """A facade with no change yet, mostly in view (its door fully in view when it matters)."""
        low, high = self.edge + px(6, self.scale), self.n - self.edge - px(6, self.scale)
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
        box = BBox.of(*extent(outline, 2))
        if not self.is_free(box):
            self.used_facades.discard(self.facades.index(facade))
            return False
        mask = polygon_mask([outline], box)
        colour = contrasting(self.rng, TARP_COLOURS, self.backdrop_colour(Layer(box, mask)), 60.0)
        xs, _ = pixel_grid(box)
        folds = 1.0 + 0.14 * np.sin(
            (xs - box.x0) / (3.0 * s) + 1.5 * smooth_noise(self.rng, box.height, box.width, 8 * s)
        )
        image = texture(self.rng, box.height, box.width, TARP_COLOURS[colour], grain=3.0)
        image *= folds[..., None]
        self.occupied[box.slices()] = True
        thing = self.draft.add([Layer(box, mask, np.asarray(image, np.float32))], [])
        attributes = {"colour": colour, "size": "large", "shape": "tarp"}
        phrase = f"the large {colour} tarp covering the entrance in the {{pos}} that was taken away"
        self.draft.note(thing, "disappear", Category.OBJECT, phrase, attributes)
        return True

    def change_repainted_wall(self) -> bool:
        facade = self.free_facade(need_door=False)
        if facade is None:
            return False
        before = facade.wall_colour
        after = contrasting(self.rng, WALL_COLOURS, WALL_COLOURS[before], 60.0)
        new_wall = Thing(facade.wall.pre, (tinted(self.rng, facade.wall_surface, WALL_COLOURS[after], 2.5),))
        self.draft.replace(facade.wall, new_wall)
        attributes = {"colour": after, "colour_before": before, "size": "large", "shape": "facade"}
        phrase = f"the {before} facade in the {{pos}} that was repainted {after}"
        self.draft.note(new_wall, "state_change", Category.FACADE, phrase, attributes)
        return True

    def change_repainted_door(self) -> bool:
        facade = self.free_facade(need_door=True)
        if facade is None or facade.door is None:
            return False
        door = facade.door
        before = door.colour
        after = contrasting(self.rng, DOOR_COLOURS, DOOR_COLOURS[before], 70.0)
        new_door = Thing(door.thing.pre, (tinted(self.rng, door.surface, DOOR_COLOURS[after], 2.0),))
        self.draft.replace(door.thing, new_door)
        attributes = {"colour": after, "colour_before": before, "size": "small", "shape": "door"}
        phrase = f"the {before} door in the {{pos}} that was repainted {after}"
        self.draft.note(new_door, "state_change", Category.FACADE, phrase, attributes)
        return True

    def change_thriving_grass(self) -> bool:
        """A planter on the pavement whose dry, sparse grass is lush and green at the second date."""
        n = self.n
        for _ in range(30):
            u = float(self.rng.uniform())
            width = (0.16 + 0.08 * u) * n
            cx = float(self.rng.uniform(0.1, 0.9)) * n
            base_y = float(self.rng.uniform(self.y_ground + 0.05 * n, self.y_kerb - 0.01 * n))
            box = BBox.of(int(cx - width / 2), int(base_y - 0.045 * n), int(cx + width / 2), int(base_y))
            if self.is_free(box):
                break
        else:
            return False
        border, dry, lush = planter(self.rng, box, self.scale)
        self.occupied[box.slices()] = True
        thing = self.add_foreground(base_y, [border, dry], [border, lush])
        attributes = {"colour": "green", "colour_before": "yellow-brown", "size": size_word(u), "shape": "planter"}
        self.draft.note(
            thing, "state_change", Category.VEGETATION, "the lush green grass now thriving in the {pos}", attributes
        )
        return True
