"""Settings that Prefect needs before it is imported, kept in one place.

Prefect reads its configuration from the environment when it is first imported, so the CLI and the tests
call :func:`configure_prefect` first. Telemetry is off (the machine has no route to it, and operators
should not leak run data), Prefect's home is inside the workspace (nothing written to ``~/.prefect``),
and the temporary server gets 120 s to start (the 20 s default is too short on two busy cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from craft_agent.errors import ConfigError
from craft_agent.localhost import free_port, health, pid_alive, port_free
from craft_agent.settings import Settings


def prefect_environment(settings: Settings) -> dict[str, str]:
    """The environment variables Prefect should run with for this workspace."""
    return {
        "PREFECT_HOME": str((settings.workspace / ".prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    }


def configure_prefect(settings: Settings) -> Path:
    """Set Prefect's environment for ``settings.workspace`` (values already set by the user win).

    Returns:
        The Prefect home folder in use.
    """
    for key, value in prefect_environment(settings).items():
        os.environ.setdefault(key, value)
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return home


SERVER_STATE = "prefect-server.json"
"""In Prefect's home: the local server's pid, port and URL (the port is kept, so its URL never changes)."""


class LocalPrefectServer:
    """A real Prefect server for the workspace on 127.0.0.1 (``prefect server start`` in a child process).

    Its database is in the workspace's Prefect home (SQLite), or PostgreSQL when
    ``PREFECT_API_DATABASE_CONNECTION_URL`` is set. Unlike Prefect's temporary server, it runs the scheduler,
    so deployments' schedules fire. Stopped by PID.

    Args:
        settings: the workspace.
        port: the port; default: the one used last time, else a free one.
    """

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.home = configure_prefect(settings)
        self.state_path = self.home / SERVER_STATE
        self.log_path = self.home / "server.log"
        state = self._state()
        self.port = port or int(state.get("port") or 0) or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def running(self) -> bool:
        state = self._state()
        return bool(state.get("pid")) and pid_alive(int(state["pid"])) and health(self.url)

    def start(self, timeout_s: float = 180) -> str:
        """Start the server (or find it running) and return its API URL.

        Raises:
            ConfigError: when the port is taken by another program or the server does not come up.
        """
        if self.running():
            return self.url
        if not port_free(self.port):
            raise ConfigError(
                f"port {self.port} on 127.0.0.1, kept for this workspace's Prefect server in {self.state_path}, "
                "is taken by another program.",
                hint="stop that program, or delete the file to pick a new port.",
            )
        env = {
            **os.environ,
            # the scheduler creates runs from schedules every few seconds, not every minute
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": os.environ.get(
                "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "5"
            ),
            "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
        }
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.state_path.write_text(json.dumps({"pid": process.pid, "port": self.port, "url": self.url}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if health(self.url):
                return self.url
            time.sleep(0.5)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() else ""
        raise ConfigError(
            f"the Prefect server on port {self.port} did not come up within {timeout_s:.0f} s. Its log ends:\n{tail}",
            hint=f"see {self.log_path}.",
        )

    def stop(self) -> bool:
        """Stop the server started for this workspace (by its process group); True when one was running."""
        pid = int(self._state().get("pid") or 0)
        if not pid or not pid_alive(pid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return True
