"""What the agent tells the language model and what it must answer, one pair of models per task.

Each task sends a *context* (measured facts, also rendered into the prompt text for a remote model) and
expects an *answer* validated against a pydantic model (its JSON schema goes to the server as structured
output). The offline backend answers from the context alone, so both backends make the same kind of
decision from the same facts.

Tasks, in graph order (see ``craft_agent.agent.graph.build_graph``):

- ``grid_review``: one grid cell, earlier and later crops plus the detector's candidates in it ->
  confirm / reject (with the nuisance that explains it) / add a missed change.
- ``correction``: one change with its mask drawn on the pair -> accept / fix (new box, other type, other
  target) / discard. It also revises a triplet an auditor sent back with "needs fix": the context then carries
  the auditor's comment and the points and boxes they placed (see ``craft_agent.agent.revise``).
- ``beautify``: one target's absolute-position description and attributes -> several natural referring
  expressions with temporal wording and no grid words.
- ``disambiguate``: an expression that also fits other targets -> expressions with a distinguishing attribute.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from craft_agent.models import AuditHint, BBox, Category, ChangeType, Domain


def _category_word(value: object) -> object:
    return Category.parse(value) if isinstance(value, str) else value


ModelCategory = Annotated[Category | None, BeforeValidator(_category_word)]
"""A category a model answered: its word mapped into the closed set ("trees" is vegetation), None when it names
none (the rules then infer one), so that a stray word never costs the whole answer."""

Size = Literal["tiny", "small", "medium", "large", "huge"]
"""How big a change looks, from the share of the image it covers (``craft_agent.agent.cues.SIZE_WORDS``)."""

Shape = Literal["compact", "elongated", "irregular"]
"""A change's outline (``craft_agent.agent.cues.shape_word``)."""

Nuisance = Literal["illumination", "season", "registration", "shadow", "noise", "other"]
"""Why a candidate is not a real change."""


class Answer(BaseModel):
    """Base of the models the language model must fill: strict, so extra keys are a validation error."""

    model_config = ConfigDict(extra="forbid")


class ChangeCue(BaseModel):
    """Measured facts about one change candidate (what a person would see in the two crops)."""

    model_config = ConfigDict(extra="forbid")

    candidate_id: str
    grid_cell: str
    box: BBox
    detector_type: ChangeType
    confidence: float = Field(ge=0, le=1)
    area_fraction: float = Field(ge=0, le=1, description="Share of the image the candidate covers.")
    size: Size
    shape: Shape
    cut_by_border: bool = Field(
        default=False,
        description="The candidate touches the image's edge: the object may go on outside the image, so its "
        "visible size and shape say little about it.",
    )
    colour_before: str = Field(description="Colour name inside the region in the earlier image.")
    colour_after: str
    surroundings_before: str = Field(description="Colour name of a ring around the region, earlier image.")
    surroundings_after: str
    greenness_before: float = Field(description="Excess-green index inside, earlier image (vegetation > 0.05).")
    greenness_after: float
    texture_before: float = Field(ge=0, description="Lightness standard deviation inside, earlier image.")
    texture_after: float = Field(ge=0)
    contrast_before: float = Field(ge=0, description="How much the region stands out, earlier image (Lab).")
    contrast_after: float = Field(ge=0)
    brightness_change: float = Field(description="Mean lightness after minus before (Lab L).")
    structure_similarity: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description="Correlation of the lightness pattern inside between the dates: near 1 when the same surface "
        "is still there (repainted, relit), near 0 when something else replaced it.",
    )
    outline_kept: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="How much of the region's outline is the same edge in both dates: near 1 when the outline was "
        "there before and after (a re-covered roof), near 0 when it is new (a house on a bare lot).",
    )
    shadow_gained: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of a 4 m ring around the region that is dark (shadow) only in the later image: "
        "something with height that appeared casts one; None when the ground sample distance is unknown or "
        "coarser than 1 m.",
    )
    shadow_lost: float | None = Field(
        default=None, ge=0, le=1, description="The same, dark only in the earlier image (something tall went)."
    )
    shifted_match_before: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description="How well the earlier image's content of the region's box is found in the later image within "
        "6 m (best normalised correlation): near 1 when it is still there, only displaced (misregistration, a "
        "tall building's lean); None when the ground sample distance is unknown or the box is featureless.",
    )
    shifted_match_after: float | None = Field(
        default=None, ge=-1, le=1, description="The same, the later image's content found in the earlier image."
    )
    length_m: float | None = Field(default=None, ge=0, description="Longest side in metres (when the GSD is known).")
    area_m2: float | None = Field(default=None, ge=0, description="Area in square metres (when the GSD is known).")
    category_hint: Category | None = Field(default=None, description="Heuristic category from colour and texture.")
    rank: int = Field(
        default=0, ge=0, description="Strength of the detector's evidence among the pair's changes: 0 is strongest."
    )
    labelled: bool = Field(
        default=False, description="The change comes from the user's change labels: it is real, never reject it."
    )
    label_type: ChangeType | None = Field(default=None, description="The change type the labels give, if any.")
    label_category: str | None = Field(default=None, description="The category the labels give, if any.")
    neighbours: list[str] = Field(default_factory=list, description="Phrases like 'next to the road'.")


class GridReviewContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair_id: str
    domain: Domain
    cell: str
    cell_box: BBox
    candidates: list[ChangeCue]


class ReviewedChange(Answer):
    """One decision of the grid review."""

    candidate_id: str | None = Field(description="The candidate decided on; null for a change the detector missed.")
    verdict: Literal["confirm", "reject", "add"]
    nuisance: Nuisance | None = Field(default=None, description="For reject: what explains the difference.")
    change_type: ChangeType | None = Field(default=None, description="appear, disappear or state_change.")
    category: ModelCategory = Field(default=None, description="One of the categories (see the schema's enum).")
    description: str | None = Field(
        default=None, description="Short expression with the absolute grid position, e.g. 'the red car in mid-right'."
    )
    box: BBox | None = Field(default=None, description="For add: the missed change's box in image pixels.")


class GridReview(Answer):
    """Answer of ``grid_review``: one entry per candidate of the cell, plus any missed change."""

    changes: list[ReviewedChange]


class CorrectionContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair_id: str
    round: int = Field(ge=1)
    change_type: ChangeType
    category: str | None
    description: str
    cue: ChangeCue
    mask_box: BBox | None = Field(description="Box of the current mask; None when the mask came out empty.")
    mask_area_fraction: float = Field(ge=0, le=1)
    agreement: float = Field(ge=0, le=1, description="IoU of the mask with the change map in its box.")
    stability: float = Field(ge=0, le=1)
    auditor_comment: str | None = Field(
        default=None, description='An auditor\'s comment on a triplet they sent back with "needs fix".'
    )
    auditor_hints: list[AuditHint] = Field(
        default_factory=list,
        description="Points and boxes the auditor placed to show the target; the mask was segmented again from them.",
    )

    @property
    def from_auditor(self) -> bool:
        """Whether this round answers an auditor's "needs fix" (a revision), not the agent's own check."""
        return self.auditor_comment is not None or bool(self.auditor_hints)


class CorrectionVerdict(Answer):
    """Answer of ``correction``."""

    action: Literal["accept", "fix", "discard"]
    reason: str = Field(default="", description="One sentence: why.")
    box: BBox | None = Field(default=None, description="For fix: a better box for the target.")
    positive_points: list[tuple[int, int]] = Field(default_factory=list, description="For fix: (x, y) on the target.")
    negative_points: list[tuple[int, int]] = Field(default_factory=list, description="For fix: (x, y) off it.")
    change_type: ChangeType | None = Field(default=None, description="For fix: the right change type.")
    description: str | None = Field(default=None, description="For fix: a corrected description.")


class BeautifyContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair_id: str
    domain: Domain
    change_type: ChangeType | None = Field(description="None for a no-target expression.")
    category: str | None
    description: str = Field(description="The absolute-position description to rewrite.")
    cue: ChangeCue | None = None
    count: int = Field(default=1, ge=1, description="How many objects the expression covers (multi-target).")
    wanted: int = Field(default=3, ge=1, le=8, description="How many different expressions to write.")


class Beautified(Answer):
    """Answer of ``beautify`` and ``disambiguate``."""

    expressions: list[str] = Field(min_length=1)


class DisambiguateContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair_id: str
    domain: Domain
    expression: str
    target: ChangeCue
    others: list[ChangeCue] = Field(description="Other targets of the pair the expression also fits.")
    change_type: ChangeType
    category: str | None
