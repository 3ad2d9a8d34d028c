"""Segment Anything as a mask engine, with image embeddings cached on disk.

The image encoder is the expensive part (seconds per image on a CPU), the prompt decoder is cheap, so
each image is encoded once: embeddings are stored under the workspace keyed by the image's content hash,
the model type and the checkpoint's hash, and every later prompt on that image (in this run or a re-run)
only runs the decoder. Images larger than the encoder's tile are cut around the target first, so small
objects in large scenes are not shrunk away by SAM's resize to 1024 px.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from craft_agent.errors import ConfigError
from craft_agent.masks.base import (
    MaskRequest,
    MaskResult,
    MaskScore,
    Window,
    agreement,
    clean_mask,
    combine_dates,
    mask_iou,
)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class EmbeddingCache:
    """SAM image embeddings on disk, one file per (image, model, checkpoint).

    Args:
        root: cache folder (by default ``workspace/cache/sam``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def path_for(self, image_key: str, model_key: str) -> Path:
        key = hashlib.sha256(f"{image_key}:{model_key}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.pt"

    def load(self, image_key: str, model_key: str) -> dict[str, Any] | None:
        path = self.path_for(image_key, model_key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            entry: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):
            # A torn or corrupt cache file is recomputed, never trusted.
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def store(self, image_key: str, model_key: str, entry: dict[str, Any]) -> None:
        path = self.path_for(image_key, model_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(entry, temporary)
        os.replace(temporary, path)


class SamMaskEngine:
    """Masks from segment-anything's :class:`SamPredictor`.

    Args:
        model: a ``segment_anything.modeling.Sam`` (from :meth:`from_checkpoint` or built in tests).
        model_key: identifies model and weights in cache keys (type plus checkpoint hash).
        cache: embedding cache, or None to encode every time.
        tile_size: images larger than this (either side) are cut to a window of this size around the target.
        bfloat16: run the image encoder under CPU bfloat16 autocast (about 3x faster on CPUs that have it).
        min_area / max_hole: shared post-processing.
    """

    name = "sam"

    def __init__(
        self,
        model: Any,
        model_key: str,
        cache: EmbeddingCache | None = None,
        tile_size: int = 1024,
        bfloat16: bool = False,
        min_area: int = 12,
        max_hole: int = 64,
    ) -> None:
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(model.eval())
        self.model_key = model_key
        self.cache = cache
        self.tile_size = tile_size
        self.bfloat16 = bfloat16
        self.min_area = min_area
        self.max_hole = max_hole
        self.encoder_runs = 0
        self._current: tuple[str, Window] | None = None

    @classmethod
    def from_checkpoint(
        cls, model_type: str, checkpoint: Path, cache: EmbeddingCache | None = None, **options: Any
    ) -> SamMaskEngine:
        """Load a checkpoint through ``sam_model_registry`` (vit_b, vit_l or vit_h).

        Raises:
            ConfigError: when the file is missing or does not fit the model type.
        """
        from segment_anything import sam_model_registry

        if model_type not in sam_model_registry:
            raise ConfigError(
                f"unknown SAM model type {model_type!r}.", hint="set CRAFT_SAM_MODEL_TYPE to vit_b, vit_l or vit_h."
            )
        if not checkpoint.is_file():
            raise ConfigError(
                f"SAM checkpoint {checkpoint} does not exist.",
                hint="set CRAFT_SAM_CHECKPOINT to a downloaded segment-anything checkpoint, or unset it to use "
                "the classical engine.",
            )
        try:
            model = sam_model_registry[model_type](checkpoint=str(checkpoint))
        except (RuntimeError, KeyError) as exc:
            raise ConfigError(
                f"{checkpoint} is not a {model_type} segment-anything checkpoint ({exc}).",
                hint="check CRAFT_SAM_MODEL_TYPE matches the checkpoint (sam_vit_b_... is vit_b).",
            ) from exc
        return cls(model, f"{model_type}:{file_sha256(checkpoint)}", cache, **options)

    def segment(self, request: MaskRequest) -> MaskResult:
        """Segment the target on each date where it is visible and combine them.

        Of SAM's three proposals the one agreeing best with the seed (the change map's region) is taken;
        without a seed, the one SAM scores highest.
        """
        height, width = request.pre.shape[:2]
        window = self._window(request, width, height)
        masks, predicted = [], []
        for date in request.dates:
            self._set_image(request, date, window)
            mask, score = self._predict(request, window)
            masks.append(mask)
            predicted.append(score)
        crop = clean_mask(combine_dates(masks), self.min_area, self.max_hole)
        seed = request.seed[window.slices] if request.seed is not None else None
        return MaskResult(
            mask=window.to_rle(crop, height, width),
            engine=self.name,
            dates=request.dates,
            scores={
                MaskScore.AGREEMENT: round(agreement(crop, seed, window.local_box(request.box)), 4),
                MaskScore.PREDICTED_IOU: round(float(min(predicted)), 4),
            },
        )

    def _window(self, request: MaskRequest, width: int, height: int) -> Window:
        if max(width, height) <= self.tile_size:
            return Window(0, 0, width, height)
        box = request.box
        if box.width > self.tile_size or box.height > self.tile_size:
            return Window(0, 0, width, height)  # the target itself is larger than a tile

        def start(low: int, high: int, extent: int) -> int:
            centre = (low + high) // 2
            return int(min(max(0, centre - self.tile_size // 2), max(0, extent - self.tile_size)))

        x0, y0 = start(box.x0, box.x1, width), start(box.y0, box.y1, height)
        return Window(x0, y0, min(width, x0 + self.tile_size), min(height, y0 + self.tile_size))

    def _set_image(self, request: MaskRequest, date: str, window: Window) -> None:
        image_key = f"{request.key(date)}@{window.x0},{window.y0},{window.x1},{window.y1}"
        if self._current and self._current[0] == image_key:
            return
        entry = self.cache.load(image_key, self.model_key) if self.cache else None
        predictor = self.predictor
        if entry is None:
            crop = np.ascontiguousarray(request.image(date)[window.y0 : window.y1, window.x0 : window.x1])
            if self.bfloat16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    predictor.set_image(crop)
                predictor.features = predictor.features.float()
            else:
                predictor.set_image(crop)
            self.encoder_runs += 1
            entry = {
                "features": predictor.features.detach().cpu(),
                "original_size": list(predictor.original_size),
                "input_size": list(predictor.input_size),
            }
            if self.cache:
                self.cache.store(image_key, self.model_key, entry)
        else:
            predictor.reset_image()
            predictor.features = entry["features"].to(predictor.device)
            predictor.original_size = tuple(entry["original_size"])
            predictor.input_size = tuple(entry["input_size"])
            predictor.is_image_set = True
        self._current = (image_key, window)

    def _predict(self, request: MaskRequest, window: Window) -> tuple[np.ndarray, float]:
        """The best of SAM's proposals, as a mask of the window."""
        box = request.box
        points = [(x - window.x0, y - window.y0, 1) for x, y in request.positive_points]
        points += [(x - window.x0, y - window.y0, 0) for x, y in request.negative_points]
        inside = [p for p in points if 0 <= p[0] < window.x1 - window.x0 and 0 <= p[1] < window.y1 - window.y0]
        coords = np.array([[p[0], p[1]] for p in inside], dtype=np.float32) if inside else None
        labels = np.array([p[2] for p in inside], dtype=np.int64) if inside else None
        prompt_box = (
            np.array([box.x0 - window.x0, box.y0 - window.y0, box.x1 - window.x0, box.y1 - window.y0], np.float32)
            if request.box_is_prompt or coords is None
            else None
        )
        with torch.no_grad():
            proposals, scores, _ = self.predictor.predict(
                point_coords=coords, point_labels=labels, box=prompt_box, multimask_output=True
            )
        seed = None
        if request.seed is not None:
            seed = request.seed[window.y0 : window.y1, window.x0 : window.x1]
        if seed is not None and seed.any():
            agreements = [mask_iou(p, seed) for p in proposals]
            best = int(np.argmax(agreements))
        else:
            best = int(np.argmax(scores))
        return np.asarray(proposals[best], dtype=bool), float(scores[best])
