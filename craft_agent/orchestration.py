"""Settings that Prefect needs before it is imported, kept in one place.

Prefect reads its configuration from the environment when it is first imported, so the CLI and the tests
call :func:`configure_prefect` first. Telemetry is off (the machine has no route to it, and operators
should not leak run data), Prefect's home is inside the workspace (nothing written to ``~/.prefect``),
and the temporary server gets 120 s to start (the 20 s default is too short on two busy cores).
"""

from __future__ import annotations

import os
from pathlib import Path

from craft_agent.settings import Settings


def prefect_environment(settings: Settings) -> dict[str, str]:
    """The environment variables Prefect should run with for this workspace."""
    return {
        "PREFECT_HOME": str((settings.workspace / ".prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    }


def configure_prefect(settings: Settings) -> Path:
    """Set Prefect's environment for ``settings.workspace`` (values already set by the user win).

    Returns:
        The Prefect home folder in use.
    """
    for key, value in prefect_environment(settings).items():
        os.environ.setdefault(key, value)
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return home
