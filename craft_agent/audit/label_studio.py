"""Push triplets to Label Studio and pull the auditors' verdicts back into the catalog.

:class:`LabelStudioAudit` is the audit backend: ``push`` imports drafted triplets in bulk (one task per
triplet, carrying the triplet id and a revision hash, with the proposal as a prediction) and ``pull`` turns
submitted annotations into :class:`AuditRecord` rows and state moves. The server is the source of truth for
what was pushed, so both are idempotent and survive interruptions: a push first indexes the project's tasks
by triplet id and imports only what is missing; a pull upserts records by annotation id. When the server goes
away mid-way (a restart), each step is retried with backoff for a bounded time, finding the workspace's own
server again by its PID file; a bulk import that may have landed is re-indexed before it is repeated.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from craft_agent.audit.labeling import audit_record, label_config, revision_of, task_for
from craft_agent.audit.policy import Decision, decide
from craft_agent.audit.server import SERVER_DIR, Credentials, ServerInfo, is_loopback
from craft_agent.audit.views import FILL_OPACITIES, target_view
from craft_agent.catalog import Catalog, in_batches
from craft_agent.catalog.store import IMAGES_DIR, ImageStore, write_atomic
from craft_agent.errors import AuditError, CraftError
from craft_agent.localhost import health
from craft_agent.models import AuditRecord, ImagePair, StoredImage, Triplet, TripletState
from craft_agent.settings import Settings

T = TypeVar("T")
Progress = Callable[[int], None]


@dataclass
class PushSummary:
    """What a push did. ``unchanged`` tasks were already on the server with the same revision."""

    project_id: int
    url: str
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    queued: int = 0
    retries: int = 0
    duplicates: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PullSummary:
    """What a pull did. ``moved`` counts state moves by target state."""

    project_id: int
    tasks: int = 0
    annotations: int = 0
    new_records: int = 0
    updated_records: int = 0
    removed_records: int = 0
    moved: dict[str, int] = field(default_factory=dict)
    undecided: int = 0
    unknown_tasks: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Invitation:
    """How a colleague joins the audit (see :meth:`LabelStudioAudit.invite`). Holds no admin secret: the
    sign-up link carries the organisation's invitation token, which exists to be handed out."""

    email: str
    signup_url: str
    login_url: str
    already_member: bool
    link_reset: bool
    local_only: bool
    """The server listens on 127.0.0.1: a colleague on another machine needs an SSH tunnel (or ``--host``)."""


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class TaskRef:
    task_id: int
    triplet_id: str
    revision: str


def connection(settings: Settings) -> tuple[str, str, bool]:
    """(URL, token, is the workspace's own server) of the Label Studio to audit in.

    An explicit ``label_studio_url`` wins; otherwise the server ``craft-agent audit serve`` runs for this
    workspace.

    Raises:
        AuditError: when no server is configured or running, or a URL is given without a token.
    """
    info = ServerInfo.read(settings.workspace / SERVER_DIR / "server.json")
    if settings.label_studio_url:
        if not settings.label_studio_token:
            raise AuditError(
                f"CRAFT_LABEL_STUDIO_URL is set ({settings.label_studio_url}) but no API token is.",
                hint="set CRAFT_LABEL_STUDIO_TOKEN to the token from Label Studio's Account & Settings page.",
            )
        url = settings.label_studio_url.rstrip("/")
        own = bool(info and info.url.rstrip("/") == url)
        return url, settings.label_studio_token.get_secret_value(), own
    if info and info.alive and health(info.url):
        credentials = Credentials.load_or_create(settings.workspace / SERVER_DIR / "credentials.json", settings)
        return info.url, credentials.token, True
    raise AuditError(
        f"no Label Studio server for workspace {settings.workspace}.",
        hint=f"start one with `craft-agent audit serve --workspace {settings.workspace} --detach`, or set "
        "CRAFT_LABEL_STUDIO_URL and CRAFT_LABEL_STUDIO_TOKEN to use an existing server.",
    )


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ApiError) and (exc.status_code or 0) >= 500


