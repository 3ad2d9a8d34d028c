"""The offline language model: deterministic answers from the measured facts, without a network or weights.

:class:`OfflineBackend` implements :class:`~craft_agent.llm.base.LLMBackend`. It never looks at the images of
a request: it answers from ``request.context`` (the same facts a remote model reads in its prompt), with the
rules of :mod:`craft_agent.agent.cues` (change type, category) and :mod:`craft_agent.agent.wording`
(descriptions, referring expressions). It cannot see beyond the detector, so it never adds a change.

Tasks and their rules:

- ``grid_review`` (:class:`GridReviewContext` -> :class:`GridReview`): one decision per candidate; a nuisance
  (:func:`nuisance_of`) is rejected, anything else confirmed with the type of
  :func:`~craft_agent.agent.cues.judge_change_type`, the cue's category hint and an absolute description.
  A candidate from the user's change labels is never rejected, and keeps the type and category they give.
- ``correction`` (:class:`CorrectionContext` -> :class:`CorrectionVerdict`): :func:`correction_verdict`; when
  it revises a triplet an auditor sent back, :func:`auditor_correction`.
- ``beautify`` (:class:`BeautifyContext` -> :class:`Beautified`): referring expressions.
- ``disambiguate`` (:class:`DisambiguateContext` -> :class:`Beautified`): distinguishing expressions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from craft_agent.agent.cues import (
    cue_change_type,
    infer_category,
    judge_change_type,
    looks_like_vehicle,
    presence_ratio,
    vegetated,
)
from craft_agent.agent.schemas import (
    Beautified,
    BeautifyContext,
    ChangeCue,
    CorrectionContext,
    CorrectionVerdict,
    DisambiguateContext,
    GridReview,
    GridReviewContext,
    Nuisance,
    ReviewedChange,
)
from craft_agent.agent.wording import absolute_description, distinguishing_expressions, referring_expressions
from craft_agent.llm.base import LLMError, LLMRequest, LLMResponse, LLMResponseError, T, TokenUsage
from craft_agent.llm.usage import UsageMeter
from craft_agent.models import BBox, ChangeType, Domain

# ---------------------------------------------------------------------------------------------------------
# Nuisances (grid review)
# ---------------------------------------------------------------------------------------------------------

NOISE_CONFIDENCE = 0.1
"""Detector confidence below which a candidate that stands out faintly in both dates is noise."""

FAINT = 18.0
"""Contrast (Lab units) below which a region stands out only faintly."""

OBJECT_CONTRAST = 6.0
"""Contrast (Lab units; half of :data:`~craft_agent.agent.cues.PRESENT`) an aerial object that appeared or
disappeared has at least in the date where it exists. Measured on 117 learned-detector regions that lie on
labelled LEVIR-CD and WHU-CD changes: none below it (2 % below 8); of 130 that lie off them, 21 % below it."""

UNCHANGED_SIMILARITY = 0.85
"""Structure similarity from which a region whose colour name and presence did not change is unchanged: the
difference the detector saw is a change of light (or nothing)."""

IDENTICAL_SIMILARITY = 0.95
"""Structure similarity from which a region whose colour name did not change is unchanged, however its
contrast changed (its surroundings may have been relit differently)."""

STEADY_RATIO = 1.5
"""Contrast ratio between the dates within which a region stands out equally in both."""

LIGHT_CHANGE = 2.0
"""Lightness change (Lab L) from which an unchanged region is called an illumination difference, not noise."""

SHIFTED_MATCH = 0.8
"""Correlation at which an object's content is found displaced in the other date (a strong match of the whole
box). Learned-detector regions of held-out LEVIR-CD and WHU-CD tiles and LEVIR-CD quiet windows: of 98 on the
labelled changes none reach it (the highest 0.60), of 62 off them 5 % (an unchanged building at a tile's edge,
shifted by 15 px between the dates, scores 0.95)."""
SLIVER_CONFIDENCE = 0.3
"""Detector confidence below which an elongated, unchanged-looking region is a misregistration sliver."""

SLIVER_SIMILARITY = 0.5
"""Structure similarity from which an elongated region shows the same edge in both dates (shifted)."""


def nuisance_of(cue: ChangeCue, domain: Domain = Domain.RS) -> Nuisance | None:
    """Why a candidate is not a real change, or None when it may be one. Rules in order:

    - ``noise``: detector confidence below :data:`NOISE_CONFIDENCE` and contrast below :data:`FAINT` in both
      dates;
    - ``noise``: aerial, an object that came or went (:func:`judge_change_type`) that does not stand out from
      its surroundings (contrast below :data:`OBJECT_CONTRAST`) in the date where it exists: nothing is there
      to have appeared or gone, whatever the detector's confidence (a learned model is confident on fields
      that only turned green);
    - ``registration``: aerial, an object that came or went whose content in the date where it exists is
      found in the other date within a few metres (:data:`SHIFTED_MATCH`; measured when the ground sample
      distance is known): it is still there, displaced by a misregistration or a tall building's lean;
      vehicles are exempt;
    - ``illumination``: the same colour name and the same structure in both dates (similarity >=
      :data:`IDENTICAL_SIMILARITY`, or >= :data:`UNCHANGED_SIMILARITY` with a presence ratio within
      :data:`STEADY_RATIO`), with a lightness change of at least :data:`LIGHT_CHANGE` (``noise`` when the
      lightness did not change either);
    - ``registration``: an elongated sliver of low confidence (< :data:`SLIVER_CONFIDENCE`) with the same
      colour name and a shared structure (>= :data:`SLIVER_SIMILARITY`): an edge seen twice, shifted;
    - ``season``: a large, diffuse (irregular) region that is vegetation in both dates: only its greenness
      changed.

    Thresholds were set on generated scenes (384 px), where these rules reject about a third (aerial) to a
    half (street) of the candidates that lie outside every real change, and 1 to 1.5 % of those that match one.
    """
    similarity = cue.structure_similarity or 0.0
    ratio = presence_ratio(cue)
    if cue.confidence < NOISE_CONFIDENCE and max(cue.contrast_before, cue.contrast_after) < FAINT:
        return "noise"
    if domain != Domain.NS:
        judged = judge_change_type(cue, domain).change_type
        if _stands_out_in_its_date(cue, judged) < OBJECT_CONTRAST:
            return "noise"
        if _found_shifted(cue, judged, domain) >= SHIFTED_MATCH:
            return "registration"
    same_look = cue.colour_before == cue.colour_after
    steady = 1 / STEADY_RATIO <= ratio <= STEADY_RATIO
    if same_look and (similarity >= IDENTICAL_SIMILARITY or (similarity >= UNCHANGED_SIMILARITY and steady)):
        return "illumination" if abs(cue.brightness_change) >= LIGHT_CHANGE else "noise"
    if (
        cue.shape == "elongated"
        and cue.confidence < SLIVER_CONFIDENCE
        and same_look
        and similarity >= SLIVER_SIMILARITY
    ):
        return "registration"
    if (
        cue.size in ("large", "huge")
        and cue.shape == "irregular"
        and vegetated(cue, later=False)
        and vegetated(cue, later=True)
    ):
        return "season"
    return None


def _found_shifted(cue: ChangeCue, change_type: ChangeType, domain: Domain) -> float:
    """How well an appeared (disappeared) object's content in the later (earlier) image is found in the other
    image nearby (:func:`~craft_agent.agent.cues.shifted_match`); -1 when not measured, for a state change, and
    for a vehicle (a car that moved a few metres did come and go)."""
    if looks_like_vehicle(cue, domain) or change_type is ChangeType.STATE_CHANGE:
        return -1.0
    found = cue.shifted_match_after if change_type is ChangeType.APPEAR else cue.shifted_match_before
    return -1.0 if found is None else found


def _stands_out_in_its_date(cue: ChangeCue, change_type: ChangeType) -> float:
    """The contrast of an appeared (disappeared) object in the later (earlier) image; infinite for a state change,
    which need not stand out in either (a ploughed field is the whole field)."""
    if change_type is ChangeType.APPEAR:
        return cue.contrast_after
    if change_type is ChangeType.DISAPPEAR:
        return cue.contrast_before
    return math.inf


def review_grid_cell(context: GridReviewContext) -> GridReview:
    """The grid review of one cell: every candidate rejected as a nuisance or confirmed with its type,
    category and absolute description (never an added change: the rules see only the detector's candidates)."""
    return GridReview(changes=[review_cue(cue, context.domain) for cue in context.candidates])


def review_cue(cue: ChangeCue, domain: Domain) -> ReviewedChange:
    """The rules' verdict on one candidate: rejected as the nuisance that explains it (never a labelled one),
    else confirmed (:func:`confirmed_change`). The grid review and the count of changes beyond its reach
    (``nodes._unreviewed``) both judge by this."""
    nuisance = None if cue.labelled else nuisance_of(cue, domain)
    if nuisance is not None:
        return ReviewedChange(candidate_id=cue.candidate_id, verdict="reject", nuisance=nuisance)
    return confirmed_change(cue, domain)


def confirmed_change(cue: ChangeCue, domain: Domain) -> ReviewedChange:
    """A candidate confirmed with its type (the labels' when they give it, else judged from the cue), category
    and absolute description."""
    change_type = cue_change_type(cue, domain)
    category = cue.label_category or cue.category_hint or infer_category(cue, change_type, domain)
    return ReviewedChange(
        candidate_id=cue.candidate_id,
        verdict="confirm",
        change_type=change_type,
        category=category,
        description=absolute_description(cue, change_type, category, domain),
    )


# ---------------------------------------------------------------------------------------------------------
# Correction
# ---------------------------------------------------------------------------------------------------------

ACCEPT_AGREEMENT = 0.5
"""Agreement (IoU of the mask with the change map in its box) from which a stable mask is accepted."""

ACCEPT_STABILITY = 0.75
"""Stability from which a mask that agrees is accepted."""

LOW_AGREEMENT = 0.3
"""Agreement below which a mask gets one fix (a new box and a point on the target)."""

LAST_AGREEMENT = 0.15
"""After the fix round, the agreement a mask needs to be accepted rather than discarded."""

TINY_MASK = 0.15
"""A mask smaller than this share of the candidate's own area is tiny: discarded."""

SPILL = 2.0
"""A mask whose box is this many times the candidate's box (or lies half outside it) spills: fixed."""


def _centre_point(box: BBox) -> tuple[int, int]:
    return ((box.x0 + box.x1 - 1) // 2, (box.y0 + box.y1 - 1) // 2)


def correction_verdict(context: CorrectionContext) -> CorrectionVerdict:
    """Accept, fix or discard a mask (thresholds are this module's constants):

    - discard an empty mask, or one smaller than :data:`TINY_MASK` of the candidate's area;
    - fix a mask that spills far outside the candidate's box (mask box at least :data:`SPILL` times the
      candidate's box, or half of it outside): the candidate's box, which is tighter, with a positive point at
      its centre;
    - accept a mask with agreement >= :data:`ACCEPT_AGREEMENT` and stability >= :data:`ACCEPT_STABILITY`;
    - in round 1, fix a mask whose change type the cue contradicts (the type the cue reads under both
      domains' rules, since the context does not name the domain), and one with agreement below
      :data:`LOW_AGREEMENT` (box and centre point);
    - from round 2 on, accept a mask with agreement >= :data:`LAST_AGREEMENT`, discard the rest;
    - accept anything else (usable agreement, somewhat unstable).

    A revision after an auditor's "needs fix" follows :func:`auditor_correction` instead: the mask was already
    segmented again where the auditor showed the target, and the rules above judge the agent's own masks.
    """
    if context.from_auditor:
        return auditor_correction(context)
    cue = context.cue
    if context.mask_box is None or context.mask_area_fraction <= 0.0:
        return CorrectionVerdict(action="discard", reason="The mask came out empty.")
    if context.mask_area_fraction < TINY_MASK * cue.area_fraction:
        return CorrectionVerdict(action="discard", reason="The mask covers only a sliver of the change.")
    mask_box, box = context.mask_box, cue.box
    outside = mask_box.area - mask_box.intersection_area(box)
    if context.round == 1 and (mask_box.area >= SPILL * box.area or outside >= 0.5 * mask_box.area):
        return CorrectionVerdict(
            action="fix",
            reason="The mask spills far outside the change; segment again inside its box.",
            box=box,
            positive_points=[_centre_point(box)],
        )
    if context.agreement >= ACCEPT_AGREEMENT and context.stability >= ACCEPT_STABILITY:
        return CorrectionVerdict(action="accept", reason="The mask covers the change and is stable.")
    if context.round == 1:
        # the context does not say the domain: only a type both domains' rules agree on overrides the review
        judged, street = judge_change_type(cue, Domain.RS), judge_change_type(cue, Domain.NS)
        if judged.change_type == street.change_type != context.change_type:
            return CorrectionVerdict(
                action="fix",
                reason=f"The change looks like {judged.change_type.value}: {judged.reason}.",
                change_type=judged.change_type,
            )
        if context.agreement < LOW_AGREEMENT:
            return CorrectionVerdict(
                action="fix",
                reason="The mask agrees poorly with the change; segment again from its box and centre.",
                box=box,
                positive_points=[_centre_point(box)],
            )
        return CorrectionVerdict(action="accept", reason="The mask agrees well enough with the change.")
    if context.agreement >= LAST_AGREEMENT:
        return CorrectionVerdict(action="accept", reason="After a fix the mask agrees well enough.")
    return CorrectionVerdict(action="discard", reason="Even after a fix the mask does not match the change.")


TYPE_WORDS: dict[ChangeType, tuple[str, ...]] = {
    ChangeType.APPEAR: ("appear", "appears", "appeared", "built", "constructed"),
    ChangeType.DISAPPEAR: ("disappear", "disappears", "disappeared", "demolished", "removed", "gone", "vanished"),
    ChangeType.STATE_CHANGE: ("state change", "changed state", "state_change", "repainted", "resurfaced"),
}
"""Words by which an auditor's comment names a change type (whole words, any case)."""


def change_type_named(comment: str) -> ChangeType | None:
    """The change type a comment names by :data:`TYPE_WORDS`; None when it names none, or several (\"it did not
    appear, it disappeared\" is beyond these rules)."""
    text = comment.lower()
    named = {
        change_type
        for change_type, words in TYPE_WORDS.items()
        if any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)
    }
    return named.pop() if len(named) == 1 else None


def auditor_correction(context: CorrectionContext) -> CorrectionVerdict:
    """The revision of a triplet an auditor sent back with "needs fix" (the offline rules cannot read a
    comment, only the change type it names):

    - fix the change type when the comment names exactly one other type (:func:`change_type_named`);
    - accept otherwise: where the auditor placed points or a box the mask was already segmented again from
      them; a comment that names no change type is left for the auditors, who see it again on the page.
    """
    named = change_type_named(context.auditor_comment or "")
    if named is not None and named != context.change_type:
        return CorrectionVerdict(
            action="fix", reason=f"The auditor's comment says the change is {named.value}.", change_type=named
        )
    if context.auditor_hints:
        return CorrectionVerdict(action="accept", reason="The mask was segmented again where the auditor showed.")
    return CorrectionVerdict(
        action="accept", reason="The comment names no change type, the one thing the offline rules can act on."
    )


# ---------------------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------------------


def _beautify(context: BeautifyContext) -> Beautified:
    return Beautified(expressions=referring_expressions(context, context.wanted))


def _disambiguate(context: DisambiguateContext) -> Beautified:
    return Beautified(expressions=distinguishing_expressions(context, 3))


_TASKS: dict[str, tuple[type[BaseModel], Callable[[Any], BaseModel]]] = {
    "grid_review": (GridReviewContext, review_grid_cell),
    "correction": (CorrectionContext, correction_verdict),
    "beautify": (BeautifyContext, _beautify),
    "disambiguate": (DisambiguateContext, _disambiguate),
}


class OfflineBackend:
    """The deterministic offline "language model": rules over the request's context, no network, no weights.

    Args:
        usage: meter that each answer is counted in (zero tokens, no money), or None.

    ``complete`` answers ``grid_review``, ``correction``, ``beautify`` and ``disambiguate`` requests whose
    ``context`` is the matching context model of :mod:`craft_agent.agent.schemas`.
    """

    name = "offline"
    model_id = "craft-offline-1"

    def __init__(self, usage: UsageMeter | None = None) -> None:
        self.usage = usage

    def complete(self, request: LLMRequest[T]) -> LLMResponse[T]:
        """Answer one request from its context.

        Returns:
            The answer parsed as ``request.response_model``, its JSON as ``raw_text``, zero tokens and cost,
            ``cached=False``, ``attempts=1``.

        Raises:
            LLMError: for a task this backend does not know, or a context of the wrong type (or none).
            LLMResponseError: when the answer does not fit the request's response model.
        """
        handler = _TASKS.get(request.task)
        if handler is None or not isinstance(request.context, handler[0]):
            expected = handler[0].__name__ if handler else None
            got = type(request.context).__name__
            raise LLMError(
                f"the offline LLM backend cannot answer task {request.task!r} with a {got} context"
                + (f" (it needs a {expected})." if expected else f"; it knows only {', '.join(sorted(_TASKS))}."),
                hint="pass the task's context model as LLMRequest.context, or configure an OpenAI-compatible "
                "endpoint (CRAFT_LLM_BASE_URL, CRAFT_LLM_MODEL) for other tasks.",
                task=request.task,
            )
        answer = handler[1](request.context)
        raw_text = answer.model_dump_json()
        try:
            parsed = request.response_model.model_validate_json(raw_text)
        except ValidationError as exc:
            raise LLMResponseError(
                f"the offline answer to task {request.task!r} does not fit {request.response_model.__name__}: {exc}",
                hint=f"ask task {request.task!r} for {type(answer).__name__}.",
                task=request.task,
            ) from exc
        usage = TokenUsage()
        if self.usage is not None:
            self.usage.charge(usage, 0.0)
        return LLMResponse(
            parsed=parsed, raw_text=raw_text, usage=usage, cost_usd=0.0, cached=False, attempts=1, model=self.model_id
        )
