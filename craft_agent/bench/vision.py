"""``craft-agent bench vision``: change candidates and masks measured against ground truth.

For each source folder under ``--data`` (the layout of ``shared/data``: ``pre/ post/ mask/``, GeoTIFF band
folders included; read through the same ingestion code as ``craft-agent ingest``) and for generated
scenes, in one run and on the same images:

- object recall at IoU >= 0.5 and >= 0.25 of GT change objects (8-connected components of the GT mask)
  by the final candidate masks;
- candidate precision (share of candidates with >= 25 % of their pixels inside GT change);
- pixel F1 and IoU of the union of the final masks of the confident candidates (evidence above the
  pixel threshold) against the GT mask, micro-averaged over the source; tentative candidates (admitted at
  segment level below that threshold, for recall, for the agent to confirm) are scored apart as
  ``pixel_f1_all_candidates``;
- the same pixel F1 for a plain baseline: mean absolute RGB difference thresholded with Otsu;
- seconds per pair (detection plus masks) and peak memory of the pixel arrays (tracemalloc).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from skimage.filters import threshold_otsu

from craft_agent.catalog.store import ImageStore
from craft_agent.change import ChangeDetector, create_detector
from craft_agent.errors import CraftError
from craft_agent.imagery.ingest import IngestOptions, build_pairs
from craft_agent.imagery.layouts import discover, is_source
from craft_agent.masks import MaskEngine, segment_candidates
from craft_agent.metrics import ObjectCounts, PixelCounts, best_ious
from craft_agent.models import ChangeCandidate, ChangeType, Domain, RLEMask

Progress = Callable[[str, int, int], None]


@dataclass
class BenchPair:
    """One pair with ground truth, as the benchmark needs it."""

    name: str
    domain: Domain
    pre: np.ndarray
    post: np.ndarray
    gt: np.ndarray
    typed_changes: list[tuple[ChangeType, RLEMask]] = field(default_factory=list)
    gsd_m: float | None = None


def baseline_change(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """The plain baseline: mean absolute RGB difference, thresholded with Otsu."""
    difference = np.abs(pre.astype(np.float32) - post.astype(np.float32)).mean(axis=2)
    if difference.max() <= difference.min():
        return np.zeros(difference.shape, dtype=bool)
    return np.asarray(difference > threshold_otsu(difference))


def pairs_from_source(source: Path, workspace: Path) -> tuple[list[BenchPair], list[str]]:
    """Pairs with a GT mask from one source folder (through the ingestion code), and problems met."""
    store = ImageStore(workspace)
    discovery = discover(source)
    problems = [f"{f.input}: {f.error}" for f in discovery.failures]
    pairs = []
    for spec in discovery.specs:
        try:
            records = build_pairs(spec, IngestOptions(), store)
        except CraftError as exc:
            problems.append(str(exc))
            continue
        for record in records:
            if record.gt_mask is None:
                continue
            typed = [(c.change_type, c.mask) for c in record.gt_changes if c.change_type]
            pairs.append(
                BenchPair(
                    name=record.name,
                    domain=record.domain,
                    pre=store.load(record.pre),
                    post=store.load(record.post),
                    gt=record.gt_mask.to_array(),
                    typed_changes=typed,
                    gsd_m=record.gsd_m,
                )
            )
    return pairs, problems


def synthetic_pairs(count: int, seed: int, size: int = 512) -> list[BenchPair]:
    """Generated scenes (every fourth street-like) with their exact typed ground truth."""
    from craft_agent.synthetic import generate_scene

    pairs = []
    for index in range(count):
        domain: Literal["rs", "ns"] = "ns" if index % 4 == 3 else "rs"
        scene = generate_scene(seed * 1000 + index, size=size, domain=domain)
        pairs.append(
            BenchPair(
                name=scene.name,
                domain=Domain(domain),
                pre=scene.pre,
                post=scene.post,
                gt=scene.change_mask,
                typed_changes=[(ChangeType(c.change_type), RLEMask.from_array(c.mask)) for c in scene.changes],
            )
        )
    return pairs


@dataclass
class SourceScore:
    """Accumulated results of one source."""

    pixels: PixelCounts = field(default_factory=PixelCounts)
    pixels_all: PixelCounts = field(default_factory=PixelCounts)
    baseline: PixelCounts = field(default_factory=PixelCounts)
    objects: ObjectCounts = field(default_factory=ObjectCounts)
    seconds: float = 0.0
    pairs: int = 0
    typed: int = 0
    typed_right: int = 0
    peak_mb: float = 0.0

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "object_recall_50": round(self.objects.recall(0.5), 4),
            "object_recall_25": round(self.objects.recall(0.25), 4),
            "precision": round(self.objects.precision, 4),
            "pixel_f1": round(self.pixels.f1, 4),
            "pixel_iou": round(self.pixels.iou, 4),
            "pixel_f1_all_candidates": round(self.pixels_all.f1, 4),
            "baseline_pixel_f1": round(self.baseline.f1, 4),
            "sec_per_pair": round(self.seconds / max(self.pairs, 1), 3),
            "peak_mb": round(self.peak_mb, 1),
            "pairs": self.pairs,
            "gt_objects": self.objects.objects,
            "candidates": self.objects.candidates,
        }
        if self.typed:
            result["type_accuracy"] = round(self.typed_right / self.typed, 4)
        return result


def score_pairs(
    pairs: list[BenchPair], engine: MaskEngine, detector_name: str = "classical", checkpoint: Path | None = None
) -> SourceScore:
    """Detect, segment and score every pair of one source.

    Raises:
        ConfigError: when the detector cannot be built (unknown name, learned without a usable checkpoint).
    """
    score = SourceScore()
    # one detector per domain: a learned one loads its checkpoint once, not once per pair
    detectors = functools.cache(lambda domain: create_detector(detector_name, domain, checkpoint))
    if pairs:
        # Memory is traced on one extra run of the first pair: tracing every allocation slows numpy,
        # so the timed runs below go untraced.
        tracemalloc.start()
        try:
            _process(pairs[0], engine, detectors(pairs[0].domain), 0)
            score.peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        finally:
            tracemalloc.stop()
    for index, pair in enumerate(pairs):
        started = time.perf_counter()
        candidates, final = _process(pair, engine, detectors(pair.domain), index)
        score.seconds += time.perf_counter() - started
        confident = [m for m, c in zip(final, candidates, strict=True) if c.scores.get("confidence", 0.0) > 0]
        score.pixels.add(union_mask(confident, pair.gt.shape), pair.gt)
        score.pixels_all.add(union_mask(final, pair.gt.shape), pair.gt)
        score.baseline.add(baseline_change(pair.pre, pair.post), pair.gt)
        score.objects.add(pair.gt, final)
        for change_type, gt_mask in pair.typed_changes:
            ious = best_ious(final, [gt_mask]) if final else []
            if ious and max(ious) >= 0.25:
                score.typed += 1
                score.typed_right += candidates[int(np.argmax(ious))].change_type == change_type
        score.pairs += 1
    return score


def _process(
    pair: BenchPair, engine: MaskEngine, detector: ChangeDetector, index: int
) -> tuple[list[ChangeCandidate], list[RLEMask]]:
    result = detector.detect(f"bench-{index}", pair.pre, pair.post, gsd_m=pair.gsd_m)
    masks = segment_candidates(engine, result.candidates, pair.pre, pair.post, f"{pair.name}:pre", f"{pair.name}:post")
    return result.candidates, [m.mask for m in masks]


def union_mask(masks: list[RLEMask], shape: tuple[int, ...]) -> np.ndarray:
    """The union of ``masks`` as a boolean array (all False of ``shape`` when there are none)."""
    if not masks:
        return np.zeros(shape[:2], dtype=bool)
    return RLEMask.union(masks).to_array()


def source_folders(data: Path) -> Iterator[Path]:
    """Sub-folders of ``data`` that hold a source in any layout ``ingest`` reads, a dataset's split folders
    included (``data`` itself when it is one)."""
    if is_source(data):
        yield data
        return
    for child in sorted(data.iterdir()):
        if is_source(child):
            yield child


def run_vision_bench(
    data: Path | None,
    engine: MaskEngine,
    synthetic_count: int = 8,
    seed: int = 0,
    progress: Progress | None = None,
    detector: str = "classical",
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"sources": {name: metrics}, ...}`` (see the module docstring).

    Args:
        detector: change detector name (``classical`` or ``learned``); checkpoint: the learned one's
            ``change.pt``.

    Raises:
        ConfigError: when the detector cannot be built.
    """
    report: dict[str, Any] = {
        "engine": engine.name,
        "detector": detector,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "sources": {},
        "problems": {},
    }
    if detector != "classical":
        create_detector(detector, Domain.RS, checkpoint)  # fail before any image is read
    jobs: list[tuple[str, Callable[[Path], tuple[list[BenchPair], list[str]]]]] = []
    if synthetic_count > 0:
        jobs.append(("synthetic", lambda _ws: (synthetic_pairs(synthetic_count, seed), [])))
    for folder in source_folders(data) if data else []:
        jobs.append((folder.name, lambda ws, folder=folder: pairs_from_source(folder, ws)))  # type: ignore[misc]
    with tempfile.TemporaryDirectory(prefix="craft-bench-") as workspace:
        for done, (name, load) in enumerate(jobs):
            if progress:
                progress(name, done, len(jobs))
            pairs, problems = load(Path(workspace))
            if problems:
                report["problems"][name] = problems
            if not pairs:
                report["problems"].setdefault(name, []).append("no pairs with a ground-truth mask")
                continue
            report["sources"][name] = score_pairs(pairs, engine, detector, checkpoint).summary()
    if progress:
        progress("", len(jobs), len(jobs))
    return report


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
