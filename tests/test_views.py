"""Stored views on the SIMULATED peer support seed: create, show, freshness, history, as-of.

Runs on SQLite, and on PostgreSQL when EVIDENCE_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from evidence.config import project_root
from evidence.db.engine import get_engine, write_transaction
from evidence.errors import NotFoundError, SelectionError
from evidence.ingest.codebook import load_codebook
from evidence.ingest.loader import ingest
from evidence.views import (
    create_plan_views,
    create_view,
    diff_revisions,
    drop_view,
    list_views,
    recompute_as_of,
    refresh_affected,
    results_table,
    show_view,
    stale_views,
    view_history,
)

ROOT = project_root()
CODEBOOK = ROOT / "schemas" / "peer_support.yaml"


@pytest.fixture
def seeded(migrated_db_url: str):
    engine = get_engine(migrated_db_url)
    ingest([ROOT / "seeds" / "peer_support"], codebook=CODEBOOK, database=engine)
    yield engine
    engine.dispose()


def _edit_input(conn: sa.Connection, es_id: int, delta: float) -> None:
    """Plain SQL: change the mean of an effect size's result (the effect size follows)."""
    conn.execute(
        sa.text(
            "UPDATE result SET m1i = m1i + :d"
            " WHERE id = (SELECT result_id FROM effect_size WHERE id = :i)"
        ),
        {"d": delta, "i": es_id},
    )


def _set_yi(engine: sa.Engine, es_id: int, delta: float) -> int:
    with write_transaction(engine, message="edit") as (conn, revision):
        conn.execute(
            sa.text("UPDATE effect_size SET yi = yi + :d WHERE id = :i"), {"d": delta, "i": es_id}
        )
    return revision


def _study_of(engine: sa.Engine, es_id: int) -> tuple[str, str]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT s.study_key, o.domain FROM effect_size e"
                " JOIN result r ON r.id = e.result_id JOIN study s ON s.id = r.study_id"
                " JOIN outcome o ON o.id = r.outcome_id"
                " WHERE e.id = :i"
            ),
            {"i": es_id},
        ).one()


def test_created_view_stores_its_result_with_revision_fingerprint_and_summary(seeded) -> None:
    status = create_view(
        seeded, "mental-controlled", 'domain == "mental" and design == "controlled"',
        model="che", options={"rho": 0.6},
    )  # fmt: skip
    assert status.fresh and status.status == "ok"
    assert status.revision == 1 and status.k_effects > 0
    assert status.k_studies <= status.k_effects
    assert status.headline["ci_lb"] < status.headline["estimate"] < status.headline["ci_ub"]
    assert "Multivariate Meta-Analysis Model" in status.summary
    assert "SIMULATED" in status.summary
    assert status.result["overall"]["k"] == status.k_effects
    assert json.dumps(status.to_dict())


def test_view_create_refuses_bad_selection_and_stores_nothing(seeded) -> None:
    with pytest.raises(SelectionError, match="position 1: unknown field 'domian'"):
        create_view(seeded, "bad", 'domian == "mental"')
    with pytest.raises(SelectionError, match="not a level of 'platform'"):
        create_view(seeded, "bad", 'platform in ["app", "fax"]')
    with pytest.raises(SelectionError, match="moderator 'colour' is not a declared field"):
        create_view(seeded, "bad", "", moderators=["colour"])
    assert list_views(seeded) == []


def test_injection_in_a_view_selection_never_reaches_sql(seeded) -> None:
    status = create_view(seeded, "inj", 'study == "x\'; DROP TABLE study; --"')
    assert status.status == "error" and status.k_effects == 0
    with seeded.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM study")).scalar() == 120
    with pytest.raises(SelectionError, match="unexpected character ';'"):
        create_view(seeded, "inj2", 'domain == "mental"; DROP TABLE study')


