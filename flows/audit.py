"""Prefect flow: keep Label Studio and the catalog in step (push new drafts, pull new audits), and send what
auditors marked "needs fix" back to the agent.

Meant to run every few minutes on a schedule (``craft-agent flows serve``). push -> pull -> revise the
triplets sent back -> push again when any was revised (their tasks are updated in place, the auditor's
comment shown on the page). Every step is idempotent and resumes across a server restart (see
:class:`craft_agent.audit.label_studio.LabelStudioAudit`); a "needs fix" is answered once (see
:mod:`craft_agent.agent.revise`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.catalog import Catalog
from craft_agent.pipeline import DraftOptions
from craft_agent.settings import load_settings
from flows.generate import revise_task


@task(name="audit-push")
def push_task(workspace: str) -> dict[str, Any]:
    settings = load_settings(workspace=Path(workspace))
    with Catalog.from_settings(settings) as catalog:
        return dataclasses.asdict(LabelStudioAudit(settings).push(catalog))


@task(name="audit-pull")
def pull_task(workspace: str) -> dict[str, Any]:
    settings = load_settings(workspace=Path(workspace))
    with Catalog.from_settings(settings) as catalog:
        return dataclasses.asdict(LabelStudioAudit(settings).pull(catalog))


@flow(name="craft-audit-sync")
def audit_sync_flow(workspace: str, options: DraftOptions | None = None, revise: bool = True) -> dict[str, Any]:
    """Push drafted triplets not yet in Label Studio, pull submitted audits into the catalog, then (with
    ``revise``) revise the triplets auditors sent back with "needs fix" under ``options`` (the LLM and mask
    engine, ``max_rounds`` revisions per triplet) and push their new revisions.

    Returns:
        ``push`` and ``pull`` summaries; with ``revise``, ``revise`` (the revision summary) and, when any
        triplet was revised, ``push_revisions``.
    """
    pushed = push_task(workspace)
    pulled = pull_task(workspace)
    result: dict[str, Any] = {"push": pushed, "pull": pulled}
    answered = 0
    if revise:
        revised = revise_task(workspace, options or DraftOptions())
        result["revise"] = revised.to_json()
        answered = revised.revised + revised.left_with_auditors
        if answered:
            result["push_revisions"] = push_task(workspace)
    get_run_logger().info(
        "pushed %d new task(s); pulled %d annotation(s), %d new audit record(s); answered %d needs-fix verdict(s)",
        pushed["imported"],
        pulled["annotations"],
        pulled["new_records"],
        answered,
    )
    return result
