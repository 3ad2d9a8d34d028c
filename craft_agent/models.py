"""The data model: the typed records that every stage takes and returns.

Pairs, change candidates, triplets and audit records flow through the whole pipeline in these shapes
(imagery -> agents -> catalog -> audit -> export). Masks are COCO RLE on the pair's pixel grid
(pycocotools), so an empty mask (a no-target expression) and a multi-object mask cost the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as coco_mask
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from craft_agent.errors import IllegalTransitionError

SCHEMA_VERSION = 1
"""Version of these records as stored in the catalog; bump it when a stored shape changes."""


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (every timestamp in the catalog is UTC)."""
    return datetime.now(UTC)


class Record(BaseModel):
    """Base of all records: strict about unknown fields so typos in manifests fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class Domain(StrEnum):
    """Imagery domain, as in MTRefSeg-21K: remote sensing or normal (street-level) scenes."""

    RS = "rs"
    NS = "ns"


class ChangeType(StrEnum):
    """What happened to the target between the earlier and the later image.

    The integer codes are MTRefSeg's: appear = 0, disappear = 1, change of state = 2.
    """

    APPEAR = "appear"
    DISAPPEAR = "disappear"
    STATE_CHANGE = "state_change"

    @property
    def code(self) -> int:
        """MTRefSeg's integer code for this change type."""
        return _CHANGE_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> ChangeType:
        """The change type with MTRefSeg code ``code`` (0, 1 or 2).

        Raises:
            ValueError: for any other code.
        """
        for change_type, value in _CHANGE_CODES.items():
            if value == code:
                return change_type
        raise ValueError(f"unknown MTRefSeg change-type code {code!r}; expected 0, 1 or 2")


_CHANGE_CODES = {ChangeType.APPEAR: 0, ChangeType.DISAPPEAR: 1, ChangeType.STATE_CHANGE: 2}


class Category(StrEnum):
    """The closed set of change categories the agent names. A label's or a manifest's own category word (a
    dataset may say "boat") is kept on the record as written; :meth:`parse` maps it into this set for the
    wording, and it is None when nothing fits."""

    BUILDING = "building"
    """A whole building."""
    ROOF = "roof"
    """A roof repainted or re-covered (the building stays)."""
    VEGETATION = "vegetation"
    """Trees or grass."""
    VEHICLE = "vehicle"
    """A car, a van."""
    WATER = "water"
    """A pond or a flooded area."""
    GROUND = "ground"
    """Bare or paved land, a field."""
    ROAD = "road"
    """A road section."""
    FACADE = "facade"
    """A wall or a door (street scenes)."""
    OBJECT = "object"
    """A statue, sign, bench or tarp (street scenes)."""

    def nouns(self, domain: Domain = Domain.RS) -> tuple[tuple[str, str], ...]:
        """(singular, plural) nouns for this category in ``domain``, the usual one first."""
        return _STREET_NOUNS.get(self, _NOUNS[self]) if domain is Domain.NS else _NOUNS[self]

    @classmethod
    def parse(cls, word: str | None) -> Category | None:
        """The category a word names: a category ("Building"), or one of its nouns or a common synonym
        ("houses", "trees", "car", "lake"); None for None or a word that names none."""
        if word is None:
            return None
        key = " ".join(word.lower().replace("_", " ").replace("-", " ").split())
        if key in cls._value2member_map_:
            return cls(key)
        return _SYNONYMS.get(key) or _SYNONYMS.get(key.removesuffix("s"))


