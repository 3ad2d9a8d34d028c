"""``craft-agent bench train``: the baseline trainer's speed and what a fixed CPU budget buys.

It makes its own data: generated scenes whose known changes (with the generator's own expressions) are taken as
audited triplets, plus one no-target expression per pair, exported in the MTRefSeg layout. Then:

- ``samples_per_s``: training samples per second of :func:`craft_agent.train.refer.train_refer_model`, next to
  ``bare_torch_samples_per_s``, a bare PyTorch loop over the same model class and the same kind of batches in
  the same run (the ratio shows what the trainer's bookkeeping costs);
- ``miou``: the test split after ``minutes`` of training with stage 1, ``miou_no_stage1`` without it, and the
  two baselines that ignore the text: an empty mask and the pair's whole change mask.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.export import export_dataset
from craft_agent.export.importer import triplet_from_truth
from craft_agent.export.samples import SplitConfig
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.models import AuditRecord, RLEMask, Triplet, TripletState, Verdict, triplet_id
from craft_agent.synthetic import write_examples

Progress = Callable[[str, int, int], None]
NO_TARGET = "the swimming pool that was dug in the garden"


def truth_export(root: Path, pairs: int, seed: int, size: int) -> Path:
    """Generated pairs, their known changes as accepted triplets (plus one no-target per pair), exported."""
    workspace = root / "workspace"
    write_examples(root / "examples", pairs=pairs, seed=seed, size=size)
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(root / "examples", catalog, store, IngestOptions())
        for pair in catalog.iter_pairs():
            triplets = [
                triplet_from_truth(pair, change, f"the changed {change.category or 'object'}")
                for change in pair.gt_changes
            ]
            empty = RLEMask.empty(pair.height, pair.width)
            triplets.append(
                Triplet(
                    id=triplet_id(pair.id, empty, None, "pool"),
                    pair_id=pair.id,
                    mask=empty,
                    expressions=[NO_TARGET],
                    change_type=None,
                    category="pool",
                )
            )
            for triplet in triplets:
                audit = AuditRecord(
                    id=f"truth-{triplet.id}", triplet_id=triplet.id, verdict=Verdict.ACCEPT, auditor="ground truth"
                )
                queued = triplet.moved_to(TripletState.QUEUED_FOR_AUDIT)
                catalog.upsert_triplet(triplet)
                catalog.upsert_triplet(queued)
                catalog.save_audits([audit])
                catalog.upsert_triplet(queued.model_copy(update={"audit_id": audit.id}).moved_to(TripletState.ACCEPTED))
        export_dataset(catalog, store, root / "export", ["mtrefseg"], splits=SplitConfig(ratios=(0.7, 0.1, 0.2)))
    return root / "export"


def bare_torch_rate(export: Path, size: int, batch: int, steps: int, text_encoder: str = "hashed") -> float:
    """Samples per second of a plain loop: the same model and batch building, nothing else (the text
    features of every expression computed before the clock starts, as the trainer does)."""
    from craft_agent.refer.model import ReferSegNet
    from craft_agent.train.common import segmentation_loss
    from craft_agent.train.refer import load_examples, make_batch

    examples = load_examples([export], size, "train")
    torch.manual_seed(0)
    net = ReferSegNet(text_encoder=text_encoder)
    net.featurize(sorted({example.expression for example in examples}))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    loss_exists = torch.nn.BCEWithLogitsLoss()
    started = time.perf_counter()
    for _ in range(steps):
        chosen = rng.integers(0, len(examples), size=batch)
        pre, post, ids, words, masks, exists = make_batch(examples, chosen, net.featurize, rng, jitter=True)
        logits, exists_logits = net(pre, post, ids, words)
        loss = segmentation_loss(logits, masks) + loss_exists(exists_logits, exists)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - started)


def run_train_bench(
    scratch: Path,
    minutes: float = 5.0,
    pairs: int = 24,
    size: int = 128,
    seed: int = 0,
    speed_steps: int = 20,
    progress: Progress | None = None,
    text_encoder: str = "auto",
) -> dict[str, Any]:
    """See the module docstring. ``minutes`` is the budget of each of the two trainings."""
    from craft_agent.refer.model import resolve_text_encoder
    from craft_agent.train.refer import evaluate_checkpoint, train_refer_model

    text_encoder = resolve_text_encoder(text_encoder)

    parts = ["data", "speed", "stage 1 + 2", "stage 2 only"]

    def say(done: int) -> None:
        if progress:
            progress(parts[done] if done < len(parts) else "", done, len(parts))

    say(0)
    export = truth_export(scratch / "data", pairs, seed, size)
    say(1)
    batch = 8
    bare = bare_torch_rate(export, size, batch, speed_steps, text_encoder)
    timed = train_refer_model(
        [export],
        scratch / "speed",
        steps=speed_steps,
        device="cpu",
        size=size,
        batch=batch,
        stage1=False,
        text_encoder=text_encoder,
    )
    ours = timed.steps_this_run * batch / timed.loop_seconds  # the loop: loading and scoring are not training
    say(2)
    common: dict[str, Any] = {
        "minutes": minutes,
        "device": "cpu",
        "size": size,
        "seed": seed,
        "text_encoder": text_encoder,
    }
    staged = train_refer_model([export], scratch / "staged", **common)
    with_stage1 = evaluate_checkpoint(scratch / "staged" / "refer.pt", [export], "test", "cpu")
    say(3)
    train_refer_model([export], scratch / "plain", stage1=False, **common)
    without = evaluate_checkpoint(scratch / "plain" / "refer.pt", [export], "test", "cpu")
    say(4)
    return {
        "samples_per_s": round(ours, 2),
        "bare_torch_samples_per_s": round(bare, 2),
        "ratio": round(ours / bare, 3) if bare else None,
        "miou": with_stage1["miou"],
        "miou_empty_baseline": with_stage1["baselines"]["empty"],
        "miou_change_mask_baseline": with_stage1["baselines"]["change_mask"],
        "miou_no_stage1": without["miou"],
        "test_samples": with_stage1["samples"],
        "steps_with_stage1": staged.step,
        "config": {"minutes": minutes, "pairs": pairs, "size": size, "seed": seed, "device": "cpu"},
        "text_encoder": text_encoder,
    }
