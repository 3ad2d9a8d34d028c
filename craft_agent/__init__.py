"""CRAFT-Agent: build Multi-temporal Referring Segmentation datasets.

The package is a library first: the CLI (``craft_agent.cli``) and the Prefect flows (``flows/``) only
orchestrate what lives here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("craft-agent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
