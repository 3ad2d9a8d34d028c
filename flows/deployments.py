"""The deployments ``craft-agent flows serve`` serves: scheduled regeneration on a watched folder, and audit sync.

- ``regenerate``: the ``craft-generate`` flow on a cron schedule (or every N seconds): ingest the watched
  imagery folder, then draft every pair; pairs already drafted are cache hits, so each run works on what is
  new or changed.
- ``audit-sync``: ``craft-audit-sync`` every few minutes (when an audit server is configured or running).
- ``export``, ``craft`` and ``train`` (the baseline on the latest export): no schedule; run them with
  ``craft-agent flows run`` or from the UI.

The flows run in child processes started by Prefect's runner; they find the code as the installed modules
``flows.*`` (module entrypoints, not file paths), so serving works from any working folder.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.deployments.runner import EntrypointType

from craft_agent.pipeline import DraftOptions
from flows.audit import audit_sync_flow
from flows.craft import craft_flow
from flows.export import export_flow
from flows.generate import generate_flow
from flows.train import train_flow


def build_deployments(
    workspace: str,
    watch: str | None = None,
    cron: str | None = None,
    every_s: float | None = None,
    audit_every_s: float | None = 300,
    options: DraftOptions | None = None,
    export_to: str | None = None,
) -> list[Any]:
    """The runner deployments of one workspace (see the module docstring)."""
    module = EntrypointType.MODULE_PATH
    draft = (options or DraftOptions()).model_dump()
    regenerate: dict[str, Any] = {"cron": cron} if cron else {"interval": timedelta(seconds=every_s or 900)}
    deployments = [
        generate_flow.to_deployment(
            name="regenerate",
            parameters={"workspace": workspace, "source": watch, "options": draft},
            entrypoint_type=module,
            concurrency_limit=1,
            **regenerate,
        ),
        export_flow.to_deployment(
            name="export",
            parameters={"workspace": workspace, "out": export_to or f"{workspace}/export"},
            entrypoint_type=module,
        ),
        craft_flow.to_deployment(
            name="craft",
            parameters={"workspace": workspace, "source": watch, "options": draft, "export_to": export_to},
            entrypoint_type=module,
        ),
        train_flow.to_deployment(
            name="train",
            parameters={"export": export_to or f"{workspace}/export", "out": f"{workspace}/runs/refer"},
            entrypoint_type=module,
        ),
    ]
    if audit_every_s:
        deployments.append(
            audit_sync_flow.to_deployment(
                name="audit-sync",
                parameters={"workspace": workspace},
                interval=timedelta(seconds=audit_every_s),
                entrypoint_type=module,
                concurrency_limit=1,
            )
        )
    return deployments
