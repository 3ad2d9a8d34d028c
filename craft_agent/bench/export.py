"""``craft-agent bench export``: export throughput against a plain tar of the same bytes, in one run.

An audited workspace is made from generated scenes (every drafted triplet accepted), then exported in the
chosen formats (sample selection, PNG encoding of masks, shards, card, manifest with sha256 of every file).
The same files are then written into one uncompressed tar with Python's ``tarfile``: the floor for moving
those bytes on this disk. ``ratio`` = export MB/s / tar MB/s; the target is at least 0.5.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore
from craft_agent.export import FORMATS, export_dataset
from craft_agent.export.importer import triplet_from_truth
from craft_agent.imagery.ingest import IngestOptions, ingest
from craft_agent.models import RLEMask, Triplet, TripletState, triplet_id
from craft_agent.synthetic import write_examples


def _audited_workspace(root: Path, pairs: int, size: int, seed: int) -> tuple[Catalog, ImageStore]:
    workspace = root / "workspace"
    catalog = Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}")
    store = ImageStore(workspace)
    write_examples(root / "examples", pairs=pairs, seed=seed, size=size)
    ingest(root / "examples", catalog, store, IngestOptions())
    ids = []
    for pair in catalog.iter_pairs():
        for k, change in enumerate(pair.gt_changes):
            triplet = triplet_from_truth(pair, change, f"the changed object {k}")
            catalog.upsert_triplet(triplet)
            ids.append(triplet.id)
        empty = RLEMask.empty(pair.height, pair.width)
        no_target = Triplet(
            id=triplet_id(pair.id, empty, None, "boat"),
            pair_id=pair.id,
            mask=empty,
            expressions=["the boat that appeared"],
            change_type=None,
            category="boat",
        )
        catalog.upsert_triplet(no_target)
        ids.append(no_target.id)
    catalog.move_triplets(ids, TripletState.QUEUED_FOR_AUDIT)
    catalog.move_triplets(ids, TripletState.ACCEPTED, reason="benchmark: accepted without audit")
    return catalog, store


def _warm_imports() -> None:
    """Load the writers' libraries first: their import time is the process's start-up, not export work."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import pandas  # noqa: F401  (pyarrow loads it to build tables from Python objects)
    import pyarrow.parquet  # noqa: F401
    import webdataset  # noqa: F401


def run_export_bench(
    pairs: int = 32, size: int = 1024, seed: int = 0, formats: list[str] | None = None
) -> dict[str, Any]:
    """Export throughput and the plain-tar floor on the same bytes; see the module docstring."""
    formats = formats or list(FORMATS)
    _warm_imports()
    with tempfile.TemporaryDirectory(prefix="craft-bench-export-") as tmp:
        root = Path(tmp)
        catalog, store = _audited_workspace(root, pairs, size, seed)
        try:
            out = root / "export"
            started = time.perf_counter()
            summary = export_dataset(catalog, store, out, formats)
            export_s = time.perf_counter() - started
        finally:
            catalog.close()
        files = sorted(p for p in out.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        started = time.perf_counter()
        with tarfile.open(root / "plain.tar", "w") as tar:
            for path in files:
                tar.add(path, arcname=path.relative_to(out).as_posix())
        tar_s = time.perf_counter() - started
    export_mbps = total / 1e6 / export_s
    tar_mbps = total / 1e6 / tar_s
    return {
        # three significant digits: a small export's rate (0.3 MB/s) or ratio (0.0066) keeps its precision
        "export_mb_per_s": _significant(export_mbps),
        "plain_tar_mb_per_s": _significant(tar_mbps),
        "ratio": _significant(export_mbps / tar_mbps),
        "target_ratio": 0.5,
        "megabytes": round(total / 1e6, 1),
        "files": len(files),
        "samples": summary.samples,
        "pairs": summary.pairs,
        "formats": formats,
        "export_s": round(export_s, 2),
        "plain_tar_s": round(tar_s, 2),
        "image_size": size,
    }


def _significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits."""
    return float(f"{value:.{digits}g}")
