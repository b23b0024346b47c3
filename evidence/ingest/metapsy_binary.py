"""A Metapsy file's binary outcomes as log risk or odds ratios (``measure="RR"`` or ``"OR"``).

By default a Metapsy import pools Hedges' g, and event counts enter as Metapsy's g from the
log odds ratio. With ``measure="RR"`` (or ``"OR"``) the review's measure is the log risk
(odds) ratio: only the rows with complete event counts (``event_arm*``/``totaln_arm*``) are
loaded -- their events, never their means, even where a row has both --, the store computes
``log(p1 / p2)`` (or the log odds ratio) with escalc's 2x2 formulas, and the report compares
the log risk ratios with the file's own ``.log_rr``/``.log_rr_se`` (metapsyTools computes them
for every row with events). Rows without event counts are left out and counted. The
direction of each outcome comes from ``events`` (``"more"`` or ``"fewer"`` events are better)
or, without it, from Metapsy's convention as for g (``direction="lower"``: more events are
better).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evidence.ingest.codebook import Codebook, parse_codebook
from evidence.ingest.metapsy import NUMERIC_COLUMNS, _complete

__all__ = ["BINARY_MEASURES", "MEASURES", "binary_rows", "for_log_rr", "with_measure"]

BINARY_MEASURES = ("RR", "OR")
MEASURES = ("SMD", *BINARY_MEASURES)
_EVENTS = ("event_arm1", "totaln_arm1", "event_arm2", "totaln_arm2")
_OTHER = tuple(c for c in NUMERIC_COLUMNS if c.startswith(("mean_", "sd_", "n_arm", "n_change",
                                                             "precalc_g")))  # fmt: skip


def binary_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, tuple[int, ...]]:
    """The rows with complete event counts, their other statistics blanked (so Metapsy's
    order takes the events), and the file rows left out."""
    has = _complete(frame, _EVENTS)
    out = frame[has].copy()
    for col in _OTHER:
        if col in out.columns:
            out[col] = np.nan
    return out, tuple(int(r) for r in frame.loc[~has, "file_row"])


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
