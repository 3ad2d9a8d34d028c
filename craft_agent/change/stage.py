"""The candidates stage: every ingested pair -> change candidates with refined masks, in the catalog.

Resumable and idempotent: pairs that already have candidates are skipped, candidate ids are
deterministic, and one pair that fails is recorded with its reason while the rest goes on.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, Field

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change import create_detector, detector_gsd
from craft_agent.change.labels import has_change_labels, label_candidates, snap_to_image
from craft_agent.change.scale import beyond_resolution
from craft_agent.errors import ConfigError
from craft_agent.masks import MaskEngine, segment_candidates
from craft_agent.metrics import inside_fractions
from craft_agent.models import ChangeCandidate, ImagePair, RLEMask
from craft_agent.runs import Failure, ProgressCallback, StageRun


class CandidateSummary(BaseModel):
    """What a candidates run did; ``to_json()`` is the CLI's ``--json`` output."""

    pairs: int = 0
    skipped: int = 0
    candidates: int = 0
    confident: int = 0
    failed: list[Failure] = Field(default_factory=list)
    by_type: dict[str, int] = Field(default_factory=dict)
    by_mode: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    run_id: str = ""
    beyond_model_resolution: dict[str, float] = Field(default_factory=dict)
    """Pairs (name -> m per pixel) the learned detector saw at their own resolution, too far from its checkpoint's
    (``model_gsd_m``) to resample (:func:`~craft_agent.change.scale.beyond_resolution`)."""
    model_gsd_m: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "skipped": self.skipped,
            "candidates": self.candidates,
            "confident": self.confident,
            "by_type": dict(sorted(self.by_type.items())),
            "pairs_by_proposals": dict(sorted(self.by_mode.items())),
            "failed": [f.as_dict() for f in self.failed],
            "beyond_model_resolution": dict(sorted(self.beyond_model_resolution.items())),
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
        }


def refine(candidate: ChangeCandidate, result_mask: Any, scores: dict[str, float], engine: str) -> ChangeCandidate:
    """The candidate with the engine's mask, the box of that mask and the engine's scores added (under their
    :class:`~craft_agent.masks.base.MaskScore` names)."""
    box = result_mask.bbox() or candidate.box
    return candidate.model_copy(
        update={
            "mask": result_mask,
            "box": box,
            "area": result_mask.area,
            "scores": {**candidate.scores, **scores},
            "source": f"{candidate.source}+{engine}",
        }
    )


PROPOSAL_MODES = ("auto", "labels", "detector")
"""Where candidates come from: the pair's change labels, a change detector, or labels when the pair has them."""


def proposal_mode(requested: str, pair: ImagePair) -> str:
    """``labels`` or ``detector`` for this pair under the ``requested`` mode (auto: labels when it has them).

    Raises:
        ConfigError: for an unknown mode, or ``labels`` on a pair that has no change labels.
    """
    if requested not in PROPOSAL_MODES:
        raise ConfigError(f"unknown proposal mode {requested!r}.", hint=f"choose one of: {', '.join(PROPOSAL_MODES)}.")
    if requested == "auto":
        return "labels" if has_change_labels(pair) else "detector"
    if requested == "labels" and not has_change_labels(pair):
        raise ConfigError(
            f"pair {pair.name} has no change labels (no change mask, label maps or known changes).",
            hint="use --proposals auto (labels where a pair has them, the detector elsewhere) or --proposals detector.",
        )
    return requested


def is_from_mode(candidate: ChangeCandidate, mode: str, detector_name: str) -> bool:
    """Whether a stored candidate was proposed in ``mode`` (labels, or detector by ``detector_name``)."""
    return candidate.source.startswith("labels:" if mode == "labels" else f"{detector_name}:")


def evidence_rank(candidate: ChangeCandidate) -> tuple[float, float, float, str]:
    """Sort key, strongest evidence first, for choosing which detections an auditor sees.

    A whole changed region (the change map itself says so) comes before a segment, a confident detection before
    a tentative one (admitted below the pixel threshold); then larger changes before smaller ones, weighed by
    the detector's confidence. Measured on generated scenes, the classical detector's confidence alone ranks
    true changes above false alarms barely better than chance (AUC 0.66), the area much better (0.93), and 33 of
    its 41 kept whole regions were real against 10 of 180 segments.
    """
    whole_region = candidate.source.split(":", 1)[-1].startswith("region")
    confidence = float(candidate.scores.get("confidence", 0.0))
    return (-float(whole_region), -float(confidence > 0), -candidate.area * (0.5 + confidence), candidate.id)


