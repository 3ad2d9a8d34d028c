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

from craft_agent.errors import ConfigError
from tests.data import (
    audit_through_the_catalog,
    draft_triplets_from_truth,
    make_bad_corpus,
    make_folder_source,
    make_geotiff_source,
    unprivileged_command,
)


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


def test_reading_commands_refuse_a_missing_workspace_and_name_the_ones_nearby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from craft_agent.cli import app
    from craft_agent.settings import Settings, require_workspace

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CRAFT_"):
            monkeypatch.delenv(name)
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(make_folder_source(tmp_path / "src", pairs=1)), "-w", "ws"])
    assert ingested.exit_code == 0, ingested.output
    (tmp_path / "not_a_workspace").mkdir()
    reading = [
        ["candidates"],
        ["generate"],
        ["catalog", "info"],
        ["catalog", "remove", "--pair", "0123456789abcdef"],
        ["audit", "status"],
        ["audit", "pull"],
        ["audit", "push"],
        ["audit", "stop"],
        ["audit", "serve"],
        ["export", "--out", "exported", "--format", "mtrefseg"],
    ]
    for command in reading:
        done = runner.invoke(app, [*command, "-w", "wss", "--json"])
        assert done.exit_code == 2, (command, done.output)
        answer = json.loads(done.stdout)
        assert answer["error"] == "workspace wss does not exist.", command
        assert "workspaces found nearby: ws;" in answer["fix"], command
    stop = runner.invoke(app, ["flows", "stop", "-w", "wss"])  # no --json: the error in words, not a traceback
    assert stop.exit_code == 2 and "error: workspace wss does not exist." in stop.stderr, stop.output
    assert not (tmp_path / "wss").exists() and not (tmp_path / "exported").exists()
    empty = runner.invoke(app, ["catalog", "info", "-w", "not_a_workspace"])
    assert empty.exit_code == 2 and "holds no catalog (catalog.sqlite)" in empty.stderr
    assert not (tmp_path / "not_a_workspace" / "catalog.sqlite").exists()
    default = runner.invoke(app, ["candidates", "--json"])  # no -w: ./workspace, which does not exist either
    assert default.exit_code == 2 and json.loads(default.stdout)["error"] == "workspace workspace does not exist."
    info = runner.invoke(app, ["catalog", "info", "-w", "ws", "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["pairs"] == 1
    # A catalog in PostgreSQL says nothing about the folder: no file is looked for.
    require_workspace(Settings(workspace=tmp_path / "wss", catalog_url="postgresql+psycopg://user@db.invalid/craft"))
    with pytest.raises(ConfigError, match="does not exist") as refused:
        require_workspace(Settings(workspace=tmp_path / "far" / "away"))
    assert refused.value.hint is not None and "workspaces found nearby: ws;" in refused.value.hint


def test_export_to_a_file_validate_of_nothing_and_a_bad_policy_exit_2_with_a_clear_message(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    assert craft("ingest", str(make_folder_source(tmp_path / "src", pairs=1)), "-w", str(workspace)).returncode == 0
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not an export folder")
    export = craft("export", "-w", str(workspace), "--out", str(a_file), "--format", "mtrefseg")
    assert export.returncode == 2 and "Traceback" not in export.stderr
    assert f"the export destination {a_file} is a file, not a folder." in " ".join(export.stderr.split())
    assert a_file.read_text() == "not an export folder"
    missing = craft("validate", str(tmp_path / "nothing_here"), "--json")
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["error"] == f"{tmp_path / 'nothing_here'} does not exist."
    policy = craft("audit", "pull", "-w", str(workspace), "--policy", "most", "--json")
    assert policy.returncode == 2
    message = json.loads(policy.stdout)["error"]
    assert message == "invalid configuration: audit_policy (option or CRAFT_AUDIT_POLICY) is 'most', not one of: " + (
        "first, majority, two_agree."
    )
    assert "pydantic" not in policy.stdout and "validation error" not in policy.stdout


def test_ingest_warns_about_a_guessed_band_order_and_bands_replace_those_pairs(tmp_path: Path) -> None:
    src = make_geotiff_source(tmp_path / "planet")  # 4-band GeoTIFFs without colour interpretation
    workspace = str(tmp_path / "ws")
    first = craft("ingest", str(src), "-w", workspace, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["ingested"] == 1 and len(summary["warnings"]) == 1
    warning = summary["warnings"][0]
    assert warning["input"] == str(src / "pre" / "site.tif")
    assert "read as R, G, B, NIR" in warning["warning"] and "--bands 3,2,1" in warning["warning"]
    assert "warning:" in first.stderr and "--bands 3,2,1" in first.stderr  # on the terminal too
    again = craft("ingest", str(src), "-w", workspace, "--bands", "3,2,1")
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert "1 pair(s) ingested, 0 already in the catalog, 1 earlier pair(s) of the same files replaced" in said
    assert "warning:" not in again.stderr
    info = json.loads(craft("catalog", "info", "-w", workspace, "--json").stdout)
    assert (info["pairs"], info["scene_groups"]) == (1, 1)


def test_catalog_remove_refuses_audited_pairs_unless_forced(tmp_path: Path) -> None:
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.settings import Settings

    workspace = tmp_path / "ws"
    catalog = Catalog.from_settings(Settings(workspace=workspace))
    triplets = draft_triplets_from_truth(catalog, ImageStore(workspace), tmp_path / "src", pairs=2, size=128)
    first_pair = triplets[0].pair_id
    audit_through_the_catalog(catalog, [t for t in triplets if t.pair_id == first_pair])
    audited = sum(1 for t in catalog.iter_triplets() if t.state.value in ("accepted", "fixed", "rejected"))
    other_pair = next(p.id for p in catalog.iter_pairs() if p.id != first_pair)
    other_triplets = sum(1 for t in triplets if t.pair_id == other_pair)
    catalog.close()
    assert audited > 0

    neither = craft("catalog", "remove", "-w", str(workspace))
    assert neither.returncode == 2 and "--pair or --source" in neither.stderr
    unaudited = craft("catalog", "remove", "-w", str(workspace), "--pair", other_pair, "--json")
    assert unaudited.returncode == 0, unaudited.stdout
    assert json.loads(unaudited.stdout) == {
        "pairs": 1, "triplets": other_triplets, "audited_triplets": 0, "candidates": 0, "audits": 0,
    }  # fmt: skip
    source = str(tmp_path / "src" / "examples")
    refused = craft("catalog", "remove", "-w", str(workspace), "--source", source, "--json")
    assert refused.returncode == 2
    answer = json.loads(refused.stdout)
    assert (
        answer["error"].startswith(f"{audited} triplet(s) of pair {first_pair} are audited")
        and "--force" in answer["fix"]
    )
    forced = craft("catalog", "remove", "-w", str(workspace), "--source", source, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"{audited} of the removed triplets were audited (--force)" in forced.stdout
    info = json.loads(craft("catalog", "info", "-w", str(workspace), "--json").stdout)
    assert (info["pairs"], sum(info["triplets"].values()), info["audits"]) == (0, 0, 0)
    nothing = craft("catalog", "remove", "-w", str(workspace), "--source", source)
    assert nothing.returncode == 2 and "no pair in the catalog was ingested from" in nothing.stderr
