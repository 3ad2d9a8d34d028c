"""``audit ml-backend``: click-to-mask for auditors, as a Label Studio ML backend (see
:mod:`craft_agent.audit.ml_backend`)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from craft_agent.cli.common import EXIT_OK, JsonOption, WorkspaceOption, emit_json, err, handled, out, settings_for

STATE_NAME = "ml-backend.json"
"""In the workspace's ``label-studio`` folder: the backend's port (kept across restarts), URL and PID."""


def _state_path(workspace: Path) -> Path:
    from craft_agent.audit.server import SERVER_DIR

    return workspace / SERVER_DIR / STATE_NAME


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    from craft_agent.catalog.store import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def stop_backend(workspace: Path, wait_s: float = 10) -> int | None:
    """Stop the workspace's detached ML backend, if one runs; returns its PID (it unregisters itself)."""
    from craft_agent.localhost import pid_alive

    state_path = _state_path(workspace)
    state = _read_state(state_path)
    pid = int(state.get("pid") or 0)
    if not pid or not pid_alive(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _write_state(state_path, {**state, "pid": None})
    return pid


@handled
def audit_ml_backend(
    workspace: WorkspaceOption = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: the one used last time).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    engine: Annotated[
        str, typer.Option(help="auto (SAM when CRAFT_SAM_CHECKPOINT is set, else classical), classical or sam.")
    ] = "auto",
    public_url: Annotated[
        str | None,
        typer.Option(help="URL at which the Label Studio server reaches this backend (default http://HOST:PORT)."),
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Register with the workspace's audit project (and unregister on exit).")
    ] = True,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; stop with --stop.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the backend running for this workspace.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Serve click-to-mask to the audit page: a point or box on either date becomes that date's mask."""
    from craft_agent.errors import AuditError
    from craft_agent.localhost import free_port, pid_alive, port_free

    settings = settings_for(workspace)
    state_path = _state_path(settings.workspace)
    state = _read_state(state_path)
    where = shlex.quote(str(settings.workspace))
    if stop:
        pid = stop_backend(settings.workspace)
        if pid is None:
            message = {"stopped": False, "reason": f"no ML backend is running for workspace {settings.workspace}"}
            emit_json(message) if as_json else out.print(message["reason"])
            raise typer.Exit(EXIT_OK)
        emit_json({"stopped": True, "pid": pid}) if as_json else out.print(f"stopped the ML backend (pid {pid})")
        raise typer.Exit(EXIT_OK)
    running = int(state.get("pid") or 0)
    if running and running != os.getpid() and pid_alive(running):
        raise AuditError(
            f"an ML backend already runs for this workspace (pid {running}, {state.get('url')}).",
            hint=f"stop it with `craft-agent audit ml-backend --workspace {where} --stop`.",
        )
    port = port or int(state.get("port") or 0) or free_port()
    if not port_free(port):
        raise AuditError(
            f"port {port} is taken by another program.",
            hint="stop that program, or choose another port with --port N (it is kept for next time).",
        )
    url = public_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if detach:
        command = [
            sys.executable,
            "-m",
            "craft_agent.cli",
            "audit",
            "ml-backend",
            "--workspace",
            str(settings.workspace),
        ]
        command += ["--port", str(port), "--host", host, "--engine", engine, "--public-url", url]
        command += [] if register else ["--no-register"]
        log = state_path.parent / "ml-backend.log"
        state_path.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            child = subprocess.Popen(
                command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _write_state(state_path, {"port": port, "url": url, "pid": child.pid, "engine": engine})
        _wait_until_up(url, child, log)
        report = {"url": url, "pid": child.pid, "log": str(log), "registered": register}
        if as_json:
            emit_json(report)
        else:
            out.print(f"ML backend for click-to-mask at {url} (pid {child.pid}); log {log}")
            out.print(f"stop it with `craft-agent audit ml-backend --workspace {where} --stop`")
        raise typer.Exit(EXIT_OK)
    _serve(settings, host, port, engine, url, register, state_path, as_json)
    raise typer.Exit(EXIT_OK)


def _wait_until_up(url: str, child: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> None:
    import httpx

    from craft_agent.errors import AuditError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise AuditError(f"the ML backend exited at start (code {child.returncode}):\n{tail}", hint=f"see {log}.")
        try:
            # Up, and registered: the state file then names this process as the one serving.
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AuditError(f"the ML backend did not answer at {url} within {timeout_s:.0f} s.", hint=f"see {log}.")


def _serve(
    settings: Any, host: str, port: int, engine: str, url: str, register: bool, state_path: Path, as_json: bool
) -> None:
    from craft_agent.audit.label_studio import LabelStudioAudit
    from craft_agent.audit.ml_backend import ClickService, create_app, serving, unregister
    from craft_agent.audit.ml_backend import register as register_backend

    service = ClickService(settings, engine)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    audit = LabelStudioAudit(settings) if register else None
    try:
        with serving(create_app(service), host, port) as local:
            _write_state(state_path, {"port": port, "url": url, "pid": os.getpid(), "engine": engine})
            backend_id = register_backend(audit, url) if audit else None
            message = {"url": url, "local": local, "engine": service.engine, "ml_backend_id": backend_id}
            if as_json:
                emit_json(message)
            else:
                err.print(
                    f"click-to-mask ({service.engine}) at {url}"
                    + (f", registered with {audit.url} (ML backend {backend_id})" if audit else "")
                    + "; auditors: turn on Auto-Annotation on the task page (see auditing/GUIDE.md). Ctrl-C stops."
                )
            try:
                while not stopping.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        if audit is not None:
            try:
                unregister(audit, url)
            except Exception as exc:  # the server may be gone already; nothing to undo then
                err.print(f"[yellow]could not unregister the ML backend: {str(exc)[:200]}[/]")
        service.close()
        state = _read_state(state_path)
        if state.get("pid") == os.getpid():
            _write_state(state_path, {**state, "pid": None})
