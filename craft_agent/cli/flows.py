"""Prefect flows: ``flows serve`` (a local server and the scheduled deployments), ``flows run``, ``flows stop``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from craft_agent.cli.common import (
    EXIT_OK,
    CategoriesOption,
    CheckpointOption,
    DetectorOption,
    GroupsOption,
    JsonOption,
    WorkspaceOption,
    emit_json,
    err,
    handled,
    out,
    parse_categories,
    settings_for,
)
from craft_agent.errors import CraftError

if TYPE_CHECKING:
    from craft_agent.pipeline import DraftOptions

FLOW_NAMES = ("generate", "audit-sync", "export", "craft", "train")


def _draft_options(
    llm: str | None,
    masks: str | None,
    detector: str | None,
    checkpoint: Path | None,
    categories: str | None,
    groups: bool,
) -> DraftOptions:
    """The flows' drafting options from the command line; the detector left unset is the workspace's default
    (resolved by the generate flow)."""
    from craft_agent.pipeline import DraftOptions

    return DraftOptions(
        llm=llm,
        masks=masks,
        detector=detector,
        checkpoint=str(checkpoint.resolve()) if checkpoint else None,
        categories=parse_categories(categories),
        groups=groups,
    )


@handled
def flows_serve(
    workspace: WorkspaceOption = None,
    watch: Annotated[Path | None, typer.Option(help="Imagery folder ingested at each scheduled regeneration.")] = None,
    cron: Annotated[str | None, typer.Option(help="Cron schedule of the regeneration, e.g. '*/15 * * * *'.")] = None,
    every: Annotated[
        float | None, typer.Option(min=1, help="Seconds between regenerations (when --cron is not given).")
    ] = None,
    audit_every: Annotated[float, typer.Option(min=0, help="Seconds between audit syncs (0: none).")] = 300,
    export_to: Annotated[Path | None, typer.Option(help="Export folder of the export and craft flows.")] = None,
    llm: Annotated[str | None, typer.Option(help="LLM backend of the regeneration.")] = None,
    masks: Annotated[str | None, typer.Option(help="Mask engine of the regeneration.")] = None,
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    categories: CategoriesOption = None,
    groups: GroupsOption = True,
    port: Annotated[int | None, typer.Option(help="Port of the local Prefect server (default: kept, or free).")] = None,
) -> None:
    """Start the workspace's Prefect server on 127.0.0.1 (or use PREFECT_API_URL) and serve the deployments
    (scheduled regeneration on --watch, audit sync); runs until stopped (Ctrl-C)."""
    import os

    from craft_agent.orchestration import LocalPrefectServer, configure_prefect

    settings = settings_for(workspace, existing=watch is None)
    settings.workspace.mkdir(parents=True, exist_ok=True)
    configure_prefect(settings)
    if not os.environ.get("PREFECT_API_URL"):
        server = LocalPrefectServer(settings, port)
        os.environ["PREFECT_API_URL"] = server.start()
        err.print(f"Prefect server: {server.url.removesuffix('/api')} (log: {server.log_path})")
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    import prefect

    from flows.deployments import build_deployments

    deployments = build_deployments(
        str(settings.workspace.resolve()),
        watch=str(watch.resolve()) if watch else None,
        cron=cron,
        every_s=every,
        audit_every_s=audit_every or None,
        options=_draft_options(llm, masks, detector, checkpoint, categories, groups),
        export_to=str(export_to.resolve()) if export_to else None,
    )
    prefect.serve(*deployments, print_starting_message=True)
    raise typer.Exit(EXIT_OK)


@handled
def flows_run(
    name: Annotated[str, typer.Argument(help="generate, audit-sync, export, craft or train.")],
    workspace: WorkspaceOption = None,
    source: Annotated[
        Path | None, typer.Option(help="Imagery to ingest first (generate, craft); the export to train on (train).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Export folder (export, craft); run folder (train).")
    ] = None,
    minutes: Annotated[float, typer.Option(min=0.01, help="Training budget (train).")] = 10.0,
    engine: Annotated[str, typer.Option(help="threads or dask (generate).")] = "threads",
    workers: Annotated[int, typer.Option(min=1, help="Concurrent pairs: threads or Dask workers.")] = 4,
    dask_address: Annotated[str | None, typer.Option(help="A Dask scheduler (default: a LocalCluster).")] = None,
    llm: Annotated[str | None, typer.Option(help="LLM backend.")] = None,
    masks: Annotated[str | None, typer.Option(help="Mask engine.")] = None,
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    categories: CategoriesOption = None,
    groups: GroupsOption = True,
    as_json: JsonOption = False,
) -> None:
    """Run one flow now (on PREFECT_API_URL when set, else on Prefect's temporary local server)."""
    from craft_agent.orchestration import configure_prefect

    if name not in FLOW_NAMES:
        raise CraftError(f"unknown flow {name!r}.", hint=f"use one of: {', '.join(FLOW_NAMES)}.")
    if name in ("export", "train") and out_dir is None:
        raise CraftError(f"the {name} flow needs --out.", hint="pass --out DIR.")
    if name == "train" and source is None:
        raise CraftError("the train flow needs --source EXPORT.", hint="pass the folder `craft-agent export` wrote.")
    settings = settings_for(workspace, existing=source is None)
    configure_prefect(settings)
    root = str(settings.workspace.resolve())
    options = _draft_options(llm, masks, detector, checkpoint, categories, groups)
    if name == "generate":
        from flows.generate import generate_flow, task_runner

        runner = generate_flow.with_options(task_runner=task_runner(engine, workers, dask_address))
        result = runner(root, source=str(source) if source else None, options=options)
    elif name == "audit-sync":
        from flows.audit import audit_sync_flow

        result = audit_sync_flow(root)
    elif name == "export":
        from flows.export import export_flow

        result = export_flow(root, str(out_dir))
    elif name == "train":
        from flows.train import train_flow

        result = train_flow(str(source), str(out_dir), minutes=minutes)
    else:
        from flows.craft import craft_flow

        export_to = str(out_dir) if out_dir else None
        result = craft_flow(root, source=str(source) if source else None, options=options, export_to=export_to)
    if as_json:
        emit_json(result)
    else:
        out.print_json(json.dumps(result, default=str))
    raise typer.Exit(EXIT_OK)


@handled
def flows_stop(workspace: WorkspaceOption = None) -> None:
    """Stop the workspace's local Prefect server."""
    from craft_agent.orchestration import LocalPrefectServer

    stopped = LocalPrefectServer(settings_for(workspace)).stop()
    out.print("stopped the Prefect server" if stopped else "no Prefect server was running for this workspace")
    raise typer.Exit(EXIT_OK)
