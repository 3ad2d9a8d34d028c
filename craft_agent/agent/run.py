"""Running the agent over the catalog: one LangGraph thread per pair, checkpointed, resumable.

A pair whose thread finished is skipped; a pair whose thread stopped mid-way (a crash, a kill) resumes at
the node that was running; a pair that fails (endpoint down after retries, bad image) is recorded with its
reason and the run goes on; a spent budget stops the run cleanly after recording which pair hit it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from craft_agent.agent.graph import build_graph
from craft_agent.agent.nodes import AgentConfig, AgentResources
from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.prompts import PromptLibrary
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import CraftError
from craft_agent.imagery.layouts import Failure
from craft_agent.llm.base import BudgetExceededError, LLMBackend
from craft_agent.masks import MaskEngine

CHECKPOINTS_FILE = "agent_checkpoints.sqlite"
ProgressCallback = Callable[[int, int, str], None]


@dataclass
class GenerateSummary:
    """What a generate run did; ``to_json()`` is the CLI's ``--json`` output."""

    pairs: int = 0
    resumed: int = 0
    skipped: int = 0
    triplets: int = 0
    uncorrected: int = 0
    failed: list[Failure] = field(default_factory=list)
    stopped_by_budget: bool = False
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    llm_backend: str = "offline"
    llm_steps: int = 0
    """Language steps of this run, answered by the model or by the fallback."""
    cost_known: bool = True
    """False when the model's price is unknown: ``cost_usd`` is then 0 for want of a price, not because the
    run was free."""
    rejected: dict[str, int] = field(default_factory=dict)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    run_id: str = ""

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
            "uncorrected": self.uncorrected,
            "failed": [f.as_dict() for f in self.failed],
            "stopped_by_budget": self.stopped_by_budget,
            "offline_fallbacks": self.fallbacks,
            "fallback_reasons": dict(sorted(self.fallback_reasons.items())),
            "mostly_fallbacks": self.mostly_fallbacks,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
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


def thread_for(pair_id: str, resources: AgentResources) -> str:
    """Checkpoint thread of a pair under this configuration (another config or model starts afresh)."""
    fingerprint = (
        f"{resources.config.model_dump_json()}|{resources.llm.name}|{resources.llm.model_id}|{resources.engine.name}"
    )
    return f"{pair_id}:{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"


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
    """Run the CRAFT graph over the catalog's pairs (or ``pair_ids``) and draft triplets.

    Raises:
        CraftError: only when the run cannot start (prompts missing, checkpoint file unusable).
    """
    started = time.perf_counter()
    resources = AgentResources(
        catalog=catalog,
        store=store,
        llm=llm,
        engine=engine,
        prompts=prompts or PromptLibrary(),
        config=config or AgentConfig(),
        package_versions=_versions(),
        fallback=None if llm.name == "offline" else OfflineBackend(),
    )
    summary = GenerateSummary()
    summary.run_id = catalog.start_run(
        "generate", {"llm": llm.name, "model": llm.model_id, "masks": engine.name, **resources.config.model_dump()}
    )
    connection = sqlite3.connect(workspace / CHECKPOINTS_FILE, check_same_thread=False)
    try:
        app = build_graph(resources, SqliteSaver(connection))
        ids = pair_ids if pair_ids is not None else [p.id for p in catalog.iter_pairs()]
        for done, pair_id in enumerate(ids):
            if progress:
                progress(done, len(ids), pair_id)
            settings: Any = {"configurable": {"thread_id": thread_for(pair_id, resources)}, "recursion_limit": 200}
            snapshot = app.get_state(settings)
            # A thread is done only when its last node wrote the triplet ids and nothing is pending. A kill
            # just after a step's checkpoint was saved leaves tasks pending while ``next`` is already empty,
            # so ``next`` alone would call such a pair done and lose its triplets.
            pending = bool(snapshot.next or snapshot.tasks)
            try:
                if "triplet_ids" in snapshot.values and not pending:
                    summary.skipped += 1
                    continue
                # durability="sync": each node's checkpoint is on disk before the next node starts, so a
                # kill at any moment resumes at the node that was running (the default writes asynchronously
                # and a kill can lose the latest checkpoints).
                if pending:
                    summary.resumed += 1
                    final = app.invoke(None, settings, durability="sync")
                else:
                    final = app.invoke({"pair_id": pair_id}, settings, durability="sync")
            except BudgetExceededError as exc:
                summary.failed.append(Failure(input=pair_id, error=str(exc)))
                summary.stopped_by_budget = True
                break
            except CraftError as exc:
                summary.failed.append(Failure(input=pair_id, error=str(exc)))
                continue
            except Exception as exc:  # one broken pair must never sink the run
                summary.failed.append(
                    Failure(input=pair_id, error=f"{type(exc).__name__}: {exc}. Fix: report this pair as a bug.")
                )
                continue
            summary.pairs += 1
            # candidates the review rejected, by the nuisance that explains them (shadow, season, registration...)
            for rejection in final.get("rejected", []):
                reason = str(rejection.get("nuisance") or "other")
                summary.rejected[reason] = summary.rejected.get(reason, 0) + 1
            for triplet_id in final.get("triplet_ids", []):
                summary.triplets += 1
                summary.uncorrected += catalog.get_triplet(triplet_id).uncorrected
        if progress:
            progress(len(ids), len(ids), "")
    finally:
        connection.close()
    summary.llm_backend = llm.name
    summary.llm_steps = resources.steps
    summary.fallbacks = resources.fallbacks
    summary.fallback_reasons = dict(resources.fallback_reasons)
    summary.cost_known = bool(getattr(llm, "priced", True))
    summary.llm_calls = resources.usage.calls
    summary.prompt_tokens = resources.usage.prompt_tokens
    summary.completion_tokens = resources.usage.completion_tokens
    summary.cost_usd = resources.usage.cost_usd
    for failure in summary.failed:
        catalog.record_failure(summary.run_id, failure.input, failure.error)
    summary.seconds = time.perf_counter() - started
    catalog.finish_run(summary.run_id, summary.to_json())
    return summary
