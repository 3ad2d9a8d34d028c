"""A local Label Studio server for audits: installed in its own virtual environment, bound to 127.0.0.1 unless
told otherwise.

Label Studio pins ``openai<2`` and would downgrade this project's stack, so the server lives in a venv of its
own (:class:`LabelStudioInstall`, created on first use). :class:`LocalLabelStudio` starts it with the admin
user and API token set before the first start (Label Studio reads them only when it creates the
organisation), sign-up closed except through the organisation's invitation link, local-file serving rooted
at the workspace, SQLite under the workspace or PostgreSQL when configured, and stops it by PID (in the
foreground, :meth:`LocalLabelStudio.supervise` keeps it running until Ctrl-C). It comes back on the port it
had before (kept in ``state.json``), so the URL a running push, an open browser tab or an auditor's bookmark
holds stays valid across restarts; a port taken by something else is refused, never silently swapped. The
server's folder is the owner's alone (0700, files 0600): its database holds the API token in plain text.
:func:`running_servers` finds every craft-agent Label Studio on this machine from the process list, so
``audit stop`` can name the ones it was not asked to stop. Measured facts behind the details are in
``shared/DESIGN.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shlex
import signal
import socket
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
from craft_agent.localhost import free_port, health, pid_alive
from craft_agent.settings import Settings

LABEL_STUDIO_VERSION = "1.23.2"
SERVER_DIR = "label-studio"
"""Folder in the workspace holding the local server's data, log, credentials, state and PID file."""
STATE_FILE = "state.json"
"""In :data:`SERVER_DIR`: what outlives one server process (its port)."""
SERVER_SETTINGS_VERSION = 2
"""Version of the settings :meth:`LocalLabelStudio.environment` gives the server, written to its PID file.
Raise it whenever a running server must be restarted to pick up a change: ``audit serve`` restarts one that
records an older version. 1 (or none recorded): before the ML backend on 127.0.0.1 was allowed."""
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"
"""``--host`` value for every interface: a choice the user names, never a default."""

# Variables of ours or the user's shell that Label Studio would read as its own settings (DESIGN.md: plain
# USERNAME / PASSWORD / PORT / HOST leak into it; it also reads every setting with a HEARTEX_ prefix).
_LEAKING_VARIABLES = ("USERNAME", "PASSWORD", "PORT", "HOST", "DJANGO_DB", "DATABASE_URL")
_LEAKING_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "POSTGRE_", "CRAFT_", "VIRTUAL_ENV")


def stop_command(workspace: Path | str) -> str:
    """The command that stops the local server of ``workspace``, quoted for a POSIX shell."""
    return f"craft-agent audit stop --workspace {shlex.quote(str(workspace))}"


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
    """What a started local server wrote to its PID file.

    ``url`` is where this machine reaches it (push, pull, health checks); ``public_url`` where colleagues do
    (the same unless it listens beyond 127.0.0.1). Files written before these fields existed read as a
    server on 127.0.0.1 with settings version 1.
    """

    pid: int
    url: str
    document_root: str
    host: str = LOOPBACK
    public_url: str = ""
    settings_version: int = 1

    @classmethod
    def read(cls, path: Path) -> ServerInfo | None:
        try:
            data = json.loads(path.read_text())
            url = str(data["url"])
            return cls(
                pid=int(data["pid"]),
                url=url,
                document_root=str(data["document_root"]),
                host=str(data.get("host") or LOOPBACK),
                public_url=str(data.get("public_url") or url),
                settings_version=int(data.get("settings_version") or 1),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)

    @property
    def port(self) -> int | None:
        return urllib.parse.urlsplit(self.url).port


