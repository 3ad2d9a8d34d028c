"""A local Label Studio server for audits: installed in its own virtual environment, bound to 127.0.0.1.

Label Studio pins ``openai<2`` and would downgrade this project's stack, so the server lives in a venv of its
own (:class:`LabelStudioInstall`, created on first use). :class:`LocalLabelStudio` starts it with the admin
user and API token set before the first start (Label Studio reads them only when it creates the
organisation), local-file serving rooted at the workspace, SQLite under the workspace or PostgreSQL when
configured, and stops it by PID (in the foreground, :meth:`LocalLabelStudio.supervise` keeps it running until
Ctrl-C). It comes back on the port it had before (kept in ``state.json``), so the URL a running push or an
open browser tab holds stays valid across restarts. The server's folder is the owner's alone (0700, files
0600): its database holds the API token in plain text. Measured facts behind the details are in
``shared/DESIGN.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from craft_agent.catalog.store import write_atomic
from craft_agent.errors import AuditError
from craft_agent.localhost import free_port, health, pid_alive, port_free
from craft_agent.settings import Settings

LABEL_STUDIO_VERSION = "1.23.2"
SERVER_DIR = "label-studio"
"""Folder in the workspace holding the local server's data, log, credentials, state and PID file."""
STATE_FILE = "state.json"
"""In :data:`SERVER_DIR`: what outlives one server process (its port)."""

# Variables of ours or the user's shell that Label Studio would read as its own settings (DESIGN.md: plain
# USERNAME / PASSWORD / PORT / HOST leak into it).
_LEAKING_VARIABLES = ("USERNAME", "PASSWORD", "PORT", "HOST", "DJANGO_DB", "DATABASE_URL")
_LEAKING_PREFIXES = ("LABEL_STUDIO_", "POSTGRE_", "CRAFT_", "VIRTUAL_ENV")


