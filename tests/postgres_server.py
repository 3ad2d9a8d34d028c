"""A throwaway PostgreSQL server for the catalog's PostgreSQL test.

Used only when ``CRAFT_TEST_POSTGRES_URL`` is not set and the PostgreSQL server programs are on the
machine; the test skips with a message otherwise. The server listens on 127.0.0.1 only, lives in a
temporary folder, and is stopped by PID at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from craft_agent.localhost import free_port


def _as_service_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the 'postgres' system user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def available() -> str | None:
    """None when a temporary server can be started here, else the reason it cannot."""
    if not shutil.which("initdb") or not shutil.which("postgres"):
        return "PostgreSQL server programs (initdb, postgres) are not installed"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser to drop to the postgres user"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'craft-agent[postgres]')"
    return None


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_service_user(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")


@contextmanager
def temporary_server() -> Iterator[str]:
    """Start PostgreSQL in a fresh temporary folder; yield a SQLAlchemy URL; stop it by PID and clean up."""
    # Not under pytest's tmp_path: as root that folder is private, and the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="craft-test-pg-"))
    data = root / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    _run(["initdb", "-D", str(data), "-U", "craft", "--auth=trust", "-E", "UTF8"])
    port = free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen(
        _as_service_user(["postgres", "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root), "-F"]),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited early; see {root / 'postgres.log'}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("postgres did not start listening within 30 s")
        _run(["createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "craft", "catalog"])
        yield f"postgresql+psycopg://craft@127.0.0.1:{port}/catalog"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
