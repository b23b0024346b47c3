"""Lossless Metapsy interchange: import -> export gives the file back, cell by cell.

Data: Metapsy project, metapsy.org, databases "peer-support" 23.0.3, "gambling-psyctr" 25.0.0
and "depression-inpatients" 22.2.1 and the format's example workbook (ODC-By 1.0), read from
shared/data/metapsy/ (tests/_metapsy.py; never copied into the repository). The originals are
read here with pandas as text, independently of the importer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _metapsy import DATA, needs_data
from scipy.special import gammaln
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.engine import get_engine
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.metapsy import unmojibake
from evidence.ingest.metapsy_export import export_metapsy
from evidence.ingest.metapsy_layout import restore
from evidence.ingest.metapsy_store import import_metapsy
from evidence.stats import rma
from evidence.views import create_view
from evidence.views.diagnostics import view_sensitivity
from evidence.views.fit import fit_view

RELEASES = [  # file, direction, what the import needs
    ("versions/peer-support__v23.0.3.csv", "file", {"skip_invalid": True, "repair_text": True}),
    # mean_age lost its decimal separators (3,92e+16 for 39.2): left out, exported empty
    ("databases/gambling-psyctr__v25.0.0.csv", "lower", {"ignore_columns": ("mean_age",)}),
    ("databases/depression-inpatients__v22.2.1.csv", "lower", {}),
]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    return url


def _text(path: Path) -> pd.DataFrame:
    """A Metapsy file's cells as text, as pandas reads it (the row-name column named "")."""
    frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return frame.rename(columns=lambda c: "" if c.startswith("Unnamed: 0") else c)


def _number(cells: pd.Series) -> pd.Series:
    return pd.to_numeric(cells.str.replace(",", ".", regex=False), errors="coerce")


def _differences(original: pd.DataFrame, exported: pd.DataFrame) -> dict[str, int]:
    """Cells whose text differs (exactly: blanks around text and a number's own form, such
    as ``0,50`` or ``8,0``, included)."""
    out = {}
    for col in original.columns:
        bad = original[col] != exported[col]
        if bad.any():
            out[col] = int(bad.sum())
    return out


#: Every other release that imports (suicide: 102 ideation rows without effect data).
MORE = ["bodily-distress-psyctr__v25.0.1", "ed-digital-psyctr__v26.0.2", "ed-psyctr__v25.0.0",
        "ocd-psyctr__v24.0.1", "psychosis-psyctr__v23.1.4", "ptsd-mdmactr__v26.0.1",
        "ptsd-psyctr__v23.0.3", "sad-psyctr__v24.0.1", "suicide-psyctr__v23.1.1",
        "template__v22.8.6"]  # fmt: skip


@needs_data
@pytest.mark.parametrize(("name", "direction", "options"), RELEASES)
def test_import_then_export_gives_every_cell_of_a_real_release_back(
    url: str, tmp_path: Path, name: str, direction: str, options: dict
) -> None:
    _round_trip(url, tmp_path, DATA / name, direction, options)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name", MORE)
def test_every_other_release_that_imports_round_trips_too(
    url: str, tmp_path: Path, name: str
) -> None:
    _round_trip(url, tmp_path, DATA / "databases" / f"{name}.csv", "lower", {})


def _round_trip(url: str, tmp_path: Path, path: Path, direction: str, options: dict) -> None:
    result = import_metapsy(path, direction=direction, database=url, **options)
    out = tmp_path / "export.csv"
    report = export_metapsy(out, database=url)
    original, exported = _text(path), _text(out).map(restore)  # guarded text read back
    assert list(exported.columns) == list(original.columns)  # same columns, same order
    # every row but those refused as invalid (skip_invalid); rows without effect data, which
    # the store cannot hold as results, are kept with the file's layout and come back too
    kept = original[[row + 2 not in set(result.skipped) for row in range(len(original))]]
    if options.get("repair_text"):
        kept = kept.map(lambda v: unmojibake(v) or v)
    kept = kept.drop(columns="", errors="ignore").reset_index(drop=True)
    for column in options.get("ignore_columns", ()):  # left out by the curator: empty
        assert exported[column].isin(["", "NA"]).all()
        kept[column] = exported[column]
    assert report.rows == len(kept) == len(exported)
    if "" in original.columns:  # R's row names, numbered again
        assert exported.pop("").tolist() == [str(i) for i in range(1, len(kept) + 1)]
    assert _differences(kept, exported) == {}
    # the store computed its own g (what views pool); the export carries the file's .g
    assert result.effect_source == "computed" and report.effects == "file"


