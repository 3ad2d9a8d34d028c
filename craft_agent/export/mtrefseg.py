"""MTRefSeg layout, as the published MTRefSeg loaders read it.

``<split>/A/<pair_id>.png``, ``<split>/B/<pair_id>.png``, ``<split>/masks/<sample_id>.png`` (binary 0/255,
all zeros for a no-target expression) and ``<split>/referring_expression/<sample_id>.json`` with ``img_A``,
``img_B`` (relative to ``A/`` and ``B/``), ``referring_expressions``, ``mask`` (one ``{"path"}`` per
expression, relative to ``masks/``) and ``sample_id``; craft-agent's extra fields (change type, category,
domain, audit) ride along and are ignored by loaders that do not know them.
"""

from __future__ import annotations

import json
from pathlib import Path

from craft_agent.export.base import ExportOptions, ImageSource, by_split, mask_png, sample_record
from craft_agent.export.samples import Selection


def write_mtrefseg(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    for split, samples in by_split(selection):
        folder = root / split
        for name in ("A", "B", "masks", "referring_expression"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        for sample in samples:
            image_a = folder / "A" / f"{sample.pair_id}.png"
            if not image_a.exists():
                images.copy_image(sample.pair_id, "pre", image_a)
                images.copy_image(sample.pair_id, "post", folder / "B" / f"{sample.pair_id}.png")
            (folder / "masks" / f"{sample.sample_id}.png").write_bytes(mask_png(sample))
            record = {
                "img_A": f"{sample.pair_id}.png",
                "img_B": f"{sample.pair_id}.png",
                "referring_expressions": sample.expressions,
                "mask": [{"path": f"{sample.sample_id}.png"} for _ in sample.expressions],
                "sample_id": sample.sample_id,
                **{k: v for k, v in sample_record(sample).items() if k not in ("sample_id", "referring_expressions")},
            }
            text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
            (folder / "referring_expression" / f"{sample.sample_id}.json").write_text(text, encoding="utf-8")
