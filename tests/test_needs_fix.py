"""A "needs fix" goes back to the agent: the page's hints, the revision itself (classical engine, offline rules and
the openai client), and the whole round trip through a real Label Studio, ``generate`` and the audit-sync flow."""

from __future__ import annotations

import importlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from craft_agent.agent.nodes import AgentConfig
from craft_agent.agent.offline import OfflineBackend, change_type_named
from craft_agent.agent.revise import TripletReviser, needs_fix
from craft_agent.agent.run import agent_resources, generate
from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.audit.labeling import (
    BOXES_A,
    BOXES_B,
    EXPRESSION,
    IMAGE_A,
    IMAGE_B,
    KEYPOINTS_A,
    KEYPOINTS_B,
    MASK_A,
    MASK_B,
    audit_record,
    guidance,
    hint_results,
    hints_from_results,
    label_config,
    mask_from_results,
    prediction_result,
    revision_of,
    submitted_result,
)
from craft_agent.bench.llm_server import ScriptedLLMServer, prompt_text, schema_name
from craft_agent.bench.llm_server import cooperative_answer as model_answer
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import AuditError
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.llm import OpenAIBackend, UsageMeter
from craft_agent.masks import ClassicalMaskEngine
from craft_agent.models import (
    AuditHint,
    AuditRecord,
    BBox,
    ChangeType,
    GroundTruthChange,
    ImagePair,
    RLEMask,
    Triplet,
    TripletState,
    Verdict,
)
from craft_agent.orchestration import configure_prefect
from craft_agent.settings import load_settings
from craft_agent.synthetic import write_examples
from tests.conftest import LabelStudioForTests
from tests.data import draft_triplets_from_truth

WRONG_OBJECT = "wrong building: it is the brown one I clicked"
REWORDED = ["the building that appeared by the road", "the new building beside the road"]


