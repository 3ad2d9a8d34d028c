"""``craft-agent bench change``: the learned change proposer on imagery it never saw.

Two protocols:

- ``families`` (leave one family out): a model trained on the other datasets scores a dataset it has never
  seen any pair of. This is the case of a user whose imagery comes from another sensor or place than any
  labelled data they have.
- ``pairs`` (held-out pairs): the pairs of every source are dealt into ``folds`` folds; each fold's model
  is trained on all other pairs, every source included, and scores the fold's pairs. This is the case of a
  user who trains the proposer on a labelled change-detection dataset and drafts on new imagery of the same
  kind. A pair that is a window of another pair of its family (checked on the pixels) goes to the same fold
  as that pair, so no held-out pixel was trained on.

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
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from craft_agent.bench.vision import BenchPair, pairs_from_source, source_folders
from craft_agent.change import ChangeDetector, create_detector
from craft_agent.errors import ConfigError
from craft_agent.metrics import PixelCounts
from craft_agent.models import Domain

Progress = Callable[[str, int, int], None]
"""Called as (what, folds done, folds in all)."""
Protocol = Literal["families", "pairs"]
SCORING = "pixels of the detector's changed map (after clean-up, before masks) vs the GT mask, micro over pairs"


HELD_OUT_FILE = "held_out.json"
"""Written into each fold's run folder: ``{"protocol", "held_out": ["<source>/<pair>", ...]}``, the pairs the
fold's model was not trained on."""


def family_of(source: str) -> str:
    """The dataset family of a source folder: its name up to the first ``_`` (``levir_cd_256`` -> ``levir``)."""
    return source.split("_", 1)[0]


def is_window(small: np.ndarray, large: np.ndarray) -> bool:
    """Whether ``small`` is, pixel for pixel, a window of ``large`` (both H x W x 3, uint8)."""
    if small.shape[0] > large.shape[0] or small.shape[1] > large.shape[1] or small.shape == large.shape:
        return False
    found = cv2.matchTemplate(large, small, cv2.TM_SQDIFF)
    return float(found.min()) <= 1e-6 * small.size * 255.0**2


def window_groups(sources: dict[str, list[BenchPair]]) -> dict[str, int]:
    """A group number per ``"<source>/<pair>"``: pairs that are windows of one another (within a family)
    share it; every other pair has its own."""
    keys = [(name, pair) for name in sorted(sources) for pair in sources[name]]
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (name_a, a) in enumerate(keys):
        for j, (name_b, b) in enumerate(keys):
            if i != j and family_of(name_a) == family_of(name_b) and is_window(a.pre, b.pre):
                parent[root(i)] = root(j)
    return {f"{name}/{pair.name}": root(i) for i, (name, pair) in enumerate(keys)}


def deal_folds(sources: dict[str, list[BenchPair]], folds: int, seed: int) -> list[set[str]]:
    """``"<source>/<pair>"`` keys dealt into ``folds`` folds: each source's window groups are shuffled
    (seeded) and dealt in turn, so every fold holds pairs of every source that has enough of them."""
    groups = window_groups(sources)
    dealt: list[set[str]] = [set() for _ in range(folds)]
    placed: dict[int, int] = {}
    rng = np.random.default_rng(seed)
    turn = 0
    for name in sorted(sources, key=lambda n: -len(sources[n])):
        for index in rng.permutation(len(sources[name])).tolist():
            key = f"{name}/{sources[name][index].name}"
            group = groups[key]
            if group not in placed:
                placed[group] = turn % folds
                turn += 1
            dealt[placed[group]].add(key)
    return dealt


def score_changed_maps(
    pairs: list[BenchPair], detect: Callable[[Domain], ChangeDetector], counts: PixelCounts | None = None
) -> PixelCounts:
    """Pixel counts of each pair's ``changed`` map against its GT mask, added to ``counts`` (a new one by
    default) and returned."""
    counts = counts if counts is not None else PixelCounts()
    for index, pair in enumerate(pairs):
        counts.add(detect(pair.domain).detect(f"bench-{index}", pair.pre, pair.post, gsd_m=pair.gsd_m).changed, pair.gt)
    return counts


@dataclass
class Fold:
    """One training run of the benchmark and the pairs it is scored on."""

    label: str
    train_sources: list[str]
    exclude: frozenset[str]
    held: dict[str, list[BenchPair]]


