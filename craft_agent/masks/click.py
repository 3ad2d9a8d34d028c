"""Click-to-mask: an auditor's points and box on one date of a pair -> the target's mask on that date.

The auditor's page (``audit ml-backend``) sends the prompts of one image: positive and negative points and/or
a box, in pixels. Two engines answer:

- :class:`ClassicalClickEngine` (no weights): the change between the two dates, measured in a window around
  the prompts, gives the seed (the changed region under the positive points, or in the box); where nothing
  changed under a point (an object the auditor points at that both dates show), a colour region grown from
  the point does. GrabCut then cuts along the image's edges, with the points as hard constraints.
- :class:`SamClickEngine`: segment-anything prompted with the points and box, on the image embedding that
  drafting already cached for this image (``workspace/cache/sam``), so a click costs one prompt decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from craft_agent.change.evidence import EvidenceConfig, change_evidence
from craft_agent.change.objects import fill_small_holes
from craft_agent.masks.base import MaskRequest, MaskScore, Window, mask_iou
from craft_agent.models import AuditHint, BBox, ChangeType

Point = tuple[int, int]


@dataclass(frozen=True)
class ClickPrompt:
    """The prompts placed on one image of a pair, in that image's pixels.

    Attributes:
        date: ``pre`` (the earlier image) or ``post`` (the later one): where the prompts were placed.
        positives / negatives: (x, y) points inside / outside the target.
        box: a box around the target, or None.
    """

    date: str
    positives: tuple[Point, ...] = ()
    negatives: tuple[Point, ...] = ()
    box: BBox | None = None

    def __post_init__(self) -> None:
        if self.date not in ("pre", "post"):
            raise ValueError(f"a click's date is pre or post, not {self.date!r}")
        if not self.positives and self.box is None:
            raise ValueError("a click prompt needs a positive point or a box")

    def extent(self) -> BBox:
        """The box, else the box around the points (at least one pixel)."""
        if self.box is not None:
            return self.box
        xs = [x for x, _ in self.positives]
        ys = [y for _, y in self.positives]
        return BBox(x0=min(xs), y0=min(ys), x1=max(xs) + 1, y1=max(ys) + 1)


def prompt_from_hints(date: str, hints: list[AuditHint], fallback_box: BBox | None = None) -> ClickPrompt | None:
    """The prompt of the ``hints`` placed on ``date``: their positive and negative points and the box around
    their boxes; ``fallback_box`` (else None) when they hold neither a positive point nor a box."""
    marks = [h for h in hints if h.date == date]
    boxes = [h.box for h in marks if h.box is not None]
    box = BBox.enclosing(boxes) if boxes else None
    positives = tuple(h.point for h in marks if h.point is not None and h.positive)
    negatives = tuple(h.point for h in marks if h.point is not None and not h.positive)
    if not positives and box is None:
        box = fallback_box
        if box is None:
            return None
    return ClickPrompt(date=date, positives=positives, negatives=negatives, box=box)


@dataclass
class ClickResult:
    mask: np.ndarray
    """bool (H, W) on the pair's grid."""
    engine: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)


def _bounds(mask: np.ndarray) -> BBox:
    ys, xs = np.nonzero(mask)
    return BBox(x0=int(xs.min()), y0=int(ys.min()), x1=int(xs.max()) + 1, y1=int(ys.max()) + 1)


def _grow(box: BBox, share: float, least: int, shape: tuple[int, int]) -> BBox:
    """``box`` grown by ``share`` of its size (at least ``least`` px) on each side, within ``shape``."""
    dx, dy = max(least, int(share * box.width)), max(least, int(share * box.height))
    return BBox(
        x0=max(0, box.x0 - dx), y0=max(0, box.y0 - dy), x1=min(shape[1], box.x1 + dx), y1=min(shape[0], box.y1 + dy)
    )


def _inside(shape: tuple[int, int], box: BBox) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box.y0 : box.y1, box.x0 : box.x1] = True
    return mask


def _disk(shape: tuple[int, int], points: tuple[Point, ...], radius: int) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    for x, y in points:
        cv2.circle(canvas, (int(x), int(y)), radius, 1, -1)
    return canvas.astype(bool)


