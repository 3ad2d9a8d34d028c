"""One exception family for the whole package.

Every message says what failed, on which input, and what the user can do about it. Catch
:class:`CraftError` at the edges (CLI, flows) to report a clean message instead of a traceback.
"""

from __future__ import annotations


class CraftError(Exception):
    """Base class of every error raised on purpose by craft_agent.

    Args:
        message: what failed and on which input.
        hint: what the user can do about it (appended to the message).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} Fix: {hint}" if hint else message)


class ConfigError(CraftError):
    """A setting is missing or invalid."""


class CatalogError(CraftError):
    """The catalog cannot be opened, is of another schema version, or refused a write."""


class SchemaVersionError(CatalogError):
    """The catalog was written by an incompatible version of craft-agent."""


class IllegalTransitionError(CraftError):
    """A triplet was asked to move to a state its current state cannot reach."""


class IngestError(CraftError):
    """One input pair (or a whole source) could not be ingested.

    Args:
        input: the file or pair name that failed, as the user would type it.
    """

    def __init__(self, input: str, message: str, hint: str | None = None) -> None:
        self.input = input
        super().__init__(message, hint)


class ExamplesError(CraftError):
    """The example-data generator was given arguments it cannot honour."""


class AuditError(CraftError):
    """The audit backend (Label Studio) cannot be installed, started, reached, or refused a request."""
