"""``craft-agent train --stage change``: train the learned change proposer from pairs with change masks.

Data: source folders read through the ingestion code (pre/ post/ mask/ and the other folder layouts,
band-set GeoTIFFs, manifests, MTRefSeg exports whose change mask is the union of a pair's masks), or
ingested workspaces (a folder holding ``catalog.sqlite``: its pairs with a ground-truth mask). Pairs
without a change mask are skipped and counted.

Training: random crops with flips, 90 degree rotations, date swap and per-date brightness/contrast
jitter; BCE + Dice loss; AdamW with a cosine learning rate over this run's budget (``steps``, or the wall
clock when only ``minutes`` is given). Seeded (python, numpy, torch). Written to ``OUT``:

Pairs whose ground sample distance is known (georeference, a known dataset's folder name, an ingested
workspace's ``--gsd``) are resampled to the model's (:data:`~craft_agent.change.learned.MODEL_GSD_M`, saved in
the checkpoint; the detector resamples what it drafts the same way); others train at their own resolution.

- ``change.pt``: weights, architecture, threshold, optimizer, step, random states, the training summary
  and the sources' names; saved every ``checkpoint_every`` steps (atomically) and at the end, and read
  back by ``resume=True`` and by :class:`craft_agent.change.learned.LearnedChangeDetector`;
- ``metrics.jsonl``: one line per logged step (step, loss, lr, seconds);
- ``predictions.png``: a few held-out pairs (training pairs when none are held out) as rows of pre, post,
  ground truth, prediction.
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pydantic import BaseModel

from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore, encode_png, write_atomic
from craft_agent.change.learned import (
    CHECKPOINT_FORMAT,
    MODEL_GSD_M,
    MULTIPLE,
    SiameseChangeNet,
    mixed_precision,
    normalise_image,
    predict_probability,
    resample,
    resolve_device,
)
from craft_agent.change.scale import gsd_scale
from craft_agent.errors import ConfigError, CraftError
from craft_agent.metrics import PixelCounts
from craft_agent.settings import CATALOG_FILENAME
from craft_agent.train.common import (
    begin_run,
    cosine_learning_rate,
    save_checkpoint,
    seed_everything,
    segmentation_loss,
)

CHECKPOINT_NAME = "change.pt"
METRICS_NAME = "metrics.jsonl"
PREDICTIONS_NAME = "predictions.png"
Progress = Callable[[int, int, str], None]
"""Called as (done, total, what): steps when a step budget is set, else seconds of the time budget."""


class ChangeTrainingConfig(BaseModel):
    """Hyper-parameters saved with the checkpoint (a resumed run keeps the architecture)."""

    base_channels: int = 16
    levels: int = 4
    crop: int = 256
    batch: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    threshold: float = 0.5
    val_fraction: float = 0.1
    seed: int = 0
    gsd_m: float | None = MODEL_GSD_M
    """Resolution (m/px) pairs of known GSD are resampled to; None: every pair at its own."""


class ChangeTrainingSummary(BaseModel):
    """What a training run did; the CLI's ``--json`` output and part of the checkpoint."""

    out: str
    checkpoint: str
    step: int
    """Optimizer steps in total, earlier runs of a resumed checkpoint included."""
    steps_this_run: int
    seconds: float
    device: str
    resumed: bool
    sources: list[str]
    train_pairs: int
    val_pairs: int
    skipped_without_mask: int
    problems: list[str]
    final_loss: float | None
    val_pixel_f1: float | None
    val_pixel_iou: float | None
    predictions_png: str
    predictions_from: str
    """``held-out`` or ``training`` pairs (the latter when no pair was held out)."""
    predictions_pairs: list[str]
    config: ChangeTrainingConfig


@dataclass
class TrainingPair:
    """One pair in memory: the raw images (for pictures), the normalised ones and the change mask."""

    name: str
    source: str
    pre: np.ndarray
    post: np.ndarray
    mask: np.ndarray
    gsd_m: float | None = None
    pre_normalised: np.ndarray = field(init=False, repr=False)
    post_normalised: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # float16 halves the memory; crops are cast back to float32 per batch
        self.pre_normalised = normalise_image(self.pre).astype(np.float16)
        self.post_normalised = normalise_image(self.post).astype(np.float16)

    def at_resolution(self, gsd_m: float | None) -> TrainingPair:
        """This pair resampled to ``gsd_m`` (see :func:`~craft_agent.change.scale.gsd_scale`; itself when
        the factor is 1)."""
        factor = gsd_scale(self.gsd_m, gsd_m)
        if factor == 1.0 or min(self.mask.shape) * factor < MULTIPLE:  # as predict_probability leaves it
            return self
        return TrainingPair(
            self.name,
            self.source,
            resample(self.pre, factor),
            resample(self.post, factor),
            resample(self.mask, factor, mask=True),
            gsd_m,
        )