PART_OVERLAP = 0.3
"""A detection with this share of its pixels inside a stronger one is a part of the same change."""


FRINGE_SHARE = 0.6
"""A smaller detection with this share of its pixels in the band just outside a stronger one is that change's
edge or shadow (a repainted roof's outline, the shadow a new house casts), not a change of its own."""
FRINGE_WIDTH = 0.15
"""Width of that band: this share of the side of a square as large as the stronger change (5 px around a
32 x 32 px roof), at least 2 px."""


def fringe_share(candidate: ChangeCandidate, stronger: ChangeCandidate) -> float:
    """Share of ``candidate``'s pixels in the band around ``stronger`` (see :data:`FRINGE_WIDTH`); 0 without
    masks or when the band does not reach it."""
    if candidate.mask is None or stronger.mask is None or candidate.mask.is_empty:
        return 0.0
    width = max(2, round(FRINGE_WIDTH * stronger.mask.area**0.5))
    height, image_width = stronger.mask.size
    window = candidate.box.grown(width + 1).clipped(image_width, height)
    if not window.overlaps(stronger.box):
        return 0.0
    rows, columns = window.slices()
    other = stronger.mask.to_array()[rows, columns].astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    band = cv2.dilate(other, kernel).astype(bool) & ~other.astype(bool)
    own = candidate.mask.to_array()[rows, columns]
    return float((own & band).sum() / max(int(own.sum()), 1))


DISTINCT_EVIDENCE = 2.0
"""A part that changed this many times as much as the change around it (mean evidence) is another object: a
sign put up in front of a repainted wall changes the pixels it covers far more than the new paint does."""


def _stands_out_within(candidate: ChangeCandidate, around: list[ChangeCandidate]) -> bool:
    """Whether ``candidate`` changed :data:`DISTINCT_EVIDENCE` times as much as every change ``around`` it
    (False where a detector gives no mean evidence)."""
    own = candidate.evidence.get("mean_evidence")
    others = [k.evidence.get("mean_evidence") for k in around]
    if own is None or any(o is None for o in others):
        return False
    return all(own >= DISTINCT_EVIDENCE * float(o) for o in others if o is not None)


def without_parts(ranked: list[ChangeCandidate], limit: int | None = None) -> tuple[list[ChangeCandidate], int]:
    """The candidates (strongest first) without those that are mostly a part of a stronger one, the first
    ``limit`` of them (None: all), and how many were left out as parts or fringes.

    Duplicate suppression at IoU 0.5 keeps a segment that covers a third of a changed region: the same change
    twice, which the auditor would see as two triplets. Here a candidate with :data:`PART_OVERLAP` of its pixels
    inside a stronger kept one is dropped (unless it changed far more than they did: another object, see
    :data:`DISTINCT_EVIDENCE`), and so is a smaller one lying along a stronger one's outline
    (:data:`FRINGE_SHARE`): its edge or its shadow, which the review would otherwise take for a thin change.
    """
    kept: list[ChangeCandidate] = []
    left_out = 0
    for candidate in ranked:
        if limit is not None and len(kept) >= limit:
            break
        if candidate.mask is None or not kept:
            kept.append(candidate)
            continue
        touching = [k for k in kept if k.mask is not None and k.box.overlaps(candidate.box)]
        if (
            touching
            and max(inside_fractions([candidate.mask], RLEMask.union([k.mask for k in touching if k.mask])))
            >= PART_OVERLAP
            and not _stands_out_within(candidate, touching)
        ):
            left_out += 1
            continue
        larger = [k for k in kept if k.mask is not None and k.mask.area > candidate.mask.area]
        if any(fringe_share(candidate, k) >= FRINGE_SHARE for k in larger):
            left_out += 1
            continue
        kept.append(candidate)
    return kept, left_out