_NOUNS: dict[Category, tuple[tuple[str, str], ...]] = {
    Category.BUILDING: (("building", "buildings"), ("house", "houses")),
    Category.ROOF: (("roof", "roofs"), ("building roof", "building roofs")),
    Category.VEGETATION: (("cluster of trees", "clusters of trees"), ("group of trees", "groups of trees")),
    Category.VEHICLE: (("car", "cars"), ("vehicle", "vehicles")),
    Category.WATER: (("pond", "ponds"), ("pool of water", "pools of water")),
    Category.GROUND: (("field", "fields"), ("plot of land", "plots of land")),
    Category.ROAD: (("road section", "road sections"), ("stretch of road", "stretches of road")),
    Category.FACADE: (("facade", "facades"), ("wall", "walls")),
    Category.OBJECT: (("object", "objects"), ("structure", "structures")),
}
_STREET_NOUNS: dict[Category, tuple[tuple[str, str], ...]] = {
    Category.VEGETATION: (("patch of grass", "patches of grass"), ("strip of grass", "strips of grass")),
}
_SYNONYMS: dict[str, Category] = {
    **{form: category for category, nouns in _NOUNS.items() for pair in nouns for form in pair},
    **{form: category for category, nouns in _STREET_NOUNS.items() for pair in nouns for form in pair},
    **{word: Category.BUILDING for word in ("warehouse", "shed", "factory", "structure built", "construction")},
    **{word: Category.VEGETATION for word in ("tree", "grass", "forest", "woodland", "shrub", "low vegetation")},
    **{word: Category.VEHICLE for word in ("truck", "van", "bus", "lorry")},
    **{word: Category.WATER for word in ("lake", "river", "pool", "water body", "flood")},
    **{word: Category.GROUND for word in ("soil", "bare ground", "bare land", "land", "sports field", "parking lot")},
    **{word: Category.ROAD for word in ("street", "lane", "highway", "pavement")},
    **{word: Category.FACADE for word in ("door", "window", "storefront")},
    **{word: Category.OBJECT for word in ("statue", "sign", "bench", "tarp", "bin", "pole")},
}

CATEGORIES: tuple[str, ...] = tuple(category.value for category in Category)
"""The category words of :class:`Category`, in order (for CLI choices and messages)."""


