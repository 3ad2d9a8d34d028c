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

import cv2
import numpy as np

from craft_agent.agent.nodes import AgentConfig, single_target_budget
from craft_agent.agent.run import generate
from craft_agent.bench.vision import source_folders, union_mask
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import ConfigError
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.llm.base import LLMBackend
from craft_agent.masks import MaskEngine
from craft_agent.metrics import PixelCounts, best_ious, gt_objects, inside_fractions
from craft_agent.models import ChangeCandidate, ImagePair, RLEMask, Triplet

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
    covered_with_groups: int = 0
    reachable: int = 0
    single: int = 0
    inside: int = 0
    triplets: int = 0
    empty_pairs: int = 0
    empty_pairs_ok: int = 0
    typed: int = 0
    typed_right: int = 0
    pixels: PixelCounts = field(default_factory=PixelCounts)

    def add_pair(
        self, pair: ImagePair, triplets: list[Triplet], candidates: list[ChangeCandidate], budget: int | None
    ) -> None:
        """Score one labelled pair's ``triplets`` (``candidates``: its candidates, the members of its groups;
        ``budget``: its single-target budget, None: none)."""
        gt = pair.gt_mask
        if gt is None:
            raise ValueError(f"pair {pair.id} has no ground-truth change mask to be scored against")
        self.pairs += 1
        self.triplets += len(triplets)
        single = [t for t in triplets if is_single_target(t)]
        self.single += len(single)
        truth = gt.to_array()
        masks = [t.mask for t in single]
        self.pixels.add(union_mask(masks, truth.shape), truth)
        if gt.is_empty:
            self.empty_pairs += 1
            self.empty_pairs_ok += not single
            return
        self.inside += sum(f >= 0.5 for f in inside_fractions(masks, gt))
        objects = [obj for obj in gt_objects(truth) if obj.area >= MIN_GT_OBJECT_PX]
        self.gt_objects += len(objects)
        self.reachable += len(objects) if budget is None else min(budget, len(objects))
        with_members = [*masks, *_group_members(triplets, candidates)]
        for obj in objects:
            self.covered += _covers(masks, obj)
            self.covered_with_groups += _covers(with_members, obj)
        typed_changes = [c for c in pair.gt_changes if c.change_type is not None]
        if typed_changes and single:
            # share of each triplet inside each labelled change (rows: changes, columns: triplets)
            inside = np.array([inside_fractions(masks, c.mask) for c in typed_changes])
            for column, triplet in enumerate(single):
                if inside[:, column].max() == 0:
                    continue  # a false alarm has no labelled type to be right or wrong about
                best = typed_changes[int(np.argmax(inside[:, column]))]
                self.typed += 1
                self.typed_right += triplet.change_type == best.change_type

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "gt_objects": self.gt_objects,
            "triplets_per_pair": round(self.single / self.pairs, 3) if self.pairs else 0.0,
            "all_triplets_per_pair": round(self.triplets / self.pairs, 3) if self.pairs else 0.0,
            "precision": round(self.inside / self.single, 4) if self.single else None,
            "instance_recall": round(self.covered / self.gt_objects, 4) if self.gt_objects else None,
            "instance_recall_with_groups": (
                round(self.covered_with_groups / self.gt_objects, 4) if self.gt_objects else None
            ),
            "recall_ceiling": round(self.reachable / self.gt_objects, 4) if self.gt_objects else None,
            "union_iou": round(self.pixels.iou, 4),
            "empty_pairs": self.empty_pairs,
            "empty_pairs_ok": round(self.empty_pairs_ok / self.empty_pairs, 4) if self.empty_pairs else None,
            "type_accuracy": round(self.typed_right / self.typed, 4) if self.typed else None,
        }


def score_real_catalog(catalog: Catalog, budget: Callable[[ImagePair], int | None] | None = None) -> RealScore:
    """Single-target triplets of every labelled pair against its ground-truth change mask.

    - gt_objects: 8-connected components of the mask with at least :data:`MIN_GT_OBJECT_PX` pixels;
    - precision: share of single-target triplets with at least half their pixels inside the change mask;
    - instance_recall: share of gt_objects covered, i.e. the union of the triplets lying mostly (>= 50 %) inside
      the object reaches IoU >= 0.5 with it;
    - union_iou: IoU of the union of a pair's single-target masks with its change mask, summed over pairs;
    - empty_pairs_ok: among pairs without change, the share that got no single-target triplet;
    - type_accuracy: where the labels give types (known changes), the share of single-target triplets whose
      type is that of the labelled change they overlap most.

    Two figures say what instance_recall can be read against:

    - recall_ceiling: the instance_recall a pair's single-target ``budget`` (None: no budget) allows at best,
      one triplet per object: a 256 px LEVIR-CD crop where 18 houses were built keeps 6;
    - instance_recall_with_groups: as instance_recall, the members of multi-target triplets ("the buildings
      that were built", each member the part of the group's mask its candidate holds) counted too: the objects
      the pair's triplets refer to in some expression.
    """
    score = RealScore()
    for pair in catalog.iter_pairs():
        if pair.gt_mask is not None:
            score.add_pair(
                pair,
                list(catalog.iter_triplets(pair_id=pair.id)),
                catalog.candidates_for(pair.id),
                budget(pair) if budget is not None else None,
            )
    return score


