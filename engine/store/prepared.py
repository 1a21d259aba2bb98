"""Hot-path statements: Core statements compiled once per dialect and run on the driver.

SQLAlchemy's execution layer costs tens of microseconds per statement (cache key, execution
context, result wrapping), more than SQLite needs to run one, and a `Connection` with its
transaction object costs as much again per execution. On the hot path a `Prepared` statement
keeps the compiled SQL text and the bind and result processors of its column types, so
running it costs a parameter list and a driver call while values still convert exactly as
SQLAlchemy would convert them; and `transaction` runs on a pooled driver connection with the
dialect's own BEGIN and COMMIT. Driver errors come out as SQLAlchemy's `DBAPIError` family, as
from `Connection.execute`, and a connection found dead is invalidated.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from sqlalchemy import Connection, Dialect, Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

from flowkernel.previews import preview

Processor = Callable[[Any], Any] | None
_MISSING: Any = object()


class Db:
    """A driver connection inside a transaction, and what reporting its errors needs."""

    __slots__ = ("_invalidate", "dialect", "driver")

    def __init__(
        self, driver: Any, dialect: Dialect, invalidate: Callable[[BaseException], None]
    ) -> None:
        self.driver = driver
        self.dialect = dialect
        self._invalidate = invalidate

    @classmethod
    def of(cls, conn: Connection) -> Db:
        """The driver connection under a SQLAlchemy `Connection` (in its transaction)."""
        return cls(conn.connection.driver_connection, conn.dialect, conn.invalidate)

    def fail(self, exc: Exception, sql: str, params: Any) -> NoReturn:
        """Raise the driver's error as SQLAlchemy would; a lost connection is invalidated."""
        dialect = self.dialect
        dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        if not isinstance(exc, dbapi_error):
            raise exc
        lost = dialect.is_disconnect(exc, self.driver, None)  # type: ignore[arg-type]
        if lost:
            self._invalidate(exc)
        raise DBAPIError.instance(
            sql, params, exc, dbapi_error, connection_invalidated=lost, dialect=dialect
        ) from exc

    def run_sql(self, sql: str, params: Any) -> Any:
        """Execute SQL text in the driver's own placeholder style; the cursor."""
        cursor = self.driver.cursor()
        try:
            cursor.execute(sql, params)
        except Exception as exc:
            self.fail(exc, sql, params)
        return cursor

    def run_many(self, sql: str, rows: Sequence[Any]) -> int:
        """Execute SQL text once per row of parameters; the number of rows it changed."""
        cursor = self.driver.cursor()
        try:
            if len(rows) == 1:  # a batch of one: the driver's plain path costs less
                cursor.execute(sql, rows[0])
            else:
                cursor.executemany(sql, rows)
        except Exception as exc:
            self.fail(exc, sql, rows)
        return int(cursor.rowcount)


