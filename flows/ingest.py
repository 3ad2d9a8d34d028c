"""Prefect flow: ingest one or more sources into a workspace catalog.

Operators schedule this to pick up new imagery; each source is one task run, so one unusable source is
reported and the others still land. All logic is in :func:`craft_agent.imagery.ingest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import CraftError
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.settings import load_settings


@task(name="ingest-source", retries=1, retry_delay_seconds=5)
def ingest_source(src: str, workspace: str, options: IngestOptions) -> dict[str, Any]:
    """Ingest one source; an unusable source comes back as a failure instead of failing the flow."""
    settings = load_settings(workspace=Path(workspace))
    try:
        with Catalog.from_settings(settings) as catalog:
            return ingest(Path(src), catalog, ImageStore(settings.workspace), options).to_json()
    except CraftError as exc:
        return {"ingested": 0, "skipped": 0, "failed": [{"input": src, "error": str(exc)}], "source": src}


@flow(name="craft-ingest", log_prints=False)
def ingest_flow(sources: list[str], workspace: str, domain: str | None = None) -> dict[str, Any]:
    """Ingest every source into ``workspace``; returns the totals and one summary per source."""
    settings = load_settings(workspace=Path(workspace), default_domain=domain)
    options = IngestOptions.from_settings(settings)
    summaries = [ingest_source(src, workspace, options) for src in sources]
    totals = {
        "ingested": sum(s["ingested"] for s in summaries),
        "skipped": sum(s["skipped"] for s in summaries),
        "failed": [f for s in summaries for f in s["failed"]],
        "sources": summaries,
    }
    get_run_logger().info(
        "ingested %d pair(s), %d already present, %d failure(s)",
        totals["ingested"],
        totals["skipped"],
        len(totals["failed"]),
    )
    return totals
