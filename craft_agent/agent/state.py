"""The agent's state: what one pair's run carries from node to node, as typed records.

LangGraph checkpoints the state after every node (SQLite in the workspace, or PostgreSQL beside such a
catalog). Its serializer stores a pydantic record as its class and field values and rebuilds it on resume;
:data:`CHECKPOINT_TYPES` lists the classes the state holds so that the serializer rebuilds them without
warnings (and in LangGraph's strict mode, where it would hand back plain values, :class:`AgentState`
validates them into records again). Nodes read the records and return partial updates; a node that changes
targets works on its own copies (:meth:`AgentState.working_targets`), never on the checkpointed ones.

:data:`STATE_VERSION` is part of each pair's checkpoint thread (``agent.run.thread_for``): a thread written by
an older layout of this state is not resumed, its pair is drafted afresh (triplet ids are content hashes,
so nothing is written twice).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from craft_agent.agent.schemas import ChangeCue, Nuisance
from craft_agent.models import BBox, ChangeCandidate, ChangeType, LLMUsage, RLEMask

STATE_VERSION = 2
"""Layout of :class:`AgentState` in the checkpoints; 1 held JSON dicts, 2 holds typed records."""

ProposalMode = Literal["labels", "detector"]


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
    scores: dict[str, float] = Field(
        default_factory=dict, description="The mask's scores (see craft_agent.masks.base.MaskScores)."
    )
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
    over_budget: bool = Field(
        default=False,
        description="Accepted, then discarded for the pair's budget of single-target triplets: still a change a "
        "reader sees, so the referring rule counts it and its group holds it.",
    )
    unnamed: bool = Field(
        default=False,
        description="Accepted, then discarded as no expression singled it out (nodes.ensure_unique): still a "
        'change a reader sees, so its group holds it ("the newly built houses" is all of them).',
    )
    duplicate_of: str | None = Field(
        default=None, description="Discarded as the same object as this stronger target (targets.drop_duplicates)."
    )
    left_uncorrected: bool = Field(
        default=False,
        description="Left out for the budget or for want of a name after its correction gave up (status was "
        "`uncorrected`): a group that holds it counts it among its uncorrected members.",
    )
    llm: LLMUsage = Field(
        default_factory=LLMUsage,
        description="This target's share of the language calls that served it, as the run's usage meter was "
        "charged for them (provenance only: the meter is the count).",
    )
    steps: dict[str, str] = Field(
        default_factory=dict,
        description="LLM task -> the backend that answered it for this target (`offline-fallback` when the model's "
        "answer was unusable or its endpoint kept failing; `a+b` when calls of one task were answered by both).",
    )

    @property
    def kept(self) -> bool:
        """Still on its way to a triplet (accepted, or uncorrected and flagged so)."""
        return self.status in ("accepted", "uncorrected")

    def leave_out(self, why: Literal["budget", "unnamed"]) -> None:
        """Discard a kept target that is still a change a reader sees: over the pair's budget, or without an
        expression that singles it out (:attr:`over_budget`, :attr:`unnamed`); an uncorrected one stays
        flagged so (:attr:`left_uncorrected`) for the group that holds it."""
        self.left_uncorrected = self.left_uncorrected or self.status == "uncorrected"
        self.status = "discarded"
        if why == "budget":
            self.over_budget = True
        else:
            self.unnamed = True


class Rejection(BaseModel):
    """A candidate the grid review rejected, and the nuisance that explains it; or one of a category the run
    does not draft (``reason="category"``: ``AgentConfig.categories``); or one discarded after segmentation as the
    same object as a stronger target (``reason="duplicate"``: :func:`~craft_agent.agent.targets.drop_duplicates`)."""

    model_config = ConfigDict(extra="forbid")

    candidate_id: str | None
    nuisance: Nuisance | None = None
    cell: str
    reason: Literal["review", "category", "duplicate"] = "review"


class AgentState(BaseModel):
    """Graph state for one pair."""

    model_config = ConfigDict(extra="forbid")

    pair_id: str
    candidates: list[ChangeCandidate] = Field(
        default_factory=list, description="The pair's candidates chosen for review, read once by ``prepare``."
    )
    cues: dict[str, ChangeCue] = Field(default_factory=dict, description="Candidate id -> its measured cue.")
    cells: list[str] = Field(default_factory=list, description="Grid cells to review, in reading order.")
    cell_index: int = 0
    rejected: list[Rejection] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)
    round: int = 0
    proposals: ProposalMode = "detector"
    budget: int | None = None
    unreviewed: list[Target] = Field(
        default_factory=list,
        description="Detector mode: the changes beyond the review's reach (more than a few times the budget on a "
        "crowded tile) that the offline rules take for real, as a reader would see them. Never drafted alone; "
        "the referring rule counts them (no 'easternmost new house' when an unreviewed one lies further east), "
        "and their kind gets no multi-target group (nobody checked their masks).",
    )
    triplet_ids: list[str] | None = Field(default=None, description="Set by the last node: the pair is done.")
    notes: list[str] = Field(default_factory=list)

    def working_targets(self) -> list[Target]:
        """Copies of the targets for a node to change and return (the state's own stay as checkpointed)."""
        return [t.model_copy(deep=True) for t in self.targets]

    def candidate(self, candidate_id: str | None) -> ChangeCandidate | None:
        """The chosen candidate with this id, or None (a change the model added has none)."""
        return next((c for c in self.candidates if c.id == candidate_id), None) if candidate_id else None


def _record_types(model: type[BaseModel], found: set[type]) -> None:
    for field in model.model_fields.values():
        for kind in _annotation_types(field.annotation):
            if kind in found:
                continue
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found.add(kind)
                _record_types(kind, found)
            elif isinstance(kind, type) and issubclass(kind, Enum):
                found.add(kind)


def _annotation_types(annotation: object) -> list[object]:
    args = getattr(annotation, "__args__", None)
    return [annotation] if not args else [t for arg in args for t in _annotation_types(arg)]


def _checkpoint_types() -> list[tuple[str, str]]:
    found: set[type] = set()
    _record_types(AgentState, found)
    return sorted((t.__module__, t.__name__) for t in found)


CHECKPOINT_TYPES = _checkpoint_types()
"""(module, class) of every record and enum the state holds: the checkpoint serializer's allowlist."""
