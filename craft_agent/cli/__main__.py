"""``python -m craft_agent.cli`` runs the command line (as ``python -m craft_agent`` does)."""

from craft_agent.cli import main

main()
