"""Parquet shards, one row per pair, ``parquet/<split>-00000-of-00002.parquet``: written, validated and read
here; loadable with Hugging Face ``datasets`` (``load_dataset("parquet", data_files={"train":
"parquet/train-*.parquet"})``, or ``load_dataset(EXPORT_DIR)`` through the card's configs).

Columns: the pair (id, name, domain, group, split, width, height), both images (``image_a`` earlier,
``image_b`` later) as ``datasets`` ``Image`` structs holding the PNG bytes, so ``datasets`` decodes them to
PIL images, and ``samples``: one struct per expression target with its expressions, COCO RLE mask
(``mask_size``, ``mask_counts``), change type and MTRefSeg code, category, audit summary and provenance
(JSON text). Shards are written as the pairs are read, so memory stays bounded however large a split.

The reader indexes the samples from the small columns only and reads a pair's images when its sample is
asked for, one row group at a time (the last few are kept), so memory stays bounded when reading too.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from craft_agent.errors import ConfigError
from craft_agent.formats.base import (
    ExportOptions,
    Format,
    ImageSource,
    Sample,
    ValidationReport,
    by_split,
    image_size,
    rgb,
)
from craft_agent.models import RLEMask

if TYPE_CHECKING:
    from craft_agent.export.samples import ExportSample, Selection

NAME = "parquet"

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
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
"""Hugging Face ``datasets``' storage of an ``Image`` feature; ``path`` is left empty (the bytes are the image)."""
IMAGE_COLUMNS = ("image_a", "image_b")
# Declared in the schema's metadata, where ``datasets`` looks for its features: the image columns decode to
# PIL images. The other columns are left to its inference from the Arrow types (their feature syntax
# changed between ``datasets`` versions; the Arrow types did not).
HF_FEATURES = {"info": {"features": {name: {"_type": "Image"} for name in IMAGE_COLUMNS}}}
SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("pair_name", pa.string()),
        ("domain", pa.string()),
        ("group_id", pa.string()),
        ("split", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_a", IMAGE_TYPE),
        ("image_b", IMAGE_TYPE),
        ("samples", pa.list_(SAMPLE_TYPE)),
    ],
    metadata={"huggingface": json.dumps(HF_FEATURES, sort_keys=True)},
)
ROW_GROUP_PAIRS = 100
ROW_GROUP_BYTES = 64 << 20
"""A row group is written once it holds this many pairs or image bytes: the writer's memory bound, and
row groups small enough for the Hugging Face viewer."""


def _leaf_columns(name: str, kind: pa.DataType) -> list[str]:
    """Parquet's paths of the leaf columns under an Arrow field (the keys of per-column options)."""
    if pa.types.is_struct(kind):
        return [path for child in kind for path in _leaf_columns(f"{name}.{child.name}", child.type)]
    if pa.types.is_list(kind):
        return _leaf_columns(f"{name}.list.element", kind.value_type)
    return [name]


_LEAVES = [path for field in SCHEMA for path in _leaf_columns(field.name, field.type)]
# The images are PNG already: compressing them again costs time and saves nothing.
_STORED = {f"{name}.bytes" for name in IMAGE_COLUMNS}
_OPTIONS: dict[str, Any] = {
    "compression": {path: "NONE" if path in _STORED else "ZSTD" for path in _LEAVES},
    "use_dictionary": [path for path in _LEAVES if path not in _STORED],
    "write_statistics": False,
}


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


def _rows(
    selection: Selection, images: ImageSource, split: str, samples: list[ExportSample]
) -> Iterator[dict[str, Any]]:
    """One row per pair of ``samples``, by pair id; a pair's images are read only when its row is asked for."""
    by_pair: dict[str, list[ExportSample]] = {}
    for sample in samples:
        by_pair.setdefault(sample.pair_id, []).append(sample)
    for pair_id, pair_samples in sorted(by_pair.items()):
        pair = selection.pairs[pair_id]
        pre, post = images.pair_png(pair_id)
        yield {
            "pair_id": pair_id,
            "pair_name": pair.name,
            "domain": pair.domain.value,
            "group_id": pair.group_id,
            "split": split,
            "width": pair.width,
            "height": pair.height,
            "image_a": {"bytes": pre, "path": None},
            "image_b": {"bytes": post, "path": None},
            "samples": [_sample_struct(s) for s in pair_samples],
        }


def write_shards(rows: Iterable[dict[str, Any]], count: int, root: Path, split: str, per_shard: int) -> list[Path]:
    """Stream ``count`` rows into ``root/<split>-NNNNN-of-MMMMM.parquet``, ``per_shard`` rows a shard.

    Rows are pulled from ``rows`` as they are written: a shard is closed before the next one's first row is
    asked for, and at most one row group (:data:`ROW_GROUP_PAIRS` rows or :data:`ROW_GROUP_BYTES` of
    images) is held in memory. Returns the shards written, in order.

    Raises:
        ValueError: when ``rows`` does not hold exactly ``count`` rows (the shard names count the shards).
    """
    per_shard = max(1, per_shard)
    total = -(-count // per_shard)
    remaining = iter(rows)
    written = []
    consumed = 0
    for index in range(total):
        path = root / f"{split}-{index:05d}-of-{total:05d}.parquet"
        held: list[dict[str, Any]] = []
        held_bytes = 0
        with pq.ParquetWriter(path, SCHEMA, **_OPTIONS) as writer:
            for row in itertools.islice(remaining, per_shard):
                consumed += 1
                held.append(row)
                held_bytes += sum(len(row[name]["bytes"]) for name in IMAGE_COLUMNS)
                if len(held) >= ROW_GROUP_PAIRS or held_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.Table.from_pylist(held, schema=SCHEMA))
                    held, held_bytes = [], 0
            if held:
                writer.write_table(pa.Table.from_pylist(held, schema=SCHEMA))
        written.append(path)
    if consumed != count or next(remaining, None) is not None:
        found = f"{consumed}" if consumed != count else "more"
        raise ValueError(f"Parquet shards of {split}: {count} rows were announced, the rows held {found}")
    return written


