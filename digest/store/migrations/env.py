"""Alembic environment: the engine/connection is passed in by digest.store.db."""

from alembic import context

from digest.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # run from the alembic CLI
    engine = context.config.attributes["engine"]
    connection = engine.connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