class Connections:
    """Pooled driver connections for hot-path transactions.

    On a SQLite file one connection is kept between transactions instead of going back to
    the pool: checking it out and in again costs more than a heartbeat's own statements.
    It is closed when the engine is disposed, and never used after a fork. PostgreSQL
    connections always go back to the pool, which pings them when they were idle.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._keep = engine.dialect.name == "sqlite" and isinstance(engine.pool, QueuePool)
        self._idle: list[tuple[int, PoolProxiedConnection]] = []
        if self._keep:
            event.listen(engine, "engine_disposed", self._close_idle)

    def take(self) -> PoolProxiedConnection:
        """A connection: the kept one if it is free, else one from the pool."""
        try:
            pid, pooled = self._idle.pop()  # atomic: two threads never get the same one
        except IndexError:
            return self.engine.raw_connection()
        if pid == os.getpid() and pooled.is_valid:
            return pooled
        return self.engine.raw_connection()  # inherited by a fork, or invalidated: left alone

    def give(self, pooled: PoolProxiedConnection) -> None:
        """Take back a connection whose transaction ended (committed or rolled back)."""
        if self._keep and not self._idle and pooled.is_valid:
            self._idle.append((os.getpid(), pooled))
        else:
            pooled.close()

    def _close_idle(self, _engine: Engine) -> None:
        while self._idle:
            _pid, pooled = self._idle.pop()
            pooled.detach()  # its pool is gone: close the driver connection itself
            pooled.close()


class transaction:  # lower case: used like the function it replaces, `with transaction(e)`
    """A transaction on a pooled driver connection: committed on success, else rolled back.

    `begin` starts it on the connection (the writer of the dialect knows how).
    """

    __slots__ = ("_begin", "_connections", "_db", "_pooled")

    def __init__(self, connections: Connections, begin: Callable[[Db], None]) -> None:
        self._connections = connections
        self._begin = begin

    def __enter__(self) -> Db:
        engine = self._connections.engine
        pooled = self._pooled = self._connections.take()

        def lost(exc: BaseException) -> None:
            # as SQLAlchemy does on a disconnect: the pool's other connections are suspect too
            engine.pool._invalidate(pooled, exc)

        db = self._db = Db(pooled.driver_connection, engine.dialect, lost)
        try:
            self._begin(db)
        except BaseException:
            self._connections.give(pooled)
            raise
        return db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        pooled, db = self._pooled, self._db
        try:
            if kind is None:
                try:
                    db.driver.commit()
                except Exception as exc:
                    self._rollback()
                    db.fail(exc, "COMMIT", ())
            else:
                self._rollback()
        finally:
            self._connections.give(pooled)

    def _rollback(self) -> None:
        if not self._pooled.is_valid:  # lost, and invalidated already
            return
        try:
            self._db.driver.rollback()
        except Exception:  # the first error is the one to report
            self._pooled.invalidate()


class _Memo:
    """A bind processor that remembers its last datetime: one `now` serves a whole execution."""

    __slots__ = ("last", "processor")

    def __init__(self, processor: Callable[[Any], Any]) -> None:
        self.processor = processor
        self.last: tuple[Any, Any] = (_MISSING, None)

    def __call__(self, value: Any) -> Any:
        last = self.last  # one read and one write of a tuple: safe across threads
        if value is last[0]:
            return last[1]
        converted = self.processor(value)
        if type(value) is datetime.datetime:  # immutable, so identity means equal
            self.last = (value, converted)
        return converted


class Prepared:
    """One statement compiled for one dialect; values are passed by bind parameter name."""

    __slots__ = ("_binds", "_build", "_positional", "_results", "sql")

    def __init__(
        self,
        stmt: ClauseElement,
        dialect: Dialect,
        memos: dict[tuple[type[Any], str], _Memo] | None = None,
    ) -> None:
        plain_insert = isinstance(stmt, Insert) and not stmt._returning
        # for_executemany: no implicit RETURNING of the primary key, which nobody reads here
        compiled = stmt.compile(dialect=dialect, for_executemany=plain_insert)
        assert isinstance(compiled, SQLCompiler)
        self.sql: str = compiled.string
        if "POSTCOMPILE" in self.sql:
            raise ValueError(f"statement needs per-call rendering, cannot be prepared: {stmt}")
        self._positional = compiled.positional
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup or ()) if compiled.positional else list(by_name)
        self._binds: list[tuple[str, Processor, Any]] = []
        for name in names:
            bind = by_name[name]
            default = bind.effective_value if bind.value is not None or bind.callable else _MISSING
            impl = bind.type.dialect_impl(dialect)
            processor = impl.bind_processor(dialect)
            if processor is not None and memos is not None and _is_datetime(bind.type):
                key = (type(impl), repr(impl))
                memo = memos.get(key)
                if memo is None:
                    memo = memos[key] = _Memo(processor)
                processor = memo
            self._binds.append((name, processor, default))
        self._build = _builder(self._binds, self._positional)
        # (column index, processor) of the selected columns that need one
        self._results: list[tuple[int, Callable[[Any], Any]]] = []
        selected = getattr(stmt, "selected_columns", None)
        if selected is None:
            selected = getattr(stmt, "_returning", None)
        for index, col in enumerate(selected or ()):
            processor = col.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                self._results.append((index, processor))

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for `values` (converted by the column types)."""
        return self._build(values)

    def run(self, db: Db, values: Mapping[str, Any]) -> Any:
        """Execute once in `db`'s transaction; the driver's cursor."""
        params = self._build(values)
        cursor = db.driver.cursor()
        try:
            cursor.execute(self.sql, params)
        except Exception as exc:
            db.fail(exc, self.sql, params)
        return cursor

    def run_many(self, db: Db, rows: Iterable[Mapping[str, Any]]) -> int:
        """Execute once per row in `db`'s transaction; the number of rows changed."""
        build = self._build
        batch = [build(values) for values in rows]
        if not batch:
            return 0
        cursor = db.driver.cursor()
        try:
            cursor.executemany(self.sql, batch)
        except Exception as exc:
            db.fail(exc, self.sql, batch)
        return int(cursor.rowcount)

    def row(self, cursor: Any) -> Sequence[Any] | None:
        """The cursor's next row with the selected columns' result processing, or None."""
        raw = cursor.fetchone()
        if raw is None or not self._results:
            return raw  # type: ignore[no-any-return]
        row = list(raw)
        for index, processor in self._results:
            value = row[index]
            if value is not None:
                row[index] = processor(value)
        return row

    def rows(self, cursor: Any) -> list[Sequence[Any]]:
        """Every remaining row of the cursor, processed as by `row`."""
        fetched = cursor.fetchall()
        if not self._results:
            return fetched  # type: ignore[no-any-return]
        processed: list[Sequence[Any]] = []
        for raw in fetched:
            row = list(raw)
            for index, processor in self._results:
                value = row[index]
                if value is not None:
                    row[index] = processor(value)
            processed.append(row)
        return processed


