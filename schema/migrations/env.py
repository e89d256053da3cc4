"""Alembic environment: always driven from code, on a connection syncd hands over."""

from __future__ import annotations

from alembic import context

from syncd.schema.tables import metadata
from syncd.store.search_index import is_index_object

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
    # The search index's objects differ per engine and are made by store/search_index.py.
    include_name=lambda name, _type, _parents: not is_index_object(name),
)
with context.begin_transaction():
    context.run_migrations()