def test_a_write_refreshes_exactly_the_views_it_affects(seeded) -> None:
    create_plan_views(seeded, load_codebook(CODEBOOK))
    es_id = 1
    study, domain = _study_of(seeded, es_id)
    with seeded.begin() as conn:  # plain SQL: no refresh on write, detected on read
        _edit_input(conn, es_id, 5.0)
    assert len(stale_views(seeded)) == 22  # every view is unconfirmed until checked
    report = refresh_affected(seeded)
    other = "mental" if domain == "physical" else "physical"
    assert set(report.recomputed) == {v for v in report.recomputed if v.startswith(domain)}
    assert f"{domain}-overall" in report.recomputed
    assert all(v.startswith(other) for v in report.confirmed)
    assert len(report.recomputed) + len(report.confirmed) == 22
    assert stale_views(seeded) == []


def test_a_write_through_evidence_leaves_every_view_fresh_when_it_returns(seeded) -> None:
    create_plan_views(seeded, load_codebook(CODEBOOK))
    study, domain = _study_of(seeded, 1)
    before = show_view(seeded, f"{domain}-overall", refresh=False)
    revision = _set_yi(seeded, 1, 0.5)
    assert stale_views(seeded) == []
    after = show_view(seeded, f"{domain}-overall", refresh=False)
    assert after.fresh and after.revision == revision
    assert after.headline["estimate"] != before.headline["estimate"]


def test_plain_sql_change_is_detected_and_never_shown_as_current(seeded) -> None:
    before = create_view(seeded, "all", "")
    with seeded.begin() as conn:  # plain SQL, outside evidence's write path
        _edit_input(conn, 2, 10.0)
    assert stale_views(seeded) == ["all"]
    stale = show_view(seeded, "all", refresh=False)
    assert not stale.fresh
    with seeded.connect() as conn:
        row = conn.execute(sa.text("SELECT stale FROM pooled_estimate")).one()
    assert row.stale == 1
    shown = show_view(seeded, "all")
    # revision 2: the plain-SQL edit; 3: the effect size recomputed from it, then the view
    assert shown.fresh and shown.revision == before.revision + 2
    assert shown.headline["estimate"] != before.headline["estimate"]


def test_unrelated_change_confirms_view_without_new_result(seeded) -> None:
    create_view(seeded, "m", 'domain == "mental"')
    with write_transaction(seeded) as (conn, _):
        conn.execute(sa.text("UPDATE study SET notes = 'checked' WHERE study_key = 'SIM-005'"))
    report = refresh_affected(seeded)
    assert report.recomputed == ()
    assert len(view_history(seeded, "m").entries) == 1


def test_history_keeps_every_recompute_and_as_of_reproduces_it_exactly(seeded) -> None:
    create_view(seeded, "all", "", model="three-level")
    _set_yi(seeded, 3, 0.25)
    refresh_affected(seeded)
    _set_yi(seeded, 4, -0.4)
    refresh_affected(seeded)
    history = view_history(seeded, "all")
    assert [e["revision"] for e in history.entries] == [1, 2, 3]
    assert [c["row_id"] for c in history.entries[1]["changes"]] == [3]
    assert history.entries[2]["changes"][0]["table"] == "effect_size"
    for entry in history.entries:
        revision, again = recompute_as_of(seeded, "all", entry["revision"])
        assert revision == entry["revision"]
        assert again.fingerprint == entry["fingerprint"]
        assert again.headline["estimate"] == entry["estimate"]
        assert again.headline["ci_lb"] == entry["ci_lb"]
        assert again.headline["ci_ub"] == entry["ci_ub"]


def test_diff_lists_changed_records_and_every_views_change(seeded) -> None:
    create_view(seeded, "all", "")
    create_view(seeded, "none-changed", 'study == "SIM-120"')
    _set_yi(seeded, 1, 0.3)
    diff = diff_revisions(seeded, 1, 2)
    assert [(c["table"], c["row_id"], c["op"]) for c in diff["changes"]] == [
        ("effect_size", 1, "update")
    ]
    views = diff["views"].set_index("view")
    assert views.loc["all", "changed"] and views.loc["all", "change"] != 0
    assert not views.loc["none-changed", "changed"]


