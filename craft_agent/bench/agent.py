"""``craft-agent bench agent``: the whole CRAFT graph scored against exact ground truth.

Generated scenes (made by the bench, seeded) are ingested into a temporary workspace and run through the
graph with each backend in detector mode (their labels are only used to score). Per backend:

- ``gt_coverage``: share of ground-truth changes matched by a drafted triplet's mask with IoU >= 0.5;
- ``mean_mask_iou``: mean IoU of those matches;
- ``type_accuracy`` / ``category_accuracy``: of the matched changes, share whose triplet has the GT type /
  category;
- ``uniqueness_rate``: share of expressions that no other triplet of the same pair also uses word for word;
  ``duplicate_expressions``: how many expressions break that rule (the referring rule wants 0);
- ``triplets_per_change``: all triplets (single, multi- and no-target) per ground-truth change;
- ``triplet_precision``: share of single-object triplets whose mask matches a GT change with IoU >= 0.25
  (the rest are false alarms the auditors will reject);
- ``llm_calls_per_triplet``, ``tokens_per_triplet``, ``pairs_per_min``.

With ``--data`` every labelled real source is drafted (offline backend) in labels mode and in detector mode
and scored against its change labels (:func:`score_real_catalog`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from craft_agent.agent.nodes import AgentConfig
from craft_agent.agent.run import generate
from craft_agent.bench.vision import source_folders, union_mask
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import ConfigError
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.llm.base import LLMBackend
from craft_agent.masks import MaskEngine
from craft_agent.metrics import PixelCounts, best_ious, gt_objects, inside_fractions
from craft_agent.models import ImagePair, RLEMask, Triplet

MATCH_IOU = 0.5


def score_catalog(catalog: Catalog) -> dict[str, Any]:
    """Triplets of every pair against the pairs' typed ground truth."""
    matched = typed_right = category_right = total = 0
    single = single_hits = 0
    ious: list[float] = []
    expressions_total = expressions_unique = triplet_count = 0
    for pair in catalog.iter_pairs():
        triplets = [t for t in catalog.iter_triplets(pair_id=pair.id)]
        targets = [t for t in triplets if not t.is_no_target]
        triplet_count += len(triplets)
        masks = [t.mask for t in targets]
        gt_masks = [c.mask for c in pair.gt_changes]
        for target in targets:
            if is_single_target(target):
                single += 1
                single_hits += bool(gt_masks) and max(best_ious([target.mask], gt_masks)) >= 0.25
        for change in pair.gt_changes:
            total += 1
            if not masks:
                continue
            scores = best_ious(masks, [change.mask])
            best = int(np.argmax(scores))
            if scores[best] >= MATCH_IOU:
                matched += 1
                ious.append(scores[best])
                typed_right += targets[best].change_type == change.change_type
                category_right += targets[best].category == change.category
        for triplet in triplets:
            others = {e.lower() for o in triplets if o.id != triplet.id for e in o.expressions}
            for expression in triplet.expressions:
                expressions_total += 1
                expressions_unique += expression.lower() not in others
    return {
        "gt_changes": total,
        "triplets": triplet_count,
        "gt_coverage": round(matched / total, 4) if total else 1.0,
        "mean_mask_iou": round(float(np.mean(ious)), 4) if ious else 0.0,
        "type_accuracy": round(typed_right / matched, 4) if matched else 0.0,
        "category_accuracy": round(category_right / matched, 4) if matched else 0.0,
        "uniqueness_rate": round(expressions_unique / expressions_total, 4) if expressions_total else 1.0,
        "duplicate_expressions": expressions_total - expressions_unique,
        "triplets_per_change": round(triplet_count / total, 3) if total else 0.0,
        "triplet_precision": round(single_hits / single, 4) if single else 1.0,
    }


MIN_GT_OBJECT_PX = 50
"""Ground-truth change objects are 8-connected components of the change mask with at least this many pixels."""