def _interior_point(mask: RLEMask) -> tuple[int, int]:
    """A pixel deep inside a mask (its distance transform's maximum), as (x, y)."""
    import cv2

    pixels = mask.to_array().astype(np.uint8)
    distance = cv2.distanceTransform(np.pad(pixels, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def _two_buildings(pair: ImagePair) -> tuple[GroundTruthChange, GroundTruthChange]:
    """Two buildings that appeared in the pair (scene 0 of the generated examples has them)."""
    built = [c for c in pair.gt_changes if c.change_type is ChangeType.APPEAR and c.category == "building"]
    assert len(built) >= 2, [(c.change_type, c.category) for c in pair.gt_changes]
    return built[0], built[1]


def _send_back(catalog: Catalog, triplet: Triplet, audit: AuditRecord) -> None:
    """What a pull does with a "needs fix": the record stored, the triplet queued with it as its audit."""
    queued = (
        triplet if triplet.state is TripletState.QUEUED_FOR_AUDIT else triplet.moved_to(TripletState.QUEUED_FOR_AUDIT)
    )
    catalog.save_audits([audit], [], [(queued.model_copy(update={"audit_id": audit.id}), "audit: needs fix")])


def _needs_fix(triplet: Triplet, rid: str, comment: str | None, hints: list[AuditHint] | None = None) -> AuditRecord:
    return AuditRecord(
        id=rid, triplet_id=triplet.id, verdict=Verdict.NEEDS_FIX, comment=comment, hints=hints or [], auditor="a@x.org"
    )


# -- the page: hints, no server ------------------------------------------------------------------------------


def test_the_page_has_a_point_and_a_box_tool_on_each_image() -> None:
    root = ET.fromstring(label_config())
    tools = {node.get("name"): node for node in root.iter() if node.tag in ("KeyPointLabels", "RectangleLabels")}
    expected = {KEYPOINTS_A: IMAGE_A, KEYPOINTS_B: IMAGE_B, BOXES_A: IMAGE_A, BOXES_B: IMAGE_B}
    assert {name: node.get("toName") for name, node in tools.items()} == expected


def test_points_and_boxes_become_hints_in_pixels_and_never_mask_pixels() -> None:
    size = (48, 64)
    mask = np.zeros(size, bool)
    mask[10:20, 30:40] = True
    shown = RLEMask.from_array(mask)
    triplet = Triplet(
        id="t" * 24, pair_id="p" * 16, mask=shown, expressions=["the red car"], change_type=ChangeType.APPEAR
    )
    hints = [
        AuditHint(date="post", kind="point", point=(5, 7)),
        AuditHint(date="pre", kind="point", positive=False, point=(63, 47)),
        AuditHint(date="post", kind="box", box=BBox(x0=3, y0=7, x1=21, y1=29)),
        AuditHint(date="pre", kind="box", box=BBox(x0=0, y0=0, x1=64, y1=48)),
    ]
    result = submitted_result(triplet, "needs_fix", comment="the car is further left", hints=hints)
    record = audit_record({"id": 5, "result": result}, triplet, "r5", "a@x.org")
    assert record.verdict is Verdict.NEEDS_FIX and record.comment == "the car is further left"
    assert record.hints == hints  # exact pixels back from the page's percentages
    assert record.mask is None, "points and boxes must not change the mask"
    # only brush regions are pixels: hints alone paint nothing, and beside the brush they add nothing
    assert mask_from_results(hint_results(hints, size), size) is None
    both = mask_from_results(prediction_result(triplet) + hint_results(hints, size), size)
    assert both is not None and both.counts == shown.counts
    # a keypoint written outside smart mode (no is_positive) marks the target; is_positive false does not
    items = hint_results(hints[:2], size)
    del items[0]["is_positive"]
    read = audit_record({"id": 6, "result": [*result[:-4], *items]}, triplet, "r6", "a@x.org").hints
    assert [h.positive for h in read] == [True, False]
    # every box and point of an odd-sized image comes back on the same pixels
    odd = (193, 257)
    grid = [
        AuditHint(date="post", kind="box", box=BBox(x0=x, y0=x % 189, x1=x + 1 + x % 7, y1=x % 189 + 4))
        for x in range(250)
    ]
    grid += [AuditHint(date="pre", kind="point", positive=x % 2 == 0, point=(x, x % 193)) for x in range(257)]
    assert hints_from_results(hint_results(grid, odd), odd) == grid
    outside = hint_results(hints[:1], size)
    outside[0]["value"]["x"] = 140.0
    with pytest.raises(AuditError, match="outside the 64x48 image"):
        audit_record({"id": 8, "result": [*result[:-4], *outside]}, triplet, "r8", "a")


def test_comments_name_a_change_type_only_when_they_name_one() -> None:
    assert change_type_named("It was demolished last year") is ChangeType.DISAPPEAR
    assert change_type_named("the roof was REPAINTED") is ChangeType.STATE_CHANGE
    assert change_type_named("a new house was built here") is ChangeType.APPEAR
    assert change_type_named("it did not appear, it disappeared") is None
    assert change_type_named("the mask is too large") is None


# -- the revision, no server -----------------------------------------------------------------------------------


def _drafted(tmp_path: Path) -> tuple[Catalog, ImageStore, ImagePair, list[Triplet]]:
    workspace = tmp_path / "ws"
    catalog = Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}")
    store = ImageStore(workspace)
    triplets = draft_triplets_from_truth(catalog, store, tmp_path / "src", pairs=1)
    return catalog, store, next(catalog.iter_pairs()), triplets


def test_a_point_hint_moves_the_mask_onto_the_clicked_object(tmp_path: Path) -> None:
    catalog, store, pair, triplets = _drafted(tmp_path)
    wrong, meant = _two_buildings(pair)
    triplet = next(t for t in triplets if len(t.candidate_ids) == 1 and t.mask.iou(wrong.mask) > 0.99)
    assert triplet.mask.iou(meant.mask) == 0.0
    click = _interior_point(meant.mask)
    audit = _needs_fix(triplet, "a1", WRONG_OBJECT, [AuditHint(date="post", kind="point", point=click)])
    _send_back(catalog, triplet, audit)
    with catalog:
        assert needs_fix(catalog) == [(catalog.get_triplet(triplet.id), audit)]
        resources = agent_resources(catalog, store, OfflineBackend(), ClassicalMaskEngine(), AgentConfig())
        answer = TripletReviser(resources).revise(*needs_fix(catalog)[0])
        revised = catalog.get_triplet(triplet.id)
        assert needs_fix(catalog) == [], "an answered needs-fix is not revised again"

    # the mask left the wrong building and covers the one clicked (the engine may take some of its surroundings)
    new, target = revised.mask.to_array(), meant.mask.to_array()
    assert not (new & wrong.mask.to_array()).any()
    assert (new & target).sum() >= 0.8 * target.sum() and revised.mask.iou(meant.mask) >= 0.3
    box, around = revised.mask.bbox(), meant.mask.bbox()
    assert box is not None and around is not None
    assert (box.x0, box.y0) >= (around.x0 - 16, around.y0 - 16) and (box.x1, box.y1) <= (around.x1 + 16, around.y1 + 16)
    # same triplet (so the same audit task), re-worded for what it now covers, queued and no longer decided
    assert (revised.id, revised.state, revised.audit_id, revised.revision) == (
        triplet.id,
        TripletState.QUEUED_FOR_AUDIT,
        None,
        1,
    )
    assert revised.expressions != triplet.expressions and not any("grey" in e for e in revised.expressions)
    assert (answer.audit_id, answer.outcome, answer.changed) == ("a1", "revised", ["mask", "expressions"])
    assert revised.provenance.revisions == [answer] and answer.hints == audit.hints
    assert revised.provenance.steps["correction"] == "offline" and revised.provenance.backends["masks"] == "classical"
    assert revision_of(revised) != revision_of(triplet)
    assert f'Revised after: "{WRONG_OBJECT}"' in guidance(revised) and "Revision 1" in guidance(revised)


def test_a_comment_changes_the_type_and_max_rounds_leaves_it_with_the_auditors(tmp_path: Path) -> None:
    catalog, store, pair, triplets = _drafted(tmp_path)
    wrong, _ = _two_buildings(pair)
    triplet = next(t for t in triplets if len(t.candidate_ids) == 1 and t.mask.iou(wrong.mask) > 0.99)
    with catalog:
        resources = agent_resources(catalog, store, OfflineBackend(), ClassicalMaskEngine(), AgentConfig(max_rounds=1))
        reviser = TripletReviser(resources)
        _send_back(catalog, triplet, _needs_fix(triplet, "a1", "not new: the roof was repainted"))
        first = reviser.revise(*needs_fix(catalog)[0])
        revised = catalog.get_triplet(triplet.id)
        assert (first.outcome, first.changed) == ("revised", ["expressions", "change_type"])
        assert revised.change_type is ChangeType.STATE_CHANGE and revised.mask == triplet.mask
        assert revised.expressions != triplet.expressions
        # a comment that asks for nothing the rules can act on after the last allowed revision: left with auditors
        _send_back(catalog, revised, _needs_fix(triplet, "a2", "still not right"))
        second = reviser.revise(*needs_fix(catalog)[0])
        left = catalog.get_triplet(triplet.id)
        assert (second.outcome, second.changed, left.revision) == ("left_with_auditors", [], 1)
        assert (left.mask, left.expressions, left.change_type) == (
            revised.mask,
            revised.expressions,
            revised.change_type,
        )
        assert left.audit_id == "a2" and left.state is TripletState.QUEUED_FOR_AUDIT  # the needs-fix still decides
        assert "stays with the auditors" in guidance(left) and '"still not right"' in guidance(left)
        assert needs_fix(catalog) == []
        # a no-target triplet sent back with only words has nothing to segment: it stays with the auditors
        absent = next(t for t in triplets if t.is_no_target)
        _send_back(catalog, absent, _needs_fix(absent, "a3", "there is a boat"))
        assert reviser.revise(*needs_fix(catalog)[0]).outcome == "left_with_auditors"


def test_the_correction_step_reads_the_auditors_comment_through_the_openai_client(tmp_path: Path) -> None:
    catalog, store, pair, triplets = _drafted(tmp_path)
    wrong, _ = _two_buildings(pair)
    triplet = next(t for t in triplets if len(t.candidate_ids) == 1 and t.mask.iou(wrong.mask) > 0.99)
    comment = "say which building: the one beside the road"
    _send_back(catalog, triplet, _needs_fix(triplet, "a1", comment))

    def model(body: dict[str, Any]) -> dict[str, Any]:
        if schema_name(body) == "CorrectionVerdict" and comment in prompt_text(body):
            return {
                "action": "fix",
                "reason": "the auditor wants the road named",
                "description": "the building by the road",
            }
        if schema_name(body) == "Beautified" and "the building by the road" in prompt_text(body):
            return {"expressions": REWORDED}
        return model_answer(body)

    with catalog, ScriptedLLMServer([], models=["scripted-vlm"], fallback=model) as server:
        backend = OpenAIBackend(server.base_url, "scripted-vlm", None, usage=UsageMeter(), sleep=lambda s: None)
        resources = agent_resources(catalog, store, backend, ClassicalMaskEngine(), AgentConfig())
        answer = TripletReviser(resources).revise(*needs_fix(catalog)[0])
        names = [schema_name(r.body) for r in server.chat_requests]
        asked = prompt_text(server.chat_requests[0].body)
        revised = catalog.get_triplet(triplet.id)
    assert names == ["CorrectionVerdict", "Beautified"]
    assert json.dumps(comment) in asked and "Auditor's feedback" in asked
    # the model's re-wording is the new revision's, its steps and usage in the provenance
    assert revised.expressions == REWORDED
    assert (answer.changed, answer.reason) == (["expressions"], "the auditor wants the road named")
    assert revised.provenance.steps == {"beautify": "openai", "correction": "openai"}
    assert revised.provenance.llm.calls == triplet.provenance.llm.calls + 2


# -- the round trip through a real Label Studio ------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Prefect reads its settings at import: configure first, import after.
    configure_prefect(load_settings(workspace=tmp_path_factory.mktemp("prefect_ws")))
    testing = importlib.import_module("prefect.testing.utilities")
    with testing.prefect_test_harness(server_startup_timeout=120):
        yield


def _task(backend: LabelStudioAudit, project_id: int, triplet_id: str) -> dict[str, Any]:
    (task,) = [t for t in backend.export_tasks(project_id, all_tasks=True) if t["data"]["triplet_id"] == triplet_id]
    return task


def _shown_mask(backend: LabelStudioAudit, task_id: int, size: tuple[int, int]) -> tuple[RLEMask | None, str, Any]:
    """The mask of the task's only prediction, its model version and the prediction's expressions."""
    (prediction,) = backend.client.predictions.list(task=task_id)
    texts = [r["value"]["text"] for r in prediction.result if r["from_name"] == EXPRESSION]
    return mask_from_results(prediction.result, size), str(prediction.model_version), texts[0]


def test_needs_fix_round_trip_through_label_studio_generate_and_the_audit_sync_flow(
    label_studio: LabelStudioForTests, audit_workspace: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = label_studio.settings(audit_workspace)
    write_examples(audit_workspace / "src", pairs=1, seed=11, size=256)
    catalog = Catalog.from_settings(settings)
    store = ImageStore(audit_workspace)
    assert ingest(audit_workspace / "src", catalog, store, IngestOptions()).ingested == 1
    pair = next(catalog.iter_pairs())
    wrong, meant = _two_buildings(pair)

    def agent() -> Any:
        return generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), audit_workspace, AgentConfig())

    drafted = agent()
    assert drafted.failed == [] and drafted.triplets > 0 and drafted.revised == 0
    triplet = next(t for t in catalog.iter_triplets() if len(t.candidate_ids) == 1 and t.mask.iou(wrong.mask) > 0.9)
    backend = LabelStudioAudit(settings)
    pushed = backend.push(catalog)
    tasks = len(backend.export_tasks(pushed.project_id, all_tasks=True))
    assert pushed.imported == tasks == drafted.triplets
    task_id = int(_task(backend, pushed.project_id, triplet.id)["id"])

    def annotate(verdict: str, comment: str, hints: list[AuditHint] | None = None) -> int:
        shown = catalog.get_triplet(triplet.id)
        result = submitted_result(shown, verdict, comment=comment, hints=hints or [])
        created = backend.client.annotations.create(id=task_id, result=result, lead_time=9.0)
        assert created.id is not None
        return int(created.id)

    def same_task_updated(revision: int) -> dict[str, Any]:
        task = _task(backend, pushed.project_id, triplet.id)
        assert int(task["id"]) == task_id and len(backend.export_tasks(pushed.project_id, all_tasks=True)) == tasks
        shown, version, texts = _shown_mask(backend, task_id, pair_size)
        current = catalog.get_triplet(triplet.id)
        assert shown is not None and shown.counts == current.mask.counts and texts == current.expressions
        assert version.endswith(f"revision {revision}") and task["data"]["revision"] == revision_of(current)
        return dict(task["data"])

    pair_size = (pair.height, pair.width)
    # 1. an auditor sends it back: wrong building, with a positive point on the one meant, on the later image
    click = _interior_point(meant.mask)
    marks = [
        AuditHint(date="post", kind="point", point=click),
        AuditHint(date="post", kind="point", positive=False, point=_interior_point(wrong.mask)),
    ]
    first_id = annotate("needs_fix", WRONG_OBJECT, marks)
    pulled = backend.pull(catalog)
    assert (pulled.new_records, pulled.failures) == (1, [])
    (record,) = catalog.audits_for(triplet.id)
    assert record.id.endswith(f"-{first_id}") and record.verdict is Verdict.NEEDS_FIX
    assert record.hints == marks and record.comment == WRONG_OBJECT  # the server kept is_positive
    assert catalog.get_triplet(triplet.id).audit_id == record.id

    # 2. the next generate drafts nothing new (the pair is done) and revises it
    again = agent()
    assert (again.skipped, again.triplets, again.revised, again.failed) == (1, 0, 1, [])
    revised = catalog.get_triplet(triplet.id)
    assert revised.mask.iou(meant.mask) >= 0.3 and not (revised.mask.to_array() & wrong.mask.to_array()).any()
    assert (revised.revision, revised.audit_id, revised.state) == (1, None, TripletState.QUEUED_FOR_AUDIT)

    # 3. the push updates the same task in place: new prediction, the comment on the page, the annotation kept
    update = backend.push(catalog)
    assert (update.imported, update.updated) == (0, 1)
    data = same_task_updated(1)
    assert f'Revised after: "{WRONG_OBJECT}"' in data["guidance"]
    assert [a.id for a in backend.client.annotations.list(id=task_id)] == [first_id]
    # the old needs-fix is read again by every pull, but it judged the earlier revision: nothing re-triggers
    repeat = backend.pull(catalog)
    assert (repeat.new_records, repeat.updated_records, repeat.moved) == (0, 0, {})
    assert catalog.get_triplet(triplet.id).audit_id is None and needs_fix(catalog) == []
    assert agent().revised == 0

    # 4. a second needs-fix, through the audit-sync flow: push, pull, revise, push the revision
    for name, value in {
        "CRAFT_LABEL_STUDIO_URL": label_studio.url,
        "CRAFT_LABEL_STUDIO_TOKEN": label_studio.token,
        "CRAFT_LABEL_STUDIO_IMAGES": "local",
        "CRAFT_LABEL_STUDIO_DOCUMENT_ROOT": str(label_studio.root),
    }.items():
        monkeypatch.setenv(name, value)
    sync = importlib.import_module("flows.audit").audit_sync_flow
    from craft_agent.pipeline import DraftOptions

    options = DraftOptions(llm="offline", masks="classical", max_rounds=2)
    annotate("needs_fix", "not new: the roof was repainted, a state change")
    second = sync(str(audit_workspace), options)
    assert (second["revise"]["revised"], second["push_revisions"]["updated"]) == (1, 1)
    changed = catalog.get_triplet(triplet.id)
    assert (changed.revision, changed.change_type) == (2, ChangeType.STATE_CHANGE)
    data = same_task_updated(2)
    assert "the roof was repainted" in data["guidance"] and data["change_type"] == "state_change"
    (prediction,) = backend.client.predictions.list(task=task_id)
    assert {r["from_name"] for r in prediction.result if r["type"] == "brushlabels"} == {MASK_A, MASK_B}

    # 5. a third one after max_rounds revisions: it stays with the auditors, and the page says so
    third_id = annotate("needs_fix", "still wrong")
    third = sync(str(audit_workspace), options)
    assert (third["revise"]["revised"], third["revise"]["left_with_auditors"]) == (0, 1)
    assert third["push_revisions"]["updated"] == 1
    left = catalog.get_triplet(triplet.id)
    assert (left.revision, len(left.provenance.revisions), left.audit_id) == (
        2,
        3,
        f"ls-{pushed.project_id}-{third_id}",
    )
    assert (left.mask, left.expressions, left.state) == (
        changed.mask,
        changed.expressions,
        TripletState.QUEUED_FOR_AUDIT,
    )
    data = same_task_updated(2)
    assert "stays with the auditors" in data["guidance"] and '"still wrong"' in data["guidance"]
    # and nothing more happens on the next sync
    quiet = sync(str(audit_workspace), options)
    assert (quiet["revise"]["revised"], quiet["revise"]["left_with_auditors"], "push_revisions" in quiet) == (
        0,
        0,
        False,
    )
    assert len(backend.export_tasks(pushed.project_id, all_tasks=True)) == tasks
    assert len(catalog.audits_for(triplet.id)) == 3
    catalog.close()
