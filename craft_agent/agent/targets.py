"""Pure functions over the agent's targets: which to keep and how each is told apart. The nodes in
:mod:`craft_agent.agent.nodes` call these; nothing here talks to the language model, the catalog or the images.
The extra targets a pair gets (groups, no-target changes) are composed in :mod:`craft_agent.agent.compose`.
"""

from __future__ import annotations

from craft_agent.agent.offline import confirmed_change
from craft_agent.agent.schemas import ChangeCue
from craft_agent.agent.state import Rejection, Target
from craft_agent.agent.wording import ordinal_expression
from craft_agent.models import BBox, Domain


def keep_labelled(cues: list[ChangeCue], targets: list[Target], rejected: list[Rejection], domain: Domain) -> None:
    """Labelled changes are real whatever the review said: one the model rejected or skipped is confirmed by
    the rules, and the type and category the labels give overrule the model's."""
    by_candidate = {t.candidate_id: t for t in targets if t.candidate_id}
    for cue in cues:
        if not cue.labelled:
            continue
        rejected[:] = [r for r in rejected if r.candidate_id != cue.candidate_id]
        target = by_candidate.get(cue.candidate_id)
        if target is None:
            change = confirmed_change(cue, domain)
            target = Target(
                id=cue.candidate_id,
                candidate_id=cue.candidate_id,
                change_type=change.change_type or cue.detector_type,
                category=change.category,
                description=change.description or "the change",
                box=cue.box,
                cue=cue,
            )
            targets.append(target)
        target.box = cue.box
        target.change_type = cue.label_type or target.change_type
        target.category = cue.label_category or target.category


def keep_within_budget(targets: list[Target], budget: int | None) -> list[Target]:
    """Discard kept targets beyond ``budget`` (None: no limit), the weakest evidence first: accepted before
    uncorrected, then by the detector's evidence rank (:func:`~craft_agent.change.stage.evidence_rank`)."""
    kept = [t for t in targets if t.kept]
    if budget is None or len(kept) <= budget:
        return targets
    ranked = sorted(
        kept,
        key=lambda t: (t.status != "accepted", t.cue.rank, t.id),
    )
    for target in ranked[budget:]:
        target.status = "discarded"
    return targets


def _signature(cue: ChangeCue) -> set[str]:
    return {cue.colour_before, cue.colour_after, cue.size, cue.shape, *cue.neighbours}


def distinguishing_words(target: Target, rivals: list[Target]) -> set[str]:
    """Words that tell ``target`` apart from ``rivals`` (same type and category): attributes of its cue that no
    rival shares (colour, size, shape, neighbours) and the compass words of the sides it lies furthest towards."""
    words = set().union(*(_signature(target.cue) - _signature(o.cue) for o in rivals))
    return words | _extreme_words(target, rivals)


def drop_shared_expressions(kept: list[Target]) -> None:
    """The same words on two targets refer to neither: each target that shares an expression gets it with its
    rank from one side among the targets sharing it ("the westernmost ..."), or loses it when that is too far
    to say; a target left with no expression is discarded."""
    users: dict[str, list[Target]] = {}
    for target in kept:
        for expression in dict.fromkeys(e.lower() for e in target.expressions):
            users.setdefault(expression, []).append(target)
    taken = set(users)
    for text, sharing in users.items():
        if len(sharing) < 2:
            continue
        for target in sharing:
            original = next(e for e in target.expressions if e.lower() == text)
            ranked = _with_rank(original, target, [o for o in sharing if o.id != target.id])
            replacement = [ranked] if ranked is not None and ranked.lower() not in taken else []
            taken.update(r.lower() for r in replacement)
            target.expressions = [r for e in target.expressions for r in (replacement if e.lower() == text else [e])]
    for target in kept:
        if not target.expressions:
            target.status = "discarded"


def _centre(box: BBox) -> tuple[float, float]:
    return ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)


def _ranks(target: Target, rivals: list[Target]) -> dict[str, int]:
    """The target's 0-based rank from each side among itself and its rivals (by box centre)."""
    x, y = _centre(target.box)
    centres = [_centre(o.box) for o in rivals]
    return {
        "west": sum(cx < x for cx, _ in centres),
        "east": sum(cx > x for cx, _ in centres),
        "north": sum(cy < y for _, cy in centres),
        "south": sum(cy > y for _, cy in centres),
    }


def _extreme_words(target: Target, rivals: list[Target]) -> set[str]:
    """Compass words that truly single the target out: it lies furthest towards that side."""
    return {f"{side}ernmost" for side, rank in _ranks(target, rivals).items() if rank == 0}


def by_rank(target: Target, rivals: list[Target]) -> str | None:
    """The target's first expression with its rank from the nearest side, or None when too far to say."""
    return _with_rank(target.expressions[0], target, rivals)


def _with_rank(expression: str, target: Target, rivals: list[Target]) -> str | None:
    """``expression`` with the target's rank among ``rivals`` from the side it is nearest to (see
    :func:`~craft_agent.agent.wording.ordinal_expression`)."""
    ranks = _ranks(target, rivals)
    side = min(ranks, key=lambda k: (ranks[k], k))
    return ordinal_expression(expression, ranks[side], side)
