"""Click-to-mask: prompts from Label Studio's context, the two click engines, and the ML backend served to the
real Label Studio, which relays an auditor's click and gets the mask back on the clicked image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.audit.labeling import IMAGE_A, IMAGE_B, MASK_B, mask_from_results, submitted_result
from craft_agent.audit.ml_backend import (
    MODEL_VERSION,
    ClickService,
    PromptError,
    brush_region,
    create_app,
    prompt_from_context,
    register,
    serving,
    unregister,
)
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.localhost import free_port
from craft_agent.masks.base import mask_iou
from craft_agent.masks.click import ClassicalClickEngine, ClickPrompt, SamClickEngine
from craft_agent.models import BBox, ChangeType, TripletState, Verdict
from craft_agent.settings import Settings
from tests.conftest import LabelStudioForTests
from tests.data import draft_triplets_from_truth, scene


def point(to_name: str, x: float, y: float, size: tuple[int, int], positive: bool = True) -> dict[str, Any]:
    """A smart keypoint as the page sends it (percent of the image)."""
    width, height = size
    return {
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 0.3, "keypointlabels": ["target"]},
        "is_positive": positive,
        "id": f"p{x}-{y}",
        "from_name": "kp_b" if to_name == IMAGE_B else "kp_a",
        "to_name": to_name,
        "type": "keypointlabels",
        "origin": "manual",
    }


def box(to_name: str, bbox: BBox, size: tuple[int, int]) -> dict[str, Any]:
    width, height = size
    value = {
        "x": 100 * bbox.x0 / width,
        "y": 100 * bbox.y0 / height,
        "width": 100 * bbox.width / width,
        "height": 100 * bbox.height / height,
        "rotation": 0,
        "rectanglelabels": ["target"],
    }
    return {
        "original_width": width,
        "original_height": height,
        "value": value,
        "id": "b1",
        "from_name": "box_b" if to_name == IMAGE_B else "box_a",
        "to_name": to_name,
        "type": "rectanglelabels",
    }


def centre(mask: np.ndarray) -> tuple[int, int]:
    """The mask's most interior pixel (where an auditor would click)."""
    import cv2

    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def found_the_object(mask: np.ndarray, truth: np.ndarray) -> bool:
    """The click's mask holds the object (generated buildings come with a shadow the truth leaves out)."""
    return bool((mask & truth).sum() >= 0.9 * truth.sum() and mask_iou(mask, truth) > 0.4)


def test_prompts_come_in_percent_and_go_out_in_pixels() -> None:
    size = (400, 300)
    placed = prompt_from_context(
        {"result": [point(IMAGE_B, 200, 150, size), point(IMAGE_B, 10, 20, size, positive=False)]}
    )
    assert (placed.to_name, placed.width, placed.height) == (IMAGE_B, 400, 300)
    assert placed.prompt == ClickPrompt("post", ((200, 150),), ((10, 20),), None)
    boxed = prompt_from_context({"result": [box(IMAGE_A, BBox(x0=40, y0=30, x1=120, y1=90), size)]})
    assert boxed.prompt.date == "pre" and boxed.prompt.box == BBox(x0=40, y0=30, x1=120, y1=90)
    with pytest.raises(PromptError, match="one of image_a, image_b"):
        prompt_from_context({"result": [point(IMAGE_A, 1, 1, size), point(IMAGE_B, 1, 1, size)]})
    with pytest.raises(PromptError, match="only negative points"):
        prompt_from_context({"result": [point(IMAGE_B, 5, 5, size, positive=False)]})
    with pytest.raises(PromptError, match="no point or box"):
        prompt_from_context({"result": [{"type": "textarea", "to_name": IMAGE_B}]})
    broken = point(IMAGE_B, 5, 5, size)
    broken["value"]["x"] = 250.0
    with pytest.raises(PromptError, match="outside the image"):
        prompt_from_context({"result": [broken]})


