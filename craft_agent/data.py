"""Readers of craft-agent exports for training: one sample dict, whatever the format.

The readers themselves live with their formats (:mod:`craft_agent.formats`); this module is the PyTorch
face of them. Every sample is the dict described in :mod:`craft_agent.formats.base`::

    {"sample_id", "pair_id", "split", "domain", "image_a", "image_b", "mask",
     "expressions", "expression_index", "change_type", "change_code", "category"}

``MTRSDataset`` (a map-style ``torch.utils.data.Dataset``) reads the MTRefSeg layout, Parquet and
gRefCOCO exports; ``MTRSIterableDataset`` streams any format (WebDataset shards have no random access).
:func:`open_dataset` picks by format. ``root`` is the export folder (holding ``manifest.json``) or the
format's own folder.

Batching: samples hold a varying number of expressions (and ``None`` for a no-target sample's type), which
PyTorch's default collate cannot batch; pass :func:`collate_samples`::

    DataLoader(MTRSDataset(root), batch_size=8, collate_fn=collate_samples)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset, IterableDataset

from craft_agent.errors import ConfigError
from craft_agent.formats import FORMATS, Sample, get_format

__all__ = ["FORMATS", "MTRSDataset", "MTRSIterableDataset", "Sample", "collate_samples", "open_dataset"]


def _folder(root: Path, fmt: str) -> Path:
    if (root / fmt).is_dir():
        return root / fmt
    if root.is_dir():
        return root
    raise ConfigError(f"{root} is not an export folder.", hint="point at the folder `craft-agent export` wrote.")


def _splits(split: str | None) -> set[str] | None:
    return None if split in (None, "all") else {str(split)}


class MTRSDataset(Dataset[Sample]):
    """Map-style reader of an ``mtrefseg``, ``parquet`` or ``grefcoco`` export, by sample id.

    Args:
        root: the export folder, or the format's folder inside it.
        fmt: one of ``mtrefseg``, ``parquet``, ``grefcoco``.
        split: ``train``, ``val``, ``test``, or None / ``all`` for every split.
    """

    def __init__(self, root: Path, fmt: str = "mtrefseg", split: str | None = None) -> None:
        found = get_format(fmt)
        if found.open is None:
            raise ConfigError(
                f"{fmt} has no random access, so MTRSDataset cannot read it.",
                hint="use MTRSIterableDataset (or open_dataset) for webdataset shards.",
            )
        self.format = fmt
        self.folder = _folder(Path(root), fmt)
        self._reader = found.open(self.folder, _splits(split))

    def __len__(self) -> int:
        return len(self._reader)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self._reader):
            raise IndexError(index)
        return self._reader[index]


class MTRSIterableDataset(IterableDataset[Sample]):
    """Streams the samples of an export in file order (no shuffling: wrap it for that).

    Args:
        root: the export folder, or the format's folder.
        split: ``train``, ``val``, ``test``, or None / ``all``.
        fmt: the format, ``webdataset`` by default.
    """

    def __init__(self, root: Path, split: str | None = None, fmt: str = "webdataset") -> None:
        self.format = get_format(fmt)
        self.folder = _folder(Path(root), fmt)
        self.splits = _splits(split)

    def __iter__(self) -> Iterator[Sample]:
        return self.format.samples(self.folder, self.splits)


def collate_samples(batch: list[Sample]) -> dict[str, Any]:
    """A batch of samples: ``image_a`` / ``image_b`` as uint8 tensors (B, H, W, 3), ``mask`` as a bool tensor
    (B, H, W), ``change_code`` as an int64 tensor, and every other field as a list of the samples' values
    (``expressions``: one list of strings per sample).

    Raises:
        ConfigError: when the samples' images differ in size (resize them in a transform first).
    """
    import torch

    if not batch:
        return {}
    shapes = {sample["image_a"].shape for sample in batch} | {sample["image_b"].shape for sample in batch}
    if len(shapes) > 1:
        raise ConfigError(
            f"the samples of one batch have images of different sizes ({sorted(shapes)}).",
            hint="resize or crop the samples to one size in a transform before batching, or use batch_size=1.",
        )
    stacked = {
        "image_a": torch.from_numpy(np.stack([s["image_a"] for s in batch])),
        "image_b": torch.from_numpy(np.stack([s["image_b"] for s in batch])),
        "mask": torch.from_numpy(np.stack([s["mask"] for s in batch])),
        "change_code": torch.tensor([int(s["change_code"]) for s in batch], dtype=torch.int64),
    }
    listed = {key: [s[key] for s in batch] for key in batch[0] if key not in stacked}
    return {**listed, **stacked}


def open_dataset(root: Path, fmt: str, split: str | None = None) -> MTRSDataset | MTRSIterableDataset:
    """The reader for ``fmt`` over the export at ``root``: map-style where the format allows it.

    Raises:
        ConfigError: for an unknown format or a folder that is not an export.
    """
    if not get_format(fmt).random_access:
        return MTRSIterableDataset(root, split, fmt)
    return MTRSDataset(root, fmt, split)
