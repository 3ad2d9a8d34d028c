"""Running the agent over the catalog: one LangGraph thread per pair, checkpointed, resumable.

A pair whose thread finished is skipped; a pair whose thread stopped mid-way (a crash, a kill) resumes at
the node that was running; a pair that fails (endpoint down after retries, bad image) is recorded with its
reason and the run goes on; a spent budget stops the run cleanly after recording which pair hit it. After the
pairs, triplets that auditors sent back with "needs fix" are revised (:mod:`craft_agent.agent.revise`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel, Field

from craft_agent.agent.graph import build_graph
from craft_agent.agent.nodes import AgentConfig, AgentResources
from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.prompts import PromptLibrary
from craft_agent.agent.revise import TripletReviser, revise_needs_fix
from craft_agent.agent.state import CHECKPOINT_TYPES, STATE_VERSION
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change import create_detector, detector_gsd
from craft_agent.change.scale import beyond_resolution
from craft_agent.llm.base import BudgetExceededError, LLMBackend
from craft_agent.masks import MaskEngine
from craft_agent.models import AuditRevision
from craft_agent.runs import Failure, ProgressCallback, StageRun

CHECKPOINTS_FILE = "agent_checkpoints.sqlite"


class GenerateSummary(BaseModel):
    """What a generate run did; ``to_json()`` is the CLI's ``--json`` output."""

    pairs: int = 0
    resumed: int = 0
    skipped: int = 0
    triplets: int = 0
    new_triplets: int = 0
    """Of ``triplets``, those not in the catalog before this run (a re-run under other options drafts the same
    triplets again: their ids are content hashes, so nothing is duplicated, and they are not new)."""
    uncorrected: int = 0
    failed: list[Failure] = Field(default_factory=list)
    stopped_by_budget: bool = False
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = Field(default_factory=dict)
    llm_backend: str = "offline"
    llm_steps: int = 0
    """Language steps of this run, answered by the model or by the fallback."""
    cost_known: bool = True
    """False when the model's price is unknown: ``cost_usd`` is then 0 for want of a price, not because the
    run was free."""
    rejected: dict[str, int] = Field(default_factory=dict)
    revised: int = 0
    """Triplets sent back by auditors ("needs fix") that the agent revised in this run."""
    left_with_auditors: int = 0
    """Triplets sent back once more after their last revision: they stay with the auditors."""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    run_id: str = ""
    beyond_model_resolution: dict[str, float] = Field(default_factory=dict)
    """Pairs (name -> m per pixel) the learned detector drafted at their own resolution, too far from its
    checkpoint's (``model_gsd_m``) to resample: it was not trained for them (a 10 m Sentinel-2 scene against a
    0.5 m model), so their drafts are unreliable."""
    model_gsd_m: float | None = None

    def add(self, outcome: PairOutcome) -> None:
        """Count one pair's outcome."""
        if outcome.status == "skipped":
            self.skipped += 1
            return
        self.resumed += outcome.status == "resumed"
        self.pairs += 1
        self.triplets += len(outcome.triplet_ids)
        self.new_triplets += outcome.new_triplets
        self.uncorrected += outcome.uncorrected
        for reason, count in outcome.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count
        if outcome.beyond_model_resolution:
            self.beyond_model_resolution.update(outcome.beyond_model_resolution)
            self.model_gsd_m = outcome.model_gsd_m

    def add_revisions(self, answers: list[AuditRevision]) -> None:
        """Count the agent's answers to "needs fix" audits."""
        self.revised += sum(a.outcome == "revised" for a in answers)
        self.left_with_auditors += sum(a.outcome == "left_with_auditors" for a in answers)

    def merge(self, other: GenerateSummary) -> None:
        """Another summary (one flow task's pair, or its revisions) added: counts, rejections, LLM usage and
        failures."""
        added = (
            "pairs",
            "resumed",
            "skipped",
            "triplets",
            "new_triplets",
            "uncorrected",
            "revised",
            "left_with_auditors",
        )
        for name in (*added, "fallbacks", "llm_steps", "llm_calls"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        for counts, more in ((self.rejected, other.rejected), (self.fallback_reasons, other.fallback_reasons)):
            for reason, count in more.items():
                counts[reason] = counts.get(reason, 0) + count
        self.failed.extend(other.failed)
        self.beyond_model_resolution.update(other.beyond_model_resolution)
        self.model_gsd_m = other.model_gsd_m or self.model_gsd_m
        self.llm_backend = other.llm_backend
        self.cost_known = self.cost_known and other.cost_known

    def add_usage(self, resources: AgentResources, llm: LLMBackend) -> None:
        """The language steps, fallbacks, tokens and cost of ``resources`` (one drafter's), added: read from
        its usage meter, where each step was counted once."""
        self.llm_backend = llm.name
        self.llm_steps += resources.steps
        self.fallbacks += resources.fallbacks
        for reason, count in resources.fallback_reasons.items():
            self.fallback_reasons[reason] = self.fallback_reasons.get(reason, 0) + count
        self.cost_known = bool(getattr(llm, "priced", True))
        spent = resources.meter.snapshot()
        self.llm_calls += spent.calls
        self.prompt_tokens += spent.prompt_tokens
        self.completion_tokens += spent.completion_tokens
        self.cost_usd += spent.cost_usd

    @property
    def mostly_fallbacks(self) -> bool:
        """More than half of the model's steps were decided by the offline fallback."""
        return self.llm_backend != "offline" and self.llm_steps > 0 and self.fallbacks > self.llm_steps / 2

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "resumed": self.resumed,
            "skipped": self.skipped,
            "triplets": self.triplets,
            "new_triplets": self.new_triplets,
            "uncorrected": self.uncorrected,
            "failed": [f.as_dict() for f in self.failed],
            "stopped_by_budget": self.stopped_by_budget,
            "offline_fallbacks": self.fallbacks,
            "fallback_reasons": dict(sorted(self.fallback_reasons.items())),
            "mostly_fallbacks": self.mostly_fallbacks,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "beyond_model_resolution": dict(sorted(self.beyond_model_resolution.items())),
            "revised": self.revised,
            "left_with_auditors": self.left_with_auditors,
            "llm": {
                "backend": self.llm_backend,
                "steps": self.llm_steps,
                "calls": self.llm_calls,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6) if self.cost_known else None,
            },
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
        }


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("craft-agent", "langgraph", "openai", "segment-anything", "opencv-python-headless"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def open_checkpoints(catalog: Catalog, workspace: Path) -> tuple[Callable[[], None], Any]:
    """The agent's checkpoint saver and how to close it: beside a PostgreSQL catalog, in that database (its
    own tables), so workers on several machines share the threads; else a SQLite file in the workspace. Its
    serializer rebuilds the state's records (:data:`~craft_agent.agent.state.CHECKPOINT_TYPES`) and no others."""
    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
    if catalog.dialect == "postgresql":
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        url = catalog.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(connection, serde=serde)
        saver.setup()  # creates or migrates its tables; idempotent
        return connection.close, saver
    sqlite = sqlite3.connect(workspace / CHECKPOINTS_FILE, check_same_thread=False, timeout=60)
    return sqlite.close, SqliteSaver(sqlite, serde=serde)


def agent_resources(
    catalog: Catalog,
    store: ImageStore,
    llm: LLMBackend,
    engine: MaskEngine,
    config: AgentConfig | None = None,
    prompts: PromptLibrary | None = None,
) -> AgentResources:
    """The agent's resources for one run (a remote model falls back on the offline backend per step)."""
    return AgentResources(
        catalog=catalog,
        store=store,
        llm=llm,
        engine=engine,
        prompts=prompts or PromptLibrary(),
        config=config or AgentConfig(),
        package_versions=_versions(),
        fallback=None if llm.name == "offline" else OfflineBackend(),
    )


def thread_for(pair_id: str, resources: AgentResources, version: int = STATE_VERSION) -> str:
    """Checkpoint thread of a pair under this configuration and state layout (another config, model or
    :data:`~craft_agent.agent.state.STATE_VERSION` starts afresh; the first layout's threads had no version)."""
    fingerprint = (
        f"{resources.config.model_dump_json()}|{resources.llm.name}|{resources.llm.model_id}|{resources.engine.name}"
    )
    thread = f"{pair_id}:{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"
    return thread if version == 1 else f"{thread}:v{version}"


def generate(
    catalog: Catalog,
    store: ImageStore,
    llm: LLMBackend,
    engine: MaskEngine,
    workspace: Path,
    config: AgentConfig | None = None,
    prompts: PromptLibrary | None = None,
    pair_ids: list[str] | None = None,
    progress: ProgressCallback | None = None,
) -> GenerateSummary:
    """Run the CRAFT graph over the catalog's pairs (or ``pair_ids``) and draft triplets; then revise the
    triplets of those pairs that auditors sent back with "needs fix" (each a run item, named by triplet id).

    Raises:
        CraftError: only when the run cannot start (prompts missing, checkpoint file unusable).
    """
    summary = GenerateSummary()
    with PairDrafter(catalog, store, llm, engine, workspace, config, prompts) as drafter:
        run_config = {"llm": llm.name, "model": llm.model_id, "masks": engine.name, **drafter.config.model_dump()}
        ids = pair_ids if pair_ids is not None else [p.id for p in catalog.iter_pairs()]
        with StageRun(catalog, "generate", run_config, summary, progress, stop_on=(BudgetExceededError,)) as run:
            for pair_id in run.items(ids):
                outcome = run.attempt(pair_id, functools.partial(drafter.draft, pair_id), what=f"drafting {pair_id}")
                if outcome is not None:
                    summary.add(outcome)
            reviser = TripletReviser(drafter.resources)
            summary.add_revisions(revise_needs_fix(reviser, run, None if pair_ids is None else set(ids)))
            summary.stopped_by_budget = run.stopped_by is not None
            summary.add_usage(drafter.resources, llm)
    return summary


class PairOutcome(BaseModel):
    """What drafting one pair did."""

    pair_id: str
    status: Literal["skipped", "resumed", "drafted"]
    """``skipped``: done by an earlier run; ``resumed``: an interrupted thread finished now."""
    triplet_ids: list[str] = Field(default_factory=list)
    new_triplets: int = 0
    """Of ``triplet_ids``, those the catalog did not hold before this draft."""
    uncorrected: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    """Candidates the review rejected, by the nuisance that explains them (shadow, season, registration...), under
    ``category`` those of a category the run does not draft, and under ``duplicate`` targets whose mask turned out to
    be another target's object."""
    beyond_model_resolution: dict[str, float] = Field(default_factory=dict)
    """{pair name: its ground sample distance} when the learned detector drafted it at that resolution, too far
    from its checkpoint's (``model_gsd_m``) to resample (:func:`~craft_agent.change.scale.beyond_resolution`)."""
    model_gsd_m: float | None = None


class PairDrafter:
    """The graph, its checkpoints and the resources for drafting pairs one at a time (``draft``).

    Used by :func:`generate` and by the Prefect per-pair tasks (one drafter per task: the resources hold
    per-pair state and are not shared between threads).
    """

    def __init__(
        self,
        catalog: Catalog,
        store: ImageStore,
        llm: LLMBackend,
        engine: MaskEngine,
        workspace: Path,
        config: AgentConfig | None = None,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.config = config or AgentConfig()
        # a detector that cannot run stops the run here, not each pair after its drafting (labels mode too:
        # the user asked for it)
        create_detector(
            self.config.detector, checkpoint=Path(self.config.checkpoint) if self.config.checkpoint else None
        )
        self.resources = agent_resources(catalog, store, llm, engine, self.config, prompts)
        self.catalog = catalog
        self._close, saver = open_checkpoints(catalog, workspace)
        self._app = build_graph(self.resources, saver)

    def __enter__(self) -> PairDrafter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def draft(self, pair_id: str) -> PairOutcome:
        """Run (or resume, or skip when done) the pair's checkpointed thread.

        Raises:
            BudgetExceededError: the LLM budget is spent.
            CraftError: the pair cannot be drafted (an image unreadable, the endpoint down...).
        """
        settings: Any = {"configurable": {"thread_id": thread_for(pair_id, self.resources)}, "recursion_limit": 200}
        snapshot = self._app.get_state(settings)
        pending = bool(snapshot.next or snapshot.tasks)
        if _finished(snapshot) or (not snapshot.values and self._finished_in_first_layout(pair_id)):
            return PairOutcome(pair_id=pair_id, status="skipped")
        # durability="sync": each node's checkpoint is on disk before the next node starts, so a kill at any
        # moment resumes at the node that was running (the default writes asynchronously and a kill can lose
        # the latest checkpoints).
        before = self.catalog.triplet_ids(pair_id)
        final = self._app.invoke(None if pending else {"pair_id": pair_id}, settings, durability="sync")
        rejected: dict[str, int] = {}
        for rejection in final.get("rejected", []):
            reason = (rejection.nuisance or "other") if rejection.reason == "review" else rejection.reason
            rejected[reason] = rejected.get(reason, 0) + 1
        ids = list(final.get("triplet_ids") or [])
        beyond: dict[str, float] = {}
        if self.model_gsd_m is not None and final.get("proposals") == "detector":  # the learned detector only
            pair = self.catalog.get_pair(pair_id)
            if pair.gsd_m and beyond_resolution(pair.gsd_m, self.model_gsd_m):
                beyond = {pair.name: pair.gsd_m}
        return PairOutcome(
            pair_id=pair_id,
            status="resumed" if pending else "drafted",
            triplet_ids=ids,
            new_triplets=len(set(ids) - before),
            uncorrected=sum(self.catalog.get_triplet(i).uncorrected for i in ids),
            rejected=rejected,
            beyond_model_resolution=beyond,
            model_gsd_m=self.model_gsd_m if beyond else None,
        )

    @functools.cached_property
    def model_gsd_m(self) -> float | None:
        """The resolution the learned detector's checkpoint was trained at (None for the classical detector)."""
        return detector_gsd(self.config.detector, Path(self.config.checkpoint) if self.config.checkpoint else None)

    def _finished_in_first_layout(self, pair_id: str) -> bool:
        """Whether a thread of the first state layout (JSON values, no version in its id) finished this pair:
        such a pair is done; one it left unfinished is drafted afresh under the current layout."""
        legacy: Any = {"configurable": {"thread_id": thread_for(pair_id, self.resources, version=1)}}
        return _finished(self._app.get_state(legacy))


def _finished(snapshot: Any) -> bool:
    """A thread is done only when its last node wrote the triplet ids and nothing is pending. A kill just after a
    step's checkpoint was saved leaves tasks pending while ``next`` is already empty, so ``next`` alone would
    call such a pair done and lose its triplets."""
    return snapshot.values.get("triplet_ids") is not None and not (snapshot.next or snapshot.tasks)
