"""The fault-injection bench, CI-sized, through the command line: the figures that must be zero are."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from craft_agent.bench.label_studio_faults import is_loopback, listening_addresses
from craft_agent.bench.reliability import FaultyModel, bad_inputs
from tests.test_cli import craft


def test_bench_reliability_quick_prints_zeros_where_zeros_are_due(tmp_path: Path) -> None:
    done = craft(
        "bench", "reliability", "--quick", "--out", str(tmp_path / "r.json"), "--scratch", str(tmp_path / "s"), "--json"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report == json.loads((tmp_path / "r.json").read_text())
    kills = report["kills"]
    for stage in ("generate", "ingest"):
        figures = kills[stage]
        assert figures["trials"] >= 1 and figures["interrupted"] >= 1, figures
        assert (figures["lost"], figures["duplicates"], figures["corrupt"]) == (0, 0, 0), figures
        assert figures["resumed"] == figures["trials"], figures
    assert kills["generate"]["reference_triplets"] > 0
    export = kills["export"]
    assert export["trials"] >= 1 and export["complete_looking_partials"] == export["leftover_staging"] == 0, export
    assert export["failed_reruns"] == 0

    push = report["label_studio_restart"]["push"]
    assert push["killed_mid_push"] and push["same_url_after_restart"] and push["error"] is None, push
    assert push["tasks"] == push["expected"] == kills["generate"]["reference_triplets"] and push["duplicates"] == 0
    pull = report["label_studio_restart"]["pull"]
    assert pull["audits"] == pull["expected"] > 0 and pull["waited_for_the_server"] and pull["error"] is None, pull

    llm = report["llm_faults"]
    assert llm["fault_rate"] == 0.3 and llm["terminal"] == llm["pairs"] and llm["cost_within_budget"], llm
    assert llm["unexpected_requests"] == 0 and sum(llm["faults_injected"].values()) > 0, llm

    bad = report["bad_inputs"]
    assert bad["kinds"] >= 20 and bad["clear_errors"] == bad["kinds"] and bad["tracebacks"] == 0, bad["unclear"]
    assert report["secrets"]["files_scanned"] > 100 and report["secrets"]["found"] == 0, report["secrets"]
    security = report["label_studio_security"]
    assert security["listening_on"] and all(security[k] is True for k in security if k != "listening_on"), security


def test_the_faulty_model_injects_each_kind_at_the_rate_asked() -> None:
    model = FaultyModel(rate=0.3, seed=1, timeout_s=1.0)
    body = {
        "response_format": {"json_schema": {"name": "CorrectionVerdict"}},
        "messages": [{"role": "user", "content": "x"}],
    }
    for _ in range(2000):
        model(body)
    injected = sum(model.injected.values())
    assert 0.27 < injected / 2000 < 0.33 and min(model.injected.values()) > 60
    assert model.answered == 2000 - injected


def test_the_bad_inputs_are_many_and_distinct() -> None:
    kinds = [case.kind for case in bad_inputs()]
    assert len(kinds) >= 20 and len(set(kinds)) == len(kinds)


def test_listening_addresses_tell_loopback_from_every_interface() -> None:
    with socket.socket() as loopback, socket.socket() as everywhere:
        loopback.bind(("127.0.0.1", 0))
        loopback.listen()
        everywhere.bind(("0.0.0.0", 0))
        everywhere.listen()
        inside, outside = loopback.getsockname()[1], everywhere.getsockname()[1]
        assert listening_addresses(inside) == ["127.0.0.1"] and is_loopback("127.0.0.1")
        assert listening_addresses(outside) == ["0.0.0.0"] and not is_loopback("0.0.0.0")
