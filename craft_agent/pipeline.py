"""Drafting one pair end to end, as the Prefect per-pair tasks run it (in a thread or on a Dask worker), and
revising the triplets auditors sent back.

Everything a worker needs comes from the workspace path and :class:`DraftOptions` (plain, picklable values):
the settings, catalog, image store, LLM backend and mask engine are opened in the worker. The work is the
same per-item code the CLI runs: :func:`craft_agent.change.stage.candidates_of_pair` then
:meth:`craft_agent.agent.run.PairDrafter.draft`, so a flow and ``craft-agent generate`` draft the same
triplets with the same ids; :func:`revise_triplets` is the revision step ``generate`` ends with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from craft_agent.agent.nodes import AgentConfig
from craft_agent.agent.revise import TripletReviser, revise_needs_fix
from craft_agent.agent.run import GenerateSummary, PairDrafter, agent_resources
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change import choose_detector
from craft_agent.change.stage import candidates_of_pair
from craft_agent.llm import UsageMeter, create_llm_backend
from craft_agent.llm.base import BudgetExceededError
from craft_agent.masks import create_mask_engine
from craft_agent.runs import StageRun
from craft_agent.settings import Settings, load_settings


class DraftOptions(BaseModel):
    """How to draft (the ``generate`` command's options), as plain values a worker can receive."""

    llm: str | None = None
    masks: str | None = None
    detector: str | None = None
    """None: the workspace's default (``learned`` when it sets ``CRAFT_CHANGE_CHECKPOINT``); see
    :meth:`for_workspace`."""
    checkpoint: str | None = None
    proposals: str = "auto"
    snap: bool = False
    max_rounds: int = 2
    expressions: int = 3
    no_target_ratio: float = 0.1
    budget: int | None = None
    categories: list[str] | None = None
    groups: bool = True

    def for_workspace(self, settings: Settings) -> DraftOptions:
        """These options with the detector and checkpoint the workspace's settings give where none is set,
        as ``generate`` resolves them: a flow then drafts with the same detector, and its cache key says so."""
        name, checkpoint = choose_detector(settings, self.detector, Path(self.checkpoint) if self.checkpoint else None)
        return self.model_copy(update={"detector": name, "checkpoint": str(checkpoint) if checkpoint else None})

    def agent_config(self) -> AgentConfig:
        return AgentConfig(
            max_rounds=self.max_rounds,
            expressions_per_target=self.expressions,
            no_target_ratio=self.no_target_ratio,
            proposals=self.proposals,
            detector=self.detector or "classical",
            checkpoint=self.checkpoint,
            budget=self.budget,
            snap=self.snap,
            categories=self.categories,
            multi_target=self.groups,
        )

    def fingerprint(self) -> str:
        """A short hash of the options: a cached result is only reused under the same options."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def draft_pair(workspace: str, pair_id: str, options: DraftOptions) -> GenerateSummary:
    """Find the pair's candidates (unless it has them) and run the agent's checkpointed thread on it.

    Returns:
        A summary of this one pair (skipped when an earlier run drafted it), with its LLM usage.

    Raises:
        CraftError: the pair cannot be drafted (unknown pair, unreadable image, endpoint down, budget...).
    """
    settings = load_settings(workspace=Path(workspace))
    config = options.for_workspace(settings).agent_config()
    llm = create_llm_backend(settings, options.llm, usage=UsageMeter())
    engine = create_mask_engine(settings, options.masks)
    checkpoint = Path(config.checkpoint) if config.checkpoint else None
    summary = GenerateSummary()
    with Catalog.from_settings(settings) as catalog:
        store = ImageStore(settings.workspace)
        pair = catalog.get_pair(pair_id)
        _, found = candidates_of_pair(
            catalog, store, engine, pair, config.detector, False, config.proposals, checkpoint, config.snap
        )
        if found:
            catalog.add_candidates(found)
        with PairDrafter(catalog, store, llm, engine, settings.workspace, config) as drafter:
            summary.add(drafter.draft(pair_id))
            summary.add_usage(drafter.resources, llm)
    return summary


def revise_triplets(workspace: str, options: DraftOptions) -> GenerateSummary:
    """Revise every triplet auditors sent back with "needs fix" (see :mod:`craft_agent.agent.revise`), as a
    ``revise`` run in the catalog; a triplet that fails is recorded and the others go on.

    Returns:
        A summary with ``revised``, ``left_with_auditors``, the failures (by triplet id) and the LLM usage.

    Raises:
        CraftError: the run cannot start (no catalog, an unknown LLM or mask engine).
    """
    settings = load_settings(workspace=Path(workspace))
    llm = create_llm_backend(settings, options.llm, usage=UsageMeter())
    engine = create_mask_engine(settings, options.masks)
    summary = GenerateSummary()
    with Catalog.from_settings(settings) as catalog:
        resources = agent_resources(catalog, ImageStore(settings.workspace), llm, engine, options.agent_config())
        config = {"llm": llm.name, "masks": engine.name, "max_rounds": options.max_rounds}
        with StageRun(catalog, "revise", config, summary, stop_on=(BudgetExceededError,)) as run:
            summary.add_revisions(revise_needs_fix(TripletReviser(resources), run))
            summary.stopped_by_budget = run.stopped_by is not None
            summary.add_usage(resources, llm)
    return summary


def summary_markdown(summary: GenerateSummary, workspace: str, audit_url: str | None = None) -> str:
    """The run's summary as the Markdown of a Prefect artifact."""
    data: dict[str, Any] = summary.to_json()
    llm = data["llm"]
    cost = "unknown (no price)" if llm["cost_usd"] is None else f"${llm['cost_usd']:.4f}"
    lines = [
        f"# CRAFT-Agent generate: `{workspace}`",
        "",
        "| pairs drafted | already done | resumed | triplets | uncorrected | failed |",
        "|---|---|---|---|---|---|",
        f"| {data['pairs']} | {data['skipped']} | {data['resumed']} | {data['triplets']} | {data['uncorrected']} "
        f"| {len(data['failed'])} |",
        "",
        f'Sent back by auditors ("needs fix"): {data["revised"]} revised, {data["left_with_auditors"]} left with '
        "the auditors after their last revision.",
        "",
        f"LLM ({llm['backend']}): {llm['steps']} steps, {data['offline_fallbacks']} fell back to offline, "
        f"{llm['calls']} calls, {llm['prompt_tokens']} + {llm['completion_tokens']} tokens, {cost}.",
    ]
    if data["failed"]:
        lines += ["", "## Failures", "", "| input | error |", "|---|---|"]
        lines += [f"| `{f['input']}` | {f['error'].replace('|', '/')} |" for f in data["failed"][:50]]
    if audit_url:
        lines += ["", f"Audit: [{audit_url}]({audit_url}) (`craft-agent audit push` sends the drafts)."]
    return "\n".join(lines) + "\n"
