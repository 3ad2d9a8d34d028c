"""The paint model: things made of layers, drawn into a draft that renders each date with its owner labels.

A layer paints colours (or a multiplicative shade) through a mask inside a box; a thing is what a layer
stack looks like at each date; a draft lists the things in paint order and which of them changed.
Rendering writes, for every pixel, which thing painted it last, and that is what makes the change masks
exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from craft_agent.models import BBox, Category
from craft_agent.synthetic.records import ChangeTypeName

# Scenes are drawn this much larger on every side, so that shifting the post image by up to this many
# pixels never exposes an undrawn border.
PAD = 2

BoolMask = NDArray[np.bool_]
FloatImage = NDArray[np.float32]
LabelImage = NDArray[np.int32]
Colour = tuple[float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True, eq=False)
class Layer:
    """One paint operation: colours (or a multiplicative shade) written where ``mask`` is set.

    ``own`` says whether the painted pixels belong to the thing drawing them; shadows and the rubble
    left behind by a removed object do not, so they never enter a change mask.
    """

    box: BBox
    mask: BoolMask
    colour: FloatImage | None = None
    shade: float = 1.0
    own: bool = True
    whole: bool = False  # mask is all set: paint the box without consulting it


def whole_layer(box: BBox, colour: FloatImage) -> Layer:
    """A layer that paints every pixel of ``box``."""
    return Layer(box, np.ones((box.height, box.width), bool), colour, whole=True)


@dataclass(frozen=True, eq=False)
class Thing:
    """Something in the scene, as painted at each date (an empty tuple: absent at that date)."""

    pre: tuple[Layer, ...]
    post: tuple[Layer, ...]


@dataclass(frozen=True, eq=False)
class PlannedChange:
    """A change whose mask is known only once the scene is rendered; ``phrase`` holds ``{pos}``."""

    thing: Thing
    change_type: ChangeTypeName
    category: Category
    phrase: str
    attributes: dict[str, str]


@dataclass
class Draft:
    """The things of one scene in paint order, and which of them changed."""

    n: int
    things: list[Thing] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)

    def add(self, pre: Sequence[Layer], post: Sequence[Layer] | None = None) -> Thing:
        thing = Thing(tuple(pre), tuple(pre if post is None else post))
        self.things.append(thing)
        return thing

    def replace(self, old: Thing, new: Thing) -> None:
        self.things[next(i for i, t in enumerate(self.things) if t is old)] = new

    def note(
        self,
        thing: Thing,
        change_type: ChangeTypeName,
        category: Category,
        phrase: str,
        attributes: dict[str, str],
    ) -> None:
        self.changes.append(PlannedChange(thing, change_type, category, phrase, attributes))


def shade_layer(box: BBox, mask: BoolMask, factor: float) -> Layer:
    """A shadow: darkens what lies under ``mask`` by ``factor`` and owns none of it."""
    return Layer(box, mask, None, factor, own=False)


@dataclass(frozen=True, eq=False)
class Surface:
    """A shape with its relief (multiplicative shading) and fixed-colour details, ready to be tinted."""

    box: BBox
    mask: BoolMask
    relief: FloatImage
    details: BoolMask | None = None
    detail_colour: Colour = (0.0, 0.0, 0.0)


def tinted(rng: np.random.Generator, surface: Surface, colour: Colour, grain: float = 3.0) -> Layer:
    """Paint a surface in a colour; the same surface tinted twice gives a pure repaint."""
    h, w = surface.mask.shape
    image = np.empty((h, w, 3), np.float32)
    image[:] = colour
    image *= surface.relief[..., None]
    image += grain * rng.standard_normal((h, w, 1), dtype=np.float32)
    if surface.details is not None:
        image[surface.details] = surface.detail_colour
    return Layer(surface.box, surface.mask, image)


def render(draft: Draft, when: Literal["pre", "post"]) -> tuple[FloatImage, LabelImage]:
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
