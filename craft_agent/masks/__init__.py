"""Mask engines: one protocol, a registry, and the offline default.

- ``classical`` (default, no weights): GrabCut seeded by the change map and the box.
- ``sam``: segment-anything's ``SamPredictor`` from ``CRAFT_SAM_CHECKPOINT``, embeddings cached on disk.

``create_mask_engine(settings)`` picks ``sam`` when a checkpoint is configured, else ``classical``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from craft_agent.errors import ConfigError
from craft_agent.masks.base import MaskRequest, MaskResult, MaskScore, request_for_candidate
from craft_agent.masks.classical import ClassicalMaskEngine
from craft_agent.models import ChangeCandidate
from craft_agent.settings import Settings


class MaskEngine(Protocol):
    """Anything that turns a :class:`MaskRequest` into a :class:`MaskResult`."""

    name: str

    def segment(self, request: MaskRequest) -> MaskResult: ...


def _build_sam(settings: Settings) -> MaskEngine:
    from craft_agent.masks.sam import EmbeddingCache, SamMaskEngine

    if settings.sam_checkpoint is None:
        raise ConfigError(
            "the sam mask engine needs a checkpoint.",
            hint="set CRAFT_SAM_CHECKPOINT (and CRAFT_SAM_MODEL_TYPE), or use --masks classical.",
        )
    cache = EmbeddingCache(settings.workspace / "cache" / "sam")
    return SamMaskEngine.from_checkpoint(settings.sam_model_type, settings.sam_checkpoint, cache, bfloat16=True)


MASK_ENGINES: dict[str, Callable[[Settings], MaskEngine]] = {
    "classical": lambda settings: ClassicalMaskEngine(),
    "sam": _build_sam,
}
"""Registered mask engines by name; each builder takes the settings."""


def create_mask_engine(settings: Settings, name: str | None = None) -> MaskEngine:
    """The engine named ``name``; by default ``sam`` when a checkpoint is configured, else ``classical``.

    Raises:
        ConfigError: for an unknown name or a sam engine without a usable checkpoint.
    """
    chosen = name or ("sam" if settings.sam_checkpoint else "classical")
    if chosen not in MASK_ENGINES:
        raise ConfigError(f"unknown mask engine {chosen!r}.", hint=f"choose one of: {', '.join(sorted(MASK_ENGINES))}.")
    return MASK_ENGINES[chosen](settings)


def segment_candidates(
    engine: MaskEngine,
    candidates: list[ChangeCandidate],
    pre: np.ndarray,
    post: np.ndarray,
    pre_key: str,
    post_key: str,
) -> list[MaskResult]:
    """Segment every candidate of one pair with ``engine`` (same order as ``candidates``)."""
    return [engine.segment(request_for_candidate(c, pre, post, pre_key, post_key)) for c in candidates]


__all__ = [
    "MASK_ENGINES",
    "ClassicalMaskEngine",
    "MaskEngine",
    "MaskRequest",
    "MaskResult",
    "MaskScore",
    "create_mask_engine",
    "request_for_candidate",
    "segment_candidates",
]