def detect_candidates(
    detector_name: str,
    engine: MaskEngine,
    pair: ImagePair,
    pre: np.ndarray,
    post: np.ndarray,
    proposals: str = "detector",
    checkpoint: Path | None = None,
    snap: bool = False,
) -> list[ChangeCandidate]:
    """Change candidates of one pair (the candidates stage, for one pair).

    Args:
        detector_name: registered change detector, used in detector mode.
        engine: refines detected candidates' masks (label masks are exact and kept as they are).
        pair, pre, post: the pair and its images.
        proposals: auto, labels or detector (see :func:`proposal_mode`).
        checkpoint: the learned detector's checkpoint, when that detector is chosen.
        snap: refine label masks with ``engine`` on the right date (see :func:`snap_to_image`).

    Raises:
        ConfigError: as :func:`proposal_mode`, or for an unknown detector.
    """
    if proposal_mode(proposals, pair) == "labels":
        labelled = label_candidates(pair, pre, post)
        return snap_to_image(labelled, engine, pair, pre, post) if snap else labelled
    detector = create_detector(detector_name, pair.domain, checkpoint=checkpoint)
    result = detector.detect(pair.id, pre, post, gsd_m=pair.gsd_m)
    masks = segment_candidates(engine, result.candidates, pre, post, pair.pre.sha256, pair.post.sha256)
    return [refine(c, m.mask, m.scores, m.engine) for c, m in zip(result.candidates, masks, strict=True)]


def propose_candidates(
    catalog: Catalog,
    store: ImageStore,
    engine: MaskEngine,
    detector_name: str = "classical",
    redo: bool = False,
    progress: ProgressCallback | None = None,
    proposals: str = "auto",
    checkpoint: Path | None = None,
    snap: bool = False,
) -> CandidateSummary:
    """Detect and segment changes for every pair of the catalog.

    Args:
        catalog: pairs are read from it and candidates written to it.
        store: the workspace image store.
        engine: the mask engine refining each candidate.
        detector_name: registered change detector.
        redo: also process pairs that already have candidates (new ids are added, old ones kept).
        progress: optional callback (done, total, pair name).
        proposals: auto, labels or detector (see :func:`proposal_mode`); recorded on each candidate's source.
        checkpoint: the learned detector's checkpoint.
        snap: refine label masks with the mask engine (see :func:`snap_to_image`).
    """
    summary = CandidateSummary(model_gsd_m=detector_gsd(detector_name, checkpoint))
    config = {"detector": detector_name, "masks": engine.name, "proposals": proposals}
    with StageRun(catalog, "candidates", config, summary, progress) as run:
        for pair in run.items(catalog.iter_pairs(), name=lambda pair: pair.name):
            work = functools.partial(
                candidates_of_pair, catalog, store, engine, pair, detector_name, redo, proposals, checkpoint, snap
            )
            outcome = run.attempt(pair.name, work)
            if outcome is None:
                continue
            mode, refined = outcome
            if refined is None:
                summary.skipped += 1
                continue
            summary.candidates += catalog.add_candidates(refined)
            summary.pairs += 1
            summary.by_mode[mode] = summary.by_mode.get(mode, 0) + 1
            if mode == "detector" and pair.gsd_m and beyond_resolution(pair.gsd_m, summary.model_gsd_m):
                summary.beyond_model_resolution[pair.name] = pair.gsd_m
            for candidate in refined:
                summary.by_type[candidate.change_type.value] = summary.by_type.get(candidate.change_type.value, 0) + 1
                summary.confident += candidate.scores.get("confidence", 0.0) > 0
    return summary


def candidates_of_pair(
    catalog: Catalog,
    store: ImageStore,
    engine: MaskEngine,
    pair: ImagePair,
    detector_name: str = "classical",
    redo: bool = False,
    proposals: str = "auto",
    checkpoint: Path | None = None,
    snap: bool = False,
) -> tuple[str, list[ChangeCandidate] | None]:
    """One pair's proposal mode and its candidates, detected and segmented now; None for the candidates when
    the pair already has candidates of that mode (and ``redo`` is off). Nothing is written.

    Raises:
        CraftError: when an image cannot be read or the detector's checkpoint is unusable.
    """
    mode = proposal_mode(proposals, pair)
    if not redo and any(is_from_mode(c, mode, detector_name) for c in catalog.candidates_for(pair.id)):
        return mode, None
    pre, post = store.load(pair.pre), store.load(pair.post)
    return mode, detect_candidates(detector_name, engine, pair, pre, post, mode, checkpoint, snap)
