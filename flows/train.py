"""Prefect flow: train the baseline MTRS model on an export (stage 1 first unless a checkpoint is given).

Thin: :func:`craft_agent.train.refer.train_refer_model` does the work, resumable with ``resume=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from craft_agent.train.refer import train_refer_model


@flow(name="craft-train")
def train_flow(
    export: str, out: str, minutes: float = 10.0, stage1: str | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train on ``export`` into ``out`` for ``minutes``; returns the training summary."""
    summary = train_refer_model(
        [Path(export)], Path(out), minutes=minutes, resume=resume, stage1=Path(stage1) if stage1 else True
    )
    get_run_logger().info("trained %d step(s); val %s", summary.steps_this_run, summary.val)
    return summary.model_dump(mode="json")
