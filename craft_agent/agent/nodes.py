"""The agent's steps as small functions from state to a partial update.

Each node takes the run's :class:`AgentResources` (catalog, images, language model, mask engine, prompts,
configuration) and the typed :class:`~craft_agent.agent.state.AgentState`; the graph (``graph.py``) binds the
resources and wires the nodes. The language model is only ever reached through :meth:`AgentResources.ask`,
which charges the drafter's usage meter once per step and records each target's share for its provenance.
The pure logic lives beside: which targets to keep and how to tell them apart in ``targets.py``, groups and
no-target changes in ``compose.py``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, Field

from craft_agent.agent.compose import absent_changes, same_kind_groups
from craft_agent.agent.cues import change_cues
from craft_agent.agent.offline import review_cue
from craft_agent.agent.prompts import PromptLibrary
from craft_agent.agent.schemas import (
    Beautified,
    BeautifyContext,
    ChangeCue,
    CorrectionContext,
    CorrectionVerdict,
    DisambiguateContext,
    GridReview,
    GridReviewContext,
)
from craft_agent.agent.state import AgentState, Rejection, Target
from craft_agent.agent.targets import (
    NextBeside,
    by_rank,
    by_relation,
    drop_duplicates,
    drop_shared_expressions,
    is_relational,
    keep_labelled,
    keep_within_budget,
    refers,
    relational_head,
    same_kind,
    visible,
)
from craft_agent.agent.wording import fix_agreement, is_leaky, mentions_grid
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change import TRAINED_DETECTORS
from craft_agent.change.stage import detect_candidates, evidence_rank, is_from_mode, proposal_mode, without_parts
from craft_agent.change.tiles import owns
from craft_agent.grid import all_cell_names, position_of_box
from craft_agent.llm.base import (
    LLMBackend,
    LLMImage,
    LLMRefusalError,
    LLMRequest,
    LLMRequestRejectedError,
    LLMResponse,
    LLMResponseError,
    LLMUnavailableError,
)
from craft_agent.llm.usage import UsageMeter
from craft_agent.masks import MaskEngine, MaskRequest
from craft_agent.masks.base import MaskScore
from craft_agent.models import (
    BBox,
    Category,
    ChangeCandidate,
    ChangeType,
    ImagePair,
    LLMUsage,
    Provenance,
    RLEMask,
    TileWindow,
    Triplet,
    candidate_id,
    triplet_id,
)

A = TypeVar("A", bound=BaseModel)


class AgentConfig(BaseModel):
    """How the agent works on a pair."""

    grid_rows: int = Field(default=3, ge=1, le=5)
    grid_cols: int = Field(default=3, ge=1, le=5)
    max_rounds: int = Field(default=2, ge=1, description="Correction rounds before a target is uncorrected.")
    expressions_per_target: int = Field(default=3, ge=1, le=8)
    max_targets_per_pair: int = Field(default=48, ge=1, description="Strongest candidates reviewed per pair.")
    multi_target: bool = Field(default=True, description="Also write group expressions for same-kind changes.")
    no_target_ratio: float = Field(default=0.1, ge=0, le=1, description="No-target expressions per target.")
    detector: str = "classical"
    checkpoint: str | None = Field(default=None, description="The learned detector's checkpoint file.")
    proposals: str = Field(default="auto", description="auto, labels or detector (see change.stage.proposal_mode).")
    snap: bool = Field(
        default=False, description="Refine label masks with the mask engine (change.labels.snap_to_image)."
    )
    budget: int | None = Field(
        default=None,
        ge=0,
        description="Most single-target triplets per pair in detector mode; None: scaled to the image area "
        "(see single_target_budget). Labels mode keeps every labelled object.",
    )
    categories: list[Category] | None = Field(
        default=None,
        description="Draft only changes of these categories (a building-change dataset: building); None: all. "
        "The others are rejected at the grid review, before any mask or wording is spent on them.",
    )

    def wants(self, category: str | None) -> bool:
        """Whether a change of ``category`` (a category or one of its words) is to be drafted."""
        return self.categories is None or Category.parse(category) in self.categories


BUDGET_PER_MEGAPIXEL_SIDE = 8
"""Single-target triplets kept on a 1024 x 1024 tile in detector mode (MTRefSeg-21K averages 2.2 expressions
per pair, and every kept triplet costs an auditor's look)."""


ENDPOINT_DOWN_AFTER = 3
"""Steps in a row whose endpoint stayed unreachable (retries spent) after which the pair fails instead of
being drafted offline: by then the endpoint is down, not flaky."""

MIN_BUDGET = 6
"""Budget floor: a small crop can still show a handful of real changes."""


def single_target_budget(config: AgentConfig, width: int, height: int) -> int:
    """Most single-target triplets per pair in detector mode: ``config.budget``, or 8 on a 1024 x 1024 tile
    scaled with the image's side (16 at 2048 px), and never under :data:`MIN_BUDGET` on small images."""
    if config.budget is not None:
        return config.budget
    return max(MIN_BUDGET, round(BUDGET_PER_MEGAPIXEL_SIDE * ((width * height) ** 0.5) / 1024))


@dataclass
class AgentResources:
    """What the nodes work with; one per run."""

    catalog: Catalog
    store: ImageStore
    llm: LLMBackend
    engine: MaskEngine
    prompts: PromptLibrary
    config: AgentConfig = field(default_factory=AgentConfig)
    package_versions: dict[str, str] = field(default_factory=dict)
    fallback: LLMBackend | None = None
    meter: UsageMeter = field(default_factory=UsageMeter)
    """This drafter's language steps, each counted once as it was answered (by the model, its cache or the
    fallback); the run summary reads it. A backend's own meter, if it has one, keeps the run's budget."""
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    """Fallbacks by the error that caused them (``LLMResponseError``, ``LLMUnavailableError``...)."""
    unavailable_in_a_row: int = 0
    last_step: tuple[str, str, LLMUsage] | None = None
    """(task, backend that answered, what it spent) of the latest step."""
    _images: dict[str, tuple[ImagePair, np.ndarray, np.ndarray]] = field(default_factory=dict)
    _windows: dict[str, list[TileWindow]] = field(default_factory=dict)

    def pair(self, pair_id: str) -> tuple[ImagePair, np.ndarray, np.ndarray]:
        """The pair record and both images (kept for the pair being worked on)."""
        if pair_id not in self._images:
            self._images.clear()
            record = self.catalog.get_pair(pair_id)
            self._images[pair_id] = (record, self.store.load(record.pre), self.store.load(record.post))
        return self._images[pair_id]

    def tile_windows(self, pair: ImagePair) -> list[TileWindow]:
        """The tile windows of the pair's scene (empty for an untiled pair), read once per scene group."""
        if pair.tile is None:
            return []
        if pair.group_id not in self._windows:
            self._windows[pair.group_id] = [
                p.tile for p in self.catalog.iter_pairs() if p.group_id == pair.group_id and p.tile is not None
            ]
        return self._windows[pair.group_id]

    def ask(
        self,
        task: str,
        context: BaseModel,
        answer: type[A],
        images: list[np.ndarray],
        targets: list[Target],
        **fields: Any,
    ) -> A:
        """One language-model call; its usage is shared among ``targets``."""
        prompt = self.prompts[task]
        request = LLMRequest(
            task=task,
            system=self.prompts["system"].text,
            prompt=prompt.render(**fields),
            response_model=answer,
            prompt_hash=prompt.sha256,
            images=[LLMImage.from_array(image) for image in images],
            context=context,
        )
        try:
            response: LLMResponse[A] = self.llm.complete(request)
            answered_by = self.llm.name
            self.unavailable_in_a_row = 0
        except (LLMResponseError, LLMRefusalError, LLMRequestRejectedError, LLMUnavailableError) as exc:
            # A weak model's unusable answer (still malformed after the repair re-ask, a refusal, this request
            # rejected, e.g. too long for its context) or a fault that outlasted the retries (429, 5xx, a
            # timeout, a truncated body) must not sink the pair: this step is decided by the fallback backend,
            # and the triplets it serves say so. An endpoint down for several steps in a row fails the pair
            # (it is recorded, and the next run resumes it) rather than draft everything offline.
            if self.fallback is None:
                raise
            if isinstance(exc, LLMUnavailableError):
                self.unavailable_in_a_row += 1
                if self.unavailable_in_a_row >= ENDPOINT_DOWN_AFTER:
                    raise
            response = self.fallback.complete(request)
            answered_by = f"{self.fallback.name}-fallback"
            self.fallbacks += 1
            self.fallback_reasons[type(exc).__name__] = self.fallback_reasons.get(type(exc).__name__, 0) + 1
        spent = self.meter.record(response)
        self.last_step = (task, answered_by, spent)
        self.charge(targets)
        return response.parsed

    @property
    def steps(self) -> int:
        """Language steps asked so far (answered by the model, its cache or the fallback)."""
        return self.meter.calls + self.meter.cached_hits

    def charge(self, targets: list[Target]) -> None:
        """Record on the targets the last step served their share of what it spent (the meter already counted
        it) and which backend answered it."""
        if self.last_step is None:
            return
        task, answered_by, spent = self.last_step
        share = spent.shared(len(targets))
        for target in targets:
            target.llm = target.llm + share
            earlier = target.steps.get(task)
            target.steps[task] = (
                answered_by if earlier in (None, answered_by) else "+".join(sorted({*earlier.split("+"), answered_by}))
            )


def _cell_box(cell: str, rows: int, cols: int, width: int, height: int) -> BBox:
    index = all_cell_names(rows, cols).index(cell)
    row, col = divmod(index, cols)
    return BBox(
        x0=col * width // cols, y0=row * height // rows, x1=(col + 1) * width // cols, y1=(row + 1) * height // rows
    )


def _crop(image: np.ndarray, box: BBox, margin: int = 0) -> np.ndarray:
    height, width = image.shape[:2]
    return image[
        max(0, box.y0 - margin) : min(height, box.y1 + margin), max(0, box.x0 - margin) : min(width, box.x1 + margin)
    ]


def prepare(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """Candidates of the pair (detected and segmented now if the candidates stage has not run), their cues,
    and the grid cells that hold them; the chosen candidates stay in the state for the later nodes."""
    pair, pre, post = res.pair(state.pair_id)
    config = res.config
    mode = proposal_mode(config.proposals, pair)
    candidates = [c for c in res.catalog.candidates_for(pair.id) if is_from_mode(c, mode, config.detector)]
    if not candidates:
        checkpoint = Path(config.checkpoint) if config.checkpoint else None
        candidates = detect_candidates(config.detector, res.engine, pair, pre, post, mode, checkpoint, config.snap)
        res.catalog.add_candidates(candidates)
    # tiles of one scene overlap: a change seen on several of them is drafted once, on the tile that owns it
    windows = res.tile_windows(pair)
    candidates = [c for c in candidates if owns(c.box, pair.tile, windows)]
    ranked = sorted(candidates, key=evidence_rank)
    budget = None if mode == "labels" else single_target_budget(config, pair.width, pair.height)
    # Labels are the truth: every labelled object is reviewed. Detections are reviewed strongest first (parts of
    # a stronger one left out), a few more than the budget so that those the review rejects can be replaced.
    chosen, parts, beyond = (
        (ranked, 0, []) if budget is None else _reviewed(ranked, min(config.max_targets_per_pair, 3 * budget))
    )
    measured = change_cues(chosen, pre, post, domain=pair.domain, gsd=pair.gsd_m)
    cues = {
        c.id: cue.model_copy(update={"rank": rank}) for rank, (c, cue) in enumerate(zip(chosen, measured, strict=True))
    }
    unreviewed = _unreviewed(beyond, pair, pre, post, config, start=len(chosen))
    order = all_cell_names(res.config.grid_rows, res.config.grid_cols)
    cells = sorted({_cell_of(c.box, res.config, pair) for c in chosen}, key=order.index)
    if mode == "detector" and res.llm.name != "offline":
        # CRAFT's grid stage as published: the model looks at every cell, also where the detector saw nothing,
        # and may add the changes it missed (the offline rules only see the detector's candidates)
        cells = order
    return {
        "candidates": chosen,
        "cues": cues,
        "cells": cells,
        "cell_index": 0,
        "targets": [],
        "rejected": [],
        "round": 0,
        "proposals": mode,
        "budget": budget,
        "unreviewed": unreviewed,
        "notes": [
            f"{len(candidates)} candidates ({mode}), {len(chosen)} reviewed"
            + (f", {parts} left out as parts, edges or shadows of stronger ones" if parts else "")
            + (f", {len(beyond)} beyond the review ({len(unreviewed)} of them counted as changes)" if beyond else "")
        ],
    }


def _reviewed(ranked: list[ChangeCandidate], limit: int) -> tuple[list[ChangeCandidate], int, list[ChangeCandidate]]:
    """The first ``limit`` candidates (strongest first) that are no part of a stronger one, how many were left
    out as parts, and the candidates beyond the review's reach (no parts either)."""
    whole, parts = without_parts(ranked)
    return whole[:limit], parts, whole[limit:]


def _unreviewed(
    beyond: list[ChangeCandidate], pair: ImagePair, pre: np.ndarray, post: np.ndarray, config: AgentConfig, start: int
) -> list[Target]:
    """The candidates beyond the review's reach that the offline rules confirm (no nuisance, a wanted category),
    as targets a reader sees but nobody drafts: a crowded tile's 100 new houses are reviewed 24 at a time, and
    "the easternmost new house" must be true among all of them."""
    if not beyond:
        return []
    found = []
    measured = change_cues(beyond, pre, post, domain=pair.domain, gsd=pair.gsd_m)
    for rank, (candidate, cue) in enumerate(zip(beyond, measured, strict=True), start=start):
        confirmed = review_cue(cue, pair.domain)
        if confirmed.verdict != "confirm" or confirmed.change_type is None or not config.wants(confirmed.category):
            continue
        found.append(
            Target(
                id=candidate.id,
                candidate_id=candidate.id,
                change_type=confirmed.change_type,
                category=confirmed.category,
                description=confirmed.description or "",
                box=candidate.box,
                mask=candidate.mask,
                cue=cue.model_copy(update={"rank": rank}),
            )
        )
    return found


def _cell_of(box: BBox, config: AgentConfig, pair: ImagePair) -> str:
    return position_of_box(*box.as_xyxy(), pair.width, pair.height, config.grid_rows, config.grid_cols)


def review_cell(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """CRAFT stage 1 (grid-position enhancement) for one cell: confirm, reject or add changes."""
    pair, pre, post = res.pair(state.pair_id)
    cell = state.cells[state.cell_index]
    config = res.config
    in_cell = [c for c in state.cues.values() if _cell_of(c.box, config, pair) == cell]
    cell_box = _cell_box(cell, config.grid_rows, config.grid_cols, pair.width, pair.height)
    context = GridReviewContext(pair_id=pair.id, domain=pair.domain, cell=cell, cell_box=cell_box, candidates=in_cell)
    new_targets: list[Target] = []
    review = res.ask(
        "grid_review",
        context,
        GridReview,
        [_crop(pre, cell_box), _crop(post, cell_box)],
        new_targets,
        cell=cell,
        rows=config.grid_rows,
        cols=config.grid_cols,
        domain=pair.domain.value,
        cell_box=f"x {cell_box.x0} to {cell_box.x1}, y {cell_box.y0} to {cell_box.y1}",
        candidates=json.dumps([c.model_dump(mode="json") for c in in_cell], indent=1),
    )
    by_id = {c.candidate_id: c for c in in_cell}
    rejected = list(state.rejected)
    for index, change in enumerate(review.changes):
        if change.verdict == "reject":
            rejected.append(Rejection(candidate_id=change.candidate_id, nuisance=change.nuisance, cell=cell))
            continue
        cue = by_id.get(change.candidate_id or "")
        box = _inside_image(change.box, pair) if change.verdict == "add" else (cue.box if cue else None)
        if box is None or (change.verdict == "confirm" and cue is None):
            continue  # an answer about a candidate that is not in this cell, or a box off the image: ignored
        if cue is None:
            cue = _added_cue(cell, box, change.change_type)
        new_targets.append(
            Target(
                id=change.candidate_id or f"added-{cell}-{index}",
                candidate_id=change.candidate_id,
                change_type=change.change_type or cue.detector_type,
                category=change.category or cue.category_hint,
                description=change.description or f"the change in the {cell}",
                box=box,
                cue=cue,
            )
        )
    keep_labelled(in_cell, new_targets, rejected, pair.domain)
    res.charge(new_targets)  # the review served the targets it produced
    unwanted = [t for t in new_targets if not config.wants(t.category)]
    rejected.extend(Rejection(candidate_id=t.candidate_id, cell=cell, reason="category") for t in unwanted)
    new_targets = [t for t in new_targets if config.wants(t.category)]
    return {
        "targets": [*state.targets, *new_targets],
        "rejected": rejected,
        "cell_index": state.cell_index + 1,
    }


def _inside_image(box: BBox | None, pair: ImagePair) -> BBox | None:
    """A model's box clipped to the image, or None when nothing of it is left."""
    if box is None:
        return None
    x0, y0 = min(box.x0, pair.width), min(box.y0, pair.height)
    x1, y1 = min(box.x1, pair.width), min(box.y1, pair.height)
    return BBox(x0=x0, y0=y0, x1=x1, y1=y1) if x1 > x0 and y1 > y0 else None


def _added_cue(cell: str, box: BBox, change_type: Any) -> ChangeCue:
    return ChangeCue(
        candidate_id="",
        grid_cell=cell,
        box=box,
        detector_type=change_type or ChangeType.APPEAR,
        confidence=0.0,
        area_fraction=0.0,
        size="small",
        shape="irregular",
        colour_before="unknown",
        colour_after="unknown",
        surroundings_before="unknown",
        surroundings_after="unknown",
        greenness_before=0.0,
        greenness_after=0.0,
        texture_before=0.0,
        texture_after=0.0,
        contrast_before=0.0,
        contrast_after=0.0,
        brightness_change=0.0,
    )


def segment(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """CRAFT stage 2: a mask for every pending target without one, on the right date."""
    pair, pre, post = res.pair(state.pair_id)
    targets = state.working_targets()
    grounded: list[ChangeCandidate] = []
    for target in targets:
        if target.status != "pending" or target.mask is not None:
            continue
        candidate = state.candidate(target.candidate_id)
        # a label's mask is exact whatever the type; a detection's mask was made for its detected type
        reuse = (
            candidate is not None
            and (target.cue.labelled or candidate.change_type == target.change_type)
            and target.rounds == 0
        )
        if reuse and candidate is not None and candidate.mask is not None:
            target.mask = candidate.mask
            target.scores = dict(candidate.scores)
            continue
        seed = None
        if candidate is not None and candidate.mask is not None and target.rounds == 0:
            seed = candidate.mask.to_array()
        request = MaskRequest.for_pair(
            pair, pre, post, target.change_type, target.box, seed, target.positive_points, target.negative_points
        )
        result = res.engine.segment(request)
        target.mask = result.mask
        target.scores = dict(result.scores)
        if target.candidate_id is None and not result.mask.is_empty:
            # a change the model added: grounded by the mask engine and kept as a candidate, for provenance
            added = _grounded_candidate(pair, target, result.mask, result.engine)
            res.catalog.add_candidates([added])
            target.candidate_id = added.id
            grounded.append(added)
    update: dict[str, Any] = {"targets": targets}
    if grounded:
        update["candidates"] = [*state.candidates, *grounded]
    return update


def _grounded_candidate(pair: ImagePair, target: Target, mask: RLEMask, engine: str) -> ChangeCandidate:
    """The candidate record of a change the language model added and the mask engine segmented."""
    return ChangeCandidate(
        id=candidate_id(pair.id, target.box.as_xyxy(), target.change_type.value, "llm"),
        pair_id=pair.id,
        change_type=target.change_type,
        box=mask.bbox() or target.box,
        grid_cell=target.cue.grid_cell,
        category=target.category,
        area=mask.area,
        mask=mask,
        scores=dict(target.scores),
        source=f"llm:grid_review+{engine}",
    )


def mask_overlay(pre: np.ndarray, post: np.ndarray, mask: np.ndarray, box: BBox) -> list[np.ndarray]:
    """Both images cropped around ``box`` with the mask's outline drawn in red: what the correction step sees."""
    images = []
    for image in (pre, post):
        drawn = image.copy()
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(drawn, contours, -1, (255, 0, 0), 1)
        images.append(_crop(drawn, box, margin=max(16, box.width // 2, box.height // 2)))
    return images


def ask_correction(
    res: AgentResources, context: CorrectionContext, images: list[np.ndarray], target: Target
) -> CorrectionVerdict:
    """The ``correction`` step on one target: ``context`` rendered into the prompt (with the auditor's comment
    and marks when it revises a triplet sent back by an auditor), ``images`` the mask drawn on the pair."""
    return res.ask(
        "correction",
        context,
        CorrectionVerdict,
        images,
        [target],
        description=context.description,
        change_type=context.change_type.value,
        category=context.category,
        round=context.round,
        mask_box=context.mask_box,
        mask_area_fraction=context.mask_area_fraction,
        agreement=context.agreement,
        stability=context.stability,
        cue=context.cue.model_dump_json(),
        auditor_comment=json.dumps(context.auditor_comment) if context.auditor_comment else "none",
        auditor_hints="; ".join(hint.describe() for hint in context.auditor_hints) or "none",
    )


def correct(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """CRAFT stage 3: one correction round for every pending target."""
    pair, pre, post = res.pair(state.pair_id)
    targets = state.working_targets()
    round_number = state.round + 1
    for target in targets:
        if target.status != "pending":
            continue
        if target.cue.labelled and target.mask is not None and not target.mask.is_empty:
            target.status = "accepted"  # the label's own mask: nothing to correct
            continue
        mask = target.mask or RLEMask.empty(pair.height, pair.width)
        context = CorrectionContext(
            pair_id=pair.id,
            round=round_number,
            change_type=target.change_type,
            category=target.category,
            description=target.description,
            cue=target.cue,
            mask_box=mask.bbox(),
            mask_area_fraction=mask.area / (pair.width * pair.height),
            agreement=float(np.clip(target.scores.get(MaskScore.AGREEMENT, 0.0), 0, 1)),
            stability=float(np.clip(target.scores.get(MaskScore.STABILITY, 0.0), 0, 1)),
        )
        verdict = ask_correction(res, context, mask_overlay(pre, post, mask.to_array(), target.box), target)
        target.rounds += 1
        if verdict.action == "accept":
            target.status = "accepted"
        elif verdict.action == "discard":
            target.status = "discarded"
        elif target.rounds >= res.config.max_rounds:
            # Never silently accepted: recorded as uncorrected for the auditors.
            target.status = "uncorrected"
        else:
            target.box = verdict.box or target.box
            target.change_type = verdict.change_type or target.change_type
            target.description = verdict.description or target.description
            target.positive_points = list(verdict.positive_points)
            target.negative_points = list(verdict.negative_points)
            target.mask = None
    return {"targets": targets, "round": round_number}


def beautify(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """CRAFT stage 4: natural referring expressions, no grid words, no leakage."""
    pair, _, _ = res.pair(state.pair_id)
    targets = drop_duplicates(state.working_targets())
    duplicates = [
        Rejection(candidate_id=t.candidate_id, cell=t.cue.grid_cell, reason="duplicate")
        for t in targets
        if t.duplicate_of
    ]
    targets = keep_within_budget(targets, state.budget)
    wanted = res.config.expressions_per_target
    for target in targets:
        if not target.kept:
            continue
        target.expressions = ask_expressions(res, pair, target, wanted, cue=target.cue)
        if not target.expressions:
            target.leave_out("unnamed")
    return {"targets": targets, "rejected": [*state.rejected, *duplicates]}


def ask_expressions(
    res: AgentResources, pair: ImagePair, target: Target, wanted: int, count: int = 1, cue: ChangeCue | None = None
) -> list[str]:
    """Ask for ``wanted`` expressions of ``target`` (``count`` objects; ``cue`` the measured facts, if given)."""
    context = BeautifyContext(
        pair_id=pair.id,
        domain=pair.domain,
        change_type=target.change_type,
        category=target.category,
        description=target.description,
        cue=cue,
        count=count,
        wanted=wanted,
    )
    answer = res.ask(
        "beautify",
        context,
        Beautified,
        [],
        [target],
        wanted=wanted,
        description=target.description,
        change_type=target.change_type.value,
        category=target.category,
        count=count,
        cue=cue.model_dump_json() if cue else "{}",
    )
    return clean_expressions(answer.expressions, plural=count > 1)


def clean_expressions(expressions: list[str], plural: bool = False) -> list[str]:
    """Expressions without extra spaces, leaks, grid words or repeats, with number agreement and articles
    fixed (a model may write "the roofs that looks different now")."""
    seen: list[str] = []
    for expression in expressions:
        text = fix_agreement(" ".join(expression.split()), plural)
        if text and not is_leaky(text) and not mentions_grid(text) and text.lower() not in {s.lower() for s in seen}:
            seen.append(text)
    return seen


def ensure_unique(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """Stage 5: every expression must single out its target among the pair's other targets, and be true of it.

    Each expression is read as a reader would (:func:`~craft_agent.agent.targets.refers`): among the kept
    targets of the same change type and category, those its colour, size, shape and landmark words fit, then
    its position and comparison words ("westernmost", "larger") among those. One that fits another target
    too is rewritten with a distinguishing attribute; one that still does not refer gets the target's rank
    from one side among the targets it fits ("the second building from the west that appeared"), or along
    its row, column or the image edge it is cut by; one still without gets placed beside a neighbour named so
    ("the new house just east of the northernmost new house", :func:`~craft_agent.agent.targets.by_relation`);
    a target left without an expression that refers is dropped (a labelled one stays in its group's
    multi-target triplet).
    """
    pair, _, _ = res.pair(state.pair_id)
    targets = state.working_targets()
    kept = [t for t in targets if t.kept]
    # what a reader of the pair sees: also the changes left out for the budget or beyond the review's reach
    seen = visible(targets, state.unreviewed)
    domain, image = pair.domain, (pair.width, pair.height)
    drafted = {t.id: (list(t.expressions), t.status) for t in kept}
    for target in kept:
        rivals = same_kind(target, seen)
        unique = [e for e in target.expressions if refers(e, target, rivals, domain, image)]
        if rivals and len(unique) < len(target.expressions):
            context = DisambiguateContext(
                pair_id=pair.id,
                domain=domain,
                expression=target.expressions[0],
                target=target.cue,
                others=[o.cue for o in rivals],
                change_type=target.change_type,
                category=target.category,
            )
            answer = res.ask(
                "disambiguate",
                context,
                Beautified,
                [],
                [target],
                expression=target.expressions[0],
                target=target.cue.model_dump_json(),
                others=json.dumps([o.cue.model_dump(mode="json") for o in rivals[:5]]),
            )
            rewritten = [e for e in clean_expressions(answer.expressions) if refers(e, target, rivals, domain, image)]
            unique = clean_expressions(unique + rewritten)
        if not unique:
            ranked = by_rank(target.expressions, target, rivals, domain, image)
            unique = clean_expressions([ranked] if ranked and refers(ranked, target, rivals, domain, image) else [])
        target.expressions = unique
        if not unique:
            target.leave_out("unnamed")
    drop_shared_expressions([t for t in kept if t.status != "discarded"], domain, image, seen)
    # a target nothing of its own singles out may still be found beside a neighbour named above
    singles = [t for t in kept if not t.no_target and not t.member_ids]
    anchors: dict[str, Target] = {}
    for named in singles:
        if named.status == "discarded":
            continue
        for expression in (e for e in named.expressions if not is_relational(e, domain)):
            anchors[expression] = named
            # "the southernmost new house" names it as well as "the southernmost house that was built", and
            # reads better inside another expression (the clause would seem to tell of the related target)
            head = relational_head(expression, named.change_type) if " that " in expression else None
            if head and refers(head, named, same_kind(named, seen), domain, image):
                anchors.setdefault(head, named)
    walks: NextBeside = {}
    for target in singles:
        if target.status != "discarded" or not drafted[target.id][0]:
            continue
        rivals = same_kind(target, seen)
        related = by_relation(drafted[target.id][0], target, rivals, anchors, domain, walks)
        if related is not None and refers(related, target, rivals, domain, image, anchors):
            target.expressions, target.status, target.unnamed = [related], drafted[target.id][1], False
    return {"targets": targets}


def write_triplets(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """Drafted triplets with provenance into the catalog (ids are content hashes: re-runs add nothing)."""
    pair, _, _ = res.pair(state.pair_id)
    ids = []
    # The same for every triplet of the run: work them out once.
    prompt_hashes = res.prompts.hashes()
    mode = state.proposals
    config_hash = hashlib.sha256(res.config.model_dump_json().encode()).hexdigest()[:12]
    for target in state.targets:
        if not target.kept or target.mask is None or not target.expressions:
            continue
        change_type = None if target.no_target else target.change_type
        answered = set("+".join(target.steps.values()).split("+")) - {""}
        provenance = Provenance(
            backends={
                # the backend that really made the language steps: the model's name only when it made all
                "llm": "+".join(sorted(answered)) if answered - {res.llm.name} else res.llm.name,
                "proposals": mode,
                # a label's mask is the label itself; a detection's mask comes from the mask engine
                "masks": "labels" if target.cue.labelled else res.engine.name,
                **({"detector": res.config.detector} if mode == "detector" else {}),
            },
            model_ids={"llm": res.llm.model_id} if res.llm.name in answered or not answered else {},
            steps=dict(sorted(target.steps.items())),
            prompt_hashes=prompt_hashes,
            package_versions=res.package_versions,
            llm=target.llm.rounded(),
            config_hash=config_hash,
        )
        triplet = Triplet(
            id=triplet_id(pair.id, target.mask, change_type, target.category)
            if not target.no_target
            else triplet_id(pair.id, target.mask, target.change_type, f"absent:{target.category}"),
            pair_id=pair.id,
            mask=target.mask,
            expressions=target.expressions,
            change_type=change_type,
            category=target.category,
            candidate_ids=target.member_ids or ([target.candidate_id] if target.candidate_id else []),
            uncorrected=target.status == "uncorrected" or target.uncorrected_members > 0,
            provenance=provenance,
        )
        if triplet.id in ids:
            continue  # two targets converged on the same mask, type and category: one triplet
        if not res.catalog.has_triplet(triplet.id):
            res.catalog.upsert_triplet(triplet, reason="drafted by the agent")
        ids.append(triplet.id)
    return {"triplet_ids": ids}


def compose_extras(res: AgentResources, state: AgentState) -> dict[str, Any]:
    """Multi-target and no-target expressions, as in MTRefSeg-21K (the targets composed in ``compose.py``).

    Groups: kept targets of one change type and category (two or more) also get a plural expression whose
    mask is their union. No-target: for a share of the kept targets, a plausible change of the same
    category that did NOT happen (the opposite type, when no target of that kind exists), with an empty mask.
    """
    pair, _, _ = res.pair(state.pair_id)
    kept = [t for t in state.targets if t.kept and t.mask is not None]
    extras: list[Target] = []
    if res.config.multi_target:
        # "the buildings that were built" is all of them: also those left out for the budget or unnamed, and
        # those never reviewed when a trained detector found them (else no group of a kind with such members)
        others = [t for t in visible(state.targets, state.unreviewed) if not t.kept and t.mask is not None]
        unchecked = state.proposals == "detector" and res.config.detector in TRAINED_DETECTORS
        for group in same_kind_groups(kept, others, unchecked=unchecked):
            group.expressions = ask_expressions(
                res, pair, group, res.config.expressions_per_target, count=len(group.member_ids)
            )
            if group.expressions:
                extras.append(group)
    seen = [t for t in [*state.targets, *state.unreviewed] if not t.no_target]
    for absent in absent_changes(kept, res.config.no_target_ratio, pair.height, pair.width, pair.id, seen):
        absent.expressions = ask_expressions(res, pair, absent, 1)[:1]
        if absent.expressions:
            extras.append(absent)
    return {"targets": [*state.targets, *extras]}
