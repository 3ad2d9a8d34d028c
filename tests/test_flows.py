"""The Prefect flow runs for real on Prefect's temporary local server."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from craft_agent.catalog import Catalog
from craft_agent.orchestration import configure_prefect
from craft_agent.settings import load_settings
from tests.data import make_bad_corpus, make_folder_source


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Prefect reads its settings at import: configure first, import after.
    configure_prefect(load_settings(workspace=tmp_path_factory.mktemp("prefect_ws")))
    testing = importlib.import_module("prefect.testing.utilities")
    with testing.prefect_test_harness(server_startup_timeout=120):
        yield


def test_ingest_flow_runs_sources_as_tasks_and_reports_failures(prefect_harness: None, tmp_path: Path) -> None:
    flows_ingest: Any = importlib.import_module("flows.ingest")
    good = make_folder_source(tmp_path / "good", pairs=2)
    bad, cases, bad_good = make_bad_corpus(tmp_path / "bad")
    missing = tmp_path / "does-not-exist"
    workspace = tmp_path / "ws"
    result = flows_ingest.ingest_flow([str(good), str(bad), str(missing)], str(workspace))
    assert result["ingested"] == 2 + bad_good
    assert len(result["failed"]) == len(cases) + 1
    assert any(str(missing) in f["input"] and "does not exist" in f["error"] for f in result["failed"])
    with Catalog.from_settings(load_settings(workspace=workspace)) as catalog:
        assert catalog.count_pairs() == 2 + bad_good
    again = flows_ingest.ingest_flow([str(good)], str(workspace))
    assert (again["ingested"], again["skipped"]) == (0, 2)


def test_generate_flow_drafts_triplets(prefect_harness: None, tmp_path: Path) -> None:
    from craft_agent.synthetic import write_examples

    flows_ingest: Any = importlib.import_module("flows.ingest")
    flows_generate: Any = importlib.import_module("flows.generate")
    write_examples(tmp_path / "examples", pairs=1, seed=2, size=256)
    workspace = tmp_path / "ws"
    flows_ingest.ingest_flow([str(tmp_path / "examples")], str(workspace))
    summary = flows_generate.generate_flow(str(workspace), llm="offline", masks="classical")
    assert summary["pairs"] == 1 and summary["triplets"] > 0 and summary["failed"] == []
    with Catalog.from_settings(load_settings(workspace=workspace)) as catalog:
        assert sum(1 for _ in catalog.iter_triplets()) == summary["triplets"]