def _covers(masks: list[RLEMask], obj: RLEMask) -> bool:
    """Whether the union of the ``masks`` lying mostly (>= 50 %) inside ``obj`` reaches IoU >= 0.5 with it."""
    mostly_inside = [m for m, f in zip(masks, inside_fractions(masks, obj), strict=True) if f >= 0.5]
    return bool(mostly_inside) and RLEMask.union(mostly_inside).iou(obj) >= MATCH_IOU


def _group_members(triplets: list[Triplet], candidates: list[ChangeCandidate]) -> list[RLEMask]:
    """The member masks of a pair's multi-target triplets: each member candidate's mask within its group's."""
    groups = [t for t in triplets if not t.is_no_target and len(t.candidate_ids) > 1]
    by_id = {c.id: c for c in candidates}
    members = []
    for group in groups:
        inside = group.mask.to_array()
        for candidate_id in group.candidate_ids:
            candidate = by_id.get(candidate_id)
            if candidate is not None and candidate.mask is not None:
                member = candidate.mask.to_array() & inside
                if member.any():
                    members.append(RLEMask.from_array(member))
    return members


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
    source: str, pairs: list[ImagePair], held_out: dict[str, Path], runs: Path | None, parents: dict[str, str]
) -> dict[Path, list[str]]:
    """The labelled pairs of ``source`` (their ids) grouped by the checkpoint of the run that held each out; a
    quiet window (``parents``: window name -> pair name) goes with the pair it was cut from."""
    grouped: dict[Path, list[str]] = {}
    missing = []
    for pair in pairs:
        name = parents.get(pair.name, pair.name)
        checkpoint = held_out.get(f"{source}/{name}")
        if checkpoint is None or not checkpoint.is_file():
            missing.append(name)
        else:
            grouped.setdefault(checkpoint, []).append(pair.id)
    if missing:
        raise ConfigError(
            f"no run in {runs} left out {source}/{', '.join(sorted(set(missing)))} (see each run's held_out.json).",
            hint="run `craft-agent bench change --data DIR --runs RUNS` on the same --data folder first.",
        )
    return grouped


QUIET_WINDOW_PX = 256
"""Side of the windows cut from labelled pairs where nothing is labelled (see :func:`write_quiet_windows`)."""

QUIET_MARGIN_PX = 8
"""A quiet window keeps this far from every labelled change (a change's edge is no window's content)."""


def write_quiet_windows(catalog: Catalog, store: ImageStore, out: Path) -> dict[str, str]:
    """Cut every labelled pair that has changes into :data:`QUIET_WINDOW_PX` windows, and write those that lie
    at least :data:`QUIET_MARGIN_PX` from every labelled change as a source folder (``pre/ post/ mask/``, the
    masks empty) in ``out``: real imagery where the labels say nothing changed, for the detector modes'
    ``empty_pairs_ok``. A source has few unchanged pairs of its own (``../shared/data`` has one); its large
    tiles have many such windows.

    The labels count only their own kind of change (a building-change dataset does not label a new road), so
    a window's "nothing changed" holds for that kind: read the figure with ``--categories`` set to it.

    Returns:
        window name -> the name of the pair it was cut from (empty when no window qualifies; then nothing is
        written).
    """
    from PIL import Image

    side, windows = QUIET_WINDOW_PX, {}
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * QUIET_MARGIN_PX + 1, 2 * QUIET_MARGIN_PX + 1))
    for pair in catalog.iter_pairs():
        if pair.gt_mask is None or pair.gt_mask.is_empty or min(pair.width, pair.height) < 2 * side:
            continue
        near_change = cv2.dilate(pair.gt_mask.to_array().astype(np.uint8), disc).astype(bool)
        pre, post = store.load(pair.pre), store.load(pair.post)
        for y in range(0, pair.height - side + 1, side):
            for x in range(0, pair.width - side + 1, side):
                if near_change[y : y + side, x : x + side].any():
                    continue
                name = f"{pair.name}__{y:05d}_{x:05d}"
                for sub, image in (("pre", pre), ("post", post)):
                    (out / sub).mkdir(parents=True, exist_ok=True)
                    window = np.ascontiguousarray(image[y : y + side, x : x + side])
                    Image.fromarray(window).save(out / sub / f"{name}.png")
                (out / "mask").mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.zeros((side, side), np.uint8)).save(out / "mask" / f"{name}.png")
                windows[name] = pair.name
    return windows


