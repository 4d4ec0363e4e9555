"""Alembic environment for ciwatch.

`ciwatch.store.migrate` runs migrations programmatically and hands over an open connection in
`config.attributes["connection"]` (inside its transaction). For developer use of the `alembic`
command (e.g. `alembic revision --autogenerate`), a synchronous `sqlalchemy.url` in the config
works as well.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ciwatch.store.tables import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///ciwatch.db")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
