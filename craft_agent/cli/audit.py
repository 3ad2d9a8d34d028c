"""Human audit in Label Studio: ``audit serve``, ``stop``, ``invite``, ``push``, ``pull`` and ``status``."""

from __future__ import annotations

import dataclasses
import shlex
import urllib.parse
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from craft_agent.cli.common import (
    EXIT_FAILED,
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
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port (default: CRAFT_LABEL_STUDIO_PORT, else the one this workspace's server had last time, else "
            "a free one); kept for next time, so auditors' links keep working.",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on: 127.0.0.1 (this machine only; the default), 0.0.0.0 (every interface: "
            "colleagues on the network) or one of this machine's IPv4 addresses. A running server keeps its own "
            "unless asked; once stopped, the next serve listens on 127.0.0.1. See README, Sharing the audit "
            "with colleagues.",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Leave it running in the background; stop with `audit stop`.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the workspace's own Label Studio (installed in its own venv on first use), on 127.0.0.1 unless --host."""
    from craft_agent.audit.server import LocalLabelStudio, ServerInfo, is_loopback, stop_requested
    from craft_agent.errors import AuditError

    settings = settings_for(workspace, existing=False, label_studio_port=port)
    if settings.label_studio_url:
        # An existing server is configured: nothing to start; say whether it answers and takes the token.
        from craft_agent.doctor import check_label_studio

        if host is not None:
            raise AuditError(
                f"--host {host} applies to the workspace's own server, but CRAFT_LABEL_STUDIO_URL names an existing "
                f"one ({settings.label_studio_url}).",
                hint="drop --host (the existing server's own configuration decides where it listens), or unset "
                "CRAFT_LABEL_STUDIO_URL to serve the workspace's own.",
            )
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
    server = LocalLabelStudio(settings, host=host)
    url = server.start(report=lambda message: err.print(message))
    already = server.process is None  # found running as asked; otherwise this command started it
    info = ServerInfo.read(server.pid_path)
    public = server.public_url or url
    login = {
        "url": url,
        "public_url": public,
        "host": server.host,
        "port": info.port if info else None,
        "username": server.credentials.username,
        "password_file": str(server.data_dir / "credentials.json"),
        "already_running": already,
        "pid": info.pid if info else None,
        "log": str(server.log_path),
        "stop": server.stop_command,
    }
    if not is_loopback(server.host):
        _warn_shared(public, settings.workspace)
    if as_json:
        emit_json(login)
    else:
        out.print(f"Label Studio is at [bold]{public}[/] (log: {server.log_path})")
        out.print(
            f"log in as [bold]{server.credentials.username}[/]; the password is in {login['password_file']} "
            "(owner-only), e.g. `python -c \"import json,sys; print(json.load(open(sys.argv[1]))['password'])\" "
            f"{login['password_file']}`"
        )
    if detach or already:
        if not as_json:
            out.print(f"running in the background; stop it with `{server.stop_command}`.", highlight=False)
        raise typer.Exit(EXIT_OK)
    with stop_requested() as stop:
        if not as_json:
            out.print("press Ctrl-C to stop")
        server.supervise(stop)
    if not as_json:
        err.print("Label Studio stopped.")
    raise typer.Exit(EXIT_OK)


def _warn_shared(public_url: str, workspace: Path) -> None:
    """The loud note for a server that listens beyond this machine (on stderr, so --json stays one object)."""
    invite = f"craft-agent audit invite EMAIL --workspace {shlex.quote(str(workspace))}"
    err.print(
        f"[bold yellow]note: Label Studio listens beyond this machine: anyone who can reach {public_url} sees "
        "its login page.[/]\n"
        f"  - sign-up stays closed; auditors get an account by invitation: `{invite}`.\n"
        "  - the connection is plain HTTP (passwords and images unencrypted): put HTTPS in front with a reverse "
        "proxy, or keep 127.0.0.1 and use SSH tunnels (README: Sharing the audit with colleagues).\n"
        "  - it may fetch URLs on private networks (allowed for the ML backend on 127.0.0.1): invite only "
        "people you would trust on this machine's network.",
        highlight=False,
    )


@handled
def audit_stop(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Stop the workspace's Label Studio started by `audit serve --detach` (creates nothing)."""
    from craft_agent.audit.server import LocalLabelStudio, running_servers
    from craft_agent.errors import ConfigError

    missing: ConfigError | None = None
    try:
        settings = settings_for(workspace)
    except ConfigError as exc:
        # A mistyped --workspace is refused as everywhere else (naming the workspaces nearby) unless a server
        # still runs for that path (its folder deleted under it): then that one is stopped.
        settings = settings_for(workspace, existing=False)
        if not any(o.workspace.resolve() == settings.workspace.resolve() for o in running_servers()):
            missing = exc
    if missing is None:
        from craft_agent.cli.ml_backend import stop_backend

        # The click-to-mask backend serves this server's page only: it goes with it.
        backend = stop_backend(settings.workspace)
        if backend is not None and not as_json:
            out.print(f"ML backend of workspace {settings.workspace} stopped (pid {backend}).", highlight=False)
        server = LocalLabelStudio(settings, create=False)
        named = server.workspace  # resolved: `workspace` alone would read as a word
        if server.stop():
            if as_json:
                emit_json({"stopped": True})
            else:
                out.print(f"Label Studio of workspace {named} stopped.", highlight=False)
            raise typer.Exit(EXIT_OK)
        others = [other for other in running_servers() if other.data_dir.resolve() != server.data_dir]
        if not others:
            if as_json:
                emit_json({"stopped": False})
            else:
                out.print(f"no Label Studio server was running for workspace {named}.", highlight=False)
            raise typer.Exit(EXIT_OK)
        error = (
            f"no Label Studio server runs for workspace {named}, but {len(others)} other craft-agent "
            f"Label Studio server(s) do."
        )
        fix = "stop the one you meant with its own command (listed), or pass its workspace with --workspace."
    else:
        others = running_servers()
        if not others:
            raise missing
        error = missing.message
        fix = f"{missing.hint} Or stop one of the craft-agent Label Studio servers running (listed)."
    if as_json:
        running = [{"workspace": str(o.workspace), "url": o.url, "pid": o.pid, "stop": o.stop_command} for o in others]
        emit_json({"stopped": False, "error": error, "fix": fix, "running": running})
    else:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        for other in others:
            err.print(f"  {other.workspace}  {other.url}  (PID {other.pid}): `{other.stop_command}`", highlight=False)
        err.print(f"[yellow]fix:[/] {fix}")
    raise typer.Exit(EXIT_FAILED)


@handled
def audit_invite(
    email: Annotated[str, typer.Argument(help="The colleague's e-mail address; they sign up and log in with it.")],
    workspace: WorkspaceOption = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Make a new invitation link first; the old one stops working.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Invite an auditor: the sign-up link on which they choose their password, and the login URL."""
    from craft_agent.audit.label_studio import LabelStudioAudit

    invitation = LabelStudioAudit(settings_for(workspace, existing=False)).invite(email, reset=reset)
    if as_json:
        emit_json(dataclasses.asdict(invitation))
        raise typer.Exit(EXIT_OK)
    if invitation.link_reset:
        out.print("a new invitation link was made; the old one no longer works.")
    if invitation.already_member:
        out.print(f"{invitation.email} already has an account: they log in at {invitation.login_url}", highlight=False)
    else:
        out.print(
            f"send {invitation.email} this sign-up link, privately (anyone holding it can join; `--reset` voids it):\n"
            f"  {invitation.signup_url}\n"
            f"they sign up there with {invitation.email} and a password of their own (8 characters or more), then "
            f"log in at {invitation.login_url}",
            highlight=False,
        )
    if invitation.local_only:
        port = urllib.parse.urlsplit(invitation.login_url).port
        out.print(
            f"[yellow]this server listens on 127.0.0.1 only[/]: a colleague on another machine first opens an SSH "
            f"tunnel, `ssh -N -L {port}:127.0.0.1:{port} USER@THIS_MACHINE`, and then uses these links as they are; "
            "or serve with `--host 0.0.0.0` (README: Sharing the audit with colleagues).",
            highlight=False,
        )
    raise typer.Exit(EXIT_OK)


@handled
def audit_push(
    workspace: WorkspaceOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Tasks per bulk import request.")] = 250,
    retry_s: Annotated[float, typer.Option(help="How long to wait for a server that drops mid-push.")] = 120,
    overlap: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Annotations each task gets before it counts as done, i.e. how many auditors see it (Label Studio "
            "Community has no assignment: auditors share one queue). Default: the project's (a new one: 1); kept "
            "in the project.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send drafted triplets to Label Studio for audit (bulk, idempotent: never duplicates a task)."""
    from craft_agent.audit.label_studio import LabelStudioAudit
    from craft_agent.catalog import Catalog

    settings = settings_for(workspace)
    backend = LabelStudioAudit(settings, overlap=overlap)
    with Catalog.from_settings(settings) as catalog, progress_bar("push", not as_json) as update:
        state = {"done": 0, "total": 0}

        def on_total(total: int) -> None:
            state["total"] = total

        def advance(n: int) -> None:
            state["done"] += n
            update(state["done"], state["total"], "")

        summary = backend.push(catalog, batch_size=batch_size, retry_s=retry_s, progress=advance, on_total=on_total)
    payload = {**summary.__dict__, "images": backend.image_mode, "overlap": backend.overlap}
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
        if backend.overlap and backend.overlap > 1:
            out.print(
                f"each task goes to {backend.overlap} auditors; `audit status` shows how they agree. Which "
                f"annotation decides: audit policy {settings.audit_policy!r} (`audit pull --policy`)."
            )
    if settings.audit_policy == "two_agree" and backend.overlap == 1:
        err.print(
            "[yellow]warning:[/] the two_agree policy waits for two audits per task, but each task gets one "
            "(overlap 1): push again with --overlap 2 or more."
        )
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
    """Audit progress: triplets per state, acceptance and edit rates, per-auditor throughput, agreement."""
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
    if status["agreement"]:
        out.print("agreement between auditors, on the tasks both audited:")
        for pair in status["agreement"]:
            first, second = pair["auditors"]
            out.print(
                f"  {first} & {second}: {pair['shared_tasks']} shared task(s), mean mask IoU "
                f"{pair['mean_iou']:.3f}, same verdict {percent(pair['same_verdict'])}",
                highlight=False,
            )
    raise typer.Exit(EXIT_OK)