def test_a_brush_region_reads_back_as_the_same_mask() -> None:
    _, _, mask = scene(2, size=96)
    mask[5, 3:40] = True  # a one-pixel stroke
    region = brush_region(IMAGE_B, mask)
    assert region["from_name"] == MASK_B and region["to_name"] == IMAGE_B
    back = mask_from_results([region], mask.shape)
    assert back is not None and np.array_equal(back.to_array() > 0, mask)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_classical_engine_segments_the_clicked_change(seed: int) -> None:
    pre, post, truth = scene(seed, size=192)
    engine = ClassicalClickEngine()
    clicked = engine.segment(post, pre, ClickPrompt("post", positives=(centre(truth),)))
    assert mask_iou(clicked.mask, truth) > 0.85, clicked.details
    ys, xs = np.nonzero(truth)
    around = BBox(x0=int(xs.min()) - 4, y0=int(ys.min()) - 4, x1=int(xs.max()) + 5, y1=int(ys.max()) + 5)
    boxed = engine.segment(post, pre, ClickPrompt("post", box=around))
    assert mask_iou(boxed.mask, truth) > 0.85, boxed.details
    # A click on unchanged ground away from the target does not return the target.
    far = (5, 5) if not truth[:40, :40].any() else (186, 186)
    elsewhere = engine.segment(post, pre, ClickPrompt("post", positives=(far,)))
    assert mask_iou(elsewhere.mask, truth) < 0.2


def test_sam_answers_a_click_from_the_embedding_drafting_cached(tmp_path: Path) -> None:
    from craft_agent.masks.sam import EmbeddingCache, SamMaskEngine
    from craft_agent.masks.tiny_sam import tiny_sam

    pre, post, truth = scene(3, size=128)
    cache = EmbeddingCache(tmp_path / "cache")
    drafting = SamMaskEngine(tiny_sam(), "tiny:0", cache)
    prompt = ClickPrompt("post", positives=(centre(truth),))
    SamClickEngine(drafting).segment(post, pre, prompt, "post-key", "pre-key")
    assert drafting.encoder_runs == 1
    auditing = SamClickEngine(SamMaskEngine(tiny_sam(), "tiny:0", cache))  # a new process, the same cache
    for k in range(3):
        answer = auditing.segment(post, pre, ClickPrompt("post", positives=((10 + k, 12),)), "post-key", "pre-key")
        assert answer.mask.shape == truth.shape and answer.engine == "sam"
    assert auditing.engine.encoder_runs == 0, "a click must not run the image encoder when drafting cached it"


