"""`evidence escalc FILE.csv`: yi and vi appended to the input, errors as one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from evidence.cli import app

GOLDEN = json.loads((Path(__file__).parent / "golden" / "escalc.json").read_text())["cases"]


def _case(name: str, **options) -> dict:
    opts = {"vtype": "LS", **options}
    return next(
        c
        for c in GOLDEN
        if c["name"] == name and {k: c["options"].get(k, "LS") for k in opts} == opts
    )


def _write(tmp_path: Path, case: dict) -> Path:
    path = tmp_path / "input.csv"
    frame = pd.DataFrame({"study": [f"S{i}" for i in range(len(case["yi"]))]})
    for k, v in case["args"].items():
        frame[f"col_{k}"] = v
    frame.to_csv(path, index=False)
    return path


def test_cli_escalc_appends_metafors_yi_and_vi_to_stdout(tmp_path: Path) -> None:
    case = _case("SMD/normand1999")
    path = _write(tmp_path, case)
    flags = [x for k in case["args"] for x in (f"--{k}", f"col_{k}")]
    result = CliRunner().invoke(app, ["escalc", str(path), "--measure", "SMD", *flags])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(io.StringIO(result.stdout))
    assert list(out.columns[-2:]) == ["yi", "vi"] and list(out["study"])[0] == "S0"
    np.testing.assert_allclose(out["yi"], case["yi"], rtol=1e-10)
    np.testing.assert_allclose(out["vi"], case["vi"], rtol=1e-10)


def test_cli_escalc_writes_to_a_file_with_zero_cell_options(tmp_path: Path) -> None:
    case = _case("OR/nielweise2007", to="all")
    path = _write(tmp_path, case)
    target = tmp_path / "out.csv"
    flags = [x for k in case["args"] for x in (f"--{k}", f"col_{k}")]
    result = CliRunner().invoke(
        app, ["escalc", str(path), "--measure", "OR", "--to", "all", *flags, "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    out = pd.read_csv(target)
    np.testing.assert_allclose(out["yi"], case["yi"], rtol=1e-10)


def test_cli_escalc_accepts_a_number_as_a_constant(tmp_path: Path) -> None:
    path = tmp_path / "cor.csv"
    pd.DataFrame({"r": [0.1, 0.5]}).to_csv(path, index=False)
    result = CliRunner().invoke(
        app, ["escalc", str(path), "--measure", "ZCOR", "--ri", "r", "--ni", "23"]
    )
    assert result.exit_code == 0, result.output
    out = pd.read_csv(io.StringIO(result.stdout))
    np.testing.assert_allclose(out["vi"], [0.05, 0.05])


def test_cli_escalc_reports_a_bad_value_with_its_file_row_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame({"m1": [1, 2], "s1": [1, -3], "n1": [10, 10]}).to_csv(path, index=False)
    result = CliRunner().invoke(
        app,
        [
            "escalc",
            str(path),
            "--measure",
            "SMD",
            "--m1i",
            "m1",
            "--sd1i",
            "s1",
            "--n1i",
            "n1",
            "--m2i",
            "0",
            "--sd2i",
            "1",
            "--n2i",
            "10",
        ],
    )
    assert result.exit_code == 2
    assert "bad.csv: row 3, s1 (sd1i) = -3 breaks the rule 'sd1i > 0'" in result.output
    assert "Traceback" not in result.output


def test_cli_escalc_rejects_unknown_columns_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    pd.DataFrame({"r": [0.1]}).to_csv(path, index=False)
    result = CliRunner().invoke(
        app, ["escalc", str(path), "--measure", "COR", "--ri", "rr", "--ni", "n"]
    )
    assert result.exit_code == 2 and "names no column 'rr'" in result.output
    result = CliRunner().invoke(app, ["escalc", str(tmp_path / "no.csv"), "--measure", "COR"])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_cli_escalc_has_help_text() -> None:
    result = CliRunner().invoke(app, ["escalc", "--help"])
    assert result.exit_code == 0 and "yi and vi" in result.output
