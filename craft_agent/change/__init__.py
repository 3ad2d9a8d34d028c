"""Change candidates: which parts of a pair changed, and how (appear, disappear, state change).

Detectors are chosen by name from a registry, like segment-anything's model registry::

    detector = create_detector("classical", domain="rs")
    detector = create_detector("learned", domain="rs", checkpoint=Path("runs/change/change.pt"))
    result = detector.detect(pair_id, pre, post, gsd_m=0.5)

``learned`` (:mod:`craft_agent.change.learned`) imports torch, so it is imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from craft_agent.change.detector import ChangeResult, ClassicalChangeDetector, DetectorConfig
from craft_agent.change.evidence import EvidenceConfig, change_evidence
from craft_agent.errors import ConfigError
from craft_agent.models import Domain

if TYPE_CHECKING:
    from craft_agent.settings import Settings


class ChangeDetector(Protocol):
    """Anything that turns a co-registered RGB pair into a :class:`ChangeResult`."""

    name: str

    def detect(self, pair_id: str, pre: np.ndarray, post: np.ndarray, gsd_m: float | None = None) -> ChangeResult:
        """``gsd_m``: the pair's ground sample distance in metres per pixel, None when unknown."""
        ...


def _learned(domain: Domain, checkpoint: Path | None) -> ChangeDetector:
    if checkpoint is None:
        raise ConfigError(
            "the learned change detector needs a checkpoint.",
            hint="pass --checkpoint RUN/change.pt (made by `craft-agent train --stage change --data DIR --out RUN`) "
            "or set CRAFT_CHANGE_CHECKPOINT.",
        )
    from craft_agent.change.learned import LearnedChangeDetector

    return LearnedChangeDetector(checkpoint, domain)


DETECTORS: dict[str, Callable[[Domain, Path | None], ChangeDetector]] = {
    "classical": lambda domain, _checkpoint: ClassicalChangeDetector(DetectorConfig.for_domain(domain)),
    "learned": _learned,
}
"""Registered detectors by name; each builder takes the domain and a checkpoint (None for those without
weights) and returns a detector with its defaults."""


TRAINED_DETECTORS = frozenset({"learned"})
"""Detectors whose confidence was learned from labelled changes: the regions beyond a crowded tile's review
that the offline rules confirm are mostly right (a multi-target group may hold them), where the classical
detector's are mostly lawns and roads."""


def create_detector(
    name: str = "classical", domain: Domain | str = Domain.RS, checkpoint: Path | None = None
) -> ChangeDetector:
    """The detector registered as ``name`` with the defaults for ``domain``.

    Args:
        name: ``classical`` (no weights) or ``learned`` (a trained checkpoint).
        domain: ``rs`` or ``ns``.
        checkpoint: the ``change.pt`` of a learned detector; ignored by ``classical``.

    Raises:
        ConfigError: for an unknown name, or ``learned`` without a usable checkpoint.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown change detector {name!r}.", hint=f"choose one of: {', '.join(sorted(DETECTORS))}.")
    return DETECTORS[name](Domain(domain), checkpoint)


def detector_gsd(name: str, checkpoint: Path | None) -> float | None:
    """The resolution (m per pixel) detector ``name`` works at: the learned detector's checkpoint's, None for
    the classical detector (any resolution) or a checkpoint trained at none.

    Raises:
        ConfigError: for an unusable checkpoint (see :func:`~craft_agent.change.learned.load_change_model`).
    """
    if name != "learned" or checkpoint is None:
        return None
    from craft_agent.change.learned import checkpoint_gsd  # torch: only with the learned detector

    return checkpoint_gsd(checkpoint)


def default_detector(settings: Settings) -> tuple[str, Path | None]:
    """The workspace's detector: ``learned`` with ``settings.change_checkpoint`` when one is set, else
    ``classical``. Returns (name, checkpoint)."""
    if settings.change_checkpoint is not None:
        return "learned", settings.change_checkpoint
    return "classical", None


def choose_detector(settings: Settings, detector: str | None, checkpoint: Path | None) -> tuple[str, Path | None]:
    """The detector and checkpoint a run uses: those asked for (a checkpoint alone means ``learned``), else the
    workspace's default (:func:`default_detector`). Returns (name, checkpoint)."""
    if detector is None and checkpoint is not None:
        return "learned", checkpoint
    default_name, default_checkpoint = default_detector(settings)
    name = detector or default_name
    return name, checkpoint or (default_checkpoint if name == "learned" else None)


__all__ = [
    "DETECTORS",
    "TRAINED_DETECTORS",
    "ChangeDetector",
    "ChangeResult",
    "ClassicalChangeDetector",
    "DetectorConfig",
    "EvidenceConfig",
    "change_evidence",
    "choose_detector",
    "create_detector",
    "default_detector",
    "detector_gsd",
]
