"""Read coding sheets from CSV files and XLSX workbooks into frames of text cells.

Every cell is read as text (blank cells as ``""``); types are applied later by the codebook's
schemas, so that a wrong type is reported for the exact cell. Each frame carries the column
``_row``: the row number as the spreadsheet shows it (the header is row 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evidence.errors import ValidationError

__all__ = ["ROW", "Sheet", "read_csv_sheet", "read_sheets", "read_xlsx", "read_xlsx_table"]

#: Name of the column holding the spreadsheet row number of each record.
ROW = "_row"


@dataclass(frozen=True)
class Sheet:
    """One coding sheet: its name, the file it came from and its cells as text."""

    name: str
    file: str
    frame: pd.DataFrame
    header: tuple[str, ...]


def _error(file: str, sheet: str | None, rule: str, *, row: int | None = None,
           column: str | None = None, value: object = None) -> ValidationError:  # fmt: skip
    where = f"file {file}" + (f", sheet {sheet}" if sheet else "")
    where += f", row {row}" if row is not None else ""
    where += f", column {column}" if column else ""
    failure = {"file": file, "sheet": sheet, "row": row, "column": column, "value": value,
               "rule": rule}  # fmt: skip
    return ValidationError(f"{where}: {rule}", [failure])


def _header(file: str, sheet: str, header_row: int, cells: Sequence[str]) -> list[str]:
    header = [h.strip() for h in cells]
    while header and header[-1] == "":
        header.pop()
    if not header:
        raise _error(file, sheet, "the header row is empty", row=header_row)
    for i, name in enumerate(header):
        if name == "":
            raise _error(file, sheet, f"header cell {i + 1} is blank", row=header_row)
        if name in header[:i]:
            raise _error(file, sheet, "duplicate column name in the header", row=header_row,
                         column=name)  # fmt: skip
        if name == ROW:
            raise _error(file, sheet, f"column name {ROW} is reserved", column=name)
    return header


def _body(file: str, sheet: str, header: list[str], frame: pd.DataFrame,
          numbers: np.ndarray) -> Sheet:  # fmt: skip
    """Strip the cells, drop blank lines, add the row numbers."""
    if len(frame):
        for name in header:
            frame[name] = frame[name].str.strip().astype(object)
        filled = (frame != "").any(axis=1).to_numpy()  # blank lines are skipped
        frame = frame[filled].reset_index(drop=True)
        rows = np.asarray(numbers, dtype="int64")[filled]
    else:
        frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in header})
        rows = np.zeros(0, dtype="int64")
    frame[ROW] = rows
    return Sheet(name=sheet, file=file, frame=frame, header=tuple(header))


def _frame(file: str, sheet: str, rows: Iterable[tuple[int, list[str]]]) -> Sheet:
    """Build a Sheet from (row number, cells) pairs; the first pair is the header."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        raise _error(file, sheet, "the sheet is empty (expected a header row naming the columns)")
    header = _header(file, sheet, first[0], first[1])
    width = len(header)
    numbers: list[int] = []
    records: list[list[str]] = []
    for number, cells in iterator:
        n = len(cells)
        if n != width:
            if n > width:
                if any(str(c).strip() for c in cells[width:]):
                    raise _error(file, sheet, f"the row has {n} cells but the header names "
                                 f"{width} columns", row=number)  # fmt: skip
                cells = cells[:width]
            else:
                cells = cells + [""] * (width - n)
        numbers.append(number)
        records.append(cells)
    frame = pd.DataFrame(records, columns=header, dtype=object)
    return _body(file, sheet, header, frame, np.asarray(numbers, dtype="int64"))


