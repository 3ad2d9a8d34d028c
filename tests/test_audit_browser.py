"""The auditor's page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Also the source of the screenshots in auditing/GUIDE.md: ``CRAFT_UPDATE_SCREENSHOTS=1 pytest
tests/test_audit_browser.py`` writes them into auditing/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.models import TripletState, Verdict
from tests.conftest import LabelStudioForTests
from tests.data import draft_triplets_from_truth

SCREENSHOTS = Path(__file__).resolve().parents[1] / "auditing" / "screenshots"
BROWSERS = ("chromium-headless-shell", "chromium")


def chromium() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name) or (
            f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").exists() else None
        )
        if found:
            return found
    return None


@pytest.fixture
def browser_page(label_studio: LabelStudioForTests) -> Iterator[object]:
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium found: install Debian's chromium-headless-shell (`make test` does it with apt-get)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            credentials = label_studio.server.credentials
            page.goto(label_studio.url + "/user/login/")
            page.fill("input[name=email]", credentials.username)
            page.fill("input[name=password]", credentials.password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            yield page
        finally:
            browser.close()


def _open(page: object, url: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.wait_for_selector("text=Referring expression")  # type: ignore[attr-defined]
    page.wait_for_selector("img")  # type: ignore[attr-defined]
    page.wait_for_timeout(1500)  # let the brush masks render before a screenshot  # type: ignore[attr-defined]


def test_auditor_edits_the_expression_in_the_browser_and_pull_sees_it(
    label_studio: LabelStudioForTests, audit_workspace: Path, browser_page: object, tmp_path: Path
) -> None:
    page = browser_page
    settings = label_studio.settings(audit_workspace)
    catalog = Catalog.from_settings(settings)
    triplets = draft_triplets_from_truth(catalog, ImageStore(audit_workspace), audit_workspace / "src", pairs=1)
    backend = LabelStudioAudit(settings)
    pushed = backend.push(catalog)
    index = backend.task_index(pushed.project_id)
    single = next(t for t in triplets if not t.is_no_target and len(t.candidate_ids) == 1)
    multi = next(t for t in triplets if len(t.candidate_ids) > 1)
    no_target = next(t for t in triplets if t.is_no_target)
    shots = SCREENSHOTS if os.environ.get("CRAFT_UPDATE_SCREENSHOTS") else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)

    def task_url(triplet_id: str) -> str:
        return f"{label_studio.url}/projects/{pushed.project_id}/data?task={index[triplet_id][0].task_id}"

    def shoot(name: str) -> None:
        path = shots / f"{name}.jpg"
        page.screenshot(path=str(path), type="jpeg", quality=70)  # type: ignore[attr-defined]
        assert path.stat().st_size > 10_000

    for name, triplet in (("multi-target", multi), ("no-target", no_target)):
        _open(page, task_url(triplet.id))
        shoot(name)

    _open(page, task_url(single.id))
    shoot("single-target")
    shown = page.locator("[data-testid=htx-textbox-content]").first.inner_text()  # type: ignore[attr-defined]
    assert shown.strip() == single.expressions[0]

    # Edit the proposed expression in place, set the verdict by its hotkey's label, submit.
    edited = "the dark building with a flat roof that appeared in the middle right"
    page.locator("[data-testid=htx-textbox-edit-button]").first.click()  # type: ignore[attr-defined]
    editor = page.locator("[data-testid=textarea-region] textarea, [data-testid=textarea-region] input").first  # type: ignore[attr-defined]
    editor.fill(edited)
    editor.press("Enter")
    page.locator("input[type=radio][name='accept']").check()  # type: ignore[attr-defined]
    shoot("edited")
    page.get_by_role("button", name="Submit").click()  # type: ignore[attr-defined]
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
    page.wait_for_timeout(1000)  # type: ignore[attr-defined]

    pulled = backend.pull(catalog)
    assert pulled.failures == [] and pulled.new_records == 1
    (record,) = catalog.audits_for(single.id)
    assert record.verdict is Verdict.FIX
    assert record.expressions is not None and record.expressions[0] == edited
    assert record.mask is None, "the untouched proposed mask must come back unchanged"
    assert record.auditor == label_studio.server.credentials.username
    assert record.lead_time_s is not None and record.lead_time_s > 0
    assert catalog.get_triplet(single.id).state is TripletState.FIXED
    catalog.close()


def test_a_click_on_the_later_image_masks_the_target_and_pull_records_the_fix(
    label_studio: LabelStudioForTests, audit_workspace: Path, browser_page: object, tmp_path: Path
) -> None:
    """The drafted "no target" was wrong: the auditor clicks the new building on the later image, gets its
    mask from the ML backend, marks it as appeared and accepts; pull records the fix with that mask."""
    import cv2
    import numpy as np

    from craft_agent.audit.ml_backend import ClickService, create_app, register, serving, unregister
    from craft_agent.localhost import free_port
    from craft_agent.masks.base import mask_iou
    from craft_agent.models import ChangeType

    page = browser_page
    settings = label_studio.settings(audit_workspace)
    catalog = Catalog.from_settings(settings)
    triplets = draft_triplets_from_truth(catalog, ImageStore(audit_workspace), audit_workspace / "src", pairs=1)
    no_target = next(t for t in triplets if t.is_no_target)
    pair = catalog.get_pair(no_target.pair_id)
    appeared = next(c for c in pair.gt_changes if c.change_type is ChangeType.APPEAR)
    truth = appeared.mask.to_array() > 0
    distance = cv2.distanceTransform(np.pad(truth.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    backend = LabelStudioAudit(settings)
    pushed = backend.push(catalog)
    task_id = backend.task_index(pushed.project_id)[no_target.id][0].task_id
    shots = SCREENSHOTS if os.environ.get("CRAFT_UPDATE_SCREENSHOTS") else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    service = ClickService(settings, "classical")
    with serving(create_app(service), "127.0.0.1", free_port()) as url:
        register(backend, url)  # before the page loads: it offers Auto-Annotation only then
        _open(page, f"{label_studio.url}/projects/{pushed.project_id}/data?task={task_id}")
        page.locator("[data-testid=bottombar-auto-annotation-toggle]").click()  # type: ignore[attr-defined]
        # Image B is the page's last image (after the zoomed view and image A): its toolbar and stage.
        toolbar = page.locator(".lsf-toolbar").last  # type: ignore[attr-defined]
        toolbar.scroll_into_view_if_needed()
        toolbar.locator("button.lsf-tool_smart[aria-label=key-point-tool]").dispatch_event("click")
        page.locator(".lsf-label", has_text="x").filter(has_text="target").first.click()  # type: ignore[attr-defined]
        stage = page.locator(".konvajs-content").last  # type: ignore[attr-defined]
        stage.scroll_into_view_if_needed()
        box = stage.bounding_box()
        height, width = truth.shape
        page.mouse.click(  # type: ignore[attr-defined]
            box["x"] + box["width"] * (x + 0.5) / width, box["y"] + box["height"] * (y + 0.5) / height
        )
        accept = page.locator("[data-testid=bottombar-accept-suggestions-button]")  # type: ignore[attr-defined]
        try:
            accept.wait_for(timeout=30_000)
        finally:
            page.screenshot(path=str(tmp_path / "after-click.jpg"), type="jpeg")  # type: ignore[attr-defined]
        assert service.stats.as_json()["clicks"] == 1, "Label Studio must have relayed the click to the backend"
        page.wait_for_timeout(800)  # type: ignore[attr-defined]
        path = shots / "click-to-mask.jpg"
        page.screenshot(path=str(path), type="jpeg", quality=70)  # type: ignore[attr-defined]
        accept.click()
        page.locator("input[type=radio][name='appeared']").check()  # type: ignore[attr-defined]
        page.locator("input[type=radio][name='accept']").check()  # type: ignore[attr-defined]
        page.get_by_role("button", name="Submit").click()  # type: ignore[attr-defined]
        page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
        page.wait_for_timeout(1000)  # type: ignore[attr-defined]
        unregister(backend, url)
    service.close()

    pulled = backend.pull(catalog)
    assert pulled.failures == [] and pulled.new_records == 1
    (record,) = catalog.audits_for(no_target.id)
    assert record.verdict is Verdict.FIX and record.mask is not None
    clicked = record.mask.to_array() > 0
    assert (clicked & truth).sum() >= 0.9 * truth.sum() and mask_iou(clicked, truth) > 0.4
    assert record.change_type is ChangeType.APPEAR
    assert catalog.get_triplet(no_target.id).state is TripletState.FIXED
    catalog.close()
