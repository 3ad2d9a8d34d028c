"""The agent's typed state survives LangGraph's checkpoint serializer as records, and usage shares add up."""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from craft_agent.agent.schemas import ChangeCue
from craft_agent.agent.state import CHECKPOINT_TYPES, AgentState, Rejection, Target
from craft_agent.models import BBox, ChangeType, LLMUsage, RLEMask


def _cue() -> ChangeCue:
    return ChangeCue(
        candidate_id="c1",
        grid_cell="center",
        box=BBox(x0=2, y0=3, x1=9, y1=8),
        detector_type=ChangeType.APPEAR,
        confidence=0.5,
        area_fraction=0.01,
        size="small",
        shape="compact",
        colour_before="green",
        colour_after="red",
        surroundings_before="green",
        surroundings_after="green",
        greenness_before=0.1,
        greenness_after=0.0,
        texture_before=1.0,
        texture_after=2.0,
        contrast_before=1.0,
        contrast_after=3.0,
        brightness_change=4.0,
    )


def test_state_round_trips_through_the_checkpoint_serializer_as_records() -> None:
    cue = _cue()
    target = Target(
        id="c1",
        candidate_id="c1",
        change_type=ChangeType.APPEAR,
        category="building",
        description="the red building in the center that appeared",
        box=cue.box,
        mask=RLEMask.empty(16, 16),
        cue=cue,
        positive_points=[(4, 5)],
        llm=LLMUsage(calls=2, prompt_tokens=10, cost_usd=0.5),
    )
    rejection = Rejection(candidate_id="c2", nuisance="shadow", cell="top-left")
    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
    values = {"targets": [target], "cues": {"c1": cue}, "rejected": [rejection]}
    restored = serde.loads_typed(serde.dumps_typed(values))
    assert restored["targets"] == [target] and isinstance(restored["targets"][0], Target)
    assert restored["cues"]["c1"] == cue and restored["rejected"] == [rejection]
    state = AgentState(pair_id="p", **restored)
    copies = state.working_targets()
    copies[0].positive_points.append((1, 1))
    assert state.targets[0].positive_points == [(4, 5)]  # a node's copy never changes the checkpointed target
    assert ("craft_agent.agent.state", "Target") in CHECKPOINT_TYPES
    assert ("craft_agent.models", "ChangeType") in CHECKPOINT_TYPES


def test_a_shared_call_counts_once_per_target_and_divides_tokens_and_cost() -> None:
    spent = LLMUsage(calls=1, prompt_tokens=101, completion_tokens=10, cost_usd=0.3)
    share = spent.shared(2)
    assert share == LLMUsage(calls=1, prompt_tokens=50, completion_tokens=5, cost_usd=0.15)
    assert (share + share).rounded() == LLMUsage(calls=2, prompt_tokens=100, completion_tokens=10, cost_usd=0.3)