class BBox(Record):
    """An axis-aligned box in pixels: x0, y0 inclusive, x1, y1 exclusive."""

    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    x1: int
    y1: int

    @model_validator(mode="after")
    def _ordered(self) -> BBox:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"box ({self.x0}, {self.y0}, {self.x1}, {self.y1}) has no area")
        return self

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_xyxy(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def intersection_area(self, other: BBox) -> int:
        """Pixels shared by the two boxes (0 when they do not overlap)."""
        width = min(self.x1, other.x1) - max(self.x0, other.x0)
        height = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(0, width) * max(0, height)

    def overlaps(self, other: BBox) -> bool:
        """Whether the two boxes share at least one pixel."""
        return self.intersection_area(other) > 0

    @classmethod
    def of(cls, x0: int, y0: int, x1: int, y1: int) -> BBox:
        """The box with these corners; a corner left of or above the image is moved onto its edge."""
        return cls(x0=max(0, int(x0)), y0=max(0, int(y0)), x1=int(x1), y1=int(y1))

    @staticmethod
    def enclosing(boxes: list[BBox]) -> BBox:
        """The smallest box holding all ``boxes`` (at least one)."""
        return BBox(
            x0=min(b.x0 for b in boxes),
            y0=min(b.y0 for b in boxes),
            x1=max(b.x1 for b in boxes),
            y1=max(b.y1 for b in boxes),
        )

    def grown(self, margin: int) -> BBox:
        """The box ``margin`` px wider on each side (within the image's top-left edges)."""
        return BBox.of(self.x0 - margin, self.y0 - margin, self.x1 + margin, self.y1 + margin)

    def clipped(self, width: int, height: int | None = None) -> BBox:
        """The box within a ``width`` x ``height`` image (square when ``height`` is None)."""
        return BBox.of(self.x0, self.y0, min(width, self.x1), min(width if height is None else height, self.y1))

    def inside(self, low: int, high: int) -> bool:
        """Whether the box lies within ``low`` <= x, y <= ``high`` on both axes."""
        return self.x0 >= low and self.y0 >= low and self.x1 <= high and self.y1 <= high

    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices of the box, for indexing an image array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


class RLEMask(Record):
    """A binary mask as COCO compressed RLE (pycocotools), on an image of ``size`` = (height, width).

    Empty masks are valid (a no-target expression); several objects in one mask are valid too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int]
    counts: str

    @field_validator("size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] <= 0 or value[1] <= 0:
            raise ValueError(f"mask size {value} must be positive (height, width)")
        return value

    @classmethod
    def from_array(cls, mask: np.ndarray) -> RLEMask:
        """Encode a 2-D array (nonzero = inside) as RLE.

        Raises:
            ValueError: when ``mask`` is not two-dimensional.
        """
        if mask.ndim != 2:
            raise ValueError(f"a mask must be 2-D (height, width), got shape {mask.shape}")
        encoded = coco_mask.encode(np.asfortranarray(mask.astype(bool, copy=False).astype(np.uint8)))
        counts = encoded["counts"]
        return cls(
            size=(int(mask.shape[0]), int(mask.shape[1])),
            counts=counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
        )

    @classmethod
    def from_crop(cls, crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> RLEMask:
        """Encode a mask given as a crop placed at (x0, y0) in a height x width image.

        Builds the full mask directly in the column-major order pycocotools needs, which saves a copy
        per mask when many small objects of a large image are encoded.
        """
        full = np.zeros((height, width), dtype=np.uint8, order="F")
        full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        counts = coco_mask.encode(full)["counts"]
        return cls(size=(height, width), counts=counts.decode("ascii") if isinstance(counts, bytes) else str(counts))

    @classmethod
    def empty(cls, height: int, width: int) -> RLEMask:
        """An all-background mask of the given size."""
        return cls.from_array(np.zeros((height, width), dtype=bool))

    def as_coco(self) -> dict[str, Any]:
        """The mask in pycocotools' own RLE form (counts as bytes)."""
        return {"size": [self.size[0], self.size[1]], "counts": self.counts.encode("ascii")}

    def to_array(self) -> np.ndarray:
        """Decode to a bool array of shape (height, width)."""
        return np.asarray(coco_mask.decode(self.as_coco()), dtype=bool)

    @property
    def area(self) -> int:
        """Number of pixels inside the mask."""
        return int(coco_mask.area(self.as_coco()))

    @property
    def is_empty(self) -> bool:
        return self.area == 0

    def bbox(self) -> BBox | None:
        """Tight box around the mask, or None for an empty mask."""
        if self.is_empty:
            return None
        x, y, w, h = (round(v) for v in coco_mask.toBbox(self.as_coco()))
        return BBox(x0=x, y0=y, x1=x + w, y1=y + h)

    def crop(self, x0: int, y0: int, width: int, height: int) -> RLEMask:
        """The part of the mask inside a window, as a mask of the window's size."""
        return RLEMask.from_array(self.to_array()[y0 : y0 + height, x0 : x0 + width])

    @staticmethod
    def union(masks: list[RLEMask]) -> RLEMask:
        """Pixel-wise union of masks of one size.

        Raises:
            ValueError: when ``masks`` is empty or the sizes differ.
        """
        if not masks:
            raise ValueError("union of no masks: pass at least one mask")
        sizes = {m.size for m in masks}
        if len(sizes) != 1:
            raise ValueError(f"cannot unite masks of different sizes {sorted(sizes)}")
        merged = coco_mask.merge([m.as_coco() for m in masks], intersect=False)
        return RLEMask(size=masks[0].size, counts=merged["counts"].decode("ascii"))

    def iou(self, other: RLEMask) -> float:
        """Intersection over union with MTRefSeg's conventions (both empty -> 1.0)."""
        a, b = self.to_array(), other.to_array()
        union = int(np.logical_or(a, b).sum())
        if union == 0:
            return 1.0
        return float(np.logical_and(a, b).sum()) / (union + 1e-6)


class StoredImage(Record):
    """An image in the workspace's content-addressed store (8-bit RGB PNG)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    path: str = Field(description="Path of the PNG relative to the workspace directory.")
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class GeoReference(Record):
    """Where the pair's pixel grid lies on Earth."""

    crs: str = Field(description="CRS as an authority string (EPSG:4326) or WKT when it has no code.")
    transform: tuple[float, float, float, float, float, float] = Field(
        description="Affine pixel-to-CRS transform (a, b, c, d, e, f) as rasterio/affine order it."
    )

    @property
    def pixel_size(self) -> tuple[float, float]:
        return (abs(self.transform[0]), abs(self.transform[4]))


class TileWindow(Record):
    """Which part of a larger source scene a tiled pair covers."""

    col_off: int = Field(ge=0)
    row_off: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    scene_width: int = Field(gt=0)
    scene_height: int = Field(gt=0)


class PairSource(Record):
    """Where a pair came from on disk, for provenance and re-ingestion."""

    root: str = Field(description="The ingest source folder or manifest, as given.")
    layout: str = Field(description="Layout that recognised it: ab, prepost, mtrefseg, manifest, synthetic...")
    pre: list[str] = Field(description="Earlier image file(s), relative to root (several for band sets).")
    post: list[str]
    mask: str | None = None
    name: str = Field(description="The pair's name in its source (file stem, manifest id).")

    def files(self) -> tuple[Path, ...]:
        """Absolute paths of the image files (earlier, then later): the pair's identity on disk.

        A root recorded as a relative path is taken from the current folder.
        """
        root = Path(self.root)
        return tuple(Path(os.path.abspath(root / name)) for name in [*self.pre, *self.post])


class GroundTruthChange(Record):
    """A known change in a pair (from generated scenes or an existing annotated dataset)."""

    change_type: ChangeType | None = None
    category: str | None = None
    mask: RLEMask
    position: str | None = None
    expressions: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)


