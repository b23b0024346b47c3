"""Stable record identity across Metapsy releases: keys from the source only, renames, no merges.

The synthetic releases run on SQLite and PostgreSQL; the real releases (depression-psyctr
22.0.2 -> 24.0.1, Metapsy project, metapsy.org, ODC-By 1.0) run on SQLite only, since what
they show is a property of the keys, not of the database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from _metapsy import DATA, needs_data

from evidence.db.history import list_changes
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.metapsy_keys import StudyIdentity, match_renames
from evidence.ingest.metapsy_store import import_metapsy

HEADER = ('"";"study";"condition_arm1";"condition_arm2";"multi_arm1";"multi_arm2";'
          '"outcome_type";"instrument";"time";"time_weeks";"mean_arm1";"sd_arm1";"n_arm1";'
          '"mean_arm2";"sd_arm2";"n_arm2";".g";".g_se";"year";"full_ref";".id"')  # fmt: skip
REF = "Alfonso, R. (2009). Reminiscence and depression. Rev Esp Geriatr Gerontol, 44, 317."


def _row(i: int, study: str, arm1: str, multi1: str, instrument: str, time: str, weeks: str,
         m1: str, ref: str = REF, rid: str = "NA") -> str:  # fmt: skip
    return (f'"{i}";"{study}";"{arm1}";"cau";"{multi1}";NA;"msd";"{instrument}";"{time}";'
            f'{weeks};{m1};5;30;14;6;32;NA;NA;2009;"{ref}";{rid}')  # fmt: skip


RELEASE_1 = [
    _row(1, "Alfonso, 2009", "lrt", "NA", "ces-d", "post", "8", "10,5"),
    _row(2, "Alfonso, 2009", "lrt", "NA", "ces-d", "fu", "26", "11"),
    # Sadler 2018: two arms the file tells apart only by case and a "+"
    _row(3, "Sadler, 2018", "cbt", "cbt-I+", "gds", "post", "NA", "9", "Sadler 2018 ref"),
    _row(4, "Sadler, 2018", "cbt", "cbt-I", "gds", "post", "NA", "10", "Sadler 2018 ref"),
]
# the next release: Alfonso renamed Afonso, its follow-up weeks corrected; nothing else changed
RELEASE_2 = [r.replace("Alfonso, 2009", "Afonso, 2009").replace(";26;", ";24;") for r in RELEASE_1]


def _file(tmp_path: Path, rows: list[str], name: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_renamed_study_is_one_key_update_and_unchanged_rows_change_nothing(
    migrated_db_url: str, tmp_path: Path
) -> None:
    url = migrated_db_url
    first = import_metapsy(_file(tmp_path, RELEASE_1, "dep__v1.csv"), direction="lower",
                           database=url)  # fmt: skip
    assert first.ingest.changes["arm"].inserted == 5  # Sadler: cbt-I+, cbt-I and cau
    update = import_metapsy(_file(tmp_path, RELEASE_2, "dep__v2.csv"), direction="lower",
                            database=url, review=first.review)  # fmt: skip
    assert [(r.old, r.new, r.by) for r in update.renames] == [
        ("Alfonso, 2009", "Afonso, 2009", "full_ref")]  # fmt: skip
    assert "study renamed: Alfonso, 2009 -> Afonso, 2009 (matched by full_ref)" in str(update)
    changes = {t: (c.inserted, c.updated, c.deleted) for t, c in update.ingest.changes.items()
               if c.total}  # fmt: skip
    # one study key update, one corrected timepoint (weeks 26 -> 24); no result touched; the
    # study's two effect sizes follow its key in their dependence-cluster label only; the
    # review's record of the file's layout (rows as study and result keys) names the new key
    assert changes == {"review": (0, 1, 0), "study": (0, 1, 0), "timepoint": (0, 1, 0),
                       "effect_size": (0, 2, 0)}  # fmt: skip
    engine = sa.create_engine(url)
    try:
        logged = list_changes(engine, revision=update.ingest.revision)
    finally:
        engine.dispose()
    study = [c for c in logged if c.table_name == "study"]
    assert len(study) == 1 and study[0].op == "update"
    assert (study[0].old_values["study_key"], study[0].new_values["study_key"]) == (
        "Alfonso, 2009", "Afonso, 2009")  # fmt: skip
    effects = [c for c in logged if c.table_name == "effect_size"]
    assert {k for c in effects for k in c.new_values
            if c.new_values[k] != c.old_values[k]} <= {"cluster", "computed_at"}  # fmt: skip
    weeks = [c for c in logged if c.table_name == "timepoint"]
    assert [(c.old_values["weeks"], c.new_values["weeks"]) for c in weeks] == [(26, 24)]
    again = import_metapsy(_file(tmp_path, RELEASE_2, "dep__v2.csv"), direction="lower",
                           database=url, review=first.review)  # fmt: skip
    assert not again.ingest.changed and again.renames == ()


def test_two_rows_with_one_identity_are_refused_naming_both(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    upgrade(url)
    same = [_row(1, "A, 2010", "cbt", "NA", "bdi", "post", "8", "10"),
            _row(2, "A, 2010", "cbt", "NA", "bdi", "post", "8", "11")]  # fmt: skip
    with pytest.raises(ValidationError, match=r"file rows 2, 3 are the same record") as info:
        import_metapsy(_file(tmp_path, same, "x__v1.csv"), direction="lower", database=url)
    assert [(f["row"], f["column"]) for f in info.value.failures] == [(2, "study"), (3, "study")]
    assert "--skip-invalid (skip_invalid=True) leaves these rows out" in str(info.value)
    skipped = import_metapsy(_file(tmp_path, [*same, _row(3, "B, 2011", "ba", "NA", "bdi", "post",
                             "8", "9")], "z__v1.csv"), direction="lower", database=url,
                             skip_invalid=True)  # fmt: skip
    assert skipped.skipped == (2, 3) and skipped.loaded == 1
    # a label at two weeks: the weeks tell the timepoints apart (Burns 2013: post at 15 and 33)
    weeks = [same[0], same[1].replace(";8;11;", ";12;11;")]
    result = import_metapsy(_file(tmp_path, weeks, "x__v1.csv"), direction="lower",
                            database=url)  # fmt: skip
    assert result.ingest.changes["timepoint"].inserted == 2
    # still the same identity but distinct .id values: the file's own row id tells them apart
    ids = [_row(i, "A, 2010", "cbt", "NA", "bdi", "post", "8", m, rid=f'"row-{i}"')
           for i, m in ((1, "10"), (2, "11"))]  # fmt: skip
    result = import_metapsy(_file(tmp_path, ids, "y__v1.csv"), direction="lower",
                            database=url)  # fmt: skip
    assert result.ingest.changes["result"].inserted == 2


def test_two_source_arms_never_share_a_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    upgrade(url)
    rows = [_row(1, "A, 2010", "cbt | group", "NA", "bdi", "post", "8", "10"),
            _row(2, "A, 2010", "cbt", "group", "bdi", "fu", "20", "11")]  # fmt: skip
    with pytest.raises(ValidationError, match="two different arms of study A, 2010") as info:
        import_metapsy(_file(tmp_path, rows, "x__v1.csv"), direction="lower", database=url)
    assert info.value.failures[0]["row"] == 3


def test_renames_pair_only_unambiguous_studies() -> None:
    def s(key: str, doi=None, ref=None, n=30) -> StudyIdentity:
        return StudyIdentity.of(key, doi, ref, {"cbt", "cau"}, {"msd | bdi"}, [(n, n)])

    new = [s("A, 2020", doi="https://doi.org/10.1000/ABC."), s("B, 2020", ref="B et al. (2019)"),
           s("C, 2020"), s("D, 2020"), s("E, 2020", n=12)]  # fmt: skip
    gone = [s("A, 2019", doi="10.1000/abc"), s("B, 2019", ref="b ET AL 2019"), s("C, 2019"),
            s("E, 2019", n=12)]  # fmt: skip
    pairs = {(r.old, r.new, r.by) for r in match_renames(new, gone)}
    # C and D share arms, outcomes and sizes with C 2019: ambiguous, so neither is paired
    assert pairs == {("A, 2019", "A, 2020", "doi"), ("B, 2019", "B, 2020", "full_ref"),
                     ("E, 2019", "E, 2020", "arms, outcomes and sample sizes")}  # fmt: skip


@needs_data
def test_depression_psyctr_22_to_24_renames_and_changes_only_what_changed(
    tmp_path: Path,
) -> None:
    versions = DATA / "versions"
    url = f"sqlite:///{tmp_path / 'e.db'}"
    upgrade(url)
    kw = {"direction": "lower", "database": url, "repair_text": True, "skip_invalid": True,
          "review": "metapsy_depression_psyctr"}  # fmt: skip
    import_metapsy(versions / "depression-psyctr__v22.0.2.csv", **kw)
    update = import_metapsy(versions / "depression-psyctr__v24.0.1.csv", **kw)
    renames = {r.old: (r.new, r.by) for r in update.renames}
    assert renames["Alfonso, 2009"] == ("Afonso, 2009", "full_ref")
    assert renames["Russell, 2019"] == ("Russell, 2020", "full_ref")
    engine = sa.create_engine(url)
    try:
        logged = list_changes(engine, revision=update.ingest.revision)
        with engine.connect() as conn:
            sadler = conn.execute(sa.text(
                "SELECT a.arm_key FROM arm a JOIN study s ON s.id = a.study_id "
                "WHERE s.study_key = 'Sadler, 2018' ORDER BY 1")).scalars().all()  # fmt: skip
            afonso = conn.execute(sa.text(
                "SELECT id FROM study WHERE study_key = 'Afonso, 2009'")).scalar()  # fmt: skip
    finally:
        engine.dispose()
    assert sadler == ["cbt | cbt-I", "cbt | cbt-I+", "other ctr | other ctr"]
    renamed = [c for c in logged if c.table_name == "study" and c.row_id == afonso]
    assert [(c.op, c.old_values["study_key"], c.new_values["study_key"]) for c in renamed] == [
        ("update", "Alfonso, 2009", "Afonso, 2009")]  # fmt: skip
    # every updated result changed a number or Metapsy's row label .id (kept as the result's
    # notes: each release rebuilds it); Afonso's results were neither deleted nor added
    stats = ("n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i", "m1i_pre", "sd1i_pre", "m2i_pre",
             "sd2i_pre", "event1i", "event2i", "yi_reported", "vi_reported")  # fmt: skip
    results = [c for c in logged if c.table_name == "result"]
    updated = [c for c in results if c.op == "update"]
    assert updated and all(
        any(c.old_values[k] != c.new_values[k] for k in (*stats, "notes"))
        for c in updated)  # fmt: skip
    assert not [c for c in results if c.op != "update" and afonso in (
        (c.old_values or {}).get("study_id"), (c.new_values or {}).get("study_id"))]  # fmt: skip
    # before stable keys this update logged 219 result updates (216 of them only .id) and
    # deleted and re-inserted 606 results; now 13 updates, each a corrected number
    assert len(updated) == 13
    assert {"old": "Alfonso, 2009", "new": "Afonso, 2009", "by": "full_ref"} in json.loads(
        json.dumps(update.to_dict()["renames"]))  # fmt: skip
