"""The database schema (installed as ``syncd.schema``) and its Alembic migrations."""