class ImagePair(Record):
    """Two co-registered images of one place at two times: the unit of work of the pipeline.

    ``id`` is a content hash of both images' pixels plus the georeference, so the same pair ingested
    twice (from any path) is the same record.
    """

    id: str = Field(pattern=r"^[0-9a-f]{16,64}$")
    name: str
    domain: Domain
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    pre: StoredImage
    post: StoredImage
    source: PairSource
    group_id: str = Field(description="Scene group: tiles of one scene share it; splits never separate one.")
    georef: GeoReference | None = None
    date_pre: date | None = None
    date_post: date | None = None
    tile: TileWindow | None = None
    gsd_m: float | None = Field(
        default=None, gt=0, description="Ground sample distance, metres per pixel (georeference, --gsd or source)."
    )
    gt_mask: RLEMask | None = Field(default=None, description="Ground-truth change mask (union), if known.")
    gt_changes: list[GroundTruthChange] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What ingestion did: stretch, reprojection...")
    created_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> ImagePair:
        for label, image in (("pre", self.pre), ("post", self.post)):
            if (image.width, image.height) != (self.width, self.height):
                raise ValueError(f"{label} image is {image.width}x{image.height}, pair is {self.width}x{self.height}")
        masks = [self.gt_mask] if self.gt_mask else []
        masks += [c.mask for c in self.gt_changes]
        for m in masks:
            if m.size != (self.height, self.width):
                raise ValueError(f"mask size {m.size} does not match the pair ({self.height}, {self.width})")
        if self.date_pre and self.date_post and self.date_post < self.date_pre:
            raise ValueError(f"date_post {self.date_post} is before date_pre {self.date_pre}")
        return self


class ChangeCandidate(Record):
    """One change proposed by a detector or an agent, before it has a final mask and wording."""

    id: str
    pair_id: str
    change_type: ChangeType
    box: BBox
    grid_cell: str = Field(description="Absolute grid position, e.g. 'top-left', 'center'.")
    category: str | None = None
    area: int = Field(default=0, ge=0, description="Changed pixels inside the box.")
    mask: RLEMask | None = None
    evidence: dict[str, float] = Field(default_factory=dict, description="Measured cues, e.g. colour_delta.")
    scores: dict[str, float] = Field(default_factory=dict, description="Confidences in [0, 1].")
    source: str = Field(default="detector", description="Who proposed it: detector, llm, ground_truth.")


