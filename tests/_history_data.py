"""A small evidence base written through ``write_transaction`` (shared by history tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence.db.engine import write_transaction
from evidence.db.models import DATA_TABLES, metadata


def _insert(connection: Connection, table: str, values: dict[str, Any]) -> int:
    target = metadata.tables[table]
    return connection.execute(target.insert().values(**values).returning(target.c.id)).scalar_one()


def add_study(connection: Connection, review_id: int, moderators: dict[str, int], key: str) -> int:
    """A study with two arms, an outcome, two timepoints, two results with effect sizes,
    a moderator value at each level and a risk-of-bias judgement."""
    study = _insert(
        connection,
        "study",
        {"review_id": review_id, "study_key": key, "year": 2019, "simulated": True},
    )
    arm1 = _insert(connection, "arm", {"study_id": study, "arm_key": "I", "role": "intervention"})
    arm2 = _insert(connection, "arm", {"study_id": study, "arm_key": "C", "role": "comparator"})
    outcome = _insert(
        connection,
        "outcome",
        {"study_id": study, "outcome_key": "dep", "domain": "mental", "direction": "lower"},
    )
    results = []
    for label, weeks in (("post", 8.0), ("follow-up", 26.5)):
        timepoint = _insert(
            connection,
            "timepoint",
            {"study_id": study, "timepoint_key": label, "label": label, "weeks": weeks},
        )
        result = _insert(
            connection,
            "result",
            {
                "study_id": study,
                "result_key": f"{key}-{label}",
                "outcome_id": outcome,
                "timepoint_id": timepoint,
                "arm1_id": arm1,
                "arm2_id": arm2,
                "n1i": 40.0,
                "m1i": 0.1 + 0.2,
                "sd1i": 1.0 / 3.0,
                "n2i": 41.0,
                "m2i": 2.5,
                "sd2i": 1.25,
                "coded_at": dt.date(2024, 3, 1),
                "coder": "ann",
            },
        )
        _insert(
            connection,
            "effect_size",
            {
                "result_id": result,
                "measure": "SMD",
                "yi": -0.123456789012345678,
                "vi": 0.05,
                "flipped": True,
                "cluster": f"{key}/I",
            },
        )
        results.append(result)
    _insert(
        connection,
        "moderator_value",
        {"moderator_id": moderators["design"], "study_id": study, "value_text": "controlled"},
    )
    _insert(
        connection,
        "moderator_value",
        {"moderator_id": moderators["source"], "arm_id": arm1, "value_text": "informal"},
    )
    _insert(
        connection,
        "moderator_value",
        {"moderator_id": moderators["dosage"], "result_id": results[0], "value_num": 12.5},
    )
    _insert(
        connection,
        "risk_of_bias",
        {"study_id": study, "tool": "RoB2", "domain": "randomization", "judgement": "low"},
    )
    return study


def populate(engine: Engine, keys: tuple[str, ...] = ("SIM-001", "SIM-002")) -> int:
    """Write a review and one study per key in one revision; return the revision."""
    with write_transaction(engine, author="ann", message="first load") as (connection, rev):
        review = _insert(connection, "review", {"name": "peer", "title": "Peer support"})
        moderators = {
            name: _insert(
                connection,
                "moderator",
                {"review_id": review, "name": name, "level": level, "type": kind},
            )
            for name, level, kind in (
                ("design", "study", "categorical"),
                ("source", "arm", "categorical"),
                ("dosage", "effect", "numeric"),
            )
        }
        for key in keys:
            add_study(connection, review, moderators, key)
    return rev


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every data table, ordered by id."""
    with engine.connect() as connection:
        return {
            name: [
                tuple(row)
                for row in connection.execute(
                    sa.select(metadata.tables[name]).order_by(metadata.tables[name].c.id)
                )
            ]
            for name in DATA_TABLES
        }
