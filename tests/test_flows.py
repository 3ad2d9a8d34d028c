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


def test_generate_flow_drafts_each_pair_as_a_task_like_the_cli(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from craft_agent.agent.run import generate
    from craft_agent.catalog import ImageStore
    from craft_agent.llm import create_llm_backend
    from craft_agent.masks import create_mask_engine
    from craft_agent.pipeline import DraftOptions
    from craft_agent.synthetic import write_examples

    flows_generate: Any = importlib.import_module("flows.generate")
    write_examples(tmp_path / "examples", pairs=3, seed=2, size=192)
    workspace = tmp_path / "ws"
    options = DraftOptions(llm="offline", masks="classical")
    summary = flows_generate.generate_flow(str(workspace), source=str(tmp_path / "examples"), options=options)
    assert summary["pairs"] == 3 and summary["triplets"] > 0 and summary["failed"] == [], summary
    assert summary["seconds"] > 0, "the run's time is measured, not left at zero"
    settings = load_settings(workspace=workspace)
    with Catalog.from_settings(settings) as catalog:
        flow_ids = sorted(t.id for t in catalog.iter_triplets())
        runs = catalog.runs("generate")
    assert len(flow_ids) == summary["triplets"] and runs and runs[-1]["status"] == "finished"
    with get_client(sync_client=True) as client:
        # the filter endpoint, asked as its API documents it (the 3.8 client sends nulls the server refuses)
        body = {"artifacts": {"key": {"any_": ["craft-generate"]}}, "limit": 5, "offset": 0, "sort": "CREATED_DESC"}
        artifacts = client.request("POST", "/artifacts/filter", json=body).json()  # type: ignore[arg-type]
    assert artifacts and f"| 3 | 0 | 0 | {summary['triplets']} |" in artifacts[0]["data"]

    # the plain sequential loop drafts the very same triplets
    reference = tmp_path / "reference"
    reference_settings = load_settings(workspace=reference)
    flows_ingest: Any = importlib.import_module("flows.ingest")
    flows_ingest.ingest_flow([str(tmp_path / "examples")], str(reference))
    with Catalog.from_settings(reference_settings) as catalog:
        generate(
            catalog,
            ImageStore(reference),
            create_llm_backend(reference_settings, "offline"),
            create_mask_engine(reference_settings, "classical"),
            reference,
        )
        assert sorted(t.id for t in catalog.iter_triplets()) == flow_ids

    # a re-run with a new pair dropped into the source works on that pair only
    write_examples(tmp_path / "more", pairs=1, seed=9, size=192)
    again = flows_generate.generate_flow(str(workspace), source=str(tmp_path / "more"), options=options)
    assert again["failed"] == [] and again["pairs"] == 1 and again["skipped"] == 3 and again["triplets"] > 0


def test_a_failing_pair_is_recorded_and_never_fails_the_flow(prefect_harness: None, tmp_path: Path) -> None:
    from craft_agent.pipeline import DraftOptions
    from craft_agent.synthetic import write_examples

    flows_generate: Any = importlib.import_module("flows.generate")
    write_examples(tmp_path / "examples", pairs=2, seed=4, size=128)
    workspace = tmp_path / "ws"
    importlib.import_module("flows.ingest").ingest_flow([str(tmp_path / "examples")], str(workspace))
    # one pair's image vanishes from the store: that pair fails, the other is drafted
    with Catalog.from_settings(load_settings(workspace=workspace)) as catalog:
        broken = next(iter(catalog.iter_pairs()))
    (workspace / broken.post.path).unlink()
    summary = flows_generate.generate_flow(str(workspace), options=DraftOptions(llm="offline", masks="classical"))
    assert summary["pairs"] == 1 and len(summary["failed"]) == 1 and summary["failed"][0]["input"] == broken.id
