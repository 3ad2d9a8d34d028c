"""``craft-agent bench change``: the learned change proposer on sources it never saw (leave one family out).

Sources are the sub-folders of ``--data`` that hold pairs with change masks. Crops of one dataset are often
windows of its larger tiles (LEVIR-CD 256 crops of the LEVIR-CD 1024 tiles), so sources are grouped into
families by the part of their name before the first ``_`` (``levir_cd_256`` + ``levir_cd_1024`` ->
``levir``) and a whole family is left out at once. For each family: a model is trained from scratch on all
other families (no pair held out: the left-out family is the test), then scored on each of the family's
sources next to the classical detector on the same pairs.

Scoring: the detector's ``changed`` map (changed pixels after clean-up, before any mask engine) against
the GT mask, pixel F1 and IoU micro-averaged over the source's pairs, for both detectors. That isolates the
proposer; ``bench vision`` scores the candidates' final masks instead.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from craft_agent.bench.vision import BenchPair, pairs_from_source, source_folders
from craft_agent.change import ChangeDetector, create_detector
from craft_agent.errors import ConfigError
from craft_agent.metrics import PixelCounts
from craft_agent.models import Domain

Progress = Callable[[str, int, int], None]
"""Called as (what, folds done, folds in all)."""
SCORING = "pixels of the detector's changed map (after clean-up, before masks) vs the GT mask, micro over pairs"


def family_of(source: str) -> str:
    """The dataset family of a source folder: its name up to the first ``_`` (``levir_cd_256`` -> ``levir``)."""
    return source.split("_", 1)[0]


def score_changed_maps(pairs: list[BenchPair], detect: Callable[[Domain], ChangeDetector]) -> PixelCounts:
    """Pixel counts of each pair's ``changed`` map against its GT mask, summed over ``pairs``."""
    counts = PixelCounts()
    for index, pair in enumerate(pairs):
        counts.add(detect(pair.domain).detect(f"bench-{index}", pair.pre, pair.post).changed, pair.gt)
    return counts


def run_change_bench(
    data: Path,
    minutes: float | None = 6.0,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    runs: Path | None = None,
    progress: Progress | None = None,
    crop: int = 256,
    batch: int = 8,
) -> dict[str, Any]:
    """Leave-one-family-out training and scoring (see the module docstring).

    Args:
        data: a folder of source folders (like ``shared/data``).
        minutes / steps: training budget of each fold.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: training seed of every fold.
        runs: where each fold's run folder (checkpoint, metrics, predictions) is kept; default: a temporary
            folder removed at the end.
        progress: see :data:`Progress`.
        crop / batch: training crops' side and crops per step.

    Returns:
        ``{"folds": {family: {"train_sources", "steps", "minutes", "sources": {folder: {"pairs",
        "pixel_f1", "pixel_iou", "classical_pixel_f1", "classical_pixel_iou"}}}}, "config": {...}}``.

    Raises:
        ConfigError: when fewer than two families have pairs with change masks.
    """
    from craft_agent.train.change import train_change_model

    report: dict[str, Any] = {
        "folds": {},
        "problems": {},
        "config": {
            "minutes": minutes,
            "steps": steps,
            "device": device,
            "seed": seed,
            "crop": crop,
            "batch": batch,
            "scoring": SCORING,
        },
    }
    with tempfile.TemporaryDirectory(prefix="craft-bench-change-") as scratch:
        run_root = runs or Path(scratch) / "runs"
        sources: dict[str, list[BenchPair]] = {}
        for folder in source_folders(data):
            pairs, problems = pairs_from_source(folder, Path(scratch) / "images")
            if problems:
                report["problems"][folder.name] = problems
            if pairs:
                sources[folder.name] = pairs
        families = sorted({family_of(name) for name in sources})
        if len(families) < 2:
            raise ConfigError(
                f"{data} holds {len(families)} source famil{'y' if len(families) == 1 else 'ies'} with change masks; "
                "leaving one out needs at least two.",
                hint="pass a folder of several sources (sub-folders with pre/ post/ mask/), like shared/data.",
            )
        classical = functools.cache(lambda domain: create_detector("classical", domain))
        for done, family in enumerate(families):
            if progress:
                progress(family, done, len(families))
            held = sorted(name for name in sources if family_of(name) == family)
            trained_on = sorted(name for name in sources if family_of(name) != family)
            started = time.monotonic()
            summary = train_change_model(
                [data / name for name in trained_on],
                run_root / family,
                minutes=minutes,
                steps=steps,
                device=device,
                seed=seed,
                crop=crop,
                batch=batch,
                val_fraction=0.0,
            )
            fold: dict[str, Any] = {
                "train_sources": trained_on,
                "steps": summary.step,
                "minutes": round((time.monotonic() - started) / 60.0, 2),
                "final_loss": summary.final_loss,
                "sources": {},
            }
            checkpoint = run_root / family / "change.pt"
            learned = functools.cache(
                lambda domain, checkpoint=checkpoint: create_detector("learned", domain, checkpoint)
            )
            for name in held:
                mine = score_changed_maps(sources[name], learned)
                baseline = score_changed_maps(sources[name], classical)
                fold["sources"][name] = {
                    "pairs": len(sources[name]),
                    "pixel_f1": round(mine.f1, 4),
                    "pixel_iou": round(mine.iou, 4),
                    "classical_pixel_f1": round(baseline.f1, 4),
                    "classical_pixel_iou": round(baseline.iou, 4),
                }
            report["folds"][family] = fold
        if progress:
            progress("", len(families), len(families))
    return report
