"""What leaves the catalog: audited triplets as export samples, with their split.

Only accepted and fixed triplets (with the auditor's edits applied) are exported; rejected ones never,
and neither are triplets still waiting for an audit unless a preview is asked for. A triplet the agent
left ``uncorrected`` is exported only once an auditor accepted or fixed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field, field_validator

from craft_agent.catalog import Catalog
from craft_agent.errors import ConfigError
from craft_agent.formats.base import SPLITS
from craft_agent.models import AuditRecord, ImagePair, RLEMask, Triplet, TripletState, Verdict

AUDITED_STATES = (TripletState.ACCEPTED, TripletState.FIXED, TripletState.EXPORTED)
UNAUDITED_STATES = (TripletState.DRAFTED, TripletState.QUEUED_FOR_AUDIT)


class SplitConfig(BaseModel):
    """Train / val / test ratios and the seed of the by-group assignment."""

    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    @field_validator("ratios")
    @classmethod
    def _valid(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must be >= 0 and sum to 1, got {value}")
        return value


def split_of(group_id: str, config: SplitConfig) -> str:
    """The split of a scene group: a seeded hash of the group id, so it never changes when data is added
    and all pairs of a group (tiles of a scene, crops of a tile) land in the same split."""
    digest = hashlib.sha256(f"{config.seed}:{group_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, ratio in zip(SPLITS, config.ratios, strict=True):
        edge += ratio
        if u < edge:
            return name
    return SPLITS[-1]


class AuditSummary(BaseModel):
    state: str
    verdict: str | None = None
    auditor: str | None = None
    edited: list[str] = Field(default_factory=list, description="What the auditor changed: expressions, mask, type.")
    audits: int = 0


class ExportSample(BaseModel):
    """One exported sample: a triplet on its pair, as every format writes it."""

    sample_id: str
    pair_id: str
    pair_name: str
    domain: str
    group_id: str
    split: str
    expressions: list[str]
    mask: RLEMask
    change_type: str | None
    change_code: int = Field(description="MTRefSeg code: appear 0, disappear 1, state change 2; -1 no target.")
    category: str | None
    audit: AuditSummary
    provenance: dict[str, Any]

    @property
    def is_no_target(self) -> bool:
        return self.mask.is_empty


class AuditRates(BaseModel):
    """How the audit went for the triplets of the export's domain, exported or not: the triplets counted by
    the verdict that decided their state (a ``needs_fix`` one waits in the queue for a fix).

    The rates are shares of the audited triplets (accepted + fixed + rejected + needs fix); None when no
    triplet was audited.
    """

    accepted: int = 0
    fixed: int = 0
    rejected: int = 0
    needs_fix: int = 0
    awaiting_audit: int = Field(default=0, description="Drafted or queued triplets no auditor decided on yet.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def audited(self) -> int:
        return self.accepted + self.fixed + self.rejected + self.needs_fix

    def _rate(self, count: int) -> float | None:
        return round(count / self.audited, 4) if self.audited else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rejection_rate(self) -> float | None:
        return self._rate(self.rejected)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_fix_rate(self) -> float | None:
        return self._rate(self.needs_fix)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fix_rate(self) -> float | None:
        """Share of the audited triplets the auditor kept after editing them."""
        return self._rate(self.fixed)


@dataclass
class Selection:
    """The samples of an export and the pairs they use, ordered by (split, pair, sample), and how the
    audit went for the export's domain."""

    samples: list[ExportSample]
    pairs: dict[str, ImagePair]
    skipped: dict[str, int]
    unaudited_preview: bool
    audit: AuditRates = field(default_factory=AuditRates)


