"""This machine: ports on 127.0.0.1 for the local services craft-agent starts (Label Studio, a local LLM), and
whether a process that left something behind (a run, a staging folder) is still alive."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def host_name() -> str:
    """This machine's name, stored beside a PID so the PID is only ever checked on the machine it belongs to."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (also one we may not signal; not a zombie)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        # A killed process whose parent has not reaped it yet is a zombie: it will never finish its work.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): existence is all we can tell
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def health(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET <url>/health`` answers 200 (the local Label Studio and Prefect servers both have it)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
