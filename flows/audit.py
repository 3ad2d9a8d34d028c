"""Prefect flow: keep Label Studio and the catalog in step (push new drafts, pull new audits).

Meant to run every few minutes on a schedule (``craft-agent flows serve``). Both steps are idempotent and
resume across a server restart (see :class:`craft_agent.audit.label_studio.LabelStudioAudit`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.catalog import Catalog
from craft_agent.settings import load_settings


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
def audit_sync_flow(workspace: str) -> dict[str, Any]:
    """Push drafted triplets not yet in Label Studio, then pull submitted audits into the catalog."""
    pushed = push_task(workspace)
    pulled = pull_task(workspace)
    get_run_logger().info(
        "pushed %d new task(s); pulled %d annotation(s), %d new audit record(s)",
        pushed["imported"],
        pulled["annotations"],
        pulled["new_records"],
    )
    return {"push": pushed, "pull": pulled}
