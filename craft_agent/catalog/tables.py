"""SQLAlchemy tables of the catalog.

Each record is stored whole as JSON (the pydantic model is the schema) beside a few indexed columns used
for lookups and counts. Keys are content hashes, so inserts are idempotent upserts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class MetaRow(Base):
    __tablename__ = "catalog_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class PairRow(Base):
    __tablename__ = "pairs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    domain: Mapped[str] = mapped_column(String(8), index=True)
    group_id: Mapped[str] = mapped_column(String(128), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class CandidateRow(Base):
    __tablename__ = "candidates"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pair_id: Mapped[str] = mapped_column(ForeignKey("pairs.id"), index=True)
    record: Mapped[dict[str, Any]]


class TripletRow(Base):
    __tablename__ = "triplets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pair_id: Mapped[str] = mapped_column(ForeignKey("pairs.id"), index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    record: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class TripletEventRow(Base):
    __tablename__ = "triplet_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    triplet_id: Mapped[str] = mapped_column(ForeignKey("triplets.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class AuditRow(Base):
    __tablename__ = "audits"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    triplet_id: Mapped[str] = mapped_column(ForeignKey("triplets.id"), index=True)
    record: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    config: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # running, finished or interrupted; NULL in catalogs written before it existed (read from finished_at).
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The process that started the run, so a later run can tell a killed run from one still going.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)


class FailureRow(Base):
    __tablename__ = "failures"
    __table_args__ = (Index("ix_failures_run_input", "run_id", "input"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    input: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
