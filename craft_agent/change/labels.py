"""Label-guided proposals: the change labels a pair already carries, as change candidates.

Most MTRS data is built on change-detection datasets that come with labels. When a pair has them, they are
the truth about *where* things changed, and the agent's job is typing, categorising, locating and wording.
Three kinds of labels, as ingestion stores them on the pair:

- per-change masks (a manifest's ``changes``, an imported MTRefSeg layout): one candidate each, as they are;
- semantic transitions (``label: semantic``: one known change per (class before, class after), from
  land-cover label maps): split into objects, typed and categorised by the class table;
- a binary change mask: split into objects; the type is measured on the images, the category is what the
  mask marks when the user or the dataset says (``ingest --label-category building``), else left to the agent.

Each candidate's mask is the label's own, so it is exact; ``evidence["labelled"]`` is 1 and
``evidence["label_typed"]`` says whether the type came from the labels.
"""

from __future__ import annotations

import math

import numpy as np

from craft_agent.change.evidence import to_lab
from craft_agent.change.instances import split_instances
from craft_agent.change.objects import Region, decide_change_type, region_candidate
from craft_agent.masks import MaskEngine, MaskRequest
from craft_agent.models import ChangeCandidate, ChangeType, ImagePair

MIN_OBJECT_M2 = 4.0
"""Smallest object kept from a label when the ground sample distance is known: about a small car (m²)."""

MIN_OBJECT_PX = 16
"""Smallest object kept, in pixels, whatever the ground sample distance: below it a label is a speck."""

TYPE_RING_PX = 4
TYPE_RATIO = 1.6


def has_change_labels(pair: ImagePair) -> bool:
    """Whether the pair carries change labels (a change mask or known changes), even an empty mask."""
    return pair.gt_mask is not None or bool(pair.gt_changes)


def min_object_px(pair: ImagePair) -> int:
    """The smallest object in pixels for this pair: :data:`MIN_OBJECT_M2` at its ground sample distance."""
    if pair.gsd_m:
        return max(MIN_OBJECT_PX, math.ceil(MIN_OBJECT_M2 / (pair.gsd_m * pair.gsd_m)))
    return MIN_OBJECT_PX


def label_candidates(
    pair: ImagePair, pre: np.ndarray, post: np.ndarray, grid_rows: int = 3, grid_cols: int = 3
) -> list[ChangeCandidate]:
    """Change candidates from the pair's labels (empty when it has none, or an empty change mask).

    Args:
        pair: the pair with ``gt_changes`` and/or ``gt_mask``.
        pre, post: its RGB images, to measure the type where the labels do not give it.
        grid_rows, grid_cols: the grid whose cell names the candidates' positions.

    Returns:
        One candidate per labelled object, in reading order, each with the label's exact mask.
    """
    lab_pre, lab_post = to_lab(pre), to_lab(post)
    min_area = min_object_px(pair)
    candidates: list[ChangeCandidate] = []

    def add(region: Region, kind: str, change_type: ChangeType | None, category: str | None) -> None:
        cues: dict[str, float] = {}
        if change_type is None:
            change_type, cues = decide_change_type(lab_pre, lab_post, region, TYPE_RING_PX, TYPE_RATIO)
        candidates.append(
            region_candidate(
                region,
                pair.id,
                (pair.height, pair.width),
                [pair.id, region.box, kind, region.area, len(candidates)],
                change_type,
                source=f"labels:{kind}",
                evidence={
                    "labelled": 1.0,
                    "label_typed": 0.0 if cues else 1.0,
                    **{k: round(v, 3) for k, v in cues.items()},
                },
                scores={"confidence": 1.0},
                category=category,
                grid=(grid_rows, grid_cols),
            )
        )

    if pair.gt_changes:
        for change in pair.gt_changes:
            mask = change.mask.to_array()
            kind = change.attributes.get("label")
            if kind in ("semantic", "mask", "typed"):  # label maps and binary masks paint touching objects as one
                for region in split_instances(mask, min_area, source=kind):
                    add(region, kind, change.change_type, change.category)
            elif mask.any():
                ys, xs = np.nonzero(mask)
                y0, x0 = int(ys.min()), int(xs.min())
                crop = mask[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1]
                add(
                    Region(crop=crop, x0=x0, y0=y0, source="change", evidence=1.0),
                    "change",
                    change.change_type,
                    change.category,
                )
    elif pair.gt_mask is not None:
        for region in split_instances(pair.gt_mask.to_array(), min_area, source="mask"):
            add(region, "mask", None, None)
    return candidates


SNAP_MIN_IOU = 0.7
"""A snapped mask replaces its label only while it overlaps the label this much; where the two disagree more,
the engine is following something else (a shadow, a neighbour) and the label is kept."""


def snap_to_image(
    candidates: list[ChangeCandidate], engine: MaskEngine, pair: ImagePair, pre: np.ndarray, post: np.ndarray
) -> list[ChangeCandidate]:
    """Label candidates whose masks the mask engine refined on the right date (``--snap``).

    Each label is the engine's seed and box; the refined mask is kept when its IoU with the label is at least
    :data:`SNAP_MIN_IOU`, else the label stays. ``scores["snap_iou"]`` records the agreement and the source
    says which candidates were snapped (``labels:mask+snap:sam``).
    """
    snapped = []
    for candidate in candidates:
        if candidate.mask is None:
            snapped.append(candidate)
            continue
        request = MaskRequest.for_pair(
            pair, pre, post, candidate.change_type, candidate.box, seed=candidate.mask.to_array()
        )
        result = engine.segment(request)
        agreement = result.mask.iou(candidate.mask)
        update: dict[str, object] = {"scores": {**candidate.scores, "snap_iou": round(agreement, 4)}}
        if agreement >= SNAP_MIN_IOU and not result.mask.is_empty:
            update.update(
                mask=result.mask,
                box=result.mask.bbox() or candidate.box,
                area=result.mask.area,
                source=f"{candidate.source}+snap:{result.engine}",
            )
        snapped.append(candidate.model_copy(update=update))
    return snapped