def write(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in by_split(selection):
        pairs = len({s.pair_id for s in samples})
        write_shards(_rows(selection, images, split, samples), pairs, root, split, options.samples_per_shard)


# --- validating ------------------------------------------------------------------------------------------


def image_png(cell: Any) -> bytes:
    """The PNG bytes of an image cell: a ``datasets`` ``Image`` struct, or plain bytes (older exports)."""
    return bytes(cell["bytes"] if isinstance(cell, dict) else cell)


def _check_row(row: dict[str, Any], where: str, report: ValidationReport, counts: Counter[str]) -> None:
    size = image_size(image_png(row["image_a"]), where, report)
    if (
        size is None
        or size != image_size(image_png(row["image_b"]), where, report)
        or size != (row["height"], row["width"])
    ):
        report.errors.append(f"{where}: images unreadable or not {row['width']}x{row['height']}")
        return
    for sample in row["samples"]:
        report.masks_checked += 1
        try:
            mask = RLEMask(size=tuple(sample["mask_size"]), counts=sample["mask_counts"])
            mask.to_array()
        except (ValueError, TypeError) as exc:
            report.errors.append(f"{where}:{sample.get('sample_id')}: bad mask ({exc})")
            continue
        if mask.size != size:
            report.errors.append(f"{where}:{sample.get('sample_id')}: bad mask (mask is {mask.size}, image is {size})")
            continue
        counts[row["split"]] += 1


def validate(root: Path, report: ValidationReport) -> Counter[str]:
    """Every row's images decode at the row's size; every sample's RLE mask decodes at that size."""
    counts: Counter[str] = Counter()
    for path in sorted(root.glob("*.parquet")):
        try:
            # Batch by batch: a shard of large images need not fit in memory.
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    _check_row(row, f"parquet/{path.name}:{row.get('pair_id')}", report, counts)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            report.errors.append(f"parquet/{path.name}: unreadable ({exc})")
    return counts


# --- reading ---------------------------------------------------------------------------------------------

PAIR_COLUMNS = ["pair_id", "split", "domain"]
CACHED_ROW_GROUPS = 2


class Reader:
    """Samples of Parquet shards by sample id; images are read one row group at a time (see the module)."""

    def __init__(self, folder: Path, splits: set[str] | None = None) -> None:
        self.files = [p for p in sorted(folder.glob("*.parquet")) if splits is None or p.name.split("-")[0] in splits]
        self.items: list[tuple[str, int, int, int, dict[str, Any], dict[str, Any]]] = []
        """(sample id, file index, row group, row in the group, pair columns, sample struct)"""
        self._groups: OrderedDict[tuple[int, int], list[dict[str, Any]]] = OrderedDict()
        for file_index, path in enumerate(self.files):
            try:
                handle = pq.ParquetFile(path)
                for group in range(handle.num_row_groups):
                    table = handle.read_row_group(group, columns=[*PAIR_COLUMNS, "samples"])
                    for row_index, row in enumerate(table.to_pylist()):
                        pair = {key: row[key] for key in PAIR_COLUMNS}
                        for sample in row["samples"]:
                            self.items.append((sample["sample_id"], file_index, group, row_index, pair, sample))
            except (OSError, pa.ArrowException, KeyError) as exc:
                raise ConfigError(
                    f"{path} is not a readable Parquet shard of an export ({exc}).",
                    hint="run `craft-agent validate` on the export.",
                ) from exc
        self.items.sort(key=lambda item: item[0])

    def __len__(self) -> int:
        return len(self.items)

    def _images(self, file_index: int, group: int) -> list[dict[str, Any]]:
        key = (file_index, group)
        if key not in self._groups:
            table = pq.ParquetFile(self.files[file_index]).read_row_group(group, columns=list(IMAGE_COLUMNS))
            self._groups[key] = table.to_pylist()
            while len(self._groups) > CACHED_ROW_GROUPS:
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
        return self._groups[key]

    def __getitem__(self, index: int) -> Sample:
        sample_id, file_index, group, row_index, pair, sample = self.items[index]
        images = self._images(file_index, group)[row_index]
        mask = RLEMask(size=tuple(sample["mask_size"]), counts=sample["mask_counts"]).to_array() > 0
        return {
            "sample_id": sample_id,
            "pair_id": pair["pair_id"],
            "split": pair["split"],
            "domain": pair["domain"],
            "image_a": rgb(image_png(images["image_a"])),
            "image_b": rgb(image_png(images["image_b"])),
            "mask": mask,
            "expressions": list(sample["expressions"]),
            "expression_index": list(range(len(sample["expressions"]))),
            "change_type": sample["change_type"],
            "change_code": int(sample["change_code"]),
            "category": sample["category"],
        }


def stream(folder: Path, splits: set[str] | None = None) -> Iterator[Sample]:
    """The samples in file order, so each row group is read once."""
    reader = Reader(folder, splits)
    for index in sorted(range(len(reader)), key=lambda i: reader.items[i][1:4]):
        yield reader[index]


FORMAT = Format(
    name=NAME,
    write=write,
    validate=validate,
    stream=stream,
    open=Reader,
    description="Parquet shards, one row per pair, images as Hugging Face datasets Image features.",
)
