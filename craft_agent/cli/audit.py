"""Human audit in Label Studio: ``audit serve``, ``stop``, ``push``, ``pull`` and ``status``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from craft_agent.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    JsonOption,
    WorkspaceOption,
    emit_json,
    err,
    handled,
    out,
    progress_bar,
    settings_for,
)
from craft_agent.settings import require_workspace


@handled
def audit_serve(
    workspace: WorkspaceOption = None,
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: CRAFT_LABEL_STUDIO_PORT or a free one).")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Leave it running in the background; stop with `audit stop`.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the workspace's own Label Studio on 127.0.0.1 (installed in its own venv on first use)."""
    from craft_agent.audit.server import LocalLabelStudio, stop_requested
    from craft_agent.errors import AuditError

    settings = settings_for(workspace, existing=False, label_studio_port=port)
    if settings.label_studio_url:
        # An existing server is configured: nothing to start; say whether it answers and takes the token.
        from craft_agent.doctor import check_label_studio

        check = check_label_studio(settings, timeout=10)
        if check.status != "ok":
            raise AuditError(check.detail, hint=check.fix)
        if as_json:
            emit_json({"url": settings.label_studio_url, "existing_server": True})
        else:
            out.print(
                f"using the existing server at {settings.label_studio_url} (CRAFT_LABEL_STUDIO_URL): {check.detail}"
            )
        raise typer.Exit(EXIT_OK)
    require_workspace(settings)  # a local server serves the workspace's images: it must be one
    server = LocalLabelStudio(settings)
    already = server.running()
    url = server.start(report=lambda message: err.print(message))
    login = {
        "url": url,
        "username": server.credentials.username,
        "password_file": str(server.data_dir / "credentials.json"),
        "already_running": bool(already),
        "pid": (already.pid if already else server.process.pid if server.process else None),
        "log": str(server.log_path),
    }
    if as_json:
        emit_json(login)
    else:
        out.print(f"Label Studio is at [bold]{url}[/] (log: {server.log_path})")
        out.print(
            f"log in as [bold]{server.credentials.username}[/]; the password is in {login['password_file']} "
            "(owner-only), e.g. `python -c \"import json,sys; print(json.load(open(sys.argv[1]))['password'])\" "
            f"{login['password_file']}`"
        )
    if detach or already:
        if not as_json:
            out.print("running in the background; stop it with `craft-agent audit stop`.")
        raise typer.Exit(EXIT_OK)
    with stop_requested() as stop:
        if not as_json:
            out.print("press Ctrl-C to stop")
        server.supervise(stop)
    if not as_json:
        err.print("Label Studio stopped.")
    raise typer.Exit(EXIT_OK)


@handled
def audit_stop(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Stop the workspace's Label Studio started by `audit serve --detach`."""
    from craft_agent.audit.server import LocalLabelStudio

    stopped = LocalLabelStudio(settings_for(workspace)).stop()
    if as_json:
        emit_json({"stopped": stopped})
    else:
        out.print("Label Studio stopped." if stopped else "no Label Studio server was running for this workspace.")
    raise typer.Exit(EXIT_OK)


@handled
def audit_push(
    workspace: WorkspaceOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Tasks per bulk import request.")] = 250,
    retry_s: Annotated[float, typer.Option(help="How long to wait for a server that drops mid-push.")] = 120,
    as_json: JsonOption = False,
) -> None:
    """Send drafted triplets to Label Studio for audit (bulk, idempotent: never duplicates a task)."""
    from craft_agent.audit.label_studio import LabelStudioAudit
    from craft_agent.catalog import Catalog

    settings = settings_for(workspace)
    backend = LabelStudioAudit(settings)
    with Catalog.from_settings(settings) as catalog, progress_bar("push", not as_json) as update:
        state = {"done": 0, "total": 0}

        def on_total(total: int) -> None:
            state["total"] = total

        def advance(n: int) -> None:
            state["done"] += n
            update(state["done"], state["total"], "")

        summary = backend.push(catalog, batch_size=batch_size, retry_s=retry_s, progress=advance, on_total=on_total)
    payload = {**summary.__dict__, "images": backend.image_mode}
    if as_json:
        emit_json(payload)
    else:
        out.print(
            f"[bold green]{summary.imported}[/] imported, {summary.updated} updated, {summary.unchanged} already "
            f"there; {summary.queued} triplet(s) moved to the audit queue ({summary.seconds:.1f} s)"
        )
        out.print(f"audit at {summary.url}/projects/{summary.project_id}/data")
        if summary.duplicates:
            out.print(f"[yellow]{len(summary.duplicates)} triplet(s) have more than one task in the project[/]")
    raise typer.Exit(EXIT_OK)


@handled
def audit_pull(
    workspace: WorkspaceOption = None,
    policy: Annotated[
        str | None, typer.Option(help="Several annotations of a task: first, majority or two_agree.")
    ] = None,
    retry_s: Annotated[float, typer.Option(help="How long to wait for a server that drops mid-pull.")] = 120,
    as_json: JsonOption = False,
) -> None:
    """Read auditors' verdicts, edited texts and repainted masks into the catalog (safe to repeat)."""
    from craft_agent.audit.label_studio import LabelStudioAudit
    from craft_agent.catalog import Catalog

    settings = settings_for(workspace, audit_policy=policy)
    backend = LabelStudioAudit(settings)
    with Catalog.from_settings(settings) as catalog:
        summary = backend.pull(catalog, retry_s=retry_s)
    if as_json:
        emit_json({**summary.__dict__, "failures": [{"input": i, "error": e} for i, e in summary.failures]})
    else:
        moved = ", ".join(f"{n} {state}" for state, n in sorted(summary.moved.items())) or "none"
        out.print(
            f"{summary.annotations} annotation(s) on {summary.tasks} task(s): {summary.new_records} new, "
            f"{summary.updated_records} updated, {summary.removed_records} removed; moved: {moved}; "
            f"{summary.undecided} undecided ({summary.seconds:.1f} s)"
        )
        if summary.unknown_tasks:
            out.print(f"[yellow]{summary.unknown_tasks} task(s) name triplets this catalog does not have[/]")
        for name, error in summary.failures:
            out.print(f"  [red]x[/] {name}\n    {error}", highlight=False)
    raise typer.Exit(EXIT_PARTIAL if summary.failures else EXIT_OK)


@handled
def audit_status_command(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Audit progress: triplets per state, acceptance and edit rates, per-auditor throughput."""
    from craft_agent.audit.status import audit_status
    from craft_agent.catalog import Catalog

    settings = settings_for(workspace)
    with Catalog.from_settings(settings) as catalog:
        status = audit_status(catalog)
    if as_json:
        emit_json(status)
        raise typer.Exit(EXIT_OK)
    states = ", ".join(f"{n} {state}" for state, n in status["states"].items())
    out.print(f"{status['triplets']} triplet(s): {states}")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    out.print(
        f"acceptance {percent(status['acceptance_rate'])}, edited {percent(status['edit_rate'])}, "
        f"median time per task {status['time_per_task']['median_s'] or '-'} s"
    )
    if status["auditors"]:
        table = Table(title="auditors")
        for column in ("auditor", "audits", "accepted", "fixed", "rejected", "needs fix", "median s", "per hour"):
            table.add_column(column, justify="left" if column == "auditor" else "right")
        for name, row in status["auditors"].items():
            table.add_row(
                name,
                *[
                    str(row[k] if row[k] is not None else "-")
                    for k in ("audits", "accepted", "fixed", "rejected", "needs_fix", "median_s", "per_hour")
                ],
            )
        out.print(table)
    raise typer.Exit(EXIT_OK)
