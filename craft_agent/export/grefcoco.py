"""gRefCOCO-style JSON for the RefCOCO family of codebases: ``grefcoco/instances.json`` (COCO images,
annotations with RLE segmentation, categories) and ``grefcoco/grefs(unc).json`` (one ref per sample:
``ann_id`` a list, ``[-1]`` and ``no_target: true`` for a no-target expression; ``sentences`` with
``raw``, ``sent``, ``tokens``). An image is a pair: ``file_name`` is the later image, ``file_name_A`` the
earlier one, both under ``grefcoco/images/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from craft_agent.export.base import ExportOptions, ImageSource
from craft_agent.export.samples import Selection


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_grefcoco(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
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
        root / "instances.json",
        {
            "images": coco_images,
            "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "change"} for name, i in category_ids.items()],
        },
    )
    _dump(root / "grefs(unc).json", refs)
