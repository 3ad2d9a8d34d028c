"""``bench reliability``'s Label Studio part: the local server killed mid-push and mid-pull, and its exposure.

The workspace's own server (as ``craft-agent audit serve`` starts it) is killed with SIGKILL while a push
is sending tasks one batch at a time, and started again as a user would; the push must carry on by itself
and leave every task once. For the pull, the server is killed while annotations wait to be read, the pull
starts, and the server comes back; every audit must arrive. Then what the server exposes: its listening
sockets, signup, the API without a token, and the modes of its files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.audit.labeling import submitted_result
from craft_agent.audit.server import LocalLabelStudio, ServerInfo
from craft_agent.catalog import Catalog
from craft_agent.models import TripletState
from craft_agent.settings import Settings

SECRET_STORES = frozenset({"credentials.json", "label_studio.sqlite3", ".env"})
"""Files in the server's private folder whose job is to hold its credentials (checked private instead)."""


def kill_server(server: LocalLabelStudio) -> None:
    """SIGKILL the server's whole process group, as a crash or an OOM kill would, and wait for it to go."""
    info = ServerInfo.read(server.pid_path)
    pid = server.process.pid if server.process else info.pid if info else None
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if server.process is not None:
        server.process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (Linux ``/proc/net/tcp*``), e.g. ``127.0.0.1``."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                if width == 8:
                    found.append(".".join(str(b) for b in raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                    found.append(":".join(b"".join(words).hex()[i : i + 4] for i in range(0, 32, 4)))
    return found


def is_loopback(address: str) -> bool:
    return (
        address.startswith("127.")
        or address in ("0000:0000:0000:0000:0000:0000:0000:0001",)
        or (address.startswith("0000:0000:0000:0000:0000:ffff:7f"))
    )


def signup_refused(url: str, client: Any) -> bool:
    """Try to sign up a stranger through the web form (with its CSRF token, as a browser would); True when
    no such user exists afterwards."""
    email = f"stranger-{int(time.time())}@example.org"
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as browser:
        page = browser.get("/user/signup/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        form = {"email": email, "password": "a-long-password-1", "allow_newsletters": "false"}
        if token:
            form["csrfmiddlewaretoken"] = token.group(1)
        browser.post("/user/signup/", data=form, headers={"Referer": f"{url}/user/signup/"})
    return all(getattr(user, "email", None) != email for user in client.users.list())


def private_files(folder: Path) -> bool:
    """The server's folder is the owner's alone (0700) and so is every file directly in it (0600)."""
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        return False
    return all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in folder.iterdir() if p.is_file())


def label_studio_faults(cli: Any, scratch: Path, quick: bool, secrets: list[str]) -> dict[str, Any]:
    """Kill the server mid-push and mid-pull; then check its exposure. Appends its credentials to ``secrets``.

    Uses the workspace ``generate-reference`` drafted by the generate kills (copied).
    """
    workspace = scratch / "label-studio-workspace"
    shutil.copytree(scratch / "generate-reference", workspace)
    settings = Settings(workspace=workspace)
    catalog = Catalog.from_settings(settings)
    drafted = [t for t in catalog.iter_triplets()]
    server = LocalLabelStudio(settings)
    url = server.start(timeout_s=600)
    secrets += [server.credentials.token, server.credentials.password]
    try:
        backend = LabelStudioAudit(settings)
        project_id = backend.ensure_project()
        outcome: dict[str, Any] = {}

        def push() -> None:
            try:
                # one task per batch and a short pause keep the push going while the server is down
                outcome["summary"] = backend.push(
                    catalog, batch_size=1, retry_s=600, progress=lambda done: time.sleep(0.3)
                )
            except Exception as exc:  # reported in the figures
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        worker = threading.Thread(target=push)
        worker.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and catalog.triplet_counts()["queued_for_audit"] < 2:
            time.sleep(0.05)
        kill_server(server)
        killed_mid_push = worker.is_alive()
        server = LocalLabelStudio(settings)
        restarted_url = server.start(timeout_s=600)
        worker.join(timeout=900)
        tasks = backend.export_tasks(project_id, all_tasks=True)
        ids = [t["data"]["triplet_id"] for t in tasks]
        push_figures = {
            "tasks": len(set(ids) & {t.id for t in drafted}),
            "expected": len(drafted),
            "duplicates": len(ids) - len(set(ids)),
            "killed_mid_push": killed_mid_push,
            "same_url_after_restart": restarted_url == url,
            "error": outcome.get("error"),
        }

        # audits waiting on the server, the server killed, the pull started, the server back
        audited = [t for t in drafted if not t.is_no_target][: 3 if quick else 8]
        by_id = {t["data"]["triplet_id"]: t["id"] for t in tasks}
        for triplet in audited:
            backend.client.annotations.create(
                id=by_id[triplet.id], result=submitted_result(triplet, "accept", None, None, None, None), lead_time=5.0
            )
        kill_server(server)
        pulled: dict[str, Any] = {}

        def pull() -> None:
            try:
                pulled["summary"] = backend.pull(catalog, retry_s=600)
            except Exception as exc:  # reported in the figures
                pulled["error"] = f"{type(exc).__name__}: {exc}"

        worker = threading.Thread(target=pull)
        worker.start()
        time.sleep(2.0)
        waited = worker.is_alive()
        server = LocalLabelStudio(settings)
        server.start(timeout_s=600)
        worker.join(timeout=900)
        accepted = sum(catalog.get_triplet(t.id).state is TripletState.ACCEPTED for t in audited)
        pull_figures = {
            "audits": accepted,
            "expected": len(audited),
            "waited_for_the_server": waited,
            "error": pulled.get("error"),
        }

        port = int(url.rsplit(":", 1)[1])
        addresses = listening_addresses(port)
        anonymous = httpx.get(f"{url}/api/projects/", timeout=30)
        security = {
            "listening_on": addresses,
            "loopback_only": bool(addresses) and all(is_loopback(a) for a in addresses),
            "signup_closed": signup_refused(url, backend.client),
            "anonymous_api_refused": anonymous.status_code in (401, 403),
            "private_files": private_files(server.data_dir),
        }
    finally:
        server.stop()
        catalog.close()
    return {"restart": {"push": push_figures, "pull": pull_figures}, "security": security}
