"""Triplets an auditor sent back with "needs fix" return to the agent, which drafts a new revision of each.

    needs_fix(catalog) -> (triplet, audit) -> TripletReviser.revise:

      1. already revised ``max_rounds`` times?  -> left with the auditors (recorded; the audit page says so)
      2. the auditor's own edits on the page (expressions, mask, change type) are kept as they are
      3. points and boxes  -> the mask engine segments the target again on the image they were placed on
      4. the correction step (the ``correction`` prompt) reads the comment and the marks: accept, or fix the
         change type or the description (a "discard" is not the agent's to make on an audited triplet: its
         reason is recorded and shown)
      5. a mask moved onto another object, another change type or description -> new expressions (``beautify``)
      6. the same triplet id, so the same Label Studio task; its audit cleared (the "needs fix" no longer
         decides it), the answer recorded in ``provenance.revisions``. It stays queued for audit, and the next
         push updates its task in place with the new prediction and the auditor's comment in the guidance.

Revisions are keyed by the audit they answer (:meth:`~craft_agent.models.Triplet.has_answered`): the same
"needs fix" annotation read again by later pulls never triggers a second revision.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Literal

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from craft_agent.agent.cues import change_cues
from craft_agent.agent.nodes import AgentResources, ask_correction, ask_expressions, mask_overlay
from craft_agent.agent.schemas import ChangeCue, CorrectionContext, CorrectionVerdict
from craft_agent.agent.state import Target
from craft_agent.agent.wording import absolute_description
from craft_agent.catalog import Catalog
from craft_agent.change.evidence import EvidenceConfig, change_evidence
from craft_agent.grid import position_of_box
from craft_agent.masks import MaskRequest
from craft_agent.masks.base import Window, mask_iou
from craft_agent.masks.click import ClassicalClickEngine, SamClickEngine, prompt_from_hints, segment_prompt
from craft_agent.models import (
    AuditHint,
    AuditRecord,
    AuditRevision,
    ChangeCandidate,
    ChangeType,
    ImagePair,
    RLEMask,
    Triplet,
    TripletState,
    Verdict,
    utc_now,
)
from craft_agent.runs import StageRun

MOVED_IOU = 0.5
"""Below this IoU with the mask the auditors saw, a re-segmented mask lies on another object: its expressions
are written again from what it now covers."""

NEIGHBOUR_CANDIDATES = 15
"""Nearest candidates of the pair measured with a revised mask, for its neighbour phrases ("by the road")."""


def needs_fix(catalog: Catalog, pair_ids: Collection[str] | None = None) -> list[tuple[Triplet, AuditRecord]]:
    """Queued triplets whose deciding audit is a "needs fix" the agent has not answered yet, with that audit.

    Args:
        pair_ids: only triplets of these pairs; all when None.
    """
    queued = [
        t
        for t in catalog.iter_triplets(TripletState.QUEUED_FOR_AUDIT)
        if t.audit_id is not None and (pair_ids is None or t.pair_id in pair_ids)
    ]
    audits = catalog.audits_by_triplet([t.id for t in queued])
    found = []
    for triplet in queued:
        audit = next((a for a in audits[triplet.id] if a.id == triplet.audit_id), None)
        if audit is not None and audit.verdict is Verdict.NEEDS_FIX and not triplet.has_answered(audit):
            found.append((triplet, audit))
    return found


def revise_needs_fix(
    reviser: TripletReviser, run: StageRun, pair_ids: Collection[str] | None = None
) -> list[AuditRevision]:
    """Revise every triplet :func:`needs_fix` finds, each an item of ``run`` (a failure is recorded against the
    triplet's id and the others go on); stops when ``run`` was stopped (a spent LLM budget).

    Returns:
        The agent's answers, one per triplet it answered.
    """
    answers = []
    for triplet, audit in needs_fix(reviser.resources.catalog, pair_ids):
        if run.stopped_by is not None:
            break
        work = functools.partial(reviser.revise, triplet, audit)
        answer = run.attempt(triplet.id, work, what=f"revising triplet {triplet.id} after audit {audit.id}")
        if answer is not None:
            answers.append(answer)
    return answers


class TripletReviser:
    """Drafts the new revision of a triplet an auditor sent back (see the module docstring).

    Args:
        resources: the agent's resources (catalog, images, language model, mask engine, prompts, configuration;
            ``config.max_rounds`` is how many revisions a triplet gets before it stays with the auditors).
    """

    def __init__(self, resources: AgentResources) -> None:
        self.resources = resources
        engine = resources.engine
        self.clicks: ClassicalClickEngine | SamClickEngine = (
            SamClickEngine(engine) if engine.name == "sam" else ClassicalClickEngine()
        )

    def revise(self, triplet: Triplet, audit: AuditRecord) -> AuditRevision:
        """Answer ``audit`` (a "needs fix" of ``triplet``): write the triplet's new revision to the catalog, or
        record that it stays with the auditors.

        Returns:
            The answer, as appended to the triplet's ``provenance.revisions``.

        Raises:
            ValueError: when ``audit`` is not a "needs fix" of ``triplet``.
            CraftError: when the pair's images cannot be read or the language model fails for good.
        """
        if audit.triplet_id != triplet.id or audit.verdict is not Verdict.NEEDS_FIX:
            raise ValueError(f"audit {audit.id} is not a needs-fix verdict on triplet {triplet.id}")
        res = self.resources
        if triplet.revision >= res.config.max_rounds:
            reason = f"{triplet.revision} revision(s) made, the most max_rounds ({res.config.max_rounds}) allows"
            return self._leave(triplet, audit, reason)
        pair, pre, post = res.pair(triplet.pair_id)
        edited = triplet.with_edits(audit)
        change_type = edited.change_type or _type_from_dates(audit.hints)
        mask, stability = edited.mask, 1.0
        drawn = self._segment_hints(pair, pre, post, audit.hints, edited.mask) if audit.hints else None
        if drawn is not None:
            mask, stability = drawn
        if change_type is None or mask.is_empty:
            return self._leave(triplet, audit, "a triplet without a mask is revised only from a mark on the target")

        cue = self._cue(pair, pre, post, mask, change_type, edited)
        # on another object than the one shown, the old words describe the wrong thing: describe what it covers
        moved = mask.iou(triplet.mask) < MOVED_IOU
        asked = absolute_description(cue, change_type, edited.category, pair.domain) if moved else None
        target = Target(
            id=triplet.id,
            candidate_id=None,
            change_type=change_type,
            category=edited.category,
            description=asked or edited.expressions[0],
            box=cue.box,
            mask=mask,
            cue=cue,
        )
        context = CorrectionContext(
            pair_id=pair.id,
            round=triplet.revision + 1,
            change_type=change_type,
            category=edited.category,
            description=target.description,
            cue=cue,
            mask_box=mask.bbox(),
            mask_area_fraction=mask.area / (pair.width * pair.height),
            agreement=change_agreement(pre, post, mask),
            stability=stability,
            auditor_comment=audit.comment or "",
            auditor_hints=audit.hints,
        )
        verdict = ask_correction(res, context, mask_overlay(pre, post, mask.to_array(), cue.box), target)
        if verdict.action == "fix":
            target.change_type = verdict.change_type or target.change_type
            target.description = verdict.description or target.description
            # the model's own box or points, when the auditor placed none (their marks win over the model's)
            prompted = None if drawn is not None else self._segment_prompt(pair, pre, post, target, verdict)
            if prompted is not None:
                mask, moved = prompted, moved or prompted.iou(triplet.mask) < MOVED_IOU
                target.cue = self._cue(pair, pre, post, mask, target.change_type, edited)
        reword = moved or target.change_type != edited.change_type or target.description != context.description
        expressions = edited.expressions
        if audit.expressions is None and reword:  # words the auditor wrote themselves are kept
            count = _objects(mask) if moved else max(1, len(edited.candidate_ids))
            wanted = res.config.expressions_per_target
            expressions = ask_expressions(res, pair, target, wanted, count=count, cue=target.cue) or expressions
        reason = verdict.reason or verdict.action
        if verdict.action == "discard":
            reason = f"the agent found no such change ({reason}); the auditors decide"
        revised = edited.model_copy(
            update={
                "mask": mask,
                "expressions": expressions,
                "change_type": target.change_type,
                "uncorrected": edited.uncorrected and mask == edited.mask,
            }
        )
        answer = self._answer(audit, "revised", reason, _changes(triplet, revised))
        return self._save(revised, answer, f"revision {triplet.revision + 1} after audit {audit.id}", target)

    def _leave(self, triplet: Triplet, audit: AuditRecord, reason: str) -> AuditRevision:
        """Record that ``triplet`` stays with the auditors as it is, answering ``audit``."""
        return self._save(triplet, self._answer(audit, "left_with_auditors", reason), reason)

    def _segment_prompt(
        self, pair: ImagePair, pre: np.ndarray, post: np.ndarray, target: Target, verdict: CorrectionVerdict
    ) -> RLEMask | None:
        """The mask engine prompted with the correction step's box and points (as in drafting); None when the
        verdict gives neither or the engine finds nothing."""
        if verdict.box is None and not verdict.positive_points:
            return None
        request = MaskRequest.for_pair(
            pair,
            pre,
            post,
            target.change_type,
            verdict.box or target.box,
            positive_points=verdict.positive_points,
            negative_points=verdict.negative_points,
        )
        segmented = self.resources.engine.segment(request).mask
        return None if segmented.is_empty else segmented

    def _answer(
        self,
        audit: AuditRecord,
        outcome: Literal["revised", "left_with_auditors"],
        reason: str,
        changed: list[Literal["mask", "expressions", "change_type"]] | None = None,
    ) -> AuditRevision:
        return AuditRevision(
            audit_id=audit.id,
            audit_updated_at=audit.updated_at,
            outcome=outcome,
            comment=audit.comment,
            hints=audit.hints,
            changed=changed or [],
            reason=reason,
        )

    def _save(
        self, triplet: Triplet, answer: AuditRevision, reason: str, target: Target | None = None
    ) -> AuditRevision:
        """The triplet with ``answer`` recorded (and its audit cleared when revised) into the catalog."""
        res = self.resources
        provenance = triplet.provenance
        update: dict[str, object] = {"revisions": [*provenance.revisions, answer]}
        if target is not None:
            steps = dict(provenance.steps)
            for task, backend in target.steps.items():
                earlier = steps.get(task)
                steps[task] = (
                    backend if earlier in (None, backend) else "+".join(sorted({*earlier.split("+"), backend}))
                )
            update |= {
                "steps": dict(sorted(steps.items())),
                "prompt_hashes": res.prompts.hashes(),
                "llm": (provenance.llm + target.llm).rounded(),
            }
            if "mask" in answer.changed:
                update["backends"] = {**provenance.backends, "masks": res.engine.name}
        fields: dict[str, object] = {"provenance": provenance.model_copy(update=update), "updated_at": utc_now()}
        if answer.outcome == "revised":
            fields["audit_id"] = None  # the needs-fix verdict judged the earlier revision
        # validated afresh: model_copy does not check what it copies in
        saved = Triplet.model_validate(triplet.model_copy(update=fields).model_dump())
        res.catalog.upsert_triplet(saved, reason=reason)
        return answer

    def _segment_hints(
        self, pair: ImagePair, pre: np.ndarray, post: np.ndarray, hints: list[AuditHint], shown: RLEMask
    ) -> tuple[RLEMask, float] | None:
        """The target where the auditor showed it: on each image with marks, their positive and negative points
        and box (a date with only negative points keeps the shown mask's box as the place to look); the union
        over the images, with the engine's lowest score. None when the marks give nothing to segment or the
        engine finds nothing."""
        union = np.zeros((pair.height, pair.width), bool)
        scores = []
        for date in ("pre", "post"):
            if not any(h.date == date for h in hints):
                continue
            prompt = prompt_from_hints(date, hints, fallback_box=shown.bbox())
            if prompt is None:
                continue
            clicked = segment_prompt(self.clicks, pre, post, pair.pre.sha256, pair.post.sha256, prompt)
            union |= clicked.mask
            scores.append(float(np.clip(clicked.score, 0.0, 1.0)))
        return (RLEMask.from_array(union), min(scores)) if union.any() else None

    def _cue(
        self,
        pair: ImagePair,
        pre: np.ndarray,
        post: np.ndarray,
        mask: RLEMask,
        change_type: ChangeType,
        triplet: Triplet,
    ) -> ChangeCue:
        """The measured facts of the revised mask, among the pair's nearest candidates (its neighbours)."""
        box = mask.bbox()
        assert box is not None  # the caller checked the mask is not empty
        config = self.resources.config
        candidate = ChangeCandidate(
            id=f"revision-{triplet.id}",
            pair_id=pair.id,
            change_type=change_type,
            box=box,
            grid_cell=position_of_box(*box.as_xyxy(), pair.width, pair.height, config.grid_rows, config.grid_cols),
            category=triplet.category,
            area=mask.area,
            mask=mask,
            source="audit",
        )

        def gap(other: ChangeCandidate) -> float:
            dx = max(0, max(other.box.x0, box.x0) - min(other.box.x1, box.x1))
            dy = max(0, max(other.box.y0, box.y0) - min(other.box.y1, box.y1))
            return float(np.hypot(dx, dy))

        others = sorted(
            (
                c
                for c in self.resources.catalog.candidates_for(pair.id)
                if c.mask is None or c.mask.iou(mask) < MOVED_IOU
            ),
            key=gap,
        )[:NEIGHBOUR_CANDIDATES]
        return change_cues([candidate, *others], pre, post, domain=pair.domain, gsd=pair.gsd_m)[0]


def change_agreement(pre: np.ndarray, post: np.ndarray, mask: RLEMask) -> float:
    """IoU of ``mask`` with the changed pixels around it (Otsu over the change evidence near the mask, never
    below 0.5): what the correction step reads as the mask's agreement with the change map."""
    box = mask.bbox()
    if box is None:
        return 0.0
    height, width = pre.shape[:2]
    window = Window.around(box, max(8, box.width // 2, box.height // 2), width, height)
    evidence = change_evidence(pre[window.slices], post[window.slices], EvidenceConfig())
    floor = float(threshold_otsu(evidence)) if float(evidence.max()) > float(evidence.min()) else 0.0
    return round(mask_iou(mask.to_array()[window.slices], evidence > max(floor, 0.5)), 4)


def _type_from_dates(hints: list[AuditHint]) -> ChangeType | None:
    """The change type the auditor's marks imply: on the later image only, it appeared; on the earlier only, it
    disappeared; on both, it changed state (for a no-target triplet, which has no type of its own)."""
    dates = {h.date for h in hints if h.kind == "box" or h.positive}
    if dates == {"post"}:
        return ChangeType.APPEAR
    if dates == {"pre"}:
        return ChangeType.DISAPPEAR
    return ChangeType.STATE_CHANGE if dates else None


def _objects(mask: RLEMask) -> int:
    """Connected objects in a mask (8-connected), at least one."""
    count, _ = cv2.connectedComponents(mask.to_array().astype(np.uint8), connectivity=8)
    return max(1, count - 1)


def _changes(before: Triplet, after: Triplet) -> list[Literal["mask", "expressions", "change_type"]]:
    changed: list[Literal["mask", "expressions", "change_type"]] = []
    if after.mask.counts != before.mask.counts:
        changed.append("mask")
    if after.expressions != before.expressions:
        changed.append("expressions")
    if after.change_type != before.change_type:
        changed.append("change_type")
    return changed
