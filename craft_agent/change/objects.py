"""Object-level change: from an evidence map to changed regions, objects and their change type.

- Binarisation: Otsu on the evidence map with an absolute floor (so a pair without change yields
  nothing rather than its noise), an opening, and a minimum area.
- Objects: each date is over-segmented (Felzenszwalb's graph segmentation); a segment of one date
  that is mostly changed is an object that may exist only in that date. Segments keep neighbouring
  changed objects (a row of new houses) apart where the connected changed region would merge them.
- Change type: an object is "present" in a date when it stands out from its surroundings there
  (colour contrast between the region and a ring around it). Present only later: appear; only
  earlier: disappear; in both, with a different surface: state change.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import felzenszwalb

from craft_agent.grid import position_of_box
from craft_agent.models import BBox, ChangeCandidate, ChangeType, RLEMask, candidate_id


def binarize(evidence: np.ndarray, floor: float, min_area: int) -> tuple[np.ndarray, float]:
    """Changed pixels of an evidence map.

    Returns:
        (bool mask, the threshold used).
    """
    values = evidence[np.isfinite(evidence)]
    otsu = float(threshold_otsu(values)) if values.size and values.max() > values.min() else float("inf")
    threshold = max(otsu, floor)
    opened = cv2.morphologyEx((evidence > threshold).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return remove_small_regions(opened.astype(bool), min_area), threshold


def remove_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop connected components (8-connected) smaller than ``min_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return np.asarray(keep[labels])


def fill_small_holes(mask: np.ndarray, max_hole: int) -> np.ndarray:
    """Fill background components enclosed by the mask that are at most ``max_hole`` pixels."""
    holes = remove_small_regions(~mask, max_hole + 1)
    return np.asarray(mask | ~holes)


@dataclass(frozen=True)
class Region:
    """A changed object proposal, kept as a crop so hundreds of them stay cheap.

    Attributes:
        crop: bool mask of the region's bounding box.
        x0, y0: where the crop sits in the image.
        source: how it was proposed (region, post_segment, pre_segment).
        evidence: mean change evidence inside it.
    """

    crop: np.ndarray
    x0: int
    y0: int
    source: str
    evidence: float

    @cached_property
    def area(self) -> int:
        # Read again and again by duplicate suppression (the hot loop): count the pixels once.
        return int(self.crop.sum())

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive."""
        return self.x0, self.y0, self.x0 + self.crop.shape[1], self.y0 + self.crop.shape[0]


def _regions_from_labels(labels: np.ndarray, chosen: np.ndarray, evidence: np.ndarray, source: str) -> list[Region]:
    """One region per chosen label value (labels start at 1)."""
    regions = []
    slices = ndimage.find_objects(labels)
    for value in chosen:
        window = slices[value - 1]
        if window is None:
            continue
        crop = labels[window] == value
        regions.append(
            Region(
                crop=crop,
                x0=window[1].start,
                y0=window[0].start,
                source=source,
                evidence=float(evidence[window][crop].mean()),
            )
        )
    return regions


def changed_components(changed: np.ndarray, evidence: np.ndarray) -> list[Region]:
    """Each connected changed region as one proposal."""
    count, labels = cv2.connectedComponents(changed.astype(np.uint8), connectivity=8)
    return _regions_from_labels(labels, np.arange(1, count), evidence, "region")


