"""The BCG codebook's analysis plan as views reproduces metafor's published analyses.

Reference: Viechtbauer (2010), J Stat Softw 36(3), and metafor's documentation for
dat.bcg (log risk ratios, REML): rma(yi, vi) gives estimate -0.7145 (se 0.1798), tau^2
0.3132; rma(yi, vi, mods = ~ ablat) gives QM(df = 1) = 16.3571 with slope -0.0291;
rma(yi, vi, mods = ~ factor(alloc)) gives QM(df = 2) = 1.7675, p = 0.4132. The codebook
codes TB cases as lower-is-better, so our effect sizes are those log risk ratios with the
sign reversed (positive = the vaccine protects). Published values have 4 decimals: the
tolerance is half a unit in the last place.
"""

from __future__ import annotations

import pytest

from evidence.config import project_root
from evidence.db.engine import get_engine
from evidence.ingest.codebook import load_codebook
from evidence.ingest.loader import ingest
from evidence.views import create_plan_views, show_view

ROOT = project_root()
TOL = 5e-5


@pytest.fixture
def engine(migrated_db_url: str):
    engine = get_engine(migrated_db_url)
    ingest([ROOT / "seeds" / "bcg"], codebook=ROOT / "schemas" / "bcg.yaml", database=engine)
    create_plan_views(engine, load_codebook(ROOT / "schemas" / "bcg.yaml"))
    yield engine
    engine.dispose()


def test_bcg_plan_views_match_metafor(engine) -> None:
    overall = show_view(engine, "overall")
    assert overall.k_effects == 13 and not overall.simulated
    assert overall.headline["estimate"] == pytest.approx(0.7145, abs=TOL)
    assert overall.headline["se"] == pytest.approx(0.1798, abs=TOL)
    assert overall.headline["tau2"] == pytest.approx(0.3132, abs=TOL)
    latitude = show_view(engine, "latitude")
    assert latitude.headline["QM"] == pytest.approx(16.3571, abs=TOL)
    assert latitude.result["moderators"]["beta"][1] == pytest.approx(0.0291, abs=TOL)
    allocation = show_view(engine, "allocation")
    assert allocation.headline["QM"] == pytest.approx(1.7675, abs=TOL)
    assert allocation.headline["QMp"] == pytest.approx(0.4132, abs=TOL)
    assert set(allocation.result["subgroup"]["levels"]) == {"random", "alternate", "systematic"}
