"""The catalog: the single source of truth for pairs, candidates, triplets, audits and runs.

SQLite in the workspace by default, PostgreSQL by URL for many workers. Every write is an idempotent
upsert keyed by a content hash, so re-running any stage adds nothing that is already there.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, delete, event, func, inspect, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from craft_agent.catalog.store import ImageStore
from craft_agent.catalog.tables import (
    AuditRow,
    Base,
    CandidateRow,
    FailureRow,
    MetaRow,
    PairRow,
    RunRow,
    TripletEventRow,
    TripletRow,
)
from craft_agent.errors import CatalogError, SchemaVersionError
from craft_agent.localhost import host_name, pid_alive
from craft_agent.models import (
    DECIDED_STATES,
    SCHEMA_VERSION,
    AuditRecord,
    ChangeCandidate,
    ImagePair,
    PairSource,
    Triplet,
    TripletState,
    check_transition,
    utc_now,
)
from craft_agent.settings import Settings

__all__ = ["Catalog", "ImageStore"]


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


T = TypeVar("T")


@dataclass
class PairRemoval:
    """What :meth:`Catalog.remove_pairs` removed."""

    pairs: int
    triplets: int
    audited_triplets: int
    candidates: int = 0
    audits: int = 0


def in_batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size`` (SQL ``IN`` lists, bulk requests)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class Catalog:
    """Typed access to the catalog database.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).

    Raises:
        CatalogError: when the database cannot be reached or created.
        SchemaVersionError: when it was written by an incompatible craft-agent.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(url, future=True)
        except (SQLAlchemyError, ImportError) as exc:
            raise CatalogError(
                f"cannot use catalog URL {_redacted(url)}: {exc}.",
                hint="use sqlite:///path/catalog.sqlite or postgresql+psycopg://user@host/db "
                "(install the 'postgres' extra for PostgreSQL).",
            ) from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._create_or_check()

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The catalog named by settings (SQLite in the workspace unless ``catalog_url`` is set)."""
        settings.workspace.mkdir(parents=True, exist_ok=True)
        return cls(settings.resolved_catalog_url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------------

    def _create_or_check(self) -> None:
        try:
            Base.metadata.create_all(self.engine)
            self._add_missing_columns()
            with self._session.begin() as session:
                row = session.get(MetaRow, "schema_version")
                if row is None:
                    session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
                    return
                found = row.value
        except OperationalError as exc:
            raise CatalogError(
                f"cannot open the catalog at {_redacted(self.url)}: {exc.orig}.",
                hint="check the path or URL, that the folder is writable, and that the server is running.",
            ) from exc
        if found != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"the catalog at {_redacted(self.url)} has schema version {found}, "
                f"but this craft-agent reads version {SCHEMA_VERSION}.",
                hint="use the craft-agent version that wrote it, or start a new workspace "
                "(--workspace NEW_DIR) and re-ingest.",
            )

    def _add_missing_columns(self) -> None:
        """Add nullable columns that newer code declares to tables an older craft-agent created.

        ``create_all`` creates missing tables only; an added nullable column needs no data migration, so it
        does not bump the schema version.
        """
        inspector = inspect(self.engine)
        with self.engine.begin() as connection:
            for table in Base.metadata.sorted_tables:
                present = {column["name"] for column in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present and column.nullable:
                        kind = column.type.compile(dialect=self.engine.dialect)
                        connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))

    def schema_version(self) -> int:
        with self._session() as session:
            row = session.get(MetaRow, "schema_version")
            return int(row.value) if row else SCHEMA_VERSION

    # -- generic upsert -----------------------------------------------------------------------------

    def _insert_ignore(self, session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows whose primary key is new; return how many were inserted."""
        if not rows:
            return 0
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        inserted = 0
        for row in rows:
            # RETURNING tells reliably whether the row was new on both SQLite and PostgreSQL
            # (rowcount is not dependable for ON CONFLICT DO NOTHING across drivers).
            statement = dialect.insert(table).values(**row).on_conflict_do_nothing().returning(table.c.id)
            inserted += len(session.execute(statement).all())
        return inserted

    # -- pairs --------------------------------------------------------------------------------------

    def add_pairs(self, pairs: Sequence[ImagePair]) -> int:
        """Insert pairs that are not yet in the catalog; return how many were new."""
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "domain": p.domain.value,
                "group_id": p.group_id,
                "width": p.width,
                "height": p.height,
                "record": p.model_dump(mode="json"),
                "created_at": p.created_at,
            }
            for p in pairs
        ]
        with self._session.begin() as session:
            return self._insert_ignore(session, PairRow.__table__, rows)

    def add_pair(self, pair: ImagePair) -> bool:
        """Insert one pair; False when it was already there."""
        return self.add_pairs([pair]) == 1

    def has_pair(self, pair_id: str) -> bool:
        with self._session() as session:
            return session.get(PairRow, pair_id) is not None

    def get_pair(self, pair_id: str) -> ImagePair:
        """The pair with id ``pair_id``.

        Raises:
            CatalogError: when there is none.
        """
        with self._session() as session:
            row = session.get(PairRow, pair_id)
            if row is None:
                raise CatalogError(
                    f"no pair {pair_id} in the catalog.", hint="list pairs with `craft-agent catalog info`."
                )
            return ImagePair.model_validate(row.record)

    def iter_pairs(self, domain: str | None = None, batch: int = 200) -> Iterator[ImagePair]:
        """All pairs in id order, optionally of one domain, streamed in batches."""
        statement = select(PairRow.record).order_by(PairRow.id)
        if domain:
            statement = statement.where(PairRow.domain == domain)
        with self._session() as session:
            for record in session.scalars(statement.execution_options(yield_per=batch)):
                yield ImagePair.model_validate(record)

    def count_pairs(self, domain: str | None = None) -> int:
        statement = select(func.count()).select_from(PairRow)
        if domain:
            statement = statement.where(PairRow.domain == domain)
        with self._session() as session:
            return int(session.scalar(statement) or 0)

    def pair_sources(self) -> Iterator[tuple[str, PairSource]]:
        """Every pair's id and where it came from on disk, streamed (for re-ingestion and removal by source)."""
        statement = select(PairRow.id, PairRow.record["source"]).order_by(PairRow.id)
        with self._session() as session:
            for pair_id, source in session.execute(statement.execution_options(yield_per=1000)).tuples():
                yield pair_id, PairSource.model_validate(source)

    def pair_ids_from(self, path: Path) -> list[str]:
        """Ids of the pairs ingested from ``path``: an image file of theirs, a folder holding their files, or
        the manifest that listed them."""
        target = Path(os.path.abspath(path))
        manifest = target.suffix.lower() in (".jsonl", ".csv") and not target.is_dir()
        found = []
        for pair_id, source in self.pair_sources():
            if manifest:
                if source.layout == "manifest" and Path(os.path.abspath(source.root)) == target.parent:
                    found.append(pair_id)
            elif any(f == target or f.is_relative_to(target) for f in source.files()):
                found.append(pair_id)
        return found

    def remove_pairs(self, pair_ids: Sequence[str], force: bool = False) -> PairRemoval:
        """Delete pairs with their candidates, triplets (and their state history) and audit records, at once.

        Image files stay in the store: it is content-addressed, so other pairs may share them.

        Args:
            force: also remove pairs whose triplets hold audit work (see :data:`DECIDED_STATES`).

        Returns:
            How many records of each kind were removed.

        Raises:
            CatalogError: for an unknown pair id, or audited triplets without ``force`` (nothing is removed then).
        """
        ids = list(dict.fromkeys(pair_ids))
        with self._session.begin() as session:
            known = {
                i
                for chunk in in_batches(ids, 500)
                for i in session.scalars(select(PairRow.id).where(PairRow.id.in_(chunk)))
            }
            missing = [i for i in ids if i not in known]
            if missing:
                more = f" (and {len(missing) - 1} more unknown ids)" if len(missing) > 1 else ""
                raise CatalogError(
                    f"no pair {missing[0]} in the catalog{more}.",
                    hint="check the id (the --json summaries of ingest and candidates list pair ids).",
                )
            states: dict[str, str] = {}
            audited_records: set[str] = set()
            for chunk in in_batches(ids, 500):
                statement = select(TripletRow.id, TripletRow.state).where(TripletRow.pair_id.in_(chunk))
                states.update(session.execute(statement).tuples().all())
            for chunk in in_batches(list(states), 500):
                audited_records.update(
                    session.scalars(select(AuditRow.triplet_id).where(AuditRow.triplet_id.in_(chunk)))
                )
            audited = {t for t, state in states.items() if TripletState(state) in DECIDED_STATES} | audited_records
            if audited and not force:
                whose = f"pair {ids[0]}" if len(ids) == 1 else f"these {len(ids)} pairs"
                raise CatalogError(
                    f"{len(audited)} triplet(s) of {whose} are audited (accepted, fixed, rejected, exported or with "
                    "audit records); removing the pairs would lose that work.",
                    hint="pass --force to remove them with their audits, or leave the pairs in the catalog.",
                )
            removal = PairRemoval(pairs=len(ids), triplets=len(states), audited_triplets=len(audited))
            for chunk in in_batches(list(states), 500):
                audits = select(func.count()).select_from(AuditRow).where(AuditRow.triplet_id.in_(chunk))
                removal.audits += int(session.scalar(audits) or 0)
                session.execute(delete(AuditRow).where(AuditRow.triplet_id.in_(chunk)))
                session.execute(delete(TripletEventRow).where(TripletEventRow.triplet_id.in_(chunk)))
                session.execute(delete(TripletRow).where(TripletRow.id.in_(chunk)))
            for chunk in in_batches(ids, 500):
                candidates = select(func.count()).select_from(CandidateRow).where(CandidateRow.pair_id.in_(chunk))
                removal.candidates += int(session.scalar(candidates) or 0)
                session.execute(delete(CandidateRow).where(CandidateRow.pair_id.in_(chunk)))
                session.execute(delete(PairRow).where(PairRow.id.in_(chunk)))
        return removal

    # -- candidates ---------------------------------------------------------------------------------

    def add_candidates(self, candidates: Sequence[ChangeCandidate]) -> int:
        """Insert candidates not yet stored; return how many were new."""
        rows = [{"id": c.id, "pair_id": c.pair_id, "record": c.model_dump(mode="json")} for c in candidates]
        with self._session.begin() as session:
            return self._insert_ignore(session, CandidateRow.__table__, rows)

    def count_candidates(self, pair_id: str | None = None) -> int:
        statement = select(func.count()).select_from(CandidateRow)
        if pair_id:
            statement = statement.where(CandidateRow.pair_id == pair_id)
        with self._session() as session:
            return int(session.scalar(statement) or 0)

    def candidates_for(self, pair_id: str) -> list[ChangeCandidate]:
        statement = select(CandidateRow.record).where(CandidateRow.pair_id == pair_id).order_by(CandidateRow.id)
        with self._session() as session:
            return [ChangeCandidate.model_validate(r) for r in session.scalars(statement)]

    # -- triplets -----------------------------------------------------------------------------------

    def upsert_triplet(self, triplet: Triplet, reason: str | None = None) -> bool:
        """Insert a triplet, or update its content when it exists (its state only through legal moves).

        Returns:
            True when the triplet was new.

        Raises:
            IllegalTransitionError: when the stored state cannot move to ``triplet.state``.
            CatalogError: when the triplet's pair is not in the catalog.
        """
        if not self.has_pair(triplet.pair_id):
            raise CatalogError(
                f"triplet {triplet.id} refers to pair {triplet.pair_id}, which is not in the catalog.",
                hint="ingest the pair first (`craft-agent ingest`).",
            )
        with self._session.begin() as session:
            return self._write_triplet(session, triplet, reason)

    def _write_triplet(self, session: Session, triplet: Triplet, reason: str | None) -> bool:
        row = session.get(TripletRow, triplet.id, with_for_update=self.dialect == "postgresql")
        record = triplet.model_dump(mode="json")
        if row is None:
            session.add(
                TripletRow(
                    id=triplet.id,
                    pair_id=triplet.pair_id,
                    state=triplet.state.value,
                    record=record,
                    updated_at=triplet.updated_at,
                )
            )
            session.flush()  # the event row refers to the triplet row: write that first
            session.add(
                TripletEventRow(
                    triplet_id=triplet.id, from_state=None, to_state=triplet.state.value, reason=reason, at=utc_now()
                )
            )
            return True
        current = TripletState(row.state)
        if current != triplet.state:
            check_transition(triplet.id, current, triplet.state)
            session.add(
                TripletEventRow(
                    triplet_id=triplet.id,
                    from_state=current.value,
                    to_state=triplet.state.value,
                    reason=reason,
                    at=utc_now(),
                )
            )
        row.state = triplet.state.value
        row.record = record
        row.updated_at = triplet.updated_at
        return False

    def move_triplets(
        self,
        triplet_ids: Sequence[str],
        target: TripletState,
        reason: str | None = None,
        only_from: TripletState | None = None,
    ) -> int:
        """Move many stored triplets to ``target`` in one transaction; returns how many moved.

        Args:
            only_from: when given, triplets in any other state are left alone (not an error).

        Raises:
            IllegalTransitionError: when a move is not allowed (nothing is written then).
        """
        moved = 0
        with self._session.begin() as session:
            for chunk in in_batches(triplet_ids, 500):
                for row in session.scalars(select(TripletRow).where(TripletRow.id.in_(chunk))).all():
                    current = TripletState(row.state)
                    if current is target or (only_from is not None and current is not only_from):
                        continue
                    self._write_triplet(session, Triplet.model_validate(row.record).moved_to(target), reason)
                    moved += 1
        return moved

    def get_triplets(self, triplet_ids: Sequence[str]) -> dict[str, Triplet]:
        """The stored triplets among ``triplet_ids``, by id (missing ids are absent)."""
        found: dict[str, Triplet] = {}
        with self._session() as session:
            for chunk in in_batches(triplet_ids, 500):
                for record in session.scalars(select(TripletRow.record).where(TripletRow.id.in_(chunk))):
                    triplet = Triplet.model_validate(record)
                    found[triplet.id] = triplet
        return found

    def save_audits(
        self,
        audits: Sequence[AuditRecord],
        removed: Sequence[str] = (),
        triplets: Sequence[tuple[Triplet, str]] = (),
    ) -> None:
        """Write audit records, remove stale ones and update triplets (with state events) in one transaction.

        Raises:
            IllegalTransitionError: when a triplet's new state is not reachable (nothing is written then).
        """
        with self._session.begin() as session:
            for triplet, reason in triplets:  # first: an audit row refers to its triplet's row
                self._write_triplet(session, triplet, reason)
            session.flush()
            for audit in audits:
                row = session.get(AuditRow, audit.id)
                record = audit.model_dump(mode="json")
                if row is None:
                    session.add(
                        AuditRow(id=audit.id, triplet_id=audit.triplet_id, record=record, updated_at=audit.updated_at)
                    )
                else:
                    row.record = record
                    row.updated_at = audit.updated_at
            if removed:
                session.execute(delete(AuditRow).where(AuditRow.id.in_(list(removed))))

    def move_triplet(self, triplet_id: str, target: TripletState, reason: str | None = None) -> Triplet:
        """Move a stored triplet to ``target`` through the state machine and record the event.

        Raises:
            CatalogError: when the triplet does not exist.
            IllegalTransitionError: when the move is not allowed.
        """
        triplet = self.get_triplet(triplet_id).moved_to(target)
        self.upsert_triplet(triplet, reason=reason)
        return triplet

    def has_triplet(self, triplet_id: str) -> bool:
        with self._session() as session:
            return session.get(TripletRow, triplet_id) is not None

    def get_triplet(self, triplet_id: str) -> Triplet:
        with self._session() as session:
            row = session.get(TripletRow, triplet_id)
            if row is None:
                raise CatalogError(f"no triplet {triplet_id} in the catalog.", hint="check the id.")
            return Triplet.model_validate(row.record)

    def iter_triplets(self, state: TripletState | None = None, pair_id: str | None = None) -> Iterator[Triplet]:
        statement = select(TripletRow.record).order_by(TripletRow.id)
        if state:
            statement = statement.where(TripletRow.state == state.value)
        if pair_id:
            statement = statement.where(TripletRow.pair_id == pair_id)
        with self._session() as session:
            for record in session.scalars(statement.execution_options(yield_per=200)):
                yield Triplet.model_validate(record)

    def triplet_ids(self, pair_id: str) -> set[str]:
        """The ids of a pair's triplets, without reading their records (masks and all)."""
        with self._session() as session:
            return set(session.scalars(select(TripletRow.id).where(TripletRow.pair_id == pair_id)))

    def triplet_history(self, triplet_id: str) -> list[tuple[str | None, str, str | None]]:
        """State moves of a triplet, oldest first, as (from, to, reason)."""
        statement = select(TripletEventRow).where(TripletEventRow.triplet_id == triplet_id).order_by(TripletEventRow.id)
        with self._session() as session:
            return [(e.from_state, e.to_state, e.reason) for e in session.scalars(statement)]

    def triplet_counts(self) -> dict[str, int]:
        statement = select(TripletRow.state, func.count()).group_by(TripletRow.state)
        with self._session() as session:
            counts = {state.value: 0 for state in TripletState}
            counts.update({state: int(n) for state, n in session.execute(statement).tuples()})
            return counts

    # -- audits -------------------------------------------------------------------------------------

    def upsert_audit(self, audit: AuditRecord) -> bool:
        """Insert or replace an audit record by id; True when it was new."""
        with self._session.begin() as session:
            row = session.get(AuditRow, audit.id)
            if row is None:
                session.add(
                    AuditRow(
                        id=audit.id,
                        triplet_id=audit.triplet_id,
                        record=audit.model_dump(mode="json"),
                        updated_at=audit.updated_at,
                    )
                )
                return True
            row.record = audit.model_dump(mode="json")
            row.updated_at = audit.updated_at
            return False

    def audits_by_triplet(self, triplet_ids: Sequence[str]) -> dict[str, list[AuditRecord]]:
        """Audit records of many triplets, by triplet id, each list ordered by record id."""
        found: dict[str, list[AuditRecord]] = {tid: [] for tid in triplet_ids}
        with self._session() as session:
            for chunk in in_batches(triplet_ids, 500):
                statement = select(AuditRow.record).where(AuditRow.triplet_id.in_(chunk)).order_by(AuditRow.id)
                for record in session.scalars(statement):
                    audit = AuditRecord.model_validate(record)
                    found[audit.triplet_id].append(audit)
        return found

    def audits_for(self, triplet_id: str) -> list[AuditRecord]:
        statement = select(AuditRow.record).where(AuditRow.triplet_id == triplet_id).order_by(AuditRow.id)
        with self._session() as session:
            return [AuditRecord.model_validate(r) for r in session.scalars(statement)]

    def audited_triplet_ids(self, id_prefix: str = "") -> list[str]:
        """Ids of the triplets that have an audit record whose id starts with ``id_prefix``."""
        statement = select(AuditRow.triplet_id).distinct().order_by(AuditRow.triplet_id)
        if id_prefix:
            statement = statement.where(AuditRow.id.startswith(id_prefix, autoescape=True))
        with self._session() as session:
            return list(session.scalars(statement))

    def iter_audits(self) -> Iterator[AuditRecord]:
        statement = select(AuditRow.record).order_by(AuditRow.id)
        with self._session() as session:
            for record in session.scalars(statement.execution_options(yield_per=500)):
                yield AuditRecord.model_validate(record)

    def start_run(self, kind: str, config: dict[str, Any]) -> str:
        """Record the start of a run (ingest, generate, export...) and return its id.

        Runs left open by a process of this host that no longer exists (killed, crashed) are marked
        ``interrupted`` first; runs of live processes and of other hosts are left alone.
        """
        run_id = uuid.uuid4().hex
        with self._session.begin() as session:
            for row in session.scalars(select(RunRow).where(RunRow.finished_at.is_(None), _open_run)):
                if _dead_here(row):
                    row.status = "interrupted"
                    row.summary = {
                        "interrupted": f"process {row.pid} on {row.host} ended without finishing this run; "
                        f"noticed at {utc_now().isoformat()} by run {run_id} ({kind})."
                    }
            session.add(
                RunRow(
                    id=run_id,
                    kind=kind,
                    started_at=utc_now(),
                    finished_at=None,
                    config=config,
                    status="running",
                    pid=os.getpid(),
                    host=host_name(),
                )
            )
        return run_id

    def record_failure(self, run_id: str, input: str, error: str) -> None:
        with self._session.begin() as session:
            session.add(FailureRow(run_id=run_id, input=input, error=error, at=utc_now()))

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        with self._session.begin() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise CatalogError(f"no run {run_id} in the catalog.", hint="start it with start_run().")
            row.finished_at = utc_now()
            row.summary = summary
            row.status = "finished"

    def failures(self, run_id: str) -> list[tuple[str, str]]:
        statement = select(FailureRow.input, FailureRow.error).where(FailureRow.run_id == run_id)
        with self._session() as session:
            return [(i, e) for i, e in session.execute(statement.order_by(FailureRow.id)).tuples()]

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        statement = select(RunRow).order_by(RunRow.started_at)
        if kind:
            statement = statement.where(RunRow.kind == kind)
        with self._session() as session:
            return [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "status": _status(r),
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "pid": r.pid,
                    "host": r.host,
                    "summary": r.summary,
                }
                for r in session.scalars(statement)
            ]

    def interrupted_runs(self) -> list[dict[str, Any]]:
        """Runs that will never finish, oldest first: marked ``interrupted``, or open with a dead process here."""
        return [run for run in self.runs() if run["status"] == "interrupted"]

    # -- overview -----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Counts for humans and `--json`: pairs per domain, triplets per state, candidates, audits."""
        with self._session() as session:
            domains = Counter(
                {d: int(n) for d, n in session.execute(select(PairRow.domain, func.count()).group_by(PairRow.domain))}
            )
            candidates = int(session.scalar(select(func.count()).select_from(CandidateRow)) or 0)
            audits = int(session.scalar(select(func.count()).select_from(AuditRow)) or 0)
            groups = int(session.scalar(select(func.count(func.distinct(PairRow.group_id)))) or 0)
        interrupted = [
            {key: run[key] for key in ("id", "kind", "started_at", "pid", "host")} for run in self.interrupted_runs()
        ]
        return {
            "catalog": _redacted(self.url),
            "schema_version": self.schema_version(),
            "pairs": sum(domains.values()),
            "pairs_by_domain": dict(sorted(domains.items())),
            "scene_groups": groups,
            "candidates": candidates,
            "triplets": self.triplet_counts(),
            "audits": audits,
            "interrupted_runs": {"count": len(interrupted), "latest": interrupted[-1] if interrupted else None},
        }


# An open run: started, not finished, not yet marked interrupted (NULL: written before runs had a status).
_open_run = or_(RunRow.status.is_(None), RunRow.status == "running")


def _dead_here(row: RunRow) -> bool:
    """True for an open run whose process was on this host and no longer exists."""
    return row.finished_at is None and row.pid is not None and row.host == host_name() and not pid_alive(row.pid)


def _status(row: RunRow) -> str:
    if row.status == "interrupted" or (row.status in (None, "running") and _dead_here(row)):
        return "interrupted"
    return row.status or ("finished" if row.finished_at else "running")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (status, audit pull) work while an ingest writes; a busy timeout turns brief
    # lock contention between processes into waiting instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
