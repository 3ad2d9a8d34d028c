"""What a model's tokens cost: configured prices first, else a small table of well-known hosted models.

A money budget (``--budget-usd``) is only as good as the prices behind it. Prices come from the settings
(``CRAFT_LLM_PRICE_PER_1K_PROMPT`` and ``CRAFT_LLM_PRICE_PER_1K_COMPLETION``, USD per 1,000 tokens); when
those are unset, :data:`KNOWN_PRICES` gives list prices of a few hosted models. A model in neither (a local
vLLM or Ollama model, a new hosted one) has no price: a run with a money budget refuses to start rather
than count $0 forever (see :func:`require_prices`). Set the prices (0 for a free local server), or budget in
tokens instead (``--budget-tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass

from craft_agent.errors import ConfigError


@dataclass(frozen=True)
class Prices:
    """USD per 1,000 prompt and completion tokens, and where the figures came from."""

    prompt_per_1k: float
    completion_per_1k: float
    source: str
    """``settings`` or ``table:<entry>``."""


KNOWN_PRICES: dict[str, tuple[float, float]] = {
    # OpenAI list prices (USD per 1,000 tokens, standard tier, text and image input alike). They change:
    # configure the prices for a run whose budget matters.
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "o4-mini": (0.0011, 0.0044),
    "gpt-5": (0.00125, 0.01),
    "gpt-5-mini": (0.00025, 0.002),
    "gpt-5-nano": (0.00005, 0.0004),
}
"""Default prices of well-known models by model id; a dated or suffixed id (``gpt-4o-2024-08-06``) takes
the entry of its longest matching prefix."""


def table_entry(model: str) -> str | None:
    """The :data:`KNOWN_PRICES` entry for ``model``: the id itself, or its longest prefix followed by ``-``."""
    model = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" as routers name it
    matches = [name for name in KNOWN_PRICES if model == name or model.startswith(name + "-")]
    return max(matches, key=len) if matches else None


def prices_for(model: str, prompt_per_1k: float | None, completion_per_1k: float | None) -> Prices | None:
    """The prices of ``model``: the configured ones when both are given, else the table's, else None.

    Raises:
        ConfigError: when only one of the two configured prices is given.
    """
    if (prompt_per_1k is None) != (completion_per_1k is None):
        raise ConfigError(
            "only one of CRAFT_LLM_PRICE_PER_1K_PROMPT and CRAFT_LLM_PRICE_PER_1K_COMPLETION is set.",
            hint="set both (USD per 1,000 tokens; 0 for a free local server).",
        )
    if prompt_per_1k is not None and completion_per_1k is not None:
        return Prices(prompt_per_1k, completion_per_1k, "settings")
    entry = table_entry(model)
    if entry is None:
        return None
    prompt, completion = KNOWN_PRICES[entry]
    return Prices(prompt, completion, f"table:{entry}")


def require_prices(model: str, prices: Prices | None, budget_usd: float | None) -> None:
    """Refuse a money budget that cannot be counted.

    Raises:
        ConfigError: when ``budget_usd`` is set and ``model`` has no price.
    """
    if budget_usd is not None and prices is None:
        raise ConfigError(
            f"--budget-usd {budget_usd:g} cannot be kept: the price of model {model!r} is not known, so every "
            "call would count as $0.",
            hint="set CRAFT_LLM_PRICE_PER_1K_PROMPT and CRAFT_LLM_PRICE_PER_1K_COMPLETION (USD per 1,000 tokens; "
            "0 for a free local server), or budget in tokens with --budget-tokens N.",
        )
