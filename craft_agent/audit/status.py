"""Audit progress from the catalog alone: states, acceptance and edit rates, auditors' throughput."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from craft_agent.catalog import Catalog
from craft_agent.models import AuditRecord, Verdict


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _seconds(values: list[float]) -> dict[str, float | None]:
    return {
        "median_s": round(statistics.median(values), 2) if values else None,
        "mean_s": round(statistics.fmean(values), 2) if values else None,
    }


def audit_status(catalog: Catalog) -> dict[str, Any]:
    """Counts per triplet state and per verdict, rates, and per-auditor throughput.

    ``acceptance_rate`` = (accepted + fixed) / decided triplets; ``edit_rate`` = fixed / (accepted + fixed);
    ``per_hour`` counts audits per hour of the auditor's recorded time on tasks (Label Studio's lead time).
    """
    states = catalog.triplet_counts()
    audits: list[AuditRecord] = list(catalog.iter_audits())
    verdicts = {v.value: 0 for v in Verdict}
    by_auditor: dict[str, list[AuditRecord]] = defaultdict(list)
    for record in audits:
        verdicts[record.verdict.value] += 1
        by_auditor[record.auditor].append(record)
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
    }
