"""Scoring any model's predicted masks against an export: ``craft-agent eval --predictions DIR --data EXPORT``.

Predictions are PNG files named ``<sample_id>_<k>.png``, ``k`` the expression's index in the sample's
``referring_expressions`` (``<sample_id>.png`` stands for all of a sample's expressions), foreground > 127,
the size of the sample's images. A missing prediction counts as an empty mask and is reported. The scores
are :class:`craft_agent.metrics.ReferringScores` over every expression of the split (MTRefSeg's mIoU, oIoU,
Pr@t; gRefCOCO's N-acc / T-acc), so other MTRS models can be compared on our data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from craft_agent.data import MTRSDataset
from craft_agent.errors import ConfigError
from craft_agent.metrics import ReferringScores


def read_prediction(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A predicted mask (foreground > 127) of the expected ``shape``.

    Raises:
        ConfigError: when the file does not decode or has another size.
    """
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ConfigError(f"prediction {path} is not a readable image.", hint="write predictions as PNG masks.")
    if image.shape != shape:
        raise ConfigError(
            f"prediction {path} is {image.shape[1]}x{image.shape[0]} but its sample is {shape[1]}x{shape[0]}.",
            hint="predict at the size of the export's images (resize with nearest-neighbour).",
        )
    return image > 127


def score_predictions(predictions: Path, export: Path, split: str | None = None) -> dict[str, Any]:
    """Score the masks in ``predictions`` against the MTRefSeg-layout ``export`` (``split``: one, or all).

    Returns:
        ``ReferringScores.as_json()`` plus ``missing`` (expressions without a prediction, scored as empty)
        and up to 20 of their names.

    Raises:
        ConfigError: for a missing folder, an unreadable or wrongly sized prediction, or an export without
            samples in ``split``.
    """
    if not predictions.is_dir():
        raise ConfigError(f"--predictions {predictions} is not a folder.", hint="pass the folder of predicted PNGs.")
    dataset = MTRSDataset(export, "mtrefseg", split)
    if len(dataset) == 0:
        raise ConfigError(
            f"{export} has no samples in split {split or 'all'}.", hint="check --split (train, val, test or all)."
        )
    scores = ReferringScores()
    missing: list[str] = []
    for index in range(len(dataset)):
        sample = dataset[index]
        target = sample["mask"]
        whole = predictions / f"{sample['sample_id']}.png"
        for k in sample["expression_index"]:
            name = f"{sample['sample_id']}_{k}"
            path = predictions / f"{name}.png"
            path = path if path.is_file() else whole
            if path.is_file():
                prediction = read_prediction(path, target.shape)
            else:
                missing.append(name)
                prediction = np.zeros(target.shape, dtype=bool)
            scores.add(prediction, target)
    return {**scores.as_json(), "missing": len(missing), "missing_examples": missing[:20]}
