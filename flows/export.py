"""Prefect flow: export audited triplets, on demand or once enough new ones have been accepted.

Thin: :func:`craft_agent.export.export_dataset` writes the shards (atomically, in place of the previous
export at ``out``); the flow only decides whether there is enough new audited work to be worth it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.export import export_dataset
from craft_agent.settings import load_settings

AUDITED_STATES = ("accepted", "fixed", "exported")
STATE_FILE = "flows/export-state.json"
"""Per workspace and export folder: how many audited triplets the last export of the flow shipped."""


def audited(catalog: Catalog) -> int:
    """Triplets an auditor accepted or fixed (exportable)."""
    counts = catalog.triplet_counts()
    return sum(counts.get(state, 0) for state in AUDITED_STATES)


def _state(workspace: Path) -> dict[str, int]:
    try:
        return dict(json.loads((workspace / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


@flow(name="craft-export")
def export_flow(workspace: str, out: str, formats: list[str] | None = None, min_new_audited: int = 0) -> dict[str, Any]:
    """Export when at least ``min_new_audited`` audited triplets are waiting (0: always, on demand)."""
    logger = get_run_logger()
    settings = load_settings(workspace=Path(workspace))
    state = _state(settings.workspace)
    key = str(Path(out).resolve())
    with Catalog.from_settings(settings) as catalog:
        total = audited(catalog)
        waiting = total - state.get(key, 0)
        if total == 0 or waiting < max(min_new_audited, 1 if key in state else 0):
            logger.info("%d new audited triplet(s), fewer than %d: no export", waiting, min_new_audited)
            return {"exported": False, "new_audited": waiting}
        summary = export_dataset(
            catalog, ImageStore(settings.workspace), Path(out), formats or ["mtrefseg", "webdataset"], overwrite=True
        )
    state[key] = total
    (settings.workspace / STATE_FILE).parent.mkdir(parents=True, exist_ok=True)
    (settings.workspace / STATE_FILE).write_text(json.dumps(state, indent=1))
    logger.info("exported %d audited triplet(s) (%d new) to %s", total, waiting, out)
    return {"exported": True, "new_audited": waiting, "out": out, "summary": dataclasses.asdict(summary)}
