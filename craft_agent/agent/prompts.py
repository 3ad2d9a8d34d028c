"""Prompt templates: one file per prompt in ``prompts/``; each file's sha256 goes into provenance.

The templates ship inside the package (``craft_agent/prompts/``, with a top-level ``prompts`` link in the
repository) and load through :mod:`importlib.resources`, so an installed wheel finds them as a checkout does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from craft_agent.errors import ConfigError

DEFAULT_PROMPTS_DIR: Traversable = files("craft_agent") / "prompts"
PROMPT_NAMES = ("system", "grid_review", "correction", "beautify", "disambiguate")


@dataclass(frozen=True)
class Prompt:
    """A template with its hash."""

    name: str
    text: str
    sha256: str

    def render(self, **values: Any) -> str:
        """The template with ``{name}`` fields filled in.

        Raises:
            ConfigError: when the template names a field that was not given.
        """
        try:
            return self.text.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"prompt template {self.name} could not be filled: {exc!r}.",
                hint=f"check the {{fields}} in prompts/{self.name}.md; available: {', '.join(sorted(values))}.",
            ) from exc


class PromptLibrary:
    """Loads every prompt of :data:`PROMPT_NAMES` from a folder.

    Args:
        folder: where the ``<name>.md`` files are; the package's own prompts by default.

    Raises:
        ConfigError: when a prompt file is missing.
    """

    def __init__(self, folder: Path | Traversable = DEFAULT_PROMPTS_DIR) -> None:
        self.folder = folder
        self.prompts: dict[str, Prompt] = {}
        for name in PROMPT_NAMES:
            path = folder / f"{name}.md"
            if not path.is_file():
                raise ConfigError(
                    f"prompt file {path} is missing.",
                    hint="reinstall craft-agent, or restore craft_agent/prompts/ from git.",
                )
            data = path.read_bytes()
            self.prompts[name] = Prompt(name=name, text=data.decode("utf-8"), sha256=hashlib.sha256(data).hexdigest())

    def __getitem__(self, name: str) -> Prompt:
        return self.prompts[name]

    def hashes(self) -> dict[str, str]:
        """Prompt name -> sha256, for provenance."""
        return {name: prompt.sha256 for name, prompt in self.prompts.items()}
