"""Imagery: reading rasters, finding pairs in source layouts, aligning, stretching, tiling, ingesting."""

from craft_agent.imagery.ingest import IngestOptions, IngestSummary, build_pairs, ingest
from craft_agent.imagery.layouts import Discovery, PairSpec, discover
from craft_agent.runs import Failure

__all__ = [
    "Discovery",
    "Failure",
    "IngestOptions",
    "IngestSummary",
    "PairSpec",
    "build_pairs",
    "discover",
    "ingest",
]
