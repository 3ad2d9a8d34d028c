"""WebDataset tar shards for streaming training: ``webdataset/<split>-000000.tar``.

Each sample is ``<key>.t1.png`` (earlier image), ``<key>.t2.png`` (later image), ``<key>.mask.png``
(binary 0/255) and ``<key>.json`` (expressions, change type, category, audit, provenance, mask as RLE);
the key is the sample id. Shards close at ``samples_per_shard`` samples or ``max_shard_bytes``. Members
carry a fixed time and owner so the same catalog state gives byte-identical tars.
"""

from __future__ import annotations

import json
from pathlib import Path

import webdataset

from craft_agent.export.base import ExportOptions, ImageSource, by_split, mask_png, sample_record
from craft_agent.export.samples import Selection


def write_webdataset(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in by_split(selection):
        pattern = str(root / f"{split}-%06d.tar")
        with webdataset.ShardWriter(
            pattern,
            maxcount=options.samples_per_shard,
            maxsize=options.max_shard_bytes,
            verbose=0,
            mtime=0.0,
            user="craft",
            group="craft",
        ) as sink:
            for sample in samples:
                pre, post = images.pair_png(sample.pair_id)
                sink.write(
                    {
                        "__key__": sample.sample_id,
                        "t1.png": pre,
                        "t2.png": post,
                        "mask.png": mask_png(sample),
                        "json": json.dumps(sample_record(sample), sort_keys=True, ensure_ascii=False).encode(),
                    }
                )
