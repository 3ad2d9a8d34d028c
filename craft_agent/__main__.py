"""``python -m craft_agent`` runs the command line."""

from craft_agent.cli import main

main()