def _sample(triplet: Triplet, pair: ImagePair, audits: Sequence[AuditRecord], split: str) -> ExportSample:
    decisive = next((a for a in audits if a.id == triplet.audit_id), None)
    final = triplet.with_edits(decisive) if decisive else triplet
    edited = []
    if decisive is not None:
        edited = [
            name
            for name, changed in (
                ("expressions", decisive.expressions is not None),
                ("mask", decisive.mask is not None),
                ("change_type", decisive.change_type_edited),
            )
            if changed
        ]
    return ExportSample(
        sample_id=triplet.id,
        pair_id=pair.id,
        pair_name=pair.name,
        domain=pair.domain.value,
        group_id=pair.group_id,
        split=split,
        expressions=final.expressions,
        mask=final.mask,
        change_type=final.change_type.value if final.change_type else None,
        change_code=final.change_type.code if final.change_type and not final.mask.is_empty else -1,
        category=final.category,
        audit=AuditSummary(
            state=triplet.state.value,
            verdict=decisive.verdict.value if decisive else None,
            auditor=decisive.auditor if decisive else None,
            edited=edited,
            audits=len(audits),
        ),
        provenance={
            "backends": triplet.provenance.backends,
            "model_ids": triplet.provenance.model_ids,
            "prompt_hashes": triplet.provenance.prompt_hashes,
            "uncorrected": triplet.uncorrected,
        },
    )


def select_samples(
    catalog: Catalog,
    splits: SplitConfig,
    domain: Literal["rs", "ns", "all"] = "all",
    include_unaudited: bool = False,
) -> Selection:
    """The samples to export, deterministic for a given catalog state.

    Raises:
        ConfigError: when nothing is left to export (with what was skipped and why).
    """
    states = AUDITED_STATES + (UNAUDITED_STATES if include_unaudited else ())
    skipped = {"rejected": 0, "awaiting_audit": 0, "uncorrected": 0, "other_domain": 0}
    chosen: list[Triplet] = []
    in_domain: list[Triplet] = []
    pairs: dict[str, ImagePair] = {}
    for triplet in catalog.iter_triplets():
        if triplet.pair_id not in pairs:
            pairs[triplet.pair_id] = catalog.get_pair(triplet.pair_id)
        other_domain = domain != "all" and pairs[triplet.pair_id].domain.value != domain
        if not other_domain:
            in_domain.append(triplet)
        if triplet.state is TripletState.REJECTED:
            skipped["rejected"] += 1
            continue
        if triplet.state not in states:
            skipped["awaiting_audit"] += 1
            continue
        if triplet.uncorrected and triplet.state in UNAUDITED_STATES:
            skipped["uncorrected"] += 1
            continue
        if other_domain:
            skipped["other_domain"] += 1
            continue
        chosen.append(triplet)
    if not chosen:
        raise ConfigError(
            f"nothing to export: no accepted or fixed triplets ({', '.join(f'{v} {k}' for k, v in skipped.items())}).",
            hint="audit triplets first (`craft-agent audit push`, then `audit pull`), or pass --include-unaudited "
            "for a preview that is marked as such.",
        )
    decided = [t for t in in_domain if t.audit_id is not None and t.state is not TripletState.REJECTED]
    audits = catalog.audits_by_triplet(sorted({t.id for t in chosen} | {t.id for t in decided}))
    samples = [_sample(t, pairs[t.pair_id], audits[t.id], split_of(pairs[t.pair_id].group_id, splits)) for t in chosen]
    samples.sort(key=lambda s: (SPLITS.index(s.split), s.pair_id, s.sample_id))
    used = {s.pair_id for s in samples}
    return Selection(
        samples=samples,
        pairs={pid: pair for pid, pair in sorted(pairs.items()) if pid in used},
        skipped=skipped,
        unaudited_preview=include_unaudited,
        audit=audit_rates(in_domain, audits),
    )


def audit_rates(triplets: Sequence[Triplet], audits: dict[str, list[AuditRecord]]) -> AuditRates:
    """Count ``triplets`` by the verdict of the audit that decided their state (``audits`` by triplet id
    must hold the records of every triplet with an ``audit_id``)."""
    rates = AuditRates()
    for triplet in triplets:
        decisive = next((a for a in audits.get(triplet.id, []) if a.id == triplet.audit_id), None)
        if triplet.state is TripletState.REJECTED:
            rates.rejected += 1
        elif triplet.state in AUDITED_STATES:
            edited = triplet.state is TripletState.FIXED or (decisive is not None and decisive.verdict is Verdict.FIX)
            if edited:
                rates.fixed += 1
            else:
                rates.accepted += 1
        elif decisive is not None and decisive.verdict is Verdict.NEEDS_FIX:
            rates.needs_fix += 1
        else:
            rates.awaiting_audit += 1
    return rates
