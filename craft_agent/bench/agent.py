"""``craft-agent bench agent``: the whole CRAFT graph scored against exact ground truth.

Generated scenes (made by the bench, seeded) are ingested into a temporary workspace and run through the
graph with each backend. Per backend:

- ``gt_coverage``: share of ground-truth changes matched by a drafted triplet's mask with IoU >= 0.5;
- ``mean_mask_iou``: mean IoU of those matches;
- ``type_accuracy`` / ``category_accuracy``: of the matched changes, share whose triplet has the GT type /
  category;
- ``uniqueness_rate``: share of expressions that no other triplet of the same pair also uses word for word;
- ``triplet_precision``: share of single-object triplets whose mask matches a GT change with IoU >= 0.25
  (the rest are false alarms the auditors will reject);
- ``llm_calls_per_triplet``, ``tokens_per_triplet``, ``pairs_per_min``.

With ``--data`` the real sources are run too (offline backend) and the union of their triplet masks is
scored against the GT change mask (pixel IoU), which says how much of the labelled change ends up in triplets.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from craft_agent.agent.run import generate
from craft_agent.bench.vision import source_folders, union_mask
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.llm.base import LLMBackend
from craft_agent.masks import MaskEngine
from craft_agent.metrics import PixelCounts, best_ious

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
            if target.candidate_ids:  # one object, not a group
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
        "triplet_precision": round(single_hits / single, 4) if single else 1.0,
    }


def run_agent_bench(
    backends: dict[str, Callable[[], LLMBackend]],
    engine: MaskEngine,
    pairs: int = 8,
    seed: int = 0,
    size: int = 512,
    data: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"backends": {name: metrics}, "sources": {...}}``."""
    from craft_agent.synthetic import write_examples

    report: dict[str, Any] = {"backends": {}, "sources": {}, "pairs": pairs, "seed": seed, "masks": engine.name}
    with tempfile.TemporaryDirectory(prefix="craft-bench-agent-") as scratch:
        root = Path(scratch)
        write_examples(root / "examples", pairs=pairs, seed=seed, size=size)
        for name, build in backends.items():
            workspace = root / f"ws-{name}"
            with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
                store = ImageStore(workspace)
                ingest(root / "examples", catalog, store, IngestOptions())
                started = time.perf_counter()
                summary = generate(catalog, store, build(), engine, workspace)
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
            for folder in source_folders(data):
                workspace = root / f"ws-real-{folder.name}"
                with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
                    store = ImageStore(workspace)
                    ingest(folder, catalog, store, IngestOptions())
                    generate(catalog, store, backends["offline"](), engine, workspace)
                    pixels = PixelCounts()
                    scored = 0
                    for pair in catalog.iter_pairs():
                        if pair.gt_mask is None:
                            continue
                        scored += 1
                        masks = [t.mask for t in catalog.iter_triplets(pair_id=pair.id) if not t.is_no_target]
                        union = union_mask(masks, (pair.height, pair.width))
                        pixels.add(union, pair.gt_mask.to_array())
                    if not scored:
                        report["sources"][folder.name] = {"error": "no pairs with a ground-truth change mask"}
                        continue
                    report["sources"][folder.name] = {
                        "triplet_pixel_iou": round(pixels.iou, 4),
                        "triplet_pixel_f1": round(pixels.f1, 4),
                        "triplets": sum(1 for _ in catalog.iter_triplets()),
                    }
    return report
