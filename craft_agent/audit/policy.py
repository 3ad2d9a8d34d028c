"""How several audits of one triplet decide its state.

A registry of policies, picked by name (``audit_policy`` in settings, ``--policy`` on the CLI):

- ``first``: the earliest submitted audit decides.
- ``majority``: the most frequent decision wins; a tie leaves the triplet in the audit queue.
- ``two_agree``: at least two audits must agree; until then the triplet stays in the queue.

"Accept" and "fix" agree (both keep the sample); among agreeing keeps, the latest audit with edits supplies
the edits, so a triplet is ``fixed`` when any agreeing auditor edited it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from craft_agent.errors import ConfigError
from craft_agent.models import AuditRecord, TripletState, Verdict


@dataclass(frozen=True)
class Decision:
    """The outcome for one triplet: its new state and the audit whose edits (if any) apply."""

    state: TripletState
    audit_id: str | None
    reason: str


def _opinion(record: AuditRecord) -> str:
    return "keep" if record.verdict in (Verdict.ACCEPT, Verdict.FIX) else record.verdict.value


def _settle(opinion: str, records: Sequence[AuditRecord], reason: str) -> Decision:
    agreeing = sorted((r for r in records if _opinion(r) == opinion), key=lambda r: (r.created_at, r.id))
    if opinion != "keep":
        chosen = agreeing[-1]
        return Decision(chosen.verdict.resulting_state, chosen.id, reason)
    edited = [r for r in agreeing if r.verdict is Verdict.FIX]
    chosen = edited[-1] if edited else agreeing[-1]
    return Decision(chosen.verdict.resulting_state, chosen.id, reason)


def first(records: Sequence[AuditRecord]) -> Decision | None:
    if not records:
        return None
    earliest = min(records, key=lambda r: (r.created_at, r.id))
    return Decision(earliest.verdict.resulting_state, earliest.id, f"first audit: {earliest.verdict.value}")


def majority(records: Sequence[AuditRecord]) -> Decision | None:
    if not records:
        return None
    ranked = Counter(_opinion(r) for r in records).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return Decision(TripletState.QUEUED_FOR_AUDIT, None, f"tie between {ranked[0][0]} and {ranked[1][0]}")
    opinion, votes = ranked[0]
    return _settle(opinion, records, f"majority {votes}/{len(records)}: {opinion}")


def two_agree(records: Sequence[AuditRecord]) -> Decision | None:
    if not records:
        return None
    ranked = Counter(_opinion(r) for r in records).most_common()
    agreeing = [(opinion, votes) for opinion, votes in ranked if votes >= 2]
    if len(agreeing) != 1:
        waiting = "waiting for a second audit" if not agreeing else "two opinions each have two audits"
        return Decision(TripletState.QUEUED_FOR_AUDIT, None, waiting)
    opinion, votes = agreeing[0]
    return _settle(opinion, records, f"{votes} audits agree: {opinion}")


POLICIES: dict[str, Callable[[Sequence[AuditRecord]], Decision | None]] = {
    "first": first,
    "majority": majority,
    "two_agree": two_agree,
}


def decide(records: Sequence[AuditRecord], policy: str) -> Decision | None:
    """The decision of ``policy`` over a triplet's audits; None when it has none.

    Raises:
        ConfigError: for an unknown policy name.
    """
    try:
        rule = POLICIES[policy]
    except KeyError:
        raise ConfigError(
            f"unknown audit policy {policy!r}.", hint=f"use one of: {', '.join(sorted(POLICIES))}."
        ) from None
    return rule(records)
