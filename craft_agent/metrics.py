"""Metrics, matching the conventions of the published code.

- Pixel metrics of a predicted change mask against a ground-truth mask (F1, IoU), accumulated over a set
  of pairs as micro averages (sum of true positives, false positives and false negatives).
- Object recall: ground-truth change objects are the 8-connected components of the GT mask; one is
  recalled when some candidate mask overlaps it with IoU >= a threshold.
- Candidate precision: share of candidates with at least a quarter of their pixels inside GT change.
- MTRefSeg per-sample IoU: I / (U + 1e-6); both empty -> 1; GT empty but prediction not -> 0.
- Referring segmentation over expressions (:class:`ReferringScores`): MTRefSeg's mIoU (mean per-sample IoU),
  oIoU (sum of intersections over sum of unions) and Pr@0.5..0.9 (share of samples with IoU >= t, empty
  samples included); gRefCOCO's N-acc (empty targets answered with an empty mask) and T-acc (non-empty targets
  answered with a non-empty mask); RSRefSeg2's cIoU / gIoU as the names of oIoU / mIoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from craft_agent.models import RLEMask

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


def gt_objects(target: np.ndarray) -> list[RLEMask]:
    """Ground-truth change objects: 8-connected components of the GT mask, as RLE."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(target.astype(np.uint8), connectivity=8)
    height, width = target.shape
    objects = []
    for index in range(1, count):
        x, y, w, h = (int(v) for v in stats[index, :4])
        objects.append(RLEMask.from_crop(labels[y : y + h, x : x + w] == index, x, y, height, width))
    return objects


def best_ious(objects: Sequence[RLEMask], candidates: Sequence[RLEMask]) -> list[float]:
    """For each object, the best IoU any candidate reaches with it (0.0 when none touches it)."""
    if not objects:
        return []
    if not candidates:
        return [0.0] * len(objects)
    matrix = coco_mask.iou([c.as_coco() for c in candidates], [o.as_coco() for o in objects], [0] * len(objects))
    return [float(v) for v in np.asarray(matrix).reshape(len(candidates), len(objects)).max(axis=0)]


def inside_fractions(candidates: Sequence[RLEMask], target: RLEMask) -> list[float]:
    """Share of each candidate's pixels that lie inside ``target`` (COCO's crowd IoU is exactly that)."""
    if not candidates:
        return []
    matrix = coco_mask.iou([c.as_coco() for c in candidates], [target.as_coco()], [1])
    return [float(v) for v in np.asarray(matrix).reshape(len(candidates))]


@dataclass
class ObjectCounts:
    """Accumulated object recall and candidate precision over pairs."""

    thresholds: tuple[float, ...] = (0.25, 0.5)
    objects: int = 0
    recalled: dict[float, int] = field(default_factory=dict)
    candidates: int = 0
    candidate_hits: int = 0

    def add(self, target: np.ndarray, candidate_masks: Sequence[RLEMask]) -> None:
        ious = best_ious(gt_objects(target), candidate_masks)
        self.objects += len(ious)
        for threshold in self.thresholds:
            self.recalled[threshold] = self.recalled.get(threshold, 0) + sum(iou >= threshold for iou in ious)
        self.candidates += len(candidate_masks)
        fractions = inside_fractions(candidate_masks, RLEMask.from_array(target))
        self.candidate_hits += sum(f >= CANDIDATE_HIT_FRACTION for f in fractions)

    def recall(self, threshold: float) -> float:
        return self.recalled.get(threshold, 0) / self.objects if self.objects else 1.0

    @property
    def precision(self) -> float:
        return self.candidate_hits / self.candidates if self.candidates else 1.0


PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class ReferringScores:
    """Accumulated referring-segmentation scores, one :meth:`add` per (expression, predicted mask)."""

    ious: list[float] = field(default_factory=list)
    pixels: PixelCounts = field(default_factory=PixelCounts)
    """Summed over every sample: oIoU is their IoU."""
    empty_targets: int = 0
    empty_answered_empty: int = 0
    targets: int = 0
    targets_answered: int = 0

    def add(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """Score one prediction (boolean masks of one shape); returns its IoU."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
        prediction, target = prediction.astype(bool), target.astype(bool)
        iou = sample_iou(prediction, target)
        self.ious.append(iou)
        self.pixels.add(prediction, target)
        if target.any():
            self.targets += 1
            self.targets_answered += bool(prediction.any())
        else:
            self.empty_targets += 1
            self.empty_answered_empty += not prediction.any()
        return iou

    @property
    def miou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else 0.0

    @property
    def oiou(self) -> float:
        """Sum of intersections over sum of unions (1.0 when every mask, predicted and true, is empty)."""
        if not self.ious:
            return 0.0
        return self.pixels.iou

    def precision_at(self, threshold: float) -> float:
        return sum(iou >= threshold for iou in self.ious) / len(self.ious) if self.ious else 0.0

    @property
    def n_acc(self) -> float | None:
        """gRefCOCO's N-acc: empty targets answered with an empty mask (None without empty targets)."""
        return self.empty_answered_empty / self.empty_targets if self.empty_targets else None

    @property
    def t_acc(self) -> float | None:
        """gRefCOCO's T-acc: non-empty targets answered with a non-empty mask (None without such targets)."""
        return self.targets_answered / self.targets if self.targets else None

    def as_json(self) -> dict[str, object]:
        return {
            "samples": len(self.ious),
            "miou": round(self.miou, 6),
            "oiou": round(self.oiou, 6),
            "precision_at": {f"{t:.1f}": round(self.precision_at(t), 6) for t in PRECISION_THRESHOLDS},
            "n_acc": None if self.n_acc is None else round(self.n_acc, 6),
            "t_acc": None if self.t_acc is None else round(self.t_acc, 6),
            "ciou": round(self.oiou, 6),
            "giou": round(self.miou, 6),
        }
