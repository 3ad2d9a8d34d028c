"""``craft-agent audit ml-backend``: click-to-mask on either date of an audit task, as a Label Studio ML backend.

The audit page (``auditing/labeling_config.xml``) has smart tools on each image: a point (``kp_a`` / ``kp_b``;
Alt+click for a negative one) and a box (``box_a`` / ``box_b``). With Auto-Annotation on, Label Studio sends
the prompts of the image they were placed on to this backend's ``/predict``; the answer is a brush region on
that image (``mask_a`` / ``mask_b``), which the auditor accepts. The task keeps its triplet id, so
``audit pull`` records the new mask as a fix, as for a painted one.

The protocol, as Label Studio 1.23.2 speaks it (checked against the installed server):

- ``GET /health`` -> ``{"status": "UP", ...}`` (within 1 s: Label Studio asks on every project page load);
- ``POST /setup`` -> ``{"model_version": ...}`` (within 3 s);
- ``POST /predict`` with ``{"tasks": [task], "params": {"context": {"result": [prompts]}}}`` ->
  ``{"results": [{"result": [brush region], "score", "model_version"}]}``; without a context (Label Studio
  asking for a task that has no prediction yet) -> ``{"results": []}``, so nothing empty is stored;
- ``POST /webhook`` -> ``{"status": "ok"}`` at once (Label Studio posts every project event there and waits);
- ``GET /versions`` -> the model version; ``GET /metrics`` -> click counts and latencies at the server.

Prompts are in percent of the image; the task's ``pair_id`` names the pair in the catalog, whose stored
images are what the page shows. The mask engine is SAM when a checkpoint is configured (its embedding cache
is the one drafting filled, so a click costs a prompt decode), the classical one otherwise
(:mod:`craft_agent.masks.click`). Registering needs the Label Studio server to accept a backend on
127.0.0.1, which ``audit serve`` allows (``USE_DEFAULT_BANNED_SUBNETS=false``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import mask2rle
from starlette.requests import Request  # FastAPI resolves the handlers' annotations from this module

from craft_agent.audit.labeling import BRUSH_LABEL, IMAGE_A, IMAGE_B, MASK_A, MASK_B, hints_from_results
from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore
from craft_agent.errors import AuditError, CatalogError, ConfigError
from craft_agent.masks.click import (
    ClassicalClickEngine,
    ClickPrompt,
    SamClickEngine,
    prompt_from_hints,
    segment_prompt,
)
from craft_agent.settings import Settings

log = logging.getLogger(__name__)

MODEL_VERSION = f"craft-agent click-to-mask {version('craft-agent')}"
BACKEND_TITLE = "craft-agent click-to-mask"
DATE_OF = {IMAGE_A: "pre", IMAGE_B: "post"}
BRUSH_OF = {IMAGE_A: MASK_A, IMAGE_B: MASK_B}
PROMPT_TYPES = ("keypointlabels", "rectanglelabels")
"""The page's smart tools (``kp_*``, ``box_*``)."""
CACHED_PAIRS = 8


class PromptError(ValueError):
    """A /predict request whose prompts cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class ImagePrompt:
    """The prompts of one /predict call: on which image, and the image's size as the page loaded it."""

    to_name: str
    prompt: ClickPrompt
    width: int
    height: int


def prompt_from_context(context: dict[str, Any]) -> ImagePrompt:
    """The points and box of an interactive /predict context, in pixels of the image they were placed on
    (read as the pull reads them from a submitted annotation: :func:`~craft_agent.audit.labeling.hints_from_results`).

    Raises:
        PromptError: for prompts on no or several images, on an image that is not a date of the pair, of
            another kind, or outside the image.
    """
    items = [item for item in context.get("result") or [] if isinstance(item, dict)]
    used = [item for item in items if item.get("type") in PROMPT_TYPES]
    if not used:
        raise PromptError("the context holds no point or box")
    images = {str(item.get("to_name")) for item in used}
    if len(images) != 1 or not images <= set(DATE_OF):
        raise PromptError(f"prompts must be on one of {', '.join(DATE_OF)}, not on {', '.join(sorted(images))}")
    to_name = images.pop()
    sizes = {(int(item.get("original_width") or 0), int(item.get("original_height") or 0)) for item in used}
    if len(sizes) != 1 or min(next(iter(sizes))) <= 0:
        raise PromptError(f"the prompts give no single image size ({sorted(sizes)})")
    width, height = sizes.pop()
    try:
        hints = hints_from_results(used, (height, width))
    except ValueError as exc:
        raise PromptError(f"{exc} (prompts outside the image or without area cannot be used)") from exc
    prompt = prompt_from_hints(DATE_OF[to_name], hints)
    if prompt is None:
        raise PromptError("only negative points: place a positive point (a click) or a box on the target first")
    return ImagePrompt(to_name, prompt, width, height)


