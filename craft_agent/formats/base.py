"""What every export format shares: the writer's inputs, the validator's report, the reader's sample.

A format (:class:`Format`) is three functions kept in one module, so writing, checking and reading it
cannot drift apart: ``write`` (selected samples -> files under the format's folder), ``validate`` (re-read
every file, report problems, count samples by split) and ``open`` (a reader yielding :data:`Sample` dicts).

Every reader yields the same dict per sample::

    {"sample_id": str, "pair_id": str, "split": str, "domain": "rs" | "ns" | None,
     "image_a": uint8 (H, W, 3) RGB, "image_b": uint8 (H, W, 3) RGB, "mask": bool (H, W),
     "expressions": list[str], "expression_index": list[int],
     "change_type": str | None, "change_code": int, "category": str | None}

``expression_index`` gives each expression's index in its source record (an MTRefSeg JSON whose expressions
point at different masks is read as one sample per mask), which is how predictions are named.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from craft_agent.errors import ConfigError

if TYPE_CHECKING:
    from craft_agent.catalog.store import ImageStore
    from craft_agent.export.samples import ExportSample, Selection
    from craft_agent.models import ImagePair, StoredImage

SPLITS = ("train", "val", "test")
Sample = dict[str, Any]
CHANGE_CODES = {"appear": 0, "disappear": 1, "state_change": 2}
"""MTRefSeg's change codes; -1 is a no-target expression."""


# --- writing ---------------------------------------------------------------------------------------------


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
    """Writes ``selection`` under ``root`` (the format's own folder)."""

    def __call__(self, selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None: ...


# --- validating ------------------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """What ``validate`` found. ``ok`` only when ``errors`` is empty."""

    root: str
    formats: list[str] = field(default_factory=list)
    files_checked: int = 0
    masks_checked: int = 0
    samples: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def decode_png(data: bytes, grey: bool) -> np.ndarray | None:
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


def check_mask(data: bytes, size: tuple[int, int], where: str, report: ValidationReport) -> None:
    """Count a mask and report it unless it decodes, is binary 0/255 and has its image's ``size``."""
    mask = decode_png(data, grey=True)
    report.masks_checked += 1
    if mask is None:
        report.errors.append(f"{where}: mask does not decode as PNG")
    elif mask.shape != size:
        report.errors.append(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, its image is {size[1]}x{size[0]}")
    elif not np.isin(mask, (0, 255)).all():
        report.errors.append(f"{where}: mask is not binary 0/255")


def image_size(data: bytes, where: str, report: ValidationReport) -> tuple[int, int] | None:
    """(height, width) of a PNG, or None after reporting that it does not decode."""
    image = decode_png(data, grey=False)
    if image is None:
        report.errors.append(f"{where}: image does not decode as PNG")
        return None
    return int(image.shape[0]), int(image.shape[1])


Validator = Callable[[Path, ValidationReport], Counter[str]]
"""Checks the format's folder, adds what it finds to the report, and returns its samples by split."""


# --- reading ---------------------------------------------------------------------------------------------


def rgb(data: bytes | Path) -> np.ndarray:
    """A PNG (bytes or file) as uint8 RGB.

    Raises:
        ConfigError: when it does not decode.
    """
    raw = data.read_bytes() if isinstance(data, Path) else data
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(
            f"an image of the export does not decode ({data if isinstance(data, Path) else 'bytes'}).",
            hint="run `craft-agent validate` on the export.",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def binary(data: bytes | Path) -> np.ndarray:
    """A mask PNG (bytes or file) as bool, foreground > 127.

    Raises:
        ConfigError: when it does not decode.
    """
    raw = data.read_bytes() if isinstance(data, Path) else data
    mask = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ConfigError(
            f"a mask of the export does not decode ({data if isinstance(data, Path) else 'bytes'}).",
            hint="run `craft-agent validate` on the export.",
        )
    return mask > 127


class SampleReader(Protocol):
    """Random access to a format's samples (the map-style formats)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass(frozen=True)
class Format:
    """One export format: its folder name and its writer, validator and reader.

    ``open(folder, splits)`` returns a :class:`SampleReader` for map-style formats; ``stream`` iterates the
    samples in file order where that differs from the reader's order (or where there is no reader).
    :meth:`samples` iterates either way. ``splits`` None means all.
    """

    name: str
    write: ShardWriter
    validate: Validator
    open: Callable[[Path, set[str] | None], SampleReader] | None = None
    stream: Callable[[Path, set[str] | None], Iterator[Sample]] | None = None
    description: str = ""

    @property
    def random_access(self) -> bool:
        return self.open is not None

    def samples(self, folder: Path, splits: set[str] | None = None) -> Iterator[Sample]:
        """Every sample of ``splits`` under the format's ``folder``, one at a time."""
        if self.stream is not None:
            return self.stream(folder, splits)
        if self.open is None:
            raise TypeError(f"format {self.name} has neither a reader nor a stream")
        reader = self.open(folder, splits)
        return (reader[index] for index in range(len(reader)))
