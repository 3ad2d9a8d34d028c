"""The export's manifest (sha256 of every file, counts, config, provenance) and ``validate``.

``validate`` trusts nothing: it re-hashes every file, refuses files the manifest does not list, re-reads
every mask of every format (decodes, is binary, matches its image's size) and recounts the samples.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from craft_agent.models import RLEMask

MANIFEST = "manifest.json"
PREVIEW_NOTE = "UNAUDITED_PREVIEW.txt"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(
    root: Path, skip: set[str] | None = None, known: dict[Path, tuple[str, int]] | None = None
) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest (and ``skip``), by relative path.

    ``known`` gives (sha256, size) of files copied verbatim from the content-addressed store, not re-hashed.
    """
    table: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative == MANIFEST or relative in (skip or set()):
            continue
        given = (known or {}).get(path.resolve())
        sha256, size = given if given else (sha256_file(path), path.stat().st_size)
        table[relative] = {"sha256": sha256, "bytes": size}
    return table


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


def _decode_png(data: bytes, grey: bool) -> np.ndarray | None:
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


def _check_mask(data: bytes, size: tuple[int, int], where: str, report: ValidationReport) -> None:
    mask = _decode_png(data, grey=True)
    report.masks_checked += 1
    if mask is None:
        report.errors.append(f"{where}: mask does not decode as PNG")
    elif mask.shape != size:
        report.errors.append(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, its image is {size[1]}x{size[0]}")
    elif not np.isin(mask, (0, 255)).all():
        report.errors.append(f"{where}: mask is not binary 0/255")


def _image_size(data: bytes, where: str, report: ValidationReport) -> tuple[int, int] | None:
    image = _decode_png(data, grey=False)
    if image is None:
        report.errors.append(f"{where}: image does not decode as PNG")
        return None
    return int(image.shape[0]), int(image.shape[1])


def _validate_mtrefseg(root: Path, report: ValidationReport) -> Counter[str]:
    counts: Counter[str] = Counter()
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted((split_dir / "referring_expression").glob("*.json")):
            where = path.relative_to(root.parent).as_posix()
            try:
                sample = json.loads(path.read_text(encoding="utf-8"))
                image_a = split_dir / "A" / sample["img_A"]
                image_b = split_dir / "B" / sample["img_B"]
                masks = [split_dir / "masks" / m["path"] for m in sample["mask"]]
                expressions = sample["referring_expressions"]
                sample_id = sample["sample_id"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                report.errors.append(f"{where}: not a valid MTRefSeg sample ({exc})")
                continue
            if sample_id != path.stem:
                report.errors.append(f"{where}: not a valid MTRefSeg sample (sample_id differs from the file name)")
                continue
            if not expressions or len(masks) != len(expressions):
                report.errors.append(f"{where}: not a valid MTRefSeg sample (one mask per expression is required)")
                continue
            size_a = _image_size(image_a.read_bytes(), where + " img_A", report) if image_a.is_file() else None
            size_b = _image_size(image_b.read_bytes(), where + " img_B", report) if image_b.is_file() else None
            if size_a is None or size_b is None or size_a != size_b:
                report.errors.append(f"{where}: images missing, unreadable or of different sizes")
                continue
            for mask in sorted(set(masks)):
                if not mask.is_file():
                    report.errors.append(f"{where}: mask {mask.name} is missing")
                    continue
                _check_mask(mask.read_bytes(), size_a, f"{where} mask {mask.name}", report)
            counts[split_dir.name] += 1
    return counts


def _validate_webdataset(root: Path, report: ValidationReport) -> Counter[str]:
    counts: Counter[str] = Counter()
    for shard in sorted(root.glob("*.tar")):
        split = shard.name.rsplit("-", 1)[0]
        members: dict[str, dict[str, bytes]] = {}
        try:
            with tarfile.open(shard) as tar:
                for member in tar.getmembers():
                    key, _, extension = member.name.partition(".")
                    handle = tar.extractfile(member)
                    members.setdefault(key, {})[extension] = handle.read() if handle else b""
        except (tarfile.TarError, OSError) as exc:
            report.errors.append(f"webdataset/{shard.name}: unreadable tar ({exc})")
            continue
        for key, parts in members.items():
            where = f"webdataset/{shard.name}:{key}"
            if set(parts) != {"t1.png", "t2.png", "mask.png", "json"}:
                report.errors.append(f"{where}: has {sorted(parts)}, expected t1.png t2.png mask.png json")
                continue
            size = _image_size(parts["t1.png"], where, report)
            if size is None or size != _image_size(parts["t2.png"], where, report):
                report.errors.append(f"{where}: images unreadable or of different sizes")
                continue
            _check_mask(parts["mask.png"], size, where, report)
            try:
                record = json.loads(parts["json"])
                rle = RLEMask(size=tuple(record["mask_rle"]["size"]), counts=record["mask_rle"]["counts"])
                from_json = rle.to_array() > 0
            except (ValueError, KeyError, TypeError) as exc:
                report.errors.append(f"{where}: bad json ({exc})")
                continue
            decoded = _decode_png(parts["mask.png"], True)
            if decoded is None or not np.array_equal(from_json, decoded > 127):
                report.errors.append(f"{where}: bad json (mask.png and the json's RLE mask differ)")
                continue
            counts[split] += 1
    return counts


def _validate_parquet(root: Path, report: ValidationReport) -> Counter[str]:
    import pyarrow.parquet as pq

    counts: Counter[str] = Counter()
    for path in sorted(root.glob("*.parquet")):
        try:
            # Batch by batch: a shard of large images need not fit in memory.
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    _check_parquet_row(row, f"parquet/{path.name}:{row.get('pair_id')}", report, counts)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.errors.append(f"parquet/{path.name}: unreadable ({exc})")
    return counts


def _parquet_png(cell: Any) -> bytes:
    """The PNG bytes of a Parquet image cell: a ``datasets`` ``Image`` struct, or plain bytes (older exports)."""
    return bytes(cell["bytes"] if isinstance(cell, dict) else cell)


def _check_parquet_row(row: dict[str, Any], where: str, report: ValidationReport, counts: Counter[str]) -> None:
    size = _image_size(_parquet_png(row["image_a"]), where, report)
    if (
        size is None
        or size != _image_size(_parquet_png(row["image_b"]), where, report)
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


def _validate_grefcoco(root: Path, report: ValidationReport) -> Counter[str]:
    counts: Counter[str] = Counter()
    try:
        instances = json.loads((root / "instances.json").read_text(encoding="utf-8"))
        refs = json.loads((root / "grefs(unc).json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.errors.append(f"grefcoco: unreadable JSON ({exc})")
        return counts
    images = {image["id"]: image for image in instances["images"]}
    annotations = {ann["id"]: ann for ann in instances["annotations"]}
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


VALIDATORS = {
    "mtrefseg": _validate_mtrefseg,
    "webdataset": _validate_webdataset,
    "parquet": _validate_parquet,
    "grefcoco": _validate_grefcoco,
}


def validate(root: Path) -> ValidationReport:
    """Check an export folder completely; see the module docstring. Never raises for a bad export."""
    report = ValidationReport(root=str(root))
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed: dict[str, dict[str, Any]] = manifest["files"]
        report.formats = list(manifest["formats"])
        expected = manifest["counts"]["samples_by_split"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.errors.append(f"{manifest_path}: missing or unreadable manifest ({exc}); this is not a complete export")
        return report
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST}
    for extra in sorted(present - set(listed)):
        report.errors.append(f"{extra}: not listed in the manifest")
    for relative, entry in sorted(listed.items()):
        path = root / relative
        if not path.is_file():
            report.errors.append(f"{relative}: listed in the manifest but missing")
            continue
        report.files_checked += 1
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            report.errors.append(f"{relative}: checksum mismatch (the file was changed or corrupted)")
    if manifest.get("unaudited_preview") and not (root / PREVIEW_NOTE).is_file():
        report.errors.append(f"{PREVIEW_NOTE}: missing although the manifest marks an unaudited preview")
    for name in report.formats:
        folder = root / name
        if name not in VALIDATORS or not folder.is_dir():
            report.errors.append(f"{name}: format folder missing or unknown")
            continue
        found = VALIDATORS[name](folder, report)
        report.samples[name] = dict(sorted(found.items()))
        if dict(found) != {k: v for k, v in expected.items() if v}:
            report.errors.append(f"{name}: holds {dict(found)} samples by split, the manifest says {expected}")
    return report
