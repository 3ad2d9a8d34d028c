"""The auditors' loop around the server: stopping the right server, a port that stays, sharing with
colleagues (host, invitations, closed sign-up), the ML backend on 127.0.0.1, several auditors per task.

Everything runs against real Label Studio servers and real SQLite catalogs: the session's server (see
``tests/conftest.py``) where a configured server will do, and servers of the tests' own workspaces where the
workspace's own server is the point.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from typer.testing import CliRunner

from craft_agent.audit.label_studio import LabelStudioAudit
from craft_agent.audit.labeling import submitted_result, target_images
from craft_agent.audit.server import (
    SERVER_SETTINGS_VERSION,
    LocalLabelStudio,
    ServerInfo,
    check_host,
    running_servers,
    stop_command,
)
from craft_agent.audit.status import audit_status, auditor_agreement
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.cli import app
from craft_agent.errors import AuditError
from craft_agent.localhost import free_port, health
from craft_agent.models import AuditRecord, ChangeType, RLEMask, Triplet, TripletState, Verdict, triplet_id
from craft_agent.settings import Settings
from tests.conftest import LabelStudioForTests
from tests.data import draft_triplets_from_truth

runner = CliRunner()


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def _unique_email(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}@example.org"


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp), e.g. {"127.0.0.1"}."""
    found = set()
    with open("/proc/net/tcp", encoding="ascii") as lines:
        next(lines)
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
    return found


# -- no server needed ---------------------------------------------------------------------------------


def test_hosts_that_cannot_be_served_are_refused_by_name() -> None:
    assert check_host("127.0.0.1") == "127.0.0.1" and check_host("0.0.0.0") == "0.0.0.0"
    with pytest.raises(AuditError, match="--host ::1: the local Label Studio listens on IPv4 only"):
        check_host("::1")
    # TEST-NET-3: documentation addresses no machine has.
    with pytest.raises(
        AuditError, match=re.escape("--host 203.0.113.7 is not an IPv4 address of this machine")
    ) as info:
        check_host("203.0.113.7")
    assert "0.0.0.0" in (info.value.hint or "") and "SSH tunnel" in (info.value.hint or "")


def test_stop_in_a_folder_without_a_server_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = _cli("audit", "stop", "--json")
    assert list(tmp_path.iterdir()) == [], "`audit stop` created folders"
    answer = json.loads(done.stdout)
    # ./workspace does not exist: refused as by every command; servers of other sessions on this machine
    # may run, and then they are listed with their stop commands.
    assert done.exit_code == 2 and answer["error"].endswith("does not exist.")
    if answer.get("running"):
        assert answer["stopped"] is False and all(
            row["stop"].startswith("craft-agent audit stop") for row in answer["running"]
        )
    (tmp_path / "workspace").mkdir()
    Catalog(f"sqlite:///{tmp_path / 'workspace' / 'catalog.sqlite'}").close()
    found = json.loads(_cli("audit", "stop", "--json").stdout)
    assert found["stopped"] is False and not (tmp_path / "workspace" / "label-studio").exists()
    if not found.get("running"):
        text = _cli("audit", "stop")
        assert "no Label Studio server was running for workspace" in text.output and text.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["workspace"]


