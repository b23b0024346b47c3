"""A reported effect size on a result row: formula ``SMD:reported`` and its storage.

``yi_reported``/``vi_reported`` (migration 0005) hold an effect size and its sampling
variance as a source reports them (e.g. Metapsy's ``precalc_g`` and ``precalc_g_se``
squared). They are the lowest-priority formula and are taken as given.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from evidence.db.engine import get_engine, write_transaction
from evidence.errors import ValidationError
from evidence.stats.effects import REPORTED, compute_effect, compute_effects

MEANS = {"m1i": 10.5, "sd1i": 4.1, "n1i": 40, "m2i": 13.2, "sd2i": 4.4, "n2i": 42}


def test_reported_effect_is_taken_as_given_with_its_inputs_on_record() -> None:
    out = compute_effect({"yi_reported": -0.41, "vi_reported": 0.0529})
    assert (out.yi, out.vi, out.measure, out.formula) == (-0.41, 0.0529, "SMD", REPORTED)
    assert out.inputs == {"yi_reported": -0.41, "vi_reported": 0.0529}
    assert not out.flipped and not out.imputed_r and out.ri_used is None


def test_reported_effect_is_flipped_for_a_lower_is_better_outcome() -> None:
    out = compute_effect({"yi_reported": -0.41, "vi_reported": 0.0529}, direction="lower")
    assert (out.yi, out.vi, out.flipped) == (0.41, 0.0529, True)


def test_reported_effect_has_the_lowest_priority() -> None:
    reported = {"yi_reported": 9.0, "vi_reported": 1.0}
    assert compute_effect({**MEANS, **reported}).formula == "SMD:means"
    odds = {"ori": 2.0, "ci_lb": 1.2, "ci_ub": 3.4}
    assert compute_effect({**odds, **reported}).formula == "SMD:logOR"
    assert compute_effect({"di": 0.3, "n1i": 20, "n2i": 20, **reported}).formula == "SMD:d"


def test_reported_effect_needs_both_numbers_and_a_positive_variance() -> None:
    with pytest.raises(ValidationError, match="no effect size can be computed"):
        compute_effect({"yi_reported": 0.3})
    with pytest.raises(ValidationError, match="vi_reported > 0") as info:
        compute_effect({"yi_reported": 0.3, "vi_reported": 0.0})
    assert info.value.failures[0]["column"] == "vi_reported"


def test_vectorised_effects_agree_with_the_reference_row_by_row() -> None:
    frame = pd.DataFrame(
        [
            {"yi_reported": 0.25, "vi_reported": 0.04},
            {**MEANS, "yi_reported": 5.0, "vi_reported": 1.0},
            {"yi_reported": -1.5, "vi_reported": 0.3},
            {"event1i": 4, "n1i": 30, "event2i": 9, "n2i": 31, "yi_reported": 1.0,
             "vi_reported": 0.1},
        ]
    )  # fmt: skip
    direction = ["higher", "higher", "lower", "higher"]
    out = compute_effects(frame, direction=direction)
    assert list(out["formula"]) == [REPORTED, "SMD:means", REPORTED, "SMD:logOR"]
    for i, row in frame.iterrows():
        ref = compute_effect(row.to_dict(), direction=direction[i])
        assert out["yi"].iloc[i] == pytest.approx(ref.yi, rel=1e-14)
        assert out["vi"].iloc[i] == pytest.approx(ref.vi, rel=1e-14)
        assert out["inputs"].iloc[i] == ref.inputs
    assert out["yi"].iloc[2] == 1.5 and out["vi"].iloc[2] == 0.3


def test_vectorised_effects_list_a_non_positive_reported_variance_by_row() -> None:
    frame = pd.DataFrame({"yi_reported": [0.2, 0.1], "vi_reported": [0.01, -0.5]})
    with pytest.raises(ValidationError) as info:
        compute_effects(frame)
    assert [(f["row"], f["column"]) for f in info.value.failures] == [(3, "vi_reported")]


def test_reported_columns_are_stored_and_logged_at_full_precision(migrated_db_url: str) -> None:
    engine = get_engine(migrated_db_url)
    yi, vi = -0.123456789012345678, 0.1 / 3
    try:
        with write_transaction(engine, message="reported effect") as (conn, _):
            review = conn.execute(
                sa.text("INSERT INTO review (name) VALUES ('r') RETURNING id")
            ).scalar_one()
            study = conn.execute(
                sa.text("INSERT INTO study (review_id, study_key) VALUES (:r, 'S') RETURNING id"),
                {"r": review},
            ).scalar_one()
            outcome = conn.execute(
                sa.text(
                    "INSERT INTO outcome (study_id, outcome_key, domain, direction)"
                    " VALUES (:s, 'o', 'd', 'higher') RETURNING id"
                ),
                {"s": study},
            ).scalar_one()
            conn.execute(
                sa.text(
                    "INSERT INTO result (study_id, result_key, outcome_id, yi_reported,"
                    " vi_reported) VALUES (:s, 'r1', :o, :yi, :vi)"
                ),
                {"s": study, "o": outcome, "yi": yi, "vi": vi},
            )
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT yi_reported, vi_reported FROM result")).one()
            logged = conn.execute(
                sa.text("SELECT new_values FROM change_log WHERE table_name = 'result'")
            ).scalar_one()
        assert tuple(stored) == (yi, vi)
        new = json.loads(logged)
        assert (new["yi_reported"], new["vi_reported"]) == (yi, vi)
    finally:
        engine.dispose()
