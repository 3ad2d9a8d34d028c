"""Palettes (RGB). Names are the words used in descriptions."""

from __future__ import annotations

import numpy as np

from craft_agent.synthetic.canvas import Colour
from craft_agent.synthetic.primitives import pick

GRASS: Colour = (84.0, 116.0, 56.0)
DRY_GRASS: Colour = (146.0, 140.0, 88.0)
SOIL: Colour = (150.0, 128.0, 96.0)
LAWN: Colour = (92.0, 140.0, 60.0)
BARE_SOIL: Colour = (188.0, 162.0, 122.0)
RUBBLE: Colour = (156.0, 146.0, 128.0)
ASPHALT: Colour = (98.0, 98.0, 102.0)
WORN_ASPHALT: Colour = (142.0, 140.0, 135.0)
FRESH_ASPHALT: Colour = (52.0, 52.0, 56.0)
LOT_ASPHALT: Colour = (84.0, 84.0, 88.0)
CONCRETE: Colour = (172.0, 170.0, 164.0)
PAINT_WHITE: Colour = (228.0, 228.0, 222.0)
WATER: Colour = (36.0, 72.0, 82.0)
DRY_MUD: Colour = (156.0, 136.0, 104.0)
SHORE: Colour = (138.0, 132.0, 100.0)
GLASS: Colour = (50.0, 60.0, 76.0)

ROOF_COLOURS: dict[str, Colour] = {
    "red": (168.0, 62.0, 52.0),
    "grey": (128.0, 128.0, 134.0),
    "white": (224.0, 224.0, 218.0),
    "blue": (62.0, 94.0, 156.0),
    "brown": (116.0, 80.0, 56.0),
    "green": (72.0, 120.0, 88.0),
    "orange": (198.0, 114.0, 62.0),
    "dark grey": (66.0, 66.0, 72.0),
}
LOT_COLOURS: dict[str, Colour] = {"bare soil": (178.0, 156.0, 122.0), "gravel": (160.0, 158.0, 150.0)}
CAR_COLOURS: dict[str, Colour] = {
    "white": (236.0, 236.0, 232.0),
    "black": (26.0, 26.0, 30.0),
    "red": (184.0, 32.0, 34.0),
    "blue": (34.0, 66.0, 168.0),
    "yellow": (226.0, 192.0, 44.0),
    "silver": (172.0, 174.0, 180.0),
}
WALL_COLOURS: dict[str, Colour] = {
    "cream": (228.0, 214.0, 182.0),
    "brick-red": (152.0, 74.0, 58.0),
    "ochre": (204.0, 152.0, 80.0),
    "light grey": (188.0, 188.0, 186.0),
    "pale blue": (156.0, 184.0, 206.0),
    "white": (238.0, 236.0, 230.0),
    "salmon": (216.0, 140.0, 120.0),
    "sage green": (146.0, 168.0, 126.0),
}
DOOR_COLOURS: dict[str, Colour] = {
    "dark green": (30.0, 82.0, 52.0),
    "red": (164.0, 30.0, 36.0),
    "brown": (96.0, 58.0, 36.0),
    "blue": (30.0, 58.0, 128.0),
    "black": (26.0, 26.0, 30.0),
    "yellow": (220.0, 176.0, 40.0),
}
STATUE_COLOURS: dict[str, Colour] = {
    "white": (232.0, 230.0, 224.0),
    "bronze": (118.0, 86.0, 48.0),
    "grey stone": (150.0, 150.0, 144.0),
    "green bronze": (72.0, 112.0, 92.0),
    "golden": (206.0, 164.0, 60.0),
}
SIGN_COLOURS: dict[str, Colour] = {
    "red": (198.0, 40.0, 40.0),
    "blue": (36.0, 82.0, 172.0),
    "green": (40.0, 132.0, 72.0),
    "yellow": (232.0, 192.0, 40.0),
}
BENCH_COLOURS: dict[str, Colour] = {
    "wooden": (146.0, 98.0, 56.0),
    "green": (46.0, 104.0, 62.0),
    "red": (160.0, 50.0, 42.0),
    "white": (226.0, 226.0, 220.0),
}
TARP_COLOURS: dict[str, Colour] = {
    "dark": (40.0, 44.0, 48.0),
    "blue": (40.0, 80.0, 150.0),
    "green": (50.0, 96.0, 56.0),
    "orange": (210.0, 110.0, 40.0),
}


def colour_distance(a: Colour, b: Colour) -> float:
    """Mean absolute difference of the RGB channels."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / 3.0


def contrasting(rng: np.random.Generator, palette: dict[str, Colour], against: Colour, min_distance: float) -> str:
    """A palette name far enough from ``against`` that the change stays visible after nuisances."""
    far = [name for name, colour in palette.items() if colour_distance(colour, against) >= min_distance]
    if not far:
        return max(palette, key=lambda name: colour_distance(palette[name], against))
    return pick(rng, far)
