from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
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


_RUN_IN_A_CHILD = """
import os, signal, sys
from craft_agent.catalog import Catalog
catalog = Catalog(sys.argv[1])
run = catalog.start_run(sys.argv[2], {"child": True})
print(run, flush=True)
if sys.argv[2] == "ingest":
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-run: nothing finishes the run
sys.stdin.read()  # a live run: finishes when the test closes stdin
catalog.finish_run(run, {"done": True})
"""


def _run_in_a_child(url: str, kind: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _RUN_IN_A_CHILD, url, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_a_killed_run_is_marked_interrupted_by_the_next_run_and_shown_by_catalog_info(workspace: Path) -> None:
    from typer.testing import CliRunner

    from craft_agent.cli import app

    path = workspace / "catalog.sqlite"
    url = f"sqlite:///{path}"
    Catalog(url).close()
    # A catalog written before runs had a status, pid and host, with a run left open by an old version.
    with sqlite3.connect(path) as connection:
        for column in ("status", "pid", "host"):
            connection.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        connection.execute(
            "INSERT INTO runs (id, kind, started_at, finished_at, config) "
            "VALUES ('legacy', 'ingest', '2024-01-01 00:00:00', NULL, '{}')"
        )
    killed, killed_id = _run_in_a_child(url, "ingest")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    live, live_id = _run_in_a_child(url, "generate")
    try:
        with Catalog(url) as catalog:
            before = {r["id"]: r for r in catalog.runs()}
            # Seen as interrupted at once (read-only), stored as such by the next run of any stage.
            assert before[killed_id]["status"] == "interrupted" and before[killed_id]["pid"] == killed.pid
            assert (before[live_id]["status"], before["legacy"]["status"]) == ("running", "running")
            export_run = catalog.start_run("export", {"out": "x"})
        with sqlite3.connect(path) as connection:
            stored = dict(connection.execute("SELECT id, status FROM runs").fetchall())
        assert stored == {"legacy": None, killed_id: "interrupted", live_id: "running", export_run: "running"}
        assert live.stdin is not None
        live.stdin.close()
        assert live.wait(timeout=60) == 0
    finally:
        live.kill()
    with Catalog(url) as catalog:
        runs = {r["id"]: r for r in catalog.runs()}
        info = catalog.info()
    assert runs[live_id]["status"] == "finished" and runs[live_id]["summary"] == {"done": True}
    assert f"process {killed.pid}" in runs[killed_id]["summary"]["interrupted"]
    assert (runs[export_run]["status"], runs[export_run]["pid"]) == ("running", os.getpid())  # this process lives
    assert info["interrupted_runs"]["count"] == 1
    latest = info["interrupted_runs"]["latest"]
    assert (latest["id"], latest["kind"], latest["pid"]) == (killed_id, "ingest", killed.pid)

    runner = CliRunner()
    shown = runner.invoke(app, ["catalog", "info", "--workspace", str(workspace), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["interrupted_runs"] == info["interrupted_runs"]
    human = runner.invoke(app, ["catalog", "info", "--workspace", str(workspace)])
    text = " ".join(human.stdout.split())  # rich wraps lines at the terminal width
    assert "interrupted runs │ 1" in text and "latest interrupted run: ingest" in text
    assert f"process {killed.pid} on" in text


@pytest.mark.postgres
def test_postgresql_catalog_contract(postgres_url: str, workspace: Path, tmp_path: Path) -> None:
    with Catalog(postgres_url) as catalog:
        assert catalog.dialect == "postgresql"
        exercise_catalog(catalog, ImageStore(workspace), tmp_path)


def exercise_pair_removal(catalog: Catalog, store: ImageStore, tmp_path: Path) -> None:
    """Pairs are found by their source files and removed with all that hangs on them; audit work needs --force."""
    from craft_agent.catalog import PairRemoval

    pair_ids = _ingested(catalog, store, tmp_path)
    by_name = {p.name: p.id for p in catalog.iter_pairs()}
    assert sorted(catalog.pair_ids_from(tmp_path / "src")) == sorted(pair_ids)
    assert catalog.pair_ids_from(tmp_path / "src" / "B" / "p1.png") == [by_name["p1"]]
    assert catalog.pair_ids_from(tmp_path / "elsewhere") == []
    audited, drafted = by_name["p0"], by_name["p2"]
    catalog.add_candidates(
        [
            ChangeCandidate(
                id=f"c{k}",
                pair_id=pair_id,
                change_type=ChangeType.APPEAR,
                box=BBox(x0=1, y0=1, x1=9, y1=9),
                grid_cell="top-left",
            )
            for k, pair_id in enumerate((audited, drafted))
        ]
    )
    decided = _triplet(audited)
    catalog.upsert_triplet(decided)
    catalog.move_triplet(decided.id, TripletState.QUEUED_FOR_AUDIT)
    catalog.move_triplet(decided.id, TripletState.REJECTED)  # a rejection is audit work too
    catalog.upsert_audit(AuditRecord(id="ls-9", triplet_id=decided.id, verdict=Verdict.REJECT, auditor="ana"))
    catalog.upsert_triplet(_triplet(drafted, seed=3))
    assert catalog.remove_pairs([drafted]) == PairRemoval(pairs=1, triplets=1, audited_triplets=0, candidates=1)
    with pytest.raises(CatalogError, match=r"^1 triplet\(s\) of pair [0-9a-f]+ are audited") as refused:
        catalog.remove_pairs([audited])
    assert refused.value.hint is not None and "--force" in refused.value.hint
    assert catalog.count_pairs() == 2 and catalog.has_triplet(decided.id)  # nothing removed when refused
    with pytest.raises(CatalogError, match="no pair ffffffffffffffff in the catalog"):
        catalog.remove_pairs(["ffffffffffffffff"])
    forced = catalog.remove_pairs([audited], force=True)
    assert forced == PairRemoval(pairs=1, triplets=1, audited_triplets=1, candidates=1, audits=1)
    assert [p.id for p in catalog.iter_pairs()] == [by_name["p1"]]
    assert (catalog.count_candidates(), list(catalog.iter_triplets()), list(catalog.iter_audits())) == (0, [], [])
    assert catalog.triplet_history(decided.id) == []


def test_sqlite_pair_removal(catalog: Catalog, store: ImageStore, tmp_path: Path) -> None:
    exercise_pair_removal(catalog, store, tmp_path)


@pytest.mark.postgres
def test_postgresql_pair_removal(postgres_url: str, workspace: Path, tmp_path: Path) -> None:
    with Catalog(postgres_url) as catalog:
        exercise_pair_removal(catalog, ImageStore(workspace), tmp_path)