@dataclass
class ChangeData:
    """Pairs with a change mask found in the ``--data`` folders, and what was left out."""

    pairs: list[TrainingPair] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    skipped_without_mask: int = 0
    problems: list[str] = field(default_factory=list)


def load_change_data(data: list[Path]) -> ChangeData:
    """Read every pair with a change mask from source folders or ingested workspaces.

    Raises:
        ConfigError: when a path does not exist.
    """
    result = ChangeData()
    with tempfile.TemporaryDirectory(prefix="craft-train-") as scratch:
        store = ImageStore(Path(scratch))
        for path in data:
            if not path.exists():
                raise ConfigError(f"--data {path} does not exist.", hint="pass a source folder or a workspace.")
            result.sources.append(_dataset_name(path))
            if (path / CATALOG_FILENAME).is_file():
                _read_workspace(path, result)
            else:
                _read_source(path, store, result)
    return result


def _dataset_name(path: Path) -> str:
    from craft_agent.imagery.layouts import dataset_name  # needs GDAL (rasterio): imported where it is used

    return dataset_name(path)


def _read_workspace(workspace: Path, result: ChangeData) -> None:
    store = ImageStore(workspace)
    with Catalog(f"sqlite:///{(workspace / CATALOG_FILENAME).resolve()}") as catalog:
        for record in catalog.iter_pairs():
            if record.gt_mask is None:
                result.skipped_without_mask += 1
                continue
            try:
                pre, post = store.load(record.pre), store.load(record.post)
            except CraftError as exc:
                result.problems.append(str(exc))
                continue
            mask = record.gt_mask.to_array()
            result.pairs.append(TrainingPair(record.name, workspace.name, pre, post, mask, record.gsd_m))


def _read_source(source: Path, store: ImageStore, result: ChangeData) -> None:
    # imported here: reading folders needs GDAL (rasterio), reading an ingested workspace does not
    from craft_agent.imagery.ingest import IngestOptions, build_pairs
    from craft_agent.imagery.layouts import SPLIT_FOLDERS, dataset_name, discover

    try:
        discovery = discover(source)
    except CraftError as exc:
        result.problems.append(str(exc))
        return
    result.problems += [f"{f.input}: {f.error}" for f in discovery.failures]
    for spec in discovery.specs:
        # a collection names its pairs "<sub-folder>/<pair>": the sub-folder is the source
        # (a dataset's split folders, LEVIR-CD/train/ and LEVIR-CD/test/, are one source: the dataset)
        origin = spec.name.split("/")[0] if discovery.layout == "collection" else source.name
        if origin.lower() in SPLIT_FOLDERS:
            origin = dataset_name(source / origin) if discovery.layout == "collection" else dataset_name(source)
        try:
            records = build_pairs(spec, IngestOptions(), store)
        except CraftError as exc:
            result.problems.append(str(exc))
            continue
        for record in records:
            if record.gt_mask is None:
                result.skipped_without_mask += 1
                continue
            pre, post = store.load(record.pre), store.load(record.post)
            result.pairs.append(TrainingPair(record.name, origin, pre, post, record.gt_mask.to_array(), record.gsd_m))