@needs_data
def test_reimporting_an_export_changes_nothing(migrated_db_url: str, tmp_path: Path) -> None:
    url = migrated_db_url
    name, direction, options = RELEASES[0]
    import_metapsy(DATA / name, direction=direction, database=url, **options)
    out = tmp_path / "peer-support__v23.0.3.csv"
    export_metapsy(out, database=url)
    again = import_metapsy(out, direction=direction, database=url, **options)
    assert not again.ingest.changed and again.ingest.revision is None
    assert again.skipped == ()  # the invalid row was never written


@needs_data
def test_effect_source_file_makes_views_pool_the_files_g(migrated_db_url: str) -> None:
    url = migrated_db_url
    name, direction, options = RELEASES[0]
    result = import_metapsy(DATA / name, direction=direction, database=url,
                            effect_source="file", **options)  # fmt: skip
    assert result.effect_source == "file" and result.from_file == result.loaded == 56
    # independent path: the file's own .g and .g_se, read with pandas
    raw = _text(DATA / name)
    rows = np.arange(len(raw)) + 2
    use = ~np.isin(rows, list(result.skipped) + list(result.no_effect_data))
    g, se = _number(raw[".g"])[use], _number(raw[".g_se"])[use]
    expected = rma(g.to_numpy(), se.to_numpy() ** 2, method="REML")
    engine = get_engine(url)
    try:
        status = create_view(engine, "overall", "", model="rma")
        assert status.k_effects == 56
        fit = fit_view(engine, "overall").fit
        assert float(fit.beta[0]) == pytest.approx(float(expected.beta[0]), abs=1e-8)
        assert float(fit.se[0]) == pytest.approx(float(expected.se[0]), abs=1e-8)
        with engine.connect() as conn:
            codebook = conn.exec_driver_sql("SELECT codebook FROM review").scalar()
    finally:
        engine.dispose()
    assert "the file's .g and .g_se squared (56 rows" in codebook


def test_effect_source_file_orients_g_by_direction_as_precalc_g(url: str, tmp_path: Path):
    path = tmp_path / "oriented__v1.csv"
    path.write_text(
        "study;outcome_type;instrument;mean_arm1;sd_arm1;n_arm1;mean_arm2;sd_arm2;n_arm2;"
        "event_arm1;totaln_arm1;event_arm2;totaln_arm2;.g;.g_se\n"
        '"A, 2001";"msd";"BDI";10;5;30;14;6;30;NA;NA;NA;NA;-0,71;0,27\n'
        '"A, 2001";"remission";"BDI";NA;NA;NA;NA;NA;NA;12;30;5;30;-0,55;0,3\n',
        encoding="utf-8",
    )
    result = import_metapsy(path, direction="lower", sign="metapsy", database=url,
                            effect_source="file")  # fmt: skip
    assert result.from_file == 2 and "--effect-source file" in str(result)
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT e.yi, e.vi, e.formula FROM effect_size e ORDER BY e.yi").all()  # fmt: skip
    finally:
        engine.dispose()
    # lower is better and .g is Metapsy's convention: a negative .g is an improvement, for
    # the means and for the events alike, so both are stored as -.g (positive = improvement)
    assert [(round(y, 12), round(v, 12), f) for y, v, f in stored] == [
        (0.55, 0.09, "SMD:reported"), (0.71, round(0.27**2, 12), "SMD:reported")]  # fmt: skip


def test_effect_source_is_checked(url: str, tmp_path: Path) -> None:
    path = tmp_path / "tiny__v1.csv"
    path.write_text('study;mean_arm1;sd_arm1;n_arm1;mean_arm2;sd_arm2;n_arm2\n'
                    '"A, 2001";1;1;10;2;1;10\n', encoding="utf-8")  # fmt: skip
    with pytest.raises(ValidationError, match="effect_source must be one of computed, file"):
        import_metapsy(path, direction="lower", database=url, effect_source="g")
    with pytest.raises(ValidationError, match="the file has no .g column"):
        import_metapsy(path, direction="lower", database=url, effect_source="file")


