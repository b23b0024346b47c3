"""XLSX formula cells: a cached value is read, a formula without one is an error naming the cell.

The workbooks are made here with openpyxl, which writes formulas without cached values (as a
script or a converter that does not compute formulas would); the cached value of the second
workbook is written into its sheet XML by hand, as a spreadsheet program saves it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from evidence.errors import ValidationError
from evidence.ingest.readers import read_sheets, read_xlsx, read_xlsx_table


def _workbook(path: Path, title: str = "studies") -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = title
    ws.append(["study_key", "year"])
    ws.append(["A", 2001])
    ws.append(["B", 2002])
    ws.append(["C", None])
    ws["B4"] = "=B3+1"
    wb.save(path)
    return path


def _with_cached_value(path: Path, cell: str, value: str) -> Path:
    """*path* with the cached value *value* written into the formula cell *cell*."""
    out = path.with_name("cached-" + path.name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                start = text.index(f'<c r="{cell}">')
                end = text.index("</c>", start)
                assert "<v />" in text[start:end]
                text = text[:start] + text[start:end].replace("<v />", f"<v>{value}</v>") \
                    + text[end:]  # fmt: skip
                data = text.encode()
            dst.writestr(item, data)
    return out


def test_formula_without_cached_value_is_an_error_naming_file_sheet_and_cell(tmp_path: Path):
    path = _workbook(tmp_path / "sheets.xlsx")
    with pytest.raises(ValidationError) as info:
        read_xlsx(path, ["studies"])
    failure = info.value.failures[0]
    assert (failure["sheet"], failure["row"], failure["column"]) == ("studies", 4, "year")
    assert failure["value"] == "=B3+1" and "cached value" in failure["rule"]
    message = str(info.value)
    assert str(path) in message and "cell B4" in message and "sheet studies" in message
    # the same through the directory reader and the one-table reader: never a blank cell
    with pytest.raises(ValidationError, match="cell B4 holds the formula =B3\\+1"):
        read_sheets([tmp_path], ["studies"])
    with pytest.raises(ValidationError, match="cell B4"):
        read_xlsx_table(path)


def test_formula_with_a_cached_value_reads_as_that_value(tmp_path: Path) -> None:
    path = _with_cached_value(_workbook(tmp_path / "sheets.xlsx"), "B4", "2003")
    sheet = read_xlsx(path, ["studies"])["studies"]
    assert sheet.frame["year"].tolist() == ["2001", "2002", "2003"]
    assert sheet.frame["_row"].tolist() == [2, 3, 4]


def test_read_xlsx_table_picks_the_named_worksheet_else_the_first(tmp_path: Path) -> None:
    wb = Workbook()
    wb.active.title = "notes"
    wb.active.append(["a note"])
    data = wb.create_sheet("Data")
    data.append(["study", "n_arm1"])
    data.append(["X, 2020", 12])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    assert read_xlsx_table(path, ["data"]).frame["n_arm1"].tolist() == ["12"]
    assert read_xlsx_table(path).header == ("a note",)