@dataclass(frozen=True)
class RunningServer:
    """A craft-agent Label Studio found among this machine's processes (see :func:`running_servers`)."""

    pid: int
    data_dir: Path
    port: int | None
    url: str

    @property
    def workspace(self) -> Path:
        """The workspace it serves: the folder holding its data folder (the data folder itself for a server
        started with a data folder of its own, as benchmarks and tests do)."""
        return self.data_dir.parent if self.data_dir.name == SERVER_DIR else self.data_dir

    @property
    def stop_command(self) -> str:
        if self.data_dir.name == SERVER_DIR:
            return stop_command(self.workspace)
        return f"kill {self.pid}"


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(PID, command line) of this machine's processes: from /proc, else from ``ps``."""
    proc = Path("/proc")
    if (proc / "self").exists():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                yield int(entry.name), raw.rstrip(b"\0").decode(errors="replace").split("\0")
        return
    try:
        listing = subprocess.run(
            ["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for line in listing.splitlines():
        pid, _, command = line.strip().partition(" ")
        if pid.isdigit():
            yield int(pid), command.split()


def _server_options(argv: list[str]) -> dict[str, str] | None:
    """The options of a ``label-studio start`` command line (``--port``, ``--data-dir``...), or None for any
    other process. The console script runs as ``python .../bin/label-studio start ...``."""
    for index, argument in enumerate(argv[:3]):
        if Path(argument).name == "label-studio" and argv[index + 1 : index + 2] == ["start"]:
            rest = argv[index + 2 :]
            return {rest[i]: rest[i + 1] for i in range(len(rest) - 1) if rest[i].startswith("--")}
    return None


def running_servers() -> list[RunningServer]:
    """Every Label Studio on this machine that craft-agent started (its data folder holds craft-agent's
    ``credentials.json``), found from the process list so that servers whose PID file is gone are found too.
    Servers of other users, whose folders are private, are not listed."""
    found = []
    for pid, argv in _processes():
        options = _server_options(argv)
        if options is None or "--data-dir" not in options or not pid_alive(pid):
            continue
        data_dir = Path(options["--data-dir"])
        if not (data_dir / "credentials.json").is_file():
            continue
        port_text = options.get("--port", "")
        port = int(port_text) if port_text.isdigit() else None
        info = ServerInfo.read(data_dir / "server.json")
        if info and info.pid == pid:
            url = info.public_url
        else:
            url = f"http://{_local_address(options.get('--internal-host', LOOPBACK))}:{port}"
        found.append(RunningServer(pid=pid, data_dir=data_dir, port=port, url=url))
    return sorted(found, key=lambda server: (str(server.data_dir), server.pid))


def _serves(pid: int, data_dir: Path) -> bool | None:
    """Whether process ``pid`` is a Label Studio serving ``data_dir``: guards against a PID file whose
    process is long gone and whose number now belongs to another program. None where it cannot be told."""
    if Path("/proc/self").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        argv = raw.rstrip(b"\0").decode(errors="replace").split("\0")
    else:
        found = next((command for candidate, command in _processes() if candidate == pid), None)
        if found is None:
            return None
        argv = found
    options = _server_options(argv)
    return options is not None and Path(options.get("--data-dir", "")).resolve() == data_dir.resolve()


def _port_holder(port: int) -> str | None:
    """Who listens on ``port`` on this machine, in words, when that can be told (Linux, own processes)."""
    for server in running_servers():
        if server.port == port:
            return (
                f"the craft-agent Label Studio of {server.workspace} (PID {server.pid}; stop it with "
                f"`{server.stop_command}`)"
            )
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for pid, argv in _processes():
        with contextlib.suppress(OSError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(descriptor) in sockets:
                        command = shlex.join(argv)
                        return f"PID {pid} ({command[:100]}{'...' if len(command) > 100 else ''})"
    return None


def _listening(address: str, port: int) -> bool:
    """True when something accepts connections on ``address:port``."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((address, port)) == 0


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_address(host: str) -> str:
    """Where this machine connects to a server listening on ``host``."""
    return LOOPBACK if host == ALL_INTERFACES or is_loopback(host) else host


def check_host(host: str) -> str:
    """``host`` when the local server can listen there: an IPv4 address of this machine (or a name of one),
    or 0.0.0.0 for every interface.

    Raises:
        AuditError: naming the host, for an IPv6 address or an address this machine does not have.
    """
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            raise AuditError(
                f"--host {host}: the local Label Studio listens on IPv4 only.",
                hint="use 127.0.0.1 (this machine only, the default), 0.0.0.0 (every interface) or one of this "
                "machine's IPv4 addresses.",
            )
    try:
        with socket.socket(socket.AF_INET) as sock:
            sock.bind((host, 0))
    except OSError as exc:
        raise AuditError(
            f"--host {host} is not an IPv4 address of this machine, so Label Studio cannot listen there ({exc}).",
            hint="use 127.0.0.1 (this machine only, the default), 0.0.0.0 (every interface) or an address `ip "
            "-4 addr` lists; or keep 127.0.0.1 and let colleagues in through an SSH tunnel (README: Sharing the "
            "audit with colleagues).",
        ) from exc
    return host


def public_url(host: str, port: int) -> str:
    """The URL colleagues use for a server listening on ``host``: this machine's name for 0.0.0.0."""
    return f"http://{socket.getfqdn() if host == ALL_INTERFACES else host}:{port}"


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
    """One Label Studio server process serving a workspace, on 127.0.0.1 unless ``host`` says otherwise.

    Args:
        settings: read for the workspace, port, credentials, database and install location.
        data_dir: the server's data folder; default ``<workspace>/label-studio``.
        host: the address to listen on (checked by :func:`check_host`); None: a running server's own, else
            127.0.0.1. It is not remembered: a server stopped and started again listens on 127.0.0.1 unless
            asked again.
        create: make the data folder and the credentials now; False only looks (``audit stop`` creates
            nothing where no server ever ran).
    """

    def __init__(
        self, settings: Settings, data_dir: Path | None = None, host: str | None = None, create: bool = True
    ) -> None:
        self.settings = settings
        self.workspace = settings.workspace.resolve()
        self.document_root = (settings.label_studio_document_root or settings.workspace).resolve()
        self.data_dir = (data_dir or self.workspace / SERVER_DIR).resolve()
        self.install = LabelStudioInstall(settings.label_studio_home)
        self.log_path = self.data_dir / "server.log"
        self.pid_path = self.data_dir / "server.json"
        self.state_path = self.data_dir / STATE_FILE
        self.requested_host = host
        self.host = host or LOOPBACK
        self._credentials = self._load_credentials() if create else None
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.public_url: str | None = None
        self._log_offset = 0

    def _load_credentials(self) -> Credentials:
        return Credentials.load_or_create(self.data_dir / "credentials.json", self.settings)

    @property
    def credentials(self) -> Credentials:
        """The admin login and API token (created on first use when the object was made with ``create=False``)."""
        if self._credentials is None:
            self._credentials = self._load_credentials()
        return self._credentials

    @property
    def stop_command(self) -> str:
        """The command that stops this server, naming the workspace as the settings name it."""
        return stop_command(self.settings.workspace)

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

    def restart_reason(self, info: ServerInfo) -> str | None:
        """Why the running server ``info`` must be restarted to be the one asked for; None when it already is."""
        if info.settings_version < SERVER_SETTINGS_VERSION:
            return (
                "it was started by an earlier craft-agent, and the current server settings (among them: the "
                "ML backend on 127.0.0.1 is allowed) apply only from a start"
            )
        if self.requested_host is not None and info.host != self.requested_host:
            return f"it listens on {info.host} and --host {self.requested_host} was asked for"
        asked = self.settings.label_studio_port
        if asked is not None and info.port != asked:
            return f"it runs on port {info.port} and port {asked} was asked for"
        return None

    def _port_taken(self, port: int, stored: bool, holder: str | None) -> AuditError:
        address = _local_address(self.host)
        previous = ServerInfo.read(self.pid_path)
        if previous and previous.alive and previous.port == port:
            return AuditError(
                f"port {port} on {address} is still held by this workspace's previous Label Studio "
                f"(PID {previous.pid}), which does not answer on {previous.url}.",
                hint=f"stop it with `{self.stop_command}` and start again.",
            )
        by = f": {holder}" if holder else ""
        find = "" if holder else f" (`ss -ltnp 'sport = :{port}'` names it)"
        other_port = f"`craft-agent audit serve --workspace {shlex.quote(str(self.settings.workspace))} --port N`"
        if stored and self.settings.label_studio_port is None:
            return AuditError(
                f"port {port} on {address}, where this workspace's Label Studio always runs (kept in "
                f"{self.state_path} so that its URL stays the same), is taken by another process{by}.",
                hint=f"stop that process{find}, or start on another port with {other_port}; that port is kept "
                "from then on (auditors' links change with it).",
            )
        return AuditError(
            f"port {port} on {address}, asked for with --port or CRAFT_LABEL_STUDIO_PORT, is taken by another "
            f"process{by}.",
            hint=f"stop that process{find}, or choose another port with {other_port}.",
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
                # Sign-up only through the organisation's invitation link (`audit invite`): the sign-up form
                # answers 403 without its token, which matters once the server listens beyond 127.0.0.1.
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                # The craft-agent ML backend (click-to-mask, `audit ml-backend`) listens on 127.0.0.1, and
                # Label Studio 1.23.2's SSRF protection refuses to register an ML backend in a loopback or
                # private subnet while its default banned subnets are on (measured: ML_BLOCK_LOCAL_IP=false
                # alone still gets "URL resolves to a reserved network address"). SSRF_PROTECTION_ENABLED stays
                # on. A server started before this line existed lacks it: SERVER_SETTINGS_VERSION makes
                # `audit serve` restart such a server.
                "USE_DEFAULT_BANNED_SUBNETS": "false",
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
        """Start the server (installing it first if needed) and wait until it answers; returns its local URL.

        Reuses the workspace's server when it is already running as asked; restarts it when it runs on
        another host or port than asked, or with settings older than :data:`SERVER_SETTINGS_VERSION`
        (``report`` says why). The port is ``label_studio_port`` when set, else the one this workspace's
        server had before, else a free one; it is kept for next time. A port that something else holds is
        refused, never swapped for another: auditors' links name it. The data folder is made private first
        (also fixing one an older version left readable).

        Raises:
            AuditError: when the host is not this machine's, the port is taken by another process (named
                when it can be told), or the server exits early, listens elsewhere than asked, or is not
                healthy within ``timeout_s``; the message quotes its log.
        """
        if self.requested_host is not None:
            check_host(self.requested_host)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_private(self.data_dir)
        existing = self.running()
        if existing:
            reason = self.restart_reason(existing)
            if reason is None:
                self.url, self.host, self.public_url = existing.url, existing.host, existing.public_url
                return existing.url
            if report:
                report(f"restarting this workspace's Label Studio (PID {existing.pid}): {reason}.")
            self.host = self.requested_host or existing.host
            self.stop()
        executable = self.install.ensure(report)
        stored = self.stored_port()
        port = self.settings.label_studio_port or stored or free_port()
        address = _local_address(self.host)
        if _listening(address, port):
            holder = _port_holder(port)
            deadline = time.monotonic() + (20 if holder is None else 0)
            while _listening(address, port) and time.monotonic() < deadline:  # a server of ours may be closing
                time.sleep(0.2)
            if _listening(address, port):
                raise self._port_taken(port, stored=port == stored, holder=holder or _port_holder(port))
        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host",
            self.host,
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
        url = f"http://{address}:{port}"
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
                    hint="free the port, or choose another one with `craft-agent audit serve --port N`.",
                )
            time.sleep(0.5)
        else:
            self.stop()
            raise AuditError(
                f"Label Studio did not answer on {url} within {timeout_s:.0f} s:\n{self.log_tail()}",
                hint=f"read {self.log_path}; on a busy machine give it longer.",
            )
        self.url = url
        self.public_url = url if is_loopback(self.host) else public_url(self.host, port)
        write_atomic(self.state_path, json.dumps({"port": port}).encode())
        record = {
            "pid": self.process.pid,
            "url": url,
            "public_url": self.public_url,
            "host": self.host,
            "document_root": str(self.document_root),
            "settings_version": SERVER_SETTINGS_VERSION,
        }
        write_atomic(self.pid_path, json.dumps(record).encode())
        make_private(self.data_dir)
        return url

    def stop(self, timeout_s: float = 20) -> bool:
        """Stop the server this object started, or the one serving this workspace's data folder: the PID
        file's process when it is that server, else one found in the process list (a PID file lost or left
        by a crash). Creates nothing.

        Returns:
            True when a server process was stopped.
        """
        pid = self.process.pid if self.process else self._serving_pid()
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

    def _serving_pid(self) -> int | None:
        """PID of a live Label Studio serving this data folder, whether or not this object started it."""
        info = ServerInfo.read(self.pid_path)
        if info and info.alive and _serves(info.pid, self.data_dir) is not False:
            return info.pid
        found = [server.pid for server in running_servers() if server.data_dir.resolve() == self.data_dir]
        return found[0] if found else None

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
