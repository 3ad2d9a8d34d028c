"""The extra targets a pair gets once its own are worded, as in MTRefSeg-21K: groups (multi-target) and
changes that did not happen (no-target). Pure functions over the kept targets; the ``compose_extras`` node
asks the language model for their expressions.
"""

from __future__ import annotations

import hashlib
import math

from craft_agent.agent.state import Target
from craft_agent.models import BBox, Category, ChangeType, RLEMask


def same_kind_groups(kept: list[Target], others: list[Target] | None = None, unchecked: bool = False) -> list[Target]:
    """One group target per (change type, category) with two or more drafted targets: its mask is their union
    with that of the ``others`` of its kind (changes seen but not drafted alone), its ``member_ids`` their
    candidate ids; expressions still to write. "The buildings that were built" must be all of them: a kind with
    others left out for the budget holds them (they were reviewed and corrected).

    Drafted are the ``kept`` targets and those of ``others`` left out only for want of an expression that
    singles them out (``unnamed``: reviewed, corrected and meant for a triplet of their own). On a crowded tile
    the referring rule may name none of a kind (rank words stop at the tenth, and 100 new houses share every
    attribute), and the group is then the one triplet through which its changes reach the auditor.

    A kind with others the review never reached (still pending: a crowded tile) gets a group only with
    ``unchecked``: for a detector whose confidence was learned from labelled changes, whose unreviewed regions
    the offline rules confirmed (on the LEVIR-CD tile of 104 new houses, 91 % of such "new buildings" lie on
    labelled ones); the group then counts them as ``uncorrected_members`` and is never auto-accepted. Without it
    there is no group, since nothing says what their masks hold (the classical detector's such regions on that
    tile: 13 % on labelled changes, lawns and woods). Members whose correction gave up count there too."""
    groups: dict[tuple[ChangeType, str | None], list[Target]] = {
        (t.change_type, t.category): [] for t in [*kept, *(o for o in others or [] if o.unnamed)]
    }
    for target in [*kept, *(others or [])]:
        if (target.change_type, target.category) in groups:
            groups[(target.change_type, target.category)].append(target)
    result = []
    for (change_type, category), members in sorted(groups.items(), key=lambda g: (g[0][0].value, g[0][1] or "")):
        pending = sum(m.status == "pending" for m in members)
        if sum(m.kept or m.unnamed for m in members) < 2 or (pending and not unchecked):
            continue
        result.append(
            Target(
                id=f"group-{change_type.value}-{category}",
                candidate_id=None,
                change_type=change_type,
                category=category,
                description=f"the {category or 'changes'} that {change_type.value.replace('_', ' ')}",
                box=BBox.enclosing([m.box for m in members]),
                mask=RLEMask.union([m.mask for m in members if m.mask is not None]),
                cue=members[0].cue,
                status="accepted",
                uncorrected_members=sum(m.status == "uncorrected" or m.left_uncorrected for m in members) + pending,
                member_ids=[m.candidate_id or m.id for m in members],
            )
        )
    return result


_ABSENT_TYPE = {
    ChangeType.APPEAR: ChangeType.DISAPPEAR,
    ChangeType.DISAPPEAR: ChangeType.APPEAR,
    ChangeType.STATE_CHANGE: ChangeType.DISAPPEAR,
}


_SURFACES = {Category.GROUND.value}
"""Categories that change their look but do not come or go: "the plot of land that was removed" is no change a
reader could look for, so no no-target expression is made of them."""


def absent_changes(
    kept: list[Target], ratio: float, height: int, width: int, pair_id: str, seen: list[Target] | None = None
) -> list[Target]:
    """No-target changes for a share ``ratio`` of the kept targets (MTRefSeg-21K has about 15 % of such samples):
    a plausible change of a kept category that did NOT happen (the opposite type, where no target of that kind
    exists among the kept targets and ``seen``, every change the pair's review found, also those dropped for the
    budget or for want of a unique expression: a demolished house that could not be named still makes "the
    demolished house" untrue), with an empty mask. A fractional count (0.1 x 4 targets) is rounded up or down by
    a hash of the pair, so the share holds over a dataset while each pair's draw stays the same on every run.

    A kind that changed state in the pair makes no such claim either way: beside a road that was resurfaced,
    "the stretch of road that was laid" may well be true, and beside a lawn turned to gravel "the plot of land
    that was removed" reads as a description of it."""
    found = [*kept, *(seen or [])]
    present = {(t.change_type, t.category) for t in found}
    # no claim about a surface, nor about a kind that changed state here
    unclaimed = _SURFACES | {t.category for t in found if t.change_type is ChangeType.STATE_CHANGE}
    expected = ratio * len(kept)
    draw = int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    wanted = math.floor(expected) + (draw < expected - math.floor(expected))
    result: list[Target] = []
    for target in kept:
        if len(result) >= wanted:
            break
        absent_type = _ABSENT_TYPE[target.change_type]
        if (absent_type, target.category) in present or target.category in unclaimed:
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
