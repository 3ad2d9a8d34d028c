"""gRefCOCO-style JSON for the RefCOCO family of codebases: written, validated and read here.

``grefcoco/instances.json`` (COCO images, annotations with RLE segmentation, categories) and
``grefcoco/grefs(unc).json`` (one ref per sample: ``ann_id`` a list, ``[-1]`` and ``no_target: true`` for a
no-target expression; ``sentences`` with ``raw``, ``sent``, ``tokens``). An image is a pair: ``file_name``
is the later image, ``file_name_A`` the earlier one, both under ``grefcoco/images/``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from craft_agent.errors import ConfigError
from craft_agent.formats.base import (
    CHANGE_CODES,
    ExportOptions,
    Format,
    ImageSource,
    Sample,
    ValidationReport,
    rgb,
)
from craft_agent.models import RLEMask

if TYPE_CHECKING:
    from craft_agent.export.samples import Selection

NAME = "grefcoco"
INSTANCES = "instances.json"
REFS = "grefs(unc).json"


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    (root / "images" / "A").mkdir(parents=True, exist_ok=True)
    (root / "images" / "B").mkdir(parents=True, exist_ok=True)
    image_ids = {pair_id: index + 1 for index, pair_id in enumerate(sorted(selection.pairs))}
    categories = sorted({s.category or "change" for s in selection.samples})
    category_ids = {name: index + 1 for index, name in enumerate(categories)}
    coco_images, annotations, refs = [], [], []
    for pair_id, image_id in image_ids.items():
        pair = selection.pairs[pair_id]
        images.copy_image(pair_id, "pre", root / "images" / "A" / f"{pair_id}.png")
        images.copy_image(pair_id, "post", root / "images" / "B" / f"{pair_id}.png")
        coco_images.append(
            {
                "id": image_id,
                "file_name": f"B/{pair_id}.png",
                "file_name_A": f"A/{pair_id}.png",
                "height": pair.height,
                "width": pair.width,
                "pair_id": pair_id,
                "domain": pair.domain.value,
            }
        )
    sentence_id = 0
    for ref_id, sample in enumerate(selection.samples, start=1):
        category_id = category_ids[sample.category or "change"]
        ann_ids = [-1]
        if not sample.is_no_target:
            bbox = sample.mask.bbox()
            annotations.append(
                {
                    "id": ref_id,
                    "image_id": image_ids[sample.pair_id],
                    "category_id": category_id,
                    "segmentation": {"size": list(sample.mask.size), "counts": sample.mask.counts},
                    "area": sample.mask.area,
                    "bbox": [bbox.x0, bbox.y0, bbox.width, bbox.height] if bbox else [0, 0, 0, 0],
                    "iscrowd": 0,
                    "change_type": sample.change_type,
                }
            )
            ann_ids = [ref_id]
        sentences = []
        for text in sample.expressions:
            sentences.append(
                {"raw": text, "sent": text.lower(), "tokens": text.lower().split(), "sent_id": sentence_id}
            )
            sentence_id += 1
        refs.append(
            {
                "ref_id": ref_id,
                "image_id": image_ids[sample.pair_id],
                "ann_id": ann_ids,
                "category_id": category_id,
                "split": sample.split,
                "sentences": sentences,
                "sent_ids": [s["sent_id"] for s in sentences],
                "no_target": sample.is_no_target,
                "sample_id": sample.sample_id,
                "change_type": sample.change_type,
                "category": sample.category,
            }
        )
    _dump(
        root / INSTANCES,
        {
            "images": coco_images,
            "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "change"} for name, i in category_ids.items()],
        },
    )
    _dump(root / REFS, refs)


def _load(root: Path) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """(images by id, annotations by id, refs).

    Raises:
        OSError, ValueError, KeyError, TypeError: for missing or malformed JSON.
    """
    instances = json.loads((root / INSTANCES).read_text(encoding="utf-8"))
    refs = json.loads((root / REFS).read_text(encoding="utf-8"))
    images = {image["id"]: image for image in instances["images"]}
    annotations = {ann["id"]: ann for ann in instances["annotations"]}
    if not isinstance(refs, list):
        raise TypeError(f"{REFS} holds no list of refs")
    return images, annotations, refs


def validate(root: Path, report: ValidationReport) -> Counter[str]:
    """Every ref's image exists; its annotations exist, match the image's size and state their area."""
    counts: Counter[str] = Counter()
    try:
        images, annotations, refs = _load(root)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.errors.append(f"grefcoco: unreadable JSON ({exc})")
        return counts
    for ref in refs:
        where = f"grefcoco ref {ref.get('ref_id')}"
        image = images.get(ref["image_id"])
        if image is None or not (root / "images" / image["file_name"]).is_file():
            report.errors.append(f"{where}: its image is missing")
            continue
        if ref["ann_id"] == [-1] and not ref.get("no_target"):
            report.errors.append(f"{where}: ann_id [-1] without no_target")
        for ann_id in ref["ann_id"]:
            if ann_id == -1:
                continue
            ann = annotations.get(ann_id)
            report.masks_checked += 1
            if ann is None:
                report.errors.append(f"{where}: annotation {ann_id} is missing")
                continue
            try:
                mask = RLEMask(size=tuple(ann["segmentation"]["size"]), counts=ann["segmentation"]["counts"])
                sizes_differ = mask.size != (image["height"], image["width"])
                area_differs = mask.area != ann["area"]
            except (ValueError, KeyError, TypeError) as exc:
                report.errors.append(f"{where}: bad annotation ({exc})")
                continue
            if sizes_differ:
                report.errors.append(f"{where}: bad annotation (mask and image sizes differ)")
            elif area_differs:
                report.errors.append(f"{where}: bad annotation (area differs from the mask)")
        counts[ref["split"]] += 1
    return counts


class Reader:
    """Samples of a gRefCOCO export by sample id (one per ref)."""

    def __init__(self, folder: Path, splits: set[str] | None = None) -> None:
        self.folder = folder
        try:
            self.images, self.annotations, refs = _load(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{folder} holds no readable gRefCOCO export ({exc}).", hint="run `craft-agent validate` on it."
            ) from exc
        self.refs = sorted(
            (ref for ref in refs if splits is None or ref["split"] in splits), key=lambda ref: str(ref["sample_id"])
        )

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> Sample:
        ref = self.refs[index]
        image = self.images[ref["image_id"]]
        mask = np.zeros((image["height"], image["width"]), bool)
        for ann_id in ref["ann_id"]:
            if ann_id != -1:
                segmentation = self.annotations[ann_id]["segmentation"]
                mask |= RLEMask(size=tuple(segmentation["size"]), counts=segmentation["counts"]).to_array() > 0
        change_type = ref.get("change_type")
        expressions = [s["raw"] for s in ref["sentences"]]
        return {
            "sample_id": ref["sample_id"],
            "pair_id": image["pair_id"],
            "split": ref["split"],
            "domain": image.get("domain"),
            "image_a": rgb(self.folder / "images" / image["file_name_A"]),
            "image_b": rgb(self.folder / "images" / image["file_name"]),
            "mask": mask,
            "expressions": expressions,
            "expression_index": list(range(len(expressions))),
            "change_type": change_type,
            "change_code": -1 if ref["ann_id"] == [-1] else CHANGE_CODES.get(change_type or "", -1),
            "category": ref.get("category"),
        }


FORMAT = Format(
    name=NAME,
    write=write,
    validate=validate,
    open=Reader,
    description="gRefCOCO-style JSON (instances.json, grefs(unc).json) for the RefCOCO family of codebases.",
)
