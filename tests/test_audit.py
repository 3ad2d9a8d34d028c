"""Audit in Label Studio: the page contract (no server), then push / audit / pull against a real server."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from label_studio_sdk import LabelStudio

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.audit.labeling import (
    AUDITOR_VERDICTS,
    CHANGE_TYPE,
    COMMENT,
    EXPRESSION,
    IMAGE_A,
    IMAGE_B,
    MASK_A,
    MASK_B,
    VERDICT,
    audit_record,
    label_config,
    mask_from_results,
    prediction_result,
    submitted_result,
    target_images,
)
from craft_agent.audit.policy import decide
from craft_agent.audit.server import LocalLabelStudio
from craft_agent.audit.status import audit_status
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import AuditError, ConfigError, IllegalTransitionError
from craft_agent.localhost import free_port
from craft_agent.models import AuditRecord, ChangeType, RLEMask, Triplet, TripletState, Verdict, triplet_id
from craft_agent.settings import Settings
from tests.conftest import LabelStudioForTests
from tests.data import draft_triplets_from_truth

SIZE = (48, 64)


def _mask(seed: int, shape: tuple[int, int] = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for _ in range(3):
        y, x = rng.integers(0, shape[0] - 10), rng.integers(0, shape[1] - 10)
        mask[y : y + rng.integers(3, 10), x : x + rng.integers(3, 10)] = True
    mask[shape[0] // 2, :5] = True  # a one-pixel-high stroke: RLE must keep it exactly
    return mask


def _triplet(change_type: ChangeType | None, seed: int = 0, empty: bool = False) -> Triplet:
    mask = RLEMask.empty(*SIZE) if empty else RLEMask.from_array(_mask(seed))
    return Triplet(
        id=triplet_id("p" * 16, mask, change_type, "car"),
        pair_id="p" * 16,
        mask=mask,
        expressions=["the silver car that appeared", "the new car by the house"],
        change_type=change_type,
        category="car",
    )


def _annotation(
    triplet: Triplet,
    verdict: str,
    texts: list[str] | None = None,
    painted: dict[str, np.ndarray] | None = None,
    change: str | None = None,
    comment: str | None = None,
) -> list[dict[str, Any]]:
    """What an auditor submits: the proposal as shown, with their edits, plus the verdict."""
    return submitted_result(triplet, verdict, texts, painted, change, comment)


# -- the page contract, no server -------------------------------------------------------------------


def test_labeling_config_names_the_controls_the_code_reads() -> None:
    root = ET.fromstring(label_config())
    names = {node.get("name"): node for node in root.iter() if node.get("name")}
    for name in (IMAGE_A, IMAGE_B, MASK_A, MASK_B, EXPRESSION, CHANGE_TYPE, VERDICT, COMMENT):
        assert name in names, name
    verdict = names[VERDICT]
    assert verdict.get("required") == "true"
    assert tuple(c.get("alias") for c in verdict.iter("Choice")) == AUDITOR_VERDICTS
    assert {c.get("alias") for c in names[CHANGE_TYPE].iter("Choice")} == {t.value for t in ChangeType} | {"none"}
    hotkeys = [node.get("hotkey") for node in root.iter() if node.get("hotkey")]
    assert len(hotkeys) == len(set(hotkeys)), f"hotkeys collide: {hotkeys}"
    assert names[MASK_A].get("toName") == IMAGE_A and names[MASK_B].get("toName") == IMAGE_B


@pytest.mark.parametrize(
    ("change_type", "controls"),
    [
        (ChangeType.APPEAR, {MASK_B}),
        (ChangeType.DISAPPEAR, {MASK_A}),
        (ChangeType.STATE_CHANGE, {MASK_A, MASK_B}),
    ],
)
def test_prediction_puts_the_mask_where_the_target_is_and_round_trips_exactly(
    change_type: ChangeType, controls: set[str]
) -> None:
    triplet = _triplet(change_type, seed=3)
    result = prediction_result(triplet)
    assert {r["from_name"] for r in result if r["type"] == "brushlabels"} == controls == set(target_images(change_type))
    decoded = mask_from_results(result, SIZE)
    assert decoded is not None and decoded.counts == triplet.mask.counts
    assert np.array_equal(decoded.to_array(), _mask(3))


def test_no_target_prediction_has_no_mask_and_accepting_it_is_not_an_edit() -> None:
    triplet = _triplet(None, empty=True)
    assert mask_from_results(prediction_result(triplet), SIZE) is None
    record = audit_record({"id": 1, "result": _annotation(triplet, "accept")}, triplet, "r1", "ann@x.org")
    assert record.verdict is Verdict.ACCEPT and record.mask is None and not record.change_type_edited


def test_annotation_becomes_the_right_audit_record() -> None:
    triplet = _triplet(ChangeType.APPEAR, seed=1)

    def record(**kwargs: Any) -> AuditRecord:
        annotation = {"id": 7, "result": _annotation(triplet, **kwargs), "lead_time": 12.5}
        return audit_record(annotation, triplet, "r7", "ann@x.org", "42")

    accepted = record(verdict="accept")
    assert (accepted.verdict, accepted.expressions, accepted.mask, accepted.lead_time_s) == (
        Verdict.ACCEPT,
        None,
        None,
        12.5,
    )
    assert accepted.task_id == "42" and accepted.auditor == "ann@x.org"
    edited = record(verdict="accept", texts=["the blue car", "  "])
    assert edited.verdict is Verdict.FIX and edited.expressions == ["the blue car"]
    painted = _mask(9)
    repainted = record(verdict="accept", painted={MASK_B: painted})
    assert repainted.verdict is Verdict.FIX and repainted.mask is not None
    assert np.array_equal(repainted.mask.to_array(), painted)
    retyped = record(verdict="accept", change="disappear")
    assert retyped.verdict is Verdict.FIX and retyped.change_type is ChangeType.DISAPPEAR and retyped.change_type_edited
    assert record(verdict="reject", comment="not a change").comment == "not a change"
    assert record(verdict="reject").verdict is Verdict.REJECT
    # "needs fix" stays in the queue even when the auditor edited something on the way.
    assert record(verdict="needs_fix", texts=["half fixed"]).verdict is Verdict.NEEDS_FIX
    erased = record(verdict="accept", painted={})
    assert erased.verdict is Verdict.FIX and erased.mask is not None and erased.mask.is_empty
    both = record(verdict="accept", painted={MASK_A: _mask(4), MASK_B: _mask(5)})
    assert both.mask is not None and np.array_equal(both.mask.to_array(), _mask(4) | _mask(5))


def test_bad_annotations_are_refused_with_a_fix() -> None:
    triplet = _triplet(ChangeType.APPEAR)
    no_verdict = [r for r in _annotation(triplet, "accept") if r["from_name"] != VERDICT]
    with pytest.raises(AuditError, match="no verdict") as info:
        audit_record({"id": 3, "result": no_verdict}, triplet, "r", "a")
    assert "Fix:" in str(info.value)
    wrong_size = _annotation(triplet, "accept", painted={MASK_B: np.ones((10, 10), bool)})
    with pytest.raises(AuditError, match="10x10 image"):
        audit_record({"id": 4, "result": wrong_size}, triplet, "r", "a")


def test_with_edits_applies_the_auditors_changes() -> None:
    triplet = _triplet(ChangeType.APPEAR)
    painted = RLEMask.from_array(_mask(8))
    audit = AuditRecord(
        id="a",
        triplet_id=triplet.id,
        verdict=Verdict.FIX,
        expressions=["the red van"],
        mask=painted,
        change_type=None,
        change_type_edited=True,
        auditor="x",
    )
    fixed = triplet.with_edits(audit)
    assert (fixed.expressions, fixed.mask, fixed.change_type, fixed.id) == (["the red van"], painted, None, triplet.id)
    untouched = triplet.with_edits(
        audit.model_copy(update={"expressions": None, "mask": None, "change_type_edited": False})
    )
    assert untouched == triplet
    with pytest.raises(ValueError, match="is for triplet"):
        triplet.with_edits(audit.model_copy(update={"triplet_id": "other"}))


def _record(verdict: Verdict, at: int, rid: str | None = None) -> AuditRecord:
    from datetime import UTC, datetime

    return AuditRecord(
        id=rid or f"r{at}",
        triplet_id="t",
        verdict=verdict,
        auditor=f"a{at}",
        created_at=datetime(2026, 1, 1, 0, at, tzinfo=UTC),
    )


def test_policies_decide_several_audits() -> None:
    accept, fix, reject = _record(Verdict.ACCEPT, 1), _record(Verdict.FIX, 2), _record(Verdict.REJECT, 3)
    assert decide([], "first") is None
    first = decide([reject, accept], "first")
    assert first is not None and (first.state, first.audit_id) == (TripletState.ACCEPTED, "r1")
    majority = decide([accept, fix, reject], "majority")
    # accept and fix agree (keep); the edited one supplies the content.
    assert majority is not None and (majority.state, majority.audit_id) == (TripletState.FIXED, "r2")
    tie = decide([accept, reject], "majority")
    assert tie is not None and (tie.state, tie.audit_id) == (TripletState.QUEUED_FOR_AUDIT, None)
    waiting = decide([accept], "two_agree")
    assert waiting is not None and waiting.state is TripletState.QUEUED_FOR_AUDIT
    agreed = decide([accept, reject, _record(Verdict.REJECT, 4)], "two_agree")
    assert agreed is not None and (agreed.state, agreed.audit_id) == (TripletState.REJECTED, "r4")
    needs = decide([_record(Verdict.NEEDS_FIX, 5)], "first")
    assert needs is not None and (needs.state, needs.audit_id) == (TripletState.QUEUED_FOR_AUDIT, "r5")
    with pytest.raises(ConfigError, match="unknown audit policy"):
        decide([accept], "loudest")


def test_re_audits_may_change_the_state_until_export() -> None:
    triplet = _triplet(ChangeType.APPEAR).moved_to(TripletState.QUEUED_FOR_AUDIT).moved_to(TripletState.ACCEPTED)
    assert triplet.moved_to(TripletState.REJECTED).moved_to(TripletState.FIXED).state is TripletState.FIXED
    exported = triplet.moved_to(TripletState.EXPORTED)
    with pytest.raises(IllegalTransitionError):
        exported.moved_to(TripletState.REJECTED)


def test_no_server_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no Label Studio server") as info:
        LabelStudioAudit(Settings(workspace=tmp_path))
    assert "audit serve" in str(info.value)
    with pytest.raises(AuditError, match="no API token"):
        LabelStudioAudit(Settings(workspace=tmp_path, label_studio_url="http://127.0.0.1:9"))


# -- against a real server -----------------------------------------------------------------------


def _annotate(
    client: LabelStudio, task_id: int, result: list[dict[str, Any]], lead_time: float, user: int | None = None
) -> int:
    extra = {"completed_by": user} if user is not None else {}
    annotation = client.annotations.create(id=task_id, result=result, lead_time=lead_time, **extra)
    assert annotation.id is not None
    return int(annotation.id)


def _setup(label_studio: LabelStudioForTests, workspace: Path, pairs: int = 2, **overrides: Any) -> Any:
    settings = label_studio.settings(workspace, **overrides)
    catalog = Catalog.from_settings(settings)
    triplets = draft_triplets_from_truth(catalog, ImageStore(workspace), workspace / "src", pairs=pairs)
    return settings, catalog, triplets


def test_push_audit_pull_round_trips_exactly(label_studio: LabelStudioForTests, audit_workspace: Path) -> None:
    settings, catalog, triplets = _setup(label_studio, audit_workspace)
    backend = LabelStudioAudit(settings)
    assert backend.image_mode == "local"
    pushed = backend.push(catalog, batch_size=4)
    assert (pushed.imported, pushed.updated, pushed.queued) == (len(triplets), 0, len(triplets))
    assert catalog.triplet_counts()["queued_for_audit"] == len(triplets)
    index = backend.task_index(pushed.project_id)
    assert sorted(index) == sorted(t.id for t in triplets) and all(len(v) == 1 for v in index.values())

    # The page's images come from the workspace as local files, byte for byte.
    pair = catalog.get_pair(triplets[0].pair_id)
    task = backend.client.tasks.get(id=str(index[triplets[0].id][0].task_id))
    request = urllib.request.Request(
        label_studio.url + task.data[IMAGE_A], headers={"Authorization": f"Token {label_studio.token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.read() == (audit_workspace / pair.pre.path).read_bytes()

    targets = [t for t in triplets if not t.is_no_target and len(t.candidate_ids) == 1]
    no_target = next(t for t in triplets if t.is_no_target)
    multi = next(t for t in triplets if len(t.candidate_ids) > 1)
    accept, text, paint, reject, needs, retype = targets[:6]
    painted = np.zeros(paint.mask.size, bool)
    painted[10:30, 20:60] = True
    painted[100, 5:9] = True
    plan = {
        accept.id: (_annotation(accept, "accept"), Verdict.ACCEPT, TripletState.ACCEPTED),
        text.id: (_annotation(text, "accept", texts=["the grey shed at the corner"]), Verdict.FIX, TripletState.FIXED),
        paint.id: (
            _annotation(paint, "accept", painted={target_images(paint.change_type)[0]: painted}),
            Verdict.FIX,
            TripletState.FIXED,
        ),
        reject.id: (
            _annotation(reject, "reject", comment="shadow, not a change"),
            Verdict.REJECT,
            TripletState.REJECTED,
        ),
        needs.id: (_annotation(needs, "needs_fix"), Verdict.NEEDS_FIX, TripletState.QUEUED_FOR_AUDIT),
        retype.id: (_annotation(retype, "accept", change="state_change"), Verdict.FIX, TripletState.FIXED),
        no_target.id: (_annotation(no_target, "accept"), Verdict.ACCEPT, TripletState.ACCEPTED),
        multi.id: (_annotation(multi, "accept"), Verdict.ACCEPT, TripletState.ACCEPTED),
    }
    for number, (tid, (result, _, _)) in enumerate(plan.items()):
        _annotate(backend.client, index[tid][0].task_id, result, lead_time=10.0 + number)

    pulled = backend.pull(catalog)
    assert (pulled.annotations, pulled.new_records, pulled.failures) == (len(plan), len(plan), [])
    for number, (tid, (_, verdict, state)) in enumerate(plan.items()):
        triplet = catalog.get_triplet(tid)
        (record,) = catalog.audits_for(tid)
        assert (record.verdict, triplet.state, record.lead_time_s) == (verdict, state, 10.0 + number), tid
        assert record.auditor == label_studio.server.credentials.username
        assert triplet.audit_id == record.id
    assert catalog.audits_for(text.id)[0].expressions == ["the grey shed at the corner"]
    repainted = catalog.get_triplet(paint.id).with_edits(catalog.audits_for(paint.id)[0])
    assert np.array_equal(repainted.mask.to_array(), painted)
    assert catalog.audits_for(reject.id)[0].comment == "shadow, not a change"
    assert catalog.get_triplet(retype.id).with_edits(catalog.audits_for(retype.id)[0]).change_type == (
        ChangeType.STATE_CHANGE
    )
    untouched = [t for t in triplets if t.id not in plan]
    assert all(catalog.get_triplet(t.id).state is TripletState.QUEUED_FOR_AUDIT for t in untouched)

    status = audit_status(catalog)
    assert status["states"]["accepted"] == 3 and status["states"]["fixed"] == 3 and status["states"]["rejected"] == 1
    assert status["acceptance_rate"] == round(6 / 7, 4) and status["edit_rate"] == 0.5
    assert status["auditors"][label_studio.server.credentials.username]["audits"] == len(plan)

    # Pulling again changes nothing and counts nothing twice.
    again = backend.pull(catalog)
    assert (again.new_records, again.updated_records, again.moved) == (0, 0, {})
    assert audit_status(catalog)["audits"] == len(plan)
    catalog.close()


def test_push_is_idempotent_and_updates_changed_triplets(
    label_studio: LabelStudioForTests, audit_workspace: Path
) -> None:
    settings, catalog, triplets = _setup(label_studio, audit_workspace, pairs=1)
    backend = LabelStudioAudit(settings)
    first = backend.push(catalog)
    second = backend.push(catalog)
    assert (second.imported, second.updated, second.unchanged) == (0, 0, len(triplets))
    assert len(backend.export_tasks(first.project_id, all_tasks=True)) == len(triplets)

    changed = catalog.get_triplet(triplets[0].id)
    changed = changed.model_copy(update={"expressions": ["the freshly reworded target"]})
    catalog.upsert_triplet(changed)
    third = backend.push(catalog)
    assert (third.imported, third.updated, third.unchanged) == (0, 1, len(triplets) - 1)
    tasks = backend.export_tasks(first.project_id, all_tasks=True)
    assert len(tasks) == len(triplets)
    (task,) = [t for t in tasks if t["data"]["triplet_id"] == changed.id]
    predictions = backend.client.predictions.list(task=task["id"])
    assert len(predictions) == 1
    (texts,) = [r["value"]["text"] for r in predictions[0].result if r["from_name"] == EXPRESSION]
    assert texts == ["the freshly reworded target"]
    catalog.close()


def test_pull_follows_changed_and_deleted_annotations_and_policies(
    label_studio: LabelStudioForTests, audit_workspace: Path
) -> None:
    settings, catalog, triplets = _setup(label_studio, audit_workspace, pairs=1, audit_policy="majority")
    backend = LabelStudioAudit(settings)
    pushed = backend.push(catalog)
    index = backend.task_index(pushed.project_id)
    target = next(t for t in triplets if not t.is_no_target)
    task_id = index[target.id][0].task_id
    email = f"second-{os.getpid()}-{int(time.time() * 1000)}@craft-agent.local"
    second = backend.client.users.create(username=email, email=email, password="not-used-1234")
    assert second.id is not None

    first_id = _annotate(backend.client, task_id, _annotation(target, "accept"), 5.0)
    _annotate(backend.client, task_id, _annotation(target, "reject"), 7.0, user=int(second.id))
    tied = backend.pull(catalog)
    assert tied.undecided == 1 and catalog.get_triplet(target.id).state is TripletState.QUEUED_FOR_AUDIT
    assert {r.auditor for r in catalog.audits_for(target.id)} == {label_studio.server.credentials.username, email}

    backend.settings = settings.model_copy(update={"audit_policy": "first"})
    assert backend.pull(catalog).moved == {"accepted": 1}

    # The first auditor changes their mind in Label Studio: the record is updated, the triplet follows.
    backend.client.annotations.update(id=first_id, result=_annotation(target, "reject"))
    changed = backend.pull(catalog)
    assert (changed.updated_records, changed.moved) == (1, {"rejected": 1})

    # Both annotations deleted: their records go, and the triplet returns to the queue.
    for annotation in backend.client.annotations.list(id=task_id):
        assert annotation.id is not None
        backend.client.annotations.delete(id=annotation.id)
    cleared = backend.pull(catalog)
    assert (cleared.removed_records, catalog.audits_for(target.id)) == (2, [])
    assert catalog.get_triplet(target.id).state is TripletState.QUEUED_FOR_AUDIT
    catalog.close()


def _modes(folder: Path) -> dict[str, int]:
    """Permission bits of ``folder`` (as ".") and of the files directly in it."""
    entries = {".": folder, **{p.name: p for p in folder.iterdir() if p.is_file()}}
    return {name: stat.S_IMODE(path.stat().st_mode) for name, path in entries.items()}


def test_push_and_pull_survive_server_restarts_without_loss_or_duplicates(tmp_path: Path) -> None:
    # The defaults, as `craft-agent audit serve` and `audit push` use them: the workspace's own server on a
    # port it picks itself, found by the push through the workspace's PID file.
    workspace = tmp_path / "ws"
    settings = Settings(workspace=workspace)
    catalog = Catalog.from_settings(settings)
    triplets = draft_triplets_from_truth(catalog, ImageStore(workspace), tmp_path / "src", pairs=4)
    server = LocalLabelStudio(settings)
    url = server.start(timeout_s=300)
    data = workspace / "label-studio"
    try:
        # The database holds the API token in plain text: the folder and everything in it are the owner's.
        modes = _modes(data)
        assert {"label_studio.sqlite3", "server.log", "credentials.json", "server.json", "state.json"} <= set(modes)
        assert modes == {name: 0o700 if name == "." else 0o600 for name in modes}
        backend = LabelStudioAudit(settings)
        assert (backend.url, backend.image_mode) == (url, "local")
        project_id = backend.ensure_project()
        outcome: dict[str, Any] = {}

        def push() -> None:
            try:
                # One task per batch and a pause after each keep the push running while the server is
                # stopped (stopping takes seconds on a busy machine) and restarted.
                outcome["summary"] = backend.push(
                    catalog, batch_size=1, retry_s=240, progress=lambda n: time.sleep(1.0)
                )
            except Exception as exc:  # pragma: no cover - reported by the assertion below
                outcome["error"] = exc

        worker = threading.Thread(target=push)
        worker.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and catalog.triplet_counts()["queued_for_audit"] < 2:
            time.sleep(0.05)
        assert catalog.triplet_counts()["queued_for_audit"] >= 2, "the push never started"
        server.stop()
        interrupted = worker.is_alive()
        # Meanwhile the folder is left as an older craft-agent made it: readable by everyone.
        data.chmod(0o755)
        for name in _modes(data):
            if name != ".":
                (data / name).chmod(0o644)
        time.sleep(1.0)
        # Started again from scratch, as a new `audit serve` would: it comes back on the same port.
        server = LocalLabelStudio(settings)
        assert server.start(timeout_s=300) == url
        assert set(_modes(data).values()) == {0o700, 0o600} and _modes(data)["."] == 0o700
        worker.join(timeout=300)
        assert "error" not in outcome, outcome.get("error")
        # the server went down mid-push (the SDK's own retries or the push's retries carried it over)
        assert interrupted, "the push had finished before the server was stopped"
        assert outcome["summary"].imported == len(triplets)
        tasks = backend.export_tasks(project_id, all_tasks=True)
        ids = [t["data"]["triplet_id"] for t in tasks]
        assert sorted(ids) == sorted(t.id for t in triplets), "lost or duplicated tasks"
        assert catalog.triplet_counts()["queued_for_audit"] == len(triplets)
        assert backend.push(catalog).imported == 0

        # A pull that finds the server away waits for it, and finds it again on the port it comes back on.
        target = next(t for t in triplets if not t.is_no_target)
        task_id = next(t["id"] for t in tasks if t["data"]["triplet_id"] == target.id)
        _annotate(backend.client, task_id, _annotation(target, "accept"), lead_time=7.0)
        server.stop()
        pulled: dict[str, Any] = {}

        def pull() -> None:
            try:
                pulled["summary"] = backend.pull(catalog, retry_s=240)
            except Exception as exc:  # pragma: no cover - reported by the assertion below
                pulled["error"] = exc

        worker = threading.Thread(target=pull)
        worker.start()
        time.sleep(2.0)
        assert worker.is_alive(), f"the pull did not wait for the server: {pulled}"
        moved_port = free_port()
        server = LocalLabelStudio(Settings(workspace=workspace, label_studio_port=moved_port))
        moved_url = server.start(timeout_s=300)
        worker.join(timeout=300)
        assert "error" not in pulled, pulled.get("error")
        assert moved_url == f"http://127.0.0.1:{moved_port}" and backend.url == moved_url
        assert (pulled["summary"].annotations, pulled["summary"].new_records) == (1, 1)
        assert catalog.get_triplet(target.id).state is TripletState.ACCEPTED
        assert LocalLabelStudio(settings).stored_port() == moved_port, "the port asked for is kept for next time"
        catalog.close()
    finally:
        server.stop()


def test_a_workspace_port_taken_by_another_process_is_named_clearly(tmp_path: Path) -> None:
    import socket

    settings = Settings(workspace=tmp_path / "ws")
    server = LocalLabelStudio(settings)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        server.data_dir.mkdir(parents=True, exist_ok=True)
        server.state_path.write_text(json.dumps({"port": port}))
        try:
            with pytest.raises(AuditError, match=f"port {port} on 127.0.0.1, where this workspace's Label") as info:
                server.start(timeout_s=60)
        finally:
            server.stop()  # only does something when the test fails: a server started elsewhere
    assert "taken by another process" in str(info.value) and str(server.state_path) in str(info.value)
    assert "--port" in (info.value.hint or "")
    assert server.process is None and not server.pid_path.exists()


def test_supervise_stops_the_server_when_asked_and_reports_one_that_exits_on_its_own(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from craft_agent.audit.server import stop_requested

    server = LocalLabelStudio(Settings(workspace=tmp_path / "ws"))
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    server.process = subprocess.Popen(sleeper, start_new_session=True)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    server.supervise(stop, poll_s=0.05)
    assert server.process is None  # stopped by supervise, not left running
    server.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    server.log_path.write_text("boom: the last words of the server\n")
    with pytest.raises(AuditError, match="Label Studio exited on its own") as info:
        server.supervise(threading.Event(), poll_s=0.05)
    assert "boom: the last words of the server" in str(info.value) and str(server.log_path) in (info.value.hint or "")
    assert server.process is None
    # Ctrl-C sets the event instead of interrupting; the earlier handler is back afterwards.
    before = signal.getsignal(signal.SIGINT)
    with stop_requested() as requested:
        os.kill(os.getpid(), signal.SIGINT)
        assert requested.wait(5)
    assert signal.getsignal(signal.SIGINT) is before


def test_cli_serve_push_pull_status_stop(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from craft_agent.cli import app

    workspace = tmp_path / "ws"
    catalog = Catalog.from_settings(Settings(workspace=workspace))
    triplets = draft_triplets_from_truth(catalog, ImageStore(workspace), tmp_path / "src", pairs=1)
    catalog.close()
    runner = CliRunner()
    served = runner.invoke(app, ["audit", "serve", "--workspace", str(workspace), "--detach", "--json"])
    try:
        assert served.exit_code == 0, served.output
        info = json.loads(served.stdout)
        credentials = Path(info["password_file"])
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        secrets = json.loads(credentials.read_text())
        pushed = runner.invoke(app, ["audit", "push", "--workspace", str(workspace), "--json"])
        assert pushed.exit_code == 0, pushed.output
        summary = json.loads(pushed.stdout)
        assert summary["imported"] == len(triplets) and summary["images"] == "local"
        repeat = json.loads(runner.invoke(app, ["audit", "push", "--workspace", str(workspace), "--json"]).stdout)
        assert repeat["imported"] == 0 and repeat["unchanged"] == len(triplets)
        pulled = runner.invoke(app, ["audit", "pull", "--workspace", str(workspace), "--json"])
        assert pulled.exit_code == 0 and json.loads(pulled.stdout)["annotations"] == 0
        status = runner.invoke(app, ["audit", "status", "--workspace", str(workspace), "--json"])
        assert json.loads(status.stdout)["states"]["queued_for_audit"] == len(triplets)
        human = runner.invoke(app, ["audit", "status", "--workspace", str(workspace)])
        assert f"{len(triplets)} triplet(s)" in human.stdout
        for text in (served.output, pushed.output, pulled.output, status.output, human.output):
            assert secrets["token"] not in text and secrets["password"] not in text
        log = (workspace / "label-studio" / "server.log").read_text(errors="replace")
        assert secrets["password"] not in log
    finally:
        stopped = runner.invoke(app, ["audit", "stop", "--workspace", str(workspace), "--json"])
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert not (workspace / "label-studio" / "server.json").exists()

    # In the foreground it serves until interrupted, then stops its server (same data: a quick restart).
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "craft_agent.cli", "audit", "serve", "--workspace", str(workspace)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    info = json.loads((workspace / "label-studio" / "server.json").read_text())
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, "".join(lines)
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)
    assert not (workspace / "label-studio" / "server.json").exists()


def test_bench_audit_reports_rates_and_an_exact_round_trip(label_studio: LabelStudioForTests) -> None:
    from craft_agent.bench.audit import run_audit_bench

    settings = Settings(label_studio_url=label_studio.url, label_studio_token=label_studio.token)
    report = run_audit_bench(settings, triplets=24, batch_size=10)
    assert set(report) >= {"push_per_s", "pull_per_s", "sdk_bulk_per_s", "roundtrip_exact"}
    assert report["roundtrip_exact"] is True
    assert report["triplets"] == 24 and sum(report["audits"].values()) == 24
    assert report["images"] == "inline" and report["server"] == "configured server"
    assert min(report["push_per_s"], report["pull_per_s"], report["sdk_bulk_per_s"]) > 0
    # Click-to-mask latency at the backend: classical, and a tiny SAM on cached embeddings.
    assert report["clicks"] > 10 and 0 < report["click_ms_p50"] <= report["click_ms_p95"]
    assert 0 < report["sam_click_ms_p50"] <= report["sam_click_ms_p95"] and report["sam_first_click_ms"] > 0
    assert report["sam_encoder_runs_when_cached"] == 0
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    assert not [p for p in client.projects.list() if (p.title or "").startswith("craft-bench-audit-")]


def test_doctor_checks_the_server_and_its_token(label_studio: LabelStudioForTests, tmp_path: Path) -> None:
    from craft_agent.doctor import check_label_studio

    good = check_label_studio(Settings(label_studio_url=label_studio.url, label_studio_token=label_studio.token), 10)
    assert good.status == "ok", good
    wrong = "0" * 40
    bad = check_label_studio(Settings(label_studio_url=label_studio.url, label_studio_token=wrong), 10)
    assert bad.status == "error" and "refused the token" in bad.detail and wrong not in bad.detail + bad.fix
    local = check_label_studio(Settings(workspace=tmp_path), 10)
    assert local.status == "offline" and "audit serve" in local.fix


@pytest.mark.postgres
def test_local_server_keeps_its_data_in_postgresql_when_configured(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    database = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    server = LocalLabelStudio(Settings(workspace=tmp_path / "ws", label_studio_database_url=database))
    try:
        server.start(timeout_s=400)
        client = LabelStudio(base_url=server.url or "", api_key=server.credentials.token)
        project = client.projects.create(title="stored in postgres")
        with psycopg.connect(database) as connection:
            titles = [row[0] for row in connection.execute("SELECT title FROM project")]
        assert "stored in postgres" in titles and project.id is not None
        assert not list((tmp_path / "ws" / "label-studio").glob("*.sqlite3"))
    finally:
        server.stop()
    with pytest.raises(AuditError, match="must look like postgresql://"):
        LocalLabelStudio(Settings(workspace=tmp_path / "w2", label_studio_database_url="mysql://x@h/db")).environment(1)


def test_serve_with_an_existing_server_configured_starts_nothing(
    label_studio: LabelStudioForTests, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from craft_agent.cli import app

    env = {"CRAFT_LABEL_STUDIO_URL": label_studio.url, "CRAFT_LABEL_STUDIO_TOKEN": label_studio.token}
    runner = CliRunner()
    done = runner.invoke(app, ["audit", "serve", "--workspace", str(tmp_path / "w"), "--json"], env=env)
    assert done.exit_code == 0 and json.loads(done.stdout) == {"url": label_studio.url, "existing_server": True}
    assert not (tmp_path / "w" / "label-studio").exists()
    env["CRAFT_LABEL_STUDIO_TOKEN"] = "f" * 40
    refused = runner.invoke(app, ["audit", "serve", "--workspace", str(tmp_path / "w"), "--json"], env=env)
    assert refused.exit_code == 2 and "refused the token" in json.loads(refused.stdout)["error"]
    assert "f" * 40 not in refused.stdout
