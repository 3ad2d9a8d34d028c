"""The examples folder: pairs of PNGs, one mask per change, and a manifest the pipeline can score against."""

from __future__ import annotations

import json
import math
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from craft_agent.errors import ExamplesError
from craft_agent.synthetic.records import CHANGE_TYPES, DomainName, ExamplesSummary
from craft_agent.synthetic.scene import check_seed, check_size, generate_scene


def _pair_seed(seed: int, index: int) -> int:
    """Seed of pair ``index``: depends on (seed, index) only, so adding pairs leaves earlier ones alone."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _is_street(index: int, street_fraction: float) -> bool:
    # Spread street pairs evenly (with 0.25: pairs 3, 7, 11, ...) and independently of the pair count.
    return math.floor((index + 1) * street_fraction) > math.floor(index * street_fraction)


def _acquisition_dates(pair_seed: int) -> tuple[str, str]:
    rng = np.random.default_rng([pair_seed, 1])
    first = date(2015, 1, 1) + timedelta(days=int(rng.integers(0, 5 * 365)))
    second = first + timedelta(days=int(rng.integers(300, 4 * 365)))
    return first.isoformat(), second.isoformat()


def _save_png(array: NDArray[Any], path: Path) -> None:
    Image.fromarray(array).save(path)


def _prepare_out(out: Path) -> None:
    """Make ``out`` ready to receive examples without ever clobbering someone else's data."""
    if out.exists() and not out.is_dir():
        raise ExamplesError(f"{out} exists and is not a folder.", hint="pass a new or empty folder as --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.jsonl").is_file():
        raise ExamplesError(
            f"{out} is a non-empty folder without manifest.jsonl; refusing to write examples into it.",
            hint="pass a new or empty folder, or an examples folder made by 'craft-agent examples make'",
        )
    for sub in ("pre", "post", "mask", "changes"):
        # Stale files of an earlier, larger run would otherwise linger beside the new manifest.
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)


def write_examples(out: Path, pairs: int, seed: int, size: int = 512, street_fraction: float = 0.25) -> ExamplesSummary:
    """Write an examples folder of synthetic pairs with their ground truth.

    Layout (paths in the manifest are relative to ``out``): ``pre/<name>.png``, ``post/<name>.png``,
    ``mask/<name>.png`` (0/255 union of the changes), ``changes/<name>_<k>.png`` (0/255, one per change),
    ``manifest.jsonl`` (one JSON object per pair) and ``README.txt``. Pair ``i`` is named
    ``scene_<i>`` (aerial) or ``street_<i>`` (street level) and is generated from a seed derived from
    (seed, i), so adding pairs never changes the earlier ones.

    Args:
        out: destination folder; created if missing. An existing examples folder (with manifest.jsonl) is
            overwritten.
        pairs: number of pairs, at least 1.
        seed: non-negative base seed.
        size: side of the square images in pixels, 128 to 4096.
        street_fraction: share of street-level pairs, 0 to 1, spread evenly over the indices.

    Returns:
        What was written: counts of pairs and changes (total and per change type), and the manifest path.

    Raises:
        ExamplesError: on an argument out of range, or when ``out`` is a file or a non-empty folder that is
            not an examples folder.
    """
    if not isinstance(pairs, int | np.integer) or pairs < 1:
        raise ExamplesError(f"--pairs must be >= 1, got {pairs!r}.", hint="pass a positive count")
    check_seed(seed)
    check_size(size)
    pairs, seed, size = int(pairs), int(seed), int(size)
    if not 0.0 <= street_fraction <= 1.0:
        raise ExamplesError(
            f"--street-fraction must be between 0 and 1, got {street_fraction!r}.", hint="pass e.g. 0.25"
        )
    out = Path(out)
    _prepare_out(out)
    by_type: dict[str, int] = dict.fromkeys(CHANGE_TYPES, 0)
    manifest = out / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as lines:
        for index in range(pairs):
            domain: DomainName = "ns" if _is_street(index, street_fraction) else "rs"
            name = f"{'street' if domain == 'ns' else 'scene'}_{index:04d}"
            pair_seed = _pair_seed(seed, index)
            scene = generate_scene(pair_seed, size, domain, name)
            _save_png(scene.pre, out / "pre" / f"{name}.png")
            _save_png(scene.post, out / "post" / f"{name}.png")
            _save_png(scene.change_mask.astype(np.uint8) * 255, out / "mask" / f"{name}.png")
            records = []
            for k, change in enumerate(scene.changes):
                _save_png(change.mask.astype(np.uint8) * 255, out / "changes" / f"{name}_{k}.png")
                by_type[change.change_type] += 1
                records.append(
                    {
                        "change_type": change.change_type,
                        "category": change.category,
                        "mask": f"changes/{name}_{k}.png",
                        "position": change.position,
                        "description": change.description,
                        "attributes": change.attributes,
                    }
                )
            date_pre, date_post = _acquisition_dates(pair_seed)
            record = {
                "id": name,
                "pre": f"pre/{name}.png",
                "post": f"post/{name}.png",
                "mask": f"mask/{name}.png",
                "domain": domain,
                "group": name,
                "date_pre": date_pre,
                "date_post": date_post,
                "changes": records,
                "generator": {
                    "name": "craft_agent.synthetic",
                    "seed": pair_seed,
                    "size": size,
                    "shift": list(scene.shift),
                },
            }
            lines.write(json.dumps(record) + "\n")
    (out / "README.txt").write_text(
        "Synthetic bi-temporal scenes made by `craft-agent examples make` "
        f"(craft_agent.synthetic) with seed {seed}, {pairs} pairs of {size} x {size} px.\n"
        "pre/ and post/ hold the images, mask/ the union of the changes, changes/ one mask per change;\n"
        "manifest.jsonl lists every pair with its changes (type, category, position, description).\n"
        "The post images carry an illumination change, sensor noise and a shift of up to 2 px\n"
        "(generator.shift = [dx, dy]); masks are in the pre image's pixel grid.\n",
        encoding="utf-8",
    )
    total = sum(by_type.values())
    return ExamplesSummary(out, pairs, total, by_type, manifest)
