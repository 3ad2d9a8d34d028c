"""Pure functions over the agent's targets: which to keep, how each is told apart, and the extra targets a pair
gets (groups, no-target changes). The nodes in :mod:`craft_agent.agent.nodes` call these; nothing here talks to
the language model, the catalog or the images.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from craft_agent.agent.offline import confirmed_change
from craft_agent.agent.schemas import ChangeCue
from craft_agent.agent.state import Target
from craft_agent.agent.wording import ordinal_expression
from craft_agent.models import BBox, ChangeType, RLEMask


def keep_labelled(cues: list[ChangeCue], targets: list[Target], rejected: list[dict[str, Any]], domain: str) -> None:
    """Labelled changes are real whatever the review said: one the model rejected or skipped is confirmed by
    the rules, and the type and category the labels give overrule the model's."""
    by_candidate = {t.candidate_id: t for t in targets if t.candidate_id}
    for cue in cues:
        if not cue.labelled:
            continue
        rejected[:] = [r for r in rejected if r.get("candidate_id") != cue.candidate_id]
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
    kept = [t for t in targets if t.status in ("accepted", "uncorrected")]
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


def same_kind_groups(kept: list[Target]) -> list[Target]:
    """One group target per (change type, category) with two or more kept targets: its mask is their union, its
    ``member_ids`` their candidate ids; expressions still to write."""
    groups: dict[tuple[ChangeType, str | None], list[Target]] = {}
    for target in kept:
        groups.setdefault((target.change_type, target.category), []).append(target)
    result = []
    for (change_type, category), members in sorted(groups.items(), key=lambda g: (g[0][0].value, g[0][1] or "")):
        if len(members) < 2:
            continue
        result.append(
            Target(
                id=f"group-{change_type.value}-{category}",
                candidate_id=None,
                change_type=change_type,
                category=category,
                description=f"the {category or 'changes'} that {change_type.value.replace('_', ' ')}",
                box=_union_box([m.box for m in members]),
                mask=RLEMask.union([m.mask for m in members if m.mask is not None]),
                cue=members[0].cue,
                status="accepted",
                uncorrected_members=sum(m.status == "uncorrected" for m in members),
                member_ids=[m.candidate_id or m.id for m in members],
            )
        )
    return result


_ABSENT_TYPE = {
    ChangeType.APPEAR: ChangeType.DISAPPEAR,
    ChangeType.DISAPPEAR: ChangeType.APPEAR,
    ChangeType.STATE_CHANGE: ChangeType.DISAPPEAR,
}


def absent_changes(kept: list[Target], ratio: float, height: int, width: int, pair_id: str) -> list[Target]:
    """No-target changes for a share ``ratio`` of the kept targets (MTRefSeg-21K has about 15 % of such samples):
    a plausible change of a kept category that did NOT happen (the opposite type, where no target of that kind
    exists), with an empty mask. A fractional count (0.1 x 4 targets) is rounded up or down by a hash of the pair,
    so the share holds over a dataset while each pair's draw stays the same on every run."""
    present = {(t.change_type, t.category) for t in kept}
    expected = ratio * len(kept)
    draw = int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    wanted = math.floor(expected) + (draw < expected - math.floor(expected))
    result: list[Target] = []
    for target in kept:
        if len(result) >= wanted:
            break
        absent_type = _ABSENT_TYPE[target.change_type]
        if (absent_type, target.category) in present:
            continue
        present.add((absent_type, target.category))
        result.append(
            Target(
                id=f"absent-{absent_type.value}-{target.category}",
                candidate_id=None,
                change_type=absent_type,
                category=target.category,
                description=f"the {target.category or 'object'} that {absent_type.value.replace('_', ' ')}",
                box=target.box,
                mask=RLEMask.empty(height, width),
                cue=target.cue,
                status="accepted",
                no_target=True,
            )
        )
    return result


def _union_box(boxes: list[BBox]) -> BBox:
    return BBox(
        x0=min(b.x0 for b in boxes),
        y0=min(b.y0 for b in boxes),
        x1=max(b.x1 for b in boxes),
        y1=max(b.y1 for b in boxes),
    )
