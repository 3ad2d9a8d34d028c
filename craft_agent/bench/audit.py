"""``craft-agent bench audit``: push and pull rates against a real Label Studio, and an exactness check.

In one run, on the same tasks:

1. ``push_per_s``: triplets per second through ``craft-agent audit push`` (task building, mask encoding,
   the project index, bulk import, catalog state moves);
2. audits through the API, as auditors would leave them: accept, edit the text, repaint the mask,
   retype, reject, needs fix (not timed);
3. ``pull_per_s``: audited tasks per second through ``craft-agent audit pull``;
4. ``sdk_bulk_per_s``: a bare ``projects.import_tasks`` of the same task dicts in the same batches into a
   second project, the floor the push is measured against;
5. ``roundtrip_exact``: every verdict, edited text, repainted mask and change type read back equals what
   was submitted;
6. ``click_ms_p50`` / ``click_ms_p95``: click-to-mask (``audit ml-backend``) answering point clicks on the
   pushed tasks' targets, timed at the backend (request in, brush region out), with the classical engine;
   ``sam_click_ms_p50`` / ``sam_click_ms_p95`` with a tiny random SAM whose image embeddings were cached
   beforehand (as drafting leaves them), and ``sam_first_click_ms``: the first click on an image nobody had
   encoded (it runs the image encoder).

Uses the configured server (``CRAFT_LABEL_STUDIO_URL`` + token) or starts a temporary local one.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.audit.labeling import IMAGE_A, IMAGE_B, MASK_A, submitted_result, target_images
from craft_agent.audit.server import LABEL_STUDIO_VERSION, temporary_server
from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore
from craft_agent.imagery.ingest import IngestOptions, ingest
from craft_agent.models import ChangeType, RLEMask, Triplet, Verdict, triplet_id
from craft_agent.settings import Settings
from craft_agent.synthetic import write_examples

Report = Callable[[str], None]
ACTIONS = ("accept", "edit_text", "repaint", "retype", "reject", "needs_fix")


@dataclass(frozen=True)
class PlannedAudit:
    """What the simulated auditor does to one triplet, and what pull must read back."""

    action: str
    verdict: Verdict
    expressions: list[str] | None
    mask: np.ndarray | None
    change_type: ChangeType | None


def _bench_triplets(catalog: Catalog, store: ImageStore, root: Path, count: int, seed: int) -> list[Triplet]:
    """``count`` triplets with irregular masks spread over a few generated pairs."""
    write_examples(root / "examples", pairs=4, seed=seed, size=256, street_fraction=0.0)
    ingest(root / "examples", catalog, store, IngestOptions())
    pairs = list(catalog.iter_pairs())
    rng = np.random.default_rng(seed)
    types = list(ChangeType)
    triplets: list[Triplet] = []
    for k in range(count):
        pair = pairs[k % len(pairs)]
        mask = np.zeros((pair.height, pair.width), bool)
        y, x = int(rng.integers(0, pair.height - 40)), int(rng.integers(0, pair.width - 40))
        mask[y : y + int(rng.integers(6, 40)), x : x + int(rng.integers(6, 40))] = True
        mask[y, x : x + 60] = True  # a one-pixel stroke that a lossy encoding would lose
        rle = RLEMask.from_array(mask)
        change = types[k % len(types)]
        triplets.append(
            Triplet(
                id=triplet_id(pair.id, rle, change, f"object-{k}"),
                pair_id=pair.id,
                mask=rle,
                expressions=[f"the changed object number {k}", f"object {k} in the scene"],
                change_type=change,
                category=f"object-{k}",
            )
        )
    for triplet in triplets:
        catalog.upsert_triplet(triplet)
    return triplets


def _plan(triplet: Triplet, k: int) -> PlannedAudit:
    action = ACTIONS[k % len(ACTIONS)]
    if action == "accept":
        return PlannedAudit(action, Verdict.ACCEPT, None, None, None)
    if action == "edit_text":
        return PlannedAudit(action, Verdict.FIX, [f"the edited description {k}"], None, None)
    if action == "repaint":
        painted = np.zeros(triplet.mask.size, bool)
        painted[k % 50 : k % 50 + 30, 10:70] = True
        return PlannedAudit(action, Verdict.FIX, None, painted, None)
    if action == "retype":
        other = next(t for t in ChangeType if t is not triplet.change_type)
        return PlannedAudit(action, Verdict.FIX, None, None, other)
    if action == "reject":
        return PlannedAudit(action, Verdict.REJECT, None, None, None)
    return PlannedAudit(action, Verdict.NEEDS_FIX, None, None, None)


def annotation_result(triplet: Triplet, plan: PlannedAudit) -> list[dict[str, Any]]:
    """The result an auditor's browser would submit for ``plan``."""
    verdict = {"accept": "accept", "fix": "accept", "reject": "reject", "needs_fix": "needs_fix"}[plan.verdict.value]
    painted = {target_images(triplet.change_type)[0]: plan.mask} if plan.mask is not None else None
    change = plan.change_type.value if plan.change_type is not None else None
    return submitted_result(triplet, verdict, plan.expressions, painted, change)