class LLMUsage(Record):
    """Tokens and money spent on a language model for one triplet or run."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    def shared(self, among: int) -> LLMUsage:
        """One of ``among`` equal shares of a call's usage: every target it served counts the call, and the
        tokens and money are divided (whole tokens, rounded down)."""
        among = max(among, 1)
        return LLMUsage(
            calls=self.calls,
            prompt_tokens=self.prompt_tokens // among,
            completion_tokens=self.completion_tokens // among,
            cost_usd=self.cost_usd / among,
        )

    def rounded(self) -> LLMUsage:
        """The same usage with the cost rounded to a millionth of a dollar, as provenance records it."""
        return self.model_copy(update={"cost_usd": round(self.cost_usd, 6)})


class AuditHint(Record):
    """A point or a box an auditor placed on one image of the pair to show the target, in the pair's pixels.

    The audit page's smart tools write them (keypoints and rectangles, in percent of the image); they travel
    with a "needs fix" verdict so that the agent can segment the target again where the auditor showed it.
    """

    date: Literal["pre", "post"] = Field(description="The image it was placed on: pre (earlier, A) or post (later, B).")
    kind: Literal["point", "box"]
    positive: bool = Field(default=True, description="For a point: False marks a place that is NOT the target.")
    point: tuple[int, int] | None = Field(default=None, description="For a point: (x, y) in pixels.")
    box: BBox | None = Field(default=None, description="For a box: the box in pixels.")

    @model_validator(mode="after")
    def _shape_of_kind(self) -> AuditHint:
        if self.kind == "point" and (self.point is None or self.box is not None):
            raise ValueError("a point hint has a point and no box")
        if self.kind == "box" and (self.box is None or self.point is not None):
            raise ValueError("a box hint has a box and no point")
        return self

    def describe(self) -> str:
        """The hint in words, e.g. "a positive point at (120, 88) on the later image"."""
        image = "the later image" if self.date == "post" else "the earlier image"
        if self.box is not None:
            return f"a box ({self.box.x0}, {self.box.y0}) to ({self.box.x1}, {self.box.y1}) on {image}"
        sign = "positive" if self.positive else "negative"
        return f"a {sign} point at {self.point} on {image}"


class AuditRevision(Record):
    """The agent's answer to one "needs fix" audit: a new revision of the triplet, or none because the triplet
    had its revisions and stays with the auditors.

    Revisions are keyed by the audit they answer, as it stood then (``audit_updated_at``): the same annotation
    read again on a later pull is answered already; one the auditor updated since is a new verdict.
    """

    audit_id: str
    audit_updated_at: datetime
    outcome: Literal["revised", "left_with_auditors"]
    comment: str | None = Field(default=None, description="The auditor's comment, shown again on the audit page.")
    hints: list[AuditHint] = Field(default_factory=list, description="The points and boxes the revision used.")
    changed: list[Literal["mask", "expressions", "change_type"]] = Field(
        default_factory=list, description="What the revision changed (empty: the agent found nothing to change)."
    )
    reason: str = Field(default="", description="The agent's reason (the correction step's, or why it stopped).")
    at: datetime = Field(default_factory=utc_now)


class Provenance(Record):
    """How a triplet was made, enough to reproduce or distrust it."""

    backends: dict[str, str] = Field(default_factory=dict, description="Stage -> backend name.")
    model_ids: dict[str, str] = Field(default_factory=dict)
    steps: dict[str, str] = Field(
        default_factory=dict,
        description="LLM step (task) -> the backend that answered it; `offline-fallback` marks a step the model "
        "did not make (its answer was unusable or its endpoint kept failing).",
    )
    prompt_hashes: dict[str, str] = Field(default_factory=dict, description="Prompt file -> sha256.")
    package_versions: dict[str, str] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)
    llm: LLMUsage = Field(default_factory=LLMUsage)
    config_hash: str | None = None
    revisions: list[AuditRevision] = Field(
        default_factory=list,
        description="The agent's answers to auditors' \"needs fix\" verdicts, oldest first (see AuditRevision).",
    )
    created_at: datetime = Field(default_factory=utc_now)


class TripletState(StrEnum):
    """Life cycle of a triplet. See :data:`TRANSITIONS` for the legal moves."""

    DRAFTED = "drafted"
    QUEUED_FOR_AUDIT = "queued_for_audit"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FIXED = "fixed"
    EXPORTED = "exported"


TRANSITIONS: dict[TripletState, frozenset[TripletState]] = {
    TripletState.DRAFTED: frozenset({TripletState.QUEUED_FOR_AUDIT}),
    TripletState.QUEUED_FOR_AUDIT: frozenset({TripletState.ACCEPTED, TripletState.REJECTED, TripletState.FIXED}),
    # A later audit (an auditor changes their mind, a second opinion) supersedes an earlier one until export.
    TripletState.ACCEPTED: frozenset(
        {TripletState.EXPORTED, TripletState.FIXED, TripletState.REJECTED, TripletState.QUEUED_FOR_AUDIT}
    ),
    TripletState.FIXED: frozenset(
        {TripletState.EXPORTED, TripletState.ACCEPTED, TripletState.REJECTED, TripletState.QUEUED_FOR_AUDIT}
    ),
    TripletState.REJECTED: frozenset({TripletState.ACCEPTED, TripletState.FIXED, TripletState.QUEUED_FOR_AUDIT}),
    TripletState.EXPORTED: frozenset(),
}
"""Legal state moves: drafted -> queued_for_audit -> accepted | rejected | fixed -> exported; audited states
may move among themselves and back to the queue while a re-audit changes the verdict."""

DECIDED_STATES = frozenset({TripletState.ACCEPTED, TripletState.REJECTED, TripletState.FIXED, TripletState.EXPORTED})
"""States only a person's audit verdict leads to: such a triplet holds audit work that a removal would lose."""


