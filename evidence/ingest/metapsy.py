"""The Metapsy interchange: read, validate, compute g, compare, write back.

Metapsy (metapsy.org) publishes living databases of psychotherapy trials as flat files:
``;``-separated, decimal commas, ``NA`` for missing, one row per comparison x instrument x
time point. These functions are pure (files and DataFrames in, DataFrames and reports out);
loading into a database goes through the ingest loader.

Reading and validation (:func:`read_metapsy`)
---------------------------------------------
Every numeric column of the standard is parsed with the decimal comma; ``NA``, an empty
cell and ``NR`` ("not reported", used by some releases) are missing (``NR`` cells are
counted in ``MetapsyFile.not_reported``). A leading unnamed row-number column is dropped.
Each row is checked (failures name the file row -- the header is row 1 --, the column and
the rule):

- every numeric cell parses as a number, and is finite;
- SDs (``sd_arm*``, ``baseline_sd_arm*``, ``sd_change_arm*``) > 0; ``n_arm*``,
  ``n_change_arm*``, ``baseline_n_arm*`` >= 2; ``totaln_arm*`` >= 1;
  0 <= ``event_arm*`` <= ``totaln_arm*``; ``precalc_g_se``, ``.g_se`` > 0;
  ``time_weeks`` >= 0; ``study`` is not empty;
- ``|precalc_g|``, ``|.g|``, ``precalc_g_se`` and ``.g_se`` are at most 10 (one release
  stores ``.g`` with its decimal separator lost, e.g. ``-8.07e14`` for ``-0.0807``);
- plausibility: the standardized difference of the means (and of the change scores) is
  at most 10 in absolute value -- larger values are almost always a data error such as
  a lost decimal comma (``18,44`` stored as ``1844``);
- a row with some means or SDs but neither a complete set of them nor any other effect
  data (change scores, events, ``precalc_g``) is incomplete;
- a row whose ``outcome_type`` is continuous (``msd``, ``imsd``) but which has
  only events would get an odds-ratio-based g from another outcome's data (peer-support
  23.0.x row 13: the RAS row carries the events of an MDD diagnosis);
- text is not mojibake: a cell whose UTF-8 bytes were read as Windows-1252 somewhere along
  the way (``RÃ¼sch, 2014`` for ``Rüsch, 2014``; peer-support 23.0.3 has such cells) would
  silently become a different study or instrument. ``repair_text=True`` decodes such cells
  back and lists every repair in ``MetapsyFile.repaired``.

A file with failing rows is refused as a whole (:class:`~evidence.errors.ValidationError`
listing every failing cell) unless ``skip_invalid=True``; then the failing rows are left
out and listed exactly in ``MetapsyFile.skipped`` (file rows) and ``.failures``. Rows with
no effect data at all are kept (they carry moderators) and get no g.

Effect sizes (:func:`metapsy_effect_sizes`)
-------------------------------------------
As metapsyTools' ``calculateEffectSizes``: the first of (1) means/SDs/ns of both arms,
(2) change-score means/SDs/ns (``n_change_arm*``), (3) events out of ``totaln_arm*``,
(4) ``precalc_g``/``precalc_g_se`` (forwarded unchanged). ``formulas="escalc"`` (default)
computes (1) and (2) with :func:`evidence.stats.escalc.escalc` (Hedges' g with the exact
correction, vtype LS) and (3) as escalc's ``OR2DL``; ``formulas="metapsy"`` reproduces
Metapsy's own numbers (package esc): ``g = d (1 - 3 / (4N - 9))`` with
``SE = sqrt(1/n1 + 1/n2 + d^2 / (2N))`` from the uncorrected d, and for events the
logistic conversion of the log OR times the same factor. For events Metapsy adds 1/2 to
every cell only when an event count is 0, and reverses the sign (more events in arm 1 ->
negative g); both methods follow that.

Sign convention: ``sign="metapsy"`` keeps metapsyTools' orientation (means: arm 1 minus
arm 2); ``sign="reversed"`` multiplies every computed g by -1 (databases whose ``.g`` is
positive when arm 1 scores lower). ``precalc_g`` is forwarded as the file gives it.
:func:`infer_sign` tells which convention a file's ``.g`` follows.

Comparison (:func:`compare_with_file`): maximum absolute differences of g and SE against
``.g``/``.g_se``, the number of rows within ``0.005 + 1e-9`` (Metapsy may round to two
decimals) and the rows that disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evidence.errors import NotFoundError, ValidationError
from evidence.ingest.metapsy_formats import as_standard, layout_of
from evidence.stats.escalc import escalc

__all__ = [
    "MetapsyFile",
    "MetapsyComparison",
    "NUMERIC_COLUMNS",
    "read_metapsy",
    "unmojibake",
    "validate_metapsy",
    "metapsy_effect_sizes",
    "infer_sign",
    "compare_effects",
    "compare_with_file",
    "write_metapsy",
]

_ARMS = ("arm1", "arm2")
NUMERIC_COLUMNS = (
    ("time_weeks",)
    + tuple(f"{p}_{a}" for p in ("mean", "sd", "n", "event", "totaln", "baseline_m",
                                 "baseline_sd", "baseline_n", "mean_change", "sd_change",
                                 "n_change") for a in _ARMS)
    + ("precalc_g", "precalc_g_se", "precalc_log_rr", "precalc_log_rr_se",
       ".g", ".g_se", ".log_rr", ".log_rr_se")
    + tuple(f".{p}_{a}" for p in ("event", "totaln") for a in _ARMS)
)  # fmt: skip
_MEANS = ("mean_arm1", "sd_arm1", "n_arm1", "mean_arm2", "sd_arm2", "n_arm2")
_CHANGE = ("mean_change_arm1", "sd_change_arm1", "n_change_arm1", "mean_change_arm2",
           "sd_change_arm2", "n_change_arm2")  # fmt: skip
_EVENTS = ("event_arm1", "totaln_arm1", "event_arm2", "totaln_arm2")
_PRECALC = ("precalc_g", "precalc_g_se")
_MISSING = ("NA", "", "NR")
MAX_ABS_D = 10.0
_CONTINUOUS_TYPES = ("msd", "imsd")
SIGNS = ("metapsy", "reversed")
FORMULAS = ("escalc", "metapsy")


@dataclass(frozen=True)
class MetapsyFile:
    """A read and validated Metapsy file.

    Attributes
    ----------
    frame
        The valid rows; numeric columns as floats, others as text; column ``file_row``
        holds each row's line in the file (header = 1).
    path
        Where it was read from.
    skipped
        File rows left out (only with ``skip_invalid=True``).
    failures
        Every failing cell of the skipped rows.
    not_reported
        Number of numeric cells coded ``NR`` (read as missing).
    repaired
        Text cells decoded back from mojibake (``repair_text=True``): file row, column,
        the value as read and as repaired.
    columns
        The file's columns in their order (without the row-name column).
    row_names
        Whether the file begins with an unnamed row-name column (R's ``write.csv2``).
    blank_columns
        The columns whose missing cells the file writes as blanks rather than ``NA``.
    not_reported_cells
        (file row, column) of every numeric cell coded ``NR``.
    verbatim_cells
        (file row, column, text) of every cell whose text the store does not give back as
        it is: text with leading or trailing blanks (the store keeps it stripped) and a
        number of a numeric column written otherwise than :func:`_fmt` writes it
        (``0,50``, ``8,0``, ``0.76``).
    ignored
        Columns the curator chose not to import (``ignore_columns``): kept in ``columns``,
        so an export writes them, empty.
    """

    frame: pd.DataFrame = field(repr=False)
    path: str
    skipped: tuple[int, ...] = ()
    failures: tuple[dict[str, Any], ...] = ()
    not_reported: int = 0
    repaired: tuple[dict[str, Any], ...] = ()
    columns: tuple[str, ...] = ()
    row_names: bool = False
    blank_columns: tuple[str, ...] = ()
    not_reported_cells: tuple[tuple[int, str], ...] = ()
    verbatim_cells: tuple[tuple[int, str, str], ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Database name and version from a file named ``NAME__vVERSION.csv``."""
        return Path(self.path).stem


def _failure(file: str, row: int | None, column: str | None, value: Any, rule: str) -> dict:
    return {"file": file, "sheet": None, "row": row, "column": column, "value": value,
            "rule": rule}  # fmt: skip


def _parse(raw: pd.DataFrame, file: str) -> tuple[pd.DataFrame, list[dict], int]:
    """Text cells -> numbers in the numeric columns; returns frame, parse failures, NR count."""
    out = raw.copy()
    failures: list[dict] = []
    nr = 0
    rows = np.arange(len(raw)) + 2
    for col in raw.columns:
        if col not in NUMERIC_COLUMNS:
            continue
        text = raw[col].astype("string").str.strip()
        missing = text.isna() | text.isin(_MISSING)
        nr += int((text == "NR").sum())
        value = pd.to_numeric(
            text.where(~missing).str.replace(",", ".", regex=False), errors="coerce"
        )
        bad = ~missing & value.isna()
        for i in np.flatnonzero(bad.to_numpy()):
            failures.append(
                _failure(file, int(rows[i]), col, raw[col].iloc[i], "a number (decimal comma)")
            )
        out[col] = value.to_numpy(dtype=float, na_value=np.nan)
    return out, failures, nr


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return frame[name].to_numpy(dtype=float, na_value=np.nan)
    return np.full(len(frame), np.nan)


def _complete(frame: pd.DataFrame, cols: tuple[str, ...]) -> np.ndarray:
    ok = np.ones(len(frame), dtype=bool)
    for c in cols:
        ok &= ~np.isnan(_col(frame, c))
    return ok


def validate_metapsy(frame: pd.DataFrame, file: str = "") -> list[dict[str, Any]]:
    """Row rules of a parsed Metapsy frame (see the module docstring); [] when valid.

    ``frame`` must hold a ``file_row`` column (as :func:`read_metapsy` makes).
    """
    failures: list[dict[str, Any]] = []
    rows = frame["file_row"].to_numpy()

    def check(col: str, ok: np.ndarray, rule: str) -> None:
        if col not in frame.columns:
            return
        x = _col(frame, col)
        for i in np.flatnonzero(~np.isnan(x) & ~ok):
            failures.append(_failure(file, int(rows[i]), col, float(x[i]), rule))

    for col in NUMERIC_COLUMNS:
        check(col, np.isfinite(_col(frame, col)), "finite")
    for a in _ARMS:
        for p in ("sd", "baseline_sd", "sd_change"):
            check(f"{p}_{a}", _col(frame, f"{p}_{a}") > 0, f"{p}_{a} > 0")
        for p in ("n", "n_change", "baseline_n"):
            check(f"{p}_{a}", _col(frame, f"{p}_{a}") >= 2, f"{p}_{a} >= 2")
        check(f"totaln_{a}", _col(frame, f"totaln_{a}") >= 1, f"totaln_{a} >= 1")
        ev, tot = _col(frame, f"event_{a}"), _col(frame, f"totaln_{a}")
        check(f"event_{a}", (ev >= 0) & ~(ev > tot), f"0 <= event_{a} <= totaln_{a}")
    for col in ("precalc_g_se", ".g_se"):
        check(col, _col(frame, col) > 0, f"{col} > 0")
    for col in ("precalc_g", ".g", "precalc_g_se", ".g_se"):
        check(
            col,
            np.abs(_col(frame, col)) <= MAX_ABS_D,
            f"|{col}| <= {MAX_ABS_D:g} (a larger value is a data error, e.g. a lost decimal "
            f"separator)",
        )
    check("time_weeks", _col(frame, "time_weeks") >= 0, "time_weeks >= 0")
    if "mean_age" in frame.columns:  # a moderator column: text until the codebook types it
        age = pd.to_numeric(
            frame["mean_age"].astype("string").str.strip().str.replace(",", ".", regex=False),
            errors="coerce",
        ).to_numpy(dtype=float, na_value=np.nan)
        for i in np.flatnonzero(~np.isnan(age) & ~((age >= 0) & (age <= 120))):
            failures.append(
                _failure(
                    file,
                    int(rows[i]),
                    "mean_age",
                    frame["mean_age"].iat[i],
                    "mean_age is an age in years, 0 to 120 (a larger value is a data error, e.g. a "
                    "lost decimal separator; --ignore-column mean_age leaves the column out)",
                )
            )
    if "study" in frame.columns:
        empty = frame["study"].isna() | (frame["study"].astype("string").str.strip() == "")
        for i in np.flatnonzero(empty.to_numpy()):
            failures.append(_failure(file, int(rows[i]), "study", None, "study is not empty"))
    for cols, label in ((_MEANS, "means"), (_CHANGE, "change scores")):
        m1, s1, n1, m2, s2, n2 = (_col(frame, c) for c in cols)
        with np.errstate(invalid="ignore", divide="ignore"):
            sp = np.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2))
            d = (m1 - m2) / sp
        for i in np.flatnonzero(np.abs(d) > MAX_ABS_D):
            failures.append(_failure(
                file, int(rows[i]), cols[0], float(m1[i]),
                f"|standardized difference of the {label}| <= {MAX_ABS_D:g} "
                f"(it is {abs(d[i]):.1f}: a lost decimal comma or a unit error?)"))  # fmt: skip
    if "outcome_type" in frame.columns:
        kind = frame["outcome_type"].astype("string").str.strip().str.lower()
        continuous = kind.isin(_CONTINUOUS_TYPES).to_numpy()
        only_events = (_complete(frame, _EVENTS) & ~_complete(frame, _MEANS)
                       & ~_complete(frame, _CHANGE))  # fmt: skip
        for i in np.flatnonzero(continuous & only_events):
            failures.append(
                _failure(
                    file,
                    int(rows[i]),
                    "outcome_type",
                    frame["outcome_type"].iat[i],
                    "a continuous outcome_type (msd, imsd) needs means or change scores; "
                    "this row has only events (event_arm*/totaln_arm*), which would be used",
                )
            )
    some = np.zeros(len(frame), dtype=bool)
    for c in ("mean_arm1", "mean_arm2", "sd_arm1", "sd_arm2"):
        some |= ~np.isnan(_col(frame, c))
    other = _complete(frame, _CHANGE) | _complete(frame, _EVENTS) | _complete(frame, _PRECALC)
    for i in np.flatnonzero(some & ~_complete(frame, _MEANS) & ~other):
        lacking = [c for c in _MEANS if math.isnan(_col(frame, c)[i])]
        failures.append(
            _failure(
                file,
                int(rows[i]),
                lacking[0],
                None,
                f"complete means, SDs and ns of both arms "
                f"({', '.join(lacking)} missing) or other effect data",
            )
        )
    failures.sort(key=lambda f: (f["row"], f["column"] or ""))
    return failures


