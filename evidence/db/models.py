"""The tables of an evidence base (SQLModel), as fixed by the data model contract.

Every table lives in one :data:`metadata` with a naming convention, so that every
constraint has a stable name (SQLite batch migrations recreate tables and need them).
Tables are created only by the Alembic migrations in ``migrations/``; these classes are
the target the migrations are checked against (``alembic check``).

Data tables (:data:`DATA_TABLES`) are watched by the history triggers: every insert,
update and delete is written to ``change_log`` against a ``revision``.

Notes
-----
Timestamps are naive UTC. Every foreign key between data tables cascades on delete, so
deleting a study deletes its arms, outcomes, timepoints, results, effect sizes, moderator
values and risk-of-bias judgements, and deleting an arm, outcome or timepoint deletes the
results that use it (each deletion is logged, so :func:`evidence.db.history.restore`
brings them back). History rows are never deleted: ``change_log.revision_id`` has no
``ON DELETE`` action.
"""

import datetime as dt
import warnings
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel

__all__ = [
    "NAMING_CONVENTION",
    "metadata",
    "EvidenceModel",
    "Review",
    "Study",
    "Arm",
    "Outcome",
    "Timepoint",
    "Result",
    "EffectSize",
    "Moderator",
    "ModeratorValue",
    "RiskOfBias",
    "Revision",
    "ChangeLog",
    "DATA_TABLES",
    "HISTORY_TABLES",
    "NATURAL_KEYS",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    """The current time as naive UTC (how every timestamp is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class EvidenceModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of every table: binds them to the one :data:`metadata`."""


def _fk(target: str, *, ondelete: str | None = "CASCADE", nullable: bool = False) -> object:
    return Field(
        default=None if nullable else ...,
        foreign_key=target,
        ondelete=ondelete,  # type: ignore[arg-type]
        nullable=nullable,
    )


def _text() -> object:
    return Field(default=None, sa_type=sa.Text)


def _float() -> object:
    return Field(default=None, sa_type=sa.Double)


def _now() -> object:
    return Field(
        default_factory=utcnow,
        sa_type=sa.DateTime,
        nullable=False,
        sa_column_kwargs={"server_default": sa.func.current_timestamp()},
    )


def _flag() -> object:
    return Field(
        default=False,
        sa_type=sa.Boolean,
        nullable=False,
        sa_column_kwargs={"server_default": sa.false()},
    )


class Review(EvidenceModel, table=True):
    """A review: its codebook (parsed, as JSON text) and its name."""

    __tablename__ = "review"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    title: str | None = None
    codebook_name: str | None = None
    codebook: str | None = _text()
    codebook_sha256: str | None = None
    created_at: dt.datetime = _now()
    updated_at: dt.datetime = _now()

    studies: list["Study"] = Relationship(
        back_populates="review", cascade_delete=True, passive_deletes=True
    )
    moderators: list["Moderator"] = Relationship(
        back_populates="review", cascade_delete=True, passive_deletes=True
    )


class Study(EvidenceModel, table=True):
    """A study (trial or report) of a review; ``study_key`` is its natural key."""

    __tablename__ = "study"
    __table_args__ = (sa.UniqueConstraint("review_id", "study_key"),)

    id: int | None = Field(default=None, primary_key=True)
    review_id: int = _fk("review.id")
    study_key: str
    citation: str | None = _text()
    doi: str | None = None
    year: int | None = None
    country: str | None = None
    design: str | None = None
    n_total: int | None = None
    simulated: bool = _flag()
    notes: str | None = _text()

    review: Optional["Review"] = Relationship(back_populates="studies")
    arms: list["Arm"] = Relationship(
        back_populates="study", cascade_delete=True, passive_deletes=True
    )
    outcomes: list["Outcome"] = Relationship(
        back_populates="study", cascade_delete=True, passive_deletes=True
    )
    timepoints: list["Timepoint"] = Relationship(
        back_populates="study", cascade_delete=True, passive_deletes=True
    )
    results: list["Result"] = Relationship(
        back_populates="study", cascade_delete=True, passive_deletes=True
    )
    risk_of_bias: list["RiskOfBias"] = Relationship(
        back_populates="study", cascade_delete=True, passive_deletes=True
    )


class Arm(EvidenceModel, table=True):
    """A group of a study: the intervention or the comparator."""

    __tablename__ = "arm"
    __table_args__ = (
        sa.UniqueConstraint("study_id", "arm_key"),
        sa.CheckConstraint("role IN ('intervention', 'comparator')", name="role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    arm_key: str
    label: str | None = None
    role: str
    description: str | None = _text()
    n_randomized: int | None = None

    study: Optional["Study"] = Relationship(back_populates="arms")


with warnings.catch_warnings():
    # The contract names the column ``construct``; it shadows pydantic's deprecated
    # ``BaseModel.construct`` classmethod, which these table classes never use.
    warnings.filterwarnings("ignore", message=r'Field name "construct"', category=UserWarning)

    class Outcome(EvidenceModel, table=True):
        """What was measured; ``direction`` says which raw direction is better."""

        __tablename__ = "outcome"
        __table_args__ = (
            sa.UniqueConstraint("study_id", "outcome_key"),
            sa.CheckConstraint("direction IN ('higher', 'lower')", name="direction"),
        )

        id: int | None = Field(default=None, primary_key=True)
        study_id: int = _fk("study.id")
        outcome_key: str
        domain: str | None = None
        construct: str | None = None
        instrument: str | None = None
        direction: str
        unit: str | None = None

        study: Optional["Study"] = Relationship(back_populates="outcomes")


class Timepoint(EvidenceModel, table=True):
    """When an outcome was measured (``post``, ``follow-up``) and weeks after baseline."""

    __tablename__ = "timepoint"
    __table_args__ = (sa.UniqueConstraint("study_id", "timepoint_key"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    timepoint_key: str
    label: str | None = None
    weeks: float | None = _float()

    study: Optional["Study"] = Relationship(back_populates="timepoints")


class Result(EvidenceModel, table=True):
    """Reported statistics of one comparison (or one group) at one outcome and timepoint.

    Arm-level statistics use metafor's ``escalc`` names (``n1i, m1i, sd1i, ...``); a
    reported contrast uses ``di, ti, pi, fi, ori`` with ``ci_lb, ci_ub``; a reported effect
    size with its sampling variance (e.g. a database's precomputed g and SE squared) uses
    ``yi_reported, vi_reported`` (migration 0005).
    """

    __tablename__ = "result"
    __table_args__ = (sa.UniqueConstraint("study_id", "result_key"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    result_key: str
    outcome_id: int = Field(
        foreign_key="outcome.id", ondelete="CASCADE", nullable=False, index=True
    )
    timepoint_id: int | None = Field(
        default=None, foreign_key="timepoint.id", ondelete="CASCADE", index=True
    )
    arm1_id: int | None = Field(default=None, foreign_key="arm.id", ondelete="CASCADE", index=True)
    arm2_id: int | None = Field(default=None, foreign_key="arm.id", ondelete="CASCADE", index=True)
    n1i: float | None = _float()
    m1i: float | None = _float()
    sd1i: float | None = _float()
    n2i: float | None = _float()
    m2i: float | None = _float()
    sd2i: float | None = _float()
    m1i_pre: float | None = _float()
    sd1i_pre: float | None = _float()
    m2i_pre: float | None = _float()
    sd2i_pre: float | None = _float()
    m1i_change: float | None = _float()
    sd1i_change: float | None = _float()
    m2i_change: float | None = _float()
    sd2i_change: float | None = _float()
    ri: float | None = _float()
    event1i: float | None = _float()
    event2i: float | None = _float()
    di: float | None = _float()
    ti: float | None = _float()
    pi: float | None = _float()
    fi: float | None = _float()
    ori: float | None = _float()
    ci_lb: float | None = _float()
    ci_ub: float | None = _float()
    yi_reported: float | None = _float()
    vi_reported: float | None = _float()
    source_report: str | None = None
    location: str | None = None
    coder: str | None = None
    coded_at: dt.date | None = Field(default=None, sa_type=sa.Date)
    notes: str | None = _text()

    study: Optional["Study"] = Relationship(back_populates="results")
    effect_size: Optional["EffectSize"] = Relationship(
        back_populates="result",
        cascade_delete=True,
        passive_deletes=True,
        sa_relationship_kwargs={"uselist": False},
    )


class EffectSize(EvidenceModel, table=True):
    """The effect size computed from one result (``yi``, ``vi``) and how it was computed."""

    __tablename__ = "effect_size"

    id: int | None = Field(default=None, primary_key=True)
    result_id: int = Field(foreign_key="result.id", ondelete="CASCADE", nullable=False, unique=True)
    measure: str
    yi: float | None = _float()
    vi: float | None = _float()
    formula: str | None = None
    inputs: str | None = _text()
    flipped: bool = _flag()
    imputed_r: bool = _flag()
    ri_used: float | None = _float()
    cluster: str | None = None
    n_split: bool = _flag()
    computed_at: dt.datetime = _now()
    engine_version: str | None = None

    result: Optional["Result"] = Relationship(back_populates="effect_size")


class Moderator(EvidenceModel, table=True):
    """A moderator declared by the codebook, at study, arm or effect level."""

    __tablename__ = "moderator"
    __table_args__ = (
        sa.UniqueConstraint("review_id", "name"),
        sa.CheckConstraint("level IN ('study', 'arm', 'effect')", name="level"),
        sa.CheckConstraint(
            "type IN ('categorical', 'numeric', 'integer', 'boolean', 'text')", name="type"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    review_id: int = _fk("review.id")
    name: str
    level: str
    type: str
    unit: str | None = None
    levels: str | None = _text()
    derived_from: str | None = None
    description: str | None = _text()

    review: Optional["Review"] = Relationship(back_populates="moderators")
    values: list["ModeratorValue"] = Relationship(
        back_populates="moderator", cascade_delete=True, passive_deletes=True
    )


class ModeratorValue(EvidenceModel, table=True):
    """A coded moderator value; exactly one of study, arm or result is set.

    Uniqueness per (moderator, target) is kept by three partial unique indexes, one per
    target column (a plain unique constraint over nullable columns would not hold).
    """

    __tablename__ = "moderator_value"
    __table_args__ = (
        sa.CheckConstraint(
            "(CASE WHEN study_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN arm_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN result_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_target",
        ),
        sa.Index(
            "uq_moderator_value_study",
            "study_id",
            "moderator_id",
            unique=True,
            sqlite_where=sa.text("study_id IS NOT NULL"),
            postgresql_where=sa.text("study_id IS NOT NULL"),
        ),
        sa.Index(
            "uq_moderator_value_arm",
            "arm_id",
            "moderator_id",
            unique=True,
            sqlite_where=sa.text("arm_id IS NOT NULL"),
            postgresql_where=sa.text("arm_id IS NOT NULL"),
        ),
        sa.Index(
            "uq_moderator_value_result",
            "result_id",
            "moderator_id",
            unique=True,
            sqlite_where=sa.text("result_id IS NOT NULL"),
            postgresql_where=sa.text("result_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    moderator_id: int = Field(
        foreign_key="moderator.id", ondelete="CASCADE", nullable=False, index=True
    )
    study_id: int | None = _fk("study.id", nullable=True)
    arm_id: int | None = _fk("arm.id", nullable=True)
    result_id: int | None = _fk("result.id", nullable=True)
    value_text: str | None = _text()
    value_num: float | None = _float()

    moderator: Optional["Moderator"] = Relationship(back_populates="values")


class RiskOfBias(EvidenceModel, table=True):
    """A risk-of-bias judgement of a study (or of one of its results) in one domain."""

    __tablename__ = "risk_of_bias"
    __table_args__ = (
        sa.CheckConstraint("judgement IN ('low', 'some concerns', 'high')", name="judgement"),
        sa.Index(
            "uq_risk_of_bias_study",
            "study_id",
            "tool",
            "domain",
            unique=True,
            sqlite_where=sa.text("result_id IS NULL"),
            postgresql_where=sa.text("result_id IS NULL"),
        ),
        sa.Index(
            "uq_risk_of_bias_result",
            "result_id",
            "tool",
            "domain",
            unique=True,
            sqlite_where=sa.text("result_id IS NOT NULL"),
            postgresql_where=sa.text("result_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    result_id: int | None = _fk("result.id", nullable=True)
    tool: str
    domain: str
    judgement: str
    support: str | None = _text()

    study: Optional["Study"] = Relationship(back_populates="risk_of_bias")


class Revision(EvidenceModel, table=True):
    """A data revision: one committed write (through ``evidence`` or plain SQL)."""

    __tablename__ = "revision"
    __table_args__ = (sa.CheckConstraint("source IN ('evidence', 'sql')", name="source"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: dt.datetime = _now()
    author: str | None = None
    message: str | None = _text()
    source: str = Field(default="evidence")
    command: str | None = _text()


class ChangeLog(EvidenceModel, table=True):
    """One logged row change, written by the history triggers, never by hand."""

    __tablename__ = "change_log"
    __table_args__ = (
        sa.CheckConstraint("op IN ('insert', 'update', 'delete')", name="op"),
        sa.Index("ix_change_log_table_row", "table_name", "row_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    revision_id: int = Field(foreign_key="revision.id", nullable=False, index=True)
    table_name: str
    row_id: int
    op: str
    old_values: str | None = _text()
    new_values: str | None = _text()
    changed_at: dt.datetime = _now()
    author: str | None = None


#: Tables whose every change is logged, parents before children.
DATA_TABLES: tuple[str, ...] = (
    "review",
    "study",
    "arm",
    "outcome",
    "timepoint",
    "result",
    "effect_size",
    "moderator",
    "moderator_value",
    "risk_of_bias",
)

#: Tables that hold the history itself (not logged).
HISTORY_TABLES: tuple[str, ...] = ("revision", "change_log")

#: Natural key columns of each data table (besides the parent id), for lookups by key.
NATURAL_KEYS: dict[str, str] = {
    "review": "name",
    "study": "study_key",
    "arm": "arm_key",
    "outcome": "outcome_key",
    "timepoint": "timepoint_key",
    "result": "result_key",
    "moderator": "name",
}
