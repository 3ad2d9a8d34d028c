"""LLM backends: one protocol, a registry, a response cache and a usage meter.

- ``openai``: any OpenAI-compatible endpoint (``CRAFT_LLM_BASE_URL``, ``CRAFT_LLM_MODEL``,
  ``CRAFT_LLM_API_KEY``), answers cached in ``workspace/cache/llm.sqlite``.
- ``offline``: the deterministic default without a model (``craft_agent.agent.offline``): it makes the
  same decisions from the measured facts the prompts are written from.

``create_llm_backend(settings)`` picks ``openai`` when an endpoint is configured, else ``offline``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from craft_agent.errors import ConfigError
from craft_agent.llm.base import (
    BudgetExceededError,
    LLMBackend,
    LLMError,
    LLMImage,
    LLMRefusalError,
    LLMRequest,
    LLMRequestRejectedError,
    LLMResponse,
    LLMResponseError,
    LLMUnavailableError,
    TokenUsage,
)
from craft_agent.llm.cache import CachedAnswer, ResponseCache, cache_key
from craft_agent.llm.openai_backend import OpenAIBackend
from craft_agent.llm.prices import KNOWN_PRICES, Prices, prices_for, require_prices
from craft_agent.llm.usage import UsageMeter, cost_usd
from craft_agent.settings import Settings

LLMBackendBuilder = Callable[[Settings, UsageMeter | None], LLMBackend]
"""Builds a backend from the settings, charging the given meter (None: no metering)."""


def llm_cache_path(settings: Settings) -> Path:
    """Where the response cache of a workspace lives."""
    return settings.workspace / "cache" / "llm.sqlite"


def _build_openai(settings: Settings, usage: UsageMeter | None) -> LLMBackend:
    missing = [
        variable
        for variable, value in (("CRAFT_LLM_BASE_URL", settings.llm_base_url), ("CRAFT_LLM_MODEL", settings.llm_model))
        if not value
    ]
    if missing or settings.llm_base_url is None or settings.llm_model is None:
        raise ConfigError(
            f"the openai LLM backend needs an endpoint and a model; {' and '.join(missing)} not set.",
            hint="set CRAFT_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1) and CRAFT_LLM_MODEL, plus "
            "CRAFT_LLM_API_KEY if the server wants one; or choose the offline backend.",
        )
    prices = prices_for(settings.llm_model, settings.llm_price_per_1k_prompt, settings.llm_price_per_1k_completion)
    require_prices(settings.llm_model, prices, usage.budget_usd if usage is not None else None)
    return OpenAIBackend(
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
        max_attempts=settings.llm_max_attempts,
        cache=ResponseCache(llm_cache_path(settings)),
        usage=usage,
        price_per_1k_prompt=prices.prompt_per_1k if prices else 0.0,
        price_per_1k_completion=prices.completion_per_1k if prices else 0.0,
        priced=prices is not None,
    )


def _build_offline(settings: Settings, usage: UsageMeter | None) -> LLMBackend:
    # Imported here: the offline backend lives with the agent, which itself imports this package.
    from craft_agent.agent.offline import OfflineBackend

    return OfflineBackend(usage=usage)


LLM_BACKENDS: dict[str, LLMBackendBuilder] = {"openai": _build_openai, "offline": _build_offline}
"""Registered LLM backends by name."""


def create_llm_backend(settings: Settings, name: str | None = None, usage: UsageMeter | None = None) -> LLMBackend:
    """The backend named ``name``; by default ``openai`` when ``CRAFT_LLM_BASE_URL`` is set, else ``offline``.

    Args:
        settings: the run's settings (endpoint, model, key, workspace for the cache).
        name: a key of :data:`LLM_BACKENDS`, or None to choose as above.
        usage: meter that every answer is charged to (and whose budget stops the run), or None.

    Raises:
        ConfigError: for an unknown name, an ``openai`` backend without endpoint or model, or a money budget
            on a model whose price is neither configured nor in :data:`KNOWN_PRICES`.
    """
    chosen = name or ("openai" if settings.llm_base_url else "offline")
    if chosen not in LLM_BACKENDS:
        raise ConfigError(f"unknown LLM backend {chosen!r}.", hint=f"choose one of: {', '.join(sorted(LLM_BACKENDS))}.")
    return LLM_BACKENDS[chosen](settings, usage)


__all__ = [
    "KNOWN_PRICES",
    "LLM_BACKENDS",
    "BudgetExceededError",
    "CachedAnswer",
    "LLMBackend",
    "LLMBackendBuilder",
    "LLMError",
    "LLMImage",
    "LLMRefusalError",
    "LLMRequest",
    "LLMRequestRejectedError",
    "LLMResponse",
    "LLMResponseError",
    "LLMUnavailableError",
    "OpenAIBackend",
    "Prices",
    "ResponseCache",
    "TokenUsage",
    "UsageMeter",
    "cache_key",
    "cost_usd",
    "create_llm_backend",
    "llm_cache_path",
    "prices_for",
    "require_prices",
]
