"""Alembic environment of evidence: the only way tables are created or changed.

The URL comes from (first found): ``config.attributes["url"]`` (set by
:mod:`evidence.db.migrate`), ``alembic -x url=...``, ``sqlalchemy.url`` in alembic.ini,
``EVIDENCE_DATABASE_URL``, the default ``sqlite:///evidence.db``.

SQLite migrations run with foreign keys off (batch mode rebuilds tables by copy, drop and
rename; with foreign keys on, dropping a parent table would cascade into its children),
inside one transaction, and check the foreign keys before commit.

Every migration runs in one transaction, which ends with two checks:

* a downgrade that dropped a table holding rows or a column holding values (each step
  counts them with :func:`evidence.db.migrate.guard_downgrade` before it drops anything)
  is refused unless ``-x drop_data=yes``: :class:`~evidence.db.migrate.DowngradeRefused`
  names every revision, table, column and count, and the transaction rolls back;
* an upgrade that ends at head re-creates ``analysis_dataset`` with a column per declared
  moderator when its columns do not match them
  (:func:`evidence.views.sqlviews.ensure_dataset_view`): revision 0004 creates the view
  with its fixed columns only, so going down to 0003 and back would otherwise lose the
  moderator columns. This runs the current code's view definition, which is only known
  to fit the schema at head, so it is done here and not in revision 0004.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context

from evidence.config import database_url
from evidence.db import migrate
from evidence.db.engine import get_engine
from evidence.db.models import metadata
from evidence.views import models as _view_models  # noqa: F401  (analysis view tables)
from evidence.views.sqlviews import ensure_dataset_view

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata

#: Tables that exist in the database but are not part of the models: internal state of
#: the SQLite history triggers (see 0002_history_triggers).
UNMODELLED_TABLES = frozenset({"open_revision"})


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave the history machinery's own tables out of autogenerate and ``alembic check``."""
    if type_ == "table" and name in UNMODELLED_TABLES:
        return False
    return not (
        type_ in {"index", "column"}
        and getattr(obj, "table", None) is not None
        and obj.table.name in UNMODELLED_TABLES
    )


def _url() -> str:
    return (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or database_url()
    )


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object,
        transactional_ddl=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade head --sql``)."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _complete_dataset_view(connection: sa.Connection, started: str | None) -> None:
    """After an upgrade to head: ``analysis_dataset`` has a column per declared moderator."""
    current = context.get_context().get_current_revision()
    if current == started or current != context.get_head_revision():
        return
    if "analysis_dataset" in sa.inspect(connection).get_view_names():  # not after a bare stamp
        ensure_dataset_view(connection)


def run_migrations_online() -> None:
    """Migrate the database in one transaction."""
    engine = get_engine(_url(), foreign_keys=False, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                started = context.get_context().get_current_revision()
                migrate.start_run(config)
                context.run_migrations()
                migrate.refuse_lost_data(config)
                _complete_dataset_view(connection, started)
                if connection.dialect.name == "sqlite":
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(
                            f"migration left {len(broken)} rows breaking a foreign key,"
                            f" first in table {broken[0][0]!r}; nothing was changed"
                        )
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
