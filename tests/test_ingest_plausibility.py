"""Impossible numbers are refused at ingest with the cell named, and nothing is written.

Issue 10, item 3 ("plausibility, not only validity"): each bad input below once passed
validation and moved or silently dropped an estimate (n1i = 1e23 moved the BCG estimate from
0.71 to 4.09; m1i = 1e308 and SD = 1e-300 stored a NULL effect size; m2i = 2.5e5 gave
g = -30,811). Each is a real CSV file; each must fail naming its sheet, row and column, leave
the database as it was, and print no numpy RuntimeWarning.
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from _ingest_data import (
    BCG_CODEBOOK,
    BCG_SEED,
    PEER_CODEBOOK,
    PEER_SEED,
    dump,
    file_hash,
    small,
    write_csv,
)
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest import _effects
from evidence.ingest.codebook import load_codebook, parse_codebook
from evidence.ingest.loader import ingest, prepare
from evidence.stats.effects import compute_effects
from evidence.stats.escalc import escalc

Sheets = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """A bad input: how to write it, and the failure it must produce."""

    make: Callable[[Path], list[Path]]
    sheet: str
    row: int
    column: str
    rule: str  # substring of the failure's rule
    codebook: Path = PEER_CODEBOOK


def _set(sheet: str, index: int, **values: Any) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        sheets = small()
        sheets[sheet][index].update(values)
        return [write_csv(directory, sheets)]

    return make


def _randomised(n_randomized: Any, **result: Any) -> Callable[[Path], list[Path]]:
    """S1's arms randomised 40 and 42; result r1 (row 2) edited with *result*."""

    def make(directory: Path) -> list[Path]:
        sheets = small()
        sheets["arms"][0]["n_randomized"] = n_randomized
        sheets["arms"][1]["n_randomized"] = 42
        sheets["results"][0].update(result)
        return [write_csv(directory, sheets)]

    return make


def _bcg_cell(line: int, old: str, new: str) -> Callable[[Path], list[Path]]:
    def make(directory: Path) -> list[Path]:
        shutil.copytree(BCG_SEED, directory, dirs_exist_ok=True)
        path = directory / "results.csv"
        lines = path.read_text().splitlines()
        assert old in lines[line - 1]
        lines[line - 1] = lines[line - 1].replace(old, new, 1)
        path.write_text("\n".join(lines) + "\n")
        return [directory]

    return make


CASES: dict[str, Case] = {
    "n1i = 1e23 (beyond int64)": Case(_bcg_cell(2, ",123,", ",1e23,"), "results", 2, "n1i",
                                      "between -2^53 and 2^53", BCG_CODEBOOK),
    "n1i written out beyond int64": Case(
        _bcg_cell(2, ",123,", ",99999999999999999999,"), "results", 2, "n1i",
        "between -2^53 and 2^53", BCG_CODEBOOK),
    "m1i = 1e308": Case(_set("results", 0, m1i="1e308"), "results", 2, "m1i",
                        "between -2^53 and 2^53"),
    "text inf": Case(_set("results", 1, sd2i="inf"), "results", 3, "sd2i", "must be a number"),
    "text -inf": Case(_set("results", 1, m2i="-inf"), "results", 3, "m2i", "must be a number"),
    "1e400 overflows to inf": Case(_set("results", 0, m1i="1e400"), "results", 2, "m1i",
                                   "must be a number"),
    "SD = 1e-300": Case(_set("results", 0, sd1i="1e-300"), "results", 2, "sd1i",
                        "effectively zero next to its mean m1i"),
    "baseline SD effectively zero": Case(_set("results", 2, sd1i_pre="1e-9"), "results", 4,
                                         "sd1i_pre", "effectively zero next to its mean m1i_pre"),
    "m2i 2.5e5 with SD 10": Case(_set("results", 0, m2i="2.5e5", sd1i=10, sd2i=10), "results",
                                 2, "yi", "implausible effect size: |g| = "),
    "|g| > 10 from a reported d": Case(
        _set("results", 1, m1i="", sd1i="", m2i="", sd2i="", di=15), "results", 3, "yi",
        "exceeds 10; SMD:d from di = 15"),
    "n beyond ten million": Case(_set("results", 0, n1i=20_000_000), "results", 2, "n1i",
                                 "must be <= 10000000"),
    "n_randomized beyond ten million": Case(_randomised(20_000_000), "arms", 2,
                                            "n_randomized", "must be <= 10000000"),
    "n beyond the arm's randomised n": Case(
        _randomised(40, n1i=45), "results", 2, "n1i",
        "n1i = 45 exceeds the randomised n of arm peer (n_randomized = 40 in"),
    "BCG events in a group larger than randomised": Case(
        _bcg_cell(2, ",4,123,", ",4,1230,"), "results", 2, "n1i",
        "exceeds the randomised n of arm bcg (n_randomized = 123", BCG_CODEBOOK),
}  # fmt: skip