def _fast_csv(file: str, sheet: str, text: str) -> Sheet | None:
    """Read with pandas' C parser when row numbers are unambiguous (no multi-line cells)."""
    try:
        table = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False,
                            na_filter=False, skip_blank_lines=False, engine="c")  # fmt: skip
    except (pd.errors.ParserError, ValueError):
        return None  # the csv module reports the exact row
    if table.empty:
        return None
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if lines != len(table):
        return None  # a quoted cell spans lines: the csv module numbers rows exactly
    header = _header(file, sheet, 1, [str(x) for x in table.iloc[0]])
    width = len(header)
    if table.shape[1] > width:
        extra = table.iloc[1:, width:]
        bad = (extra.apply(lambda col: col.str.strip()) != "").any(axis=1)
        if bad.any():
            return None  # the csv module reports the ragged row
    body = table.iloc[1:, :width].copy()
    body = body.reindex(columns=range(width), fill_value="")
    body.columns = header
    return _body(file, sheet, header, body.reset_index(drop=True),
                 np.arange(2, len(table) + 1, dtype="int64"))  # fmt: skip


def read_csv_sheet(path: str | Path, sheet: str | None = None) -> Sheet:
    """Read one CSV coding sheet (UTF-8, with or without BOM; comma separated).

    Raises
    ------
    ValidationError
        The file is empty, is not UTF-8 text, or has a malformed row.
    """
    path = Path(path)
    sheet = sheet or path.stem
    data = path.read_bytes()
    if not data.strip():
        raise _error(str(path), sheet, "the file is empty (expected a header row naming the "
                     "columns)")  # fmt: skip
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _error(
            str(path),
            sheet,
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}"
            f" cannot be decoded); save it as CSV UTF-8",
            row=line,
        ) from None
    if "\x00" in text:
        raise _error(str(path), sheet, "the file is not a text CSV file (it holds NUL bytes)")
    fast = _fast_csv(str(path), sheet, text)
    if fast is not None:
        return fast
    reader = csv.reader(io.StringIO(text, newline=""))

    def rows() -> Iterable[tuple[int, list[str]]]:
        start = 1
        try:
            for cells in reader:
                yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise _error(str(path), sheet, f"malformed CSV: {exc}", row=start) from None

    return _frame(str(path), sheet, rows())


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _is_formula(value: object) -> bool:
    """Whether a cell value read with ``data_only=False`` is a formula."""
    if isinstance(value, str):
        return value.startswith("=")
    return type(value).__name__ in ("ArrayFormula", "DataTableFormula")


def _open_xlsx(path: Path, data_only: bool):  # an openpyxl Workbook
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        return load_workbook(path, read_only=True, data_only=data_only)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise _error(str(path), None, f"not a readable XLSX workbook ({type(exc).__name__}: "
                     f"{exc})") from None  # fmt: skip


def _xlsx_rows(file: str, sheet: str, values, formulas) -> Iterable[tuple[int, list[str]]]:
    """(row number, cells as text) of a worksheet, read twice: cached values and formulas.

    A formula cell whose workbook holds no cached value (saved by a program that does not
    compute formulas) reads as None with ``data_only=True``: it is an error naming the cell,
    never a blank cell.
    """
    from openpyxl.utils import get_column_letter

    pairs = zip(values.iter_rows(values_only=True), formulas.iter_rows(values_only=True),
                strict=False)  # fmt: skip
    header: tuple = ()
    for i, (cached, written) in enumerate(pairs, start=1):
        header = header or cached
        for j, value in enumerate(cached):
            if value is None and j < len(written) and _is_formula(written[j]):
                cell = f"{get_column_letter(j + 1)}{i}"
                name = _cell(header[j]).strip() if j < len(header) and i > 1 else ""
                raise _error(file, sheet, f"cell {cell} holds the formula {written[j]!s} "
                             "but no cached value (the workbook was saved by a program that "
                             "does not compute formulas): open and save it in a spreadsheet "
                             "program, or enter the value", row=i, column=name or cell,
                             value=str(written[j]))  # fmt: skip
        yield i, [_cell(v) for v in cached]