ROB_HEADER = "study;condition_arm1;condition_arm2;outcome_type;instrument;time;" \
    "mean_arm1;sd_arm1;n_arm1;mean_arm2;sd_arm2;n_arm2;sg;ac;ba;itt;rob;note"  # fmt: skip


def _rob_file(tmp_path: Path) -> Path:
    rows = [  # study, mean of arm 1, rob score (criteria met of 4), a text cell
        ("A, 2001", "10", "4", "=HYPERLINK(A1)"),
        ("B, 2002", "11", "4", "-0,5"),
        ("C, 2003", "12", "1", "+1 week"),
        ("D, 2004", "10,5", "3", "@SUM(A1)"),
        ("E, 2005", "13", "2", "plain"),
    ]
    lines = [ROB_HEADER] + [
        f'"{s}";"cbt";"wl";"msd";"BDI";"post";{m};5;30;14;6;30;1;1;1;1;{r};"{n}"'
        for s, m, r, n in rows
    ]
    path = tmp_path / "rob-demo__v1.0.0.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.filterwarnings("ignore:Few clusters")  # the CHE row of a five-study suite
def test_rob_feeds_the_low_risk_of_bias_sensitivity_analysis(migrated_db_url: str,
                                                             tmp_path: Path) -> None:  # fmt: skip
    engine = get_engine(migrated_db_url)
    result = import_metapsy(_rob_file(tmp_path), direction="lower", database=engine)
    assert "risk of bias (tool metapsy-rob) of 5 studies: overall from rob" in str(result)
    try:
        with engine.connect() as conn:
            sql = (
                "SELECT s.study_key, b.judgement FROM risk_of_bias b JOIN study s ON "
                "s.id = b.study_id WHERE b.tool = 'metapsy-rob' AND b.domain = 'overall'"
            )
            rob = dict(conn.exec_driver_sql(sql).all())
        assert rob == {"A, 2001": "low", "B, 2002": "low", "C, 2003": "high",
                       "D, 2004": "some concerns", "E, 2005": "some concerns"}  # fmt: skip
        create_view(engine, "overall", "", model="rma")
        suite = view_sensitivity(fit_view(engine, "overall"))
    finally:
        engine.dispose()
    row = suite.row("rob_low")
    assert (row.k, row.studies) == (2, 2) and not np.isnan(row.g)
    # the two low-risk studies alone: Hedges' g with the exact correction (textbook formula,
    # lower is better, so arm 1's lower mean is a positive improvement) pooled by REML
    df = 58
    j = math.exp(gammaln(df / 2) - math.log(math.sqrt(df / 2)) - gammaln((df - 1) / 2))
    g = np.array([j * (14 - m) / math.sqrt((29 * 25 + 29 * 36) / df) for m in (10, 11)])
    assert row.g == pytest.approx(float(rma(g, 2 / 30 + g**2 / 120).beta[0]), abs=1e-10)


def test_export_guards_formula_text_and_reimport_restores_it(migrated_db_url: str,
                                                             tmp_path: Path) -> None:  # fmt: skip
    url = migrated_db_url
    path = _rob_file(tmp_path)
    import_metapsy(path, direction="lower", database=url)
    out = tmp_path / "rob-demo__v1.0.0-export.csv"
    export_metapsy(out, database=url)
    cells = _text(out)["note"].tolist()
    assert cells == ["'=HYPERLINK(A1)", "-0,5", "'+1 week", "'@SUM(A1)", "plain"]
    assert _text(out)["mean_arm1"].tolist()[3] == "10,5"  # a number is never guarded
    again = import_metapsy(out, direction="lower", database=url, review="metapsy_rob_demo")
    assert not again.ingest.changed  # the guard is read back as the original text