def test_plan_views_and_results_table_are_labelled_simulated(seeded) -> None:
    names = create_plan_views(seeded, load_codebook(CODEBOOK))
    assert len(names) == 22 and "mental-region" in names
    table = results_table(seeded)
    assert "SIMULATED" in table.attrs["title"]
    overall = table[(table["view"] == "mental-overall") & (table["level"] == "")].iloc[0]
    assert overall["k_studies"] == 73 and overall["k_effects"] == 118
    region = table[table["view"] == "physical-region"]
    assert set(region["level"]) == {"", "Western", "Eastern"}
    assert region.iloc[0]["test"].startswith("QM=")
    with seeded.connect() as conn:
        cols = conn.execute(sa.text("SELECT * FROM analysis_dataset")).keys()
        n = conn.execute(sa.text("SELECT count(*) FROM pooled_estimate WHERE stale = 0")).scalar()
    assert {"platform", "region", "mean_age", "yi", "vi"} <= set(cols)
    assert n == 22


def test_drop_view_removes_it_and_its_results(seeded) -> None:
    create_view(seeded, "x", "")
    assert drop_view(seeded, "x") == 1
    with pytest.raises(NotFoundError):
        show_view(seeded, "x")


def test_refresh_during_writes_never_mixes_states(seeded) -> None:
    """A writer keeps editing while views refresh: each stored result equals the as-of fit."""
    create_view(seeded, "all", "", model="rma")
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(6):
                with write_transaction(seeded) as (conn, _):
                    conn.execute(sa.text("UPDATE effect_size SET yi = yi + 0.01 WHERE id <= 40"))
                    conn.execute(
                        sa.text("UPDATE effect_size SET vi = vi * 1.01 WHERE id > 150"),
                    )
                    del i
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        refresh_affected(seeded)
    thread.join()
    refresh_affected(seeded)
    assert not failures
    history = view_history(seeded, "all")
    assert len(history.entries) >= 2
    for entry in history.entries:
        _, again = recompute_as_of(seeded, "all", entry["revision"])
        assert again.fingerprint == entry["fingerprint"]
        assert again.headline["estimate"] == entry["estimate"]


def test_ingest_of_an_edited_sheet_refreshes_the_affected_views_before_it_returns(
    seeded, tmp_path
) -> None:
    import shutil

    import pandas as pd

    create_view(seeded, "m", 'domain == "mental"')
    create_view(seeded, "sim-002", 'study == "SIM-002"')
    sheets = tmp_path / "sheets"
    shutil.copytree(ROOT / "seeds" / "peer_support", sheets)
    results = pd.read_csv(sheets / "results.csv", dtype=str, keep_default_na=False)
    row = results.index[results["study_key"] == "SIM-002"][0]
    results.loc[row, "m1i"] = str(float(results.loc[row, "m1i"]) + 2)
    results.to_csv(sheets / "results.csv", index=False)
    report = ingest([sheets], codebook=CODEBOOK, database=seeded)
    assert report.revision == 2
    assert stale_views(seeded) == []
    assert len(view_history(seeded, "sim-002").entries) == 2  # SIM-002 changed
    assert len(view_history(seeded, "m").entries) == 1  # SIM-002 has a physical outcome


def test_as_of_a_date_uses_the_last_revision_of_that_time(seeded) -> None:
    create_view(seeded, "all", "")
    _set_yi(seeded, 1, 0.2)
    refresh_affected(seeded)
    revision, result = recompute_as_of(seeded, "all", "2999-01-01")
    assert revision == 2
    assert result.fingerprint == view_history(seeded, "all").entries[-1]["fingerprint"]
    with pytest.raises(NotFoundError, match="no data revision exists before 2000-01-01"):
        recompute_as_of(seeded, "all", "2000-01-01")
    with pytest.raises(SelectionError, match="neither a revision number nor a date"):
        recompute_as_of(seeded, "all", "yesterday")


def test_replacing_a_view_definition_recomputes_it_and_keeps_an_unchanged_one(seeded) -> None:
    codebook = load_codebook(CODEBOOK)
    create_plan_views(seeded, codebook)
    create_plan_views(seeded, codebook)  # same plan again: nothing recomputed
    assert len(view_history(seeded, "mental-overall").entries) == 1
    create_view(seeded, "x", 'domain == "mental"')
    replaced = create_view(seeded, "x", 'domain == "physical"', replace=True)
    assert replaced.fresh and replaced.k_effects == 76
    assert len(view_history(seeded, "x").entries) == 2


