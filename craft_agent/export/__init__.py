"""Export audited triplets as dataset shards: MTRefSeg layout, WebDataset, Parquet, gRefCOCO JSON.

:func:`export_dataset` selects the samples (:mod:`.samples`), runs each format's writer (the registry
:data:`craft_agent.formats.FORMATS`, one module per format) into a temporary folder beside the
destination, adds the dataset card and the manifest, and renames the folder into place, so an interrupted
export never leaves anything that looks complete. The same catalog state always gives byte-identical
files. Exporting is read-only for the catalog; each export is recorded as a run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore
from craft_agent.errors import ConfigError
from craft_agent.export.card import split_warnings, write_card
from craft_agent.export.manifest import MANIFEST, PREVIEW_NOTE, file_table, validate
from craft_agent.export.samples import SPLITS, Selection, SplitConfig, select_samples
from craft_agent.formats import FORMATS, ExportOptions, ImageSource, ValidationReport
from craft_agent.localhost import pid_alive

__all__ = ["FORMATS", "ExportOptions", "ExportSummary", "ValidationReport", "export_dataset", "validate"]


@dataclass
class ExportSummary:
    out: str
    formats: list[str]
    samples: int
    pairs: int
    samples_by_split: dict[str, int]
    skipped: dict[str, int]
    unaudited_preview: bool
    bytes: int
    seconds: float
    dataset_version: str
    files: int = 0
    warnings: list[str] = field(default_factory=list)
    """What the export's user should know, e.g. a split that got no samples (also in the card)."""


def _counts(selection: Selection) -> dict[str, Any]:
    return {
        "samples": len(selection.samples),
        "pairs": len(selection.pairs),
        "samples_by_split": {split: sum(s.split == split for s in selection.samples) for split in SPLITS},
        "pairs_by_split": {split: len({s.pair_id for s in selection.samples if s.split == split}) for split in SPLITS},
        "by_domain": dict(sorted(Counter(s.domain for s in selection.samples).items())),
        "by_change_type": dict(sorted(Counter(s.change_type or "no_target" for s in selection.samples).items())),
        "by_category": dict(sorted(Counter(s.category or "-" for s in selection.samples).items())),
        "no_target": sum(s.is_no_target for s in selection.samples),
        "expressions": sum(len(s.expressions) for s in selection.samples),
    }


def _provenance(selection: Selection) -> dict[str, dict[str, int]]:
    summary: dict[str, Counter[str]] = {
        "backends": Counter(),
        "model_ids": Counter(),
        "audit_verdicts": Counter(),
        "auditors": Counter(),
    }
    for sample in selection.samples:
        for stage, backend in sample.provenance.get("backends", {}).items():
            summary["backends"][f"{stage}={backend}"] += 1
        for stage, model in sample.provenance.get("model_ids", {}).items():
            summary["model_ids"][f"{stage}={model}"] += 1
        summary["audit_verdicts"][sample.audit.verdict or "unaudited"] += 1
        if sample.audit.auditor:
            summary["auditors"][sample.audit.auditor] += 1
    return {key: dict(sorted(counter.items())) for key, counter in summary.items()}


def remove_dead_staging(out: Path) -> list[Path]:
    """Remove what killed exports to ``out`` left beside it; returns the folders removed.

    An export writes ``.<name>.partial-<pid>`` and, when replacing an export, moves the old one to
    ``.<name>.old-<pid>`` for a moment. A folder whose process no longer exists is removed, except an
    ``.old-`` one while ``out`` is missing (then it holds the only copy of the previous export). Folders of
    live processes are never touched: another export may be writing there.
    """
    removed = []
    for leftover in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, pid = leftover.name.removeprefix(f".{out.name}.").rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or not leftover.is_dir():
            continue
        if pid_alive(int(pid)) or (kind == "old" and not out.exists()):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    return removed


def export_dataset(
    catalog: Catalog,
    store: ImageStore,
    out: Path,
    formats: list[str],
    splits: SplitConfig | None = None,
    domain: Literal["rs", "ns", "all"] = "all",
    include_unaudited: bool = False,
    options: ExportOptions | None = None,
    name: str = "CRAFT-Agent MTRS dataset",
    dataset_version: str | None = None,
    license: str = "unspecified: set --license; the source imagery's licences apply",
    overwrite: bool = False,
) -> ExportSummary:
    """Write the audited samples of ``catalog`` to ``out`` in ``formats``; see the module docstring.

    Raises:
        ConfigError: for an unknown format, an existing non-empty ``out`` without ``overwrite``, or when no
            sample qualifies.
    """
    started = time.monotonic()
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(
            f"unknown export format(s): {', '.join(unknown) or '(none given)'}.",
            hint=f"use one or more of: {', '.join(FORMATS)}.",
        )
    formats = [f for f in FORMATS if f in formats]  # canonical order, no repeats
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"the export destination {out} is a file, not a folder.",
            hint="choose a new folder for the export (--out); --overwrite replaces only an earlier export folder.",
        )
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty.", hint="choose a new folder or pass --overwrite.")
    splits = splits or SplitConfig()
    options = options or ExportOptions()
    selection = select_samples(catalog, splits, domain, include_unaudited)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        images = ImageSource(store, selection.pairs)
        for fmt in formats:
            FORMATS[fmt].write(selection, images, staging / fmt, options)
        if include_unaudited:
            (staging / PREVIEW_NOTE).write_text(
                "UNAUDITED PREVIEW. This export includes triplets that no person has audited yet. "
                "Do not train or evaluate on it; export without --include-unaudited for a dataset.\n",
                encoding="utf-8",
            )
        content = file_table(staging, known=images.known)
        content_hash = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
        manifest: dict[str, Any] = {
            "name": name,
            "dataset_version": dataset_version or f"content-{content_hash}",
            "craft_agent_version": version("craft-agent"),
            "formats": formats,
            "unaudited_preview": include_unaudited,
            "license": license,
            "config": {
                "split_ratios": list(splits.ratios),
                "split_seed": splits.seed,
                "domain": domain,
                "include_unaudited": include_unaudited,
                "samples_per_shard": options.samples_per_shard,
                "max_shard_bytes": options.max_shard_bytes,
            },
            "counts": _counts(selection),
            "skipped": selection.skipped,
            "audit": selection.audit.model_dump(mode="json"),
            "warnings": split_warnings(selection, splits),
            "provenance": _provenance(selection),
        }
        write_card(selection, images, staging, manifest)
        # Hash only what the card added: every shard was hashed once above.
        card_files = file_table(staging, skip=set(content))
        manifest["files"] = dict(sorted({**content, **card_files}.items()))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        if out.exists():
            retired = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remove_dead_staging(out)  # a previous export a killed process had moved aside is obsolete now
    run_id = catalog.start_run("export", {**manifest["config"], "out": str(out), "formats": formats})
    total = sum(entry["bytes"] for entry in manifest["files"].values())
    summary = ExportSummary(
        out=str(out),
        formats=formats,
        samples=len(selection.samples),
        pairs=len(selection.pairs),
        samples_by_split=manifest["counts"]["samples_by_split"],
        skipped=selection.skipped,
        unaudited_preview=include_unaudited,
        bytes=total,
        seconds=round(time.monotonic() - started, 3),
        dataset_version=manifest["dataset_version"],
        files=len(manifest["files"]) + 1,
        warnings=manifest["warnings"],
    )
    catalog.finish_run(run_id, {"samples": summary.samples, "bytes": total, "dataset_version": summary.dataset_version})
    return summary
