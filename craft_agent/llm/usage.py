"""Counting what language-model calls cost, and stopping a run cleanly when its budget is spent.

The :class:`UsageMeter` is where usage is counted: a backend charges the run's meter (and checks its budget)
for every answer, and the agent's drafter records every step it asked in its own meter
(:meth:`UsageMeter.record`), which its summary reads. Per-triplet figures are shares of those same charges,
kept for provenance (``craft_agent.agent.state.Target.llm``), not a second count.
"""

from __future__ import annotations

import threading
from typing import Any

from craft_agent.llm.base import BudgetExceededError, LLMResponse, TokenUsage
from craft_agent.models import LLMUsage


def cost_usd(usage: TokenUsage, price_per_1k_prompt: float, price_per_1k_completion: float) -> float:
    """Money an answer cost at the given prices (USD per 1,000 tokens)."""
    return usage.prompt_tokens / 1000 * price_per_1k_prompt + usage.completion_tokens / 1000 * price_per_1k_completion


class UsageMeter:
    """Thread-safe counters of LLM calls, tokens and money, with an optional budget.

    One meter is shared by every backend of a run (and by every thread that calls them). Backends call
    :meth:`check` before each request and :meth:`charge` after each answer, so once the budget is spent
    the NEXT request is refused before it is sent; the call that crossed the line still completes.
    Cache hits cost nothing and are allowed past a spent budget.

    Args:
        budget_usd: most money to spend, or None for no limit.
        budget_tokens: most tokens (prompt + completion) to spend, or None for no limit.
    """

    def __init__(self, budget_usd: float | None = None, budget_tokens: int | None = None) -> None:
        if budget_usd is not None and budget_usd < 0:
            raise ValueError(f"budget_usd must be >= 0 or None, got {budget_usd}")
        if budget_tokens is not None and budget_tokens < 0:
            raise ValueError(f"budget_tokens must be >= 0 or None, got {budget_tokens}")
        self.budget_usd = budget_usd
        self.budget_tokens = budget_tokens
        self._lock = threading.Lock()
        self._calls = 0
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._cost_usd = 0.0
        self._cached_hits = 0

    def check(self, task: str) -> None:
        """Refuse a new request when the budget is already spent.

        Raises:
            BudgetExceededError: naming the task, what was spent and the budget.
        """
        with self._lock:
            tokens = self._prompt_tokens + self._completion_tokens
            if self.budget_usd is not None and self._cost_usd >= self.budget_usd:
                spent = f"${self._cost_usd:.4f} of a ${self.budget_usd:.4f} budget"
            elif self.budget_tokens is not None and tokens >= self.budget_tokens:
                spent = f"{tokens} of a {self.budget_tokens}-token budget"
            else:
                return
        raise BudgetExceededError(
            f"LLM budget spent ({spent}) before task {task!r}; no request was sent.",
            hint="raise the run's LLM budget (UsageMeter budget_usd / budget_tokens) and run again; "
            "answers already made are cached and cost nothing the second time.",
            task=task,
        )

    def charge(self, usage: TokenUsage, cost_usd: float) -> None:
        """Count one answered request."""
        with self._lock:
            self._calls += 1
            self._prompt_tokens += usage.prompt_tokens
            self._completion_tokens += usage.completion_tokens
            self._cost_usd += cost_usd

    def record(self, response: LLMResponse[Any]) -> LLMUsage:
        """Count one answer as its caller received it (a cache hit as a hit, nothing spent) and return what it
        spent: one call with its tokens and cost, or nothing for a cache hit."""
        if response.cached:
            self.record_cache_hit()
            return LLMUsage()
        self.charge(response.usage, response.cost_usd)
        return LLMUsage(
            calls=1,
            prompt_tokens=response.usage.prompt_tokens,
            completion_tokens=response.usage.completion_tokens,
            cost_usd=response.cost_usd,
        )

    def record_cache_hit(self) -> None:
        """Count an answer served from the cache (no tokens, no money)."""
        with self._lock:
            self._cached_hits += 1

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def prompt_tokens(self) -> int:
        with self._lock:
            return self._prompt_tokens

    @property
    def completion_tokens(self) -> int:
        with self._lock:
            return self._completion_tokens

    @property
    def cost_usd(self) -> float:
        with self._lock:
            return self._cost_usd

    @property
    def cached_hits(self) -> int:
        with self._lock:
            return self._cached_hits

    def snapshot(self) -> LLMUsage:
        """The counters as the catalog's :class:`~craft_agent.models.LLMUsage` record."""
        with self._lock:
            return LLMUsage(
                calls=self._calls,
                prompt_tokens=self._prompt_tokens,
                completion_tokens=self._completion_tokens,
                cost_usd=self._cost_usd,
            )

    def __repr__(self) -> str:
        usage = self.snapshot()
        return (
            f"UsageMeter(calls={usage.calls}, prompt_tokens={usage.prompt_tokens}, "
            f"completion_tokens={usage.completion_tokens}, cost_usd={usage.cost_usd:.4f}, "
            f"cached_hits={self.cached_hits}, budget_usd={self.budget_usd}, budget_tokens={self.budget_tokens})"
        )
