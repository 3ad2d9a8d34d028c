"""Prefect flow: run the CRAFT agent over a workspace (for scheduled re-generation on new imagery).

Thin: the agent's own checkpoints make a re-run resume where it stopped; the logic is in
:func:`craft_agent.agent.run.generate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from craft_agent.agent.run import generate
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.llm import UsageMeter, create_llm_backend
from craft_agent.masks import create_mask_engine
from craft_agent.settings import load_settings


@task(name="generate-triplets")
def generate_task(
    workspace: str, llm: str | None, masks: str | None, budget_usd: float | None, budget_tokens: int | None = None
) -> dict[str, Any]:
    settings = load_settings(workspace=Path(workspace))
    backend = create_llm_backend(settings, llm, usage=UsageMeter(budget_usd, budget_tokens))
    engine = create_mask_engine(settings, masks)
    with Catalog.from_settings(settings) as catalog:
        return generate(catalog, ImageStore(settings.workspace), backend, engine, settings.workspace).to_json()


@flow(name="craft-generate")
def generate_flow(
    workspace: str,
    llm: str | None = None,
    masks: str | None = None,
    budget_usd: float | None = None,
    budget_tokens: int | None = None,
) -> dict[str, Any]:
    """Draft triplets for every pair of ``workspace``; returns the run summary."""
    summary = generate_task(workspace, llm, masks, budget_usd, budget_tokens)
    logger = get_run_logger()
    logger.info("drafted %d triplet(s) from %d pair(s)", summary["triplets"], summary["pairs"])
    if summary["mostly_fallbacks"]:
        logger.warning(
            "%d of %d LLM steps fell back to the offline backend", summary["offline_fallbacks"], summary["llm"]["steps"]
        )
    return summary
