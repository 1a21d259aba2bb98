"""Errors of the database: unreachable, not migrated, lost, busy, timed out, full."""

from __future__ import annotations

from flowkernel.errors.base import FlowkernelError
from flowkernel.previews import preview


class DatabaseError(FlowkernelError):
    """The database cannot be used as it is: unreachable, not at this version's schema, busy,
    out of connections or out of disk space. `retry_after` is the seconds after which the same
    call may well succeed, None when retrying alone does not help."""

    code = "database_error"
    retry_after: int | None = None


class DatabaseUnreachable(DatabaseError):
    """No connection to the database could be opened."""

    code = "database_unreachable"

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        if url.startswith("sqlite"):
            step = "check the file's path and its folder"
        elif "does not exist" in cause and "database" in cause:
            step = f"create the database (createdb {url.rsplit('/', 1)[-1].split('?')[0]})"
        else:
            step = "start the server"
        super().__init__(
            f"cannot connect to {url}: {cause}; {step}, or pass another "
            "--database-url / FLOWKERNEL_DATABASE_URL"
        )


class DatabaseNotMigrated(DatabaseError):
    """The database schema is not at the revision this version of Flowkernel needs."""

    code = "database_not_migrated"

    def __init__(self, url: str, current: str | None, head: str | None) -> None:
        self.url = url
        self.current = current
        self.head = head
        at = f"at revision {preview(current)}" if current else "not migrated"
        super().__init__(
            f"database {url} is {at}, this version needs {preview(head)}; run `flowkernel db "
            f"upgrade`"
        )


class DatabaseConnectionLost(DatabaseError):
    """The connection to the database broke while an operation ran; the pool reconnects."""

    code = "database_connection_lost"
    retry_after = 1

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"lost the connection to {url} during the operation: {cause}; it was rolled back "
            "unless the connection broke while committing, so retry it with the same "
            "idempotency key, or read the item first"
        )


class DatabaseBusy(DatabaseError):
    """A lock the operation needed was not granted in time (or a deadlock was broken): the
    operation was rolled back and may be retried as it was."""

    code = "database_busy"
    retry_after = 1

    def __init__(self, url: str, cause: str, *, sqlite: bool) -> None:
        self.url = url
        self.cause = cause
        if sqlite:
            step = (
                "another connection held the SQLite file's write lock past the busy timeout; "
                "keep transactions short, or use PostgreSQL for many concurrent writers"
            )
        else:
            step = "another transaction held a lock on what this operation changes"
        super().__init__(
            f"{url} is busy: {cause}; {step}. The operation was rolled back: retry it (with "
            "the same idempotency key)"
        )


class DatabaseTimeout(DatabaseError):
    """A statement ran past the database's statement timeout (or was cancelled) and was
    rolled back with its operation."""

    code = "database_timeout"
    retry_after = 5

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"{url} cancelled a statement: {cause}; the operation was rolled back: retry it "
            "when the database is less busy (with the same idempotency key), or raise the "
            "role's statement_timeout"
        )


class DatabasePoolExhausted(DatabaseError):
    """Every connection of the engine's pool stayed in use past the pool's timeout."""

    code = "database_pool_exhausted"
    retry_after = 1

    def __init__(self, size: int, overflow: int, timeout: float) -> None:
        self.pool_size = size
        self.max_overflow = overflow
        self.pool_timeout = timeout
        super().__init__(
            f"all {size + max(overflow, 0)} connections of the pool (pool_size {size}, "
            f"max_overflow {overflow}) stayed in use for {timeout:g} s; nothing was done: "
            "retry, run fewer callers at once, or open the engine with a larger pool "
            "(open_engine(url, pool_size=..., max_overflow=...))"
        )


class DatabaseFull(DatabaseError):
    """The database's disk (or its size limit) is full; nothing of the operation was kept."""

    code = "database_full"

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"{url} is full: {cause}; the operation was rolled back: free disk space (or raise "
            "the database's size limit), then retry"
        )
