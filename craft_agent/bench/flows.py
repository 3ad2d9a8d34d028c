"""``craft-agent bench flows``: the same pairs drafted three ways, timed, and checked to give the same triplets.

1. ``sequential_s``: :func:`craft_agent.agent.run.generate`, the plain loop ``craft-agent generate`` runs;
2. ``threads_s``: the ``craft-generate`` Prefect flow, one task per pair on a thread pool;
3. ``dask_s``: the same flow on a ``dask_workers``-process Dask LocalCluster (prefect-dask).

Each way starts from its own copy of one ingested workspace (offline backend, classical masks), and
``identical`` says whether the three catalogs hold exactly the same triplet ids. The flow timings include
Prefect's own work (task runs recorded on its server) and, for Dask, starting the cluster.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.orchestration import configure_prefect
from craft_agent.pipeline import DraftOptions
from craft_agent.settings import load_settings
from craft_agent.synthetic import write_examples

Progress = Callable[[str, int, int], None]


def _triplet_ids(workspace: Path) -> list[str]:
    with Catalog.from_settings(load_settings(workspace=workspace)) as catalog:
        return sorted(t.id for t in catalog.iter_triplets())


def run_flows_bench(
    scratch: Path,
    pairs: int = 20,
    size: int = 256,
    seed: int = 0,
    workers: int = 2,
    threads: int = 4,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Draft ``pairs`` generated pairs sequentially, through the flow on threads and on Dask (see above)."""
    from craft_agent.agent.run import generate
    from craft_agent.llm import create_llm_backend
    from craft_agent.masks import create_mask_engine

    base = scratch / "ingested"
    settings = load_settings(workspace=base)
    configure_prefect(settings)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.generate import generate_flow, task_runner

    write_examples(scratch / "examples", pairs=pairs, seed=seed, size=size)
    with Catalog.from_settings(settings) as catalog:
        ingest(scratch / "examples", catalog, ImageStore(base), IngestOptions.from_settings(settings))
    options = DraftOptions(llm="offline", masks="classical")

    def sequential(workspace: Path) -> None:
        local = load_settings(workspace=workspace)
        with Catalog.from_settings(local) as catalog:
            llm = create_llm_backend(local, "offline")
            generate(catalog, ImageStore(workspace), llm, create_mask_engine(local, "classical"), workspace)

    def flow_on(runner: Any) -> Callable[[Path], None]:
        def run(workspace: Path) -> None:
            generate_flow.with_options(task_runner=runner)(str(workspace), options=options)

        return run

    ways: list[tuple[str, Callable[[Path], None]]] = [
        ("sequential", sequential),
        ("threads", flow_on(task_runner("threads", threads))),
        ("dask", flow_on(task_runner("dask", workers))),
    ]
    report: dict[str, Any] = {"pairs": pairs, "size": size, "dask_workers": workers, "threads": threads}
    ids: dict[str, list[str]] = {}
    for done, (name, way) in enumerate(ways):
        if progress:
            progress(name, done, len(ways))
        workspace = scratch / name
        shutil.copytree(base, workspace)
        started = time.perf_counter()
        way(workspace)
        report[f"{name}_s"] = round(time.perf_counter() - started, 2)
        ids[name] = _triplet_ids(workspace)
    report["triplets"] = len(ids["sequential"])
    report["identical"] = ids["sequential"] == ids["threads"] == ids["dask"] and bool(ids["sequential"])
    report["cpu_count"] = os.cpu_count()
    if progress:
        progress("", len(ways), len(ways))
    return report
