"""``craft-agent train --stage refer``: language-guided fine-tuning of the baseline MTRS model on exports.

Data: exports written by ``craft-agent export`` (any format, read through :mod:`craft_agent.data`), one
training example per (sample, expression); images and masks are resized to ``size`` (no flips, rotations or
date swaps: expressions say "west", "top-left", "appeared", which those would falsify; only the brightness
and contrast of each date are jittered).

Stage 1: the change model starts from ``stage1`` (a ``change.pt``); without one, ``train_refer_model`` first
trains it on the same exports' change masks (the union of a pair's masks) for a share of the budget, as the
paper's two stages; ``stage1=False`` skips it (the ablation). Seeded, resumable, with progress, a metrics log
and a picture of predictions. Written to ``OUT``: ``refer.pt``, ``metrics.jsonl``, ``predictions.png``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pydantic import BaseModel
from torch.nn import functional

from craft_agent.change.learned import mixed_precision, normalise_image, resolve_device
from craft_agent.data import FORMATS, MTRSIterableDataset
from craft_agent.errors import ConfigError
from craft_agent.metrics import ReferringScores
from craft_agent.refer.model import ReferSegNet, TextFeaturizer, resolve_text_encoder
from craft_agent.train.common import (
    begin_run,
    cosine_learning_rate,
    read_checkpoint_to_resume,
    save_checkpoint,
    seed_everything,
    segmentation_loss,
)

REFER_FORMAT = "craft-agent/refer-model/1"
CHECKPOINT_NAME = "refer.pt"
STAGE1_SHARE = 0.3
"""Share of the budget given to stage 1 when no stage-1 checkpoint is passed."""
Progress = Callable[[int, int, str], None]


class ReferTrainingConfig(BaseModel):
    """Saved with the checkpoint (a resumed run keeps it)."""

    base_channels: int = 16
    levels: int = 4
    text_dim: int = 128
    buckets: int = 8192
    text_encoder: str = "hashed"
    """``minilm`` (frozen pretrained all-MiniLM-L6-v2) or ``hashed`` (trained from scratch)."""
    size: int = 256
    batch: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    threshold: float = 0.5
    seed: int = 0
    stage1: str | None = None
    """The stage-1 checkpoint the change model started from (None: the ablation without stage 1)."""


@dataclass
class ReferExample:
    """One (sample, expression) at training size, plus the sample's full-size mask for scoring."""

    sample_id: str
    pair_id: str
    split: str
    expression: str
    pre: np.ndarray
    post: np.ndarray
    mask: np.ndarray
    full_mask: np.ndarray
    pre_image: np.ndarray
    post_image: np.ndarray


def export_format(root: Path) -> str:
    """The format to read an export with: the first of mtrefseg, parquet, grefcoco, webdataset it has."""
    manifest = root / "manifest.json"
    present = json.loads(manifest.read_text()).get("formats", []) if manifest.is_file() else []
    present += [fmt for fmt in FORMATS if (root / fmt).is_dir()]
    for fmt in ("mtrefseg", "parquet", "grefcoco", "webdataset"):
        if fmt in present:
            return fmt
    if any((child / "referring_expression").is_dir() for child in root.iterdir() if child.is_dir()):
        return "mtrefseg"
    raise ConfigError(f"{root} is not an export.", hint="pass folders written by `craft-agent export`.")