def split_pairs(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and held-out pairs: ``val_fraction`` of the pairs (at least one from five pairs
    on, when the fraction is above zero), chosen with ``seed``; at least one pair always trains."""
    held = round(val_fraction * count)
    if val_fraction > 0 and count >= 5:
        held = max(held, 1)
    held = min(held, count - 1) if count else 0
    order = np.random.default_rng(seed).permutation(count).tolist()
    return sorted(order[held:]), sorted(order[:held])


def _random_crop(pair: TrainingPair, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (3, crop, crop) crop of each date and of the mask, reflect-padded when the pair is smaller."""
    _, height, width = pair.pre_normalised.shape
    pad_h, pad_w = max(0, crop - height), max(0, crop - width)
    y = int(rng.integers(0, max(height - crop, 0) + 1))
    x = int(rng.integers(0, max(width - crop, 0) + 1))
    pieces = []
    for image in (pair.pre_normalised, pair.post_normalised, pair.mask[None]):
        piece = image[:, y : y + crop, x : x + crop].astype(np.float32)
        if pad_h or pad_w:
            piece = np.pad(piece, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
        pieces.append(piece)
    return pieces[0], pieces[1], pieces[2]


def _augment(
    pre: np.ndarray, post: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flips, a 90 degree rotation, date swap, and brightness/contrast jitter drawn per date (the dates of
    a real pair never share exposure, so the network must not rely on it)."""
    turns = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    out = []
    for image in (pre, post, mask):
        image = np.rot90(image, turns, axes=(1, 2))
        out.append(np.ascontiguousarray(image[:, :, ::-1] if flip else image))
    pre, post, mask = out
    if rng.random() < 0.5:
        pre, post = post, pre
    jittered = []
    for image in (pre, post):
        gain = rng.uniform(0.75, 1.25, size=(3, 1, 1)).astype(np.float32)
        offset = rng.uniform(-0.25, 0.25, size=(3, 1, 1)).astype(np.float32)
        jittered.append(image * gain + offset)
    return jittered[0], jittered[1], mask


def _batch(
    pairs: list[TrainingPair], weights: np.ndarray, size: int, crop: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    chosen = rng.choice(len(pairs), size=size, p=weights)
    samples = [_augment(*_random_crop(pairs[i], crop, rng), rng) for i in chosen]
    pre, post, mask = (torch.from_numpy(np.stack([s[k] for s in samples])) for k in range(3))
    return pre, post, mask


change_loss = segmentation_loss
"""The change model's loss (BCE + Dice), kept under its old name."""


def evaluate(net: torch.nn.Module, pairs: list[TrainingPair], device: torch.device, threshold: float) -> PixelCounts:
    """Pixel counts (micro over ``pairs``) of the thresholded probability against each pair's mask."""
    counts = PixelCounts()
    for pair in pairs:
        counts.add(predict_probability(net, pair.pre, pair.post, device) > threshold, pair.mask)
    return counts


def spread_over_sources(pairs: list[TrainingPair], count: int) -> list[TrainingPair]:
    """Up to ``count`` pairs taken from each source in turn, so a picture shows every source it can."""
    by_source: dict[str, list[TrainingPair]] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, []).append(pair)
    interleaved = [pair for group in itertools.zip_longest(*by_source.values()) for pair in group if pair]
    return interleaved[:count]


def write_predictions(
    net: torch.nn.Module, pairs: list[TrainingPair], device: torch.device, threshold: float, out: Path, side: int = 256
) -> None:
    """A picture with one row per pair: pre, post, ground truth, prediction (changed pixels)."""
    rows = []
    for pair in pairs:
        probability = predict_probability(net, pair.pre, pair.post, device)
        cells = [pair.pre, pair.post, pair.mask, probability > threshold]
        tiles = []
        for cell in cells:
            image = cell if cell.ndim == 3 else np.repeat((cell.astype(np.uint8) * 255)[..., None], 3, axis=2)
            tiles.append(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
        row = np.concatenate(tiles, axis=1)
        cv2.putText(row, pair.name[:40], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    write_atomic(out, encode_png(np.concatenate(rows, axis=0)))


def train_change_model(
    data: list[Path],
    out: Path,
    minutes: float | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    crop: int = 256,
    batch: int = 8,
    progress: Progress | None = None,
    steps: int | None = None,
    val_fraction: float = 0.1,
    checkpoint_every: int = 100,
    log_every: int = 10,
    predictions: int = 4,
    exclude: frozenset[str] = frozenset(),
    pairs: list[TrainingPair] | None = None,
) -> ChangeTrainingSummary:
    """Train (or go on training) the learned change proposer.

    Args:
        data: source folders and/or ingested workspaces (see the module docstring).
        out: run folder; ``change.pt``, ``metrics.jsonl`` and ``predictions.png`` are written there.
        minutes: wall-clock budget of this run; training stops at whichever of ``minutes`` and ``steps``
            comes first.
        device: ``auto`` (CUDA when present, else CPU on every usable core), ``cpu``, ``cuda``; bf16 autocast
            where the hardware does bf16 (:func:`~craft_agent.change.learned.mixed_precision`).
        seed: seeds python, numpy and torch, the held-out split and the crops.
        resume: go on from ``out/change.pt`` (weights, optimizer, step count and random states kept; the
            architecture and hyper-parameters come from the checkpoint).
        crop: side of the training crops (px); batch: crops per step.
        progress: see :data:`Progress`.
        steps: optimizer steps for this run.
        val_fraction: share of pairs held out (by pair, seeded) and scored at the end.
        checkpoint_every: save ``change.pt`` every this many steps.
        log_every: write a ``metrics.jsonl`` line every this many steps.
        predictions: pairs drawn in ``predictions.png``.
        exclude: pairs left out of this run entirely, as ``"<source>/<pair name>"`` (``bench change`` holds
            pairs out this way).
        pairs: pairs already in memory, trained on besides ``data`` (stage 1 of ``train --stage refer``).

    Returns:
        The summary (also saved inside the checkpoint).

    Raises:
        ConfigError: without a budget, for an existing run without ``resume`` (or ``resume`` without one),
            a bad device, or data without any pair with a change mask.
    """
    started = time.monotonic()
    checkpoint_path = out / CHECKPOINT_NAME
    saved = begin_run(checkpoint_path, CHECKPOINT_FORMAT, "change", resume, minutes, steps)
    if saved is not None:
        # a checkpoint from before the model GSD trained every pair at its own resolution
        config = ChangeTrainingConfig.model_validate({"gsd_m": None, **saved["config"]})
    else:
        config = ChangeTrainingConfig(crop=crop, batch=batch, val_fraction=val_fraction, seed=seed)
    target = resolve_device(device)
    seed_everything(config.seed)
    loaded = load_change_data(data)
    loaded.pairs = [
        p.at_resolution(config.gsd_m) for p in loaded.pairs + list(pairs or []) if f"{p.source}/{p.name}" not in exclude
    ]
    loaded.sources += sorted({p.source for p in pairs or []})
    if not loaded.pairs:
        raise ConfigError(
            f"no pair with a change mask in {', '.join(map(str, data))} "
            f"({loaded.skipped_without_mask} without one; {len(loaded.problems)} problem(s)).",
            hint="pass folders with pre/ post/ mask/ (or A/ B/ label/), MTRefSeg exports, or workspaces whose "
            "pairs have ground truth.",
        )
    train_index, val_index = split_pairs(len(loaded.pairs), config.val_fraction, config.seed)
    train_pairs = [loaded.pairs[i] for i in train_index]
    val_pairs = [loaded.pairs[i] for i in val_index]
    # crops are drawn per pair with weight sqrt(area): large tiles give more distinct crops than small ones,
    # but not so many that the small sources are drowned
    weights = np.sqrt([p.mask.size for p in train_pairs])
    weights = weights / weights.sum()

    net = SiameseChangeNet(config.base_channels, config.levels).to(target)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    step = 0
    if saved is not None:
        net.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
        rng.bit_generator.state = saved["rng"]["numpy"]
        torch.set_rng_state(saved["rng"]["torch"])
        random.setstate(saved["rng"]["python"])

    def payload(summary: ChangeTrainingSummary | None) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "architecture": {"base": config.base_channels, "levels": config.levels},
            "state_dict": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "threshold": config.threshold,
            "gsd_m": config.gsd_m,
            "config": config.model_dump(),
            "sources": sorted({p.source for p in loaded.pairs}),
            "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()},
            "summary": summary.model_dump() if summary else None,
        }

    budget_s = minutes * 60.0 if minutes else None
    autocast = mixed_precision(target)
    first_step, loss_value = step, None
    out.mkdir(parents=True, exist_ok=True)
    net.train()
    with (out / METRICS_NAME).open("a", encoding="utf-8") as log:
        while True:
            done = step - first_step
            elapsed = time.monotonic() - started
            if (steps and done >= steps) or (budget_s and elapsed >= budget_s):
                break
            fraction = done / steps if steps else elapsed / budget_s  # type: ignore[operator]
            learning_rate = cosine_learning_rate(config.learning_rate, fraction)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            pre, post, mask = (t.to(target) for t in _batch(train_pairs, weights, config.batch, config.crop, rng))
            with autocast:
                logits = net(pre, post)
            loss = change_loss(logits.float(), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            if step % log_every == 0:
                line = {"step": step, "loss": round(loss_value, 5), "lr": learning_rate, "seconds": round(elapsed, 1)}
                log.write(json.dumps(line) + "\n")
                log.flush()
            if step % checkpoint_every == 0:
                save_checkpoint(checkpoint_path, payload(None))
            if progress:
                if steps:
                    progress(done + 1, steps, f"step {step} loss {loss_value:.3f}")
                else:
                    progress(int(elapsed), int(budget_s or 0), f"step {step} loss {loss_value:.3f}")

    shown = spread_over_sources(val_pairs or train_pairs, predictions)
    counts = evaluate(net, val_pairs, target, config.threshold) if val_pairs else None
    write_predictions(net, shown, target, config.threshold, out / PREDICTIONS_NAME)
    summary = ChangeTrainingSummary(
        out=str(out),
        checkpoint=str(checkpoint_path),
        step=step,
        steps_this_run=step - first_step,
        seconds=round(time.monotonic() - started, 1),
        device=str(target),
        resumed=resume,
        sources=sorted({p.source for p in loaded.pairs}),
        train_pairs=len(train_pairs),
        val_pairs=len(val_pairs),
        skipped_without_mask=loaded.skipped_without_mask,
        problems=loaded.problems,
        final_loss=round(loss_value, 5) if loss_value is not None else None,
        val_pixel_f1=round(counts.f1, 4) if counts else None,
        val_pixel_iou=round(counts.iou, 4) if counts else None,
        predictions_png=str(out / PREDICTIONS_NAME),
        predictions_from="held-out" if val_pairs else "training",
        predictions_pairs=[p.name for p in shown],
        config=config,
    )
    save_checkpoint(checkpoint_path, payload(summary))
    return summary
