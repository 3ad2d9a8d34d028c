from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import CatalogError, IllegalTransitionError, SchemaVersionError
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.models import (
    AuditRecord,
    BBox,
    ChangeCandidate,
    ChangeType,
    RLEMask,
    Triplet,
    TripletState,
    Verdict,
    triplet_id,
)
from tests.data import make_folder_source


def _triplet(pair_id: str, seed: int = 0) -> Triplet:
    mask = np.zeros((64, 64), dtype=bool)
    mask[seed : seed + 10, 5:20] = True
    rle = RLEMask.from_array(mask)
    return Triplet(
        id=triplet_id(pair_id, rle, ChangeType.APPEAR, "building"),
        pair_id=pair_id,
        mask=rle,
        expressions=["the red building that appeared near the road"],
        change_type=ChangeType.APPEAR,
        category="building",
    )


def _ingested(catalog: Catalog, store: ImageStore, tmp_path: Path) -> list[str]:
    summary = ingest(make_folder_source(tmp_path / "src"), catalog, store, IngestOptions())
    assert summary.ingested == 3
    return summary.pair_ids


def exercise_catalog(catalog: Catalog, store: ImageStore, tmp_path: Path) -> None:
    """The catalog contract, run against SQLite and PostgreSQL alike."""
    pair_ids = _ingested(catalog, store, tmp_path)
    # idempotent: the same pairs again add nothing
    again = ingest(tmp_path / "src", catalog, store, IngestOptions())
    assert (again.ingested, again.skipped) == (0, 3)
    assert catalog.count_pairs() == 3
    assert sorted(p.id for p in catalog.iter_pairs()) == sorted(pair_ids)
    pair = catalog.get_pair(pair_ids[0])
    assert store.load(pair.pre).shape == (64, 64, 3)

    candidate = ChangeCandidate(
        id="c1",
        pair_id=pair.id,
        change_type=ChangeType.APPEAR,
        box=BBox(x0=1, y0=1, x1=9, y1=9),
        grid_cell="top-left",
        scores={"confidence": 0.8},
    )
    assert catalog.add_candidates([candidate, candidate]) == 1
    assert catalog.add_candidates([candidate]) == 0
    assert catalog.candidates_for(pair.id) == [candidate]

    triplet = _triplet(pair.id)
    assert catalog.upsert_triplet(triplet) is True
    assert catalog.upsert_triplet(triplet) is False
    catalog.move_triplet(triplet.id, TripletState.QUEUED_FOR_AUDIT, reason="pushed")
    with pytest.raises(IllegalTransitionError):
        catalog.move_triplet(triplet.id, TripletState.EXPORTED)
    catalog.move_triplet(triplet.id, TripletState.ACCEPTED, reason="audit")
    assert catalog.get_triplet(triplet.id).state is TripletState.ACCEPTED
    assert catalog.triplet_history(triplet.id) == [
        (None, "drafted", None),
        ("drafted", "queued_for_audit", "pushed"),
        ("queued_for_audit", "accepted", "audit"),
    ]
    counts = catalog.triplet_counts()
    assert counts["accepted"] == 1 and counts["drafted"] == 0

    audit = AuditRecord(id="ls-1", triplet_id=triplet.id, verdict=Verdict.ACCEPT, auditor="ana", lead_time_s=12.5)
    assert catalog.upsert_audit(audit) is True
    assert catalog.upsert_audit(audit.model_copy(update={"comment": "fine"})) is False
    assert [a.comment for a in catalog.audits_for(triplet.id)] == ["fine"]

    with pytest.raises(CatalogError, match="no pair"):
        catalog.get_pair("ffffffffffffffff")
    info = catalog.info()
    assert info["pairs"] == 3 and info["candidates"] == 1 and info["audits"] == 1
    runs = catalog.runs("ingest")
    assert len(runs) == 2 and runs[-1]["summary"]["skipped"] == 3


def test_sqlite_catalog_contract(catalog: Catalog, store: ImageStore, tmp_path: Path) -> None:
    exercise_catalog(catalog, store, tmp_path)


def test_catalog_persists_across_processes_and_reopen(workspace: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{workspace / 'catalog.sqlite'}"
    with Catalog(url) as first:
        ids = _ingested(first, ImageStore(workspace), tmp_path)
    with Catalog(url) as second:
        assert sorted(p.id for p in second.iter_pairs()) == sorted(ids)


def test_schema_version_mismatch_is_refused_with_a_fix(workspace: Path) -> None:
    path = workspace / "catalog.sqlite"
    Catalog(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE catalog_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match="schema version 999") as error:
        Catalog(f"sqlite:///{path}")
    assert error.value.hint and "--workspace" in error.value.hint


def test_failures_are_recorded_per_run(catalog: Catalog) -> None:
    run = catalog.start_run("ingest", {"source": "x"})
    catalog.record_failure(run, "pre/a.png", "broken")
    catalog.finish_run(run, {"ingested": 0})
    assert catalog.failures(run) == [("pre/a.png", "broken")]


def test_corrupted_stored_image_is_detected(catalog: Catalog, store: ImageStore, tmp_path: Path) -> None:
    pair = catalog.get_pair(_ingested(catalog, store, tmp_path)[0])
    path = store.path_of(pair.pre)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match="does not match its content hash"):
        store.load(pair.pre)


@pytest.mark.postgres
def test_postgresql_catalog_contract(postgres_url: str, workspace: Path, tmp_path: Path) -> None:
    with Catalog(postgres_url) as catalog:
        assert catalog.dialect == "postgresql"
        exercise_catalog(catalog, ImageStore(workspace), tmp_path)
