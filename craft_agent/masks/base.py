"""What every mask engine takes and returns, and the post-processing they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from craft_agent.change.objects import fill_small_holes, remove_small_regions
from craft_agent.models import BBox, ChangeCandidate, ChangeType, ImagePair, RLEMask


@dataclass
class MaskRequest:
    """One target to segment in one pair.

    Attributes:
        pre / post: the pair's RGB uint8 images.
        pre_key / post_key: content hashes of the two images (embedding cache keys).
        change_type: decides the date: later image for appear, earlier for disappear, both for a state change.
        box: prompt box in pixels.
        seed: bool (H, W) rough mask of the target (the detector's region), or None.
        positive_points / negative_points: (x, y) pixel prompts inside / outside the target.
        seed_follows_edges: the seed is already an image segment (its outline follows image edges), so
            an edge-snapping refinement has nothing to add.
        box_is_prompt: the box is a prompt (False: it only says where the points are, e.g. an auditor's
            click without a box, and prompt-based engines leave it out).
    """

    pre: np.ndarray
    post: np.ndarray
    pre_key: str
    post_key: str
    change_type: ChangeType
    box: BBox
    seed: np.ndarray | None = None
    positive_points: list[tuple[int, int]] = field(default_factory=list)
    negative_points: list[tuple[int, int]] = field(default_factory=list)
    seed_follows_edges: bool = False
    box_is_prompt: bool = True

    @classmethod
    def for_pair(
        cls,
        pair: ImagePair,
        pre: np.ndarray,
        post: np.ndarray,
        change_type: ChangeType,
        box: BBox,
        seed: np.ndarray | None = None,
        positive_points: list[tuple[int, int]] | None = None,
        negative_points: list[tuple[int, int]] | None = None,
    ) -> MaskRequest:
        """A request on a catalogued pair (its images' content hashes are the embedding cache keys)."""
        return cls(
            pre=pre,
            post=post,
            pre_key=pair.pre.sha256,
            post_key=pair.post.sha256,
            change_type=change_type,
            box=box,
            seed=seed,
            positive_points=list(positive_points or []),
            negative_points=list(negative_points or []),
        )

    @property
    def dates(self) -> list[str]:
        """Which images the target is visible on."""
        if self.change_type is ChangeType.APPEAR:
            return ["post"]
        if self.change_type is ChangeType.DISAPPEAR:
            return ["pre"]
        return ["pre", "post"]

    def image(self, date: str) -> np.ndarray:
        return self.post if date == "post" else self.pre

    def key(self, date: str) -> str:
        return self.post_key if date == "post" else self.pre_key


class MaskScore(StrEnum):
    """The scores, in [0, 1], an engine gives a mask: one spelling, kept as is by every record that carries them
    (:class:`MaskResult`, a candidate's and a target's ``scores``, beside the detector's ``confidence``)."""

    AGREEMENT = "mask_agreement"
    """IoU of the mask with its seed (the detected region, or the box) where the engine worked."""
    STABILITY = "mask_stability"
    """Classical engine: IoU between the cut and the seed it started from (1.0 when the seed was kept)."""
    PREDICTED_IOU = "mask_predicted_iou"
    """SAM: the model's own estimate of the mask's IoU (the lowest over the dates used)."""


@dataclass
class MaskResult:
    """A segmented target: the mask (COCO RLE on the pair's grid), the engine, the dates used, and its scores
    (:class:`MaskScore` names)."""

    mask: RLEMask
    engine: str
    dates: list[str]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """The part of the image an engine works on (x0, y0 inclusive; x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def around(cls, box: BBox, margin: int, width: int, height: int) -> Window:
        return cls(
            max(0, box.x0 - margin), max(0, box.y0 - margin), min(width, box.x1 + margin), min(height, box.y1 + margin)
        )

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def local_box(self, box: BBox) -> BBox:
        """``box`` in the window's coordinates."""
        return BBox(x0=box.x0 - self.x0, y0=box.y0 - self.y0, x1=box.x1 - self.x0, y1=box.y1 - self.y0)

    def to_rle(self, crop: np.ndarray, height: int, width: int) -> RLEMask:
        return RLEMask.from_crop(crop, self.x0, self.y0, height, width)


def request_for_candidate(
    candidate: ChangeCandidate,
    pre: np.ndarray,
    post: np.ndarray,
    pre_key: str,
    post_key: str,
    negatives: int = 4,
) -> MaskRequest:
    """Prompts for a detector candidate: its box, its region as seed, a positive point at the region's
    most interior pixel, and negative points in the box corners that lie outside the region."""
    seed = candidate.mask.to_array() if candidate.mask is not None else None
    box = candidate.box
    positives: list[tuple[int, int]] = []
    negative_points: list[tuple[int, int]] = []
    if seed is not None and seed.any():
        crop = seed[box.y0 : box.y1, box.x0 : box.x1].astype(np.uint8)
        distance = cv2.distanceTransform(np.pad(crop, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        positives.append((box.x0 + int(x), box.y0 + int(y)))
        corners = [(box.x0, box.y0), (box.x1 - 1, box.y0), (box.x0, box.y1 - 1), (box.x1 - 1, box.y1 - 1)]
        negative_points = [(x, y) for x, y in corners if not seed[y, x]][:negatives]
    return MaskRequest(
        pre=pre,
        post=post,
        pre_key=pre_key,
        post_key=post_key,
        change_type=candidate.change_type,
        box=box,
        seed=seed,
        positive_points=positives,
        negative_points=negative_points,
        seed_follows_edges=candidate.source.endswith("_segment"),
    )


def clean_mask(mask: np.ndarray, min_area: int, max_hole: int) -> np.ndarray:
    """Shared post-processing: drop components smaller than ``min_area``, fill holes up to ``max_hole``.

    Works on the mask's bounding box (plus a one-pixel background border, so the outside stays one
    large background component and is never taken for a hole): cheap for small targets in large images.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return mask.copy()
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.pad(mask[y0:y1, x0:x1], 1)
    cleaned = fill_small_holes(remove_small_regions(crop, min_area), max_hole)[1:-1, 1:-1]
    result = np.zeros_like(mask)
    result[y0:y1, x0:x1] = cleaned
    return result


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of one shape; 0 when both are empty."""
    union = int(np.logical_or(a, b).sum())
    return float(np.logical_and(a, b).sum()) / union if union else 0.0


def agreement(mask: np.ndarray, seed: np.ndarray | None, box: BBox) -> float:
    """IoU between the mask and the seed (the change map's region) inside the prompt box (all three in
    the same coordinates, e.g. a window's)."""
    if seed is None:
        return 0.0
    window = (slice(box.y0, box.y1), slice(box.x0, box.x1))
    return mask_iou(mask[window], seed[window])


def combine_dates(masks: list[np.ndarray]) -> np.ndarray:
    """One mask from per-date masks of a state change: where both agree, unless they barely overlap,
    in which case the union (the surface that changed is visible in either)."""
    if len(masks) == 1:
        return masks[0]
    both = np.logical_and.reduce(masks)
    either = np.logical_or.reduce(masks)
    return both if both.sum() >= 0.5 * either.sum() else either
