"""Tables of the living analysis views: ``analysis_view`` and ``view_result``.

They share :data:`evidence.db.models.metadata`, so ``alembic check`` compares them with
``migrations/versions/0003_views.py``.

Notes
-----
Neither table is watched by the history triggers (they are not in
:data:`evidence.db.models.DATA_TABLES`). A view result is derived data: it is reproduced
from the logged records, the view's definition and the engine version (``--as-of``).
Logging it would also open a data revision on every refresh, which would make every view
stale again at once. Every recompute is kept as its own ``view_result`` row instead, so a
view's history is its results, oldest first.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field

from evidence.db.models import EvidenceModel, utcnow

__all__ = ["AnalysisView", "ViewResult"]


class AnalysisView(EvidenceModel, table=True):
    """A stored analysis view: selection, measure, model, options, moderators or subgroup."""

    __tablename__ = "analysis_view"
    __table_args__ = (
        sa.UniqueConstraint("review_id", "name"),
        sa.CheckConstraint("source IN ('codebook', 'analyst')", name="source"),
        sa.CheckConstraint("model IN ('rma', 'three-level', 'che')", name="model"),
    )

    id: int | None = Field(default=None, primary_key=True)
    review_id: int = Field(foreign_key="review.id", ondelete="CASCADE", nullable=False)
    name: str
    title: str | None = Field(default=None, sa_type=sa.Text)
    source: str = Field(default="analyst")
    selection: str = Field(default="", sa_type=sa.Text, nullable=False)
    measure: str | None = None
    model: str = Field(default="rma")
    options: str = Field(default="{}", sa_type=sa.Text, nullable=False)
    moderators: str = Field(default="[]", sa_type=sa.Text, nullable=False)
    subgroup: str | None = None
    created_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime,
        nullable=False,
        sa_column_kwargs={"server_default": sa.func.current_timestamp()},
    )
    author: str | None = None


class ViewResult(EvidenceModel, table=True):
    """One computation of a view: what it saw, what it found, when it was last confirmed.

    ``revision`` and ``revision_count`` describe the data it was computed from (the highest
    revision number and the number of revisions then committed); ``checked_revision`` and
    ``checked_count`` the latest state at which it was confirmed to be current. Exactly
    one result per view has ``current`` set: the latest.
    """

    __tablename__ = "view_result"
    __table_args__ = (sa.Index("ix_view_result_view_current", "view_id", "current"),)

    id: int | None = Field(default=None, primary_key=True)
    view_id: int = Field(
        foreign_key="analysis_view.id", ondelete="CASCADE", nullable=False, index=True
    )
    revision: int = Field(nullable=False)
    revision_count: int = Field(nullable=False)
    checked_revision: int = Field(nullable=False)
    checked_count: int = Field(nullable=False)
    fingerprint: str = Field(nullable=False)
    engine_version: str = Field(nullable=False)
    computed_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime,
        nullable=False,
        sa_column_kwargs={"server_default": sa.func.current_timestamp()},
    )
    status: str = Field(default="ok")
    error: str | None = Field(default=None, sa_type=sa.Text)
    result: str | None = Field(default=None, sa_type=sa.Text)
    summary: str | None = Field(default=None, sa_type=sa.Text)
    study_ids: str | None = Field(default=None, sa_type=sa.Text)
    k_studies: int | None = None
    k_effects: int | None = None
    estimate: float | None = Field(default=None, sa_type=sa.Double)
    se: float | None = Field(default=None, sa_type=sa.Double)
    ci_lb: float | None = Field(default=None, sa_type=sa.Double)
    ci_ub: float | None = Field(default=None, sa_type=sa.Double)
    pi_lb: float | None = Field(default=None, sa_type=sa.Double)
    pi_ub: float | None = Field(default=None, sa_type=sa.Double)
    pval: float | None = Field(default=None, sa_type=sa.Double)
    tau2: float | None = Field(default=None, sa_type=sa.Double)
    I2: float | None = Field(default=None, sa_type=sa.Double)  # noqa: N815 - metafor's name
    QM: float | None = Field(default=None, sa_type=sa.Double)  # noqa: N815
    QMp: float | None = Field(default=None, sa_type=sa.Double)  # noqa: N815
    current: bool = Field(
        default=True,
        sa_type=sa.Boolean,
        nullable=False,
        sa_column_kwargs={"server_default": sa.true()},
    )
