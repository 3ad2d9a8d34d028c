"""What every shard writer gets: the selected samples, their pairs' image bytes, and the options."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from craft_agent.catalog.store import ImageStore
from craft_agent.export.samples import SPLITS, ExportSample, Selection
from craft_agent.models import ImagePair, StoredImage


@dataclass(frozen=True)
class ExportOptions:
    """Knobs shared by the writers.

    Args:
        samples_per_shard: most samples (WebDataset) or pairs (Parquet) in one shard.
        max_shard_bytes: a WebDataset shard is closed once it holds this many bytes.
    """

    samples_per_shard: int = 1000
    max_shard_bytes: int = 1 << 30


class ImageSource:
    """Stored PNG bytes of pairs (checked against their hash once) and encoded masks.

    Writers that store an image as a file of its own use :meth:`copy_image`, which copies the stored file
    in the kernel and records its already known sha256, so the manifest need not hash it again.
    """

    def __init__(self, store: ImageStore, pairs: dict[str, ImagePair]) -> None:
        self.store = store
        self.pairs = pairs
        self.known: dict[Path, tuple[str, int]] = {}
        """Files written by copy_image: absolute path -> (sha256, size)."""
        self._verified: set[str] = set()
        self._last: tuple[str, tuple[bytes, bytes]] | None = None

    def pair_png(self, pair_id: str) -> tuple[bytes, bytes]:
        """(earlier, later) PNG bytes exactly as stored at ingest: no re-encoding, so exports are byte-stable."""
        if self._last is None or self._last[0] != pair_id:
            pair = self.pairs[pair_id]
            self._last = (pair_id, (self._read(pair.pre), self._read(pair.post)))
        return self._last[1]

    def copy_image(self, pair_id: str, which: str, target: Path) -> None:
        """Copy the pair's earlier (``"pre"``) or later (``"post"``) image file to ``target``."""
        image: StoredImage = getattr(self.pairs[pair_id], which)
        if image.sha256 not in self._verified:
            self._read(image)
        source = self.store.path_of(image)
        shutil.copyfile(source, target)
        self.known[target.resolve()] = (image.sha256, source.stat().st_size)

    def _read(self, image: StoredImage) -> bytes:
        """Stored bytes, hash-checked the first time an image is read in this export."""
        data = self.store.read_png(image, verify=image.sha256 not in self._verified)
        self._verified.add(image.sha256)
        return data


@lru_cache(maxsize=4096)
def _mask_png_cached(counts: str, height: int, width: int) -> bytes:
    from craft_agent.models import RLEMask

    mask = RLEMask(size=(height, width), counts=counts).to_array()
    # Binary masks compress well without PNG's row filters, which cost most of the encoding time.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buffer = cv2.imencode(".png", (mask > 0).astype(np.uint8) * 255, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {width}x{height} mask as PNG")
    return buffer.tobytes()


def mask_png(sample: ExportSample) -> bytes:
    """The sample's mask as a binary 0/255 single-channel PNG (all zeros for a no-target expression)."""
    height, width = sample.mask.size
    return _mask_png_cached(sample.mask.counts, height, width)


def by_split(selection: Selection) -> Iterator[tuple[str, list[ExportSample]]]:
    for split in SPLITS:
        samples = [s for s in selection.samples if s.split == split]
        if samples:
            yield split, samples


def sample_record(sample: ExportSample) -> dict[str, Any]:
    """The sample's metadata as plain JSON (everything but pixels), shared by the formats."""
    return {
        "sample_id": sample.sample_id,
        "pair_id": sample.pair_id,
        "pair_name": sample.pair_name,
        "domain": sample.domain,
        "group_id": sample.group_id,
        "split": sample.split,
        "referring_expressions": sample.expressions,
        "change_type": sample.change_type,
        "change_code": sample.change_code,
        "category": sample.category,
        "no_target": sample.is_no_target,
        "mask_rle": {"size": list(sample.mask.size), "counts": sample.mask.counts},
        "audit": sample.audit.model_dump(mode="json"),
        "provenance": sample.provenance,
    }


class ShardWriter(Protocol):
    """One export format: writes ``selection`` under ``root`` (the format's own folder)."""

    def __call__(self, selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None: ...