_MOJIBAKE_MARKS = re.compile(
    "[\u00c2\u00c3\u00c5\u00e2][\u0080-\u00bf\u0152\u0153\u0160\u0161"
    "\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]"
)


def unmojibake(text: str) -> str | None:
    """*text* decoded back when it is UTF-8 read as Windows-1252 (or Latin-1); else None.

    ``"RÃ¼sch"`` -> ``"Rüsch"``, ``"Lehmanâ€™s"`` -> ``"Lehman’s"``. Only text holding the
    marks of such a misreading (an ``Ã``, ``Â``, ``Å`` or ``â`` followed by a character
    that a UTF-8 continuation byte becomes) is tried, so real text is left alone.
    """
    if not _MOJIBAKE_MARKS.search(text):
        return None
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
        return fixed if fixed != text else None
    return None


def _clip(value: Any, width: int = 60) -> str:
    """*value* as text, shortened to *width* characters for a one-line message."""
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _text_failures(raw: pd.DataFrame, file: str, repair: bool) -> tuple[list[dict], list[dict]]:
    """Mojibake cells of the text columns: failures, or (with *repair*) the repairs made."""
    failures: list[dict] = []
    repairs: list[dict] = []
    for col in raw.columns:
        if col in NUMERIC_COLUMNS:
            continue
        values = raw[col].to_numpy(dtype=object)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                continue
            fixed = unmojibake(value)
            if fixed is None:
                continue
            if repair:
                raw.iat[i, raw.columns.get_loc(col)] = fixed
                repairs.append({"row": i + 2, "column": col, "value": value, "repaired": fixed})
            else:
                start = max(_MOJIBAKE_MARKS.search(value).start() - 15, 0)  # type: ignore[union-attr]
                bad = value[start : start + 40]
                good = unmojibake(bad) or fixed[start : start + 40]
                failures.append(_failure(
                    file, i + 2, col, value,
                    f"text encoded once too often (UTF-8 read as Windows-1252): "
                    f"{bad!r} reads {good!r} when decoded; --repair-text (repair_text=True) "
                    "decodes it"))  # fmt: skip
    return failures, repairs