def load_examples(data: list[Path], size: int, split: str | None = None) -> list[ReferExample]:
    """Every (sample, expression) of the exports' ``split`` (all when None), resized to ``size``.

    Raises:
        ConfigError: for a path that is not an export.
    """
    examples = []
    for root in data:
        if not root.is_dir():
            raise ConfigError(f"--data {root} is not a folder.", hint="pass folders written by `craft-agent export`.")
        for sample in MTRSIterableDataset(root, split, export_format(root)):
            pre = cv2.resize(sample["image_a"], (size, size), interpolation=cv2.INTER_AREA)
            post = cv2.resize(sample["image_b"], (size, size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(sample["mask"].astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
            for expression in sample["expressions"]:
                examples.append(
                    ReferExample(
                        sample_id=sample["sample_id"],
                        pair_id=sample["pair_id"],
                        split=sample["split"],
                        expression=expression,
                        pre=normalise_image(pre).astype(np.float16),
                        post=normalise_image(post).astype(np.float16),
                        mask=mask,
                        full_mask=sample["mask"],
                        pre_image=pre,
                        post_image=post,
                    )
                )
    return examples


def make_batch(
    examples: list[ReferExample],
    chosen: np.ndarray,
    featurize: TextFeaturizer,
    rng: np.random.Generator,
    jitter: bool,
) -> tuple[torch.Tensor, ...]:
    """The tensors of one step: both dates (jittered per date), text features and mask, target masks,
    existence."""
    pres: list[np.ndarray] = []
    posts: list[np.ndarray] = []
    for index in chosen:
        for stack, image in ((pres, examples[index].pre), (posts, examples[index].post)):
            image = image.astype(np.float32)
            if jitter:  # exposure differs per date on real pairs
                image = image * rng.uniform(0.8, 1.2, (3, 1, 1)) + rng.uniform(-0.2, 0.2, (3, 1, 1))
            stack.append(image.astype(np.float32))
    ids, words = featurize([examples[i].expression for i in chosen])
    masks = np.stack([examples[i].mask for i in chosen])[:, None].astype(np.float32)
    exists = torch.tensor([float(examples[i].mask.any()) for i in chosen])
    return (
        torch.from_numpy(np.stack(pres)),
        torch.from_numpy(np.stack(posts)),
        ids,
        words,
        torch.from_numpy(masks),
        exists,
    )


def refer_loss(
    mask_logits: torch.Tensor, exists_logits: torch.Tensor, masks: torch.Tensor, exists: torch.Tensor
) -> torch.Tensor:
    """Mask BCE + Dice (an empty mask for a no-target expression) plus the existence BCE."""
    return segmentation_loss(mask_logits, masks) + functional.binary_cross_entropy_with_logits(exists_logits, exists)


@torch.no_grad()
def predict(
    net: ReferSegNet, examples: list[ReferExample], device: torch.device, threshold: float, batch: int = 8
) -> list[np.ndarray]:
    """Each example's predicted mask at its sample's full size (empty when the model says "nothing")."""
    net.eval()
    masks = []
    for start in range(0, len(examples), batch):
        chosen = np.arange(start, min(start + batch, len(examples)))
        pre, post, ids, words, _, _ = make_batch(
            examples, chosen, net.featurize, np.random.default_rng(0), jitter=False
        )
        logits, exists = net(pre.to(device), post.to(device), ids.to(device), words.to(device))
        probability = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        present = torch.sigmoid(exists.float()).cpu().numpy() >= 0.5
        for offset, index in enumerate(chosen):
            height, width = examples[index].full_mask.shape
            full = cv2.resize(probability[offset], (width, height), interpolation=cv2.INTER_LINEAR) > threshold
            masks.append(full if present[offset] else np.zeros_like(full))
    return masks


def score(predictions: list[np.ndarray], examples: list[ReferExample]) -> ReferringScores:
    scores = ReferringScores()
    for prediction, example in zip(predictions, examples, strict=True):
        scores.add(prediction, example.full_mask)
    return scores


class ReferTrainingSummary(BaseModel):
    out: str
    checkpoint: str
    step: int
    steps_this_run: int
    seconds: float
    loop_seconds: float
    """Seconds spent in the training loop itself (no data loading, scoring or pictures)."""
    device: str
    resumed: bool
    train_examples: int
    val_examples: int
    stage1: str | None
    text_encoder: str
    final_loss: float | None
    val: dict[str, Any] | None
    config: ReferTrainingConfig


def _stage1(
    examples: list[ReferExample], out: Path, minutes: float | None, steps: int | None, device: str, seed: int
) -> Path:
    """Train the change model on the training pairs' change masks (the union of each pair's masks) into
    ``out/stage1`` (stage 1), unless an earlier attempt of this run already did."""
    from craft_agent.train.change import TrainingPair, train_change_model

    run = out / "stage1"
    if (run / "change.pt").is_file():
        return run / "change.pt"
    by_pair: dict[str, ReferExample] = {}
    union: dict[str, np.ndarray] = {}
    for example in examples:
        by_pair.setdefault(example.pair_id, example)
        union[example.pair_id] = union.get(example.pair_id, np.zeros_like(example.mask)) | example.mask
    pairs = [
        TrainingPair(pair_id, "exports", example.pre_image, example.post_image, union[pair_id])
        for pair_id, example in by_pair.items()
    ]
    budget_minutes = minutes * STAGE1_SHARE if minutes else None
    budget_steps = max(1, int(steps * STAGE1_SHARE)) if steps else None
    crop = min(256, examples[0].mask.shape[0])
    train_change_model(
        [], run, budget_minutes, device, seed, steps=budget_steps, val_fraction=0, pairs=pairs, crop=crop
    )
    return run / "change.pt"


def train_refer_model(
    data: list[Path],
    out: Path,
    minutes: float | None = None,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    stage1: Path | bool = True,
    size: int = 256,
    batch: int = 8,
    progress: Progress | None = None,
    checkpoint_every: int = 100,
    text_encoder: str = "auto",
) -> ReferTrainingSummary:
    """Train (or go on training) the baseline MTRS model; see the module docstring.

    Args:
        data: export folders; their ``train`` split trains, ``val`` is scored at the end.
        stage1: a ``change.pt`` to start from, True to train stage 1 first, False for none (the ablation).
        text_encoder: ``auto``, ``minilm`` or ``hashed`` (:func:`craft_agent.refer.model.resolve_text_encoder`);
            a resumed run keeps its own.

    Raises:
        ConfigError: without a budget, for an existing run without ``resume``, or exports without training
            examples.
    """
    started = time.monotonic()
    checkpoint_path = out / CHECKPOINT_NAME
    saved = begin_run(checkpoint_path, REFER_FORMAT, "refer", resume, minutes, steps)
    if saved is not None:
        config = ReferTrainingConfig.model_validate(saved["config"])
    else:
        config = ReferTrainingConfig(size=size, batch=batch, seed=seed, text_encoder=resolve_text_encoder(text_encoder))
    train = load_examples(data, config.size, "train")
    val = load_examples(data, config.size, "val")
    if not train:
        raise ConfigError(
            f"no training example (train split) in {', '.join(map(str, data))}.",
            hint="export with a train split (--ratios), and audited triplets in it.",
        )
    if saved is None and stage1 is not False:
        initial = _stage1(train, out, minutes, steps, device, seed) if stage1 is True else Path(stage1)
        config.stage1 = str(initial)
    target = resolve_device(device)
    seed_everything(config.seed)
    net = ReferSegNet(config.base_channels, config.levels, config.text_dim, config.buckets, config.text_encoder).to(
        target
    )
    if saved is None and config.stage1:
        from craft_agent.change.learned import load_change_model

        net.change.load_state_dict(load_change_model(Path(config.stage1), "cpu").net.state_dict())
    # Every expression's text features once, before the loop (a frozen pretrained encoder caches them).
    net.featurize(sorted({example.expression for example in train + val}))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    step = 0
    if saved is not None:
        net.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
        rng.bit_generator.state = saved["rng"]["numpy"]
        torch.set_rng_state(saved["rng"]["torch"])

    def payload(summary: ReferTrainingSummary | None) -> dict[str, Any]:
        return {
            "format": REFER_FORMAT,
            "config": config.model_dump(),
            "state_dict": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()},
            "summary": summary.model_dump() if summary else None,
        }

    budget_s = minutes * 60.0 * (1 - STAGE1_SHARE if stage1 is True and saved is None else 1) if minutes else None
    autocast = mixed_precision(target)
    first_step, loss_value = step, None
    out.mkdir(parents=True, exist_ok=True)
    loop_started = time.monotonic()
    with (out / "metrics.jsonl").open("a", encoding="utf-8") as log:
        while True:
            done = step - first_step
            elapsed = time.monotonic() - loop_started
            if (steps and done >= steps) or (budget_s and elapsed >= budget_s):
                break
            fraction = done / steps if steps else elapsed / budget_s  # type: ignore[operator]
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(config.learning_rate, fraction)
            net.train()
            chosen = rng.integers(0, len(train), size=config.batch)
            tensors = [t.to(target) for t in make_batch(train, chosen, net.featurize, rng, jitter=True)]
            pre, post, ids, words, masks, exists = tensors
            with autocast:
                logits, exists_logits = net(pre, post, ids, words)
            loss = refer_loss(logits.float(), exists_logits.float(), masks, exists)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            if step % 10 == 0:
                log.write(json.dumps({"step": step, "loss": round(loss_value, 5), "seconds": round(elapsed, 1)}) + "\n")
                log.flush()
            if step % checkpoint_every == 0:
                save_checkpoint(checkpoint_path, payload(None))
            if progress:
                total = steps or int(budget_s or 0)
                progress(done + 1 if steps else int(elapsed), total, f"step {step} loss {loss_value:.3f}")
    loop_seconds = time.monotonic() - loop_started
    val_scores = score(predict(net, val, target, config.threshold), val).as_json() if val else None
    write_predictions_png(net, (val or train)[:6], target, config.threshold, out / "predictions.png")
    summary = ReferTrainingSummary(
        out=str(out),
        checkpoint=str(checkpoint_path),
        step=step,
        steps_this_run=step - first_step,
        seconds=round(time.monotonic() - started, 1),
        loop_seconds=round(loop_seconds, 3),
        device=str(target),
        resumed=resume,
        train_examples=len(train),
        val_examples=len(val),
        stage1=config.stage1,
        text_encoder=config.text_encoder,
        final_loss=round(loss_value, 5) if loss_value is not None else None,
        val=val_scores,
        config=config,
    )
    save_checkpoint(checkpoint_path, payload(summary))
    return summary


def write_predictions_png(
    net: ReferSegNet, examples: list[ReferExample], device: torch.device, threshold: float, out: Path
) -> None:
    """Rows of: earlier image, ground truth, prediction, with the expression written on the row."""
    if not examples:
        return
    predictions = predict(net, examples, device, threshold)
    rows = []
    for example, prediction in zip(examples, predictions, strict=True):
        side = example.pre_image.shape[0]
        cells = [example.pre_image]
        for mask in (example.full_mask, prediction):
            small = cv2.resize(mask.astype(np.uint8) * 255, (side, side), interpolation=cv2.INTER_NEAREST)
            cells.append(np.repeat(small[..., None], 3, axis=2))
        row = np.concatenate(cells, axis=1)
        cv2.putText(row, example.expression[:70], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def load_refer_model(path: Path, device: str = "auto") -> tuple[ReferSegNet, ReferTrainingConfig, torch.device]:
    """A trained model (eval mode) and its config.

    Raises:
        ConfigError: for a missing, damaged or foreign file.
    """
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {path} does not exist.", hint="train one with `craft-agent train --stage refer`."
        )
    target = resolve_device(device)
    saved = read_checkpoint_to_resume(path, REFER_FORMAT, "refer")
    config = ReferTrainingConfig.model_validate(saved["config"])
    net = ReferSegNet(config.base_channels, config.levels, config.text_dim, config.buckets, config.text_encoder)
    net.load_state_dict(saved["state_dict"])
    return net.to(target).eval(), config, target


def evaluate_checkpoint(
    path: Path, data: list[Path], split: str | None = "test", device: str = "auto"
) -> dict[str, Any]:
    """The model's scores on the exports' ``split`` next to two baselines that ignore the text: an empty mask,
    and the pair's whole change mask (the union of all its samples' masks)."""
    net, config, target = load_refer_model(path, device)
    examples = load_examples(data, config.size, split)
    if not examples:
        raise ConfigError(
            f"no example in split {split or 'all'} of {', '.join(map(str, data))}.", hint="check --split."
        )
    union: dict[str, np.ndarray] = {}
    for example in examples:
        current = union.get(example.pair_id)
        union[example.pair_id] = example.full_mask if current is None else current | example.full_mask
    model = score(predict(net, examples, target, config.threshold), examples).as_json()
    empty = score([np.zeros_like(e.full_mask) for e in examples], examples).as_json()
    change = score([union[e.pair_id] for e in examples], examples).as_json()
    return {**model, "split": split or "all", "baselines": {"empty": empty["miou"], "change_mask": change["miou"]}}
