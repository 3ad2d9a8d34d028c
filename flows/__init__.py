"""Prefect flows: thin orchestration over ``craft_agent``; no business logic lives here.

Call :func:`craft_agent.orchestration.prefect_environment` (or run through the CLI) before importing
Prefect, so its home, telemetry and start-up timeout are set for this machine.
"""
