"""Metapsy binary outcomes as log risk ratios: event counts and ``precalc_log_rr`` rows.

Synthetic Metapsy files written here. The expected log risk ratios of the event rows are the
textbook formula (log(p1 / p2), variance 1/a - 1/n1 + 1/c - 1/n2), computed here; the
``precalc_log_rr`` rows must come back exactly as the file gives them (the Metapsy standard:
"the log-risk ratio comparing events in the first arm to events in the second arm").
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from evidence.db.engine import get_engine
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.metapsy_store import import_metapsy
from evidence.stats import rma
from evidence.views import create_view, show_view

COLUMNS = ("study", "outcome_type", "instrument", "time", "time_weeks", "condition_arm1",
           "condition_arm2", "multi_arm1", "multi_arm2", "mean_arm1", "sd_arm1", "n_arm1",
           "mean_arm2", "sd_arm2", "n_arm2", "event_arm1", "event_arm2", "totaln_arm1",
           "totaln_arm2", "precalc_g", "precalc_g_se", "precalc_log_rr", "precalc_log_rr_se",
           ".g", ".g_se", ".log_rr", ".log_rr_se", "year", "country")  # fmt: skip
EXACT = 1e-12  # a reported number is stored as given: only float rounding of the text


def _log_rr(a: int, n1: int, c: int, n2: int) -> tuple[float, float]:
    return math.log((a / n1) / (c / n2)), 1 / a - 1 / n1 + 1 / c - 1 / n2


def _row(study: str, year: int, **cells: float | str) -> dict:
    return {"study": study, "outcome_type": "response", "instrument": "HAM-D", "time": "post",
            "time_weeks": 8, "condition_arm1": "cbt", "condition_arm2": "wl", "year": year,
            "country": "NL", **cells}  # fmt: skip


A_RR, B_RR = _log_rr(20, 40, 10, 41), _log_rr(12, 50, 6, 48)
ROWS = [
    # A, E: events (response: more events are better under Metapsy's convention)
    _row(
        "A, 2010",
        2010,
        event_arm1=20,
        totaln_arm1=40,
        event_arm2=10,
        totaln_arm2=41,
        **{".log_rr": A_RR[0], ".log_rr_se": math.sqrt(A_RR[1])},
    ),
    # B: only a precalculated log risk ratio; metapsyTools copies it into .log_rr
    _row(
        "B, 2012",
        2012,
        precalc_log_rr=0.405465,
        precalc_log_rr_se=0.25,
        **{".log_rr": 0.405465, ".log_rr_se": 0.25},
    ),
    # C: means too, but no events: the reported log RR is its binary outcome
    _row(
        "C, 2015",
        2015,
        mean_arm1=10.5,
        sd_arm1=5,
        n_arm1=30,
        mean_arm2=14,
        sd_arm2=6,
        n_arm2=32,
        precalc_log_rr=-0.2,
        precalc_log_rr_se=0.18,
    ),
    # D: means only: no log risk ratio
    _row(
        "D, 2018",
        2018,
        outcome_type="msd",
        mean_arm1=11,
        sd_arm1=5.5,
        n_arm1=28,
        mean_arm2=13,
        sd_arm2=6,
        n_arm2=30,
    ),
    _row("E, 2019", 2019, event_arm1=12, totaln_arm1=50, event_arm2=6, totaln_arm2=48),
]
REPORTED = {"B, 2012": (0.405465, 0.25**2), "C, 2015": (-0.2, 0.18**2)}


def _cell(value: float | str | None) -> str:
    if value is None:
        return "NA"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value).replace(".", ",")


def _write(tmp_path: Path, rows: list[dict], name: str = "binary-db__v1.0.0.csv") -> Path:
    path = tmp_path / name
    lines = [";".join(f'"{c}"' for c in COLUMNS)]
    lines += [";".join(_cell(row.get(c)) for c in COLUMNS) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stored(engine: sa.Engine, review: str) -> dict[str, tuple[float, float, str, bool]]:
    q = sa.text(
        "SELECT s.study_key, e.yi, e.vi, e.formula, e.flipped FROM effect_size e "
        "JOIN result r ON r.id = e.result_id JOIN study s ON s.id = r.study_id "
        "JOIN review v ON v.id = s.review_id WHERE v.name = :review"
    )
    with engine.connect() as conn:
        rows = conn.execute(q, {"review": review}).all()
    return {r[0]: (r[1], r[2], r[3], bool(r[4])) for r in rows}


@pytest.fixture
def engine(migrated_db_url: str):
    """SQLite and PostgreSQL: for the tests of what is stored and pooled."""
    engine = get_engine(migrated_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def lite(tmp_path: Path):
    """SQLite only: for orientation and refusals (decided before anything is written)."""
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    engine = get_engine(url)
    yield engine
    engine.dispose()


def test_precalc_log_rr_rows_are_stored_exactly_as_reported_beside_the_event_rows(
    engine, tmp_path: Path
) -> None:
    result = import_metapsy(_write(tmp_path, ROWS), direction="lower", database=engine,
                            measure="RR")  # fmt: skip
    assert (result.loaded, result.not_binary) == (4, (5,))  # D (file row 5) has no log RR
    assert "measure RR from the event counts (else precalc_log_rr)" in str(result)
    stored = _stored(engine, result.review)
    for study, (yi, vi) in REPORTED.items():
        assert stored[study][0] == pytest.approx(yi, abs=EXACT)
        assert stored[study][1] == pytest.approx(vi, abs=EXACT)
        assert stored[study][2:] == ("RR:reported", False)  # more responders: not flipped
    assert stored["A, 2010"][:2] == pytest.approx(A_RR, rel=1e-12)
    assert stored["E, 2019"][:2] == pytest.approx(B_RR, rel=1e-12)
    assert stored["A, 2010"][2:] == ("RR:events", False)
    # the reported rows are compared with .log_rr like the event rows (C has none)
    assert (result.comparison.n_compared, result.comparison.n_within) == (2, 2)
    # the inputs on record are the reported numbers (and the result keeps them)
    with engine.connect() as conn:
        inputs, yi_rep, vi_rep = conn.execute(sa.text(
            "SELECT e.inputs, r.yi_reported, r.vi_reported FROM effect_size e JOIN result r "
            "ON r.id = e.result_id JOIN study s ON s.id = r.study_id "
            "WHERE s.study_key = 'C, 2015'")).one()  # fmt: skip
    assert (yi_rep, vi_rep) == pytest.approx(REPORTED["C, 2015"], abs=EXACT)
    assert '"yi_reported": -0.2' in inputs and "vi_reported" in inputs


@pytest.mark.parametrize(
    ("options", "flipped"),
    [({"direction": "lower", "events": "fewer"}, True),  # relapse: more events are worse
     ({"direction": "higher"}, True),  # a positive Metapsy g (fewer events) is better
     ({"direction": "file", "events": "more"}, False)],
)  # fmt: skip
def test_precalc_log_rr_rows_follow_the_direction_of_the_event_rows(
    lite, tmp_path: Path, options: dict, flipped: bool
) -> None:
    result = import_metapsy(_write(tmp_path, ROWS), database=lite, measure="RR", **options)
    stored = _stored(lite, result.review)
    sign = -1 if flipped else 1
    for study, (yi, vi) in REPORTED.items():
        assert stored[study][:2] == pytest.approx((sign * yi, vi), abs=EXACT)
        assert stored[study][3] is flipped
    assert stored["A, 2010"][0] == pytest.approx(sign * A_RR[0], rel=1e-12)
    assert stored["A, 2010"][3] is flipped


def test_a_view_pools_the_reported_and_computed_log_risk_ratios(engine, tmp_path: Path) -> None:
    result = import_metapsy(_write(tmp_path, ROWS), direction="lower", database=engine,
                            measure="RR")  # fmt: skip
    view = create_view(engine, "all", "", review=result.review)
    assert view.k_effects == 4
    shown = show_view(engine, "all", review=result.review)
    yi = [A_RR[0], REPORTED["B, 2012"][0], REPORTED["C, 2015"][0], B_RR[0]]
    vi = [A_RR[1], REPORTED["B, 2012"][1], REPORTED["C, 2015"][1], B_RR[1]]
    expected = rma(yi, vi, method="REML")
    assert shown.headline["estimate"] == pytest.approx(float(expected.beta[0]), abs=1e-8)
    assert shown.headline["se"] == pytest.approx(float(expected.se[0]), abs=1e-8)
    assert shown.headline["tau2"] == pytest.approx(float(expected.tau2), abs=1e-8)


@pytest.mark.parametrize(
    ("given", "empty"),
    [({"precalc_log_rr": 0.3}, "precalc_log_rr_se"),
     ({"precalc_log_rr_se": 0.2}, "precalc_log_rr")],
)  # fmt: skip
def test_half_a_precalc_log_rr_is_refused_naming_the_cell_and_writes_nothing(
    lite, tmp_path: Path, given: dict, empty: str
) -> None:
    rows = [*ROWS, _row("F, 2021", 2021, **given)]  # file row 7
    path = _write(tmp_path, rows)
    with pytest.raises(ValidationError, match=f"row 7: {empty}: .* is given without {empty}"):
        import_metapsy(path, direction="lower", database=lite, measure="RR")
    with lite.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM review")).scalar() == 0
    # --skip-invalid leaves the row out and lists it; the others are loaded
    result = import_metapsy(path, direction="lower", database=lite, measure="RR",
                            skip_invalid=True)  # fmt: skip
    assert result.loaded == 4 and result.skipped == (7,)
    assert [(f["row"], f["column"]) for f in result.failures] == [(7, empty)]


def test_a_precalc_log_rr_with_a_nonpositive_se_or_beyond_the_bound_is_refused(
    lite, tmp_path: Path
) -> None:
    zero_se = [*ROWS, _row("F, 2021", 2021, precalc_log_rr=0.3, precalc_log_rr_se=0.0)]
    with pytest.raises(ValidationError, match="row 7: precalc_log_rr_se: precalc_log_rr_se > 0"):
        import_metapsy(_write(tmp_path, zero_se), direction="lower", database=lite,
                       measure="RR")  # fmt: skip
    # the store's plausibility rule for a log risk ratio (|yi| <= 10) holds for reported ones
    huge = [*ROWS, _row("F, 2021", 2021, precalc_log_rr=12.5, precalc_log_rr_se=0.5)]
    with pytest.raises(ValidationError, match=r"row 7: implausible effect size: \|log RR\| = "
                       r"12.5 exceeds 10; RR:reported from") as caught:  # fmt: skip
        import_metapsy(_write(tmp_path, huge), direction="lower", database=lite,
                       measure="RR")  # fmt: skip
    assert caught.value.failures[0]["row"] == 7
    with lite.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM effect_size")).scalar() == 0


def test_measure_or_leaves_precalc_log_rr_rows_out_counted(lite, tmp_path: Path) -> None:
    # the Metapsy standard has no precalculated log odds ratio
    result = import_metapsy(_write(tmp_path, ROWS), direction="lower", database=lite,
                            measure="OR")  # fmt: skip
    assert (result.loaded, result.not_binary) == (2, (3, 4, 5))
    assert "no precalculated log odds ratio" in str(result)
    assert {v[2] for v in _stored(lite, result.review).values()} == {"OR:events"}


def test_effect_source_file_is_refused_with_a_binary_measure(lite, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a log risk ratio"):
        import_metapsy(_write(tmp_path, ROWS), direction="lower", database=lite,
                       measure="RR", effect_source="file")  # fmt: skip
