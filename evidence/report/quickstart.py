"""The main job on a fresh machine: the SIMULATED peer support evidence base, analysed.

``evidence quickstart`` creates a SQLite database, migrates it, loads the peer support seed
(:func:`evidence.ingest.quickstart.quickstart`), stores the analysis plan of the codebook as
living views, computes them and writes the living report ``report.html`` beside the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evidence.config import project_root
from evidence.db.engine import get_engine
from evidence.ingest.codebook import load_codebook
from evidence.ingest.quickstart import QuickstartResult
from evidence.ingest.quickstart import quickstart as load_seed
from evidence.report.build import ReportResult, build_report
from evidence.views import create_plan_views, results_table

__all__ = ["Quickstart", "quickstart"]


@dataclass(frozen=True)
class Quickstart:
    """What the quickstart built: the seeded database, its views and their results."""

    seed: QuickstartResult
    views: tuple[str, ...]
    results: pd.DataFrame  # evidence.views.results_table: one row per view (and subgroup)
    report: ReportResult | None = None  # the living report (DIR/report.html)

    @property
    def directory(self) -> Path:
        return self.seed.directory

    @property
    def database_url(self) -> str:
        return self.seed.database_url


def quickstart(directory: str | Path | None = None, *, author: str | None = None) -> Quickstart:
    """Build the demonstration database in *directory* (default ``./quickstart``).

    Running it again changes no data: the seed is already stored and the views are fresh;
    the report is written again (and says that nothing changed since the previous one).
    """
    seed = load_seed(directory, author=author)
    codebook = load_codebook(project_root() / "schemas" / "peer_support.yaml")
    engine = get_engine(seed.database_url)
    try:
        views = create_plan_views(engine, codebook, author=author)
        results = results_table(engine, review=codebook.name)
        report = build_report(engine, seed.directory / "report.html", review=codebook.name)
    finally:
        engine.dispose()
    return Quickstart(seed=seed, views=tuple(views), results=results, report=report)