def _server_away(exc: BaseException) -> bool:
    """True for a failure that waiting may cure: no connection, a dropped one, a 5xx (raw or wrapped by _call)."""
    return _transient(exc) or (isinstance(exc, AuditError) and exc.__cause__ is not None and _transient(exc.__cause__))


class LabelStudioAudit:
    """Audit backend on a Label Studio server.

    Args:
        settings: workspace (catalog, images), project title, image mode and policy.
        url: server URL; with ``token``, overrides what :func:`connection` finds.
        token: API token (legacy token); never logged.
        timeout_s: per-request timeout.
        overlap: annotations each task gets before Label Studio counts it as done, i.e. how many auditors
            see it (the project's ``maximum_annotations``); None keeps the project's (new projects: 1, or 3
            under a ``majority`` / ``two_agree`` policy). See :meth:`ensure_project`.

    Raises:
        AuditError: for an overlap under 1.
    """

    def __init__(
        self,
        settings: Settings,
        url: str | None = None,
        token: str | None = None,
        timeout_s: float = 120,
        overlap: int | None = None,
    ) -> None:
        if overlap is not None and overlap < 1:
            raise AuditError(
                f"overlap {overlap}: each task needs at least one annotation.",
                hint="pass --overlap 1 (one auditor per task, the default) or more (that many auditors per task).",
            )
        self._asked_overlap = overlap
        self.overlap: int | None = None  # the project's, once ensure_project has run
        self.settings = settings
        info = ServerInfo.read(settings.workspace / SERVER_DIR / "server.json")
        if url and token:
            found_url = url.rstrip("/")
            own = bool(info and info.url.rstrip("/") == found_url)
        else:
            found_url, token, own = connection(settings)
        # Found through the workspace's PID file: after a restart, look there again for where it is now.
        self._follows_workspace_server = not (url and token) and not settings.label_studio_url
        self._token = token
        self._timeout_s = timeout_s
        self.retries = 0  # steps repeated so far because the server was away
        self.url = found_url
        self.client = LabelStudio(base_url=found_url, api_key=token, timeout=timeout_s)
        mode = settings.label_studio_images
        self.image_mode = ("local" if own else "inline") if mode == "auto" else mode
        self.project_title = settings.label_studio_project or f"CRAFT-Agent audit: {settings.workspace.resolve().name}"
        self.store = ImageStore(settings.workspace)
        root = settings.label_studio_document_root or (Path(info.document_root) if own and info else None)
        self.document_root = (root or settings.workspace).resolve()
        self.model_version = f"craft-agent {version('craft-agent')}"
        self._decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """The last few pairs' images, decoded for the target views (tasks come grouped by pair)."""

    # -- server calls -----------------------------------------------------------------------------

    def _call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one SDK call, turning its failures into an AuditError that names the server and the step."""
        try:
            return function(*args, **kwargs)
        except (ApiError, httpx.HTTPError) as exc:
            raise self._audit_error(what, exc) from exc

    def _resilient(self, what: str, step: Callable[[], T], retry_s: float) -> T:
        """Run ``step`` (one that is safe to repeat), again and again with backoff while the server is away.

        Between tries the workspace's own server is looked up again, so one restarted elsewhere is found.

        Raises:
            AuditError: at once for a refusal (bad token, 4xx); after ``retry_s`` when the server stays away.
        """

        def reconnect(state: RetryCallState) -> None:
            if state.attempt_number > 1:
                self._reconnect()

        def count(state: RetryCallState) -> None:
            self.retries += 1

        retrying = Retrying(
            retry=retry_if_exception(_server_away),
            stop=stop_after_delay(retry_s),
            wait=wait_exponential(multiplier=0.5, max=8),
            before=reconnect,
            before_sleep=count,
            reraise=True,
        )
        try:
            return retrying(step)
        except AuditError as exc:
            if not _server_away(exc):
                raise
            raise self._gave_up(what, retry_s, exc) from exc
        except (ApiError, httpx.HTTPError) as exc:
            if not _server_away(exc):
                raise self._audit_error(what, exc) from exc
            raise self._gave_up(what, retry_s, exc) from exc

    def _gave_up(self, what: str, retry_s: float, exc: Exception) -> AuditError:
        return AuditError(
            f"Label Studio at {self.url} stopped answering while trying to {what} and did not come back "
            f"within {retry_s:.0f} s ({type(exc.__cause__ or exc).__name__}).",
            hint="start the server again (`craft-agent audit serve`) and re-run the command: triplets "
            "already imported are recognised by id and not imported twice; a longer --retry-s waits longer.",
        )

    def _reconnect(self) -> None:
        """Point the client at the workspace's own server again (a no-op for a configured URL)."""
        if not self._follows_workspace_server:
            return
        try:
            url, token, _ = connection(self.settings)
        except AuditError:
            return  # not back yet: the next try fails fast and waits again
        if (url, token) != (self.url, self._token):
            self.url, self._token = url, token
            self.client = LabelStudio(base_url=url, api_key=token, timeout=self._timeout_s)

    def _audit_error(self, what: str, exc: ApiError | httpx.HTTPError) -> AuditError:
        if isinstance(exc, httpx.HTTPError):
            return AuditError(
                f"Label Studio at {self.url} did not answer while trying to {what} ({type(exc).__name__}).",
                hint="start it (`craft-agent audit serve`) or check CRAFT_LABEL_STUDIO_URL; "
                "running the command again is safe: nothing is duplicated.",
            )
        if exc.status_code in (401, 403):
            return AuditError(
                f"Label Studio at {self.url} refused the API token while trying to {what} (HTTP {exc.status_code}).",
                hint="set CRAFT_LABEL_STUDIO_TOKEN to a valid legacy token (Account & Settings), or for the "
                "workspace's own server start it with `craft-agent audit serve`.",
            )
        detail = json.dumps(exc.body)[:300] if exc.body is not None else ""
        return AuditError(
            f"Label Studio at {self.url} answered HTTP {exc.status_code} while trying to {what}: {detail}",
            hint="read the server's log (workspace/label-studio/server.log for the local one).",
        )

    def find_project(self) -> int | None:
        """Id of the workspace's audit project, or None before the first push."""
        projects: list[Any] = self._call(
            "list projects", lambda: list(self.client.projects.list(title=self.project_title))
        )
        matching = sorted(int(p.id) for p in projects if p.title == self.project_title and p.id is not None)
        return matching[0] if matching else None

    def ensure_project(self) -> int:
        """The audit project's id, creating it (with the labeling config) on first use.

        An existing project gets the current labeling config when it differs. The overlap (Label Studio
        Community has no task assignment: several auditors share one queue, and a task leaves it once it has
        that many annotations) lives in the project itself, as ``maximum_annotations`` with
        ``overlap_cohort_percentage`` 100 (every task, not a sample): the ``overlap`` asked for is set,
        existing tasks included; None leaves the project's as it is. The overlap in effect is left in
        ``self.overlap``.
        """
        config = label_config()
        project_id = self.find_project()
        if project_id is None:
            overlap = self._asked_overlap or (1 if self.settings.audit_policy == "first" else 3)
            project = self._call(
                "create the audit project",
                self.client.projects.create,
                title=self.project_title,
                description="Audit of CRAFT-Agent triplets; see auditing/GUIDE.md.",
                label_config=config,
                show_collab_predictions=True,
                maximum_annotations=overlap,
                overlap_cohort_percentage=100,
            )
            assert project.id is not None
            project_id = project.id
        else:
            current = self._call("read the audit project", self.client.projects.get, id=project_id)
            update = self.client.projects.update
            if (current.label_config or "").strip() != config.strip():
                self._call("update the labeling config", update, id=project_id, label_config=config)
            overlap = current.maximum_annotations or 1
            asked = self._asked_overlap
            if asked is not None and (overlap, current.overlap_cohort_percentage) != (asked, 100):
                overlap = asked
                self._call(
                    "set the overlap", update, id=project_id, maximum_annotations=overlap, overlap_cohort_percentage=100
                )
        self.overlap = overlap
        if self.image_mode == "local":
            self._ensure_local_storage(project_id)
        return project_id

    def _ensure_local_storage(self, project_id: int) -> None:
        images = str((self.settings.workspace / IMAGES_DIR).resolve())
        storages = self._call("list storages", self.client.import_storage.local.list, project=project_id)
        if any(getattr(s, "path", None) == images for s in storages):
            return
        (self.settings.workspace / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._call(
            "create the local-files storage",
            self.client.import_storage.local.create,
            project=project_id,
            path=images,
            title="CRAFT-Agent workspace images",
            use_blob_urls=False,
        )

    def export_tasks(self, project_id: int, all_tasks: bool) -> list[dict[str, Any]]:
        """The project's tasks as Label Studio's JSON export (one request): every task, or annotated ones."""

        def download() -> list[dict[str, Any]]:
            chunks = self.client.projects.exports.download_sync(
                id=project_id, export_type="JSON", download_all_tasks=all_tasks
            )
            return list(json.loads(b"".join(chunks)))

        return self._call("export the project's tasks", download)

    def task_index(self, project_id: int) -> dict[str, list[TaskRef]]:
        """The project's tasks by triplet id (normally one each)."""
        index: dict[str, list[TaskRef]] = defaultdict(list)
        for task in self.export_tasks(project_id, all_tasks=True):
            data = task.get("data") or {}
            if "triplet_id" in data:
                ref = TaskRef(int(task["id"]), str(data["triplet_id"]), str(data.get("revision", "")))
                index[ref.triplet_id].append(ref)
        return index

    # -- auditors ---------------------------------------------------------------------------------

    def invite(self, email: str, reset: bool = False) -> Invitation:
        """Invite ``email`` to audit: the organisation's sign-up link, on which they choose their own password.

        Label Studio Community has no invitation per person (its invite-by-e-mail endpoints are Enterprise
        only), and an account made through its API gets no password anyone can use; its invitation is the
        organisation's sign-up link, the only way to sign up while sign-up without it is closed (the local
        server keeps it closed). Anyone holding the link can join: send it privately, and ``reset`` it
        (a new link, the old one void) when it went astray or someone should no longer join.

        Args:
            email: the colleague's e-mail address; they sign up with it and log in with it.
            reset: make a new link first.

        Raises:
            AuditError: for an ``email`` that is not an e-mail address, or when the server refuses.
        """
        address = email.strip().lower()
        if not _EMAIL.fullmatch(address):
            raise AuditError(
                f"{email!r} is not an e-mail address.",
                hint="pass the colleague's address, e.g. `craft-agent audit invite ana@example.org`.",
            )
        users = self._call("list users", lambda: list(self.client.users.list()))
        member = any((user.email or "").lower() == address for user in users)
        organizations = self.client.organizations
        if reset:
            link = self._call("make a new invitation link", organizations.reset_token)
        else:
            link = self._call("read the invitation link", organizations.invites.get_invite_link)
        info = ServerInfo.read(self.settings.workspace / SERVER_DIR / "server.json")
        own = bool(info and info.url.rstrip("/") == self.url)
        base = (info.public_url if info and own else self.url).rstrip("/")
        if not link.invite_url:
            raise AuditError(
                f"Label Studio at {self.url} gave no invitation link.",
                hint="invite the colleague from Label Studio's Organization page instead.",
            )
        return Invitation(
            email=address,
            signup_url=base + link.invite_url,
            login_url=base + "/user/login/",
            already_member=member,
            link_reset=reset,
            local_only=bool(info and own and is_loopback(info.host)),
        )

    # -- push -------------------------------------------------------------------------------------

    def _image_url(self, image: StoredImage) -> str:
        if self.image_mode == "local":
            path = self.store.path_of(image).resolve()
            if not path.is_relative_to(self.document_root):
                raise AuditError(
                    f"image {path} is outside the Label Studio document root {self.document_root}.",
                    hint="set CRAFT_LABEL_STUDIO_DOCUMENT_ROOT to the server's LOCAL_FILES_DOCUMENT_ROOT (it must "
                    "contain the workspace), or CRAFT_LABEL_STUDIO_IMAGES=inline.",
                )
            return "/data/local-files/?d=" + urllib.parse.quote(path.relative_to(self.document_root).as_posix())
        data = self.store.path_of(image).read_bytes()
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

    def build_task(self, triplet: Triplet, pair: ImagePair) -> dict[str, Any]:
        pre, post = self._image_url(pair.pre), self._image_url(pair.post)
        return task_for(triplet, pair, pre, post, self.model_version, self._target_view_urls(triplet, pair))

    def _target_view_urls(self, triplet: Triplet, pair: ImagePair) -> list[str]:
        """The zoomed target views of ``triplet``, one per fill opacity: JPEGs under the workspace's images
        (served like the pair's images) or, inline, data URIs. Named by content, so a revision gets new files."""
        if pair.id not in self._decoded:
            self._decoded[pair.id] = (self.store.load(pair.pre), self.store.load(pair.post))
            while len(self._decoded) > 4:
                self._decoded.pop(next(iter(self._decoded)))
        urls = []
        for fill in FILL_OPACITIES:
            data = target_view(triplet, *self._decoded[pair.id], fill=fill)
            if self.image_mode != "local":
                urls.append("data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"))
                continue
            path = self.settings.workspace / IMAGES_DIR / "views" / f"{hashlib.sha256(data).hexdigest()[:24]}.jpg"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, data)
            relative = path.resolve().relative_to(self.document_root).as_posix()
            urls.append("/data/local-files/?d=" + urllib.parse.quote(relative))
        return urls

    def push(
        self,
        catalog: Catalog,
        batch_size: int = 250,
        retry_s: float = 120,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> PushSummary:
        """Send drafted triplets (and changed queued ones) to the audit project; move them to the queue.

        Args:
            batch_size: tasks per bulk import request.
            retry_s: how long each step waits for the server to come back when it drops mid-push; after a
                drop the project is re-indexed so a batch that did land is not imported twice.
            progress: called with the number of triplets handled after each batch.
            on_total: called once with the number of triplets that need a request.

        Raises:
            AuditError: when the server refuses the token or stays away longer than ``retry_s``.
        """
        started = time.monotonic()
        retries = self.retries
        project_id = self._resilient("find or create the audit project", self.ensure_project, retry_s)
        summary = PushSummary(project_id=project_id, url=self.url)
        index = self._resilient("index the project's tasks", functools.partial(self.task_index, project_id), retry_s)
        summary.duplicates = sorted(t for t, refs in index.items() if len(refs) > 1)
        pending = [*catalog.iter_triplets(TripletState.DRAFTED), *catalog.iter_triplets(TripletState.QUEUED_FOR_AUDIT)]
        new = [t for t in pending if t.id not in index]
        known = [(t, index[t.id][0].revision == revision_of(t)) for t in pending if t.id in index]
        changed = [t for t, same in known if not same]
        settled = [t for t, same in known if same]
        summary.unchanged = len(settled)
        if on_total:
            on_total(len(new) + len(changed))
        pairs: dict[str, ImagePair] = {}

        def pair_of(triplet: Triplet) -> ImagePair:
            if triplet.pair_id not in pairs:
                pairs[triplet.pair_id] = catalog.get_pair(triplet.pair_id)
            return pairs[triplet.pair_id]

        for batch in in_batches(new, batch_size):
            tasks = {t.id: self.build_task(t, pair_of(t)) for t in batch}
            self._import(project_id, tasks, retry_s)
            summary.imported += len(batch)
            summary.queued += self._queue(catalog, batch)
            if progress:
                progress(len(batch))
        for triplet in changed:
            update = functools.partial(self._update, index[triplet.id][0], self.build_task(triplet, pair_of(triplet)))
            self._resilient("update a task", update, retry_s)
            summary.updated += 1
            if progress:
                progress(1)
        summary.queued += self._queue(catalog, changed + settled)
        summary.url = self.url
        summary.retries = self.retries - retries
        summary.seconds = time.monotonic() - started
        return summary

    def _import(self, project_id: int, tasks: dict[str, dict[str, Any]], retry_s: float) -> None:
        """Bulk-import tasks (keyed by triplet id), waiting up to ``retry_s`` for a server that went away."""
        tries = 0

        def attempt() -> None:
            nonlocal tasks, tries
            tries += 1
            if tries > 1:
                # The batch may have landed before the connection dropped: import only what is still missing.
                present = self.task_index(project_id)
                tasks = {tid: task for tid, task in tasks.items() if tid not in present}
            if tasks:
                self._call(
                    "import tasks", self.client.projects.import_tasks, id=project_id, request=list(tasks.values())
                )

        self._resilient("import tasks", attempt, retry_s)

    def _update(self, ref: TaskRef, task: dict[str, Any]) -> None:
        """Replace a task's data and its prediction with the triplet's current content (annotations stay)."""
        self._call("update a task", self.client.tasks.update, id=str(ref.task_id), data=task["data"])
        predictions = self._call("list predictions", self.client.predictions.list, task=ref.task_id)
        for prediction in predictions:
            if prediction.id is not None:
                self._call("delete a stale prediction", self.client.predictions.delete, id=prediction.id)
        prediction = task["predictions"][0]
        self._call(
            "create a prediction",
            self.client.predictions.create,
            task=ref.task_id,
            result=prediction["result"],
            model_version=prediction["model_version"],
            score=prediction["score"],
        )

    @staticmethod
    def _queue(catalog: Catalog, triplets: Sequence[Triplet]) -> int:
        return catalog.move_triplets(
            [t.id for t in triplets],
            TripletState.QUEUED_FOR_AUDIT,
            reason="pushed to Label Studio",
            only_from=TripletState.DRAFTED,
        )

    # -- pull -------------------------------------------------------------------------------------

    def _auditors(self) -> dict[int, str]:
        users = self._call("list users", lambda: list(self.client.users.list()))
        return {int(u.id): str(u.email or u.username or u.id) for u in users if u.id is not None}

    def pull(
        self, catalog: Catalog, policy: str | None = None, progress: Progress | None = None, retry_s: float = 120
    ) -> PullSummary:
        """Read submitted annotations into audit records and move triplets by ``policy``.

        Safe to repeat or resume: records are keyed by annotation id, annotations deleted on the server
        remove their records, and a triplet only moves when the decision differs from its state.

        Several annotations of one task (``audit push --overlap N``, or an auditor adding a second one): each
        becomes its own record (``audit status`` compares auditors on them), and ``policy`` alone decides
        the triplet from them (those that judged an earlier revision aside). Under the default ``first``
        the earliest submitted annotation (its ``created_at`` in Label Studio) decides, whatever the order
        of the export and whoever submitted later; an auditor who changes their mind updates their
        annotation, which keeps its place. Deleting the deciding annotation hands the decision to the next
        earliest.

        Args:
            retry_s: how long each request waits for the server to come back when it is away.

        Raises:
            AuditError: when the server stays away longer than ``retry_s`` or the project does not exist.
        """
        started = time.monotonic()
        policy = policy or self.settings.audit_policy
        project_id = self._resilient("find the audit project", self.find_project, retry_s)
        if project_id is None:
            raise AuditError(
                f"no audit project {self.project_title!r} on {self.url}.",
                hint="run `craft-agent audit push` first.",
            )
        summary = PullSummary(project_id=project_id)
        tasks = self._resilient(
            "export the project's tasks", functools.partial(self.export_tasks, project_id, all_tasks=False), retry_s
        )
        auditors = self._resilient("list users", self._auditors, retry_s)
        by_triplet: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for task in tasks:
            triplet_id = str((task.get("data") or {}).get("triplet_id", ""))
            by_triplet[triplet_id].append(task)
        summary.tasks = len(tasks)
        prefix = f"ls-{project_id}-"
        # Triplets audited earlier whose annotations were all deleted no longer appear among annotated tasks.
        for triplet_id in catalog.audited_triplet_ids(id_prefix=prefix):
            by_triplet.setdefault(triplet_id, [])
        for chunk in in_batches(sorted(by_triplet), 500):
            triplets = catalog.get_triplets(chunk)
            stored = catalog.audits_by_triplet(list(triplets))
            upserts: list[AuditRecord] = []
            removed: list[str] = []
            updates: list[tuple[Triplet, str]] = []
            for triplet_id in chunk:
                triplet = triplets.get(triplet_id)
                if triplet is None:
                    summary.unknown_tasks += len(by_triplet[triplet_id])
                    continue
                change = self._reconcile(
                    triplet, by_triplet[triplet_id], stored[triplet_id], auditors, prefix, policy, summary
                )
                upserts += change[0]
                removed += change[1]
                updates += change[2]
            try:
                catalog.save_audits(upserts, removed, updates)
            except CraftError as exc:
                summary.failures.append((f"{len(chunk)} triplets from {chunk[0]}", str(exc)))
            if progress:
                progress(len(chunk))
        summary.seconds = time.monotonic() - started
        return summary

    def _reconcile(
        self,
        triplet: Triplet,
        tasks: list[dict[str, Any]],
        stored: list[AuditRecord],
        auditors: dict[int, str],
        prefix: str,
        policy: str,
        summary: PullSummary,
    ) -> tuple[list[AuditRecord], list[str], list[tuple[Triplet, str]]]:
        """What to write for one triplet: audit records to upsert, record ids to remove, the triplet's updates."""
        records: list[AuditRecord] = []
        unreadable: set[str] = set()  # annotations that failed to decode keep their previous record
        for task in tasks:
            for annotation in task.get("annotations") or []:
                if annotation.get("was_cancelled"):
                    continue
                summary.annotations += 1
                completed_by = annotation.get("completed_by")
                user_id = completed_by.get("id") if isinstance(completed_by, dict) else completed_by
                auditor = auditors.get(int(user_id), str(user_id)) if user_id is not None else "unknown"
                try:
                    records.append(
                        audit_record(annotation, triplet, f"{prefix}{annotation['id']}", auditor, str(task.get("id")))
                    )
                except CraftError as exc:
                    unreadable.add(f"{prefix}{annotation['id']}")
                    summary.failures.append((f"task {task.get('id')}", str(exc)))
        ours = {r.id: r for r in stored if r.id.startswith(prefix)}
        records = _keep_answered(triplet, records, ours)
        upserts: list[AuditRecord] = []
        for record in records:
            old = ours.get(record.id)
            if old is None:
                summary.new_records += 1
                upserts.append(record)
            elif old.model_dump(exclude={"created_at"}) != record.model_dump(exclude={"created_at"}):
                summary.updated_records += 1
                upserts.append(record)
        kept = {r.id for r in records} | unreadable
        removed = [rid for rid in ours if rid not in kept]
        summary.removed_records += len(removed)
        fresh = {r.id for r in records}
        current = [r for r in stored if r.id not in removed and r.id not in fresh] + records
        current = [r for r in current if not triplet.revised_after(r)]  # verdicts on an earlier revision
        decision = decide(current, policy)
        if decision is None:
            if triplet.audit_id is None or triplet.state is TripletState.EXPORTED:
                return upserts, removed, []
            # Every audit of it was deleted on the server: back to the queue.
            decision = Decision(TripletState.QUEUED_FOR_AUDIT, None, "its audits were deleted")
        if decision.audit_id is None and decision.state is TripletState.QUEUED_FOR_AUDIT:
            summary.undecided += 1
        if triplet.state is TripletState.EXPORTED:
            return upserts, removed, []
        updates: list[tuple[Triplet, str]] = []
        if triplet.state is TripletState.DRAFTED:  # pushed, but the move to the queue was interrupted
            triplet = triplet.moved_to(TripletState.QUEUED_FOR_AUDIT)
            updates.append((triplet, "found in Label Studio"))
        if triplet.state is decision.state and triplet.audit_id == decision.audit_id:
            return upserts, removed, updates
        updated = triplet.model_copy(update={"audit_id": decision.audit_id})
        if updated.state is not decision.state:
            updated = updated.moved_to(decision.state)
            summary.moved[decision.state.value] = summary.moved.get(decision.state.value, 0) + 1
        updates.append((updated, f"audit ({policy}): {decision.reason}"))
        return upserts, removed, updates


def _keep_answered(triplet: Triplet, records: list[AuditRecord], stored: dict[str, AuditRecord]) -> list[AuditRecord]:
    """Read annotations, with those a revision answered kept as stored: they judged an earlier revision, and
    read again against the revised content they would show that revision's content as edits. An annotation
    the auditor updated since is read afresh (a new verdict)."""
    return [stored[r.id] if r.id in stored and triplet.revised_after(r) else r for r in records]
