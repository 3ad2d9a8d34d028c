"""Semantic change labels: one land-cover label map per date (SECOND style) -> typed, categorised changes.

A class table names each colour of the label maps, the category it stands for and its kind: an ``object``
(a building, trees, a sports field) can appear and disappear; a ``surface`` (bare ground, low vegetation,
water) is what is there when no object is. One colour means "no change". Each changed pixel has a class
before and a class after; every (before, after) pair of classes becomes one known change of the pair, typed
by the rule:

- the later class is an object: ``appear`` (category: the later class), e.g. ground -> building;
- the earlier class is an object and the later a surface: ``disappear`` (category: the earlier class);
- surface -> surface, or the same object class in both dates: ``state_change`` (category: the later class).

The default table is SECOND's palette (as used by semantic-change-detection code). Another dataset's table
is a JSON file: ``{"no_change": [255, 255, 255], "classes": [{"name": ..., "colour": [r, g, b],
"category": ..., "kind": "object" | "surface"}, ...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from craft_agent.errors import ConfigError, IngestError
from craft_agent.models import Category, ChangeType

Colour = tuple[int, int, int]


class SemanticClass(BaseModel):
    """One class of a label map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    colour: Colour
    category: Category = Field(description="The category (the closed set of craft_agent.models.Category).")
    kind: Literal["object", "surface"]


class ClassTable(BaseModel):
    """The classes of a semantic label map and the colour meaning "no change"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_change: Colour = (255, 255, 255)
    classes: list[SemanticClass]

    @classmethod
    def second(cls) -> ClassTable:
        """SECOND's palette: water, ground, low vegetation, tree, building, sports field; white = no change."""
        return cls(
            classes=[
                SemanticClass(name="water", colour=(0, 0, 255), category="water", kind="surface"),
                SemanticClass(name="ground", colour=(128, 128, 128), category="ground", kind="surface"),
                SemanticClass(name="low vegetation", colour=(0, 128, 0), category="vegetation", kind="surface"),
                SemanticClass(name="tree", colour=(0, 255, 0), category="vegetation", kind="object"),
                SemanticClass(name="building", colour=(128, 0, 0), category="building", kind="object"),
                SemanticClass(name="sports field", colour=(255, 0, 0), category="ground", kind="object"),
            ]
        )

    @classmethod
    def load(cls, path: Path | None) -> ClassTable:
        """The table in the JSON file ``path``, or SECOND's when ``path`` is None.

        Raises:
            ConfigError: when the file cannot be read or does not describe a class table.
        """
        if path is None:
            return cls.second()
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(
                f"class table {path} is not usable: {exc}",
                hint='write {"no_change": [255, 255, 255], "classes": [{"name": "building", "colour": [128, 0, 0], '
                '"category": "building", "kind": "object"}, ...]} (see craft_agent/imagery/semantic.py).',
            ) from exc

    def class_map(self, rgb: np.ndarray, label: str) -> np.ndarray:
        """Class index per pixel of an RGB label map: -1 for "no change", else the index into ``classes``.

        Raises:
            IngestError: naming ``label`` and the colours the table does not know.
        """
        codes = _codes(rgb[..., :3])
        indices = np.full(codes.shape, -2, dtype=np.int16)
        indices[codes == _code(self.no_change)] = -1
        for index, item in enumerate(self.classes):
            indices[codes == _code(item.colour)] = index
        unknown = np.unique(codes[indices == -2])
        if unknown.size:
            shown = ", ".join(str(_colour(int(c))) for c in unknown[:5])
            raise IngestError(
                label,
                f"label map {label} has colours the class table does not know: {shown}"
                f"{' ...' if unknown.size > 5 else ''}.",
                hint="pass --class-table FILE (JSON) describing every colour of the label maps, or check that the "
                "file is a colour label map and not a photo or a resized (interpolated) map.",
            )
        return indices

    def change_of(self, before: int, after: int) -> tuple[ChangeType, str]:
        """Change type and category of a pixel whose class went from ``before`` to ``after`` (indices)."""
        old, new = self.classes[before], self.classes[after]
        if new.kind == "object" and (old.kind == "surface" or old.name != new.name):
            return ChangeType.APPEAR, new.category
        if old.kind == "object" and new.kind == "surface":
            return ChangeType.DISAPPEAR, old.category
        return ChangeType.STATE_CHANGE, new.category


def _code(colour: Colour) -> int:
    return (int(colour[0]) << 16) | (int(colour[1]) << 8) | int(colour[2])


def _colour(code: int) -> Colour:
    return ((code >> 16) & 255, (code >> 8) & 255, code & 255)


def _codes(rgb: np.ndarray) -> np.ndarray:
    pixels = rgb.astype(np.int32)
    return np.asarray((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])


def semantic_changes(
    table: ClassTable, before: np.ndarray, after: np.ndarray, label: str
) -> list[tuple[ChangeType, str, str, str, np.ndarray]]:
    """Every (class before, class after) change of a pair of label maps.

    Args:
        table: the class table.
        before, after: RGB label maps of the earlier and later date, of one size.
        label: how to name the maps in errors (a path).

    Returns:
        (change type, category, class before, class after, bool mask) per transition, largest first. Pixels
        that are "no change" in one map but a class in the other are read as that class in both dates.

    Raises:
        IngestError: for unknown colours or maps of different sizes.
    """
    if before.shape[:2] != after.shape[:2]:
        raise IngestError(
            label,
            f"the two label maps of {label} differ in size ({before.shape[1]}x{before.shape[0]} and "
            f"{after.shape[1]}x{after.shape[0]}).",
            hint="use the label maps made for this pair (both the images' size).",
        )
    old, new = table.class_map(before, label), table.class_map(after, label)
    old = np.where(old < 0, new, old)
    new = np.where(new < 0, old, new)
    changed = (old >= 0) & (new >= 0)
    transitions: list[tuple[ChangeType, str, str, str, np.ndarray]] = []
    if not changed.any():
        return transitions
    count = len(table.classes)
    keys = old.astype(np.int32) * count + new.astype(np.int32)
    for key in np.unique(keys[changed]):
        a, b = divmod(int(key), count)
        mask = changed & (keys == key)
        change_type, category = table.change_of(a, b)
        transitions.append((change_type, category, table.classes[a].name, table.classes[b].name, mask))
    return sorted(transitions, key=lambda t: -int(t[4].sum()))