def read_xlsx(path: str | Path, sheets: Sequence[str]) -> dict[str, Sheet]:
    """Read the worksheets of an XLSX workbook whose names are coding sheets.

    Worksheet names are matched case-insensitively; a worksheet whose name is not one of
    *sheets* is an error (a misspelt sheet would otherwise be silently skipped). Formula
    cells are read as their cached values.

    Raises
    ------
    ValidationError
        The file is not a readable XLSX workbook, a worksheet is unknown or empty, or a
        formula cell has no cached value (naming the cell, e.g. ``B7``).
    """
    path = Path(path)
    workbook = _open_xlsx(path, data_only=True)
    formulas = _open_xlsx(path, data_only=False)
    try:
        found: dict[str, Sheet] = {}
        wanted = {s.lower(): s for s in sheets}
        for ws, wf in zip(workbook.worksheets, formulas.worksheets, strict=True):
            key = ws.title.strip().lower()
            if key not in wanted:
                raise _error(str(path), ws.title, "unknown worksheet (expected worksheets "
                             "named " + ", ".join(sheets) + ")")  # fmt: skip
            rows = _xlsx_rows(str(path), wanted[key], ws, wf)
            found[wanted[key]] = _frame(str(path), wanted[key], rows)
        return found
    finally:
        workbook.close()
        formulas.close()


def read_xlsx_table(path: str | Path, worksheets: Sequence[str] = ()) -> Sheet:
    """Read one worksheet of an XLSX workbook as a table of text cells (header = row 1).

    The first worksheet whose name is one of *worksheets* (case-insensitive), else the
    workbook's first worksheet. Formula cells are read as their cached values.

    Raises
    ------
    ValidationError
        As :func:`read_xlsx`.
    """
    path = Path(path)
    workbook = _open_xlsx(path, data_only=True)
    formulas = _open_xlsx(path, data_only=False)
    try:
        names = [ws.title.strip().lower() for ws in workbook.worksheets]
        if not names:
            raise _error(str(path), None, "the workbook holds no worksheet")
        wanted = [n.lower() for n in worksheets]
        pick = next((names.index(n) for n in wanted if n in names), 0)
        ws, wf = workbook.worksheets[pick], formulas.worksheets[pick]
        return _frame(str(path), ws.title, _xlsx_rows(str(path), ws.title, ws, wf))
    finally:
        workbook.close()
        formulas.close()


def read_sheets(paths: Sequence[str | Path], sheets: Sequence[str]) -> dict[str, Sheet]:
    """Read coding sheets from files and directories.

    Parameters
    ----------
    paths
        CSV files named after their sheet (``studies.csv``), XLSX workbooks with one worksheet
        per sheet, or directories holding such files.
    sheets
        The sheet names the codebook declares.

    Raises
    ------
    ValidationError
        A file is unreadable, a CSV file is not named after a sheet, or a sheet is given twice.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(
                f for f in p.iterdir() if f.suffix.lower() in (".csv", ".xlsx") and
                not f.name.startswith(("~$", "."))
            )  # fmt: skip
            if not inside:
                raise _error(str(p), None, "the directory holds no .csv or .xlsx coding sheets")
            files.extend(inside)
        elif p.is_file():
            files.append(p)
        else:
            raise _error(str(p), None, "no such file or directory")
    found: dict[str, Sheet] = {}

    def add(sheet: Sheet) -> None:
        if sheet.name in found:
            raise _error(sheet.file, sheet.name, f"sheet {sheet.name} is given twice (also in "
                         f"{found[sheet.name].file})")  # fmt: skip
        found[sheet.name] = sheet

    for f in files:
        suffix = f.suffix.lower()
        if suffix == ".xlsx":
            for sheet in read_xlsx(f, sheets).values():
                add(sheet)
        elif suffix == ".csv":
            name = f.stem.strip().lower()
            if name not in sheets:
                raise _error(str(f), None, "a CSV file must be named after its sheet: one of "
                             + ", ".join(f"{s}.csv" for s in sheets))  # fmt: skip
            add(read_csv_sheet(f, name))
        else:
            raise _error(str(f), None, "not a coding sheet (expected a .csv or .xlsx file)")
    return found
