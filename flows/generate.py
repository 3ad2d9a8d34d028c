"""Prefect flow: ingest new imagery (optional), then draft every pair as its own task run, then revise the
triplets auditors sent back with "needs fix".

Thin: each pair is :func:`craft_agent.pipeline.draft_pair` in a task, mapped over the catalog's pairs under
the task runner's concurrency limit (threads by default, a Dask cluster with ``engine="dask"``). A failing
pair is retried (transient faults), then recorded in the catalog; it never fails the flow. A pair already
drafted under the same options is a cache hit (its checkpointed thread would skip it anyway), so a scheduled
re-run only works on new or changed pairs (pair ids are content hashes). The revisions are one task
(:func:`craft_agent.pipeline.revise_triplets`), never cached: each run answers the new "needs fix" verdicts.
A Markdown artifact summarises the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from craft_agent.agent.run import GenerateSummary
from craft_agent.catalog import Catalog
from craft_agent.change import create_detector
from craft_agent.errors import CraftError
from craft_agent.pipeline import DraftOptions, draft_pair, revise_triplets, summary_markdown
from craft_agent.runs import Failure, StageRun
from craft_agent.settings import load_settings
from flows.ingest import ingest_flow


def _pair_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: the pair (its id hashes its content) under these options in this workspace."""
    options: DraftOptions = parameters["options"]
    return f"draft-{Path(parameters['workspace']).resolve()}-{parameters['pair_id']}-{options.fingerprint()}"


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry faults that may pass (an endpoint down, a locked database), not a pair that cannot be read."""
    try:
        state.result()
    except CraftError as exc:
        return type(exc).__name__ in ("LLMUnavailableError", "CatalogError")
    except Exception:
        return True
    return False


@task(
    name="draft-pair",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_transient,
    cache_key_fn=_pair_key,
    persist_result=True,
)
def draft_pair_task(workspace: str, pair_id: str, options: DraftOptions) -> GenerateSummary:
    """One pair: candidates and the agent (see :func:`craft_agent.pipeline.draft_pair`)."""
    return draft_pair(workspace, pair_id, options)


@task(name="revise-needs-fix", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient)
def revise_task(workspace: str, options: DraftOptions) -> GenerateSummary:
    """Triplets sent back by auditors, revised (see :func:`craft_agent.pipeline.revise_triplets`)."""
    return revise_triplets(workspace, options)


def draft_pairs(
    workspace: str, pair_ids: list[str], options: DraftOptions, summary: GenerateSummary
) -> GenerateSummary:
    """Map the per-pair task over ``pair_ids`` and add the outcomes (and failures) to ``summary``."""
    futures = draft_pair_task.map(unmapped(workspace), pair_ids, unmapped(options))
    for pair_id, future in zip(pair_ids, futures, strict=True):
        future.wait()
        state = future.state
        if state.is_completed():
            if state.name == "Cached":  # drafted by an earlier run under the same options
                summary.skipped += 1
            else:
                summary.merge(state.result())
            continue
        try:
            state.result()
        except CraftError as exc:
            summary.failed.append(Failure.from_error(exc, pair_id))
        except Exception as exc:  # a pair must never fail the flow
            summary.failed.append(Failure.unexpected(pair_id, f"drafting {pair_id}", exc))
    return summary


def task_runner(engine: str = "threads", workers: int = 4, address: str | None = None) -> Any:
    """The task runner of ``engine``: ``threads`` (this process) or ``dask`` (a LocalCluster of ``workers``
    processes, or the scheduler at ``address``)."""
    if engine == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if engine == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "silence_logs": logging.WARNING}
        return DaskTaskRunner(cluster_kwargs=cluster)
    raise CraftError(f"unknown engine {engine!r}.", hint="use threads or dask.")


@flow(name="craft-generate", task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
def generate_flow(
    workspace: str,
    source: str | None = None,
    options: DraftOptions | None = None,
    audit_url: str | None = None,
) -> dict[str, Any]:
    """Ingest ``source`` (when given) into ``workspace``, then draft every pair; returns the run summary."""
    logger = get_run_logger()
    options = options or DraftOptions()
    if source:
        ingest_flow([source], workspace)
    settings = load_settings(workspace=Path(workspace))
    # the workspace's default detector (CRAFT_CHANGE_CHECKPOINT) is resolved here, once: the run record and the
    # per-pair cache keys then name the detector and checkpoint really used
    options = options.for_workspace(settings)
    # a detector that cannot run stops the flow before its first task
    create_detector(
        options.detector or "classical", checkpoint=Path(options.checkpoint) if options.checkpoint else None
    )
    summary = GenerateSummary()
    with Catalog.from_settings(settings) as catalog:
        pair_ids = [pair.id for pair in catalog.iter_pairs()]
        # recorded as `craft-agent generate` records its run: failures, and seconds of drafting and revising
        # (ingest has its own flow and figure)
        with StageRun(catalog, "generate", {"flow": "craft-generate", **options.model_dump()}, summary):
            draft_pairs(workspace, pair_ids, options, summary)
            summary.merge(revise_task(workspace, options))
    create_markdown_artifact(
        key="craft-generate", markdown=summary_markdown(summary, workspace, audit_url), description="generate run"
    )
    logger.info(
        "drafted %d triplet(s) from %d pair(s); revised %d sent back by auditors",
        summary.triplets,
        summary.pairs,
        summary.revised,
    )
    if summary.mostly_fallbacks:
        logger.warning("%d of %d LLM steps fell back to the offline backend", summary.fallbacks, summary.llm_steps)
    return summary.to_json()
