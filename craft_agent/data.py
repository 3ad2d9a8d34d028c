"""Readers of craft-agent exports for training: one sample dict, whatever the format.

Every reader yields the same dict per sample::

    {"sample_id": str, "pair_id": str, "split": str, "domain": "rs" | "ns",
     "image_a": uint8 (H, W, 3) RGB, "image_b": uint8 (H, W, 3) RGB, "mask": bool (H, W),
     "expressions": list[str], "change_type": str | None, "change_code": int, "category": str | None}

``MTRSDataset`` (a map-style ``torch.utils.data.Dataset``) reads the MTRefSeg layout, Parquet and
gRefCOCO exports; ``MTRSIterableDataset`` streams WebDataset shards. :func:`open_dataset` picks by format.
``root`` is the export folder (holding ``manifest.json``) or the format's own folder.

Batching: samples hold a varying number of expressions (and ``None`` for a no-target sample's type), which
PyTorch's default collate cannot batch; pass :func:`collate_samples`::

    DataLoader(MTRSDataset(root), batch_size=8, collate_fn=collate_samples)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset, IterableDataset

from craft_agent.errors import ConfigError
from craft_agent.models import RLEMask

Sample = dict[str, Any]
FORMATS = ("mtrefseg", "webdataset", "parquet", "grefcoco")


def _rgb(data: bytes | Path) -> np.ndarray:
    raw = data.read_bytes() if isinstance(data, Path) else data
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(
            f"an image of the export does not decode ({data if isinstance(data, Path) else 'bytes'}).",
            hint="run `craft-agent validate` on the export.",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _image_bytes(cell: bytes | dict[str, Any]) -> bytes:
    """The PNG bytes of a Parquet image cell: a ``datasets`` ``Image`` struct, or plain bytes (older exports)."""
    return cell["bytes"] if isinstance(cell, dict) else cell


def _binary(data: bytes | Path) -> np.ndarray:
    raw = data.read_bytes() if isinstance(data, Path) else data
    mask = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ConfigError("a mask of the export does not decode.", hint="run `craft-agent validate` on the export.")
    return mask > 127


def _folder(root: Path, fmt: str) -> Path:
    if (root / fmt).is_dir():
        return root / fmt
    if root.is_dir():
        return root
    raise ConfigError(f"{root} is not an export folder.", hint="point at the folder `craft-agent export` wrote.")


def _splits(split: str | None) -> set[str] | None:
    return None if split in (None, "all") else {str(split)}


class MTRSDataset(Dataset[Sample]):
    """Map-style reader of an ``mtrefseg``, ``parquet`` or ``grefcoco`` export.

    Args:
        root: the export folder, or the format's folder inside it.
        fmt: one of ``mtrefseg``, ``parquet``, ``grefcoco``.
        split: ``train``, ``val``, ``test``, or None / ``all`` for every split.
    """

    def __init__(self, root: Path, fmt: str = "mtrefseg", split: str | None = None) -> None:
        if fmt not in ("mtrefseg", "parquet", "grefcoco"):
            raise ConfigError(
                f"MTRSDataset reads mtrefseg, parquet or grefcoco, not {fmt!r}.",
                hint="use MTRSIterableDataset (or open_dataset) for webdataset shards.",
            )
        self.format = fmt
        self.folder = _folder(Path(root), fmt)
        wanted = _splits(split)
        self._items: list[Any] = []
        if fmt == "mtrefseg":
            for split_dir in sorted(p for p in self.folder.iterdir() if p.is_dir()):
                if wanted is None or split_dir.name in wanted:
                    self._items += sorted((split_dir / "referring_expression").glob("*.json"))
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            for path in sorted(self.folder.glob("*.parquet")):
                if wanted is None or path.name.split("-")[0] in wanted:
                    for row in pq.read_table(path).to_pylist():
                        self._items += [(row, sample) for sample in row["samples"]]
        else:
            instances = json.loads((self.folder / "instances.json").read_text(encoding="utf-8"))
            self._images = {image["id"]: image for image in instances["images"]}
            self._annotations = {ann["id"]: ann for ann in instances["annotations"]}
            refs = json.loads((self.folder / "grefs(unc).json").read_text(encoding="utf-8"))
            self._items = [ref for ref in refs if wanted is None or ref["split"] in wanted]
        self._items.sort(key=self._key)

    def _key(self, item: Any) -> str:
        if self.format == "mtrefseg":
            return str(item.stem)
        if self.format == "parquet":
            return str(item[1]["sample_id"])
        return str(item["sample_id"])

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:
        item = self._items[index]
        if self.format == "mtrefseg":
            return self._mtrefseg(item)
        if self.format == "parquet":
            return self._parquet(*item)
        return self._grefcoco(item)

    def _mtrefseg(self, path: Path) -> Sample:
        record = json.loads(path.read_text(encoding="utf-8"))
        split_dir = path.parent.parent
        mask = _binary(split_dir / "masks" / record["mask"][0]["path"])
        return {
            "sample_id": record["sample_id"],
            "pair_id": record.get("pair_id", Path(record["img_A"]).stem),
            "split": record.get("split", split_dir.name),
            "domain": record.get("domain"),
            "image_a": _rgb(split_dir / "A" / record["img_A"]),
            "image_b": _rgb(split_dir / "B" / record["img_B"]),
            "mask": mask,
            "expressions": list(record["referring_expressions"]),
            "change_type": record.get("change_type"),
            "change_code": int(record.get("change_code", -1 if not mask.any() else 0)),
            "category": record.get("category"),
        }

    @staticmethod
    def _parquet(row: dict[str, Any], sample: dict[str, Any]) -> Sample:
        mask = RLEMask(size=tuple(sample["mask_size"]), counts=sample["mask_counts"]).to_array() > 0
        return {
            "sample_id": sample["sample_id"],
            "pair_id": row["pair_id"],
            "split": row["split"],
            "domain": row["domain"],
            "image_a": _rgb(_image_bytes(row["image_a"])),
            "image_b": _rgb(_image_bytes(row["image_b"])),
            "mask": mask,
            "expressions": list(sample["expressions"]),
            "change_type": sample["change_type"],
            "change_code": int(sample["change_code"]),
            "category": sample["category"],
        }

    def _grefcoco(self, ref: dict[str, Any]) -> Sample:
        image = self._images[ref["image_id"]]
        mask = np.zeros((image["height"], image["width"]), bool)
        for ann_id in ref["ann_id"]:
            if ann_id != -1:
                segmentation = self._annotations[ann_id]["segmentation"]
                mask |= RLEMask(size=tuple(segmentation["size"]), counts=segmentation["counts"]).to_array() > 0
        change_type = ref.get("change_type")
        codes = {"appear": 0, "disappear": 1, "state_change": 2}
        return {
            "sample_id": ref["sample_id"],
            "pair_id": image["pair_id"],
            "split": ref["split"],
            "domain": image.get("domain"),
            "image_a": _rgb(self.folder / "images" / image["file_name_A"]),
            "image_b": _rgb(self.folder / "images" / image["file_name"]),
            "mask": mask,
            "expressions": [s["raw"] for s in ref["sentences"]],
            "change_type": change_type,
            "change_code": -1 if ref["ann_id"] == [-1] else codes.get(change_type or "", -1),
            "category": ref.get("category"),
        }


class MTRSIterableDataset(IterableDataset[Sample]):
    """Streams the samples of WebDataset shards in shard order (no shuffling: wrap it for that).

    Args:
        root: the export folder, or its ``webdataset`` folder.
        split: ``train``, ``val``, ``test``, or None / ``all``.
    """

    def __init__(self, root: Path, split: str | None = None) -> None:
        self.folder = _folder(Path(root), "webdataset")
        wanted = _splits(split)
        self.shards = [
            str(p) for p in sorted(self.folder.glob("*.tar")) if wanted is None or p.name.rsplit("-", 1)[0] in wanted
        ]

    def __iter__(self) -> Iterator[Sample]:
        import webdataset

        if not self.shards:
            return
        for item in webdataset.WebDataset(self.shards, shardshuffle=False, empty_check=False):
            record = json.loads(item["json"])
            yield {
                "sample_id": record["sample_id"],
                "pair_id": record["pair_id"],
                "split": record["split"],
                "domain": record["domain"],
                "image_a": _rgb(item["t1.png"]),
                "image_b": _rgb(item["t2.png"]),
                "mask": _binary(item["mask.png"]),
                "expressions": list(record["referring_expressions"]),
                "change_type": record["change_type"],
                "change_code": int(record["change_code"]),
                "category": record["category"],
            }


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
    """The reader for ``fmt`` over the export at ``root``.

    Raises:
        ConfigError: for an unknown format or a folder that is not an export.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}.", hint=f"use one of: {', '.join(FORMATS)}.")
    if fmt == "webdataset":
        return MTRSIterableDataset(root, split)
    return MTRSDataset(root, fmt, split)