def _assert_failure(error: ValidationError, case: Case) -> dict[str, Any]:
    matches = [
        f
        for f in error.failures
        if case.rule in f["rule"]
        and (f["sheet"], f["row"], f["column"]) == (case.sheet, case.row, case.column)
    ]
    assert len(matches) == 1, f"no single failure {case} in {error.failures}"
    assert matches[0]["file"], matches[0]
    assert f"row {case.row}" in str(error) and "nothing was written" in str(error)
    return matches[0]


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database holding the BCG seed (copied for each test)."""
    path = tmp_path_factory.mktemp("template") / "evidence.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    ingest([BCG_SEED], codebook=BCG_CODEBOOK, database=url)
    return path


@pytest.fixture
def seeded_url(tmp_path: Path, seeded_template: Path) -> str:
    db = tmp_path / "evidence.db"
    shutil.copy(seeded_template, db)
    return f"sqlite:///{db}"


@pytest.mark.parametrize("name", list(CASES))
def test_ingest_refuses_implausible_number_naming_the_cell_and_writes_nothing(
    name: str, tmp_path: Path, seeded_url: str
) -> None:
    case = CASES[name]
    before_hash, before = file_hash(seeded_url), dump(seeded_url)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValidationError) as info:
            ingest(case.make(tmp_path / "sheets"), codebook=case.codebook, database=seeded_url)
    _assert_failure(info.value, case)
    assert file_hash(seeded_url) == before_hash
    assert dump(seeded_url) == before


@pytest.mark.postgres
def test_ingest_refuses_every_implausible_number_on_postgresql_and_writes_nothing(
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


def test_one_cell_beyond_two_bounds_is_reported_once(tmp_path: Path) -> None:
    sheets = small()
    sheets["arms"][0]["n_randomized"] = 40
    sheets["results"][0]["n1i"] = 20_000_000  # beyond ten million and beyond the arm's 40
    with pytest.raises(ValidationError) as info:
        prepare([write_csv(tmp_path, sheets)], load_codebook(PEER_CODEBOOK))
    assert [(f["row"], f["column"]) for f in info.value.failures] == [(2, "n1i")]


def test_implausible_effect_size_names_formula_and_inputs(tmp_path: Path) -> None:
    sheets = small()
    sheets["results"][0].update(m2i="2.5e5", sd1i=10, sd2i=10)
    with pytest.raises(ValidationError) as info:
        prepare([write_csv(tmp_path, sheets)], load_codebook(PEER_CODEBOOK))
    (f,) = info.value.failures
    # Hedges' g: d = (8 - 250000) / 10 (pooled SD 10), c(m) = G(m/2) / (sqrt(m/2) G((m-1)/2))
    # with m = 78; the outcome's direction is "lower", so the sign is flipped.
    m = 78
    c = math.exp(math.lgamma(m / 2) - math.lgamma((m - 1) / 2)) / math.sqrt(m / 2)
    assert f["value"] == f"{-(8 - 250000) / 10 * c:.6g}"
    assert "SMD:means from m1i = 8, m2i = 250000, n1i = 40, n2i = 40, sd1i = 10" in f["rule"]
    assert "analysis.max_abs_yi" in f["rule"]


def _codebook(path: Path, **analysis: Any):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["analysis"].update(analysis)
    return parse_codebook(raw, str(path))


def test_codebook_max_abs_yi_allows_a_larger_smd(tmp_path: Path) -> None:
    sheets = small()
    sheets["results"][1].update(m1i="", sd1i="", m2i="", sd2i="", di=15)
    directory = write_csv(tmp_path, sheets)
    with pytest.raises(ValidationError):
        prepare([directory], load_codebook(PEER_CODEBOOK))
    prepared = prepare([directory], _codebook(PEER_CODEBOOK, max_abs_yi=20))
    g = prepared.effects["yi"].to_numpy()
    assert 10 < abs(g[1]) < 15  # d = 15 bias-corrected with n = 35 + 36, sign flipped


def test_codebook_max_abs_yi_tightens_the_log_risk_ratio_bound() -> None:
    # metafor: escalc("RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg) gives
    # |log RR| > 1 in trials 2 (-1.585), 3 (-1.348), 4 (-1.442), 7 (-1.621), 10 (-1.371):
    # spreadsheet rows 3, 4, 5, 8, 11 (the others are below 0.9).
    codebook = _codebook(BCG_CODEBOOK, max_abs_yi=1)
    with pytest.raises(ValidationError) as info:
        prepare([BCG_SEED], codebook)
    rows = {f["row"] for f in info.value.failures}
    assert rows == {3, 4, 5, 8, 11}
    assert all("|log RR| = " in f["rule"] and f["column"] == "yi" for f in info.value.failures)


@pytest.mark.parametrize(
    ("yi", "vi", "column", "rule"),
    [(np.inf, 0.1, "yi", "no effect size can be computed"),
     (np.nan, 0.1, "yi", "no effect size can be computed"),
     (0.3, 0.0, "vi", "sampling variance must be finite and > 0"),
     (0.3, np.inf, "vi", "sampling variance must be finite and > 0")],
)  # fmt: skip
def test_non_finite_effect_or_non_positive_variance_is_refused(
    yi: float, vi: float, column: str, rule: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The last net: whatever the formulas give, a row with no usable yi/vi is refused."""
    real = _effects.compute_effects

    def broken(frame: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
        out = real(frame, **kwargs)
        out.loc[out.index[1], ["yi", "vi"]] = [yi, vi]
        return out

    monkeypatch.setattr(_effects, "compute_effects", broken)
    with pytest.raises(ValidationError) as info:
        prepare([write_csv(tmp_path, small())], load_codebook(PEER_CODEBOOK))
    (f,) = info.value.failures
    assert (f["sheet"], f["row"], f["column"]) == ("results", 3, column)
    assert rule in f["rule"] and "SMD:means from" in f["rule"]


def test_the_seeds_pass_every_plausibility_rule() -> None:
    for seed, codebook in ((BCG_SEED, BCG_CODEBOOK), (PEER_SEED, PEER_CODEBOOK)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            effects = prepare([seed], load_codebook(codebook)).effects
        assert np.isfinite(effects["yi"].to_numpy(dtype=float)).all()
        assert (effects["vi"].to_numpy(dtype=float) > 0).all()


def test_overflowing_formulas_give_no_runtime_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = escalc("SMD", m1i=[1e308], sd1i=[1e300], n1i=[20], m2i=[-1e308], sd2i=[1e300],
                     n2i=[20])  # fmt: skip
        row = {"n1i": [20], "m1i": [1e308], "sd1i": [1e300], "n2i": [20], "m2i": [-1e308],
               "sd2i": [1e300]}  # fmt: skip
        frame = compute_effects(pd.DataFrame(row))
    # the difference of the means overflows: metafor's rule makes an infinite yi missing,
    # which ingest then refuses ("no effect size can be computed")
    assert np.isnan(res.yi[0]) and np.isnan(frame["yi"].iat[0])


def test_cli_refuses_implausible_numbers_with_exit_2_and_no_traceback_or_warning(
    tmp_path: Path,
) -> None:
    sheets = small()
    sheets["results"][0].update(m1i="1e308")
    sheets["results"][1].update(m2i="2.5e5", sd1i=10, sd2i=10)
    sheets["results"][2].update(sd1i="1e-300")
    directory = write_csv(tmp_path / "sheets", sheets)
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    before = file_hash(url)
    result = CliRunner().invoke(app, ["ingest", str(directory), "-c", str(PEER_CODEBOOK),
                                      "--url", url])  # fmt: skip
    assert result.exit_code == 2
    for text in ("m1i", "1e308", "2^53", "sd1i", "effectively", "implausible",
                 "nothing was written"):  # fmt: skip
        assert text in result.output, text
    assert "RuntimeWarning" not in result.output and "Traceback" not in result.output
    assert file_hash(url) == before