class ClassicalClickEngine:
    """See the module docstring.

    Args:
        context: share of the image's longer side looked at around point prompts (at least ``min_context`` px).
        change_floor: evidence that counts as changed at least (1.0 is a full change; see
            :func:`craft_agent.change.evidence.change_evidence`).
        colour_tolerance: per-channel tolerance of the colour region grown from a point (0-255 scale).
    """

    name = "classical"

    def __init__(
        self,
        context: float = 0.1,
        min_context: int = 48,
        change_floor: float = 0.5,
        colour_tolerance: int = 14,
        iterations: int = 3,
        max_side: int = 256,
    ) -> None:
        self.context = context
        self.min_context = min_context
        self.change_floor = change_floor
        self.colour_tolerance = colour_tolerance
        self.iterations = iterations
        self.max_side = max_side
        self.evidence = EvidenceConfig()

    def window(self, prompt: ClickPrompt, width: int, height: int) -> Window:
        extent = prompt.extent()
        if prompt.box is not None:
            margin = max(8, int(0.25 * max(extent.width, extent.height)))
        else:
            margin = max(self.min_context, int(self.context * max(width, height)))
        return Window.around(extent, margin, width, height)

    def segment(self, image: np.ndarray, other: np.ndarray, prompt: ClickPrompt) -> ClickResult:
        """The target under the prompts on ``image`` (the clicked date), ``other`` the other date."""
        height, width = image.shape[:2]
        window = self.window(prompt, width, height)
        crop = np.ascontiguousarray(image[window.slices])
        other_crop = np.ascontiguousarray(other[window.slices])
        positives = tuple((x - window.x0, y - window.y0) for x, y in prompt.positives)
        negatives = tuple((x - window.x0, y - window.y0) for x, y in prompt.negatives)
        shape = (crop.shape[0], crop.shape[1])
        if prompt.box is not None:
            box, source = window.local_box(prompt.box), "box"
            region = np.zeros(shape, bool)
            region[box.y0 : box.y1, box.x0 : box.x1] = True
        else:
            region, source = self._region(crop, other_crop, positives, negatives)
            box = _grow(_bounds(region), 0.3, 3, shape)
        cut = self._cut(crop, box, positives, negatives)
        keep = self._keep(cut, positives, box)
        if keep.sum() < 0.25 * (region & _inside(shape, box)).sum():
            # GrabCut lost the target (too little background to learn from, or no contrast): the region the
            # evidence gave is the better answer.
            keep, source = region & _inside(shape, box), source + "-kept"
        keep = fill_small_holes(keep, max(16, int(0.002 * shape[0] * shape[1])))
        full = np.zeros((height, width), bool)
        full[window.slices] = keep
        return ClickResult(full, self.name, round(mask_iou(keep, region), 4), {"seed": source})

    def _region(
        self, crop: np.ndarray, other: np.ndarray, positives: tuple[Point, ...], negatives: tuple[Point, ...]
    ) -> tuple[np.ndarray, str]:
        """Where the pointed-at target roughly is: the changed region under the points when the change is
        local (it ends inside the window), else the colour region grown from the points, else a small disk."""
        shape = crop.shape[:2]
        evidence = change_evidence(other, crop, self.evidence)
        scaled = np.clip(evidence * 64, 0, 255).astype(np.uint8)
        otsu = float(cv2.threshold(scaled, 0, 255, cv2.THRESH_OTSU)[0]) / 64
        changed = evidence > max(otsu, self.change_floor)
        _, labels = cv2.connectedComponents(changed.astype(np.uint8), connectivity=8)
        chosen = {int(labels[y, x]) for x, y in positives if labels[y, x]} - {int(labels[y, x]) for x, y in negatives}
        if chosen:
            region = np.isin(labels, sorted(chosen))
            border = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
            if not border.any() and region.mean() < 0.5:
                return region, "change"
        grown = np.zeros(shape, bool)
        blurred = cv2.GaussianBlur(crop, (0, 0), 1.0)
        tolerance = (self.colour_tolerance,) * 3
        for x, y in positives:
            flood = np.zeros((shape[0] + 2, shape[1] + 2), np.uint8)
            flags = 8 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
            cv2.floodFill(blurred.copy(), flood, (int(x), int(y)), (0, 0, 0), tolerance, tolerance, flags)
            grown |= flood[1:-1, 1:-1] > 0
        if grown.any() and grown.mean() < 0.5:
            return grown, "colour"
        return _disk(shape, positives, max(4, min(shape) // 8)), "point"

    def _cut(
        self, crop: np.ndarray, box: BBox, positives: tuple[Point, ...], negatives: tuple[Point, ...]
    ) -> np.ndarray:
        """GrabCut initialised with the box (inside: probably the target; outside: background), the points
        as hard constraints."""
        shape = crop.shape[:2]
        labels = np.full(shape, cv2.GC_BGD, np.uint8)
        labels[box.y0 : box.y1, box.x0 : box.x1] = cv2.GC_PR_FGD
        labels[_disk(shape, positives, 2)] = cv2.GC_FGD
        labels[_disk(shape, negatives, 2)] = cv2.GC_BGD
        if not (labels == cv2.GC_BGD).any():
            labels[[0, -1], :] = cv2.GC_BGD  # a box over the whole window: its rim is the background sample
            labels[:, [0, -1]] = cv2.GC_BGD
        image = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        scale = min(1.0, self.max_side / max(shape))
        if scale < 1.0:
            size = (max(8, round(shape[1] * scale)), max(8, round(shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            labels = np.ascontiguousarray(cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST), dtype=np.uint8)
        cv2.setRNGSeed(0)  # GrabCut's k-means: the same prompts give the same mask
        try:
            cv2.grabCut(  # type: ignore[call-overload]
                image, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), self.iterations, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error:
            return _inside(shape, box)
        cut = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            cut = cv2.resize(cut, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        return cut.astype(bool)

    @staticmethod
    def _keep(cut: np.ndarray, positives: tuple[Point, ...], box: BBox | None) -> np.ndarray:
        """The cut's components under the positive points; without points, its largest one in the box."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(cut.astype(np.uint8), connectivity=8)
        if count <= 1:
            return cut
        if positives:
            ids = {int(labels[y, x]) for x, y in positives if labels[y, x]}
            if ids:
                return np.isin(labels, sorted(ids))
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        return np.asarray(labels == largest)


class SamClickEngine:
    """Segment-anything on the clicked date, through a :class:`~craft_agent.masks.sam.SamMaskEngine` (and its
    embedding cache): the prompts are the points, and the box when one was drawn."""

    name = "sam"

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def segment(
        self, image: np.ndarray, other: np.ndarray, prompt: ClickPrompt, image_key: str, other_key: str
    ) -> ClickResult:
        pre, post = (other, image) if prompt.date == "post" else (image, other)
        pre_key, post_key = (other_key, image_key) if prompt.date == "post" else (image_key, other_key)
        request = MaskRequest(
            pre=pre,
            post=post,
            pre_key=pre_key,
            post_key=post_key,
            change_type=ChangeType.APPEAR if prompt.date == "post" else ChangeType.DISAPPEAR,
            box=prompt.extent(),
            positive_points=list(prompt.positives),
            negative_points=list(prompt.negatives),
            box_is_prompt=prompt.box is not None,
        )
        result = self.engine.segment(request)
        runs = self.engine.encoder_runs
        return ClickResult(
            result.mask.to_array() > 0,
            self.name,
            float(result.scores.get(MaskScore.PREDICTED_IOU, 0.0)),
            {"encoder_runs": runs},
        )


def segment_prompt(
    engine: ClassicalClickEngine | SamClickEngine,
    pre: np.ndarray,
    post: np.ndarray,
    pre_key: str,
    post_key: str,
    prompt: ClickPrompt,
) -> ClickResult:
    """``prompt`` segmented by ``engine`` on the date it was placed on, the other date as context (SAM also
    takes the images' content keys, its embedding cache keys)."""
    image, other = (post, pre) if prompt.date == "post" else (pre, post)
    if isinstance(engine, SamClickEngine):
        keys = (post_key, pre_key) if prompt.date == "post" else (pre_key, post_key)
        return engine.segment(image, other, prompt, *keys)
    return engine.segment(image, other, prompt)