def is_single_target(triplet: Triplet) -> bool:
    """A triplet about one object (not a group, not a no-target expression)."""
    return not triplet.is_no_target and len(triplet.candidate_ids) == 1


@dataclass
class RealScore:
    """Accumulated labelled-source metrics of one mode (see :func:`score_real_catalog`)."""

    pairs: int = 0
    gt_objects: int = 0
    covered: int = 0
    single: int = 0
    inside: int = 0
    triplets: int = 0
    empty_pairs: int = 0
    empty_pairs_ok: int = 0
    typed: int = 0
    typed_right: int = 0
    pixels: PixelCounts = field(default_factory=PixelCounts)

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "gt_objects": self.gt_objects,
            "triplets_per_pair": round(self.single / self.pairs, 3) if self.pairs else 0.0,
            "all_triplets_per_pair": round(self.triplets / self.pairs, 3) if self.pairs else 0.0,
            "precision": round(self.inside / self.single, 4) if self.single else None,
            "instance_recall": round(self.covered / self.gt_objects, 4) if self.gt_objects else None,
            "union_iou": round(self.pixels.iou, 4),
            "empty_pairs": self.empty_pairs,
            "empty_pairs_ok": round(self.empty_pairs_ok / self.empty_pairs, 4) if self.empty_pairs else None,
            "type_accuracy": round(self.typed_right / self.typed, 4) if self.typed else None,
        }


def score_real_catalog(catalog: Catalog) -> RealScore:
    """Single-target triplets of every labelled pair against its ground-truth change mask.

    - gt_objects: 8-connected components of the mask with at least :data:`MIN_GT_OBJECT_PX` pixels;
    - precision: share of single-target triplets with at least half their pixels inside the change mask;
    - instance_recall: share of gt_objects covered, i.e. the union of the triplets lying mostly (>= 50 %) inside
      the object reaches IoU >= 0.5 with it;
    - union_iou: IoU of the union of a pair's single-target masks with its change mask, summed over pairs;
    - empty_pairs_ok: among pairs without change, the share that got no single-target triplet;
    - type_accuracy: where the labels give types (known changes), the share of single-target triplets whose
      type is that of the labelled change they overlap most.
    """
    score = RealScore()
    for pair in catalog.iter_pairs():
        if pair.gt_mask is None:
            continue
        score.pairs += 1
        triplets = list(catalog.iter_triplets(pair_id=pair.id))
        score.triplets += len(triplets)
        single = [t for t in triplets if is_single_target(t)]
        score.single += len(single)
        gt = pair.gt_mask
        truth = gt.to_array()
        masks = [t.mask for t in single]
        score.pixels.add(union_mask(masks, truth.shape), truth)
        if gt.is_empty:
            score.empty_pairs += 1
            score.empty_pairs_ok += not single
            continue
        score.inside += sum(f >= 0.5 for f in inside_fractions(masks, gt))
        for obj in gt_objects(truth):
            if obj.area < MIN_GT_OBJECT_PX:
                continue
            score.gt_objects += 1
            mostly_inside = [m for m, f in zip(masks, inside_fractions(masks, obj), strict=True) if f >= 0.5]
            score.covered += bool(mostly_inside) and RLEMask.union(mostly_inside).iou(obj) >= MATCH_IOU
        typed_changes = [c for c in pair.gt_changes if c.change_type is not None]
        if typed_changes and single:
            # share of each triplet inside each labelled change (rows: changes, columns: triplets)
            inside = np.array([inside_fractions(masks, c.mask) for c in typed_changes])
            for column, triplet in enumerate(single):
                if inside[:, column].max() == 0:
                    continue  # a false alarm has no labelled type to be right or wrong about
                best = typed_changes[int(np.argmax(inside[:, column]))]
                score.typed += 1
                score.typed_right += triplet.change_type == best.change_type
    return score


