"""`evidence diff A B` opens with the studies added, withdrawn, renamed and changed and the views
that moved, then the records (evidence.views.diff.diff_summary).

Data: the BCG trials (seeds/bcg, schemas/bcg.yaml; metafor's dat.bcg), edited as a curator
would: one study's number changed, one study removed, one added (a re-ingest of the whole
review), then one study key renamed by plain SQL. Expected views figures come from
recompute_as_of (the view refitted on the data rebuilt from the change log at a revision),
not from the diff itself. Metapsy: gambling-psyctr releases 24.0.1 and 25.0.0
(shared/data/metapsy/versions/, tests/_metapsy.py), studies in/out computed with pandas.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from _ingest_data import BCG_CODEBOOK, BCG_SEED
from _metapsy import DATA
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.engine import get_engine
from evidence.errors import NotFoundError
from evidence.ingest import ingest
from evidence.views import create_view, recompute_as_of
from evidence.views.diff import diff_summary

runner = CliRunner()
VIEWS = {"overall": "", "systematic": 'alloc == "systematic"', "alternate": 'alloc == "alternate"'}


def _edit(path: Path, sheet: str, edit) -> None:
    with (path / f"{sheet}.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rows = edit(rows)
    with (path / f"{sheet}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _new_release(sheets: Path) -> None:
    """BCG-01's vaccinated TB cases 4 -> 8; BCG-13 removed; BCG-14 added (a copy of BCG-02)."""

    def edit(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        rows = [r for r in rows if r["study_key"] != "BCG-13"]
        rows += [{**r, "study_key": "BCG-14"} for r in rows if r["study_key"] == "BCG-02"]
        for r in rows:
            if r["study_key"] == "BCG-01" and "event1i" in r:
                r["event1i"] = "8"
            if r["study_key"] == "BCG-14" and "event1i" in r:
                r["event1i"], r["n1i"] = "20", "400"
            if r["study_key"] == "BCG-14" and r.get("arm_key") == "bcg":
                r["n_randomized"] = "400"
            if r["study_key"] == "BCG-14" and "citation" in r:
                r["citation"], r["year"] = "A new trial (2020)", "2020"
        return rows

    for sheet in ("studies", "arms", "outcomes", "timepoints", "results"):
        _edit(sheets, sheet, edit)


@pytest.fixture
def living(migrated_db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    """Revision 1: the seed; 2: the edited release; 3: BCG-05 renamed BCG-15 by plain SQL."""
    engine = get_engine(migrated_db_url)
    sheets = tmp_path / "bcg"
    shutil.copytree(BCG_SEED, sheets)
    assert ingest([sheets], codebook=BCG_CODEBOOK, database=engine).revision == 1
    for name, selection in VIEWS.items():
        create_view(engine, name, selection)
    _new_release(sheets)
    report = ingest([sheets], codebook=BCG_CODEBOOK, database=engine, complete=True)
    assert report.revision == 2
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE study SET study_key = 'BCG-15' WHERE study_key = 'BCG-05'"))
    yield engine
    engine.dispose()


def _figures(engine: sa.Engine, name: str, revision: int) -> tuple:
    _, comp = recompute_as_of(engine, name, revision)
    h = comp.headline
    return comp.k_effects, h["estimate"], h["ci_lb"], h["ci_ub"]


def test_diff_names_the_studies_added_withdrawn_changed_and_renamed(living) -> None:
    s = diff_summary(living, 1, 2)  # the new release
    assert (s.from_revision, s.to_revision, s.swapped) == (1, 2, False)
    assert (s.added, s.withdrawn, s.renamed, s.changed) == (
        ("BCG-14",), ("BCG-13",), (), ("BCG-01",))  # fmt: skip
    changed = s.records[s.records["study"] == "BCG-01"]
    assert set(zip(changed["table"], changed["op"], strict=True)) == {
        ("result", "update"), ("effect_size", "update")}  # fmt: skip
    assert list(changed.loc[changed["table"] == "result", "columns"].iloc[0]) == ["event1i"]
    assert s.counts["study"] == {"delete": 1, "insert": 1}

    s = diff_summary(living, 2, 3)  # the plain-SQL rename: one update of study_key
    assert s.renamed == (("BCG-05", "BCG-15"),)
    assert (s.added, s.withdrawn, s.changed) == ((), (), ())

    for s in (diff_summary(living, 1, 3), diff_summary(living, 3, 1)):
        assert (s.from_revision, s.to_revision) == (1, 3)
        assert (s.added, s.withdrawn, s.renamed, s.changed) == (
            ("BCG-14",), ("BCG-13",), (("BCG-05", "BCG-15"),), ("BCG-01",))  # fmt: skip
    assert s.swapped  # given newest first


def test_views_moved_carry_the_estimates_of_both_revisions(living) -> None:
    s = diff_summary(living, 1, 2)
    assert [v.view for v in s.moved] == ["overall", "systematic"]
    alternate = next(v for v in s.views if v.view == "alternate")
    assert not alternate.moved and alternate.change == 0.0
    for move in s.moved:
        a, b = move.before, move.after
        assert (a.source, b.source) == ("stored", "stored")
        assert (a.k_effects, a.estimate, a.ci_lb, a.ci_ub) == _figures(living, move.view, 1)
        assert (b.k_effects, b.estimate, b.ci_lb, b.ci_ub) == _figures(living, move.view, 2)
        assert move.change == pytest.approx(b.estimate - a.estimate)
    systematic = next(v for v in s.moved if v.view == "systematic")
    assert (systematic.before.k_studies, systematic.after.k_studies) == (4, 3)

    # stale after the plain-SQL rename: refitted at 3, and a rename moves no estimate
    s = diff_summary(living, 2, 3)
    assert s.moved == ()
    alternate = next(v for v in s.views if v.view == "alternate")
    assert (alternate.before.source, alternate.after.source) == ("stored", "recomputed")
    assert alternate.after.estimate == _figures(living, "alternate", 3)[1]


def test_an_effect_size_rewritten_only_in_derived_columns_is_not_a_changed_record(
    migrated_db_url: str,
) -> None:
    engine = get_engine(migrated_db_url)
    ingest([BCG_SEED], codebook=BCG_CODEBOOK, database=engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE effect_size SET engine_version = 'other', inputs = '{}' WHERE id IN "
                "(SELECT e.id FROM effect_size e JOIN result r ON r.id = e.result_id "
                "JOIN study s ON s.id = r.study_id WHERE s.study_key = 'BCG-02')"
            )
        )
    s = diff_summary(engine, 1, 2)
    engine.dispose()
    assert s.recomputed == 1 and len(s.records) == 0
    assert (s.added, s.withdrawn, s.renamed, s.changed, s.moved) == ((), (), (), (), ())


def _run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_cli_diff_prints_studies_and_views_first_json_alike_unknown_revision_refused(
    living, migrated_db_url: str
) -> None:
    result = _run("diff", "1", "3", "--url", migrated_db_url)
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("added", "BCG-14", "withdrawn", "BCG-13", "BCG-05 → BCG-15", "BCG-01"):
        assert text in out
    assert "views moved: 2 of 3" in out
    assert out.index("views moved") < out.index("changed records")
    swapped = _run("diff", "3", "1", "--url", migrated_db_url)
    assert swapped.exit_code == 0 and "given newest first" in swapped.output

    result = _run("diff", "1", "3", "--json", "--url", migrated_db_url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["studies"] == {
        "added": ["BCG-14"],
        "withdrawn": ["BCG-13"],
        "renamed": [{"old": "BCG-05", "new": "BCG-15"}],
        "changed": ["BCG-01"],
    }
    moved = {v["view"]: v for v in data["views_moved"]}
    assert set(moved) == {"overall", "systematic"} and data["views_unchanged"] == ["alternate"]
    assert moved["overall"]["before"]["estimate"] == _figures(living, "overall", 1)[1]
    assert moved["overall"]["after"]["estimate"] == _figures(living, "overall", 3)[1]
    assert len(data["records"]) == sum(n for ops in data["counts"].values() for n in ops.values())

    with pytest.raises(NotFoundError, match=r"revision 99 does not exist \(latest: 3\)"):
        diff_summary(living, 1, 99)
    result = _run("diff", "1", "99", "--url", migrated_db_url)
    assert result.exit_code == 1 and "revision 99 does not exist" in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback


# ------------------------------------------------------------------------ Metapsy

VERSIONS = DATA / "versions"
GAMBLING = ("gambling-psyctr__v24.0.1.csv", "gambling-psyctr__v25.0.0.csv")


def test_gambling_release_diff_counts_the_studies_in_and_out_of_the_files(
    sqlite_url: str,
) -> None:
    missing = [n for n in GAMBLING if not (VERSIONS / n).is_file()]
    if missing:
        pytest.skip(f"Metapsy releases not found in {VERSIONS}: {', '.join(missing)}")
    from evidence.db.migrate import upgrade
    from evidence.ingest.metapsy_store import import_metapsy

    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    for name in GAMBLING:  # 25.0.0's mean_age lost its decimal separators: left out
        import_metapsy(
            VERSIONS / name,
            direction="lower",
            database=engine,
            review="gambling",
            ignore_columns=("mean_age",) if "25.0.0" in name else (),
        )
    old, new = (
        set(pd.read_csv(VERSIONS / n, sep=";", dtype=str, encoding="utf-8")["study"])
        for n in GAMBLING
    )
    s = diff_summary(engine, 1, 2)
    engine.dispose()
    # a study renamed in place (an update of its key) is neither added nor withdrawn
    assert set(s.added) | {n for _, n in s.renamed} == new - old
    assert set(s.withdrawn) | {o for o, _ in s.renamed} == old - new
    assert len(s.added) + len(s.renamed) == 5 and len(s.withdrawn) + len(s.renamed) == 1
    assert not set(s.changed) & (new ^ old)
