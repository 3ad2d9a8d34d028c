"""Prefect flow: the whole chain, from new imagery to an export of what auditors have approved.

ingest -> candidates and agent per pair (``craft-generate``) -> push to Label Studio and pull audits
(``craft-audit-sync``, when an audit server is reachable) -> export once enough audited work is waiting
(``craft-export``). Each step is its own flow run (a subflow), so the Prefect UI shows where time went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from craft_agent.errors import CraftError
from craft_agent.pipeline import DraftOptions
from flows.audit import audit_sync_flow
from flows.export import export_flow
from flows.generate import generate_flow


@flow(name="craft")
def craft_flow(
    workspace: str,
    source: str | None = None,
    options: DraftOptions | None = None,
    export_to: str | None = None,
    min_new_audited: int = 1,
    audit: bool = True,
) -> dict[str, Any]:
    """Run the chain on ``workspace`` (ingesting ``source`` first when given); returns each step's result."""
    logger = get_run_logger()
    result: dict[str, Any] = {"generate": generate_flow(workspace, source=source, options=options)}
    if audit:
        try:
            result["audit"] = audit_sync_flow(workspace)
        except CraftError as exc:  # no audit server yet: drafting is still done
            logger.warning("audit sync skipped: %s", exc)
            result["audit"] = {"skipped": str(exc)}
    if export_to:
        result["export"] = export_flow(workspace, str(Path(export_to)), min_new_audited=min_new_audited)
    return result
