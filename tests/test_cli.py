from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.data import make_bad_corpus, make_folder_source, unprivileged_command


def craft(
    *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRAFT_")}
    full_env.update(env or {})
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "craft_agent", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def test_ingest_exit_status_and_json_on_partial_failure(tmp_path: Path) -> None:
    prefix = unprivileged_command()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced for the unreadable case")
    src, cases, good = make_bad_corpus(tmp_path, unreadable=True)
    done = craft("ingest", str(src), "--workspace", str(tmp_path / "w"), "--json", prefix=prefix)
    assert done.returncode == 1, done.stderr  # completed, some inputs failed
    summary = json.loads(done.stdout)
    assert summary["ingested"] == good and len(summary["failed"]) == len(cases)
    assert all(set(f) == {"input", "error"} for f in summary["failed"])
    locked = [f for f in summary["failed"] if f["input"].endswith("post/locked.png")]
    assert len(locked) == 1 and "permission denied" in locked[0]["error"] and "chmod" in locked[0]["error"]
    human = craft("ingest", str(src), "--workspace", str(tmp_path / "w"))
    assert human.returncode == 1 and "already in the catalog" in human.stdout and "Fix:" in human.stdout


def test_unusable_source_exits_2_with_json_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = craft("ingest", str(tmp_path / "empty"), "-w", str(tmp_path / "w"), "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"].startswith("no image pairs found")
    bad_option = craft("ingest", str(tmp_path / "empty"), "--domain", "moon")
    assert bad_option.returncode == 2 and "rs or ns" in bad_option.stderr


def test_workspace_from_environment_and_catalog_info(tmp_path: Path) -> None:
    src = make_folder_source(tmp_path / "src", pairs=2)
    env = {"CRAFT_WORKSPACE": str(tmp_path / "env_ws"), "CRAFT_DEFAULT_DOMAIN": "ns"}
    assert craft("ingest", str(src), "--json", env=env).returncode == 0
    info = json.loads(craft("catalog", "info", "--json", env=env).stdout)
    assert info["pairs"] == 2 and info["pairs_by_domain"] == {"ns": 2}
    assert (tmp_path / "env_ws" / "catalog.sqlite").is_file()


class _ModelsHandler(http.server.BaseHTTPRequestHandler):
    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _ModelsHandler.seen_auth.append(self.headers.get("Authorization", ""))
        body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def models_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_doctor_reports_offline_defaults_reachable_and_broken_services(tmp_path: Path, models_server: str) -> None:
    offline = craft("doctor", "--workspace", str(tmp_path / "w"), "--json")
    assert offline.returncode == 0, offline.stdout
    checks = {c["name"]: c for c in json.loads(offline.stdout)["checks"]}
    assert checks["LLM endpoint"]["status"] == "offline" and "CRAFT_LLM_BASE_URL" in checks["LLM endpoint"]["fix"]
    assert checks["SAM checkpoint"]["status"] == "offline"
    assert checks["catalog"]["status"] == "ok" and checks["python packages"]["status"] == "ok"
    assert "torchvision" in checks["python packages"]["detail"]

    secret = "sk-test-secret-value"
    env = {
        "CRAFT_LLM_BASE_URL": models_server,
        "CRAFT_LLM_API_KEY": secret,
        "CRAFT_SAM_CHECKPOINT": str(tmp_path / "missing.pth"),
        "CRAFT_LABEL_STUDIO_URL": "http://127.0.0.1:9",  # discard port: nothing listens
    }
    mixed = craft("doctor", "--workspace", str(tmp_path / "w"), "--json", env=env)
    assert mixed.returncode == 1
    checks = {c["name"]: c for c in json.loads(mixed.stdout)["checks"]}
    assert checks["LLM endpoint"]["status"] == "ok"
    assert _ModelsHandler.seen_auth[-1] == f"Bearer {secret}"
    assert checks["SAM checkpoint"]["status"] == "error" and "missing.pth" in checks["SAM checkpoint"]["detail"]
    assert checks["Label Studio"]["status"] == "error" and checks["Label Studio"]["fix"]
    assert secret not in mixed.stdout and secret not in mixed.stderr


def test_schema_and_version_commands(tmp_path: Path) -> None:
    done = craft("schema", "--out", str(tmp_path / "schema"), "--json")
    assert done.returncode == 0
    written = json.loads(done.stdout)["written"]
    assert {Path(p).name for p in written} == {
        "ImagePair.schema.json",
        "ChangeCandidate.schema.json",
        "Triplet.schema.json",
        "AuditRecord.schema.json",
    }
    triplet = json.loads((tmp_path / "schema" / "Triplet.schema.json").read_text())
    assert "state" in triplet["properties"]
    assert craft("--version").stdout.startswith("craft-agent ")
