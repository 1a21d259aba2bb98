"""Alembic migrations of the Flowkernel schema, shipped as `engine.migrations`."""