def _builder(
    binds: Sequence[tuple[str, Processor, Any]], positional: bool
) -> Callable[[Mapping[str, Any]], Sequence[Any] | dict[str, Any]]:
    """A function turning named values into the driver's parameters, written out once per
    statement: a loop over the binds would cost more than running the statement on SQLite."""
    scope: dict[str, Any] = {"_MISSING": _MISSING}
    parts = []
    for index, (name, processor, default) in enumerate(binds):
        if default is _MISSING:
            value = f"values[{preview(name)}]"  # a missing value raises KeyError naming it
        else:
            scope[f"d{index}"] = default
            value = f"values.get({preview(name)}, d{index})"
        if processor is not None:
            scope[f"p{index}"] = processor
            value = f"p{index}({value})"
        parts.append(value if positional else f"{preview(name)}: {value}")
    body = f"[{', '.join(parts)}]" if positional else f"{{{', '.join(parts)}}}"
    # the code is ours: bind names (repr-quoted) and processors passed through `scope`
    exec(f"def build(values):\n    return {body}\n", scope)
    built: Callable[[Mapping[str, Any]], Sequence[Any] | dict[str, Any]] = scope["build"]
    return built


def _is_datetime(type_: Any) -> bool:
    """Whether the type binds datetimes (a TypeDecorator says so through its impl)."""
    try:
        return bool(getattr(type_, "impl_instance", type_).python_type is datetime.datetime)
    except NotImplementedError:
        return False


def run_sql(conn: Connection, sql: str, params: Any) -> Any:
    """Execute SQL text (the driver's own placeholders) in a SQLAlchemy `Connection`'s
    transaction, on its driver connection."""
    return Db.of(conn).run_sql(sql, params)


class Statements:
    """Prepared statements by key, compiled on first use for one dialect."""

    def __init__(self, dialect: Dialect, build: Callable[[str], ClauseElement]) -> None:
        self._dialect = dialect
        self._build = build
        self._prepared: dict[str, Prepared] = {}
        self._memos: dict[tuple[type[Any], str], _Memo] = {}

    def __getitem__(self, key: str) -> Prepared:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = Prepared(self._build(key), self._dialect, self._memos)
            self._prepared[key] = prepared
        return prepared