def read_metapsy(
    path: str | Path,
    *,
    skip_invalid: bool = False,
    repair_text: bool = False,
    ignore_columns: tuple[str, ...] = (),
) -> MetapsyFile:
    """Read and validate a Metapsy file.

    Parameters
    ----------
    path
        A ``;``-separated file with decimal commas.
    skip_invalid
        Leave failing rows out (listed in the result) instead of refusing the file.
    repair_text
        Decode mojibake text cells back (listed in ``MetapsyFile.repaired``) instead of
        refusing them.
    ignore_columns
        Columns not to import (a column damaged throughout, e.g. gambling-psyctr 25.0.0's
        ``mean_age``, which lost its decimal separators); the export writes them empty.

    Raises
    ------
    NotFoundError
        The file does not exist.
    ValidationError
        The file lacks the ``study`` column or any effect-size columns (a file in the
        ``total-response`` layout is read as the standard, see
        :mod:`evidence.ingest.metapsy_formats`), or (without
        ``skip_invalid``) has failing rows: every failing cell is listed.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"Metapsy file {str(path)!r} does not exist.")
    file = path.name
    from evidence.ingest.metapsy_layout import restore  # (imports this module)

    raw = _read_raw(path).map(restore)  # a cell an export guarded against formula injection
    first = raw.columns[0] if len(raw.columns) else None
    row_names = first is not None and (first == "" or str(first).startswith("Unnamed: 0"))
    if row_names:
        raw = raw.drop(columns=first)
    groups = {"means": _MEANS, "change": _CHANGE, "events": _EVENTS, "precalc": _PRECALC}
    has_group = any(all(c in raw.columns for c in cols) for cols in groups.values())
    if not has_group and layout_of(raw) == "total-response":  # metapsy_formats
        raw, has_group = as_standard(raw), True
    if "study" not in raw.columns or not has_group:
        lacking = "study" if "study" not in raw.columns else "effect-size columns"
        raise ValidationError(
            f"{file}: not a Metapsy file: no {lacking} (needs 'study' and one complete group "
            f"of mean_/sd_/n_arm1/2, change-score, event_/totaln_arm1/2 or precalc_g columns).",
            [_failure(file, None, lacking, None, "Metapsy standard columns")],
        )
    columns = tuple(raw.columns)
    unknown = [c for c in ignore_columns if c not in raw.columns]
    if unknown:
        raise ValidationError(
            f"{file}: --ignore-column {unknown[0]!r} is not a column of the file",
            [_failure(file, None, unknown[0], None, "--ignore-column names a column")],
        )
    structural = {"study", *_MEANS, *_CHANGE, *_EVENTS, *_PRECALC}
    if any(c in structural for c in ignore_columns):
        c = next(c for c in ignore_columns if c in structural)
        raise ValidationError(
            f"{file}: --ignore-column {c!r}: the column holds what a record is made of and "
            "cannot be left out",
            [_failure(file, None, c, None, "--ignore-column names a moderator column")],
        )
    raw = raw.drop(columns=list(ignore_columns))
    text_failures, repairs = _text_failures(raw, file, repair_text)
    frame, failures, nr = _parse(raw, file)
    frame.insert(0, "file_row", np.arange(len(frame)) + 2)
    failures += text_failures
    failures += validate_metapsy(frame, file)
    failures.sort(key=lambda f: (f["row"] or 0, f["column"] or ""))
    bad_rows = sorted({f["row"] for f in failures})
    if failures and not skip_invalid:
        f = failures[0]
        shown = f" = {_clip(f['value'])}" if f["value"] is not None else ""
        raise ValidationError(
            f"{file}: row {f['row']}: {f['column']}{shown} breaks the rule '{f['rule']}' "
            f"({len(failures)} failing cells in {len(bad_rows)} rows; nothing was read; "
            f"--skip-invalid (skip_invalid=True) leaves these rows out).",
            failures,
        )
    keep = ~frame["file_row"].isin(bad_rows)
    return MetapsyFile(
        frame=frame[keep].reset_index(drop=True),
        path=str(path),
        skipped=tuple(bad_rows),
        failures=tuple(failures),
        not_reported=nr,
        repaired=tuple(repairs),
        columns=columns,
        ignored=tuple(ignore_columns),
        blank_columns=tuple(
            c for c in raw.columns if raw[c].eq("").any() and not raw[c].isna().any()
        ),  # fmt: skip
        not_reported_cells=tuple(
            (int(i) + 2, c)
            for c in raw.columns
            if c in NUMERIC_COLUMNS
            for i in np.flatnonzero(raw[c].astype("string").str.strip().eq("NR").fillna(False))
        ),  # fmt: skip
        verbatim_cells=_verbatim_cells(raw),
        row_names=row_names,
    )


def _verbatim_cells(raw: pd.DataFrame) -> tuple[tuple[int, str, str], ...]:
    """(file row, column, text) of the cells of *raw* (text as read) that the store does not
    give back as they are (:attr:`MetapsyFile.verbatim_cells`)."""
    out = []
    for col in raw.columns:
        text = raw[col].astype("string")
        stripped = text.str.strip()
        differs = (text != stripped).fillna(False).astype(bool)
        if col in NUMERIC_COLUMNS:
            number = pd.to_numeric(stripped.str.replace(",", ".", regex=False), errors="coerce")
            written = pd.Series([_fmt(x) for x in number.to_numpy(dtype=float, na_value=np.nan)],
                                index=raw.index, dtype="string")  # fmt: skip
            differs |= (number.notna() & (stripped != written)).fillna(False).astype(bool)
        out += [(int(i) + 2, col, str(text.iat[i])) for i in np.flatnonzero(differs.to_numpy())]
    return tuple(out)


def _read_raw(path: Path) -> pd.DataFrame:
    """The cells of a Metapsy file as text (``NA`` as missing): ``;``-separated text, or the
    worksheet ``data`` (else the first) of an ``.xlsx`` workbook such as Metapsy's example.

    Workbook rows are indexed by their line (header = 1) so that a blank line keeps the
    numbering of the rows after it (and is reported as a row without a study).
    """
    if path.suffix.lower() == ".xlsx":
        from evidence.ingest.readers import ROW, read_xlsx_table

        sheet = read_xlsx_table(path, ["data"])
        lines = sheet.frame.pop(ROW).to_numpy()
        frame = sheet.frame.set_axis(lines - 2).reindex(range(int(lines.max(initial=1)) - 1))
        return frame.mask(frame == "NA").reset_index(drop=True)
    try:
        return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, na_values=["NA"],
                           encoding="utf-8-sig")  # fmt: skip
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path.name}: not a Metapsy file: byte {exc.start} cannot be decoded as UTF-8 "
            f"(a Metapsy file is ;-separated UTF-8 text or an .xlsx workbook)",
            [_failure(path.name, None, None, None, "UTF-8 text or .xlsx")],
        ) from None


def _esc_g(d: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = n1 + n2
    return d * (1 - 3 / (4 * n - 9)), np.sqrt(n / (n1 * n2) + d**2 / (2 * n))


def _from_means(frame: pd.DataFrame, rows: np.ndarray, cols: tuple[str, ...], formulas: str):
    m1, s1, n1, m2, s2, n2 = (_col(frame, c)[rows] for c in cols)
    if formulas == "escalc":
        res = escalc("SMD", m1i=m1, sd1i=s1, n1i=n1, m2i=m2, sd2i=s2, n2i=n2)
        return np.asarray(res.yi), np.asarray(res.sei)
    sp = np.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2))
    return _esc_g((m1 - m2) / sp, n1, n2)


def _from_events(frame: pd.DataFrame, rows: np.ndarray, formulas: str):
    a, n1, c, n2 = (_col(frame, x)[rows] for x in _EVENTS)
    zero = (a == 0) | (c == 0)  # Metapsy adds 1/2 only for a zero event count
    a, c = a + 0.5 * zero, c + 0.5 * zero
    n1, n2 = n1 + zero, n2 + zero  # b = n1 - a and d = n2 - c also get 1/2
    res = escalc("OR2DL", ai=a, n1i=n1, ci=c, n2i=n2, to="none")
    yi, sei = -np.asarray(res.yi), np.asarray(res.sei)
    if formulas == "metapsy":
        yi = yi * (1 - 3 / (4 * (n1 + n2) - 9))
    return yi, sei


def metapsy_effect_sizes(
    frame: pd.DataFrame, *, sign: str = "metapsy", formulas: str = "escalc"
) -> pd.DataFrame:
    """Hedges' g and its SE for every row, by Metapsy's rules (module docstring).

    Returns
    -------
    pandas.DataFrame
        Same index as ``frame``; columns ``g``, ``g_se`` and ``g_formula`` (``SMD:means``,
        ``SMD:change``, ``SMD:logOR``, ``precalc`` or missing when nothing is reported).
    """
    if sign not in SIGNS:
        raise ValidationError(f"Metapsy sign must be one of {', '.join(SIGNS)}, not {sign!r}.")
    if formulas not in FORMULAS:
        raise ValidationError(
            f"Metapsy formulas must be one of {', '.join(FORMULAS)}, not {formulas!r}."
        )
    k = len(frame)
    g, se = np.full(k, np.nan), np.full(k, np.nan)
    which = np.full(k, None, dtype=object)
    free = np.ones(k, dtype=bool)
    steps = (("SMD:means", _MEANS), ("SMD:change", _CHANGE), ("SMD:logOR", _EVENTS),
             ("precalc", _PRECALC))  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, cols in steps:
            rows = np.flatnonzero(free & _complete(frame, cols))
            if rows.size == 0:
                continue
            if name == "precalc":
                y, s = _col(frame, "precalc_g")[rows], _col(frame, "precalc_g_se")[rows]
            elif name == "SMD:logOR":
                y, s = _from_events(frame, rows, formulas)
                y = -y if sign == "reversed" else y
            else:
                y, s = _from_means(frame, rows, cols, formulas)
                y = -y if sign == "reversed" else y
            g[rows], se[rows], which[rows] = y, s, name
            free[rows] = False
    return pd.DataFrame({"g": g, "g_se": se, "g_formula": which}, index=frame.index)


def infer_sign(frame: pd.DataFrame) -> str:
    """The sign convention (``"metapsy"`` or ``"reversed"``) that the file's ``.g`` follows.

    Decided by the majority of computed rows whose g agrees with ``.g`` within 0.01 under
    either convention; ``"metapsy"`` on a tie.
    """
    fx = _col(frame, ".g")
    est = metapsy_effect_sizes(frame, formulas="metapsy")
    computed = (est["g_formula"] != "precalc").to_numpy() & est["g_formula"].notna().to_numpy()
    y = est["g"].to_numpy()
    same = int(np.sum(computed & (np.abs(y - fx) < 0.01)))
    flipped = int(np.sum(computed & (np.abs(-y - fx) < 0.01)))
    return "reversed" if flipped > same else "metapsy"


@dataclass(frozen=True)
class MetapsyComparison:
    """How our g and SE compare with a Metapsy file's ``.g`` and ``.g_se``."""

    n_rows: int
    n_compared: int
    n_within: int
    tolerance: float
    max_abs_diff_g: float
    max_abs_diff_se: float
    sign: str
    formulas: str
    disagreeing: pd.DataFrame = field(repr=False)

    def __str__(self) -> str:
        lines = [
            f"rows: {self.n_rows}; compared with .g/.g_se: {self.n_compared} "
            f"(sign {self.sign}, formulas {self.formulas})",
            f"within {self.tolerance:g}: {self.n_within} of {self.n_compared}; "
            f"max |g - .g| = {self.max_abs_diff_g:.3g}, "
            f"max |se - .g_se| = {self.max_abs_diff_se:.3g}",
        ]
        if len(self.disagreeing):
            lines.append(f"{len(self.disagreeing)} rows disagree:")
            lines.append(self.disagreeing.to_string(index=False))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the disagreeing rows as records)."""
        return {
            "n_rows": self.n_rows, "n_compared": self.n_compared, "n_within": self.n_within,
            "tolerance": self.tolerance, "max_abs_diff_g": self.max_abs_diff_g,
            "max_abs_diff_se": self.max_abs_diff_se, "sign": self.sign,
            "formulas": self.formulas,
            "disagreeing": self.disagreeing.to_dict(orient="records"),
        }  # fmt: skip


def compare_with_file(
    frame: pd.DataFrame,
    *,
    sign: str = "metapsy",
    formulas: str = "escalc",
    tolerance: float = 0.005,
) -> MetapsyComparison:
    """Compute g and SE and compare them with the file's ``.g`` and ``.g_se``.

    A row agrees when both ``|g - .g|`` and ``|se - .g_se|`` are at most
    ``tolerance + 1e-9`` (Metapsy may round to two decimals, hence 0.005).
    """
    est = metapsy_effect_sizes(frame, sign=sign, formulas=formulas)
    return compare_effects(
        frame, est["g"].to_numpy(), est["g_se"].to_numpy(), est["g_formula"].to_numpy(),
        sign=sign, formulas=formulas, tolerance=tolerance,
    )  # fmt: skip


def compare_effects(
    frame: pd.DataFrame,
    g: np.ndarray,
    se: np.ndarray,
    formula: np.ndarray,
    *,
    sign: str,
    formulas: str,
    tolerance: float = 0.005,
) -> MetapsyComparison:
    """Compare given *g* and *se* (one per row of *frame*) with its ``.g`` and ``.g_se``.

    A row agrees when both ``|g - .g|`` and ``|se - .g_se|`` are at most
    ``tolerance + 1e-9``; *formula* labels each row in the list of disagreeing rows.
    """
    fg, fse = _col(frame, ".g"), _col(frame, ".g_se")
    both = ~np.isnan(g) & ~np.isnan(fg)
    dg = np.abs(g - fg)
    dse = np.abs(se - fse)
    tol = tolerance + 1e-9
    ok = both & (dg <= tol) & ~(dse > tol)
    bad = both & ~ok
    cols = [c for c in ("file_row", "study", "instrument", "time") if c in frame.columns]
    dis = frame.loc[bad, cols].copy()
    dis["formula"] = np.asarray(formula, dtype=object)[bad]
    dis["g"], dis[".g"] = g[bad], fg[bad]
    dis["g_se"], dis[".g_se"] = se[bad], fse[bad]
    return MetapsyComparison(
        n_rows=len(frame),
        n_compared=int(both.sum()),
        n_within=int(ok.sum()),
        tolerance=tolerance,
        max_abs_diff_g=float(np.nanmax(dg[both])) if both.any() else math.nan,
        max_abs_diff_se=float(np.nanmax(dse[both])) if both.any() else math.nan,
        sign=sign,
        formulas=formulas,
        disagreeing=dis.reset_index(drop=True),
    )


def write_metapsy(
    frame: pd.DataFrame, path: str | Path, *, effects: pd.DataFrame | None = None
) -> None:
    """Write a frame in the Metapsy standard (``;``, decimal comma, ``NA``).

    With ``effects`` (from :func:`metapsy_effect_sizes`), its ``g``/``g_se`` become the
    file's ``.g``/``.g_se``. The ``file_row`` bookkeeping column is not written.
    """
    out = frame.drop(columns=[c for c in ("file_row",) if c in frame.columns]).copy()
    if effects is not None:
        out[".g"] = effects["g"].to_numpy()
        out[".g_se"] = effects["g_se"].to_numpy()
    for col in out.columns:
        if col in NUMERIC_COLUMNS:
            out[col] = [_fmt(x) for x in out[col].to_numpy(dtype=float, na_value=np.nan)]
    out.to_csv(path, sep=";", index=False, na_rep="NA")


def _fmt(x: float) -> str | None:
    if math.isnan(x):
        return None
    text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    return text.replace(".", ",")
