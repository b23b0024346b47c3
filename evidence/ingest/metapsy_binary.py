"""A Metapsy file's binary outcomes as log risk or odds ratios (``measure="RR"`` or ``"OR"``).

By default a Metapsy import pools Hedges' g, and event counts enter as Metapsy's g from the
log odds ratio. With ``measure="RR"`` (or ``"OR"``) the review's measure is the log risk
(odds) ratio: only the rows with complete event counts (``event_arm*``/``totaln_arm*``) are
loaded -- their events, never their means, even where a row has both --, the store computes
``log(p1 / p2)`` (or the log odds ratio) with escalc's 2x2 formulas, and the report compares
the log risk ratios with the file's own ``.log_rr``/``.log_rr_se`` (metapsyTools computes them
for every row with events).

With ``measure="RR"``, a row without complete event counts but with Metapsy's precalculated
log risk ratio ``precalc_log_rr`` and its standard error ``precalc_log_rr_se`` (events in the
first arm against the second) is loaded too, as a reported effect size: ``yi_reported =
precalc_log_rr``, ``vi_reported = precalc_log_rr_se^2`` (the store's formula ``RR:reported``,
taken as given). A row with only one of the two, or an SE that is not positive, is refused
naming the cell (left out and listed with ``skip_invalid``). The Metapsy standard has no
precalculated log odds ratio, so under ``measure="OR"`` such rows are left out with the other
rows without event counts, and counted.

The direction of each outcome comes from ``events`` (``"more"`` or ``"fewer"`` events are
better) or, without it, from Metapsy's convention as for g (``direction="lower"``: more events
are better); a ``precalc_log_rr`` row is oriented exactly as a row with events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evidence.ingest.codebook import Codebook, parse_codebook
from evidence.ingest.metapsy import NUMERIC_COLUMNS, _col, _complete, _failure

__all__ = ["BINARY_MEASURES", "MEASURES", "REPORTED_FORMULA", "binary_rows", "for_log_rr",
           "reported_log_rr", "with_measure"]  # fmt: skip

BINARY_MEASURES = ("RR", "OR")
MEASURES = ("SMD", *BINARY_MEASURES)
_EVENTS = ("event_arm1", "totaln_arm1", "event_arm2", "totaln_arm2")
_REPORTED = ("precalc_log_rr", "precalc_log_rr_se")
#: The formula of a ``precalc_log_rr`` row in :func:`~evidence.ingest.metapsy_store.metapsy_sheets`
#: (the store's formula for it too).
REPORTED_FORMULA = "RR:reported"
_OTHER = tuple(c for c in NUMERIC_COLUMNS if c.startswith(("mean_", "sd_", "n_arm", "n_change",
                                                             "precalc_g")))  # fmt: skip


def reported_log_rr(frame: pd.DataFrame) -> np.ndarray:
    """The rows whose log risk ratio is the file's ``precalc_log_rr`` with its SE (no
    complete event counts)."""
    return _complete(frame, _REPORTED) & ~_complete(frame, _EVENTS)


def binary_rows(
    frame: pd.DataFrame, measure: str = "RR", file: str = ""
) -> tuple[pd.DataFrame, tuple[int, ...], list[dict[str, Any]]]:
    """The rows with complete event counts (and, for RR, the rows with ``precalc_log_rr`` and
    its SE), their other statistics blanked (so Metapsy's order takes the events), the file
    rows left out, and the failures of rows whose reported log risk ratio is incomplete or
    has an SE that is not positive (not among the rows returned or left out)."""
    events = _complete(frame, _EVENTS)
    failures: list[dict[str, Any]] = []
    has = events.copy()
    if measure == "RR":
        has |= reported_log_rr(frame)
        failures = _reported_failures(frame, file, ~events)
    bad = frame["file_row"].isin({f["row"] for f in failures}).to_numpy()
    has &= ~bad
    out = frame[has].copy()
    for col in _OTHER:
        if col in out.columns:
            out[col] = np.nan
    left_out = frame.loc[~has & ~bad, "file_row"]
    return out, tuple(int(r) for r in left_out), failures


def _reported_failures(frame: pd.DataFrame, file: str, used: np.ndarray) -> list[dict]:
    """A reported log risk ratio on the *used* rows with half its numbers or an SE <= 0."""
    rows = frame["file_row"].to_numpy()
    value = {c: _col(frame, c) for c in _REPORTED}
    out = []
    for i in np.flatnonzero(used):
        given = [c for c in _REPORTED if not np.isnan(value[c][i])]
        if len(given) == 1:
            (have,) = given
            (empty,) = (c for c in _REPORTED if c != have)
            rule = (f"{have} is given without {empty}: a reported log risk ratio needs both "
                    "(or the event counts event_arm1/2, totaln_arm1/2)")  # fmt: skip
            out.append(_failure(file, int(rows[i]), empty, None, rule))
        elif len(given) == 2 and not value["precalc_log_rr_se"][i] > 0:
            out.append(_failure(file, int(rows[i]), "precalc_log_rr_se",
                                float(value["precalc_log_rr_se"][i]),
                                "precalc_log_rr_se > 0 (a standard error)"))  # fmt: skip
    return out


def with_measure(codebook: Codebook, measure: str) -> Codebook:
    """*codebook* with the review's effect measure set to *measure*."""
    raw = {**codebook.raw, "analysis": {**codebook.raw["analysis"], "measure": measure}}
    return parse_codebook(raw, codebook.source)


def for_log_rr(rows: pd.DataFrame) -> pd.DataFrame:
    """*rows* with the file's ``.log_rr``/``.log_rr_se`` in the place of ``.g``/``.g_se``, for
    the comparison of the stored log risk ratios."""
    out = rows.copy()
    for src, dst in ((".log_rr", ".g"), (".log_rr_se", ".g_se")):
        out[dst] = out[src] if src in out.columns else np.nan
    return out
