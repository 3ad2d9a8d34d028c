"""The CRAFT graph, readable top to bottom in :func:`build_graph`.

    prepare -> review_cell (once per grid cell with candidates) -> segment -> correct
            -> (segment again while a target was fixed) -> beautify -> ensure_unique
            -> compose_extras (multi-target and no-target expressions) -> write_triplets

The state is typed (:class:`~craft_agent.agent.state.AgentState`: candidates, cues, targets as records).
Checkpoints go to a SQLite file in the workspace, one thread per pair, so a run killed mid-pair resumes at
the node that was running and never writes a triplet twice (triplet ids are content hashes as well).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.graph import END, START, StateGraph

from craft_agent.agent import nodes
from craft_agent.agent.nodes import AgentResources
from craft_agent.agent.state import AgentState


def more_cells_to_review(state: AgentState) -> str:
    """After a cell: the next cell, or on to segmentation when every cell with candidates was reviewed."""
    return "review_cell" if state.cell_index < len(state.cells) else "segment"


def targets_still_pending(state: AgentState) -> str:
    """After a correction round: segment again what was fixed, or go on to the wording."""
    return "segment" if any(t.status == "pending" for t in state.targets) else "beautify"


def any_cell(state: AgentState) -> str:
    """After preparing: review the grid cells, or straight to writing when no cell holds a candidate."""
    return "review_cell" if state.cells else "write_triplets"


def build_graph(resources: AgentResources, checkpointer: Any = None) -> Any:
    """The compiled LangGraph graph for one pair at a time (input: ``{"pair_id": ...}``)."""
    graph = StateGraph(AgentState)
    graph.add_node("prepare", partial(nodes.prepare, resources))
    graph.add_node("review_cell", partial(nodes.review_cell, resources))
    graph.add_node("segment", partial(nodes.segment, resources))
    graph.add_node("correct", partial(nodes.correct, resources))
    graph.add_node("beautify", partial(nodes.beautify, resources))
    graph.add_node("ensure_unique", partial(nodes.ensure_unique, resources))
    graph.add_node("compose_extras", partial(nodes.compose_extras, resources))
    graph.add_node("write_triplets", partial(nodes.write_triplets, resources))

    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", any_cell, ["review_cell", "write_triplets"])
    graph.add_conditional_edges("review_cell", more_cells_to_review, ["review_cell", "segment"])
    graph.add_edge("segment", "correct")
    graph.add_conditional_edges("correct", targets_still_pending, ["segment", "beautify"])
    graph.add_edge("beautify", "ensure_unique")
    graph.add_edge("ensure_unique", "compose_extras")
    graph.add_edge("compose_extras", "write_triplets")
    graph.add_edge("write_triplets", END)
    return graph.compile(checkpointer=checkpointer)
