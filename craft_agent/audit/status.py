"""Audit progress from the catalog alone: states, acceptance and edit rates, auditors' throughput, and how
well auditors agree where several audited the same triplet (``audit push --overlap N``)."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from craft_agent.catalog import Catalog
from craft_agent.models import AuditRecord, RLEMask, Triplet, Verdict


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _seconds(values: list[float]) -> dict[str, float | None]:
    return {
        "median_s": round(statistics.median(values), 2) if values else None,
        "mean_s": round(statistics.fmean(values), 2) if values else None,
    }


def page_verdict(record: AuditRecord) -> str:
    """The verdict the auditor chose on the page: accept (with or without edits: ``fix`` is an accept with
    edits), needs_fix or reject."""
    return Verdict.ACCEPT.value if record.verdict is Verdict.FIX else record.verdict.value


def submitted_mask(record: AuditRecord, triplet: Triplet) -> RLEMask:
    """The mask an audit submitted: the union of the auditor's brush regions as the pull read it, which is
    the record's mask when they repainted and the mask the page showed (the triplet's) when they did not."""
    return record.mask if record.mask is not None else triplet.mask


def auditor_agreement(audits: Iterable[AuditRecord], triplets: Mapping[str, Triplet]) -> list[dict[str, Any]]:
    """Agreement between each pair of auditors over the triplets (tasks) both audited.

    Each auditor counts once per triplet, with their latest audit; audits a revision answered judged
    earlier content and are left out (see :meth:`Triplet.revised_after`), as are triplets not in
    ``triplets``.

    Returns:
        One row per pair that shares a triplet, sorted by names: ``auditors`` (the two names),
        ``shared_tasks``, ``mean_iou`` (mean IoU of their :func:`submitted_mask`; two empty masks, e.g. a
        no-target triplet both accepted, count 1.0) and ``same_verdict`` (share of the shared triplets with
        the same :func:`page_verdict`).
    """
    latest: dict[str, dict[str, AuditRecord]] = defaultdict(dict)
    for record in audits:
        triplet = triplets.get(record.triplet_id)
        if triplet is None or triplet.revised_after(record):
            continue
        mine = latest[record.triplet_id].get(record.auditor)
        if mine is None or (record.created_at, record.id) > (mine.created_at, mine.id):
            latest[record.triplet_id][record.auditor] = record
    compared: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
    for triplet_id, by_auditor in latest.items():
        triplet = triplets[triplet_id]
        for first, second in itertools.combinations(sorted(by_auditor), 2):
            a, b = by_auditor[first], by_auditor[second]
            iou = submitted_mask(a, triplet).iou(submitted_mask(b, triplet))
            compared[(first, second)].append((iou, page_verdict(a) == page_verdict(b)))
    return [
        {
            "auditors": list(pair),
            "shared_tasks": len(rows),
            "mean_iou": round(statistics.fmean(iou for iou, _ in rows), 4),
            "same_verdict": round(sum(same for _, same in rows) / len(rows), 4),
        }
        for pair, rows in sorted(compared.items())
    ]


def audit_status(catalog: Catalog) -> dict[str, Any]:
    """Counts per triplet state and per verdict, rates, per-auditor throughput and agreement.

    ``acceptance_rate`` = (accepted + fixed) / decided triplets; ``edit_rate`` = fixed / (accepted + fixed);
    ``per_hour`` counts audits per hour of the auditor's recorded time on tasks (Label Studio's lead time);
    ``agreement`` compares pairs of auditors on the triplets both audited (:func:`auditor_agreement`).
    """
    states = catalog.triplet_counts()
    audits: list[AuditRecord] = list(catalog.iter_audits())
    verdicts = {v.value: 0 for v in Verdict}
    by_auditor: dict[str, list[AuditRecord]] = defaultdict(list)
    by_triplet: dict[str, set[str]] = defaultdict(set)
    for record in audits:
        verdicts[record.verdict.value] += 1
        by_auditor[record.auditor].append(record)
        by_triplet[record.triplet_id].add(record.auditor)
    kept = states["accepted"] + states["fixed"]
    decided = kept + states["rejected"]
    auditors = {}
    for name, records in sorted(by_auditor.items()):
        times = [r.lead_time_s for r in records if r.lead_time_s is not None]
        auditors[name] = {
            "audits": len(records),
            "accepted": sum(r.verdict is Verdict.ACCEPT for r in records),
            "fixed": sum(r.verdict is Verdict.FIX for r in records),
            "rejected": sum(r.verdict is Verdict.REJECT for r in records),
            "needs_fix": sum(r.verdict is Verdict.NEEDS_FIX for r in records),
            **_seconds(times),
            "per_hour": round(len(times) / (sum(times) / 3600), 1) if times and sum(times) > 0 else None,
        }
    all_times = [r.lead_time_s for r in audits if r.lead_time_s is not None]
    shared = [triplet_id for triplet_id, names in by_triplet.items() if len(names) > 1]
    return {
        "triplets": sum(states.values()),
        "states": states,
        "audits": len(audits),
        "verdicts": verdicts,
        "awaiting_audit": states["queued_for_audit"],
        "acceptance_rate": _rate(kept, decided),
        "edit_rate": _rate(states["fixed"], kept),
        "time_per_task": _seconds(all_times),
        "auditors": auditors,
        "agreement": auditor_agreement(audits, catalog.get_triplets(shared)) if shared else [],
    }
