"""Alembic environment: runs against the engine Flowkernel passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from flowkernel.store.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    from flowkernel.store.database import open_engine

    engine = open_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