def plan_folds(sources: dict[str, list[BenchPair]], protocol: Protocol, folds: int, seed: int) -> list[Fold]:
    """The folds of ``protocol`` (see the module docstring).

    Raises:
        ConfigError: when the data cannot be split that way (one family for ``families``; fewer pairs than
            folds for ``pairs``).
    """
    if protocol == "families":
        families = sorted({family_of(name) for name in sources})
        if len(families) < 2:
            raise ConfigError(
                f"the data holds {len(families)} source famil{'y' if len(families) == 1 else 'ies'} with change "
                "masks; leaving one out needs at least two.",
                hint="pass a folder of several sources (sub-folders with pre/ post/ mask/), like shared/data, "
                "or use --protocol pairs.",
            )
        return [
            Fold(
                family,
                sorted(n for n in sources if family_of(n) != family),
                frozenset(),
                {n: sources[n] for n in sorted(sources) if family_of(n) == family},
            )
            for family in families
        ]
    total = sum(len(p) for p in sources.values())
    if folds < 2 or total < folds:
        raise ConfigError(
            f"--folds {folds} does not fit {total} pair(s) with change masks.",
            hint="use at least 2 folds and no more folds than pairs.",
        )
    planned = []
    for index, keys in enumerate(deal_folds(sources, folds, seed)):
        held = {n: [p for p in sources[n] if f"{n}/{p.name}" in keys] for n in sorted(sources)}
        planned.append(Fold(f"fold-{index}", sorted(sources), frozenset(keys), {n: p for n, p in held.items() if p}))
    return planned


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
    protocol: Protocol = "families",
    folds: int = 3,
) -> dict[str, Any]:
    """Train per fold and score the held-out pairs (see the module docstring).

    Args:
        data: a folder of source folders (like ``shared/data``).
        minutes / steps: training budget of each fold.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: training seed of every fold, and the deal of the ``pairs`` protocol.
        runs: where each fold's run folder (checkpoint, metrics, predictions) is kept; default: a temporary
            folder removed at the end.
        progress: see :data:`Progress`.
        crop / batch: training crops' side and crops per step.
        protocol: ``families`` or ``pairs``; folds: the number of folds of ``pairs``.

    Returns:
        ``{"sources": {folder: {"pairs", "pixel_f1", "pixel_iou", "classical_pixel_f1",
        "classical_pixel_iou"}}, "folds": {label: {"train_sources", "held_out", "steps", "minutes",
        "final_loss"}}, "problems": {...}, "config": {...}}``; a source's figures are micro averages over
        its pairs, each scored by the model of the fold that held it out.

    Raises:
        ConfigError: see :func:`plan_folds`.
    """
    from craft_agent.train.change import train_change_model

    report: dict[str, Any] = {
        "sources": {},
        "folds": {},
        "problems": {},
        "config": {
            "protocol": protocol,
            "folds": folds if protocol == "pairs" else None,
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
        planned = plan_folds(sources, protocol, folds, seed)
        classical = functools.cache(lambda domain: create_detector("classical", domain))
        learned_counts: dict[str, PixelCounts] = {}
        classical_counts: dict[str, PixelCounts] = {}
        for done, fold in enumerate(planned):
            if progress:
                progress(fold.label, done, len(planned))
            started = time.monotonic()
            summary = train_change_model(
                [data / name for name in fold.train_sources],
                run_root / fold.label,
                minutes=minutes,
                steps=steps,
                device=device,
                seed=seed,
                crop=crop,
                batch=batch,
                val_fraction=0.0,
                exclude=fold.exclude,
            )
            report["folds"][fold.label] = {
                "train_sources": fold.train_sources,
                "held_out": sorted(f"{n}/{p.name}" for n, pairs in fold.held.items() for p in pairs),
                "train_pairs": summary.train_pairs,
                "steps": summary.step,
                "minutes": round((time.monotonic() - started) / 60.0, 2),
                "final_loss": summary.final_loss,
            }
            # the run says which pairs it never saw, so `bench agent --left-out-runs` drafts each with its model
            held_out = {"protocol": protocol, "held_out": report["folds"][fold.label]["held_out"]}
            (run_root / fold.label / HELD_OUT_FILE).write_text(json.dumps(held_out, indent=2) + "\n")
            checkpoint = run_root / fold.label / "change.pt"
            learned = functools.cache(
                lambda domain, checkpoint=checkpoint: create_detector("learned", domain, checkpoint)
            )
            for name, pairs in fold.held.items():
                score_changed_maps(pairs, learned, learned_counts.setdefault(name, PixelCounts()))
                score_changed_maps(pairs, classical, classical_counts.setdefault(name, PixelCounts()))
        for name in sorted(learned_counts):
            mine, baseline = learned_counts[name], classical_counts[name]
            report["sources"][name] = {
                "pairs": len(sources[name]),
                "pixel_f1": round(mine.f1, 4),
                "pixel_iou": round(mine.iou, 4),
                "classical_pixel_f1": round(baseline.f1, 4),
                "classical_pixel_iou": round(baseline.iou, 4),
            }
        if progress:
            progress("", len(planned), len(planned))
    return report