def check_transition(triplet_id: str, current: TripletState, target: TripletState) -> None:
    """Refuse a state move that :data:`TRANSITIONS` does not allow.

    Raises:
        IllegalTransitionError: naming the triplet, both states and the moves that are allowed.
    """
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final state)"
        raise IllegalTransitionError(
            f"triplet {triplet_id} cannot move from {current.value} to {target.value}.",
            hint=f"from {current.value} the allowed moves are: {allowed}.",
        )


class Triplet(Record):
    """(image pair, referring expressions, target mask): one sample of an MTRS dataset.

    An empty ``mask`` is a no-target expression: the described change did not happen.
    """

    id: str
    pair_id: str
    mask: RLEMask
    expressions: list[str] = Field(min_length=1)
    change_type: ChangeType | None = Field(description="None only for no-target expressions.")
    category: str | None = None
    state: TripletState = TripletState.DRAFTED
    candidate_ids: list[str] = Field(default_factory=list)
    audit_id: str | None = Field(
        default=None, description="The audit record that decided the current state; its edits apply on export."
    )
    uncorrected: bool = Field(default=False, description="Correction loop gave up: never auto-accepted.")
    provenance: Provenance = Field(default_factory=Provenance)
    updated_at: datetime = Field(default_factory=utc_now)

    @field_validator("expressions")
    @classmethod
    def _non_blank(cls, value: list[str]) -> list[str]:
        cleaned = [e.strip() for e in value]
        if any(not e for e in cleaned):
            raise ValueError("expressions must not be blank")
        return cleaned

    @property
    def is_no_target(self) -> bool:
        return self.mask.is_empty

    @property
    def revision(self) -> int:
        """How many times the agent revised this triplet after a "needs fix" audit (0: as first drafted)."""
        return sum(r.outcome == "revised" for r in self.provenance.revisions)

    def has_answered(self, audit: AuditRecord) -> bool:
        """Whether the agent answered ``audit`` as it stands (revised, or left the triplet with the auditors)."""
        return any(r.audit_id == audit.id and r.audit_updated_at >= audit.updated_at for r in self.provenance.revisions)

    def revised_after(self, audit: AuditRecord) -> bool:
        """Whether a revision answered ``audit`` as it stands: the audit judged an earlier revision, so it no
        longer decides this triplet's state."""
        return any(
            r.outcome == "revised" and r.audit_id == audit.id and r.audit_updated_at >= audit.updated_at
            for r in self.provenance.revisions
        )

    def moved_to(self, target: TripletState) -> Triplet:
        """A copy of this triplet in state ``target``.

        Raises:
            IllegalTransitionError: when the state machine forbids the move.
        """
        check_transition(self.id, self.state, target)
        return self.model_copy(update={"state": target, "updated_at": utc_now()})

    def with_edits(self, audit: AuditRecord) -> Triplet:
        """This triplet as the auditor left it: their expressions, mask and change type where they edited.

        Raises:
            ValueError: when the audit belongs to another triplet or its mask has another size.
        """
        if audit.triplet_id != self.id:
            raise ValueError(f"audit {audit.id} is for triplet {audit.triplet_id}, not {self.id}")
        update: dict[str, Any] = {}
        if audit.expressions is not None:
            update["expressions"] = audit.expressions
        if audit.mask is not None:
            if audit.mask.size != self.mask.size:
                raise ValueError(f"audit {audit.id} mask size {audit.mask.size} differs from {self.mask.size}")
            update["mask"] = audit.mask
        if audit.change_type_edited:
            update["change_type"] = audit.change_type
        return self.model_copy(update=update)


