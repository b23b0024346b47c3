"""Living updates on real data: Metapsy releases imported one after another.

Data: Metapsy project, metapsy.org, databases "gambling-psyctr" and "peer-support" (ODC-By
1.0), read from shared/data/metapsy/versions/ beside the repository (tests/_metapsy.py;
never copied into the repository).
"""

from __future__ import annotations

import pytest
from _metapsy import DATA

from evidence.db.engine import get_engine
from evidence.errors import ValidationError
from evidence.ingest.metapsy_store import import_metapsy
from evidence.views import (
    create_view,
    diff_revisions,
    recompute_as_of,
    refresh_affected,
    stale_views,
    view_history,
)

VERSIONS = DATA / "versions"


@pytest.fixture
def engine(migrated_db_url: str):
    needed = ("gambling-psyctr__v24.0.1.csv", "gambling-psyctr__v24.0.2.csv",
              "gambling-psyctr__v25.0.0.csv", "peer-support__v23.0.2.csv",
              "peer-support__v23.0.3.csv")  # fmt: skip
    missing = [n for n in needed if not (VERSIONS / n).is_file()]
    if missing:
        pytest.skip(f"Metapsy releases not found in {VERSIONS}: {', '.join(missing)}")
    engine = get_engine(migrated_db_url)
    yield engine
    engine.dispose()


def _snapshot(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
            for t in ("revision", "study", "result", "effect_size", "view_result")
        }


def test_gambling_releases_update_the_views_they_affect(engine) -> None:
    first = import_metapsy(VERSIONS / "gambling-psyctr__v24.0.1.csv", direction="lower",
                           database=engine, review="gambling")  # fmt: skip
    assert first.ingest.revision == 1 and first.loaded == 223 and first.sign == "metapsy"
    assert first.comparison.n_within >= 210  # the rest: Metapsy's approximate SE
    assert first.comparison.max_abs_diff_g < 1e-3
    views = {
        "overall": create_view(engine, "overall", "", model="three-level"),
        "che": create_view(engine, "che", "", model="che"),
        "post": create_view(engine, "post", 'timepoint == "post"'),
        "before-2010": create_view(engine, "before-2010", "year < 2010"),
    }
    assert {n: v.k_effects for n, v in views.items()} == {
        "overall": 223, "che": 223, "post": 157, "before-2010": 79}  # fmt: skip

    # 24.0.2 lost the decimal separator of .g in 135 rows: refused, nothing written
    before = _snapshot(engine)
    with pytest.raises(ValidationError) as info:
        import_metapsy(VERSIONS / "gambling-psyctr__v24.0.2.csv", direction="lower",
                       database=engine, review="gambling")  # fmt: skip
    assert info.value.failures[0]["column"] == ".g" and len(info.value.failures) > 100
    assert _snapshot(engine) == before

    # 25.0.0 lost the decimal separators of mean_age (39.2 in 24.0.2 is 3,92e+16; 20.3 is 203):
    # refused naming every cell, nothing written; the curator leaves the column out
    with pytest.raises(ValidationError) as info:
        import_metapsy(VERSIONS / "gambling-psyctr__v25.0.0.csv", direction="lower",
                       database=engine, review="gambling")  # fmt: skip
    assert {f["column"] for f in info.value.failures} == {"mean_age"}
    assert len(info.value.failures) == 231 and "--ignore-column mean_age" in str(info.value)
    assert _snapshot(engine) == before

    # then: new studies, one withdrawn, corrected numbers: one revision, views refreshed
    update = import_metapsy(VERSIONS / "gambling-psyctr__v25.0.0.csv", direction="lower",
                            database=engine, review="gambling",
                            ignore_columns=("mean_age",))  # fmt: skip
    assert update.ignored == ("mean_age",)
    changes = update.ingest.changes
    assert update.ingest.revision == 2
    assert (changes["study"].inserted, changes["study"].deleted) == (5, 1)
    assert changes["effect_size"].inserted == 103 and changes["effect_size"].deleted == 59
    assert stale_views(engine) == [] and refresh_affected(engine).recomputed == ()

    history = view_history(engine, "overall")
    assert [(e["revision"], e["k_effects"]) for e in history.entries] == [(1, 223), (2, 267)]
    tables = {c["table"] for c in history.entries[1]["changes"]}
    assert {"study", "result", "effect_size"} <= tables
    for name in views:
        for entry in view_history(engine, name).entries:
            _, again = recompute_as_of(engine, name, entry["revision"])
            assert again.headline["estimate"] == entry["estimate"]

    diff = diff_revisions(engine, 1, 2).get("views").set_index("view")
    assert diff.loc["overall", "k_after"] == 267 and diff.loc["overall", "changed"]
    assert diff.loc["post", "k_before"] == 157 and diff.loc["post", "k_after"] == 190


def test_peer_support_release_with_mojibake_is_caught_then_repaired(engine) -> None:
    # 23.0.2: row 13 (an msd row carrying another outcome's events) is left out, by request
    with pytest.raises(ValidationError, match="row 13: outcome_type"):
        import_metapsy(VERSIONS / "peer-support__v23.0.2.csv", direction="file",
                       database=engine)  # fmt: skip
    first = import_metapsy(VERSIONS / "peer-support__v23.0.2.csv", direction="file",
                           database=engine, skip_invalid=True)  # fmt: skip
    assert first.skipped == (13,) and first.loaded == 56 and len(first.no_effect_data) == 9
    overall = create_view(engine, "overall", "", model="three-level")
    clinical = create_view(engine, "clinical", 'domain == "Clinical recovery"')
    assert overall.k_effects == 56 and clinical.status == "ok"

    # 23.0.3 re-encoded its text once too often ("RÃ¼sch, 2014"): a second study would
    # appear beside "Rüsch, 2014". Validation refuses it; --repair-text decodes it back.
    before = _snapshot(engine)
    with pytest.raises(ValidationError) as info:
        import_metapsy(
            VERSIONS / "peer-support__v23.0.3.csv",
            direction="file",
            database=engine,
            skip_invalid=False,
            review="metapsy_peer_support",
        )
    assert (57, "study") in {(f["row"], f["column"]) for f in info.value.failures}
    assert _snapshot(engine) == before
    update = import_metapsy(VERSIONS / "peer-support__v23.0.3.csv", direction="file",
                            database=engine, skip_invalid=True, repair_text=True)  # fmt: skip
    assert len(update.repaired) == 12
    changes = update.ingest.changes
    # what 23.0.3 really changed: a new column, rob, coded for every study
    assert changes["moderator"].inserted == 1 and changes["moderator_value"].inserted == 28
    assert sum(c.total for t, c in changes.items()
               if t not in ("review", "moderator", "moderator_value")) == 0  # fmt: skip
    assert len(view_history(engine, "overall").entries) == 1  # no effect size moved
    by_rob = create_view(engine, "by-rob", "", moderators=["rob"])
    assert by_rob.status == "ok" and by_rob.k_effects == 56