def held_out_checkpoints(runs: Path) -> dict[str, Path]:
    """``"<source>/<pair>"`` -> the ``change.pt`` of the run in ``runs`` whose ``held_out.json`` (written by
    ``bench change``) lists that pair; empty when no run has that file."""
    from craft_agent.bench.change import HELD_OUT_FILE

    found: dict[str, Path] = {}
    for listing in sorted(runs.glob(f"*/{HELD_OUT_FILE}")):
        for key in json.loads(listing.read_text())["held_out"]:
            found[key] = listing.parent / "change.pt"
    return found


def _pairs_by_run(
    source: str, pairs: list[ImagePair], held_out: dict[str, Path], runs: Path | None
) -> dict[Path, list[str]]:
    """The labelled pairs of ``source`` (their ids) grouped by the checkpoint of the run that held each out."""
    grouped: dict[Path, list[str]] = {}
    missing = []
    for pair in pairs:
        checkpoint = held_out.get(f"{source}/{pair.name}")
        if checkpoint is None or not checkpoint.is_file():
            missing.append(pair.name)
        else:
            grouped.setdefault(checkpoint, []).append(pair.id)
    if missing:
        raise ConfigError(
            f"no run in {runs} left out {source}/{', '.join(sorted(missing))} (see each run's held_out.json).",
            hint="run `craft-agent bench change --data DIR --runs RUNS` on the same --data folder first.",
        )
    return grouped


def score_real_sources(
    data: Path,
    backend: Callable[[], LLMBackend],
    engine: MaskEngine,
    scratch: Path,
    detector: str = "classical",
    checkpoint: Path | None = None,
    progress: Callable[[str], None] | None = None,
    left_out_runs: Path | None = None,
    categories: list[str] | None = None,
) -> dict[str, Any]:
    """Every source folder of ``data`` drafted in labels mode and in detector mode, each scored against its
    labels: ``{"<folder>": {"labels": M, "detector": M}}`` (see :class:`RealScore`). ``categories``: the detector
    modes draft only these (``AgentConfig.categories``: a building-change dataset's user asks for building);
    labels mode drafts every labelled object.

    With ``left_out_runs`` (the ``--runs`` folder of ``bench change``) each source is also drafted by learned
    detectors that never saw it, under ``"learned_left_out"``: each pair by the model of the run whose
    ``held_out.json`` lists it (either protocol), or, for runs without that file, the source by the run named
    after its dataset family.

    Raises:
        ConfigError: when ``left_out_runs`` has no run that left out a source's pair.
    """
    from craft_agent.bench.change import family_of

    held_out = held_out_checkpoints(left_out_runs) if left_out_runs is not None else {}
    sources: dict[str, Any] = {}
    for folder in source_folders(data):
        runs: list[tuple[str, str, str, Path | None]] = [
            ("labels", "labels", detector, checkpoint),
            ("detector", "detector", detector, checkpoint),
        ]
        if left_out_runs is not None:
            family_run = None if held_out else left_out_runs / family_of(folder.name) / "change.pt"
            runs.append(("learned_left_out", "detector", "learned", family_run))
        result: dict[str, Any] = {}
        for name, mode, detector_name, detector_checkpoint in runs:
            # checked in turn: a source without ground truth has left the loop by then (bench change skips it too)
            if name == "learned_left_out" and detector_checkpoint is not None and not detector_checkpoint.is_file():
                raise ConfigError(
                    f"no run for the {family_of(folder.name)} family in {left_out_runs} "
                    f"(looked for {detector_checkpoint}).",
                    hint="run `craft-agent bench change --data DIR --runs RUNS` on the same folder first.",
                )
            if progress:
                progress(f"{folder.name} ({name})")
            workspace = scratch / f"ws-real-{folder.name}-{name}"
            with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
                store = ImageStore(workspace)
                ingest(folder, catalog, store, IngestOptions())
                labelled = [p for p in catalog.iter_pairs() if p.gt_mask is not None]
                if not labelled:
                    result = {"error": "no pairs with a ground-truth change mask"}
                    break
                # (checkpoint, pair ids) per generate call; None: every pair of the source
                by_run: Sequence[tuple[Path | None, list[str] | None]] = [(detector_checkpoint, None)]
                if name == "learned_left_out" and detector_checkpoint is None:
                    by_run = list(_pairs_by_run(folder.name, labelled, held_out, left_out_runs).items())
                failed = 0
                for run_checkpoint, pair_ids in by_run:
                    config = AgentConfig(
                        proposals=mode,
                        detector=detector_name,
                        checkpoint=str(run_checkpoint) if run_checkpoint else None,
                        categories=categories if mode == "detector" else None,
                    )
                    summary = generate(catalog, store, backend(), engine, workspace, config, pair_ids=pair_ids)
                    failed += len(summary.failed)
                metrics = score_real_catalog(catalog).to_json()
                metrics["failed"] = failed
                if mode == "detector":
                    metrics["detector"] = detector_name
                    metrics["categories"] = categories
                if detector_checkpoint is not None and mode == "detector":
                    metrics["checkpoint"] = str(detector_checkpoint)
                elif name == "learned_left_out":
                    metrics["checkpoints"] = sorted(str(c) for c, _ in by_run)
                result[name] = metrics
        sources[folder.name] = result
    return sources