def _matches(catalog: Catalog, triplet: Triplet, plan: PlannedAudit) -> bool:
    records = catalog.audits_for(triplet.id)
    if len(records) != 1:
        return False
    record = records[0]
    stored = catalog.get_triplet(triplet.id)
    edited = stored.with_edits(record)
    mask_ok = (
        record.mask is None
        if plan.mask is None
        else record.mask is not None and np.array_equal(edited.mask.to_array(), plan.mask)
    )
    return (
        record.verdict is plan.verdict
        and record.expressions == plan.expressions
        and mask_ok
        and (record.change_type if record.change_type_edited else None) == plan.change_type
        and stored.state is plan.verdict.resulting_state
        and stored.audit_id == record.id
    )


@contextlib.contextmanager
def _server(settings: Settings, root: Path, report: Report) -> Iterator[tuple[str, str, str]]:
    """(URL, token, description) of the configured server, or of a temporary local one."""
    if settings.label_studio_url and settings.label_studio_token:
        yield settings.label_studio_url, settings.label_studio_token.get_secret_value(), "configured server"
        return
    report("starting a temporary local Label Studio (about 30 s)")
    with temporary_server(
        Settings(workspace=root, label_studio_home=settings.label_studio_home), root / "ls"
    ) as server:
        assert server.url is not None
        yield server.url, server.credentials.token, f"temporary local Label Studio {LABEL_STUDIO_VERSION}"


def run_audit_bench(
    settings: Settings, triplets: int = 1000, batch_size: int = 250, seed: int = 0, report: Report | None = None
) -> dict[str, Any]:
    """Measure push and pull rates and the exactness of the round trip; see the module docstring."""
    say = report or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="craft-bench-audit-") as tmp:
        root = Path(tmp).resolve()
        with _server(settings, root, say) as (url, token, server_kind):
            workspace = root / "workspace"
            bench_settings = Settings(
                workspace=workspace,
                label_studio_url=url,
                label_studio_token=token,
                label_studio_images="local" if server_kind != "configured server" else "inline",
                label_studio_document_root=root if server_kind != "configured server" else None,
                label_studio_project=f"craft-bench-audit-{int(time.time())}",
            )
            with Catalog.from_settings(bench_settings) as catalog:
                made = _bench_triplets(catalog, ImageStore(workspace), root, triplets, seed)
                backend = LabelStudioAudit(bench_settings)
                say(f"pushing {len(made)} triplets")
                pushed = backend.push(catalog, batch_size=batch_size)
                index = backend.task_index(pushed.project_id)
                plans = {t.id: _plan(t, k) for k, t in enumerate(made)}
                say("auditing every task through the API")
                started = time.monotonic()
                with ThreadPoolExecutor(max_workers=4) as pool:
                    list(
                        pool.map(
                            lambda t: backend.client.annotations.create(
                                id=index[t.id][0].task_id, result=annotation_result(t, plans[t.id]), lead_time=5.0
                            ),
                            made,
                        )
                    )
                annotate_s = time.monotonic() - started
                say("pulling")
                pulled = backend.pull(catalog)
                exact = pulled.failures == [] and all(_matches(catalog, t, plans[t.id]) for t in made)

                say("bare SDK bulk import of the same tasks")
                tasks = [backend.build_task(t, catalog.get_pair(t.pair_id)) for t in made]
                project = backend.client.projects.create(
                    title=f"{bench_settings.label_studio_project}-sdk",
                    label_config=backend.client.projects.get(id=pushed.project_id).label_config,
                )
                assert project.id is not None
                started = time.monotonic()
                for start in range(0, len(tasks), batch_size):
                    backend.client.projects.import_tasks(id=project.id, request=tasks[start : start + batch_size])  # type: ignore[arg-type]
                sdk_s = time.monotonic() - started
                say("click-to-mask on the pushed tasks")
                clicks = click_latency(bench_settings, made, seed)
                if server_kind == "configured server":
                    backend.client.projects.delete(id=project.id)
                    backend.client.projects.delete(id=pushed.project_id)
    return {
        "push_per_s": round(len(made) / pushed.seconds, 1),
        "pull_per_s": round(pulled.tasks / pulled.seconds, 1),
        "sdk_bulk_per_s": round(len(tasks) / sdk_s, 1),
        "roundtrip_exact": exact,
        "triplets": len(made),
        "batch_size": batch_size,
        "push_s": round(pushed.seconds, 2),
        "pull_s": round(pulled.seconds, 2),
        "sdk_bulk_s": round(sdk_s, 2),
        "audits_via_api_s": round(annotate_s, 2),
        "audits": {action: sum(p.action == action for p in plans.values()) for action in ACTIONS},
        "images": backend.image_mode,
        "server": server_kind,
        **clicks,
    }


