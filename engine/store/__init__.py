"""The store: the schema, opening and migrating databases, the hot path's statements and the
delivery of the outbox. It imports nothing of the layers above it."""