@dataclass(frozen=True)
class _Run:
    """One drafting of a source: its report key, the proposals mode and the detector (and checkpoint)."""

    name: str
    mode: str
    detector: str
    checkpoint: Path | None


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

    Each detector mode also drafts the source's quiet windows (:func:`write_quiet_windows`), under
    ``"<mode>_quiet"`` (``pairs`` and ``triplets_per_pair`` of those windows, ``empty_pairs_ok`` the share that
    got no single-target triplet), when its pairs have any.

    Raises:
        ConfigError: when ``left_out_runs`` has no run that left out a source's pair.
    """
    from craft_agent.bench.change import family_of

    held_out = held_out_checkpoints(left_out_runs) if left_out_runs is not None else {}
    sources: dict[str, Any] = {}
    for folder in source_folders(data):
        runs = [_Run("labels", "labels", detector, checkpoint), _Run("detector", "detector", detector, checkpoint)]
        if left_out_runs is not None:
            family_run = None if held_out else left_out_runs / family_of(folder.name) / "change.pt"
            runs.append(_Run("learned_left_out", "detector", "learned", family_run))
        result: dict[str, Any] = {}
        quiet: Path | None = None
        quiet_gsd: float | None = None
        parents: dict[str, str] = {}
        for run in runs:
            # checked in turn: a source without ground truth has left the loop by then (bench change skips it too)
            if run.name == "learned_left_out" and run.checkpoint is not None and not run.checkpoint.is_file():
                raise ConfigError(
                    f"no run for the {family_of(folder.name)} family in {left_out_runs} (looked for {run.checkpoint}).",
                    hint="run `craft-agent bench change --data DIR --runs RUNS` on the same folder first.",
                )
            if progress:
                progress(f"{folder.name} ({run.name})")
            workspace = scratch / f"ws-real-{folder.name}-{run.name}"
            metrics = _draft_and_score(
                folder, workspace, run, backend, engine, categories, held_out, left_out_runs, folder.name, {}
            )
            if metrics is None:
                result = {"error": "no pairs with a ground-truth change mask"}
                break
            result[run.name] = metrics
            if run.mode == "labels":
                with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
                    # named after the source, so ingest knows its dataset (ground sample distance, label kind)
                    quiet = scratch / "quiet" / folder.name
                    parents = write_quiet_windows(catalog, ImageStore(workspace), quiet)
                    gsds = {pair.gsd_m for pair in catalog.iter_pairs()}
                    # the windows are PNGs without a georeference: they take their pairs' ground sample distance
                    quiet_gsd = gsds.pop() if len(gsds) == 1 else None
            elif quiet is not None and parents:
                if progress:
                    progress(f"{folder.name} ({run.name}, {len(parents)} quiet windows)")
                windows = _draft_and_score(
                    quiet,
                    scratch / f"ws-quiet-{folder.name}-{run.name}",
                    run,
                    backend,
                    engine,
                    categories,
                    held_out,
                    left_out_runs,
                    folder.name,
                    parents,
                    gsd=quiet_gsd,
                )
                if windows is not None:
                    # nothing is labelled there: only how many triplets the windows got, and how many got none
                    for key in (
                        "precision",
                        "instance_recall",
                        "instance_recall_with_groups",
                        "recall_ceiling",
                        "union_iou",
                        "type_accuracy",
                    ):
                        windows[key] = None
                    result[f"{run.name}_quiet"] = windows
        sources[folder.name] = result
    return sources


def _default_budget(pair: ImagePair) -> int:
    """The single-target budget the bench's detector modes draft ``pair`` under (AgentConfig's default)."""
    return single_target_budget(AgentConfig(), pair.width, pair.height)


def _draft_and_score(
    folder: Path,
    workspace: Path,
    run: _Run,
    backend: Callable[[], LLMBackend],
    engine: MaskEngine,
    categories: list[str] | None,
    held_out: dict[str, Path],
    left_out_runs: Path | None,
    source: str,
    parents: dict[str, str],
    gsd: float | None = None,
) -> dict[str, Any] | None:
    """Ingest ``folder`` into ``workspace``, draft it as ``run`` says and score it (None: nothing labelled)."""
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(folder, catalog, store, IngestOptions(gsd=gsd))
        labelled = [p for p in catalog.iter_pairs() if p.gt_mask is not None]
        if not labelled:
            return None
        # (checkpoint, pair ids) per generate call; None: every pair of the source
        by_run: Sequence[tuple[Path | None, list[str] | None]] = [(run.checkpoint, None)]
        if run.name == "learned_left_out" and run.checkpoint is None:
            by_run = list(_pairs_by_run(source, labelled, held_out, left_out_runs, parents).items())
        failed = 0
        for run_checkpoint, pair_ids in by_run:
            config = AgentConfig(
                proposals=run.mode,
                detector=run.detector,
                checkpoint=str(run_checkpoint) if run_checkpoint else None,
                categories=categories if run.mode == "detector" else None,
            )
            summary = generate(catalog, store, backend(), engine, workspace, config, pair_ids=pair_ids)
            failed += len(summary.failed)
        metrics = score_real_catalog(catalog, _default_budget if run.mode == "detector" else None).to_json()
        metrics["failed"] = failed
        if run.mode == "detector":
            metrics["detector"] = run.detector
            metrics["categories"] = categories
        if run.checkpoint is not None and run.mode == "detector":
            metrics["checkpoint"] = str(run.checkpoint)
        elif run.name == "learned_left_out":
            metrics["checkpoints"] = sorted(str(c) for c, _ in by_run)
        return metrics


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
