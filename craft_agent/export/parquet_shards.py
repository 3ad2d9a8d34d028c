"""Parquet shards, one row per pair: ``parquet/<split>-00000-of-00002.parquet``, loadable with Hugging Face
``datasets`` (``load_dataset("parquet", data_files={"train": "parquet/train-*.parquet"})``).

Columns: the pair (id, name, domain, group, split, width, height), both images as PNG bytes, and
``samples``: one struct per expression target with its expressions, COCO RLE mask (``size``, ``counts``),
change type and MTRefSeg code, category, audit summary and provenance (JSON text).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from craft_agent.export.base import ExportOptions, ImageSource, by_split
from craft_agent.export.samples import ExportSample, Selection

SAMPLE_TYPE = pa.struct(
    [
        ("sample_id", pa.string()),
        ("expressions", pa.list_(pa.string())),
        ("mask_size", pa.list_(pa.int32())),
        ("mask_counts", pa.string()),
        ("no_target", pa.bool_()),
        ("change_type", pa.string()),
        ("change_code", pa.int8()),
        ("category", pa.string()),
        ("audit_state", pa.string()),
        ("audit_verdict", pa.string()),
        ("auditor", pa.string()),
        ("edited", pa.list_(pa.string())),
        ("provenance", pa.string()),
    ]
)
SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("pair_name", pa.string()),
        ("domain", pa.string()),
        ("group_id", pa.string()),
        ("split", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_a", pa.binary()),
        ("image_b", pa.binary()),
        ("samples", pa.list_(SAMPLE_TYPE)),
    ]
)


def _sample_struct(sample: ExportSample) -> dict[str, Any]:
    return {
        "sample_id": sample.sample_id,
        "expressions": sample.expressions,
        "mask_size": list(sample.mask.size),
        "mask_counts": sample.mask.counts,
        "no_target": sample.is_no_target,
        "change_type": sample.change_type,
        "change_code": sample.change_code,
        "category": sample.category,
        "audit_state": sample.audit.state,
        "audit_verdict": sample.audit.verdict,
        "auditor": sample.audit.auditor,
        "edited": sample.audit.edited,
        "provenance": json.dumps(sample.provenance, sort_keys=True),
    }


def write_parquet(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in by_split(selection):
        rows: list[dict[str, Any]] = []
        for pair_id in sorted({s.pair_id for s in samples}):
            pair = selection.pairs[pair_id]
            pre, post = images.pair_png(pair_id)
            rows.append(
                {
                    "pair_id": pair_id,
                    "pair_name": pair.name,
                    "domain": pair.domain.value,
                    "group_id": pair.group_id,
                    "split": split,
                    "width": pair.width,
                    "height": pair.height,
                    "image_a": pre,
                    "image_b": post,
                    "samples": [_sample_struct(s) for s in samples if s.pair_id == pair_id],
                }
            )
        per_shard = max(1, options.samples_per_shard)
        shards = [rows[i : i + per_shard] for i in range(0, len(rows), per_shard)]
        for index, shard in enumerate(shards):
            table = pa.Table.from_pylist(shard, schema=SCHEMA)
            path = root / f"{split}-{index:05d}-of-{len(shards):05d}.parquet"
            # The images are PNG already: compressing them again costs time and saves nothing.
            pq.write_table(
                table,
                path,
                compression={name: ("NONE" if name in ("image_a", "image_b") else "ZSTD") for name in SCHEMA.names},
                use_dictionary=[n for n in SCHEMA.names if n not in ("image_a", "image_b")],
                write_statistics=False,
            )
