"""Change candidates: which parts of a pair changed, and how (appear, disappear, state change).

Detectors are chosen by name from a registry, like segment-anything's model registry::

    detector = create_detector("classical", domain="rs")
    result = detector.detect(pair_id, pre, post)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from craft_agent.change.detector import ChangeResult, ClassicalChangeDetector, DetectorConfig
from craft_agent.change.evidence import EvidenceConfig, change_evidence
from craft_agent.errors import ConfigError
from craft_agent.models import Domain


class ChangeDetector(Protocol):
    """Anything that turns a co-registered RGB pair into a :class:`ChangeResult`."""

    name: str

    def detect(self, pair_id: str, pre: np.ndarray, post: np.ndarray) -> ChangeResult: ...


DETECTORS: dict[str, Callable[[Domain], ChangeDetector]] = {
    "classical": lambda domain: ClassicalChangeDetector(DetectorConfig.for_domain(domain)),
}
"""Registered detectors by name; each builder takes the domain and returns a detector with its defaults."""


def create_detector(name: str = "classical", domain: Domain | str = Domain.RS) -> ChangeDetector:
    """The detector registered as ``name`` with the defaults for ``domain``.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown change detector {name!r}.", hint=f"choose one of: {', '.join(sorted(DETECTORS))}.")
    return DETECTORS[name](Domain(domain))


__all__ = [
    "DETECTORS",
    "ChangeDetector",
    "ChangeResult",
    "ClassicalChangeDetector",
    "DetectorConfig",
    "EvidenceConfig",
    "change_evidence",
    "create_detector",
]
