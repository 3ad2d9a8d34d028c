"""Metrics, matching the conventions of the published code.

- Pixel metrics of a predicted change mask against a ground-truth mask (F1, IoU), accumulated over a set
  of pairs as micro averages (sum of true positives, false positives and false negatives).
- Object recall: ground-truth change objects are the 8-connected components of the GT mask; one is
  recalled when some candidate mask overlaps it with IoU >= a threshold.
- Candidate precision: share of candidates with at least a quarter of their pixels inside GT change.
- MTRefSeg per-sample IoU: I / (U + 1e-6); both empty -> 1; GT empty but prediction not -> 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

CANDIDATE_HIT_FRACTION = 0.25
"""A candidate counts as a hit when at least this share of its pixels lies inside GT change."""


def sample_iou(prediction: np.ndarray, target: np.ndarray) -> float:
    """MTRefSeg's per-sample IoU (both empty -> 1.0; empty target, non-empty prediction -> 0.0)."""
    union = int(np.logical_or(prediction, target).sum())
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, target).sum()) / (union + 1e-6)


@dataclass
class PixelCounts:
    """Accumulated pixel confusion counts; ``f1`` and ``iou`` are micro averages over what was added."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        self.tp += int(np.logical_and(prediction, target).sum())
        self.fp += int(np.logical_and(prediction, ~target).sum())
        self.fn += int(np.logical_and(~prediction, target).sum())

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    @property
    def iou(self) -> float:
        denominator = self.tp + self.fp + self.fn
        return self.tp / denominator if denominator else 1.0


def gt_objects(target: np.ndarray) -> list[np.ndarray]:
    """Ground-truth change objects: 8-connected components of the GT mask."""
    count, labels = cv2.connectedComponents(target.astype(np.uint8), connectivity=8)
    return [labels == index for index in range(1, count)]


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def best_ious(objects: Sequence[np.ndarray], candidates: Sequence[np.ndarray]) -> list[float]:
    """For each object, the best IoU any candidate reaches with it (0.0 when none touches it)."""
    candidate_boxes = [_box(c) for c in candidates]
    result = []
    for obj in objects:
        obj_box = _box(obj)
        best = 0.0
        if obj_box is not None:
            for candidate, box in zip(candidates, candidate_boxes, strict=True):
                if box is None or box[0] >= obj_box[1] or obj_box[0] >= box[1]:
                    continue
                if box[2] >= obj_box[3] or obj_box[2] >= box[3]:
                    continue
                best = max(best, sample_iou(candidate, obj))
        result.append(best)
    return result


@dataclass
class ObjectCounts:
    """Accumulated object recall and candidate precision over pairs."""

    thresholds: tuple[float, ...] = (0.25, 0.5)
    objects: int = 0
    recalled: dict[float, int] = field(default_factory=dict)
    candidates: int = 0
    candidate_hits: int = 0

    def add(self, target: np.ndarray, candidate_masks: Sequence[np.ndarray]) -> None:
        ious = best_ious(gt_objects(target), candidate_masks)
        self.objects += len(ious)
        for threshold in self.thresholds:
            self.recalled[threshold] = self.recalled.get(threshold, 0) + sum(iou >= threshold for iou in ious)
        self.candidates += len(candidate_masks)
        for mask in candidate_masks:
            area = int(mask.sum())
            if area and np.logical_and(mask, target).sum() >= CANDIDATE_HIT_FRACTION * area:
                self.candidate_hits += 1

    def recall(self, threshold: float) -> float:
        return self.recalled.get(threshold, 0) / self.objects if self.objects else 1.0

    @property
    def precision(self) -> float:
        return self.candidate_hits / self.candidates if self.candidates else 1.0