def test_stop_never_signals_a_process_that_only_inherited_a_stale_pid(tmp_path: Path) -> None:
    # A crash left server.json behind; its PID now belongs to some other program (here: a sleeper).
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        data = tmp_path / "ws" / "label-studio"
        data.mkdir(parents=True)
        record = {"pid": sleeper.pid, "url": "http://127.0.0.1:9", "document_root": str(tmp_path)}
        (data / "server.json").write_text(json.dumps(record))
        assert LocalLabelStudio(Settings(workspace=tmp_path / "ws"), create=False).stop() is False
        assert sleeper.poll() is None, "stop() killed a process that is not a Label Studio"
        assert not (data / "credentials.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_port_held_by_another_program_is_refused_naming_it(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    Catalog.from_settings(Settings(workspace=workspace)).close()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = time.monotonic()
        done = _cli("audit", "serve", "--workspace", str(workspace), "--port", str(port), "--detach", "--json")
        waited = time.monotonic() - started
    answer = json.loads(done.stdout)
    assert done.exit_code == 2, done.output
    assert f"port {port} on 127.0.0.1, asked for with --port" in answer["error"]
    assert f"PID {os.getpid()}" in answer["error"], "the holder (this test process) is not named"
    assert "--port N" in answer["fix"] and f"--workspace {workspace}" in answer["fix"]
    assert waited < 15, "a port held by a known other process is refused at once, not after a wait"
    assert not (workspace / "label-studio" / "server.json").exists()


def _record(auditor: str, triplet: Triplet, verdict: Verdict, minute: int, mask: RLEMask | None = None) -> AuditRecord:
    return AuditRecord(
        id=f"ls-1-{auditor}-{minute}",
        triplet_id=triplet.id,
        verdict=verdict,
        mask=mask,
        auditor=auditor,
        created_at=datetime(2026, 1, 1, 0, minute, tzinfo=UTC),
    )


def test_agreement_compares_each_pair_on_their_latest_audits() -> None:
    shown = np.zeros((20, 30), bool)
    shown[2:10, 3:13] = True  # 80 pixels
    grown = shown.copy()
    grown[10:12, 3:13] = True  # 100 pixels, the 80 inside
    target = Triplet(
        id=triplet_id("p" * 16, RLEMask.from_array(shown), ChangeType.APPEAR, "car"),
        pair_id="p" * 16,
        mask=RLEMask.from_array(shown),
        expressions=["the new car"],
        change_type=ChangeType.APPEAR,
        category="car",
    )
    nothing = Triplet(
        id=triplet_id("p" * 16, RLEMask.empty(20, 30), None, None),
        pair_id="p" * 16,
        mask=RLEMask.empty(20, 30),
        expressions=["the pool that was filled in"],
        change_type=None,
    )
    audits = [
        _record("ana", target, Verdict.REJECT, 1),  # replaced by ana's later audit of the same triplet
        _record("ana", target, Verdict.ACCEPT, 5),
        _record("bo", target, Verdict.FIX, 2, mask=RLEMask.from_array(grown)),
        _record("cy", target, Verdict.NEEDS_FIX, 3),
        _record("ana", nothing, Verdict.ACCEPT, 6),
        _record("bo", nothing, Verdict.ACCEPT, 7),
        _record("bo", target.model_copy(update={"id": "unknown"}), Verdict.ACCEPT, 8),  # not in the catalog
    ]
    rows = auditor_agreement(audits, {target.id: target, nothing.id: nothing})
    by_pair = {tuple(row["auditors"]): row for row in rows}
    assert list(by_pair) == [("ana", "bo"), ("ana", "cy"), ("bo", "cy")]
    # ana kept the shown mask, bo grew it to 100 px: IoU 0.8; both left the no-target triplet empty: 1.0.
    assert by_pair[("ana", "bo")] == {
        "auditors": ["ana", "bo"],
        "shared_tasks": 2,
        "mean_iou": round((0.8 + 1.0) / 2, 4),
        "same_verdict": 1.0,  # accept and accept-with-edits are the same page verdict
    }
    assert by_pair[("ana", "cy")] == {"auditors": ["ana", "cy"], "shared_tasks": 1, "mean_iou": 1.0, "same_verdict": 0}
    assert by_pair[("bo", "cy")]["mean_iou"] == 0.8 and by_pair[("bo", "cy")]["same_verdict"] == 0
    assert auditor_agreement(audits[:2], {target.id: target}) == [], "one auditor agrees with nobody"


# -- the session's server (configured, as an existing server would be) -------------------------------


class _ClickToMaskStub(http.server.BaseHTTPRequestHandler):
    """Answers what Label Studio asks an ML backend when it is connected (/health, /setup)."""

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer({"status": "UP", "model_class": "ClickToMask"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer({"model_version": "stub", "results": []})

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def backend_on_loopback() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ClickToMaskStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_ml_backend_on_127_0_0_1_can_be_connected(
    label_studio: LabelStudioForTests, backend_on_loopback: str
) -> None:
    # Label Studio 1.23.2 refuses this by default ("URL resolves to a reserved network address").
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = client.projects.create(title=f"ml backend on loopback {time.monotonic_ns()}")
    assert project.id is not None
    try:
        backend = client.ml.create(url=backend_on_loopback, project=project.id, title="click-to-mask")
        assert backend.id is not None and backend.url == backend_on_loopback
    finally:
        client.projects.delete(id=project.id)


def _sign_up(url: str, path: str, email: str, password: str) -> int:
    """Sign up through the web form as a browser does (CSRF cookie and all); the answer's status."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as browser:
        browser.get(path)
        form = {"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies.get("csrftoken") or ""}
        return browser.post(path, data=form, headers={"Referer": url + path}).status_code


def _log_in(url: str, email: str, password: str) -> bool:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as browser:
        browser.get("/user/login/")
        form = {"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies.get("csrftoken") or ""}
        answer = browser.post("/user/login/", data=form, headers={"Referer": url + "/user/login/"})
        return answer.status_code == 302  # a wrong password gets the form again (200)


def test_invite_lets_exactly_the_invited_in(label_studio: LabelStudioForTests, tmp_path: Path) -> None:
    env = {"CRAFT_LABEL_STUDIO_URL": label_studio.url, "CRAFT_LABEL_STUDIO_TOKEN": label_studio.token}
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    emails = lambda: {(u.email or "").lower() for u in client.users.list()}  # noqa: E731

    # Sign-up without the invitation link stays closed.
    stranger = _unique_email("stranger")
    assert _sign_up(label_studio.url, "/user/signup/", stranger, "a-long-password-1") == 403
    assert stranger not in emails()

    ana = _unique_email("Ana")
    done = _cli("audit", "invite", ana, "--workspace", str(tmp_path / "w"), env=env)
    assert done.exit_code == 0, done.output
    link = re.search(r"(http://\S+/user/signup/\?token=\S+)", done.output)
    assert link and f"log in at {label_studio.url}/user/login/" in done.output
    assert ana.lower() in done.output and "password of their own" in done.output
    for secret in (label_studio.token, label_studio.server.credentials.password):
        assert secret not in done.output
    assert not (tmp_path / "w").exists()

    path = link.group(1).removeprefix(label_studio.url)
    assert _sign_up(label_studio.url, path, ana.lower(), "ana-chose-this-1") == 302
    assert ana.lower() in emails() and _log_in(label_studio.url, ana.lower(), "ana-chose-this-1")
    assert not _log_in(label_studio.url, ana.lower(), "not-her-password")

    again = json.loads(_cli("audit", "invite", ana, "--json", env=env).stdout)
    assert again["already_member"] is True and again["email"] == ana.lower()

    # A reset voids the old link; the new one works.
    reset = json.loads(_cli("audit", "invite", _unique_email("bo"), "--reset", "--json", env=env).stdout)
    assert reset["link_reset"] is True and reset["signup_url"] != link.group(1)
    late = _unique_email("late")
    assert _sign_up(label_studio.url, path, late, "a-long-password-1") == 403
    new_path = reset["signup_url"].removeprefix(label_studio.url)
    assert _sign_up(label_studio.url, new_path, late, "a-long-password-1") == 302 and late in emails()
    assert label_studio.token not in json.dumps(reset)

    bad = _cli("audit", "invite", "not-an-address", "--json", env=env)
    assert bad.exit_code == 2 and "'not-an-address' is not an e-mail address" in json.loads(bad.stdout)["error"]


def _annotate(client: LabelStudio, task_id: int, result: list[dict[str, Any]], user: int | None = None) -> int:
    extra = {"completed_by": user} if user is not None else {}
    annotation = client.annotations.create(id=task_id, result=result, lead_time=3.0, **extra)
    assert annotation.id is not None
    return int(annotation.id)


def test_overlap_gives_each_task_to_several_auditors_and_status_reports_their_agreement(
    label_studio: LabelStudioForTests, audit_workspace: Path
) -> None:
    settings = label_studio.settings(audit_workspace)
    catalog = Catalog.from_settings(settings)
    triplets = draft_triplets_from_truth(catalog, ImageStore(audit_workspace), audit_workspace / "src", pairs=1)
    catalog.close()
    env = {
        "CRAFT_LABEL_STUDIO_URL": label_studio.url,
        "CRAFT_LABEL_STUDIO_TOKEN": label_studio.token,
        "CRAFT_LABEL_STUDIO_IMAGES": "local",
        "CRAFT_LABEL_STUDIO_DOCUMENT_ROOT": str(label_studio.root),
    }
    pushed = _cli("audit", "push", "--workspace", str(audit_workspace), "--overlap", "2", "--json", env=env)
    assert pushed.exit_code == 0, pushed.output
    summary = json.loads(pushed.stdout)
    assert summary["overlap"] == 2 and summary["imported"] == len(triplets)
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = client.projects.get(id=summary["project_id"])
    assert (project.maximum_annotations, project.overlap_cohort_percentage) == (2, 100)
    # A later push without --overlap keeps it; the text output says who decides.
    again = _cli("audit", "push", "--workspace", str(audit_workspace), env=env)
    assert "each task goes to 2 auditors" in again.output and "'first'" in again.output
    assert client.projects.get(id=summary["project_id"]).maximum_annotations == 2

    backend = LabelStudioAudit(settings)
    index = backend.task_index(summary["project_id"])
    email = _unique_email("second")
    second = client.users.create(username=email, email=email)
    assert second.id is not None and second.email == email
    admin = label_studio.server.credentials.username
    disputed = next(t for t in triplets if not t.is_no_target and t.change_type is ChangeType.APPEAR)
    agreed = next(t for t in triplets if not t.is_no_target and t.id != disputed.id)
    no_target = next(t for t in triplets if t.is_no_target)
    painted = disputed.mask.to_array().copy()
    painted[: painted.shape[0] // 4, :] = True  # the second auditor paints more

    # The admin audits first, the second auditor later; the first submitted decides under policy "first".
    task = index[disputed.id][0].task_id
    _annotate(client, task, submitted_result(disputed, "reject"))
    assert client.tasks.get(id=str(task)).is_labeled is False, "one annotation of two: the task stays in the queue"
    time.sleep(0.05)
    repainted = submitted_result(disputed, "accept", painted={target_images(disputed.change_type)[0]: painted})
    _annotate(client, task, repainted, user=int(second.id))
    assert client.tasks.get(id=str(task)).is_labeled is True
    for triplet in (agreed, no_target):
        _annotate(client, index[triplet.id][0].task_id, submitted_result(triplet, "accept"))
        _annotate(client, index[triplet.id][0].task_id, submitted_result(triplet, "accept"), user=int(second.id))

    with Catalog.from_settings(settings) as catalog:
        pulled = backend.pull(catalog)
        assert (pulled.annotations, pulled.new_records, pulled.failures) == (6, 6, [])
        decided = catalog.get_triplet(disputed.id)
        records = {r.auditor: r for r in catalog.audits_for(disputed.id)}
        assert decided.state is TripletState.REJECTED and decided.audit_id == records[admin].id
        assert records[second.email].verdict is Verdict.FIX
        assert catalog.get_triplet(agreed.id).state is TripletState.ACCEPTED
        status = audit_status(catalog)
    expected_iou = RLEMask.from_array(painted).iou(disputed.mask)
    assert 0 < expected_iou < 0.99
    (pair,) = status["agreement"]
    assert sorted(pair["auditors"]) == sorted([admin, second.email])
    assert pair["shared_tasks"] == 3 and pair["same_verdict"] == round(2 / 3, 4)
    assert pair["mean_iou"] == round((expected_iou + 1.0 + 1.0) / 3, 4)

    shown = _cli("audit", "status", "--workspace", str(audit_workspace), "--json", env=env)
    assert json.loads(shown.stdout)["agreement"] == [pair]
    text = _cli("audit", "status", "--workspace", str(audit_workspace), env=env)
    assert f"3 shared task(s), mean mask IoU {pair['mean_iou']:.3f}, same verdict 66.7 %" in text.output

    # Back to one auditor per task, set explicitly.
    one = _cli("audit", "push", "--workspace", str(audit_workspace), "--overlap", "1", "--json", env=env)
    assert json.loads(one.stdout)["overlap"] == 1
    assert client.projects.get(id=summary["project_id"]).maximum_annotations == 1


# -- the workspace's own server ------------------------------------------------------------------------


def test_own_server_keeps_its_port_shares_on_request_restarts_when_outdated_and_stops_by_name(
    tmp_path: Path, label_studio: LabelStudioForTests, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A path with a space: the printed stop command must survive a shell.
    workspace = tmp_path / "audit ws"
    Catalog.from_settings(Settings(workspace=workspace)).close()
    port = free_port()
    served = _cli("audit", "serve", "--workspace", str(workspace), "--port", str(port), "--detach", "--json")
    data = workspace / "label-studio"
    try:
        assert served.exit_code == 0, served.output
        first = json.loads(served.stdout)
        assert (first["url"], first["port"], first["host"]) == (f"http://127.0.0.1:{port}", port, "127.0.0.1")
        assert first["stop"] == f"craft-agent audit stop --workspace {shlex.quote(str(workspace))}"
        assert shlex.split(first["stop"])[-1] == str(workspace)
        assert _listening_addresses(port) == {"127.0.0.1"}
        text = _cli("audit", "serve", "--workspace", str(workspace), "--detach")
        assert f"stop it with `{first['stop']}`" in text.stdout
        # Invitations name the tunnel while the server listens on 127.0.0.1 only.
        local = _cli("audit", "invite", "ana@example.org", "--workspace", str(workspace))
        assert local.exit_code == 0, local.output
        assert f"{first['url']}/user/signup/?token=" in local.stdout and "listens on 127.0.0.1 only" in local.stdout
        assert f"ssh -N -L {port}:127.0.0.1:{port}" in local.stdout
        secrets = json.loads((data / "credentials.json").read_text())
        assert secrets["token"] not in local.output and secrets["password"] not in local.output

        # Another workspace's server asking for the same port is told who holds it.
        with pytest.raises(AuditError, match=re.escape(f"port {port} on 127.0.0.1, asked for")) as info:
            LocalLabelStudio(Settings(workspace=tmp_path / "other", label_studio_port=port)).start()
        assert f"the craft-agent Label Studio of {workspace}" in str(info.value) and first["stop"] in str(info.value)

        # A server started by an earlier craft-agent (its PID file has no settings version) is restarted.
        record = json.loads((data / "server.json").read_text())
        del record["settings_version"]
        (data / "server.json").write_text(json.dumps(record))
        restarted = _cli("audit", "serve", "--workspace", str(workspace), "--detach", "--json")
        assert restarted.exit_code == 0, restarted.output
        second = json.loads(restarted.stdout)
        assert "earlier craft-agent" in restarted.stderr and second["already_running"] is False
        assert (second["url"], second["pid"] != first["pid"]) == (first["url"], True)
        info_now = ServerInfo.read(data / "server.json")
        assert info_now is not None and info_now.settings_version == SERVER_SETTINGS_VERSION

        # Shared with colleagues: every interface, the same port, a loud note; still reachable here.
        shared = _cli("audit", "serve", "--workspace", str(workspace), "--host", "0.0.0.0", "--detach", "--json")
        assert shared.exit_code == 0, shared.output
        third = json.loads(shared.stdout)
        assert (third["host"], third["port"], third["url"]) == ("0.0.0.0", port, first["url"])
        assert third["public_url"] == f"http://{socket.getfqdn()}:{port}"
        assert _listening_addresses(port) == {"0.0.0.0"} and health(third["url"])
        assert "listens beyond this machine" in shared.stderr and "audit invite EMAIL" in shared.stderr
        assert "reverse proxy" in shared.stderr
        remote = json.loads(_cli("audit", "invite", "ana@example.org", "--workspace", str(workspace), "--json").stdout)
        assert remote["signup_url"].startswith(third["public_url"] + "/user/signup/?token=")
        assert remote["local_only"] is False
        # Without --host, serve leaves a running server where it listens.
        kept = json.loads(_cli("audit", "serve", "--workspace", str(workspace), "--detach", "--json").stdout)
        assert kept["already_running"] is True and kept["host"] == "0.0.0.0"

        # `audit stop` for a workspace without a server lists the ones that run, with their stop commands.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        missed = _cli("audit", "stop", "--json")
        assert missed.exit_code == 2 and list(elsewhere.iterdir()) == []
        listed = {row["workspace"]: row for row in json.loads(missed.stdout)["running"]}
        assert listed[str(workspace)] == {
            "workspace": str(workspace),
            "url": third["public_url"],
            "pid": third["pid"],
            "stop": first["stop"],
        }
        assert str(label_studio.root) in listed, "the session's server is a craft-agent server too"
        human = _cli("audit", "stop")
        assert human.exit_code == 2 and f"`{first['stop']}`" in human.stderr and str(third["pid"]) in human.stderr

        # The named server is found even when its PID file is gone.
        (data / "server.json").unlink()
        assert [s.pid for s in running_servers() if s.workspace == workspace] == [third["pid"]]
        stopped = _cli("audit", "stop", "--workspace", str(workspace), "--json")
        assert json.loads(stopped.stdout) == {"stopped": True}
        assert not any(s.workspace == workspace for s in running_servers())
        assert not health(third["url"])

        # Served again without --port: the same port (auditors' links keep working), back on 127.0.0.1.
        back = json.loads(_cli("audit", "serve", "--workspace", str(workspace), "--detach", "--json").stdout)
        assert (back["url"], back["host"]) == (first["url"], "127.0.0.1")
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        LocalLabelStudio(Settings(workspace=workspace), create=False).stop()
    assert stop_command(workspace) == first["stop"]
