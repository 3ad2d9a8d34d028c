"""One skeleton for every stage run: ingest, candidates, generate, and the Prefect tasks that run them per pair.

A stage run is recorded in the catalog (``start_run`` ... ``finish_run`` with the summary), reports progress
as ``(done, total, name)``, and works item by item: one item that fails is captured as a :class:`Failure`
(its input as the user would name it, and what to do) and the run goes on. An unexpected exception is
captured too, with the advice to report it, because one broken pair must never sink a run.

    with StageRun(catalog, "candidates", config, summary, progress) as run:
        for pair in run.items(pairs, name=lambda p: p.name):
            refined = run.attempt(pair.name, lambda: work(pair))
            if refined is None:
                continue
            ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from craft_agent.errors import CraftError

if TYPE_CHECKING:  # the catalog imports ingestion code, which uses Failure
    from craft_agent.catalog import Catalog

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item

ProgressCallback = Callable[[int, int, str], None]
"""Called as (items done, items in all, the item now started; "" at the end)."""


class Failure(BaseModel):
    """Something a stage could not do: the input as the user would name it, and why (ending with a fix)."""

    model_config = ConfigDict(frozen=True)

    input: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"input": self.input, "error": self.error}

    @classmethod
    def from_error(cls, error: CraftError, input: str | None = None) -> Failure:
        """The failure an error describes; its own ``input`` (ingestion errors carry one) wins over ``input``."""
        return cls(input=str(getattr(error, "input", None) or input or "?"), error=str(error))

    @classmethod
    def unexpected(cls, input: str, what: str, error: BaseException) -> Failure:
        """An exception nobody planned for: said plainly, with the advice to report it."""
        return cls(
            input=input,
            error=f"{what} failed ({type(error).__name__}: {error}). Fix: if the input looks fine, report this "
            "as a bug with the input attached.",
        )


class StageSummary(Protocol):
    """What :class:`StageRun` needs of a stage's summary."""

    failed: list[Failure]
    run_id: str
    seconds: float

    def to_json(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=StageSummary)


class StageRun:
    """A stage run in the catalog around a loop over items (see the module docstring).

    Args:
        catalog: where the run, its failures and its summary are recorded.
        stage: the stage's name (``ingest``, ``candidates``, ``generate``).
        config: what the run was asked to do, recorded with it.
        summary: the stage's summary; ``run_id``, ``failed`` and ``seconds`` are filled in here.
        progress: see :data:`ProgressCallback`.
        stop_on: error types that end the whole run (recorded as the item's failure, then ``stopped``).
    """

    def __init__(
        self,
        catalog: Catalog,
        stage: str,
        config: dict[str, Any],
        summary: StageSummary,
        progress: ProgressCallback | None = None,
        stop_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.catalog = catalog
        self.stage = stage
        self.config = config
        self.summary = summary
        self.progress = progress
        self.stop_on = stop_on
        self.stopped_by: BaseException | None = None
        self._started = 0.0
        self._total = 0

    def __enter__(self) -> StageRun:
        self._started = time.perf_counter()
        self.summary.run_id = self.catalog.start_run(self.stage, self.config)
        return self

    def items(self, items: Iterable[I], name: Callable[[I], str] = str) -> Iterator[I]:
        """The items in order, with progress; ends early once an item hit a ``stop_on`` error."""
        listed = list(items)
        self._total = len(listed)
        for done, item in enumerate(listed):
            if self.stopped_by is not None:
                return
            if self.progress:
                self.progress(done, self._total, name(item))
            yield item

    def attempt(self, input: str, work: Callable[[], T], what: str | None = None) -> T | None:
        """``work()``, or None with its failure recorded against ``input`` when it raises."""
        try:
            return work()
        except self.stop_on as exc:
            self.summary.failed.append(Failure(input=input, error=str(exc)))
            self.stopped_by = exc
        except CraftError as exc:
            self.summary.failed.append(Failure.from_error(exc, input))
        except Exception as exc:  # one broken item must never sink the run
            self.summary.failed.append(Failure.unexpected(input, what or f"{self.stage} of {input}", exc))
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            return  # the run itself broke (or was interrupted): the next run marks it interrupted
        if self.progress:
            self.progress(self._total, self._total, "")
        for failure in self.summary.failed:
            self.catalog.record_failure(self.summary.run_id, failure.input, failure.error)
        self.summary.seconds = time.perf_counter() - self._started
        self.catalog.finish_run(self.summary.run_id, self.summary.to_json())