def test_two_concurrent_writers_leave_every_stored_result_reproducible(seeded) -> None:
    """Writer A opens its revision first, writer B starts while A is still open: revision
    numbers must follow commits, so every stored result is the as-of fit of its revision."""
    import time

    create_view(seeded, "all", "")
    a_open, b_started = threading.Event(), threading.Event()
    revisions: dict[str, int] = {}
    committed: list[str] = []
    failures: list[BaseException] = []

    def writer_a() -> None:
        try:
            with write_transaction(seeded, message="A") as (conn, revision):
                revisions["A"] = revision
                conn.execute(sa.text("UPDATE effect_size SET yi = yi + 0.3 WHERE id = 1"))
                a_open.set()
                b_started.wait(10)
                time.sleep(0.5)  # B tries to write meanwhile
            committed.append("A")
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)
            a_open.set()

    def writer_b() -> None:
        try:
            a_open.wait(10)
            b_started.set()
            with write_transaction(seeded, message="B") as (conn, revision):
                revisions["B"] = revision
                conn.execute(sa.text("UPDATE effect_size SET yi = yi + 0.4 WHERE id = 2"))
            committed.append("B")
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    # both committed, numbered in commit order (A held the write lock first); which one's
    # on-commit refresh returns first is not ordered
    assert sorted(committed) == ["A", "B"] and revisions["A"] < revisions["B"]
    assert stale_views(seeded) == []
    history = view_history(seeded, "all")
    stored = [e["revision"] for e in history.entries]
    # A's refresh may already see B's commit; a result is never stored twice for one state
    assert stored in ([1, revisions["A"], revisions["B"]], [1, revisions["B"]])
    for entry in history.entries:
        _, again = recompute_as_of(seeded, "all", entry["revision"])
        assert again.fingerprint == entry["fingerprint"], entry["revision"]


def test_a_new_imputed_r_in_the_codebook_refreshes_exactly_the_views_it_moves(seeded) -> None:
    import yaml

    from evidence.ingest.codebook import parse_codebook
    from evidence.ingest.loader import apply_codebook

    create_view(seeded, "controlled", 'design == "controlled"')  # no imputed r
    create_view(seeded, "pre-post", 'design == "pre-post"')  # 24 effects with imputed r
    raw = yaml.safe_load(CODEBOOK.read_text())
    raw["analysis"]["default_ri"] = 0.8
    report = apply_codebook(parse_codebook(raw, "peer_support.yaml"), database=seeded)
    assert report.changes["effect_size"].updated == 24
    assert stale_views(seeded) == []  # refreshed before apply_codebook returned
    assert len(view_history(seeded, "pre-post").entries) == 2
    assert len(view_history(seeded, "controlled").entries) == 1
    assert show_view(seeded, "controlled", refresh=False).revision == 1


def test_restoring_a_deleted_study_refreshes_the_views_back_to_their_estimate(seeded) -> None:
    from evidence.db.history import restore

    first = create_view(seeded, "all", "")
    with seeded.begin() as conn:  # plain SQL: a curator deletes a study with psql/sqlite3
        conn.execute(sa.text("DELETE FROM study WHERE study_key = 'SIM-003'"))
    without = show_view(seeded, "all")  # detected at the read, refreshed
    assert without.fresh and without.k_studies == first.k_studies - 1
    restore(seeded, "study", "SIM-003", message="deleted by mistake")
    assert stale_views(seeded) == []  # the restore refreshed the view before returning
    back = show_view(seeded, "all", refresh=False)
    assert back.k_studies == first.k_studies
    assert back.headline["estimate"] == pytest.approx(first.headline["estimate"], abs=1e-12)
    entries = view_history(seeded, "all").entries
    assert entries[-1]["fingerprint"] == entries[0]["fingerprint"]
