"""What every training run of the package shares: seeding, atomic checkpoints, resuming, the learning-rate
schedule and the segmentation loss."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from craft_agent.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write through a temporary file and a rename, so an interrupted save never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint_to_resume(path: Path, expected_format: str, what: str) -> dict[str, Any]:
    """The checkpoint a ``--resume`` run goes on from.

    Raises:
        ConfigError: when it is missing, damaged or of another kind (``what`` names the kind).
    """
    if not path.is_file():
        raise ConfigError(
            f"--resume was given but {path} does not exist.", hint="drop --resume to start a new run in that folder."
        )
    try:
        saved: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, EOF and runtime errors for a damaged file
        raise ConfigError(
            f"cannot resume from {path}: the file is damaged ({type(exc).__name__}).",
            hint="start a new run in another --out folder.",
        ) from exc
    if not isinstance(saved, dict) or saved.get("format") != expected_format:
        raise ConfigError(f"cannot resume from {path}: not a {what} checkpoint.", hint="use another --out folder.")
    return saved


def begin_run(
    checkpoint_path: Path, expected_format: str, what: str, resume: bool, minutes: float | None, steps: int | None
) -> dict[str, Any] | None:
    """The checkpoint a run goes on from (``resume``), or None for a new run.

    Raises:
        ConfigError: without a budget, for a new run over an existing checkpoint, or as
            :func:`read_checkpoint_to_resume`.
    """
    if not minutes and not steps:
        raise ConfigError("training needs a budget.", hint="pass --minutes N and/or --steps N.")
    if resume:
        return read_checkpoint_to_resume(checkpoint_path, expected_format, what)
    if checkpoint_path.exists():
        raise ConfigError(
            f"{checkpoint_path} already exists.", hint="pass --resume to go on training it, or choose another --out."
        )
    return None


def cosine_learning_rate(base: float, fraction: float) -> float:
    """Cosine decay from ``base`` to 5 % of it over a run (``fraction`` of the budget spent, 0..1)."""
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0))))


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice over the batch (Dice keeps rare foreground pixels from being ignored)."""
    bce = functional.binary_cross_entropy_with_logits(logits, target)
    probability = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (probability * target).sum() + 1.0) / (probability.sum() + target.sum() + 1.0)
    return bce + dice
