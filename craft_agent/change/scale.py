"""Which resolution a learned change model sees a pair at (no torch here: summaries ask it of every pair)."""

from __future__ import annotations

SCALE_RANGE = (0.25, 4.0)
"""Resampling factors to the model's GSD that are applied; a pair further off is read at its own resolution
(a 10 m Sentinel-2 scene blown up twenty times is no 0.5 m aerial tile)."""


def gsd_scale(pair_gsd: float | None, model_gsd: float | None) -> float:
    """The factor that resamples imagery of ``pair_gsd`` to ``model_gsd`` (below 1 shrinks it); 1.0 when either
    is unknown or the factor is outside :data:`SCALE_RANGE`."""
    if not pair_gsd or not model_gsd or beyond_resolution(pair_gsd, model_gsd):
        return 1.0
    return pair_gsd / model_gsd


def beyond_resolution(pair_gsd: float | None, model_gsd: float | None) -> bool:
    """Whether a pair of ``pair_gsd`` is too far from the model's ``model_gsd`` to be resampled to it
    (:data:`SCALE_RANGE`): the model then sees it at its own resolution, which it was not trained for (objects
    twenty times smaller than any it learned). False when either is unknown."""
    if not pair_gsd or not model_gsd:
        return False
    return not SCALE_RANGE[0] <= pair_gsd / model_gsd <= SCALE_RANGE[1]


__all__ = ["SCALE_RANGE", "beyond_resolution", "gsd_scale"]
