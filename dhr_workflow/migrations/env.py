"""Alembic environment: runs on the engine handed over by :func:`dhr_workflow.db.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from dhr_workflow.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # the plain `alembic` command line, e.g. for `revision --autogenerate`
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///dhr.db")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