def default_home() -> Path:
    """Where the server's virtual environment goes unless ``label_studio_home`` says otherwise."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "craft-agent" / f"label-studio-{LABEL_STUDIO_VERSION}"


class LabelStudioInstall:
    """The Label Studio server's own virtual environment.

    Args:
        home: the venv folder; created with this Python and ``pip install label-studio==<version>``.
    """

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or default_home()).expanduser()
        self.stamp = self.home / ".craft-installed"

    @property
    def executable(self) -> Path:
        return self.home / "bin" / "label-studio"

    @property
    def installed(self) -> bool:
        return self.stamp.exists() and self.executable.exists()

    def ensure(self, report: Callable[[str], None] | None = None) -> Path:
        """Install the server when missing (about a minute from the package mirror) and return its executable.

        Concurrent callers (parallel test sessions, two terminals) wait for one install under a file lock.

        Raises:
            AuditError: when the venv cannot be created or pip fails, with pip's last lines.
        """
        if self.installed:
            return self.executable
        self.home.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.home.parent / f".{self.home.name}.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.installed:
                return self.executable
            if report:
                report(f"installing Label Studio {LABEL_STUDIO_VERSION} into {self.home} (first use, about a minute)")
            python = self.home / "bin" / "python"
            steps = [
                [sys.executable, "-m", "venv", "--clear", str(self.home)],
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "pip"],
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    f"label-studio=={LABEL_STUDIO_VERSION}",
                ],
            ]
            for command in steps:
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
                    raise AuditError(
                        f"installing Label Studio into {self.home} failed ({' '.join(command[:4])}...):\n{tail}",
                        hint="check that the package index is reachable (pip config), or set "
                        "CRAFT_LABEL_STUDIO_URL and CRAFT_LABEL_STUDIO_TOKEN to use an existing server.",
                    )
            self.stamp.write_text(LABEL_STUDIO_VERSION + "\n")
        return self.executable


@dataclass(frozen=True)
class Credentials:
    """Admin login and API token of a local server. Never printed whole: see :meth:`describe`."""

    username: str
    password: str
    token: str

    @classmethod
    def load_or_create(cls, path: Path, settings: Settings) -> Credentials:
        """Credentials from settings, else from ``path``, else newly generated and stored there (mode 0600).

        Values given in settings win over stored ones, field by field, and are not written to disk.
        """
        stored: dict[str, str] = {}
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise AuditError(
                    f"cannot read the Label Studio credentials in {path}: {exc}.",
                    hint="delete the file (and the server's data folder beside it) to start a fresh server.",
                ) from exc
        generated = {
            "username": stored.get("username") or "admin@craft-agent.local",
            "password": stored.get("password") or secrets.token_urlsafe(18),
            # Label Studio's legacy tokens are 40 hex characters.
            "token": stored.get("token") or secrets.token_hex(20),
        }
        if generated != stored:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, json.dumps(generated, indent=2).encode())
        os.chmod(path, 0o600)
        return cls(
            username=settings.label_studio_username or generated["username"],
            password=(
                settings.label_studio_password.get_secret_value()
                if settings.label_studio_password
                else generated["password"]
            ),
            token=settings.label_studio_token.get_secret_value() if settings.label_studio_token else generated["token"],
        )


@dataclass(frozen=True)
class ServerInfo:
    """What a started local server wrote to its PID file."""

    pid: int
    url: str
    document_root: str

    @classmethod
    def read(cls, path: Path) -> ServerInfo | None:
        try:
            data = json.loads(path.read_text())
            return cls(pid=int(data["pid"]), url=str(data["url"]), document_root=str(data["document_root"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def make_private(folder: Path) -> None:
    """Make ``folder`` the owner's alone (0700) and the files directly in it owner read/write (0600).

    The server's SQLite database stores the API token in plain text; logs and state name the workspace.
    Folders inside (media, exports) are reachable only through ``folder``, so they are left as they are.

    Raises:
        AuditError: when the modes cannot be changed (the folder belongs to another user).
    """
    try:
        folder.chmod(0o700)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                entry.chmod(0o600)
    except OSError as exc:
        raise AuditError(
            f"cannot make the Label Studio folder {folder} private (it holds the API token): {exc}.",
            hint="run as the folder's owner, or chown it to yourself, then start again.",
        ) from exc


def _database_environment(database_url: str) -> dict[str, str]:
    parsed = urllib.parse.urlsplit(database_url)
    if not parsed.scheme.startswith("postgres") or not parsed.path.strip("/"):
        raise AuditError(
            "CRAFT_LABEL_STUDIO_DATABASE_URL must look like postgresql://user:password@host:5432/database.",
            hint="fix the URL, or unset it to keep Label Studio's SQLite database in the workspace.",
        )
    return {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": parsed.path.strip("/"),
        "POSTGRE_USER": urllib.parse.unquote(parsed.username or ""),
        "POSTGRE_PASSWORD": urllib.parse.unquote(parsed.password or ""),
        "POSTGRE_HOST": parsed.hostname or "127.0.0.1",
        "POSTGRE_PORT": str(parsed.port or 5432),
    }


class LocalLabelStudio:
    """One Label Studio server process serving a workspace, bound to 127.0.0.1.

    Args:
        settings: read for the workspace, port, credentials, database and install location.
        data_dir: the server's data folder; default ``<workspace>/label-studio``.
    """

    def __init__(self, settings: Settings, data_dir: Path | None = None) -> None:
        self.settings = settings
        self.workspace = settings.workspace.resolve()
        self.document_root = (settings.label_studio_document_root or settings.workspace).resolve()
        self.data_dir = (data_dir or self.workspace / SERVER_DIR).resolve()
        self.install = LabelStudioInstall(settings.label_studio_home)
        self.log_path = self.data_dir / "server.log"
        self.pid_path = self.data_dir / "server.json"
        self.state_path = self.data_dir / STATE_FILE
        self.credentials = Credentials.load_or_create(self.data_dir / "credentials.json", settings)
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self._log_offset = 0

    def running(self) -> ServerInfo | None:
        """The server this workspace started earlier, when it is still alive and healthy."""
        info = ServerInfo.read(self.pid_path)
        if info and info.alive and health(info.url):
            return info
        return None

    def stored_port(self) -> int | None:
        """The port this workspace's server had last time, or None before its first start."""
        try:
            port = json.loads(self.state_path.read_text())["port"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return port if isinstance(port, int) and 0 < port < 65536 else None

    def _port_taken(self, port: int, stored: bool) -> AuditError:
        previous = ServerInfo.read(self.pid_path)
        if previous and previous.alive and previous.url.endswith(f":{port}"):
            return AuditError(
                f"port {port} on 127.0.0.1 is still held by this workspace's previous Label Studio "
                f"(PID {previous.pid}), which does not answer on {previous.url}.",
                hint=f"stop it with `craft-agent audit stop --workspace {self.workspace}` and start again.",
            )
        if stored:
            return AuditError(
                f"port {port} on 127.0.0.1, where this workspace's Label Studio always runs (kept in "
                f"{self.state_path} so that its URL stays the same), is taken by another process.",
                hint=f"stop that process (`ss -ltnp 'sport = :{port}'` names it), or start on another port with "
                "`craft-agent audit serve --port N` (or CRAFT_LABEL_STUDIO_PORT); that port is kept from then on.",
            )
        return AuditError(
            f"port {port} on 127.0.0.1 is in use, so Label Studio cannot start there.",
            hint="stop what listens there, or set CRAFT_LABEL_STUDIO_PORT to another port (or unset it).",
        )

    def environment(self, port: int) -> dict[str, str]:
        """The server's environment: ours minus variables Label Studio would misread, plus its settings."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _LEAKING_VARIABLES and not key.startswith(_LEAKING_PREFIXES)
        }
        env.update(
            {
                "PATH": f"{self.install.home / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "LABEL_STUDIO_USERNAME": self.credentials.username,
                "LABEL_STUDIO_PASSWORD": self.credentials.password,
                "LABEL_STUDIO_USER_TOKEN": self.credentials.token,
                # Read only when the organisation is created, i.e. at the first start on a fresh database.
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
                "LOCAL_FILES_SERVING_ENABLED": "true",
                "LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "DJANGO_DB": "sqlite",
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            }
        )
        if self.settings.label_studio_database_url:
            env.update(_database_environment(self.settings.label_studio_database_url.get_secret_value()))
        return env

    def start(self, timeout_s: float = 240, report: Callable[[str], None] | None = None) -> str:
        """Start the server (installing it first if needed) and wait until it answers; returns its URL.

        Reuses the workspace's server when it is already running. The port is ``label_studio_port`` when
        set, else the one this workspace's server had before, else a free one; it is kept for next time.
        The data folder is made private first (also fixing one an older version left readable).

        Raises:
            AuditError: when the port is taken by another process, or the server exits early, listens
                elsewhere than asked, or is not healthy within ``timeout_s``; the message quotes its log.
        """
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_private(self.data_dir)
        existing = self.running()
        if existing:
            self.url = existing.url
            return existing.url
        executable = self.install.ensure(report)
        stored = self.stored_port()
        port = self.settings.label_studio_port or stored or free_port()
        deadline = time.monotonic() + 20
        while not port_free(port) and time.monotonic() < deadline:  # a previous server may still be closing
            time.sleep(0.2)
        if not port_free(port):
            raise self._port_taken(port, stored=port == stored)
        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir),
        ]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                env=self.environment(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches the workers too
                umask=0o077,  # the database (API token inside), media and exports it creates: owner only
            )
        finally:
            os.close(log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AuditError(
                    f"Label Studio exited with code {self.process.returncode} while starting:\n{self.log_tail()}",
                    hint=f"read {self.log_path}; a stale database in {self.data_dir} can be removed to start fresh.",
                )
            if health(url):
                break
            moved = self._port_in_log()
            if moved is not None and moved != port:
                self.stop()
                raise AuditError(
                    f"Label Studio was asked for port {port} but started on {moved} (port busy).",
                    hint="free the port or set CRAFT_LABEL_STUDIO_PORT to another one.",
                )
            time.sleep(0.5)
        else:
            self.stop()
            raise AuditError(
                f"Label Studio did not answer on {url} within {timeout_s:.0f} s:\n{self.log_tail()}",
                hint=f"read {self.log_path}; on a busy machine give it longer.",
            )
        self.url = url
        write_atomic(self.state_path, json.dumps({"port": port}).encode())
        write_atomic(
            self.pid_path,
            json.dumps({"pid": self.process.pid, "url": url, "document_root": str(self.document_root)}).encode(),
        )
        make_private(self.data_dir)
        return url

    def stop(self, timeout_s: float = 20) -> bool:
        """Stop the server this object started, or the one recorded in the workspace's PID file.

        Returns:
            True when a server process was stopped.
        """
        pid = self.process.pid if self.process else None
        if pid is None:
            info = ServerInfo.read(self.pid_path)
            pid = info.pid if info and info.alive else None
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        # Wait for the whole process group: a worker that outlives the leader still holds the port.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(pid, self.process):
            time.sleep(0.1)
        if _group_alive(pid, self.process):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _group_alive(pid, self.process):
                time.sleep(0.1)
        self.process = None
        self.pid_path.unlink(missing_ok=True)
        return True

    def supervise(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Keep the server this object started running until ``stop`` is set, then stop it.

        Args:
            stop: set it (e.g. from a signal handler, see :func:`stop_requested`) to end the supervision.
            poll_s: how often the server process is checked.

        Raises:
            AuditError: when the server exits on its own before ``stop`` is set; the message quotes its log.
        """
        while not stop.is_set() and self.process is not None and self.process.poll() is None:
            stop.wait(poll_s)
        crashed = not stop.is_set()
        self.stop()
        if crashed:
            raise AuditError(
                f"Label Studio exited on its own:\n{self.log_tail()}", hint=f"read {self.log_path} and serve again."
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _port_in_log(self) -> int | None:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read().decode(errors="replace")
        except OSError:
            return None
        found = re.findall(r"Starting development server at https?://[^:/]+:(\d+)", text)
        return int(found[-1]) if found else None

    def __enter__(self) -> LocalLabelStudio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        process.poll()  # reap the leader, or it lingers as a zombie member of its group
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event that SIGINT (Ctrl-C) or SIGTERM sets during the block, instead of interrupting it.

    The earlier handlers come back when the block ends. Only the main thread may set signal handlers.
    """
    stop = threading.Event()
    interrupts = (signal.SIGINT, signal.SIGTERM)
    previous = {interrupt: signal.signal(interrupt, lambda *_: stop.set()) for interrupt in interrupts}
    try:
        yield stop
    finally:
        for interrupt, handler in previous.items():
            signal.signal(interrupt, signal.SIG_DFL if handler is None else handler)  # None: not set from Python


@contextlib.contextmanager
def temporary_server(settings: Settings, data_dir: Path) -> Iterator[LocalLabelStudio]:
    """A local server for the duration of a block (benchmarks, tests), stopped by PID afterwards."""
    server = LocalLabelStudio(settings, data_dir=data_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
