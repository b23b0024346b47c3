"""Bad coding sheets: each is a real CSV/XLSX file; each is rejected with the failing cell named,
and the database is left byte-for-byte (SQLite) or row-for-row (PostgreSQL) as it was."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _ingest_data import (
    BCG_CODEBOOK,
    BCG_SEED,
    PEER_CODEBOOK,
    dump,
    file_hash,
    small,
    write_csv,
    write_xlsx,
)
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.loader import ingest

Sheets = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """A bad input: how to write it, and the failure it must produce."""

    make: Callable[[Path], list[Path]]  # writes files into a directory, returns the paths
    sheet: str | None
    row: int | None
    column: str | None
    rule: str  # substring of the failure's rule
    codebook: Path = PEER_CODEBOOK


def _edit(fn: Callable[[Sheets], None]) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        sheets = small()
        fn(sheets)
        return [write_csv(directory, sheets)]

    return make


def _set(sheet: str, index: int, **values: Any) -> Callable[[Path], list[Path]]:
    return _edit(lambda s: s[sheet][index].update(values))


def _bcg(fn: Callable[[Path], None]) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        shutil.copytree(BCG_SEED, directory, dirs_exist_ok=True)
        fn(directory)
        return [directory]

    return make


def _replace_line(name: str, line: int, old: str, new: str) -> Callable[[Path], None]:
    def fn(directory: Path) -> None:
        path = directory / name
        lines = path.read_text().splitlines()
        assert old in lines[line - 1]
        lines[line - 1] = lines[line - 1].replace(old, new, 1)
        path.write_text("\n".join(lines) + "\n")

    return fn


def _drop_column(sheet: str, column: str) -> Callable[[Path], list[Path]]:
    def fn(sheets: Sheets) -> None:
        for row in sheets[sheet]:
            row.pop(column, None)

    return _edit(fn)


def _raw(name: str, data: bytes) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        write_csv(directory, small())
        (directory / name).write_bytes(data)
        return [directory]

    return make


def _xlsx(fn: Callable[[Sheets], Sheets]) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        return [write_xlsx(directory / "coding.xlsx", fn(small()))]

    return make


def _renamed(old: str, new: str) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        write_csv(directory, small())
        (directory / f"{old}.csv").rename(directory / new)
        return [directory]

    return make


def _no_sd(s: Sheets) -> None:
    s["results"][0].update(sd1i="", sd2i="")


def _rob(**values: Any) -> Callable[[Path], list[Path]]:
    row = {"study_key": "S1", "tool": "RoB 2", "domain": "randomization", "judgement": "low"}
    return _edit(lambda s: s.update(risk_of_bias=[{**row, **values}]))


CASES: dict[str, Case] = {
    "wrong type (integer)": Case(_set("results", 0, n1i="forty"), "results", 2, "n1i",
                                 "must be a whole number"),
    "wrong type (decimal comma)": Case(_set("results", 0, m1i="8,5"), "results", 2, "m1i",
                                       "must be a number"),
    "wrong type (fractional n)": Case(_set("results", 1, n2i=36.5), "results", 3, "n2i",
                                      "must be a whole number"),
    "wrong type (boolean)": Case(_set("studies", 1, simulated="maybe"), "studies", 3,
                                 "simulated", "must be true or false"),
    "unknown moderator level": Case(_set("arms", 0, source="friends"), "arms", 2, "source",
                                    "must be one of informal, formal, online_professional"),
    "unknown domain": Case(_set("outcomes", 1, domain="social"), "outcomes", 3, "domain",
                           "must be one of physical, mental"),
    "missing required column": Case(_drop_column("outcomes", "direction"), "outcomes", None,
                                    "direction", "required column is missing"),
    "missing required value": Case(_set("studies", 0, citation=""), "studies", 2, "citation",
                                   "required value is missing"),
    "undeclared column": Case(_set("results", 0, sd1="4"), "results", 1, "sd1",
                              "column is not declared"),
    "SD is 0": Case(_set("results", 0, sd1i=0), "results", 2, "sd1i", "must be > 0"),
    "negative SD": Case(_set("results", 1, sd2i=-4.4), "results", 3, "sd2i", "must be > 0"),
    "negative baseline SD": Case(_set("results", 2, sd1i_pre=-1), "results", 4, "sd1i_pre",
                                 "must be > 0"),
    "n below 2": Case(_set("results", 2, n1i=1), "results", 4, "n1i", "must be >= 2"),
    "r equal to 1": Case(_set("results", 2, ri=1), "results", 4, "ri", "must be < 1"),
    "r below -1": Case(_set("results", 2, ri=-1.2), "results", 4, "ri", "must be > -1"),
    "events exceed n": Case(_bcg(_replace_line("results.csv", 2, ",4,123,", ",400,123,")),
                            "results", 2, "event1i", "events must not exceed the group size",
                            BCG_CODEBOOK),
    "negative events": Case(_bcg(_replace_line("results.csv", 3, ",29,303,", ",-29,303,")),
                            "results", 3, "event2i", "must be >= 0", BCG_CODEBOOK),
    "unknown study": Case(_set("arms", 2, study_key="S9"), "arms", 4, "study_key",
                          "unknown study"),
    "unknown arm": Case(_set("results", 0, arm2_key="ctrl"), "results", 2, "arm2_key",
                        "unknown arm"),
    "unknown outcome": Case(_set("results", 1, outcome_key="o7"), "results", 3, "outcome_key",
                            "unknown outcome"),
    "unknown timepoint": Case(_set("results", 1, timepoint_key="fu2"), "results", 3,
                              "timepoint_key", "unknown timepoint"),
    "same arm twice": Case(_set("results", 0, arm2_key="peer"), "results", 2, "arm2_key",
                           "different arm"),
    "duplicate natural key": Case(_edit(lambda s: s["arms"].append(dict(s["arms"][0]))),
                                  "arms", 5, "arm_key", "duplicate natural key"),
    "empty file": Case(_raw("timepoints.csv", b""), "timepoints", None, None, "empty"),
    "wrong encoding": Case(_raw("studies.csv", "study_key,citation,year,country,design\n"
                                "S1,M\u00fcller (2019),2019,US,controlled\n".encode("latin-1")),
                           "studies", 2, None, "not UTF-8"),
    "ragged row": Case(_raw("timepoints.csv", b"study_key,timepoint_key,label,weeks\n"
                            b"S1,post,post,0,extra\n"), "timepoints", 2, None, "the row has 5"),
    "CSV not named after a sheet": Case(_renamed("studies", "study.csv"), None, None, None,
                                        "must be named after its sheet"),
    "XLSX missing a sheet": Case(_xlsx(lambda s: {k: v for k, v in s.items() if k != "results"}),
                                 "results", None, None, "required sheet results is missing"),
    "XLSX with an unknown worksheet": Case(
        _xlsx(lambda s: {("Studys" if k == "studies" else k): v for k, v in s.items()}),
        "Studys", None, None, "unknown worksheet"),
    "XLSX with a bad cell": Case(
        _xlsx(lambda s: (s["outcomes"][0].update(direction="up"), s)[1]), "outcomes", 2,
        "direction", "must be one of higher, lower"),
    "not an XLSX workbook": Case(_raw("coding.xlsx", b"PK\x03\x04 this is not a workbook"),
                                 None, None, None, "not a readable XLSX workbook"),
    "CI does not contain the estimate": Case(
        _set("results", 0, m1i="", sd1i="", m2i="", sd2i="", di=0.5, ci_lb=0.6, ci_ub=0.9),
        "results", 2, "di", "must contain the estimate"),
    "uptake 120": Case(_set("arms", 2, uptake=120), "arms", 4, "uptake", "must be <= 100"),
    "year 1850": Case(_set("studies", 0, year=1850), "studies", 2, "year", "must be >= 1990"),
    "country not ISO 3166": Case(_set("studies", 1, country="China"), "studies", 3, "country",
                                 "ISO 3166-1 alpha-2"),
    "DOI malformed": Case(_set("studies", 0, doi="doi.org/abc"), "studies", 2, "doi",
                          "must match"),
    "unknown risk-of-bias judgement": Case(_rob(judgement="unclear"), "risk_of_bias", 2,
                                           "judgement", "must be one of low, some concerns"),
    "risk of bias of an unknown result": Case(_rob(result_key="r9"), "risk_of_bias", 2,
                                              "result_key", "unknown result"),
    "nothing computable": Case(_edit(_no_sd), "results", 2, None,
                               "no effect size can be computed"),
    "integer beyond 2^53": Case(_set("studies", 0, n_total="1e20"), "studies", 2, "n_total",
                                "between -2^53 and 2^53"),
    "numeric moderator of 1e300": Case(_set("studies", 1, mean_age="1e300"), "studies", 3,
                                       "mean_age", "between -2^53 and 2^53"),
    "weeks written inf": Case(_set("timepoints", 1, weeks="inf"), "timepoints", 3, "weeks",
                              "must be a number"),
    "change SD effectively zero": Case(
        _set("results", 0, m1i="", sd1i="", m2i="", sd2i="", m1i_change=-3, sd1i_change="1e-9",
             m2i_change=-1, sd2i_change=2.5), "results", 2, "sd1i_change", "effectively zero"),
}  # fmt: skip


def _files(case: Case, tmp_path: Path) -> list[Path]:
    return case.make(tmp_path / "sheets")


def _assert_failure(error: ValidationError, case: Case) -> None:
    matches = [
        f
        for f in error.failures
        if case.rule in f["rule"]
        and f["sheet"] == case.sheet
        and f["row"] == case.row
        and (case.column is None or f["column"] == case.column)
    ]
    assert matches, f"no failure {case} in {error.failures}"
    assert case.rule in str(error) or len(error.failures) > 1
    if case.row is not None:
        assert f"row {case.row}" in str(error)


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database holding the BCG seed (copied for each test)."""
    path = tmp_path_factory.mktemp("template") / "evidence.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    ingest([BCG_SEED], codebook=BCG_CODEBOOK, database=url)
    return path


