"""Alembic migrations of the Flowkernel schema, shipped as `flowkernel.migrations`."""