@needs_data
def test_metapsys_example_workbook_imports(url: str) -> None:
    path = DATA / "example-metapsy-formatted-dataset.xlsx"
    if not path.is_file():
        pytest.skip(f"Metapsy's example workbook not found at {path}")
    with pytest.raises(ValidationError, match="row 23: sd_change_arm2"):  # a negative SD
        import_metapsy(path, direction="lower", database=url)
    result = import_metapsy(path, direction="lower", database=url, skip_invalid=True)
    assert result.review == "metapsy_example_metapsy_formatted_dataset"
    assert result.skipped == (23,) and result.loaded == 21
    assert result.comparison.n_within >= 18  # the rest: .g rounded to two decimals


def test_a_file_that_is_not_text_is_an_error_not_a_traceback(url: str, tmp_path: Path):
    path = tmp_path / "binary__v1.csv"
    path.write_bytes(b"study;n_arm1\n\xa6\xff\x00\n")
    with pytest.raises(ValidationError, match="not a Metapsy file: byte"):
        import_metapsy(path, direction="lower", database=url)
    res = CliRunner().invoke(app, ["import", "metapsy", str(path), "--direction", "lower",
                                   "--url", url])  # fmt: skip
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_cli_effect_source_and_export_effects(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    path = _rob_file(tmp_path)
    res = runner.invoke(app, ["import", "metapsy", str(path), "--direction", "lower",
                              "--url", url, "--effect-source", "file"])  # fmt: skip
    assert res.exit_code == 2 and "no .g column" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["import", "metapsy", str(path), "--direction", "lower",
                              "--url", url, "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert '"effect_source": "computed"' in res.output and "metapsy-rob" in res.output
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["export", "metapsy", "-o", str(out), "--url", url,
                              "--effects", "store", "--sign", "metapsy"])  # fmt: skip
    assert res.exit_code == 0 and "the store's, in the metapsy sign convention" in res.output
    # the file's columns in its order, then the stored effect sizes it did not have
    assert list(_text(out).columns) == [*ROB_HEADER.split(";"), ".g", ".g_se"]


PADDED_HEADER = "study;condition_arm1;condition_arm2;outcome_type;instrument;time;" \
    "mean_arm1;sd_arm1;n_arm1;mean_arm2;sd_arm2;n_arm2;note"  # fmt: skip
PADDED_ROWS = [  # text with blanks around it, numbers in the file's own form
    '"A, 2001";"cbt";"wl";"msd";"BDI";"post";10,50;5.0;30;14;6,00;30;" padded "',
    '"B, 2002";"cbt";"wl";"msd";"BDI";"post";11;5;30;14,0;6;30;"kept\u00a0"',
    '"C, 2003";"cbt";"wl";"msd";"BDI";"post";12;5;30;1e1;6;30;"=SUM(A1) "',
]


def test_export_gives_back_blanks_around_text_and_numbers_as_the_file_wrote_them(
    migrated_db_url: str, tmp_path: Path
) -> None:
    url = migrated_db_url
    path = tmp_path / "padded-demo__v1.0.0.csv"
    path.write_text("\n".join([PADDED_HEADER, *PADDED_ROWS]) + "\n", encoding="utf-8")
    import_metapsy(path, direction="lower", database=url)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / path.name  # the same review
    export_metapsy(out, database=url)
    original, exported = _text(path), _text(out)
    assert exported["note"].tolist() == [" padded ", "kept\u00a0", "'=SUM(A1) "]  # guarded
    assert _differences(original, exported.map(restore)) == {}
    again = import_metapsy(out, direction="lower", database=url)
    assert not again.ingest.changed  # the export reads back to the same records and layout
    # a curator changes values since: the stored value is written, as the store holds it
    engine = get_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE result SET m1i = 10.125 WHERE m1i = 10.5")
            conn.exec_driver_sql(
                "UPDATE moderator_value SET value_text = 'changed' WHERE value_text = 'padded'"
            )
    finally:
        engine.dispose()
    export_metapsy(out, database=url)
    exported = _text(out)
    assert exported["mean_arm1"].tolist() == ["10,125", "11", "12"]  # not "10,12"
    assert exported["note"].tolist() == ["changed", "kept\u00a0", "'=SUM(A1) "]
    assert exported["sd_arm1"].tolist() == ["5.0", "5", "5"]  # unchanged cells keep their form