def _click_context(triplet: Triplet, rng: np.random.Generator) -> dict[str, Any] | None:
    """A point click inside the triplet's target on the image where it is drawn, as the page sends it."""
    import cv2

    images = target_images(triplet.change_type)
    mask = triplet.mask.to_array() > 0
    if not images or not mask.any():
        return None
    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    ys, xs = np.nonzero(distance >= 0.5 * distance.max())
    pick = int(rng.integers(len(xs)))
    height, width = mask.shape
    to_name = IMAGE_A if images[0] == MASK_A else IMAGE_B
    item = {
        "original_width": width,
        "original_height": height,
        "value": {"x": 100 * (xs[pick] + 0.5) / width, "y": 100 * (ys[pick] + 0.5) / height, "width": 0.3},
        "is_positive": True,
        "from_name": "kp_b" if to_name == IMAGE_B else "kp_a",
        "to_name": to_name,
        "type": "keypointlabels",
    }
    return {"result": [item]}


def click_latency(settings: Settings, triplets: list[Triplet], seed: int, clicks: int = 60) -> dict[str, Any]:
    """Click-to-mask latency at the backend, classical and tiny SAM (see the module docstring)."""
    import httpx

    from craft_agent.audit.ml_backend import ClickService, create_app, serving
    from craft_agent.localhost import free_port
    from craft_agent.masks.sam import EmbeddingCache, SamMaskEngine
    from craft_agent.masks.tiny_sam import tiny_sam

    rng = np.random.default_rng(seed)
    requests = []
    for triplet in triplets:
        context = _click_context(triplet, rng)
        if context is not None:
            requests.append(
                {"tasks": [{"id": 0, "data": {"pair_id": triplet.pair_id}}], "params": {"context": context}}
            )
        if len(requests) >= clicks:
            break

    def run(service: ClickService) -> dict[str, Any]:
        try:
            with serving(create_app(service), "127.0.0.1", free_port()) as url, httpx.Client(timeout=60) as client:
                for body in requests:
                    client.post(url + "/predict", json=body).raise_for_status()
                return dict(client.get(url + "/metrics").json())
        finally:
            service.close()

    classical = run(ClickService(settings, "classical"))
    cache = EmbeddingCache(settings.workspace / "cache" / "sam-bench")
    # On a fresh cache every new image's first click runs the image encoder (the first click is reported);
    # a second backend on the same cache then finds every embedding there, as after drafting with SAM.
    cold = ClickService(settings, "sam", sam_engine=SamMaskEngine(tiny_sam(), "tiny:bench", cache))
    first = run(cold)
    warm = ClickService(settings, "sam", sam_engine=SamMaskEngine(tiny_sam(), "tiny:bench", cache))
    cached = run(warm)
    return {
        "click_ms_p50": classical["click_ms_p50"],
        "click_ms_p95": classical["click_ms_p95"],
        "click_first_ms": classical["first_click_ms"],
        "sam_click_ms_p50": cached["click_ms_p50"],
        "sam_click_ms_p95": cached["click_ms_p95"],
        "sam_first_click_ms": first["first_click_ms"],
        "sam_encoder_runs_when_cached": cached["encoder_runs"],
        "clicks": classical["clicks"],
        "click_engine_sam": "tiny random SAM (image encoder depth 2, 256 px): latency only, not mask quality",
    }
