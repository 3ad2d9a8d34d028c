"""The records a synthetic scene is handed out as: the scene, its changes, and an examples folder's summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from craft_agent.models import Category

ChangeTypeName = Literal["appear", "disappear", "state_change"]
DomainName = Literal["rs", "ns"]
CHANGE_TYPES: tuple[ChangeTypeName, ...] = ("appear", "disappear", "state_change")


@dataclass(frozen=True, eq=False)
class SyntheticChange:
    """One change between the pre and the post image of a synthetic scene.

    Attributes:
        change_type: "appear", "disappear" or "state_change".
        category: the change's :class:`~craft_agent.models.Category`.
        mask: bool H x W, the exact pixels of the changed object in the pre image's pixel grid.
        position: 3 x 3 grid position of the mask's bounding-box centre ("top-left", "center", ...).
        description: a short phrase with an absolute position, CRAFT stage-1 style.
        attributes: words describing the object: always "colour", "size" and "shape"; state changes add
            "colour_before" and, where the material changed, "before" / "after".
    """

    change_type: ChangeTypeName
    category: Category
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
