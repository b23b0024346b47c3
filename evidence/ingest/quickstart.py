"""The quickstart: a migrated SQLite database holding the SIMULATED peer support seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from evidence.config import project_root
from evidence.db.engine import database_error, get_engine
from evidence.db.migrate import upgrade
from evidence.ingest.loader import IngestReport, ingest

__all__ = ["QuickstartResult", "DEFAULT_DIRECTORY", "quickstart", "review_summary"]

#: Where ``evidence quickstart`` puts its database when no directory is given.
DEFAULT_DIRECTORY = Path("quickstart")


@dataclass(frozen=True)
class QuickstartResult:
    """The database the quickstart made and what it holds."""

    directory: Path
    database_url: str
    report: IngestReport
    summary: pd.DataFrame  # one row per domain, plus "total"
    simulated_studies: int


def review_summary(url: str, review: str) -> pd.DataFrame:
    """Studies, arms, outcomes, results and effect sizes of a review, per outcome domain."""
    sql = sa.text(
        """
        SELECT o.domain AS domain,
               COUNT(DISTINCT s.id) AS studies,
               COUNT(DISTINCT a.id) AS arms,
               COUNT(DISTINCT o.id) AS outcomes,
               COUNT(DISTINCT r.id) AS results,
               COUNT(DISTINCT e.id) AS effect_sizes,
               COUNT(DISTINCT CASE WHEN e.imputed_r THEN e.id END) AS imputed_r
        FROM study s
        JOIN review v ON v.id = s.review_id
        JOIN outcome o ON o.study_id = s.id
        LEFT JOIN result r ON r.outcome_id = o.id
        LEFT JOIN effect_size e ON e.result_id = r.id
        LEFT JOIN arm a ON a.study_id = s.id
        WHERE v.name = :review
        GROUP BY o.domain
        ORDER BY o.domain DESC
        """
    )
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(sql, {"review": review}).mappings().all())
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    finally:
        engine.dispose()
    if frame.empty:
        return frame
    total = frame.drop(columns="domain").sum()
    frame.loc[len(frame)] = {"domain": "total", **total.to_dict()}
    return frame


def quickstart(
    directory: str | Path | None = None, *, author: str | None = None
) -> QuickstartResult:
    """Create ``DIRECTORY/evidence.db``, migrate it and load the peer support seed.

    Running it again is harmless: the migrations are at head and the seed is already
    stored, so nothing changes.

    Parameters
    ----------
    directory
        Where the database goes (created if needed); default ``./quickstart``.
    author
        Recorded with the seed's revision (default: ``EVIDENCE_AUTHOR`` or the OS user).
    """
    directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(directory / 'evidence.db').resolve()}"
    upgrade(url)
    root = project_root()
    engine = get_engine(url)
    try:
        report = ingest(
            [root / "seeds" / "peer_support"],
            codebook=root / "schemas" / "peer_support.yaml",
            database=engine,
            author=author,
            message="quickstart: SIMULATED peer support seed",
            command="evidence quickstart",
        )
    finally:
        engine.dispose()
    return QuickstartResult(
        directory=directory,
        database_url=url,
        report=report,
        summary=review_summary(url, report.review),
        simulated_studies=report.simulated,
    )
