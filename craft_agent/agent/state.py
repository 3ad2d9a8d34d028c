"""The agent's state: what one pair's run carries from node to node.

LangGraph checkpoints the state after every node (SQLite in the workspace), so it holds only plain JSON
values; the typed records are rebuilt with ``model_validate`` inside the nodes.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from craft_agent.agent.schemas import ChangeCue
from craft_agent.models import BBox, ChangeType, RLEMask


class Target(BaseModel):
    """One change on its way to becoming a triplet."""

    model_config = ConfigDict(extra="forbid")

    id: str
    candidate_id: str | None
    change_type: ChangeType
    category: str | None
    description: str
    box: BBox
    mask: RLEMask | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    cue: ChangeCue
    rounds: int = 0
    status: Literal["pending", "accepted", "uncorrected", "discarded"] = "pending"
    positive_points: list[tuple[int, int]] = Field(default_factory=list)
    negative_points: list[tuple[int, int]] = Field(default_factory=list)
    expressions: list[str] = Field(default_factory=list)
    no_target: bool = Field(default=False, description="A change that did not happen: empty mask.")
    member_ids: list[str] = Field(
        default_factory=list, description="For a group: the candidate (or target) ids of its members."
    )
    uncorrected_members: int = Field(default=0, description="For a group: members the correction gave up on.")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    steps: dict[str, str] = Field(
        default_factory=dict,
        description="LLM task -> the backend that answered it for this target (`offline-fallback` when the model's "
        "answer was unusable or its endpoint kept failing; `a+b` when calls of one task were answered by both).",
    )


class AgentState(TypedDict, total=False):
    """Graph state for one pair (JSON values only)."""

    pair_id: str
    cells: list[str]
    cell_index: int
    cues: dict[str, dict[str, Any]]
    rejected: list[dict[str, Any]]
    targets: list[dict[str, Any]]
    round: int
    proposals: str
    budget: int | None
    triplet_ids: list[str]
    notes: list[str]


def load_targets(state: AgentState) -> list[Target]:
    return [Target.model_validate(t) for t in state.get("targets", [])]


def dump_targets(targets: list[Target]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json") for t in targets]
