"""WebDataset tar shards for streaming training, ``webdataset/<split>-000000.tar``: written, validated and
read here.

Each sample is ``<key>.t1.png`` (earlier image), ``<key>.t2.png`` (later image), ``<key>.mask.png``
(binary 0/255) and ``<key>.json`` (expressions, change type, category, audit, provenance, mask as RLE);
the key is the sample id. Shards close at ``samples_per_shard`` samples or ``max_shard_bytes``. Members
carry a fixed time and owner so the same catalog state gives byte-identical tars. Reading streams the
shards in order (there is no random access; shuffle with a buffer, as WebDataset does).
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from craft_agent.formats.base import (
    ExportOptions,
    Format,
    ImageSource,
    Sample,
    ValidationReport,
    binary,
    by_split,
    check_mask,
    decode_png,
    image_size,
    mask_png,
    rgb,
    sample_record,
)
from craft_agent.models import RLEMask

if TYPE_CHECKING:
    from craft_agent.export.samples import Selection

NAME = "webdataset"
MEMBERS = ("t1.png", "t2.png", "mask.png", "json")


def shards(folder: Path, splits: set[str] | None = None) -> list[Path]:
    """The tar shards of ``splits`` (all when None), in order."""
    return [p for p in sorted(folder.glob("*.tar")) if splits is None or p.name.rsplit("-", 1)[0] in splits]


def write(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    import webdataset

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


def _members(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of a shard, one sample in memory at a time.

    Raises:
        tarfile.TarError, OSError: for an unreadable shard.
    """
    key: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(shard) as tar:
        for member in tar:
            name, _, extension = member.name.partition(".")
            if key is not None and name != key:
                yield key, parts
                parts = {}
            key = name
            handle = tar.extractfile(member)
            parts[extension] = handle.read() if handle else b""
    if key is not None:
        yield key, parts


def validate(root: Path, report: ValidationReport) -> Counter[str]:
    """Every sample has its four members; images decode at one size; the mask is binary, of that size, and
    equal to the JSON's RLE mask."""
    counts: Counter[str] = Counter()
    for shard in shards(root):
        split = shard.name.rsplit("-", 1)[0]
        try:
            samples = list(_members(shard))
        except (tarfile.TarError, OSError) as exc:
            report.errors.append(f"webdataset/{shard.name}: unreadable tar ({exc})")
            continue
        for key, parts in samples:
            where = f"webdataset/{shard.name}:{key}"
            if set(parts) != set(MEMBERS):
                report.errors.append(f"{where}: has {sorted(parts)}, expected {' '.join(MEMBERS)}")
                continue
            size = image_size(parts["t1.png"], where, report)
            if size is None or size != image_size(parts["t2.png"], where, report):
                report.errors.append(f"{where}: images unreadable or of different sizes")
                continue
            check_mask(parts["mask.png"], size, where, report)
            try:
                record = json.loads(parts["json"])
                rle = RLEMask(size=tuple(record["mask_rle"]["size"]), counts=record["mask_rle"]["counts"])
                from_json = rle.to_array() > 0
            except (ValueError, KeyError, TypeError) as exc:
                report.errors.append(f"{where}: bad json ({exc})")
                continue
            decoded = decode_png(parts["mask.png"], True)
            if decoded is None or not np.array_equal(from_json, decoded > 127):
                report.errors.append(f"{where}: bad json (mask.png and the json's RLE mask differ)")
                continue
            counts[split] += 1
    return counts


def stream(folder: Path, splits: set[str] | None = None) -> Iterator[Sample]:
    """The samples of the shards in order, decoded one at a time."""
    for shard in shards(folder, splits):
        for _key, parts in _members(shard):
            record = json.loads(parts["json"])
            expressions = list(record["referring_expressions"])
            yield {
                "sample_id": record["sample_id"],
                "pair_id": record["pair_id"],
                "split": record["split"],
                "domain": record["domain"],
                "image_a": rgb(parts["t1.png"]),
                "image_b": rgb(parts["t2.png"]),
                "mask": binary(parts["mask.png"]),
                "expressions": expressions,
                "expression_index": list(range(len(expressions))),
                "change_type": record["change_type"],
                "change_code": int(record["change_code"]),
                "category": record["category"],
            }


FORMAT = Format(
    name=NAME,
    write=write,
    validate=validate,
    stream=stream,
    description="WebDataset tar shards for streaming training (t1.png, t2.png, mask.png, json per sample).",
)
