"""Metapsy databases published in another layout than the data standard, read as the standard.

One such layout is known: ``total-response`` (response rates of psychotherapies across
disorders), one row per comparison with the columns ``study.es`` (the comparison's label,
``"Anderson, 2013 - grp"``), ``study``, ``therapy``, ``improved.ig``/``n.ig`` (responders of
the intervention group out of its size), ``improved.cg``/``n.cg`` (of the control group),
``logrr``/``se.logrr`` and ``reference``. It has no ``condition_arm*``, ``outcome_type`` or
``event_arm*`` columns, which is why the reader once called it "not a Metapsy file".

Read as the standard (:func:`as_standard`):

- ``event_arm1``/``totaln_arm1`` = ``improved.ig``/``n.ig``; ``event_arm2``/``totaln_arm2`` =
  ``improved.cg``/``n.cg`` (responders: more events are better, as Metapsy's own events);
- ``condition_arm1`` = ``therapy``, ``condition_arm2`` = ``"control"``; both with the
  multi-arm label the comparison's ``study.es`` adds to ``study`` (``"grp"``), and the
  ``disorder`` where a study reports several (Erickson 2007: GAD and panic disorder
  subgroups), so the comparisons of a study never share an arm the file does not say they
  share (it does not say whether two comparisons have one control group; ``Andersson, 2012``
  labels two trials);
- ``outcome_type`` = ``"response"``, ``time`` = ``"post"``;
- ``precalc_log_rr``/``precalc_log_rr_se`` = ``logrr``/``se.logrr`` (kept, not pooled);
- ``full_ref`` = ``reference``. Every other column stays as it is (a moderator).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["TOTAL_RESPONSE", "as_standard", "layout_of"]

#: The columns that identify the total-response layout.
TOTAL_RESPONSE = ("study.es", "study", "improved.ig", "n.ig", "improved.cg", "n.cg")
_RENAME = {"improved.ig": "event_arm1", "n.ig": "totaln_arm1", "improved.cg": "event_arm2",
           "n.cg": "totaln_arm2", "logrr": "precalc_log_rr", "se.logrr": "precalc_log_rr_se",
           "reference": "full_ref"}  # fmt: skip


def layout_of(raw: pd.DataFrame) -> str | None:
    """``"total-response"`` when *raw* (a file's text cells) is in that layout, else None."""
    standard = {"condition_arm1", "event_arm1", "mean_arm1", "precalc_g"} & set(raw.columns)
    if not standard and all(c in raw.columns for c in TOTAL_RESPONSE):
        return "total-response"
    return None


def _label(study: object, comparison: object) -> str | None:
    """What a comparison's label adds to its study's (``"Anderson, 2013 - grp"`` -> ``grp``)."""
    s, c = str(study or "").strip(), str(comparison or "").strip()
    if not c or c == s:
        return None
    rest = c.removeprefix(s).strip() if c.startswith(s) else c
    return rest.lstrip("-–: ").strip() or c


def as_standard(raw: pd.DataFrame) -> pd.DataFrame:
    """A total-response file's text cells in the columns of the Metapsy standard."""
    out = raw.rename(columns=_RENAME)
    labels = [_label(s, c) for s, c in zip(raw["study"], raw["study.es"], strict=True)]
    if "disorder" in raw.columns:  # a study reporting response per disorder (Erickson 2007)
        several = raw.groupby("study")["disorder"].transform("nunique").to_numpy() > 1
        labels = [
            "; ".join(p for p in (lab, d if many else None) if p) or None
            for lab, d, many in zip(labels, raw["disorder"], several, strict=True)
        ]
    therapy = raw["therapy"] if "therapy" in raw.columns else pd.Series([None] * len(raw))
    out.insert(2, "condition_arm1", therapy.to_numpy())
    out.insert(3, "condition_arm2", "control")
    out.insert(4, "multi_arm1", labels)
    out.insert(5, "multi_arm2", labels)
    out.insert(6, "outcome_type", "response")
    out.insert(7, "time", "post")
    return out
