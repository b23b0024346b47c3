"""Revision numbers from what a user types: a number or a date, checked to exist.

Light on purpose (the database layer only): ``evidence diff`` reads stored results without
importing the engine.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from evidence.db.models import metadata
from evidence.errors import NotFoundError, SelectionError

__all__ = ["check_revisions", "resolve_revision"]


def resolve_revision(conn: Connection, when: int | str) -> int:
    """A revision number from a number or a date/time (the last revision at that time)."""
    if isinstance(when, int) or (isinstance(when, str) and when.strip().isdigit()):
        return int(when)
    text = str(when).strip()
    try:
        moment = (
            dt.datetime.combine(dt.date.fromisoformat(text), dt.time()) + dt.timedelta(days=1)
            if len(text) == 10
            else dt.datetime.fromisoformat(text)
        )
    except ValueError as error:
        raise SelectionError(
            f"--as-of {text!r} is neither a revision number nor a date (YYYY-MM-DD) or time"
        ) from error
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    r = metadata.tables["revision"].c
    found = conn.execute(sa.select(sa.func.max(r.id)).where(r.created_at < moment)).scalar()
    if found is None:
        raise NotFoundError(f"no data revision exists before {text}")
    return int(found)


def check_revisions(conn: Connection, rev1: int | str, rev2: int | str) -> tuple[int, int, bool]:
    """Two existing revisions, oldest first, and whether they were given newest first.

    Raises
    ------
    NotFoundError
        A revision number that is not in the database (naming it and the latest one).
    """
    a, b = resolve_revision(conn, rev1), resolve_revision(conn, rev2)
    r = metadata.tables["revision"].c
    known = set(conn.execute(sa.select(r.id).where(r.id.in_([a, b]))).scalars())
    for x in (a, b):
        if x not in known:
            latest = conn.execute(sa.select(sa.func.max(r.id))).scalar() or 0
            if not latest:
                raise NotFoundError(f"revision {x} does not exist: the database has no revisions")
            raise NotFoundError(f"revision {x} does not exist (latest: {latest})")
    return (b, a, True) if a > b else (a, b, False)