def segment_objects(
    image: np.ndarray,
    changed: np.ndarray,
    evidence: np.ndarray,
    source: str,
    scale: float,
    min_area: int,
    max_area: int,
    changed_fraction: float,
) -> list[Region]:
    """Segments of ``image`` that are mostly changed, as object proposals of that date."""
    segments = felzenszwalb(image, scale=scale, sigma=0.8, min_size=max(min_area // 2, 8)) + 1
    count = int(segments.max()) + 1
    flat = segments.ravel()
    sizes = np.bincount(flat, minlength=count)
    changed_sizes = np.bincount(flat, weights=changed.ravel().astype(np.float64), minlength=count)
    fraction = changed_sizes / np.maximum(sizes, 1)
    chosen = np.nonzero((fraction >= changed_fraction) & (sizes >= min_area) & (sizes <= max_area))[0]
    return _regions_from_labels(segments, chosen[chosen > 0], evidence, source)


def region_iou(a: Region, b: Region) -> float:
    """IoU of two regions, computed on the overlap of their boxes."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0.0
    inter = int(
        np.logical_and(
            a.crop[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0], b.crop[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
        ).sum()
    )
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def suppress_duplicates(regions: list[Region], iou_threshold: float, limit: int) -> list[Region]:
    """Greedy non-maximum suppression: strongest (evidence x sqrt(area)) first, near-duplicates dropped."""
    ranked = sorted(regions, key=lambda r: (r.evidence * np.sqrt(r.area), r.box), reverse=True)
    kept: list[Region] = []
    boxes = np.zeros((limit, 4), dtype=np.int64)
    for region in ranked:
        x0, y0, x1, y1 = region.box
        held = boxes[: len(kept)]
        # only regions whose boxes overlap can overlap: test those, not every kept region
        touching = np.flatnonzero((held[:, 0] < x1) & (x0 < held[:, 2]) & (held[:, 1] < y1) & (y0 < held[:, 3]))
        if all(region_iou(region, kept[index]) < iou_threshold for index in touching):
            boxes[len(kept)] = (x0, y0, x1, y1)
            kept.append(region)
        if len(kept) >= limit:
            break
    return kept


def contrast_with_surroundings(lab: np.ndarray, mask: np.ndarray, ring: int) -> float:
    """Lab distance between the mean colour inside ``mask`` and in a ring of ``ring`` px around it,
    plus the difference in texture (standard deviation of lightness)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    around = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
    if not around.any() or not mask.any():
        return 0.0
    inside_mean = lab[mask].mean(axis=0)
    around_mean = lab[around].mean(axis=0)
    texture = abs(float(lab[..., 0][mask].std()) - float(lab[..., 0][around].std()))
    return float(np.linalg.norm(inside_mean - around_mean)) + texture


def decide_change_type(
    lab_pre: np.ndarray, lab_post: np.ndarray, region: Region, ring: int, ratio: float
) -> tuple[ChangeType, dict[str, float]]:
    """Appear, disappear or state change from how much the region stands out in each date.

    Returns:
        (change type, evidence: contrast before, contrast after, surface change inside the region).
    """
    height, width = lab_pre.shape[:2]
    x0, y0, x1, y1 = region.box
    wx0, wy0 = max(0, x0 - ring - 1), max(0, y0 - ring - 1)
    wx1, wy1 = min(width, x1 + ring + 1), min(height, y1 + ring + 1)
    mask = np.zeros((wy1 - wy0, wx1 - wx0), dtype=bool)
    mask[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = region.crop
    lab_pre = lab_pre[wy0:wy1, wx0:wx1]
    lab_post = lab_post[wy0:wy1, wx0:wx1]
    before = contrast_with_surroundings(lab_pre, mask, ring)
    after = contrast_with_surroundings(lab_post, mask, ring)
    surface = float(np.linalg.norm(lab_pre[mask].mean(axis=0) - lab_post[mask].mean(axis=0)))
    if after >= ratio * before:
        change_type = ChangeType.APPEAR
    elif before >= ratio * after:
        change_type = ChangeType.DISAPPEAR
    else:
        change_type = ChangeType.STATE_CHANGE
    return change_type, {"contrast_before": before, "contrast_after": after, "surface_delta": surface}


def region_candidate(
    region: Region,
    pair_id: str,
    size: tuple[int, int],
    identity: list[object],
    change_type: ChangeType,
    source: str,
    evidence: dict[str, float],
    scores: dict[str, float],
    category: str | None = None,
    grid: tuple[int, int] = (3, 3),
) -> ChangeCandidate:
    """The :class:`ChangeCandidate` of a region: its box, grid cell (``grid`` = rows, cols), area and mask on an
    image of ``size`` = (height, width), with an id hashed from ``identity`` (see
    :func:`~craft_agent.models.candidate_id`)."""
    height, width = size
    x0, y0, x1, y1 = region.box
    return ChangeCandidate(
        id=candidate_id(*identity),
        pair_id=pair_id,
        change_type=change_type,
        box=BBox(x0=x0, y0=y0, x1=x1, y1=y1),
        grid_cell=position_of_box(x0, y0, x1, y1, width, height, grid[0], grid[1]),
        category=category,
        area=region.area,
        mask=RLEMask.from_crop(region.crop, x0, y0, height, width),
        evidence=evidence,
        scores=scores,
        source=source,
    )