def run_agent_bench(
    backends: dict[str, Callable[[], LLMBackend]],
    engine: MaskEngine,
    pairs: int = 8,
    seed: int = 0,
    size: int = 512,
    data: Path | None = None,
    detector: str = "classical",
    checkpoint: Path | None = None,
    progress: Callable[[str], None] | None = None,
    left_out_runs: Path | None = None,
    categories: list[str] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"backends": {name: metrics}, "sources": {folder: {"labels": M,
    "detector": M}}}``. ``pairs=0`` skips the generated scenes; ``data`` adds the real labelled sources, drafted
    with the offline backend (see :func:`score_real_sources`, also for ``left_out_runs``)."""
    from craft_agent.synthetic import write_examples

    report: dict[str, Any] = {
        "backends": {},
        "sources": {},
        "pairs": pairs,
        "seed": seed,
        "masks": engine.name,
        "detector": detector,
        "categories": categories,
    }
    with tempfile.TemporaryDirectory(prefix="craft-bench-agent-") as scratch:
        root = Path(scratch)
        if pairs:
            write_examples(root / "examples", pairs=pairs, seed=seed, size=size)
        for name, build in backends.items() if pairs else ():
            if progress:
                progress(f"generated scenes ({name})")
            workspace = root / f"ws-{name}"
            with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
                store = ImageStore(workspace)
                ingest(root / "examples", catalog, store, IngestOptions())
                started = time.perf_counter()
                # the scenes carry their changes as labels; the agent's own detection is what is measured here
                config = AgentConfig(
                    proposals="detector", detector=detector, checkpoint=str(checkpoint) if checkpoint else None
                )
                summary = generate(catalog, store, build(), engine, workspace, config)
                minutes = (time.perf_counter() - started) / 60
                metrics = score_catalog(catalog)
                triplets = max(metrics["triplets"], 1)
                metrics.update(
                    {
                        "llm_calls_per_triplet": round(summary.llm_calls / triplets, 3),
                        "tokens_per_triplet": round((summary.prompt_tokens + summary.completion_tokens) / triplets, 1),
                        "cost_usd": round(summary.cost_usd, 6),
                        "pairs_per_min": round(summary.pairs / minutes, 2) if minutes else 0.0,
                        "failed": len(summary.failed),
                    }
                )
                report["backends"][name] = metrics
        if data is not None and "offline" in backends:
            report["sources"] = score_real_sources(
                data, backends["offline"], engine, root, detector, checkpoint, progress, left_out_runs, categories
            )
    return report
