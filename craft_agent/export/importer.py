"""``craft-agent import``: an existing MTRefSeg-layout dataset into the catalog, so it can be extended.

Pairs are ingested by the ordinary ingest code (the MTRefSeg reader keeps each sample's expressions and
mask together); each sample becomes a triplet that is already audited (``accepted``, with an
``AuditRecord`` of backend ``import`` naming the source), because a published dataset was checked by its
authors. Running it again adds nothing twice.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore
from craft_agent.imagery.ingest import IngestOptions, ingest
from craft_agent.models import AuditRecord, GroundTruthChange, ImagePair, Triplet, TripletState, Verdict, triplet_id
from craft_agent.runs import Failure


@dataclass
class ImportSummary:
    source: str
    pairs: int = 0
    new_pairs: int = 0
    triplets: int = 0
    new_triplets: int = 0
    without_expressions: int = 0
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {**self.__dict__, "failed": [f.as_dict() for f in self.failed], "seconds": round(self.seconds, 3)}


def triplet_from_truth(pair: ImagePair, change: GroundTruthChange, fallback_expression: str | None = None) -> Triplet:
    """A drafted triplet stating a known change of ``pair`` (its own expressions, else ``fallback_expression``).

    The id is the dataset's own ``sample_id`` attribute when it has a usable one, else the content id.

    Raises:
        ValueError: when the change has no expression and no fallback is given.
    """
    # Keeping the dataset's sample id makes export -> import -> export keep every sample's identity (an
    # audited edit changed the content the original id was hashed from).
    given = change.attributes.get("sample_id", "")
    tid = (
        given
        if re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", given)
        else triplet_id(pair.id, change.mask, change.change_type, change.category)
    )
    expressions = change.expressions or ([fallback_expression] if fallback_expression else [])
    return Triplet(
        id=tid,
        pair_id=pair.id,
        mask=change.mask,
        expressions=expressions,
        change_type=change.change_type,
        category=change.category,
    )


def import_mtrefseg(src: Path, catalog: Catalog, store: ImageStore, options: IngestOptions) -> ImportSummary:
    """Read ``src`` (an MTRefSeg split or a folder of splits) into ``catalog`` as accepted triplets."""
    started = time.perf_counter()
    ingested = ingest(src, catalog, store, options)
    summary = ImportSummary(source=str(src), failed=list(ingested.failed), new_pairs=ingested.ingested)
    auditor = f"import:{src.resolve().name}"
    for pair_id in ingested.present_ids:
        pair = catalog.get_pair(pair_id)
        summary.pairs += 1
        for change in pair.gt_changes:
            if not change.expressions:
                summary.without_expressions += 1
                continue
            tid = triplet_from_truth(pair, change).id
            summary.triplets += 1
            if catalog.has_triplet(tid):
                continue
            audit = AuditRecord(
                id=f"import-{tid}",
                triplet_id=tid,
                verdict=Verdict.ACCEPT,
                auditor=auditor,
                backend="import",
                comment=f"imported from {src}",
            )
            triplet = triplet_from_truth(pair, change).model_copy(
                update={"state": TripletState.ACCEPTED, "audit_id": audit.id}
            )
            catalog.save_audits([audit], triplets=[(triplet, f"imported from {src}")])
            summary.new_triplets += 1
    summary.seconds = time.perf_counter() - started
    return summary