def brush_region(to_name: str, mask: np.ndarray) -> dict[str, Any]:
    """A brush region of ``mask`` on image ``to_name``, in Label Studio's brush RLE."""
    height, width = mask.shape
    return {
        "from_name": BRUSH_OF[to_name],
        "to_name": to_name,
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [BRUSH_LABEL]},
    }


@dataclass
class ClickStats:
    """Clicks answered, and the time each took at the server (decoding the request to encoding the mask)."""

    milliseconds: list[float] = field(default_factory=list)
    first_ms: float | None = None
    """The first click of this server: images read and, with SAM, an embedding computed unless cached."""
    encoder_runs: int = 0
    errors: int = 0

    def as_json(self) -> dict[str, Any]:
        later = self.milliseconds[1:] if len(self.milliseconds) > 1 else self.milliseconds
        p50, p95 = (float(np.percentile(later, q)) for q in (50, 95)) if later else (None, None)
        return {
            "clicks": len(self.milliseconds),
            "click_ms_p50": round(p50, 1) if p50 is not None else None,
            "click_ms_p95": round(p95, 1) if p95 is not None else None,
            "first_click_ms": round(self.first_ms, 1) if self.first_ms is not None else None,
            "encoder_runs": self.encoder_runs,
            "errors": self.errors,
        }