def test_the_backend_speaks_label_studios_protocol(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    with Catalog.from_settings(settings) as catalog:
        triplets = draft_triplets_from_truth(catalog, ImageStore(settings.workspace), tmp_path / "src", pairs=1)
    target = next(t for t in triplets if t.change_type is ChangeType.APPEAR and len(t.candidate_ids) == 1)
    truth = target.mask.to_array() > 0
    size = (truth.shape[1], truth.shape[0])
    service = ClickService(settings, "classical")
    task = {"id": 1, "data": {"pair_id": target.pair_id, "triplet_id": target.id}}
    with serving(create_app(service), "127.0.0.1", free_port()) as url:
        assert httpx.get(url + "/health").json()["status"] == "UP"
        assert httpx.post(url + "/setup", json={"project": "1.0", "schema": "<View/>"}).json() == {
            "model_version": MODEL_VERSION
        }
        assert httpx.post(url + "/webhook", json={"action": "ANNOTATION_CREATED"}).json() == {"status": "ok"}
        empty = httpx.post(url + "/predict", json={"tasks": [task], "params": {"context": None}})
        assert empty.json() == {"results": []}, "no prompt: nothing that Label Studio would store"
        context = {"result": [point(IMAGE_B, *centre(truth), size)]}
        answer = httpx.post(url + "/predict", json={"tasks": [task], "params": {"context": context}}).json()
        (prediction,) = answer["results"]
        assert prediction["model_version"] == MODEL_VERSION
        mask = mask_from_results(prediction["result"], truth.shape)
        assert mask is not None and found_the_object(mask.to_array() > 0, truth)
        wrong = {"tasks": [{"id": 2, "data": {"pair_id": "nope"}}], "params": {"context": context}}
        refused = httpx.post(url + "/predict", json=wrong)
        assert refused.status_code == 422 and "not in the workspace's catalog" in refused.json()["error"]
        metrics = httpx.get(url + "/metrics").json()
        assert metrics["clicks"] == 1 and metrics["errors"] == 1 and metrics["first_click_ms"] > 0
    service.close()


def test_a_click_relayed_by_label_studio_becomes_a_fix_on_pull(
    label_studio: LabelStudioForTests, audit_workspace: Path
) -> None:
    settings = label_studio.settings(audit_workspace)
    catalog = Catalog.from_settings(settings)
    triplets = draft_triplets_from_truth(catalog, ImageStore(audit_workspace), audit_workspace / "src", pairs=1)
    audit = LabelStudioAudit(settings)
    pushed = audit.push(catalog)
    target = next(t for t in triplets if t.change_type is ChangeType.APPEAR and len(t.candidate_ids) == 1)
    truth = target.mask.to_array() > 0
    size = (truth.shape[1], truth.shape[0])
    task_id = audit.task_index(pushed.project_id)[target.id][0].task_id
    service = ClickService(settings, "classical")
    with serving(create_app(service), "127.0.0.1", free_port()) as url:
        backend_id = register(audit, url)
        assert register(audit, url) == backend_id, "registering again reuses the registration"
        project = audit.client.projects.get(id=pushed.project_id)
        assert project.model_version == audit.model_version, "the label stream must keep showing our predictions"
        # What the page does on a click: Label Studio relays the context to the backend.
        context = {"result": [point(IMAGE_B, *centre(truth), size)]}
        relayed = audit.client.ml.with_raw_response.predict_interactive(id=backend_id, task=task_id, context=context)
        suggestion = relayed.data["data"]["result"] if isinstance(relayed.data, dict) else None
        if suggestion is None:
            suggestion = relayed.response.json()["data"]["result"]
        (region,) = suggestion
        assert (region["to_name"], region["from_name"]) == (IMAGE_B, MASK_B)
        clicked = mask_from_results([region], truth.shape)
        assert clicked is not None and found_the_object(clicked.to_array() > 0, truth)
        # The auditor accepts the suggestion, then submits: brush regions of the click instead of the proposal.
        result = [r for r in submitted_result(target, "accept") if r["type"] != "brushlabels"] + [region]
        audit.client.annotations.create(id=task_id, result=result, lead_time=4.0)
        pulled = audit.pull(catalog)
        assert pulled.failures == [] and pulled.new_records == 1
        record = catalog.audits_for(target.id)[-1]
        assert record.verdict in (Verdict.ACCEPT, Verdict.FIX)
        saved = catalog.get_triplet(target.id)
        assert saved.state in (TripletState.ACCEPTED, TripletState.FIXED)
        expected = clicked.to_array() > 0
        applied = saved.with_edits(record).mask.to_array() > 0
        assert np.array_equal(applied, expected), "pull must record the clicked mask"
        assert unregister(audit, url) == 1
    assert not audit.client.ml.list(project=pushed.project_id)
    service.close()
    catalog.close()


def test_the_backend_runs_detached_on_a_kept_port_and_stops_with_the_audit_server(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from craft_agent.localhost import pid_alive

    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}"):
        pass

    def craft(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "craft_agent.cli", *args, "--workspace", str(workspace)]
        return subprocess.run(command, capture_output=True, text=True, timeout=180)

    started = craft("audit", "ml-backend", "--detach", "--no-register", "--engine", "classical", "--json")
    assert started.returncode == 0, started.stdout + started.stderr
    first = json.loads(started.stdout)
    try:
        assert httpx.get(first["url"] + "/health").json()["engine"] == "classical"
        again = craft("audit", "ml-backend", "--detach", "--no-register", "--json")
        assert again.returncode == 2 and "already runs for this workspace" in json.loads(again.stdout)["error"]
        assert craft("audit", "ml-backend", "--stop", "--json").returncode == 0
        assert not pid_alive(first["pid"])
        # It comes back on the same port, and `audit stop` takes it down with the audit server.
        second = json.loads(craft("audit", "ml-backend", "--detach", "--no-register", "--json").stdout)
        assert second["url"] == first["url"] and second["pid"] != first["pid"]
        stopped = craft("audit", "stop")
        assert "ML backend of workspace" in stopped.stdout and not pid_alive(second["pid"])
    finally:
        craft("audit", "ml-backend", "--stop")
