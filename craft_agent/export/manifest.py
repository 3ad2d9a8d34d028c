"""The export's manifest (sha256 of every file, counts, config, provenance) and ``validate``.

``validate`` trusts nothing: it re-hashes every file, refuses files the manifest does not list, runs each
format's own validator (:mod:`craft_agent.formats`: every mask decoded, binary, of its image's size) and
recounts the samples.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from craft_agent.formats import FORMATS, ValidationReport

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
        if name not in FORMATS or not folder.is_dir():
            report.errors.append(f"{name}: format folder missing or unknown")
            continue
        found = FORMATS[name].validate(folder, report)
        report.samples[name] = dict(sorted(found.items()))
        if dict(found) != {k: v for k, v in expected.items() if v}:
            report.errors.append(f"{name}: holds {dict(found)} samples by split, the manifest says {expected}")
    return report
