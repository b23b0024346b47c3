"""Load a Metapsy database file into an evidence base through the ingest loader.

A minimal mapping (rows with arm-level means, SDs and ns only; others are counted and left
out): Metapsy rows become coding sheets (studies, arms, outcomes, timepoints, results),
written as CSV files to a temporary directory, with a codebook generated for them; then
:func:`evidence.ingest.loader.ingest` validates and writes them in one revision. Loading a
later release of the same database is an update: the loader writes exactly the records
that changed.

Keys are stable across releases: a study's key is its Metapsy label; a result's key is its
position among the study's rows with means (``r1``, ``r2``, ...); an outcome is one per
result (``o1``, ...). The outcome's ``direction`` is set so that the loader's effect size
has the sign of Metapsy's own ``.g`` (positive favours arm 1).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from evidence.ingest.codebook import Codebook, parse_codebook
from evidence.ingest.loader import IngestReport, ingest
from evidence.ingest.metapsy import metapsy_effect_sizes, read_metapsy

REVIEW = "metapsy_peer_support"


def metapsy_codebook(name: str = REVIEW) -> Codebook:
    """The codebook of a Metapsy database loaded with :func:`load_metapsy`."""
    text = {"type": "text"}
    raw: dict[str, Any] = {
        "format": "evidence-codebook/1",
        "review": {"name": name, "title": f"Metapsy database {name} (metapsy.org, ODC-By 1.0)"},
        "analysis": {"measure": "SMD", "vtype": "LS", "model": {"method": "REML"}, "level": 95},
        "rules": [],
        "sheets": {
            "studies": {
                "columns": {
                    "study_key": {"type": "text", "required": True},
                    "citation": text,
                    "year": {"type": "integer"},
                    "country": text,
                    "simulated": {"type": "boolean", "default": False},
                }
            },
            "arms": {
                "columns": {
                    "study_key": {"type": "text", "required": True},
                    "arm_key": {"type": "text", "required": True},
                    "label": text,
                    "role": {
                        "type": "categorical",
                        "required": True,
                        "levels": ["intervention", "comparator"],
                    },
                }
            },
            "outcomes": {
                "columns": {
                    "study_key": {"type": "text", "required": True},
                    "outcome_key": {"type": "text", "required": True},
                    "domain": {"type": "text", "required": True},
                    "instrument": text,
                    "direction": {
                        "type": "categorical",
                        "required": True,
                        "levels": ["higher", "lower"],
                    },
                }
            },
            "timepoints": {
                "columns": {
                    "study_key": {"type": "text", "required": True},
                    "timepoint_key": {"type": "text", "required": True},
                    "label": {"type": "text", "required": True},
                    "weeks": {"type": "numeric"},
                }
            },
            "results": {
                "columns": {
                    **{
                        c: {"type": "text", "required": True}
                        for c in (
                            "study_key",
                            "result_key",
                            "outcome_key",
                            "timepoint_key",
                            "arm1_key",
                        )
                    },
                    "arm2_key": text,
                    **{
                        c: {"type": "numeric"} for c in ("n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i")
                    },
                }
            },
        },
        "moderators": {
            "format": {"level": "study", "type": "text"},
            "mean_age": {"level": "study", "type": "numeric"},
            "rob": {"level": "study", "type": "text"},
        },
    }
    return parse_codebook(raw, f"generated codebook of {name}")


def _number(value: Any) -> float | None:
    """A number written with a decimal comma (``43,9``); None when missing or not a number."""
    try:
        number = float(str(value).replace(",", "."))
    except ValueError:
        return None
    return number if number == number else None


def _arm(condition: Any, multi: Any) -> str:
    parts = [str(x) for x in (condition, multi) if isinstance(x, str) and x]
    return re.sub(r"[^A-Za-z0-9]+", "-", " ".join(parts)).strip("-").lower() or "arm"


def metapsy_sheets(path: str | Path) -> tuple[dict[str, pd.DataFrame], int]:
    """Coding sheets of a Metapsy file and the number of rows left out (no means)."""
    frame = read_metapsy(path).frame
    es = metapsy_effect_sizes(frame)
    keep = (es["g_formula"] == "SMD:means").to_numpy()
    rows = frame[keep].reset_index(drop=True)
    g_file = rows[".g"].to_numpy(float)
    raw = (rows["mean_arm1"] - rows["mean_arm2"]).to_numpy(float)
    studies, arms, outcomes, timepoints, results = [], [], [], [], []
    for study, part in rows.groupby("study", sort=False):
        first = part.iloc[0]
        year = first.get("year")
        studies.append(
            {
                "study_key": study,
                "citation": study,
                "year": int(year) if year == year else None,
                "country": first.get("country"),
                "simulated": False,
                "format": first.get("format"),
                "mean_age": _number(first.get("mean_age")),
                "rob": first.get("overall_RoB"),
            }
        )
        seen_arms: dict[str, str] = {}
        seen_tp: set[str] = set()
        for j, (idx, row) in enumerate(part.iterrows(), start=1):
            a1, a2 = (
                _arm(row["condition_arm1"], row["multi_arm1"]),
                _arm(row["condition_arm2"], row["multi_arm2"]),
            )
            if a1 == a2:
                a2 = a2 + "-2"
            seen_arms.setdefault(a1, "intervention")
            seen_arms.setdefault(a2, "comparator")
            weeks = row["time_weeks"]
            tp = f"{row['time']}-{weeks:g}" if weeks == weeks else str(row["time"])
            if tp not in seen_tp:
                seen_tp.add(tp)
                timepoints.append(
                    {"study_key": study, "timepoint_key": tp, "label": row["time"], "weeks": weeks}
                )
            agree = np.sign(raw[idx]) == np.sign(g_file[idx]) or g_file[idx] != g_file[idx]
            outcomes.append(
                {
                    "study_key": study,
                    "outcome_key": f"o{j}",
                    "domain": row["outcome_category"],
                    "instrument": row["instrument"],
                    "direction": "higher" if agree else "lower",
                }
            )
            results.append(
                {
                    "study_key": study,
                    "result_key": f"r{j}",
                    "outcome_key": f"o{j}",
                    "timepoint_key": tp,
                    "arm1_key": a1,
                    "arm2_key": a2,
                    "n1i": row["n_arm1"],
                    "m1i": row["mean_arm1"],
                    "sd1i": row["sd_arm1"],
                    "n2i": row["n_arm2"],
                    "m2i": row["mean_arm2"],
                    "sd2i": row["sd_arm2"],
                }
            )
        labels = {
            _arm(r["condition_arm1"], r["multi_arm1"]): r["condition_arm1"]
            for _, r in part.iterrows()
        }
        for key, role in seen_arms.items():
            arms.append(
                {"study_key": study, "arm_key": key, "label": labels.get(key, key), "role": role}
            )
    sheets = {
        "studies": pd.DataFrame(studies),
        "arms": pd.DataFrame(arms),
        "outcomes": pd.DataFrame(outcomes),
        "timepoints": pd.DataFrame(timepoints),
        "results": pd.DataFrame(results),
    }
    return sheets, int((~keep).sum())


def load_metapsy(
    path: str | Path, engine: Engine, *, message: str | None = None, author: str | None = None
) -> tuple[IngestReport, int]:
    """Ingest one Metapsy release; returns the loader's report and the rows left out."""
    sheets, left_out = metapsy_sheets(path)
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in sheets.items():
            frame.to_csv(Path(tmp) / f"{name}.csv", index=False)
        report = ingest(
            [tmp],
            codebook=metapsy_codebook(),
            database=engine,
            author=author,
            message=message or f"Metapsy {Path(path).stem}",
            command=f"load_metapsy {Path(path).name}",
        )
    return report, left_out
