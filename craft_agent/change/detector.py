"""The classical change detector: evidence map -> changed regions -> typed :class:`ChangeCandidate` list."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from craft_agent.change.evidence import EvidenceConfig, change_evidence, to_lab
from craft_agent.change.objects import (
    Region,
    binarize,
    changed_components,
    decide_change_type,
    region_candidate,
    segment_objects,
    suppress_duplicates,
)
from craft_agent.models import ChangeCandidate, Domain


class DetectorConfig(BaseModel):
    """Parameters of :class:`ClassicalChangeDetector`. Use :meth:`for_domain` for the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    floor: float = Field(default=0.7, ge=0, description="Evidence below this never counts as change.")
    min_area_fraction: float = Field(default=0.0003, gt=0, description="Smallest change, share of the image.")
    min_area_px: int = Field(default=32, ge=1, description="Smallest change in pixels, whatever the image size.")
    segment_scale: float = Field(default=100.0, gt=0, description="Felzenszwalb scale: larger, bigger objects.")
    segment_changed_fraction: float = Field(default=0.4, gt=0, le=1, description="Changed share of a segment.")
    segment_threshold_factor: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Segments are judged on a threshold this many times the pixel threshold: averaging over a "
        "segment removes noise, so a segment may count as changed at a lower evidence than a pixel.",
    )
    max_object_fraction: float = Field(default=0.25, gt=0, le=1, description="Largest object, share of image.")
    nms_iou: float = Field(default=0.5, gt=0, le=1)
    max_candidates: int = Field(default=1024, ge=1, description="Most candidates kept per pair, strongest first.")
    type_ring_px: int = Field(default=4, ge=1, description="Width of the ring used to judge presence (px).")
    type_ratio: float = Field(default=1.6, ge=1, description="Contrast ratio that makes a change one-sided.")
    grid_rows: int = Field(default=3, ge=1)
    grid_cols: int = Field(default=3, ge=1)

    @classmethod
    def for_domain(cls, domain: Domain | str) -> DetectorConfig:
        """Defaults for remote sensing (small objects seen from above) or normal scenes (large objects,
        perspective, more parallax between dates)."""
        if Domain(domain) is Domain.NS:
            return cls(
                evidence=EvidenceConfig(shift_radius=2, structure_weight=0.5, postsmooth_sigma=3.0),
                min_area_fraction=0.002,
                segment_scale=300.0,
                type_ring_px=8,
            )
        return cls()

    def fingerprint(self) -> str:
        """Short hash of the configuration, for provenance and cache keys."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


@dataclass
class ChangeResult:
    """What the detector found in one pair.

    Attributes:
        evidence: float32 (H, W) change evidence.
        changed: bool (H, W) changed pixels after binarisation and clean-up.
        threshold: the evidence threshold used.
        candidates: typed change proposals, strongest first.
    """

    evidence: np.ndarray
    changed: np.ndarray
    threshold: float
    candidates: list[ChangeCandidate]


class ClassicalChangeDetector:
    """Change detection without learned weights (the offline default).

    Args:
        config: parameters; ``DetectorConfig.for_domain(domain)`` gives the defaults.
    """

    name = "classical"

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()

    def detect(self, pair_id: str, pre: np.ndarray, post: np.ndarray, gsd_m: float | None = None) -> ChangeResult:
        """Find changes between two co-registered RGB uint8 images of one shape (``gsd_m`` is not used: this
        detector works in pixels and image fractions).

        Returns:
            The evidence map, the changed-pixel mask and the candidates (deterministic for a config).

        Raises:
            ValueError: when the images differ in shape or are not RGB.
        """
        if pre.ndim != 3 or pre.shape[2] != 3:
            raise ValueError(f"expected RGB images (H, W, 3), got {pre.shape}")
        config = self.config
        height, width = pre.shape[:2]
        evidence = change_evidence(pre, post, config.evidence)
        min_area = max(config.min_area_px, int(config.min_area_fraction * height * width))
        changed, threshold = binarize(evidence, config.floor, min_area)
        regions: list[Region] = []
        if changed.any():
            max_area = int(config.max_object_fraction * height * width)
            regions = changed_components(changed, evidence)
            segment_changed = changed
            if config.segment_threshold_factor < 1.0:
                segment_changed = evidence > max(config.floor, config.segment_threshold_factor * threshold)
            for image, source in ((post, "post_segment"), (pre, "pre_segment")):
                regions += segment_objects(
                    image,
                    segment_changed,
                    evidence,
                    source,
                    config.segment_scale,
                    min_area,
                    max_area,
                    config.segment_changed_fraction,
                )
        kept = suppress_duplicates(regions, config.nms_iou, config.max_candidates)
        lab_pre, lab_post = to_lab(pre), to_lab(post)
        candidates = [self._candidate(pair_id, r, lab_pre, lab_post, threshold, width, height) for r in kept]
        return ChangeResult(evidence=evidence, changed=changed, threshold=threshold, candidates=candidates)

    def _candidate(
        self,
        pair_id: str,
        region: Region,
        lab_pre: np.ndarray,
        lab_post: np.ndarray,
        threshold: float,
        width: int,
        height: int,
    ) -> ChangeCandidate:
        config = self.config
        change_type, cues = decide_change_type(lab_pre, lab_post, region, config.type_ring_px, config.type_ratio)
        strength = region.evidence / max(threshold, 1e-6)
        return region_candidate(
            region,
            pair_id,
            (height, width),
            [pair_id, region.box, region.source, config.fingerprint()],
            change_type,
            source=f"classical:{region.source}",
            evidence={"mean_evidence": round(region.evidence, 4), **{k: round(v, 3) for k, v in cues.items()}},
            scores={"confidence": round(float(1.0 - np.exp(-(strength - 1.0) if strength > 1 else 0.0)), 4)},
            grid=(config.grid_rows, config.grid_cols),
        )
