"""Ingestion of the real research-only samples in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.imagery import IngestOptions, ingest

EXPECTED = {
    "levir_cd_256": (7, 7),
    "levir_cd_1024": (2, 2),
    "whu_cd_1024": (2, 2),
    "dsifn_cd_256": (7, 7),
    "oscd_s2": (3, 3),
    "second_qag360k": (5, 0),  # no change masks in that source
}


def craft(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "craft_agent", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_every_real_source_ingests_with_its_masks(
    source: str, shared_data: Path, catalog: Catalog, store: ImageStore
) -> None:
    pairs, with_masks = EXPECTED[source]
    summary = ingest(shared_data / source, catalog, store, IngestOptions())
    assert summary.failed == []
    assert (summary.ingested, summary.with_ground_truth) == (pairs, with_masks)
    for pair in catalog.iter_pairs():
        if pair.gt_mask is None:
            continue
        png = shared_data / source / pair.source.mask if pair.source.mask else None
        assert png is not None
        expected = np.asarray(Image.open(png).convert("L")) > 127
        assert np.array_equal(pair.gt_mask.to_array(), expected), pair.name


def test_oscd_pairs_keep_epsg4326_georeference_and_dates(
    shared_data: Path, catalog: Catalog, store: ImageStore
) -> None:
    ingest(shared_data / "oscd_s2", catalog, store, IngestOptions())
    manifest = json.loads((shared_data / "oscd_s2" / "manifest.json").read_text())
    by_name = {p.name: p for p in catalog.iter_pairs()}
    assert len(by_name) == 3
    for entry in manifest["pairs"]:
        pair = by_name[entry["id"]]
        assert pair.georef is not None and pair.georef.crs == "EPSG:4326"
        assert pair.georef.transform == pytest.approx(entry["transform"])
        assert (pair.width, pair.height) == (entry["width"], entry["height"])
        # old-format S2 granule names carry the production time only: no date rather than a wrong one
        assert pair.date_pre is None or pair.date_pre.strftime("%Y%m%d") == entry["date_pre"]
        assert pair.date_post is not None and pair.date_post.strftime("%Y%m%d") == entry["date_post"]
        assert pair.gt_mask is not None
        assert pair.gt_mask.area / (pair.width * pair.height) == pytest.approx(entry["changed_fraction"], abs=1e-4)
        pre = store.load(pair.pre)
        # stretched from dark 16-bit reflectance to a usable 8-bit range
        assert 60 < pre.mean() < 200 and pre.std() > 20


def test_cli_ingest_levir_json_summary_and_idempotence(shared_data: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    first = craft("ingest", str(shared_data / "levir_cd_256"), "--workspace", str(workspace), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert {k: summary[k] for k in ("ingested", "skipped", "failed")} == {"ingested": 7, "skipped": 0, "failed": []}
    again = json.loads(craft("ingest", str(shared_data / "levir_cd_256"), "-w", str(workspace), "--json").stdout)
    assert (again["ingested"], again["skipped"]) == (0, 7)
    collection = craft("ingest", str(shared_data), "-w", str(workspace), "--json")
    everything = json.loads(collection.stdout)
    assert everything["layout"] == "collection" and everything["failed"] == []
    assert everything["ingested"] + everything["skipped"] == sum(p for p, _ in EXPECTED.values())