class ClickService:
    """Answers clicks for the tasks of one workspace.

    Args:
        settings: the workspace (catalog and stored images) and the SAM checkpoint, if any.
        engine: ``auto`` (SAM when a checkpoint is configured, else classical), ``classical`` or ``sam``.
        sam_engine: a ready :class:`~craft_agent.masks.sam.SamMaskEngine` (benchmarks, tests), else built from
            the settings' checkpoint with the workspace's embedding cache.

    Raises:
        ConfigError: for ``sam`` without a usable checkpoint, or an unknown engine.
    """

    def __init__(self, settings: Settings, engine: str = "auto", sam_engine: Any = None) -> None:
        if engine not in ("auto", "classical", "sam"):
            raise ConfigError(f"unknown click engine {engine!r}.", hint="use auto, classical or sam.")
        self.settings = settings
        self.store = ImageStore(settings.workspace)
        self.catalog = Catalog.from_settings(settings)
        self.sam: SamClickEngine | None = None
        if sam_engine is not None:
            self.sam = SamClickEngine(sam_engine)
        elif engine == "sam" or (engine == "auto" and settings.sam_checkpoint):
            from craft_agent.masks import create_mask_engine

            self.sam = SamClickEngine(create_mask_engine(settings, "sam"))
        self.classical = ClassicalClickEngine()
        self.engine = "sam" if self.sam else "classical"
        self.stats = ClickStats()
        self._lock = threading.Lock()  # one click at a time: SAM's predictor and the catalog are not shared
        self._pairs: OrderedDict[str, tuple[np.ndarray, np.ndarray, str, str]] = OrderedDict()

    def close(self) -> None:
        self.catalog.close()

    def _images(self, pair_id: str) -> tuple[np.ndarray, np.ndarray, str, str]:
        if pair_id not in self._pairs:
            try:
                pair = self.catalog.get_pair(pair_id)
            except CatalogError as exc:
                raise PromptError(f"pair {pair_id} is not in the workspace's catalog") from exc
            self._pairs[pair_id] = (
                self.store.load(pair.pre),
                self.store.load(pair.post),
                pair.pre.sha256,
                pair.post.sha256,
            )
            while len(self._pairs) > CACHED_PAIRS:
                self._pairs.popitem(last=False)
        self._pairs.move_to_end(pair_id)
        return self._pairs[pair_id]

    def click(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """The prediction answering one interactive /predict call on ``task``.

        Raises:
            PromptError: for a task without a known pair, or unusable prompts.
        """
        started = time.perf_counter()
        data = task.get("data") or {}
        pair_id = data.get("pair_id")
        if not isinstance(pair_id, str) or not pair_id:
            raise PromptError("the task has no pair_id: push it with `craft-agent audit push`")
        placed = prompt_from_context(context)
        with self._lock:
            pre, post, pre_key, post_key = self._images(pair_id)
            if (placed.height, placed.width) != pre.shape[:2]:
                raise PromptError(
                    f"the page loaded a {placed.width}x{placed.height} image, the pair is {pre.shape[1]}x{pre.shape[0]}"
                )
            result = segment_prompt(self.sam or self.classical, pre, post, pre_key, post_key, placed.prompt)
            if self.sam is not None:
                self.stats.encoder_runs = int(result.details.get("encoder_runs", 0))
            region = brush_region(placed.to_name, result.mask)
            elapsed = (time.perf_counter() - started) * 1000
            if self.stats.first_ms is None:
                self.stats.first_ms = elapsed
            self.stats.milliseconds.append(elapsed)
        log.info("click on %s of pair %s: %s, %.0f ms", placed.to_name, pair_id, result.engine, elapsed)
        return {"result": [region], "score": round(float(result.score), 4), "model_version": MODEL_VERSION}


def create_app(service: ClickService) -> Any:
    """The FastAPI app serving Label Studio's ML backend protocol for ``service`` (see the module docstring)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="craft-agent click-to-mask", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "UP", "model_class": "CraftClickToMask", "engine": service.engine}

    @app.post("/setup")
    def setup() -> dict[str, Any]:
        return {"model_version": MODEL_VERSION}

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        return {"versions": [MODEL_VERSION]}

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:
        return {"engine": service.engine, **service.stats.as_json()}

    @app.post("/webhook")
    def webhook() -> dict[str, Any]:
        return {"status": "ok"}  # project events: nothing to learn from them here

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the request body is not JSON"}, status_code=400)
        params = body.get("params") or {}
        context = params.get("context") if isinstance(params, dict) else None
        tasks = body.get("tasks") or []
        if not context or not context.get("result") or not tasks:
            return {"results": []}  # no prompt: never store an empty prediction
        try:
            # The engines are CPU-bound: run them off the event loop so /health stays quick meanwhile.
            from starlette.concurrency import run_in_threadpool

            prediction = await run_in_threadpool(service.click, tasks[0], context)
        except PromptError as exc:
            service.stats.errors += 1
            log.warning("click refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=422)
        return {"results": [prediction]}

    return app


@contextlib.contextmanager
def serving(app: Any, host: str, port: int, timeout_s: float = 30) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its URL once /health answers.

    Raises:
        AuditError: when it does not come up within ``timeout_s``.
    """
    import httpx
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="craft-ml-backend", daemon=True)
    thread.start()
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise AuditError(
                f"the ML backend did not come up on {host}:{port}.", hint="check that the port is free (--port)."
            )
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def register(audit: Any, url: str) -> int:
    """Register the backend at ``url`` with the workspace's audit project (interactive), reusing an existing
    registration of the same URL; returns its id in Label Studio.

    Label Studio names a project's model version after the first backend registered; craft-agent's
    predictions carry their own, so it is set back (the label stream shows only that version's predictions).

    Raises:
        AuditError: when the server refuses (e.g. it blocks backends on 127.0.0.1: restart it with
            ``craft-agent audit serve``, which allows them).
    """
    client = audit.client
    project_id = audit._resilient("find or create the audit project", audit.ensure_project, 60)
    backends = audit._call("list ML backends", client.ml.list, project=project_id)
    same = [b for b in backends if (b.url or "").rstrip("/") == url.rstrip("/")]
    if same and same[0].id is not None:
        backend_id = int(same[0].id)
        if not same[0].is_interactive:
            # Label Studio 1.23 fails a PATCH without the URL (its health check needs it): always send it.
            update = client.ml.update
            audit._call(
                "update the ML backend", update, id=backend_id, url=url, is_interactive=True, title=BACKEND_TITLE
            )
    else:
        try:
            created = client.ml.create(project=project_id, url=url, is_interactive=True, title=BACKEND_TITLE)
        except Exception as exc:  # the SDK raises ApiError subclasses; the message is what matters here
            raise AuditError(
                f"Label Studio refused the ML backend at {url} ({str(exc)[:300]}).",
                hint="a server started by an older craft-agent blocks backends on 127.0.0.1: restart it "
                "(`craft-agent audit stop` then `audit serve`); an external server must reach --public-url.",
            ) from exc
        backend_id = int(created.id)
    project = audit._call("read the audit project", client.projects.get, id=project_id)
    if getattr(project, "model_version", None) not in (None, "", audit.model_version):
        audit._call(
            "keep the project's model version", client.projects.update, id=project_id, model_version=audit.model_version
        )
    return backend_id


def unregister(audit: Any, url: str) -> int:
    """Remove the registrations of ``url`` from the audit project (Label Studio would otherwise ask a stopped
    backend for its health on every page load); returns how many."""
    project_id = audit.find_project()
    if project_id is None:
        return 0
    removed = 0
    for backend in audit._call("list ML backends", audit.client.ml.list, project=project_id):
        if (backend.url or "").rstrip("/") == url.rstrip("/") and backend.id is not None:
            audit._call("remove the ML backend", audit.client.ml.delete, id=backend.id)
            removed += 1
    return removed