def candidate_id(*parts: Any) -> str:
    """Content id of a change candidate from what identifies it (pair id, box, how it was found...): the same
    proposal on the same pair gets the same id on every run."""
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:20]


def triplet_id(pair_id: str, mask: RLEMask, change_type: ChangeType | None, category: str | None) -> str:
    """Content id of a triplet: the same target on the same pair gets the same id on every run."""
    payload = json.dumps(
        [pair_id, list(mask.size), mask.counts, change_type.value if change_type else None, category],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class Verdict(StrEnum):
    """An auditor's decision on a triplet.

    ``accept``: right as proposed. ``fix``: accepted after the auditor's own edits. ``reject``: not a usable
    sample. ``needs_fix``: a real change the auditor could not fix on the page; it stays in the audit queue and
    goes back to the agent, which drafts a new revision from the auditor's comment and hints (up to its
    ``max_rounds``; then it stays with the auditors).
    """

    ACCEPT = "accept"
    REJECT = "reject"
    FIX = "fix"
    NEEDS_FIX = "needs_fix"

    @property
    def resulting_state(self) -> TripletState:
        return {
            Verdict.ACCEPT: TripletState.ACCEPTED,
            Verdict.REJECT: TripletState.REJECTED,
            Verdict.FIX: TripletState.FIXED,
            Verdict.NEEDS_FIX: TripletState.QUEUED_FOR_AUDIT,
        }[self]


class AuditRecord(Record):
    """A human verdict on one triplet, with whatever the auditor edited."""

    id: str = Field(description="Stable id, e.g. the audit backend's annotation id.")
    triplet_id: str
    verdict: Verdict
    expressions: list[str] | None = Field(default=None, description="Edited expressions, when changed.")
    mask: RLEMask | None = Field(default=None, description="Repainted mask, when changed.")
    change_type: ChangeType | None = None
    change_type_edited: bool = Field(default=False, description="True when change_type holds the auditor's edit.")
    comment: str | None = None
    hints: list[AuditHint] = Field(
        default_factory=list, description="Points and boxes the auditor placed to show the target (smart tools)."
    )
    auditor: str
    lead_time_s: float | None = Field(default=None, ge=0)
    backend: Literal["label_studio", "api", "import"] = "label_studio"
    task_id: str | None = Field(default=None, description="The audit backend's task id.")
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


RECORD_TYPES: tuple[type[BaseModel], ...] = (
    ImagePair,
    ChangeCandidate,
    Triplet,
    AuditRecord,
)
"""The records whose JSON schema is published in docs/schema/."""


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of every published record, keyed by record name."""
    return {model.__name__: model.model_json_schema() for model in RECORD_TYPES}
