"""The export formats, one module each, behind one registry (:data:`FORMATS`).

Each module holds its format's writer, validator and reader (:class:`~craft_agent.formats.base.Format`), so
``export``, ``validate``, the trainer's readers and ``import`` cannot drift apart:

- :mod:`.mtrefseg`: MTRefSeg-21K's layout (also what ``craft-agent import`` reads);
- :mod:`.webdataset`: tar shards for streaming;
- :mod:`.parquet`: Parquet shards with Hugging Face ``datasets`` features;
- :mod:`.grefcoco`: gRefCOCO-style JSON.
"""

from __future__ import annotations

from craft_agent.errors import ConfigError
from craft_agent.formats import grefcoco, mtrefseg, parquet, webdataset
from craft_agent.formats.base import ExportOptions, Format, ImageSource, Sample, ValidationReport

FORMATS: dict[str, Format] = {module.FORMAT.name: module.FORMAT for module in (mtrefseg, webdataset, parquet, grefcoco)}
"""Every format by name, in the order exports write them."""

__all__ = ["FORMATS", "ExportOptions", "Format", "ImageSource", "Sample", "ValidationReport", "get_format"]


def get_format(name: str) -> Format:
    """The format called ``name``.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in FORMATS:
        raise ConfigError(f"unknown format {name!r}.", hint=f"use one of: {', '.join(FORMATS)}.")
    return FORMATS[name]