def test_there_are_at_least_25_distinct_bad_inputs() -> None:
    assert len(CASES) >= 25
    assert len({(c.sheet, c.column, c.rule) for c in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_ingest_rejects_bad_sheet_and_writes_nothing(
    name: str, tmp_path: Path, seeded_template: Path
) -> None:
    case = CASES[name]
    db = tmp_path / "evidence.db"
    shutil.copy(seeded_template, db)
    url = f"sqlite:///{db}"
    before_hash, before = file_hash(url), dump(url)
    with pytest.raises(ValidationError) as info:
        ingest(_files(case, tmp_path), codebook=case.codebook, database=url)
    _assert_failure(info.value, case)
    assert "nothing was written" in str(info.value) or info.value.failures
    assert file_hash(url) == before_hash
    assert dump(url) == before


@pytest.mark.postgres
def test_ingest_rejects_every_bad_sheet_on_postgresql_and_writes_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    upgrade(postgres_url)
    ingest([BCG_SEED], codebook=BCG_CODEBOOK, database=postgres_url)
    before = dump(postgres_url)
    for i, (name, case) in enumerate(CASES.items()):
        with pytest.raises(ValidationError) as info:
            ingest(case.make(tmp_path / f"case{i}"), codebook=case.codebook,
                   database=postgres_url)  # fmt: skip
        _assert_failure(info.value, case)
        assert dump(postgres_url) == before, name


def test_ingest_reports_every_failure_at_once(tmp_path: Path) -> None:
    sheets = small()
    sheets["results"][0]["sd1i"] = 0
    sheets["arms"][0]["uptake"] = 150
    sheets["studies"][1]["year"] = 1850
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    with pytest.raises(ValidationError) as info:
        ingest([write_csv(tmp_path, sheets)], codebook=PEER_CODEBOOK, database=url)
    got = {(f["sheet"], f["row"], f["column"]) for f in info.value.failures}
    assert got == {("results", 2, "sd1i"), ("arms", 2, "uptake"), ("studies", 3, "year")}
    assert str(info.value).startswith("3 problems in the coding sheets; nothing was written.")


def test_cli_prints_failure_table_and_exits_non_zero(tmp_path: Path) -> None:
    sheets = small()
    sheets["results"][1]["sd2i"] = -4.4
    directory = write_csv(tmp_path / "sheets", sheets)
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    before = file_hash(url)
    result = CliRunner().invoke(app, ["ingest", str(directory), "-c", str(PEER_CODEBOOK),
                                      "--url", url])  # fmt: skip
    assert result.exit_code == 2
    for text in ("results.csv", "sd2i", "-4.4", "must be > 0", "nothing was written"):
        assert text in result.output
    assert file_hash(url) == before


def test_cli_json_lists_failures_for_machines(tmp_path: Path) -> None:
    sheets = small()
    sheets["arms"][2]["uptake"] = 120
    directory = write_csv(tmp_path / "sheets", sheets)
    url = f"sqlite:///{tmp_path / 'e.db'}"
    upgrade(url)
    args = ["ingest", str(directory), "-c", str(PEER_CODEBOOK), "-d", url, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert payload["failures"] == [
        {"file": str(directory / "arms.csv"), "sheet": "arms", "row": 4, "column": "uptake",
         "value": "120", "rule": "must be <= 100"}
    ]  # fmt: skip


def test_failure_shows_the_cell_as_the_sheet_wrote_it(tmp_path: Path) -> None:
    directory = tmp_path / "sheets"
    _bcg(_replace_line("results.csv", 2, ",4,123,", ",400,123,"))(directory)
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    with pytest.raises(ValidationError) as info:
        ingest([directory], codebook=BCG_CODEBOOK, database=url)
    (failure,) = info.value.failures
    assert failure["value"] == "400"  # not the typed 400.0
    assert "(value '400')" in str(info.value)
